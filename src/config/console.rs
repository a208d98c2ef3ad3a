//! `console.*`: the web console (issue 16). Off unless `console.listen` is
//! set; never open without authentication.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// How people sign in to the console.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleAuth {
    /// A login form checking `console.token` (from the environment only).
    #[default]
    Token,
    /// The user header an authenticating proxy sets, trusted only from
    /// `console.trusted_proxies`.
    Proxy,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// The console's own address (e.g. `127.0.0.1:8080`); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    pub auth: ConsoleAuth,
    /// The sign-in token (`CHANNEL_SYNC__CONSOLE__TOKEN`), for `auth = "token"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The header carrying the signed-in user, for `auth = "proxy"`.
    pub proxy_header: String,
    /// Addresses of the proxies allowed to set `proxy_header`.
    pub trusted_proxies: Vec<String>,
    /// The session cookie's `Secure` flag: keep it on behind TLS; turn it
    /// off only for plain HTTP on a loopback address.
    pub secure_cookie: bool,
    /// How long a session lasts after sign-in.
    pub session_hours: u32,
    /// The address people reach the console at (e.g.
    /// `https://channel-sync.example.com`), for links from alerts and the
    /// review digest; no links when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            listen: None,
            auth: ConsoleAuth::Token,
            token: None,
            proxy_header: "X-Forwarded-User".into(),
            trusted_proxies: Vec::new(),
            secure_cookie: true,
            session_hours: 12,
            public_url: None,
        }
    }
}

impl ConsoleSettings {
    /// The console page of one finding, when `public_url` is set.
    pub fn finding_url(&self, key: &str) -> Option<String> {
        let mut url = self.base()?.join("finding").ok()?;
        url.query_pairs_mut().append_pair("key", key);
        Some(url.to_string())
    }

    /// The console's review page, when `public_url` is set.
    pub fn review_url(&self) -> Option<String> {
        Some(self.base()?.join("review").ok()?.to_string())
    }

    /// `public_url` as a base that relative paths join under.
    fn base(&self) -> Option<reqwest::Url> {
        let raw = self.public_url.as_deref()?.trim();
        let with_slash = if raw.ends_with('/') {
            raw.to_string()
        } else {
            format!("{raw}/")
        };
        reqwest::Url::parse(&with_slash).ok()
    }

    /// The trusted proxy addresses, parsed.
    pub fn proxies(&self) -> Vec<std::net::IpAddr> {
        self.trusted_proxies
            .iter()
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url
            && (self.base().is_none()
                || !(url.starts_with("https://") || url.starts_with("http://")))
        {
            return Err(ConfigError::new(
                "console.public_url",
                format!("not an http(s) URL: '{url}'"),
            ));
        }
        let Some(listen) = &self.listen else {
            return Ok(());
        };
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "console.listen",
                format!("not an address: '{listen}' (e.g. 127.0.0.1:8080)"),
            ));
        }
        if self.session_hours == 0 || self.session_hours > 24 * 30 {
            return Err(ConfigError::new(
                "console.session_hours",
                "must be 1 to 720",
            ));
        }
        match self.auth {
            ConsoleAuth::Token => match &self.token {
                Some(t) if t.expose().len() >= 16 => Ok(()),
                Some(_) => Err(ConfigError::new(
                    "console.token",
                    "too short: use at least 16 characters",
                )),
                None => Err(ConfigError::new(
                    "console.token",
                    "needed with console.auth = \"token\": set CHANNEL_SYNC__CONSOLE__TOKEN",
                )),
            },
            ConsoleAuth::Proxy => {
                if self.trusted_proxies.is_empty() {
                    return Err(ConfigError::new(
                        "console.trusted_proxies",
                        "needed with console.auth = \"proxy\": the proxies' addresses",
                    ));
                }
                if let Some(bad) = self
                    .trusted_proxies
                    .iter()
                    .find(|a| a.trim().parse::<std::net::IpAddr>().is_err())
                {
                    return Err(ConfigError::new(
                        "console.trusted_proxies",
                        format!("not an IP address: '{bad}'"),
                    ));
                }
                if axum::http::HeaderName::from_bytes(self.proxy_header.as_bytes()).is_err() {
                    return Err(ConfigError::new(
                        "console.proxy_header",
                        format!("not a header name: '{}'", self.proxy_header),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_join_under_the_public_url_and_keys_are_encoded() {
        let mut c = ConsoleSettings::default();
        assert_eq!(c.finding_url("k"), None, "no public_url, no links");
        c.public_url = Some("https://cs.example.com/console".into());
        assert_eq!(
            c.finding_url("direct_vs_partner:R 1&x").as_deref(),
            Some("https://cs.example.com/console/finding?key=direct_vs_partner%3AR+1%26x")
        );
        assert_eq!(
            c.review_url().as_deref(),
            Some("https://cs.example.com/console/review")
        );
        assert!(c.validate().is_ok());
        c.public_url = Some("cs.example.com".into());
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("console.public_url"), "{e}");
    }
}
