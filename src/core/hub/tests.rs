//! The hub without a door: sessions opened, registered, replaced, dropped,
//! resumed and ended through the core's own API, and the counts kept right
//! at every step.

use std::sync::Arc;
use std::time::Duration;

use super::{Census, Hub, HubConfig, Session};
use crate::core::command::{Command, Request, Role, Uid};
use crate::core::error::{EndReason, ErrorCode};
use crate::core::event::Event;
use crate::core::ice::IcePolicy;
use crate::core::limits::RateLimit;
use crate::core::registry::InMemoryRegistry;
use crate::core::session::{DoorKind, Opening, ResumeLimits, SessionLink};

fn hub() -> Hub {
    hub_with_ice(None)
}

fn hub_with_ice(ice: Option<Arc<IcePolicy>>) -> Hub {
    Hub::new(
        Arc::new(InMemoryRegistry::new()),
        None,
        HubConfig {
            outbox_capacity: 64,
            outbox_max_bytes: 1 << 20,
            addresses: Arc::new(|| Arc::from(Vec::new())),
            resume: ResumeLimits {
                window: Duration::from_secs(30),
                max_events: 64,
                max_bytes: 1 << 16,
            },
            rate_limit: RateLimit {
                per_second: 0.0,
                burst: 0.0,
            },
            register_timeout: Duration::ZERO,
            max_uid_bytes: 128,
            call_join_window: Duration::from_secs(60),
            ice,
            hooks: None,
        },
    )
}

/// Every event queued so far.
fn drain(link: &mut SessionLink) -> Vec<Event> {
    std::iter::from_fn(|| link.try_next_event())
        .map(|delivery| (*delivery.event).clone())
        .collect()
}

fn resume_token(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|event| match event {
            Event::Welcome { resume_token, .. } => resume_token.as_deref().map(str::to_owned),
            _ => None,
        })
        .expect("a welcome with a resume token")
}

async fn register(session: &mut Session, uid: &str, role: Role) {
    let uid = Uid::new(uid).expect("uid");
    session
        .handle(Request::new(Some(1), Command::Register { uid, role }))
        .await;
}

