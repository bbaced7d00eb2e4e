//! The composition root: builds the hub over a registry, mounts every door
//! on one router, serves it on one listener (HTTP/1.1 and cleartext HTTP/2
//! side by side) and owns shutdown.
//!
//! - [`config`]: flags and environment variables, parsed once into [`Config`];
//! - `listener`: connection caps, TLS and the lingering close, before HTTP;
//! - `connection`: one connection under hyper, closed when it stops making progress;
//! - `routes`: every door, the operations endpoints and the admin surface on routers;
//! - `serve`: the accept loop, then shutdown's steps;
//! - `net`: the machine's addresses, for `ipaddr`; `web`: the demo page and browser SDK at `/`;
//! - [`runtime`]: the tokio runtime the binary runs on (a fair run queue under saturation).

pub mod config;
pub(crate) mod connection;
pub(crate) mod listener;
pub(crate) mod net;
mod routes;
pub mod runtime;
mod serve;
pub(crate) mod web;

use std::sync::Arc;

use axum::Router;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::auth::{AuthPolicy, AuthSettings, ClaimRules};
use crate::cluster::{ClusterConfig, RedisRegistry, RedisTarget};
use crate::core::{
    Hub, HubConfig, IcePolicy, InMemoryRegistry, NodeLink, RateLimit, Registry, ResumeLimits,
};
use crate::hooks::{WebhookConfig, Webhooks};
use crate::server::config::Config;
use crate::server::listener::tls_acceptor;
use crate::server::net::address_source;
use crate::telemetry;

/// A configured gateway, ready to serve.
pub struct Gateway {
    hub: Hub,
    auth: AuthPolicy,
    webhooks: Option<Arc<Webhooks>>,
    router: Router,
    /// The admin API and dashboard when they have an address of their own
    /// (`--admin-listen`).
    admin: Option<Router>,
    config: Config,
    tls: Option<TlsAcceptor>,
}

impl Gateway {
    /// A gateway with the embedded in-memory registry.
    pub fn new(config: Config) -> anyhow::Result<Gateway> {
        Gateway::with_registry(config, Arc::new(InMemoryRegistry::new()), None)
    }

    /// A gateway over the registry the configuration asks for: Redis with
    /// `--redis-url`, a Redis Cluster with `--redis-cluster-node`, else the
    /// embedded in-memory one.
    pub async fn from_config(config: Config) -> anyhow::Result<Gateway> {
        let redis = match (&config.redis_url, config.redis_cluster_nodes.as_slice()) {
            (Some(url), _) => Some(RedisTarget::Single(url.clone())),
            (None, []) => None,
            (None, nodes) => Some(RedisTarget::Cluster(nodes.to_vec())),
        };
        match redis {
            Some(redis) => {
                let registry = RedisRegistry::connect(ClusterConfig {
                    redis,
                    prefix: config.redis_prefix.clone(),
                    node_ttl: config.node_ttl,
                    command_timeout: config.redis_timeout,
                    reply_timeout: config.cluster_reply_timeout,
                })
                .await?;
                let registry = Arc::new(registry);
                let link: Arc<dyn NodeLink> = Arc::clone(&registry) as Arc<dyn NodeLink>;
                Gateway::with_registry(config, registry, Some(link))
            }
            None => Gateway::new(config),
        }
    }

    /// A gateway over the given registry (and its link to the other nodes,
    /// when it is shared).
    pub fn with_registry(
        config: Config,
        registry: Arc<dyn Registry>,
        link: Option<Arc<dyn NodeLink>>,
    ) -> anyhow::Result<Gateway> {
        // Install the metrics recorder before anything records.
        if telemetry::metrics::handle().is_none() {
            warn!("another metrics recorder is installed; /metrics will be empty");
        }
        let auth = AuthPolicy::new(&AuthSettings {
            secret: config.jwt_secret.as_deref(),
            public_key_path: config.jwt_public_key.as_deref(),
            jwks_url: config.jwt_jwks_url.as_deref(),
            jwks_refresh: config.jwt_jwks_refresh,
            claims: ClaimRules {
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
            },
        })?;
        if auth.enabled() {
            info!(
                ?auth,
                "authentication required: connections must present a JWT"
            );
        } else {
            warn!(
                "AUTHENTICATION IS OFF: anyone may connect and register as any uid. \
                 Set --jwt-secret or --jwt-public-key in production (docs/SECURITY.md)."
            );
        }
        let ice = IcePolicy::new(
            &config.ice_servers,
            config.turn_secret.as_deref(),
            config.turn_ttl,
        )?
        .map(Arc::new);
        if let Some(ice) = &ice {
            info!(?ice, "handing ICE servers to sessions");
            if ice.hands_out_bare_turn() {
                warn!(
                    "TURN URLs are handed out WITHOUT credentials: a TURN server in \
                     secret mode (coturn use-auth-secret) will refuse them. Set --turn-secret \
                     (docs/OPERATIONS.md#turn-coturn)."
                );
            }
        }
        let webhooks = WebhookConfig::from_flags(
            config.webhook_url.as_deref(),
            config.webhook_secret.as_deref(),
            (
                config.webhook_timeout,
                config.webhook_max_attempts,
                config.webhook_queue,
            ),
            link.as_ref().map_or("local", |link| link.node_name()),
        )?
        .map(|webhooks| {
            info!(
                ?webhooks,
                "sending session and pair events as signed webhooks"
            );
            Webhooks::start(webhooks)
        })
        .transpose()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let hub = Hub::new(
            registry,
            link,
            HubConfig {
                outbox_capacity: config.outbox_capacity,
                outbox_max_bytes: config.outbox_max_bytes,
                addresses: address_source(&config.advertise_ip),
                resume: ResumeLimits {
                    window: config.resume_window,
                    max_events: config.resume_buffer_events,
                    max_bytes: config.resume_buffer_bytes,
                },
                rate_limit: RateLimit {
                    per_second: config.rate_limit,
                    burst: config.rate_burst,
                },
                register_timeout: config.register_timeout,
                call_join_window: config.call_join_window,
                max_uid_bytes: config.max_uid_bytes,
                ice,
                hooks: webhooks
                    .clone()
                    .map(|webhooks| webhooks as Arc<dyn crate::core::hooks::HookSink>),
            },
        );
        let (router, admin) = routes::build_router(&hub, &config, &auth)?;
        Ok(Gateway {
            hub,
            auth,
            webhooks,
            router,
            admin,
            config,
            tls,
        })
    }

    /// The hub, for inspecting what the gateway holds.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }
}
