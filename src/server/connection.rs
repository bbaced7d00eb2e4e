//! One accepted connection, served by hyper, that must keep making progress
//! or be closed (docs/SECURITY.md, "Connections that never speak"):
//!
//! - its first request (HTTP/1 headers, or an HTTP/2 stream) must begin
//!   within `first_request` (`--header-read-timeout`): a connection that
//!   sends nothing, or an h2c connection that answers pings but opens no
//!   stream, is closed;
//! - once nothing is open on it (no request, no stream), it may stay idle
//!   for `idle` (`--idle-timeout`), then it is closed (HTTP/2: GOAWAY);
//! - on shutdown it is told to finish (HTTP/2: GOAWAY); one with nothing
//!   open that has not finished within `LINGER` is dropped, so an idle
//!   connection never holds shutdown for its whole grace period.
//!
//! A WebSocket leaves hyper once upgraded (its session has its own
//! heartbeat); a Socket.IO polling POST's body has its own deadline
//! (`doors::socketio`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a connection with nothing open may take to finish once told
/// to (shutdown, or its idle bound): time for a GOAWAY to go out.
const LINGER: Duration = Duration::from_secs(1);

/// The bounds a connection must keep.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionBounds {
    /// The first request must begin within this.
    pub first_request: Duration,
    /// Longest stretch with nothing open on the connection.
    pub idle: Duration,
}

/// Why a connection was told to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The connection finished on its own.
    Done,
    /// It kept silent past its bound.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// What is open on one connection, for its watchdog.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    /// When the connection last had nothing open, and whether it ever
    /// had anything (the first request has a bound of its own).
    quiet: Mutex<Quiet>,
    changed: Notify,
}

#[derive(Clone, Copy, Debug)]
struct Quiet {
    since: Instant,
    served: bool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            quiet: Mutex::new(Quiet {
                since: Instant::now(),
                served: false,
            }),
            changed: Notify::new(),
        }
    }

    fn quiet(&self) -> MutexGuard<'_, Quiet> {
        crate::sync::lock(&self.quiet)
    }

    fn begin(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.quiet().served = true;
        self.changed.notify_one();
        OpenRequest(Arc::clone(self))
    }

    fn is_quiet(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }

    /// When the connection's silence runs out, if nothing is open now.
    fn deadline(&self, bounds: ConnectionBounds) -> Option<Instant> {
        if !self.is_quiet() {
            return None;
        }
        let quiet = *self.quiet();
        let bound = if quiet.served {
            bounds.idle
        } else {
            bounds.first_request
        };
        (!bound.is_zero()).then(|| quiet.since + bound)
    }
}

/// One open request (or HTTP/2 stream): counted from the call until its
/// response body is gone.
#[derive(Debug)]
struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet().since = Instant::now();
            self.0.changed.notify_one();
        }
    }
}

pin_project! {
    /// A response body that keeps its request counted as open.
    struct TrackedBody {
        #[pin]
        inner: Body,
        open: OpenRequest,
    }
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `io` (from `peer`, which requests carry as axum's
/// [`ConnectInfo`]) with `router` until the connection ends, keeping `bounds`;
/// `shutdown` tells it to finish. Returns why it finished, and hyper's
/// error if the connection ended with one.
pub async fn serve<I>(
    io: I,
    peer: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    bounds: ConnectionBounds,
    shutdown: CancellationToken,
) -> (Finish, Option<Box<dyn std::error::Error + Send + Sync>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        tower::service_fn(move |mut request: Request<Incoming>| {
            let open = activity.begin();
            request.extensions_mut().insert(ConnectInfo(peer));
            let call = router.clone().oneshot(request);
            async move {
                let response = call.await?;
                // Handed to hyper as it is: no second boxing of the body.
                Ok::<_, Infallible>(response.map(|inner| TrackedBody { inner, open }))
            }
        })
    };
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let finish = loop {
        let deadline = activity.deadline(bounds);
        tokio::select! {
            result = connection.as_mut() => return (Finish::Done, result.err()),
            () = shutdown.cancelled() => break Finish::Shutdown,
            () = activity.changed.notified() => {}
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                // Still quiet since then (a request may have come and gone).
                if activity.deadline(bounds).is_some_and(|at| at <= Instant::now()) {
                    break Finish::Idle;
                }
            }
        }
    };
    connection.as_mut().graceful_shutdown();
    // What is open finishes (the server's grace bounds a shutdown); a
    // connection with nothing open gets `LINGER` to say goodbye.
    loop {
        tokio::select! {
            result = connection.as_mut() => return (finish, result.err()),
            () = activity.changed.notified() => {}
            () = tokio::time::sleep(LINGER), if activity.is_quiet() => return (finish, None),
        }
    }
}
