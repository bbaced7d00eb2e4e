use super::*;
use crate::core::error::ErrorCode;

fn fields(call: &str, result: &str) -> CallReportFields {
    CallReportFields {
        call: Some(call.to_owned()),
        result: Some(result.to_owned()),
        ..CallReportFields::default()
    }
}

fn refusal(fields: CallReportFields) -> String {
    let rejection = CallReport::check(fields).expect_err("refused");
    assert_eq!(rejection.code, ErrorCode::BadRequest);
    rejection.message.to_string()
}

#[test]
fn each_broken_rule_names_its_field() {
    let long = "x".repeat(MAX_CALL_ID_CHARS + 1);
    let cases = [
        (
            CallReportFields {
                call: None,
                ..fields("", "failed")
            },
            "call",
        ),
        (fields("", "failed"), "call"),
        (fields(&long, "failed"), "call"),
        (fields("a\u{7}", "failed"), "call"),
        (fields("c1", "ringing"), "result"),
        (
            CallReportFields {
                result: None,
                ..fields("c1", "")
            },
            "result",
        ),
        (fields("c1", "connected"), "path"),
        (
            CallReportFields {
                path: Some("turn".into()),
                ..fields("c1", "connected")
            },
            "path",
        ),
        (
            CallReportFields {
                path: Some("host".into()),
                setup_ms: Some(Millis::Invalid),
                ..fields("c1", "connected")
            },
            "setupMs",
        ),
        (
            CallReportFields {
                duration_ms: Some(Millis::Invalid),
                ..fields("c1", "closed")
            },
            "durationMs",
        ),
        (
            CallReportFields {
                path: Some("host".into()),
                duration_ms: Some(Millis::Whole(5)),
                ..fields("c1", "connected")
            },
            "durationMs",
        ),
        (
            CallReportFields {
                reason: Some("no route".into()),
                ..fields("c1", "closed")
            },
            "reason",
        ),
        (
            CallReportFields {
                reason: Some("r".repeat(MAX_REASON_CHARS + 1)),
                ..fields("c1", "failed")
            },
            "reason",
        ),
    ];
    for (case, field) in cases {
        let message = refusal(case.clone());
        assert!(message.starts_with(field), "{case:?}: {message}");
    }
}

#[test]
fn valid_reports_keep_their_fields() {
    let report = CallReport::check(CallReportFields {
        reason: Some("ICE failed".into()),
        setup_ms: Some(Millis::Whole(0)),
        ..fields(&"é".repeat(MAX_CALL_ID_CHARS), "failed")
    })
    .expect("valid");
    assert_eq!(report.result, CallResult::Failed);
    assert_eq!(report.setup_ms, Some(0));
    assert_eq!(report.reason.as_deref(), Some("ICE failed"));
    let closed = CallReport::check(CallReportFields {
        duration_ms: Some(Millis::Whole(61_000)),
        ..fields("c1", "closed")
    })
    .expect("valid");
    assert_eq!(closed.duration_ms, Some(61_000));
    assert_eq!(closed.path, None);
}
