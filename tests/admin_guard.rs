//! What guards the admin surface (docs/SECURITY.md, *Admin API*): the
//! Origin check on every route whatever the content type, the shortest
//! token accepted, failed attempts throttled per client address, the
//! dashboard's Content-Security-Policy, and `--admin-listen` keeping the
//! whole surface off the public port.

mod common;

use std::time::Duration;

use common::TestGateway;
use common::admin::{ADMIN_TOKEN, admin_config, admin_grpc, http};
use signalgate::proto::admin as pb;
use signalgate_client::Door;

/// A call that claims to be gRPC is checked for its Origin like any other:
/// a page of another site gets `PERMISSION_DENIED`, and nothing happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_call_is_refused_whatever_its_content_type() {
    let gateway = TestGateway::start_with(admin_config()).await;
    let (web, app) = common::paired(&gateway, "guarded", Door::Ws, Door::Ws).await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for path in [
        "/admin/v1/kick",
        "/signalgate.admin.v1.Admin/Kick",
        "/admin/v1/stats",
    ] {
        let answer = http(
            gateway.address,
            "POST",
            path,
            &[
                ("Authorization", &bearer),
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/grpc"),
            ],
            None,
        )
        .await;
        assert_eq!(
            answer.header("grpc-status"),
            Some("7"),
            "{path}: {} {:?} {}",
            answer.status,
            answer.headers,
            answer.body
        );
    }
    let mut web = web;
    let mut app = app;
    common::still_relaying(&mut web, &mut app).await;
    common::finish(gateway, web, app).await;
}

/// A token shorter than 16 bytes is refused at startup.
#[tokio::test]
async fn a_short_admin_token_is_refused_at_startup() {
    for token in ["a", "fifteen-bytes!!"] {
        let refused = signalgate::Gateway::new(signalgate::Config {
            admin_token: Some(token.into()),
            ..common::test_config()
        });
        let error = refused.err().expect("refused").to_string();
        assert!(error.contains("at least 16 bytes"), "{error}");
    }
    assert!(
        signalgate::Gateway::new(signalgate::Config {
            admin_token: Some("sixteen-bytes!!!".into()),
            ..common::test_config()
        })
        .is_ok()
    );
}

/// Ten failed attempts from an address, then it is refused (429, or
/// `RESOURCE_EXHAUSTED`) before its token is even looked at, the right one
/// included; a second later it may try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_throttled_per_address() {
    let gateway = TestGateway::start_with(admin_config()).await;
    let wrong = [("Authorization", "Bearer not-the-admin-token")];
    let right = format!("Bearer {ADMIN_TOKEN}");
    let right = [("Authorization", right.as_str())];
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let answer = http(gateway.address, "GET", "/admin/v1/stats", &wrong, None).await;
        statuses.push(answer.status);
    }
    assert!(
        statuses[..10].iter().all(|&status| status == 401),
        "{statuses:?}"
    );
    // A second may pass while the loop runs: one more failure is allowed.
    let refused = statuses.iter().filter(|&&status| status == 429).count();
    assert!(refused >= 18, "{statuses:?}");
    let answer = http(gateway.address, "GET", "/admin/v1/stats", &right, None).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.json()["code"], "RATE_LIMITED");
    assert_eq!(answer.header("retry-after"), Some("1"));
    let mut admin = admin_grpc(gateway.address, Some(ADMIN_TOKEN)).await;
    let refused = admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect_err("throttled");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let answer = http(gateway.address, "GET", "/admin/v1/stats", &right, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let metrics = common::http_get(&gateway, "/metrics").await;
    assert!(
        metrics.contains("reason=\"admin_throttled\""),
        "the refusals are counted"
    );
    gateway.stop().await;
}

/// The dashboard's page and files carry a Content-Security-Policy that
/// allows nothing but its own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_carries_a_content_security_policy() {
    let gateway = TestGateway::start_with(admin_config()).await;
    for path in ["/admin/", "/admin/admin.js", "/admin/admin.css"] {
        let answer = http(gateway.address, "GET", path, &[], None).await;
        assert_eq!(answer.status, 200, "{path}");
        let policy = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no policy"));
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }
    gateway.stop().await;
}

/// With `--admin-listen` the admin API (HTTP and gRPC) and the dashboard
/// answer on that address only; the public port knows nothing of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_serves_the_admin_surface_on_its_own_address() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin_address = free.local_addr().expect("address");
    drop(free);
    let gateway = TestGateway::start_with(signalgate::Config {
        admin_listen: Some(admin_address),
        ..admin_config()
    })
    .await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    for path in ["/admin/v1/stats", "/admin/"] {
        let public = http(gateway.address, "GET", path, &auth, None).await;
        assert_eq!(public.status, 404, "{path} on the public port");
    }
    let mut on_public = admin_grpc(gateway.address, Some(ADMIN_TOKEN)).await;
    let refused = on_public
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect_err("not on the public port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    // The admin listener may take a moment to come up after the main one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(admin_address).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "no admin listener");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = http(admin_address, "GET", "/admin/v1/stats", &auth, None).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let page = http(admin_address, "GET", "/admin/", &[], None).await;
    assert_eq!(page.status, 200);
    let mut admin = admin_grpc(admin_address, Some(ADMIN_TOKEN)).await;
    admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("gRPC admin on its own address");
    let refused = http(admin_address, "GET", "/admin/v1/stats", &[], None).await;
    assert_eq!(refused.status, 401);
    gateway.stop().await;
}
