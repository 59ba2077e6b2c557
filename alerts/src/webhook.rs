//! The SSRF guard on Slack webhook URLs.
//!
//! A webhook URL is an address the service will POST to, so a tenant admin
//! could otherwise point it at internal services. A URL is accepted only with
//! `https` (plain `http` only when explicitly allowed, for local testing), no
//! user info, and a host that is on the allow-list exactly (default
//! `hooks.slack.com`), on the scheme's default port unless `host:port` (or
//! `host:*`, any port: for tests) is listed (a port is how an allowed host's
//! other services would be reached).
//! An IP literal passes only if it is itself listed, and
//! link-local or unspecified addresses never pass. The check runs when the URL
//! is saved and again before every delivery, so narrowing the allow-list takes
//! effect at once.
//!
//! Not covered: a listed host name whose DNS answer points inward. Keep the
//! allow-list to hosts you trust (Slack's).

use std::net::IpAddr;

use reqwest::Url;

/// Which webhook URLs may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Host names (or IP literals) allowed, compared case-insensitively.
    pub allowed_hosts: Vec<String>,
    /// Whether plain `http` is allowed (local testing only).
    pub allow_insecure: bool,
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a valid URL")]
    Malformed,
    #[error("the scheme must be https")]
    Scheme,
    #[error("the URL must not carry a user name or password")]
    UserInfo,
    #[error("the URL has no host")]
    NoHost,
    #[error("link-local and unspecified addresses are never allowed")]
    ForbiddenAddress,
    #[error("the host is not on the allow-list (FLAGMETER_WEBHOOK_ALLOWED_HOSTS)")]
    HostNotAllowed,
    #[error(
        "a port other than the scheme's default needs host:port on the allow-list (FLAGMETER_WEBHOOK_ALLOWED_HOSTS)"
    )]
    PortNotAllowed,
}

impl WebhookPolicy {
    /// Parses and checks a webhook URL.
    pub fn check(&self, raw: &str) -> Result<Url, Refused> {
        let url = Url::parse(raw.trim()).map_err(|_| Refused::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err(Refused::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::UserInfo);
        }
        let host = url.host_str().ok_or(Refused::NoHost)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>()
            && is_forbidden(ip)
        {
            return Err(Refused::ForbiddenAddress);
        }
        let listed = |name: &str| {
            self.allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
        };
        match url.port() {
            None if listed(bare) => Ok(url),
            None => Err(Refused::HostNotAllowed),
            Some(port) if listed(&format!("{host}:{port}")) || listed(&format!("{host}:*")) => {
                Ok(url)
            }
            Some(_) if listed(bare) => Err(Refused::PortNotAllowed),
            Some(_) => Err(Refused::HostNotAllowed),
        }
    }
}

fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A webhook URL with its secret part hidden: scheme, host, port and the
/// first path segment stay, the rest becomes `****`.
pub fn mask(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) => {
            let first = url.path_segments().and_then(|mut s| s.next()).unwrap_or("");
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/{first}/****",
                url.scheme(),
                url.host_str().unwrap_or("")
            )
        }
        Err(_) => "****".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy listing the one `host` (as configured: `name`, `name:port`
    /// or `name:*`), https only.
    fn allowing(host: &str) -> WebhookPolicy {
        WebhookPolicy {
            allowed_hosts: vec![host.into()],
            allow_insecure: false,
        }
    }

    fn slack_only() -> WebhookPolicy {
        allowing("hooks.slack.com")
    }

    #[test]
    fn a_port_other_than_the_default_needs_host_and_port_listed() {
        let policy = slack_only();
        assert_eq!(
            policy.check("https://hooks.slack.com:6379/x"),
            Err(Refused::PortNotAllowed)
        );
        assert!(policy.check("https://hooks.slack.com:443/x").is_ok());
        let any_port = allowing("localhost:*");
        assert!(any_port.check("https://localhost:9000/hook").is_ok());
        assert_eq!(
            any_port.check("https://localhost/hook"),
            Err(Refused::HostNotAllowed)
        );
        let with_port = allowing("127.0.0.1:8443");
        assert!(with_port.check("https://127.0.0.1:8443/hook").is_ok());
        assert_eq!(
            with_port.check("https://127.0.0.1:9000/hook"),
            Err(Refused::HostNotAllowed)
        );
        assert_eq!(
            mask("https://hooks.slack.com:6379/services/T0/secret"),
            "https://hooks.slack.com:6379/services/****"
        );
    }

    #[test]
    fn a_slack_webhook_passes() {
        let url = slack_only()
            .check("https://hooks.slack.com/services/T0/B0/secret")
            .unwrap();
        assert_eq!(url.host_str(), Some("hooks.slack.com"));
        assert!(
            slack_only()
                .check("https://HOOKS.slack.com/services/x")
                .is_ok()
        );
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let cases = [
            ("http://hooks.slack.com/services/x", Refused::Scheme),
            ("ftp://hooks.slack.com/x", Refused::Scheme),
            ("file:///etc/passwd", Refused::Scheme),
            ("javascript:alert(1)", Refused::Scheme),
            ("https://user:pw@hooks.slack.com/x", Refused::UserInfo),
            ("https://evil.example.com/x", Refused::HostNotAllowed),
            (
                "https://hooks.slack.com.evil.example/x",
                Refused::HostNotAllowed,
            ),
            ("https://127.0.0.1/x", Refused::HostNotAllowed),
            ("https://10.0.0.8/x", Refused::HostNotAllowed),
            ("https://[::1]/x", Refused::HostNotAllowed),
            (
                "https://169.254.169.254/latest/meta-data",
                Refused::ForbiddenAddress,
            ),
            ("https://[fe80::1]/x", Refused::ForbiddenAddress),
            ("https://0.0.0.0/x", Refused::ForbiddenAddress),
            ("not a url", Refused::Malformed),
        ];
        for (url, reason) in cases {
            assert_eq!(slack_only().check(url).unwrap_err(), reason, "{url}");
        }
    }

    #[test]
    fn a_listed_loopback_passes_and_http_only_when_insecure_is_allowed() {
        let strict = allowing("127.0.0.1:*");
        let local = WebhookPolicy {
            allow_insecure: true,
            ..strict.clone()
        };
        assert!(local.check("http://127.0.0.1:8080/hook").is_ok());
        assert_eq!(
            strict.check("http://127.0.0.1:8080/hook").unwrap_err(),
            Refused::Scheme
        );
        let listed_link_local = WebhookPolicy {
            allowed_hosts: vec!["169.254.169.254".into()],
            ..local
        };
        assert_eq!(
            listed_link_local
                .check("http://169.254.169.254/")
                .unwrap_err(),
            Refused::ForbiddenAddress
        );
    }

    #[test]
    fn masking_hides_the_secret_path() {
        assert_eq!(
            mask("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/services/****"
        );
        assert_eq!(mask("garbage"), "****");
    }
}
