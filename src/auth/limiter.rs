//! Failed-login throttling per client IP and per username.
//!
//! Each key keeps the instants of its recent failures (at most the limit). Both maps are
//! bounded: past `MAX_KEYS` the stalest key is evicted, so a flood of distinct names or
//! addresses costs bounded memory (and, at worst, forgets the oldest attacker).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LoginLimitConfig;

const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Failures {
    map: HashMap<String, VecDeque<Instant>>,
}

impl Failures {
    fn prune(&mut self, key: &str, window: Duration, now: Instant) {
        if let Some(q) = self.map.get_mut(key) {
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
            if q.is_empty() {
                self.map.remove(key);
            }
        }
    }

    /// Seconds until the key may try again, if it is over `limit`.
    fn blocked_for(
        &mut self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Option<u64> {
        self.prune(key, window, now);
        let q = self.map.get(key)?;
        if q.len() < limit as usize {
            return None;
        }
        let oldest = q.front()?;
        let left = window.saturating_sub(now.duration_since(*oldest));
        Some(left.as_secs() + 1)
    }

    fn add(&mut self, key: &str, limit: u32, window: Duration, now: Instant) {
        if !self.map.contains_key(key) && self.map.len() >= MAX_KEYS {
            self.map
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.map.len() >= MAX_KEYS {
                if let Some(stalest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&stalest);
                }
            }
        }
        let q = self.map.entry(key.to_string()).or_default();
        q.push_back(now);
        while q.len() > limit.max(1) as usize {
            q.pop_front();
        }
    }
}

/// The login throttle.
pub struct LoginLimiter {
    cfg: LoginLimitConfig,
    by_ip: Mutex<Failures>,
    by_user: Mutex<Failures>,
}

impl LoginLimiter {
    pub fn new(cfg: LoginLimitConfig) -> Self {
        Self {
            cfg,
            by_ip: Mutex::default(),
            by_user: Mutex::default(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window_secs.max(1))
    }

    /// `Err(seconds)` if this attempt must be refused before checking the password.
    pub fn check(&self, ip: &str, username: &str) -> Result<(), u64> {
        let now = Instant::now();
        let w = self.window();
        let ip_wait = lock(&self.by_ip).blocked_for(ip, self.cfg.per_ip, w, now);
        let user_wait = lock(&self.by_user).blocked_for(username, self.cfg.per_username, w, now);
        match ip_wait.max(user_wait) {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    /// Records a failed attempt.
    pub fn fail(&self, ip: &str, username: &str) {
        let now = Instant::now();
        let w = self.window();
        lock(&self.by_ip).add(ip, self.cfg.per_ip, w, now);
        lock(&self.by_user).add(username, self.cfg.per_username, w, now);
    }
}

fn lock(m: &Mutex<Failures>) -> std::sync::MutexGuard<'_, Failures> {
    // A poisoned throttle still holds valid counts; keep using it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_limit_blocks_only_that_ip() {
        let l = LoginLimiter::new(LoginLimitConfig {
            per_ip: 3,
            per_username: 10,
            window_secs: 60,
        });
        for _ in 0..3 {
            assert!(l.check("1.1.1.1", "alice").is_ok());
            l.fail("1.1.1.1", "alice");
        }
        let wait = l.check("1.1.1.1", "alice").expect_err("blocked");
        assert!((1..=61).contains(&wait));
        assert!(l.check("2.2.2.2", "alice").is_ok());
    }

    #[test]
    fn username_limit_spans_ips() {
        let l = LoginLimiter::new(LoginLimitConfig {
            per_ip: 100,
            per_username: 2,
            window_secs: 60,
        });
        l.fail("1.1.1.1", "bob");
        l.fail("2.2.2.2", "bob");
        assert!(l.check("3.3.3.3", "bob").is_err());
        assert!(l.check("3.3.3.3", "carol").is_ok());
    }
}
