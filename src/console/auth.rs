//! Who may see the console, and proof that a POST came from its own pages.
//!
//! - `console.auth = "token"`: a sign-in form; the token (from the
//!   environment) is compared by digest in constant time; a session id of
//!   256 random bits goes in a cookie that is HttpOnly, SameSite=Strict and
//!   Secure (unless `console.secure_cookie = false` for loopback HTTP).
//!   People give their name at sign-in: decisions are audited with it.
//! - `console.auth = "proxy"`: the user header (`console.proxy_header`) is
//!   believed only when the connection comes from `console.trusted_proxies`;
//!   from anywhere else a request carrying it is refused.
//! - CSRF: every form that changes something carries an HMAC of the session
//!   (or proxy user) under a key made at start; a POST without the right one
//!   is refused, as is a POST whose `Origin` is another site.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use ring::{digest, hmac};
use serde::Deserialize;

use super::Console;
use crate::config::ConsoleAuth;

pub(crate) const COOKIE: &str = "channel_sync_session";

/// The signed-in person, as pages and decisions see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// Shown on the pages and written to the audit trail.
    pub name: String,
    /// The token the page's forms must send back.
    pub csrf: String,
    session: Option<String>,
}

struct Session {
    user: String,
    expires: Instant,
}

/// Sessions in memory (a restart signs everyone out) and the CSRF key.
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    key: hmac::Key,
}

/// Fills `buf` from the operating system's random source (ring's
/// `SystemRandom`: the daemon carries no `rand`).
fn fill_random(buf: &mut [u8]) -> Result<(), ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new().fill(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Fails only when the operating system gives no randomness.
    pub fn new(hours: u32) -> Result<Sessions, ring::error::Unspecified> {
        let mut key = [0u8; 32];
        fill_random(&mut key)?;
        Ok(Sessions {
            live: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(u64::from(hours.max(1)) * 3600),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    fn csrf(&self, principal: &str) -> String {
        hex(hmac::sign(&self.key, format!("csrf\0{principal}").as_bytes()).as_ref())
    }

    /// A new session for `user`; its id.
    fn open(&self, user: &str) -> Option<String> {
        let mut id = [0u8; 32];
        fill_random(&mut id).ok()?;
        let id = hex(&id);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        live.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
        Some(id)
    }

    fn user(&self, id: &str) -> Option<User> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let s = live.get(id).filter(|s| s.expires > Instant::now())?;
        Some(User {
            name: s.user.clone(),
            csrf: self.csrf(&format!("session\0{id}")),
            session: Some(id.to_string()),
        })
    }

    fn proxy_user(&self, name: &str) -> User {
        User {
            name: name.to_string(),
            csrf: self.csrf(&format!("proxy\0{name}")),
            session: None,
        }
    }

    fn close(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Whether `given` is the CSRF token of `user` (constant time).
pub(crate) fn csrf_ok(user: &User, given: &str) -> bool {
    given.len() == user.csrf.len()
        && given
            .bytes()
            .zip(user.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A POST's `Origin`, when sent, must be this console.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bare = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && bare == host
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, Html(super::pages::refusal(why))).into_response()
}

/// Lets a request through only with a signed-in user, whom it hands on.
pub(crate) async fn require_user(
    State(console): State<Arc<Console>>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: this form came from another site.",
        );
    }
    let user = match console.settings.auth {
        ConsoleAuth::Token => {
            let user = cookie(req.headers(), COOKIE).and_then(|id| console.sessions.user(&id));
            match user {
                Some(u) => u,
                None if req.method() == Method::GET => {
                    return Redirect::to("/login").into_response();
                }
                None => return refused(StatusCode::UNAUTHORIZED, "Sign in first."),
            }
        }
        ConsoleAuth::Proxy => {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let trusted = peer.is_some_and(|ip| console.settings.proxies().contains(&ip));
            let named = req
                .headers()
                .get(console.settings.proxy_header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            match (trusted, named) {
                (true, Some(name)) => console.sessions.proxy_user(&name),
                (false, Some(_)) => {
                    tracing::warn!(peer = ?peer, "Console: user header from an untrusted address refused.");
                    return refused(
                        StatusCode::FORBIDDEN,
                        "Refused: the user header came from an address that is not a trusted proxy.",
                    );
                }
                (_, None) => {
                    return refused(
                        StatusCode::UNAUTHORIZED,
                        "Sign in through the proxy: no user header.",
                    );
                }
            }
        }
    };
    req.extensions_mut().insert(user);
    next.run(req).await
}

/// `GET /login`.
pub(crate) async fn login_form(State(console): State<Arc<Console>>) -> Response {
    match console.settings.auth {
        ConsoleAuth::Proxy => Redirect::to("/").into_response(),
        ConsoleAuth::Token => Html(super::pages::login(None)).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
}

fn same_token(expected: &str, given: &str) -> bool {
    // Digests first: the comparison's time says nothing about the token.
    let a = digest::digest(&digest::SHA256, expected.as_bytes());
    let b = digest::digest(&digest::SHA256, given.as_bytes());
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `POST /login`.
pub(crate) async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if console.settings.auth != ConsoleAuth::Token {
        return refused(StatusCode::NOT_FOUND, "Sign in through the proxy.");
    }
    if !same_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: this form came from another site.",
        );
    }
    let name: String = form.name.trim().chars().take(80).collect();
    let ok = console
        .settings
        .token
        .as_ref()
        .is_some_and(|t| same_token(t.expose(), &form.token));
    if !ok || name.is_empty() {
        // A little slower to guess; the token itself is never logged.
        tokio::time::sleep(Duration::from_millis(250)).await;
        tracing::warn!("Console: sign-in refused.");
        let why = if ok {
            "Give your name."
        } else {
            "Wrong token."
        };
        return (
            StatusCode::UNAUTHORIZED,
            Html(super::pages::login(Some(why))),
        )
            .into_response();
    }
    let Some(id) = console.sessions.open(&name) else {
        tracing::error!("Console: no randomness for a session id.");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    tracing::info!(user = %name, "Console: signed in.");
    let mut cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        console.sessions.ttl.as_secs()
    );
    if console.settings.secure_cookie {
        cookie.push_str("; Secure");
    }
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(console): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if !csrf_ok(&user, &form.csrf) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused: missing or wrong CSRF token.",
        );
    }
    if let Some(id) = &user.session {
        console.sessions.close(id);
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "channel_sync_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    res
}

/// Refuses a state-changing form without the user's CSRF token.
pub(crate) fn check_csrf(user: &User, given: &str) -> Result<(), Box<Response>> {
    if csrf_ok(user, given) {
        Ok(())
    } else {
        Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Refused: missing or wrong CSRF token.",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let s = Sessions::new(1).unwrap();
        let a = s.open("ann").unwrap();
        let b = s.open("bob").unwrap();
        let ua = s.user(&a).unwrap();
        let ub = s.user(&b).unwrap();
        assert_eq!(ua.name, "ann");
        assert!(csrf_ok(&ua, &ua.csrf));
        assert!(!csrf_ok(&ua, &ub.csrf), "another session's token");
        assert!(!csrf_ok(&ua, ""), "no token");
        s.close(&a);
        assert!(s.user(&a).is_none(), "signed out");
        assert!(same_token("abc", "abc") && !same_token("abc", "abd"));
    }
}
