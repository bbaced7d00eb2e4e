//! Any bytes as a WebSocket text frame: decoding never panics, and what
//! decodes re-encodes to JSON that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signalgate::core::{Command, Event};
use signalgate::protocol::envelope::{decode_frame, encode_event};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(request) = decode_frame(text)
        && let Command::Relay(relay) = request.command
    {
        let rendered = encode_event(&Event::Relayed(relay), Some(1));
        assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok());
    }
});
