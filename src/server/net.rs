//! The machine's addresses, for answering `ipaddr`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::core::hub::AddressSource;

/// The non-loopback IPv4 addresses of this machine's interfaces, read now.
pub fn interface_ipv4_addresses() -> Arc<[Ipv4Addr]> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .into_iter()
            .filter_map(|interface| match interface.ip() {
                IpAddr::V4(ip) if !ip.is_loopback() => Some(ip),
                _ => None,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list network interfaces for ipaddr");
            Arc::from([])
        }
    }
}

/// `advertised` when given, else the interface addresses at each request
/// (like the seed, which reads them per request).
pub fn address_source(advertised: &[Ipv4Addr]) -> AddressSource {
    if advertised.is_empty() {
        Arc::new(interface_ipv4_addresses)
    } else {
        let fixed: Arc<[Ipv4Addr]> = advertised.into();
        Arc::new(move || Arc::clone(&fixed))
    }
}
