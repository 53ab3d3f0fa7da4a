//! What became of channels that ended because their program exited.
//!
//! A channel whose program exited ends as soon as its client has acknowledged all
//! output. A client can acknowledge the last bytes and lose its socket before the
//! `exit` and `closed` frames reach it; when it comes back and attaches, it should learn
//! how the program ended, not read `channel_gone` as if the page had been away for
//! minutes. So the registry keeps a small record of each such ending for the grace
//! period, and an `attach` to it is answered with `opened`, the `exit` and `closed`.
//!
//! Bounded in time (the grace period) and in count ([`ENDED_MAX`], oldest forgotten
//! first): a record is about 200 bytes, so the bound is under a megabyte. An operator who
//! ends channels in a loop can push other records out early; their clients then get
//! `channel_gone`, which is what they got before this existed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsgate_protocol::ServerFrame;
use tokio::time::Instant;

/// Ended channels remembered at most, over all users.
pub const ENDED_MAX: usize = 4096;

/// How one channel ended, as far as a late `attach` needs to know.
#[derive(Debug, Clone)]
pub struct Ending {
    /// The login that may attach (the same rule as for a live channel).
    pub login_id: Arc<str>,
    /// The offset just past the last output byte.
    pub end: u64,
    /// Input bytes the channel had taken in total.
    pub input_received: u64,
    /// The `exit` frame (its `ch` is set per attach), if the program reported one.
    pub exit: Option<ServerFrame>,
}

/// The remembered endings, oldest first.
#[derive(Default)]
pub struct EndedChannels {
    inner: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    by_id: HashMap<Arc<str>, (Instant, Ending)>,
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Records {
    fn forget_older_than(&mut self, keep: Duration, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= keep && self.order.len() < ENDED_MAX {
                break;
            }
            // A channel id is random and ends once, so its map entry is this record's.
            if let Some((_, id)) = self.order.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }
}

impl EndedChannels {
    /// Remembers that channel `id` ended as `ending`, for `keep`.
    pub fn remember(&self, id: Arc<str>, ending: Ending, keep: Duration) {
        let now = Instant::now();
        let Ok(mut r) = self.inner.lock() else {
            return;
        };
        r.forget_older_than(keep, now);
        r.order.push_back((now, id.clone()));
        r.by_id.insert(id, (now, ending));
    }

    /// How channel `id` ended, if it ended within `keep` and is still remembered.
    pub fn get(&self, id: &str, keep: Duration) -> Option<Ending> {
        let r = self.inner.lock().ok()?;
        let (at, ending) = r.by_id.get(id)?;
        (at.elapsed() <= keep).then(|| ending.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map_or(0, |r| r.by_id.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(end: u64) -> Ending {
        Ending {
            login_id: "login".into(),
            end,
            input_received: 0,
            exit: None,
        }
    }

    #[test]
    fn endings_are_forgotten_after_the_grace_period() {
        let e = EndedChannels::default();
        let keep = Duration::from_millis(50);
        e.remember("a".into(), ending(5), keep);
        assert_eq!(e.get("a", keep).map(|x| x.end), Some(5));
        std::thread::sleep(Duration::from_millis(80));
        assert!(e.get("a", keep).is_none());
        // The next record sweeps the expired one out of memory.
        e.remember("b".into(), ending(1), keep);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn the_count_is_bounded_and_the_oldest_go_first() {
        let e = EndedChannels::default();
        let keep = Duration::from_secs(300);
        for i in 0..ENDED_MAX + 10 {
            e.remember(format!("c{i}").into(), ending(i as u64), keep);
        }
        assert_eq!(e.len(), ENDED_MAX);
        assert!(e.get("c0", keep).is_none());
        assert!(e.get("c9", keep).is_none());
        assert!(e.get(&format!("c{}", ENDED_MAX + 9), keep).is_some());
    }
}
