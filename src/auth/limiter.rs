//! Failed-login throttling per client IP and per username.
//!
//! An attempt counts as failed from the moment it starts and is refunded if the password
//! turns out right. Checking the limit first and recording the failure after the
//! (slow) hash let 100 concurrent guesses from one address all be verified with a limit
//! of 5; counting first closes that race. Attempts being verified at once are capped
//! per IP and per username as well.
//!
//! Per IP the limit counts failed attempts. Per username it counts *distinct client
//! addresses* with a failure: one address adds at most one however often it fails, so
//! one address can never lock a user out for everyone else (its own per-IP limit stops
//! it long before); it takes `per_username` different addresses within the window.
//!
//! Every map is bounded: past `MAX_KEYS` expired keys are dropped and then the stalest
//! one is evicted, so a flood of distinct names or addresses costs bounded memory (and,
//! at worst, forgets the oldest attacker). In-flight counters exist only while attempts
//! run.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LoginLimitConfig;

const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct State {
    /// client IP → instants of its recent failed (or still running) attempts.
    by_ip: HashMap<String, VecDeque<Instant>>,
    /// username → client IP → that address's latest failed (or running) attempt.
    by_user: HashMap<String, HashMap<String, Instant>>,
    in_flight_ip: HashMap<String, u32>,
    in_flight_user: HashMap<String, u32>,
}

/// The login throttle.
pub struct LoginLimiter {
    cfg: LoginLimitConfig,
    state: Mutex<State>,
}

/// One login attempt in progress. Counted as a failure unless [`Attempt::succeeded`] is
/// called; the in-flight slots are released on drop.
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    ip: String,
    username: String,
    at: Instant,
}

fn wait_secs(window: Duration, oldest: Instant, now: Instant) -> u64 {
    window.saturating_sub(now.duration_since(oldest)).as_secs() + 1
}

/// Makes room for one more key in `map` (drops keys `expired` says are over, then the
/// stalest by `last`).
fn make_room<V>(
    map: &mut HashMap<String, V>,
    key: &str,
    expired: impl Fn(&V) -> bool,
    last: impl Fn(&V) -> Option<Instant>,
) {
    if map.contains_key(key) || map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, v| !expired(v));
    if map.len() >= MAX_KEYS {
        if let Some(stalest) = map
            .iter()
            .min_by_key(|(_, v)| last(v))
            .map(|(k, _)| k.clone())
        {
            map.remove(&stalest);
        }
    }
}

