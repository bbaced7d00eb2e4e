//! Logging (tracing to stderr, level from `RUST_LOG`, default `info`) and
//! metrics (Prometheus, see [`metrics`]).

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber. Call once, from `main`.
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `url` fit for a log line: any user info (`user:password@`) before the
/// host is replaced by `***`, so credentials in a webhook, JWKS or Redis
/// URL never reach the logs. Text that is not a URL is returned as it is.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn user_info_never_reaches_a_log_line() {
        assert_eq!(
            redact_url("https://user:pass@hooks.example.com/in?x=@y"),
            "https://***@hooks.example.com/in?x=@y"
        );
        assert_eq!(
            redact_url("redis://:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("http://a@b@c/"), "http://***@c/");
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
