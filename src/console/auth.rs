//! Who is looking at the console: one-time sign-in links, sessions, CSRF tokens and the limit on
//! sign-in attempts. No I/O and no clock of its own: every call is given the time, so the tests
//! move time by hand.
//!
//! - A **sign-in link** is issued to an OS user through the control socket (`ccpayout console`,
//!   the user from the socket's peer credentials). Its token is 32 random bytes; the console
//!   keeps only its SHA-256. It works once, within [`LINK_TTL_MS`].
//! - A **session** starts when a link is redeemed. Its id (32 random bytes, kept hashed too) is
//!   the cookie; it ends after the configured idle time without a request, or at sign-out.
//! - A **CSRF token** is an HMAC of the session's key under a secret drawn when the daemon
//!   started: every form carries it and every POST must send it back. Nothing to store.
//! - **Attempts**: a client address that presented [`MAX_FAILURES`] unknown, used or expired
//!   tokens within [`FAILURE_WINDOW_MS`] is refused until the window passes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long a sign-in link works.
pub const LINK_TTL_MS: i64 = 5 * 60 * 1000;
/// Failed sign-in attempts one address may make within [`FAILURE_WINDOW_MS`].
pub const MAX_FAILURES: usize = 5;
/// The window failed attempts are counted in.
pub const FAILURE_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Used or expired links are remembered this long, to say why they no longer work.
const SPENT_KEPT_MS: i64 = 60 * 60 * 1000;

/// Why a sign-in link does not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such link was ever issued (or the daemon restarted since).
    Unknown,
    /// The link was used already: each works once.
    Used,
    /// The link is older than five minutes.
    Expired,
    /// Too many failed attempts from this address lately.
    Limited,
}

impl Refusal {
    /// The words the sign-in page shows.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Unknown => {
                "This sign-in link is not valid (links from before the daemon last restarted no longer work). Run `ccpayout console` for a new one."
            }
            Refusal::Used => {
                "This sign-in link was already used: each link works once. Run `ccpayout console` for a new one."
            }
            Refusal::Expired => {
                "This sign-in link has expired: a link works for 5 minutes. Run `ccpayout console` for a new one."
            }
            Refusal::Limited => "Too many failed sign-in attempts from your address; wait 10 minutes and try again.",
        }
    }

    /// The label in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Used => "used",
            Refusal::Expired => "expired",
            Refusal::Limited => "limited",
        }
    }
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The name their actions are recorded with: the OS user the link was issued to, or the
    /// user the trusted proxy named.
    pub user: String,
    /// What the CSRF token is derived from.
    key: String,
    pub started_ms: i64,
    last_seen_ms: i64,
}

impl Session {
    /// What tells this session from every other (not its cookie value, which is secret).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A session for a user a trusted proxy authenticated: no cookie, one per user.
    pub fn from_proxy(user: &str, now_ms: i64) -> Session {
        Session {
            user: user.to_owned(),
            key: format!("proxy:{user}"),
            started_ms: now_ms,
            last_seen_ms: now_ms,
        }
    }
}

#[derive(Debug)]
struct Link {
    user: String,
    issued_ms: i64,
    used: bool,
}

/// Links, sessions and attempts of one console.
pub struct Auth {
    secret: [u8; 32],
    idle_ms: i64,
    links: Mutex<HashMap<[u8; 32], Link>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, Vec<i64>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("idle_ms", &self.idle_ms)
            .finish_non_exhaustive()
    }
}

