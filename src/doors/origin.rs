//! The Origin allowlist of the browser doors (`/ws` and `/socket.io/`):
//! cross-site WebSocket hijacking protection and CORS for long-polling.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Allowed origins. Empty means every origin is allowed.
///
/// A pattern is an exact origin (`https://app.example.com`) or contains `*`
/// wildcards (`http://localhost:*`, `https://*.example.com`).
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    patterns: Arc<[String]>,
}

impl OriginPolicy {
    /// A policy over the given patterns.
    pub fn new(patterns: &[String]) -> Self {
        OriginPolicy {
            patterns: patterns
                .iter()
                .map(|p| p.trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    /// Whether every origin is allowed.
    pub fn allows_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a request with this `Origin` header may proceed. Requests
    /// without an Origin (native clients, server-to-server) always may.
    pub fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin else { return true };
        if self.allows_all() {
            return true;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.patterns
            .iter()
            .any(|pattern| glob_match(pattern, origin))
    }

    /// CORS for the browser doors: the request's origin is mirrored when
    /// allowed, with credentials (as Socket.IO's `cors: {origin: true}`).
    pub fn cors_layer(&self) -> CorsLayer {
        let policy = self.clone();
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                policy.allows(Some(origin))
            }))
            .allow_credentials(true)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Middleware: refuses a foreign `Origin` with 403 before any upgrade.
pub async fn enforce(State(policy): State<OriginPolicy>, request: Request, next: Next) -> Response {
    if policy.allows(request.headers().get(header::ORIGIN)) {
        return next.run(request).await;
    }
    let mut response = Response::new(Body::from("origin not allowed\n"));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], origin: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        OriginPolicy::new(&patterns).allows(Some(&HeaderValue::from_str(origin).expect("header")))
    }

    #[test]
    fn exact_and_wildcard_origins() {
        assert!(allows(&[], "https://evil.example"));
        assert!(allows(
            &["https://app.example.com"],
            "https://app.example.com"
        ));
        assert!(!allows(
            &["https://app.example.com"],
            "https://app.example.com.evil.io"
        ));
        assert!(allows(&["http://localhost:*"], "http://localhost:8080"));
        assert!(!allows(&["http://localhost:*"], "http://localhost.evil.io"));
        assert!(allows(
            &["https://*.example.com"],
            "https://a.b.example.com"
        ));
        assert!(!allows(
            &["https://*.example.com"],
            "https://example.com.evil.io"
        ));
        assert!(OriginPolicy::new(&["https://x".into()]).allows(None));
    }
}
