//! The admin dashboard (`clients/admin/`), compiled into the binary and
//! served at `/admin/` when the admin API is on. The page holds no secret:
//! it asks for the admin token and sends it with every API call.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

const INDEX: &str = include_str!("../../clients/admin/index.html");
const SCRIPT: &str = include_str!("../../clients/admin/admin.js");
const STYLE: &str = include_str!("../../clients/admin/admin.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The page may not be framed by another site (clickjacking a
            // kick button).
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
}

/// `/admin/`, `/admin/admin.js`, `/admin/admin.css` (and `/admin` → `/admin/`).
pub fn router() -> Router {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route(
            "/admin/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/admin/admin.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/admin/admin.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