/// 32 bytes from the operating system's random source.
fn random() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// A new console's authentication, with a fresh secret: links and sessions of an earlier
    /// process do not carry over.
    pub fn new(idle: std::time::Duration) -> Auth {
        Auth::with_secret(random(), idle)
    }

    fn with_secret(secret: [u8; 32], idle: std::time::Duration) -> Auth {
        Auth {
            secret,
            idle_ms: i64::try_from(idle.as_millis()).unwrap_or(i64::MAX),
            links: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// A new one-time sign-in token for `user`.
    pub fn issue_link(&self, user: &str, now_ms: i64) -> String {
        let token = hex::encode(random());
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, l| now_ms - l.issued_ms < SPENT_KEPT_MS);
        links.insert(
            hash(&token),
            Link {
                user: user.to_owned(),
                issued_ms: now_ms,
                used: false,
            },
        );
        token
    }

    /// Whether `from` may try a token now.
    fn limited(&self, from: IpAddr, now_ms: i64) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let list = failures.entry(from).or_default();
        list.retain(|t| now_ms - t < FAILURE_WINDOW_MS);
        list.len() >= MAX_FAILURES
    }

    fn failed(&self, from: IpAddr, now_ms: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, list| list.last().is_some_and(|t| now_ms - t < FAILURE_WINDOW_MS));
        failures.entry(from).or_default().push(now_ms);
    }

    /// Who `token` would sign in, without using it up (the page that asks to confirm). A bad
    /// token counts as a failed attempt.
    pub fn peek(&self, token: &str, from: IpAddr, now_ms: i64) -> Result<String, Refusal> {
        self.check(token, from, now_ms, false)
    }

    /// Uses `token` up and starts a session: returns the session id (the cookie's value).
    pub fn redeem(&self, token: &str, from: IpAddr, now_ms: i64) -> Result<(String, Session), Refusal> {
        let user = self.check(token, from, now_ms, true)?;
        let id = hex::encode(random());
        let session = Session {
            user,
            key: format!("session:{}", hex::encode(hash(&id))),
            started_ms: now_ms,
            last_seen_ms: now_ms,
        };
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash(&id), session.clone());
        Ok((id, session))
    }

    /// Who `token` signs in, using it up when `use_it`; a refusal counts as a failed attempt.
    fn check(&self, token: &str, from: IpAddr, now_ms: i64, use_it: bool) -> Result<String, Refusal> {
        if self.limited(from, now_ms) {
            return Err(Refusal::Limited);
        }
        let verdict = {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            match links.get_mut(&hash(token.trim())) {
                None => Err(Refusal::Unknown),
                Some(link) if link.used => Err(Refusal::Used),
                Some(link) if now_ms - link.issued_ms >= LINK_TTL_MS || now_ms < link.issued_ms => {
                    Err(Refusal::Expired)
                }
                Some(link) => {
                    if use_it {
                        link.used = true;
                    }
                    Ok(link.user.clone())
                }
            }
        };
        if verdict.is_err() {
            self.failed(from, now_ms);
        }
        verdict
    }

    /// The session of cookie value `id`, if it is live; each request moves its idle deadline.
    pub fn session(&self, id: &str, now_ms: i64) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = hash(id);
        let live = sessions
            .get(&key)
            .is_some_and(|s| now_ms - s.last_seen_ms < self.idle_ms);
        if !live {
            sessions.remove(&key);
            return None;
        }
        let session = sessions.get_mut(&key)?;
        session.last_seen_ms = now_ms;
        Some(session.clone())
    }

    /// Ends the session of cookie value `id`.
    pub fn sign_out(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash(id));
    }

    /// Sessions not idle for longer than the timeout (the ones that expired are dropped).
    pub fn active_sessions(&self, now_ms: i64) -> u64 {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| now_ms - s.last_seen_ms < self.idle_ms);
        sessions.len() as u64
    }

    /// The CSRF token of `session`: what its forms carry.
    pub fn csrf(&self, session: &Session) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"ccpayout-console-csrf\0");
        mac.update(session.key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_ok(&self, session: &Session, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        let Ok(given) = hex::decode(token.trim()) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"ccpayout-console-csrf\0");
        mac.update(session.key.as_bytes());
        mac.verify_slice(&given).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn auth() -> Auth {
        Auth::with_secret([7; 32], Duration::from_secs(30 * 60))
    }

    #[test]
    fn a_link_works_once_within_five_minutes() {
        let a = auth();
        let t0 = 1_000_000;
        let token = a.issue_link("alice", t0);
        assert_eq!(token.len(), 64);
        assert_eq!(
            a.peek(&token, HOME, t0 + 1000),
            Ok("alice".to_owned()),
            "peeking does not use it"
        );
        let (id, session) = a.redeem(&token, HOME, t0 + 2000).unwrap();
        assert_eq!(session.user, "alice");
        assert_eq!(a.session(&id, t0 + 3000).unwrap().user, "alice");
        assert_eq!(a.redeem(&token, HOME, t0 + 4000).unwrap_err(), Refusal::Used);

        let late = a.issue_link("bob", t0);
        assert_eq!(
            a.redeem(&late, HOME, t0 + LINK_TTL_MS - 1).map(|(_, s)| s.user),
            Ok("bob".into())
        );
        let expired = a.issue_link("bob", t0);
        assert_eq!(
            a.redeem(&expired, HOME, t0 + LINK_TTL_MS).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(a.redeem("00ff", HOME, t0).unwrap_err(), Refusal::Unknown);
    }

    #[test]
    fn a_session_ends_when_idle_or_signed_out() {
        let a = auth();
        let t0 = 5_000_000;
        let (id, _) = a.redeem(&a.issue_link("alice", t0), HOME, t0).unwrap();
        let idle = 30 * 60 * 1000;
        // Each request moves the deadline.
        assert!(a.session(&id, t0 + idle - 1).is_some());
        assert!(a.session(&id, t0 + 2 * idle - 2).is_some());
        assert_eq!(a.active_sessions(t0 + 2 * idle - 2), 1);
        assert!(a.session(&id, t0 + 3 * idle).is_none(), "idle past the timeout");
        assert_eq!(a.active_sessions(t0 + 3 * idle), 0);
        let (id, _) = a.redeem(&a.issue_link("alice", t0), HOME, t0).unwrap();
        a.sign_out(&id);
        assert!(a.session(&id, t0 + 1).is_none());
        assert!(a.session("not-a-session", t0).is_none());
    }

    #[test]
    fn failed_attempts_are_limited_per_address() {
        let a = auth();
        let t0 = 9_000_000;
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
        for i in 0..MAX_FAILURES as i64 {
            assert_eq!(a.peek("bad", other, t0 + i).unwrap_err(), Refusal::Unknown);
        }
        let good = a.issue_link("alice", t0);
        assert_eq!(
            a.redeem(&good, other, t0 + 10).unwrap_err(),
            Refusal::Limited,
            "even a good link waits"
        );
        // Another address is not held up, and the window passes.
        assert!(a.peek(&good, HOME, t0 + 10).is_ok());
        let later = t0 + FAILURE_WINDOW_MS + 10;
        assert!(a.redeem(&a.issue_link("alice", later), other, later).is_ok());
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = auth();
        let (_, alice) = a.redeem(&a.issue_link("alice", 0), HOME, 0).unwrap();
        let (_, alice2) = a.redeem(&a.issue_link("alice", 0), HOME, 0).unwrap();
        let token = a.csrf(&alice);
        assert!(a.csrf_ok(&alice, Some(&token)));
        assert!(!a.csrf_ok(&alice2, Some(&token)), "another session of the same user");
        assert!(!a.csrf_ok(&alice, None));
        assert!(!a.csrf_ok(&alice, Some("")));
        assert!(!a.csrf_ok(&alice, Some("zz")));
        let proxied = Session::from_proxy("carol", 0);
        assert!(a.csrf_ok(&proxied, Some(&a.csrf(&Session::from_proxy("carol", 99)))));
        assert!(!a.csrf_ok(&proxied, Some(&token)));
        // Another process (another secret) does not accept this one's tokens.
        let b = Auth::with_secret([8; 32], Duration::from_secs(60));
        assert!(!b.csrf_ok(&alice, Some(&token)));
    }
}
