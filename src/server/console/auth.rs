//! Who may use the console, and proof that a POST comes from its own page.
//!
//! On loopback without an admin token, anyone who reaches the listener may, as with `/admin`.
//! With a token, a request needs `Authorization: Bearer <token>` or the session cookie a
//! browser gets by giving the token once (the login form, or `/console?token=` which is
//! exchanged at once and dropped from the address). The cookie holds a random session id,
//! never the token: `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site's
//! page sends it). Every POST must also carry `X-Console-CSRF`, a value derived from the
//! session (or the process, without one) that only the console's own page is given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use blake2::{Blake2b512, Digest};

use crate::config::Secret;

/// The session cookie's name.
pub const COOKIE: &str = "beckn_console";
/// The header a POST carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-console-csrf";
/// How long a browser session lasts.
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// Who a request comes from, as far as the console can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token is required (loopback), or a bearer token was given.
    Trusted,
    /// A browser with a live session cookie.
    Session(String),
    /// Neither: only the login page and the assets.
    Stranger,
}

/// The console's sessions and the key its CSRF tokens are derived with.
pub struct Guard {
    token: Option<Secret>,
    key: [u8; 32],
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Guard {
    pub fn new(token: Option<Secret>) -> Guard {
        Guard {
            token,
            key: random(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a token is required at all.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `given` is the admin token (compared as digests: no early exit on the first
    /// byte that differs).
    pub fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            None => true,
            Some(t) => {
                Blake2b512::digest(given.as_bytes()) == Blake2b512::digest(t.expose().as_bytes())
            }
        }
    }

    /// Who sent a request with `headers`.
    pub fn caller(&self, headers: &HeaderMap) -> Caller {
        if self.token.is_none() {
            return Caller::Trusted;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| self.token_matches(b)) {
            return Caller::Trusted;
        }
        match session_cookie(headers) {
            Some(id) if self.live(&id) => Caller::Session(id),
            _ => Caller::Stranger,
        }
    }

    fn live(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(id) {
            Some(since) if since.elapsed() < SESSION_LIFE => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    /// Opens a browser session; its id goes in the cookie.
    pub fn open_session(&self) -> String {
        let id = hex::encode(random());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, since| since.elapsed() < SESSION_LIFE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Instant::now());
        id
    }

    /// The CSRF token of `caller`: derived from its session, or from the process alone.
    pub fn csrf(&self, caller: &Caller) -> String {
        let mut h = Blake2b512::new();
        h.update(self.key);
        if let Caller::Session(id) = caller {
            h.update(b"session:");
            h.update(id.as_bytes());
        }
        hex::encode(&h.finalize()[..24])
    }

    /// Whether a POST from `caller` carries its CSRF token.
    pub fn csrf_ok(&self, caller: &Caller, headers: &HeaderMap) -> bool {
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let expected = self.csrf(caller);
        given.is_some_and(|g| Blake2b512::digest(g) == Blake2b512::digest(&expected))
    }

    /// The `Set-Cookie` value of a session.
    pub fn cookie(id: &str) -> String {
        format!(
            "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFE.as_secs()
        )
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

fn random() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // Without the system's randomness there is no safe session id; a zero key would be
    // guessable, so the process refuses rather than run with one.
    if getrandom::fill(&mut bytes).is_err() {
        panic!("the system's random source failed");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn loopback_without_token_trusts_every_caller() {
        let g = Guard::new(None);
        assert_eq!(g.caller(&HeaderMap::new()), Caller::Trusted);
    }

    #[test]
    fn with_a_token_a_caller_needs_it_or_a_live_session() {
        let g = Guard::new(Some(Secret::new("s3cret".to_string())));
        assert_eq!(g.caller(&HeaderMap::new()), Caller::Stranger);
        assert_eq!(
            g.caller(&with("authorization", "Bearer wrong")),
            Caller::Stranger
        );
        assert_eq!(
            g.caller(&with("authorization", "Bearer s3cret")),
            Caller::Trusted
        );
        assert_eq!(
            g.caller(&with("cookie", "beckn_console=made-up")),
            Caller::Stranger
        );
        let id = g.open_session();
        let cookie = format!("other=1; beckn_console={id}");
        assert_eq!(g.caller(&with("cookie", &cookie)), Caller::Session(id));
    }

    #[test]
    fn csrf_tokens_differ_by_session_and_are_checked() {
        let g = Guard::new(Some(Secret::new("t".to_string())));
        let a = Caller::Session(g.open_session());
        let b = Caller::Session(g.open_session());
        assert_ne!(g.csrf(&a), g.csrf(&b));
        assert!(g.csrf_ok(&a, &with(CSRF_HEADER, &g.csrf(&a))));
        assert!(!g.csrf_ok(&a, &with(CSRF_HEADER, &g.csrf(&b))));
        assert!(!g.csrf_ok(&a, &HeaderMap::new()));
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let c = Guard::cookie("abc");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
    }
}
