use super::*;
use crate::core::call_report::{CallReportFields, Millis};

const WINDOW: Duration = Duration::from_secs(60);

fn fields(call: &str, result: &str) -> CallReportFields {
    CallReportFields {
        call: Some(call.to_owned()),
        result: Some(result.to_owned()),
        ..CallReportFields::default()
    }
}

fn connected(call: &str, path: &str, setup_ms: u64) -> CallReport {
    CallReport::check(CallReportFields {
        path: Some(path.to_owned()),
        setup_ms: Some(Millis::Whole(setup_ms)),
        ..fields(call, "connected")
    })
    .expect("valid")
}

fn uid() -> Uid {
    Uid::new("alice").expect("uid")
}

#[test]
fn two_sides_join_into_one_record() {
    let mut book = CallBook::new(WINDOW);
    let now = Instant::now();
    let first = book.report(
        &uid(),
        Role::Web,
        DoorKind::Ws,
        connected("c1", "host", 800),
        now,
    );
    assert!(first.is_empty(), "waits for the app's report");
    assert_eq!(book.waiting(), 1);
    let records = book.report(
        &uid(),
        Role::App,
        DoorKind::Grpc,
        connected("c1", "relay", 900),
        now,
    );
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.result, CallResult::Connected);
    assert_eq!(
        record.path,
        Some(CallPath::Relay),
        "either side's relay makes it relay"
    );
    assert_eq!(record.setup_ms, Some(900));
    assert!(!record.one_sided);
    assert_eq!(record.doors, (Some(DoorKind::Ws), Some(DoorKind::Grpc)));
    assert_eq!(book.waiting(), 0);
}

#[test]
fn either_side_failing_fails_the_call() {
    let mut book = CallBook::new(WINDOW);
    let now = Instant::now();
    book.report(
        &uid(),
        Role::App,
        DoorKind::Ws,
        connected("c2", "host", 100),
        now,
    );
    let failed = CallReport::check(CallReportFields {
        reason: Some("timeout".into()),
        ..fields("c2", "failed")
    })
    .expect("valid");
    let records = book.report(&uid(), Role::Web, DoorKind::Ws, failed, now);
    assert_eq!(records[0].result, CallResult::Failed);
    assert_eq!(records[0].reason.as_deref(), Some("timeout"));
}

#[test]
fn one_side_alone_is_recorded_after_the_window() {
    let mut book = CallBook::new(WINDOW);
    let start = Instant::now();
    book.report(
        &uid(),
        Role::Web,
        DoorKind::Ws,
        connected("c3", "srflx", 50),
        start,
    );
    assert!(
        book.expire(start + WINDOW - Duration::from_millis(1))
            .is_empty()
    );
    let records = book.expire(start + WINDOW);
    assert_eq!(records.len(), 1);
    assert!(records[0].one_sided);
    assert_eq!(records[0].result, CallResult::Connected);
    assert_eq!(records[0].path, Some(CallPath::Srflx));
    assert_eq!(book.waiting(), 0);
    // The same id later is a new call.
    book.report(
        &uid(),
        Role::Web,
        DoorKind::Ws,
        connected("c3", "host", 50),
        start + WINDOW,
    );
    assert_eq!(book.waiting(), 1);
}

#[test]
fn a_call_ends_once_whichever_sides_say_so() {
    let mut book = CallBook::new(WINDOW);
    let now = Instant::now();
    book.report(
        &uid(),
        Role::Web,
        DoorKind::Ws,
        connected("c4", "host", 10),
        now,
    );
    book.report(
        &uid(),
        Role::App,
        DoorKind::Ws,
        connected("c4", "host", 10),
        now,
    );
    let closed = |ms| {
        CallReport::check(CallReportFields {
            duration_ms: Some(Millis::Whole(ms)),
            ..fields("c4", "closed")
        })
        .expect("valid")
    };
    let records = book.report(&uid(), Role::App, DoorKind::Ws, closed(5_000), now);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].result, CallResult::Closed);
    assert_eq!(records[0].duration_ms, Some(5_000));
    assert!(
        book.report(&uid(), Role::Web, DoorKind::Ws, closed(5_001), now)
            .is_empty()
    );
    // A closed report while the outcome is awaited decides it first.
    book.report(
        &uid(),
        Role::Web,
        DoorKind::Ws,
        connected("c5", "host", 10),
        now,
    );
    let closed5 = CallReport::check(fields("c5", "closed")).expect("valid");
    let records = book.report(&uid(), Role::Web, DoorKind::Ws, closed5, now);
    let results: Vec<_> = records.iter().map(|r| (r.result, r.one_sided)).collect();
    assert_eq!(
        results,
        [(CallResult::Connected, true), (CallResult::Closed, true)]
    );
}

#[test]
fn the_waiting_calls_are_bounded() {
    let mut book = CallBook::new(WINDOW);
    let now = Instant::now();
    for n in 0..MAX_WAITING_CALLS {
        let records = book.report(
            &uid(),
            Role::Web,
            DoorKind::Ws,
            connected(&format!("c{n}"), "host", 1),
            now,
        );
        assert!(records.is_empty());
    }
    let records = book.report(
        &uid(),
        Role::Web,
        DoorKind::Ws,
        connected("one-more", "host", 1),
        now,
    );
    assert_eq!(records.len(), 1, "the oldest is recorded alone");
    assert_eq!(&*records[0].call, "c0");
    assert_eq!(book.waiting(), MAX_WAITING_CALLS);
}

#[test]
fn joined_calls_do_not_grow_the_expiry_queue_past_its_bound() {
    let mut book = CallBook::new(WINDOW);
    let now = Instant::now();
    for n in 0..3 * MAX_WAITING_CALLS {
        let call = format!("c{n}");
        book.report(
            &uid(),
            Role::Web,
            DoorKind::Ws,
            connected(&call, "host", 1),
            now,
        );
        let records = book.report(
            &uid(),
            Role::App,
            DoorKind::Ws,
            connected(&call, "host", 1),
            now,
        );
        assert_eq!(records.len(), 1);
    }
    assert_eq!(book.waiting(), 0);
    assert!(
        book.order.len() <= 2 * MAX_WAITING_CALLS,
        "{}",
        book.order.len()
    );
}
