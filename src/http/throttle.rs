//! Password guessing, slowed: failed logins (and share-link passwords) are counted per user
//! name and per client network, and past a few of them each further try must wait a delay
//! that doubles with every failure, up to `MAX_DELAY`. A try that must wait is answered
//! `429` with `Retry-After` before any password is hashed, so a flood costs the server
//! nothing; and at most `PASSWORD_WORKERS` hashes run at once, so even allowed tries
//! cannot take every core.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before delays start (a typo or two, a forgotten caps lock).
const FREE_FAILURES: u32 = 5;
/// The longest delay between two tries.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A name or network with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Entries kept at most; past that, the oldest are forgotten first.
const MAX_ENTRIES: usize = 100_000;
/// Password hashes computed at once (Argon2id takes a core for tens of milliseconds).
pub const PASSWORD_WORKERS: usize = 2;
/// How long a login waits for a hashing slot before it is refused as too busy.
pub const PASSWORD_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    /// A user name (or share link id) tried.
    Name(String),
    /// A client's network: the address for IPv4, its /64 for IPv6 (one host has many).
    Network(IpAddr),
}

fn network(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// When the next try is allowed.
    fn next_try(&self) -> Instant {
        if self.count < FREE_FAILURES {
            return self.last;
        }
        let doublings = (self.count - FREE_FAILURES).min(20);
        self.last + Duration::from_secs(1u64 << doublings).min(MAX_DELAY)
    }
}

/// The failure counts.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Subject, Failures>>,
}

fn subjects(name: &str, addr: Option<IpAddr>) -> impl Iterator<Item = Subject> {
    std::iter::once(Subject::Name(name.to_string())).chain(addr.map(|a| Subject::Network(network(a))))
}

impl LoginThrottle {
    /// `Err(wait)` while a try of `name` from `addr` must wait.
    pub fn check(&self, name: &str, addr: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock().expect("throttle");
        let wait = subjects(name, addr)
            .filter_map(|s| failures.get(&s))
            .map(|f| f.next_try().saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Counts a failed try.
    pub fn failed(&self, name: &str, addr: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().expect("throttle");
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if failures.len() >= MAX_ENTRIES {
                let mut lasts: Vec<Instant> = failures.values().map(|f| f.last).collect();
                let (_, median, _) = lasts.select_nth_unstable(MAX_ENTRIES / 2);
                let median = *median;
                failures.retain(|_, f| f.last > median);
            }
        }
        for s in subjects(name, addr) {
            let f = failures.entry(s).or_insert(Failures { count: 0, last: now });
            if now.saturating_duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    /// A successful login clears its name (the network keeps its count: one user's
    /// success must not clear another's guesses from there).
    pub fn succeeded(&self, name: &str) {
        self.failures.lock().expect("throttle").remove(&Subject::Name(name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double_to_a_cap() {
        let t = LoginThrottle::default();
        let at = Instant::now();
        let addr = Some("192.0.2.7".parse().unwrap());
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("alice", addr, at);
            assert_eq!(t.check("alice", addr, at), Ok(()));
        }
        t.failed("alice", addr, at);
        assert_eq!(t.check("alice", addr, at), Err(Duration::from_secs(1)));
        assert_eq!(t.check("alice", addr, at + Duration::from_secs(1)), Ok(()));
        t.failed("alice", addr, at);
        assert_eq!(t.check("alice", addr, at), Err(Duration::from_secs(2)));
        // Another name from the same address waits too, and so does the name elsewhere.
        assert!(t.check("bob", addr, at).is_err());
        assert!(t.check("alice", Some("198.51.100.1".parse().unwrap()), at).is_err());
        assert_eq!(t.check("bob", Some("198.51.100.1".parse().unwrap()), at), Ok(()));
        for _ in 0..40 {
            t.failed("alice", addr, at);
        }
        assert_eq!(t.check("alice", None, at), Err(MAX_DELAY));
        t.succeeded("alice");
        assert_eq!(t.check("alice", None, at), Ok(()));
        assert!(t.check("alice", addr, at).is_err(), "the network keeps its count");
        assert_eq!(t.check("carol", addr, at + FORGET_AFTER + MAX_DELAY), Ok(()));
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_network() {
        let t = LoginThrottle::default();
        let at = Instant::now();
        for i in 0..FREE_FAILURES + 1 {
            let a: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.failed(&format!("user{i}"), Some(a), at);
        }
        assert!(t.check("new", Some("2001:db8:1:2:ffff::1".parse().unwrap()), at).is_err());
        assert_eq!(t.check("new", Some("2001:db8:1:3::1".parse().unwrap()), at), Ok(()));
        assert_eq!(network("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
