//! The demo page and the browser SDK, compiled into the binary so that
//! `signalgate` serves them at `/` with nothing else installed.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// `clients/web/signalgate.js`: the browser SDK.
pub const SDK: &str = include_str!("../../clients/web/signalgate.js");
const INDEX: &str = include_str!("../../clients/web/demo/index.html");
const DEMO_JS: &str = include_str!("../../clients/web/demo/demo.js");
const DEMO_CSS: &str = include_str!("../../clients/web/demo/demo.css");

/// A page or script compiled into the binary: never cached stale, never
/// framed by another site.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
}

/// `/`, `/demo.js`, `/demo.css` and `/signalgate.js`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/demo.js",
            get(|| async { asset("text/javascript; charset=utf-8", DEMO_JS) }),
        )
        .route(
            "/demo.css",
            get(|| async { asset("text/css; charset=utf-8", DEMO_CSS) }),
        )
        .route(
            "/signalgate.js",
            get(|| async { asset("text/javascript; charset=utf-8", SDK) }),
        )
}