/// Waits for the detach work a drop spawns.
async fn settle(hub: &Hub, mut done: impl FnMut(&Census) -> bool) -> Census {
    for _ in 0..500 {
        let census = hub.census();
        if done(&census) {
            return census;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the counts never settled: {:?}", hub.census());
}

#[tokio::test]
async fn counts_stay_right_over_register_replace_away_resume_and_end() {
    let hub = hub();
    let (mut web, mut web_link) = hub.open(Opening::door(DoorKind::Ws));
    register(&mut web, "u", Role::Web).await;
    let (mut app, app_link) = hub.open(Opening::door(DoorKind::Grpc));
    register(&mut app, "u", Role::App).await;
    assert_eq!(
        (hub.census().open_sessions, hub.census().away_sessions),
        (2, 0)
    );
    assert_eq!(hub.census().registry.pairs, 1);

    // A newer app replaces the first: its door ends it.
    let (mut newer, mut newer_link) = hub.open(Opening::door(DoorKind::SocketIo));
    register(&mut newer, "u", Role::App).await;
    assert_eq!(app.kill_reason(), Some(ErrorCode::Replaced));
    app.end(EndReason::Closed(ErrorCode::Replaced)).await;
    drop(app_link);
    assert_eq!(
        (hub.census().open_sessions, hub.census().away_sessions),
        (2, 0)
    );

    // Its connection drops abruptly: held away, the peer told.
    let token = resume_token(&drain(&mut newer_link));
    drop(newer);
    drop(newer_link);
    settle(&hub, |census| census.away_sessions == 1).await;
    assert_eq!(hub.census().open_sessions, 2);
    assert!(drain(&mut web_link).contains(&Event::PeerAway));

    // A new connection resumes it: its own session merges into the one
    // it takes over.
    let (mut back, mut back_link) = hub.open(Opening::door(DoorKind::Ws));
    assert_eq!(hub.census().open_sessions, 3);
    back.handle(Request::new(None, Command::Resume { token, last_seq: 0 }))
        .await;
    // The preface (resumed, then the replay) comes before anything queued.
    assert!(matches!(
        drain(&mut back_link).first(),
        Some(Event::Resumed { .. })
    ));
    assert_eq!(
        (hub.census().open_sessions, hub.census().away_sessions),
        (2, 0)
    );
    settle(&hub, |_| drain(&mut web_link).contains(&Event::PeerBack)).await;

    // Clean ends: the peer hears byebye, nothing is left.
    back.end(EndReason::ClientClosed).await;
    assert!(drain(&mut web_link).contains(&Event::ByeBye));
    web.end(EndReason::ClientClosed).await;
    assert!(hub.census().is_empty(), "{:?}", hub.census());
}

#[tokio::test]
async fn an_away_session_that_is_replaced_is_no_longer_counted_away() {
    let hub = hub();
    let (mut web, _web_link) = hub.open(Opening::door(DoorKind::Ws));
    register(&mut web, "v", Role::Web).await;
    let (mut app, app_link) = hub.open(Opening::door(DoorKind::Grpc));
    register(&mut app, "v", Role::App).await;
    drop(app);
    drop(app_link);
    settle(&hub, |census| census.away_sessions == 1).await;
    let (mut fresh, _fresh_link) = hub.open(Opening::door(DoorKind::Grpc));
    register(&mut fresh, "v", Role::App).await;
    let census = settle(&hub, |census| census.away_sessions == 0).await;
    assert_eq!(census.open_sessions, 2);
    fresh.end(EndReason::ClientClosed).await;
    web.end(EndReason::ClientClosed).await;
    assert!(hub.census().is_empty(), "{:?}", hub.census());
}

#[tokio::test]
async fn ice_servers_go_with_registered_and_resumed_and_only_to_registered_sessions() {
    let policy = IcePolicy::new(
        &["turn:turn.example.com:3478".to_owned()],
        Some("hub-secret"),
        Duration::from_secs(600),
    )
    .expect("valid")
    .map(Arc::new);
    let hub = hub_with_ice(policy);
    // The TURN username of the list an event carries.
    let username = |event: &Event| {
        let grant = match event {
            Event::Registered { ice_servers, .. } | Event::Resumed { ice_servers, .. } => {
                ice_servers.clone()?
            }
            Event::IceServers(grant) => Arc::clone(grant),
            _ => return None,
        };
        Some(grant.servers[0].credentials.as_ref()?.username.clone())
    };
    let (mut app, mut app_link) = hub.open(Opening::door(DoorKind::Grpc));
    let token = resume_token(&drain(&mut app_link));
    app.handle(Request::new(Some(7), Command::IceServers)).await;
    assert!(matches!(
        drain(&mut app_link).as_slice(),
        [Event::Error {
            code: ErrorCode::NotRegistered,
            id: Some(7),
            ..
        }]
    ));
    register(&mut app, "ice", Role::App).await;
    let registered = drain(&mut app_link);
    assert!(username(&registered[0]).expect("minted").ends_with(":ice"));
    app.handle(Request::new(None, Command::IceServers)).await;
    let renewed = drain(&mut app_link);
    assert_eq!(renewed.len(), 1, "{renewed:?}");
    assert!(username(&renewed[0]).expect("minted").ends_with(":ice"));

    // A resume mints a fresh list into `resumed`.
    drop(app);
    drop(app_link);
    settle(&hub, |census| census.away_sessions == 1).await;
    let (mut back, mut back_link) = hub.open(Opening::door(DoorKind::Ws));
    back.handle(Request::new(None, Command::Resume { token, last_seq: 0 }))
        .await;
    let resumed = drain(&mut back_link);
    assert!(
        matches!(resumed.first(), Some(Event::Resumed { .. })),
        "{resumed:?}"
    );
    assert!(username(&resumed[0]).expect("minted").ends_with(":ice"));
    back.end(EndReason::ClientClosed).await;
    assert!(hub.census().is_empty(), "{:?}", hub.census());
}
