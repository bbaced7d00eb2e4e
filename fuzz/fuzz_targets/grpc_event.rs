//! Any bytes as a gRPC `ClientEvent`: protobuf decoding and the door's
//! conversion never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use signalgate::protocol::grpc::decode_event;
use signalgate::proto::server::ClientEvent;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = ClientEvent::decode(data) {
        let _ = decode_event(event);
    }
});
