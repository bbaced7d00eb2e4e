//! The admin dashboard (`clients/admin/`), compiled into the binary and
//! served at `/admin/` when the admin API is on. The page holds no secret:
//! it asks for the admin token and sends it with every API call. Like the
//! demo's pages it may not be framed by another site (a kick button), and
//! a Content-Security-Policy lets it load and call nothing but its own
//! origin: no inline script or style, no other host.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use crate::server::web;

/// The dashboard's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One of the dashboard's files, with its Content-Security-Policy.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)],
        web::asset(content_type, body),
    )
}

const INDEX: &str = include_str!("../../clients/admin/index.html");
const SCRIPT: &str = include_str!("../../clients/admin/admin.js");
const STYLE: &str = include_str!("../../clients/admin/admin.css");

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
