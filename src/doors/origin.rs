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

/// `*` matches a non-empty run of the characters its place allows;
/// everything else matches itself. A `*` right after `:` is a port and
/// matches digits only; any other `*` is part of a host and matches letters,
/// digits, `-` and `.` only. So `http://localhost:*` never matches
/// `http://localhost:3000.evil.com` or `http://localhost:1@evil.com`.
fn glob_match(pattern: &str, text: &str) -> bool {
    glob_match_bytes(pattern.as_bytes(), text.as_bytes(), None)
}

fn glob_match_bytes(pattern: &[u8], text: &[u8], before: Option<u8>) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            let allowed = |c: &u8| match before {
                Some(b':') => c.is_ascii_digit(),
                _ => c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.',
            };
            let run = text.iter().take_while(|c| allowed(c)).count();
            (1..=run).any(|taken| glob_match_bytes(rest, &text[taken..], Some(b'*')))
        }
        Some((&literal, rest)) => {
            text.first() == Some(&literal) && glob_match_bytes(rest, &text[1..], Some(literal))
        }
    }
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

    #[test]
    fn a_wildcard_port_is_digits_and_a_wildcard_host_is_a_host() {
        let port = ["http://localhost:*"];
        assert!(allows(&port, "http://localhost:3000"));
        assert!(!allows(&port, "http://localhost:3000.evil.com"));
        assert!(!allows(&port, "http://localhost:1@evil.com"));
        assert!(!allows(&port, "http://localhost:"));
        assert!(!allows(&port, "http://localhost:80/x"));
        let host = ["https://*.example.com"];
        assert!(!allows(&host, "https://evil.com@a.example.com"));
        assert!(!allows(&host, "https://.example.com"));
        assert!(allows(&host, "https://a-b.c.example.com"));
        let both = ["https://*.example.com:*"];
        assert!(allows(&both, "https://a.example.com:8443"));
        assert!(!allows(&both, "https://a.example.com:8443.evil"));
    }
}