impl LoginLimiter {
    pub fn new(cfg: LoginLimitConfig) -> Self {
        Self {
            cfg,
            state: Mutex::default(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs.max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned throttle still holds valid counts; keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an attempt: `Err(seconds)` if it must be refused before the password is
    /// looked at; otherwise it is already counted as a failure.
    pub fn begin(&self, ip: &str, username: &str) -> Result<Attempt<'_>, u64> {
        let now = Instant::now();
        let w = self.window();
        let per_ip = self.cfg.per_ip.max(1) as usize;
        let per_user = self.cfg.per_username.max(1) as usize;
        let mut st = self.lock();

        if let Some(q) = st.by_ip.get_mut(ip) {
            while q.front().is_some_and(|t| now.duration_since(*t) >= w) {
                q.pop_front();
            }
            if q.len() >= per_ip {
                return Err(q.front().map_or(1, |t| wait_secs(w, *t, now)));
            }
        }
        if st.in_flight_ip.get(ip).copied().unwrap_or(0) >= self.cfg.in_flight_per_ip {
            return Err(1);
        }
        if let Some(ips) = st.by_user.get_mut(username) {
            ips.retain(|_, t| now.duration_since(*t) < w);
            if ips.len() >= per_user {
                let oldest = ips.values().min().copied().unwrap_or(now);
                return Err(wait_secs(w, oldest, now));
            }
        }
        if st.in_flight_user.get(username).copied().unwrap_or(0) >= self.cfg.in_flight_per_username
        {
            return Err(1);
        }

        // Count it now; `succeeded` refunds.
        make_room(
            &mut st.by_ip,
            ip,
            |q| q.back().is_none_or(|t| now.duration_since(*t) >= w),
            |q| q.back().copied(),
        );
        let q = st.by_ip.entry(ip.to_string()).or_default();
        q.push_back(now);
        while q.len() > per_ip {
            q.pop_front();
        }
        make_room(
            &mut st.by_user,
            username,
            |m| m.values().all(|t| now.duration_since(*t) >= w),
            |m| m.values().max().copied(),
        );
        st.by_user
            .entry(username.to_string())
            .or_default()
            .insert(ip.to_string(), now);
        *st.in_flight_ip.entry(ip.to_string()).or_default() += 1;
        *st.in_flight_user.entry(username.to_string()).or_default() += 1;
        Ok(Attempt {
            limiter: self,
            ip: ip.to_string(),
            username: username.to_string(),
            at: now,
        })
    }
}

impl Attempt<'_> {
    /// The password was right: the attempt no longer counts against the address, and the
    /// address's failures for this username are forgotten.
    pub fn succeeded(self) {
        let mut st = self.limiter.lock();
        if let Some(q) = st.by_ip.get_mut(&self.ip) {
            if let Some(i) = q.iter().rposition(|t| *t == self.at) {
                q.remove(i);
            }
            if q.is_empty() {
                st.by_ip.remove(&self.ip);
            }
        }
        if let Some(ips) = st.by_user.get_mut(&self.username) {
            ips.remove(&self.ip);
            if ips.is_empty() {
                st.by_user.remove(&self.username);
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut st = self.limiter.lock();
        release(&mut st.in_flight_ip, &self.ip);
        release(&mut st.in_flight_user, &self.username);
    }
}

fn release(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_ip: u32, per_username: u32) -> LoginLimiter {
        LoginLimiter::new(LoginLimitConfig {
            per_ip,
            per_username,
            window_secs: 60,
            in_flight_per_ip: 100,
            in_flight_per_username: 100,
        })
    }

    #[test]
    fn ip_limit_blocks_only_that_ip() {
        let l = limiter(3, 10);
        for _ in 0..3 {
            drop(l.begin("1.1.1.1", "alice").expect("allowed"));
        }
        let wait = l.begin("1.1.1.1", "alice").err().expect("blocked");
        assert!((1..=61).contains(&wait));
        assert!(l.begin("2.2.2.2", "alice").is_ok());
    }

    #[test]
    fn attempts_count_before_they_finish() {
        let l = limiter(3, 10);
        let running: Vec<_> = (0..3)
            .map(|_| l.begin("1.1.1.1", "alice").expect("allowed"))
            .collect();
        assert!(l.begin("1.1.1.1", "alice").is_err());
        drop(running);
    }

    #[test]
    fn success_is_refunded() {
        let l = limiter(2, 10);
        drop(l.begin("1.1.1.1", "alice").expect("allowed"));
        for _ in 0..5 {
            l.begin("1.1.1.1", "alice").expect("allowed").succeeded();
        }
        assert!(l.begin("1.1.1.1", "alice").is_ok());
    }

    #[test]
    fn username_limit_counts_addresses_not_attempts() {
        let l = limiter(100, 2);
        for _ in 0..50 {
            drop(l.begin("1.1.1.1", "bob").expect("allowed"));
        }
        assert!(
            l.begin("3.3.3.3", "bob").is_ok(),
            "one address locked bob out"
        );
        assert!(l.begin("4.4.4.4", "bob").is_err());
        assert!(l.begin("4.4.4.4", "carol").is_ok());
    }

    #[test]
    fn in_flight_is_capped() {
        let l = LoginLimiter::new(LoginLimitConfig {
            per_ip: 100,
            per_username: 100,
            window_secs: 60,
            in_flight_per_ip: 2,
            in_flight_per_username: 3,
        });
        let a = l.begin("1.1.1.1", "bob").expect("1");
        let b = l.begin("1.1.1.1", "bob").expect("2");
        assert_eq!(l.begin("1.1.1.1", "bob").err(), Some(1));
        let c = l.begin("2.2.2.2", "bob").expect("3");
        assert_eq!(l.begin("5.5.5.5", "bob").err(), Some(1));
        drop((a, b, c));
        assert!(l.begin("1.1.1.1", "bob").is_ok());
    }
}
