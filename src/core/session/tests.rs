use super::*;
use crate::core::command::Relay;
use crate::core::payload::JsonPayload;

fn big_message(bytes: usize) -> Event {
    let text = format!("\"{}\"", "x".repeat(bytes));
    let raw = serde_json::value::RawValue::from_string(text).expect("json");
    Event::Relayed(Relay::Message(
        JsonPayload::from_raw(&raw).expect("payload"),
    ))
}

#[tokio::test]
async fn the_outbox_is_bounded_in_bytes_as_well_as_in_events() {
    let limits = ResumeLimits {
        window: Duration::ZERO,
        max_events: 0,
        max_bytes: 0,
    };
    let (handle, mut link) = SessionHandle::new(
        &Opening::door(DoorKind::Ws),
        (256, 200 * 1024),
        limits,
        (&ShutdownSignal::default(), &Arc::default()),
    );
    // Three 60 KiB events fit in 200 KiB, a fourth does not, although
    // the event bound (256) is far away.
    for _ in 0..3 {
        assert_eq!(handle.offer(big_message(60 * 1024)), Ok(()));
    }
    assert_eq!(
        handle.offer(big_message(60 * 1024)),
        Err(DeliveryError::SlowConsumer)
    );
    // Small events still fit the room left, and reading frees it.
    assert_eq!(handle.offer(big_message(100)), Ok(()));
    while link.try_next_event().is_some() {}
    assert_eq!(handle.offer(big_message(60 * 1024)), Ok(()));
}
