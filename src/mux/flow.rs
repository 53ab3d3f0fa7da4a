//! A channel's output accounting: the flow-control window, the resume ring and the
//! offsets that tie them together, as plain arithmetic the channel task drives.
//!
//! Offsets are absolute byte counts since the channel opened:
//! `acked ≤ sent ≤ produced (= ring.end())`.
//!
//! The invariant that makes resume exact: **every byte the client has not acknowledged
//! is still in the ring.** The source is read only while `produced − acked < window`,
//! and one read yields at most [`MAX_SOURCE_CHUNK`] bytes, so `produced − acked <
//! window + MAX_SOURCE_CHUNK`; the ring holds at least that much. Acks are clamped to
//! what was sent, so a client cannot bank credit ahead of the output and lift the window.

use crate::source::MAX_SOURCE_CHUNK;

use super::ring::RingBuffer;

/// Where a replay after `attach` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// Offset of the first replayed byte.
    pub from: u64,
    /// Bytes before `from` (and after the client's offset) that are gone.
    pub lost: u64,
}

/// `attach` asked for an offset past the output produced so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPastEnd {
    pub end: u64,
}

/// Window, ring and offsets of one channel's output.
#[derive(Debug)]
pub struct OutputFlow {
    ring: RingBuffer,
    window: u64,
    acked: u64,
    sent: u64,
}

impl OutputFlow {
    /// `window` bytes may be unacknowledged; the ring keeps at least `ring_bytes` and
    /// never less than the window plus one read.
    pub fn new(window: usize, ring_bytes: usize) -> Self {
        let window = window.max(1);
        OutputFlow {
            ring: RingBuffer::new(ring_bytes.max(window + MAX_SOURCE_CHUNK)),
            window: window as u64,
            acked: 0,
            sent: 0,
        }
    }

    /// May the channel read more from its source?
    pub fn can_read(&self) -> bool {
        self.ring.end() - self.acked < self.window
    }

    /// Records output read from the source (at most [`MAX_SOURCE_CHUNK`] bytes).
    pub fn produced(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= MAX_SOURCE_CHUNK);
        self.ring.push(data);
    }

    /// Everything produced so far has been handed to the attached socket.
    pub fn sent_all(&mut self) {
        self.sent = self.ring.end();
    }

    /// The client acknowledged `bytes` more; clamped to what was sent.
    pub fn ack(&mut self, bytes: u64) {
        self.acked = self.acked.saturating_add(bytes).min(self.sent);
    }

    /// Has the client acknowledged everything produced?
    pub fn all_acked(&self) -> bool {
        self.acked >= self.ring.end()
    }

    /// Offset just past the newest byte.
    pub fn end(&self) -> u64 {
        self.ring.end()
    }

    /// Starts a new attachment whose client has received `offset` bytes: the ack count
    /// restarts there (what it received counts as delivered) and the replay starts at
    /// `offset`, or at the oldest byte still held if that is later.
    pub fn attach(&mut self, offset: u64) -> Result<Replay, OffsetPastEnd> {
        let end = self.ring.end();
        if offset > end {
            return Err(OffsetPastEnd { end });
        }
        let from = offset.max(self.ring.start());
        self.acked = from;
        self.sent = from;
        Ok(Replay {
            from,
            lost: from - offset,
        })
    }

    /// The held output from `from` to the end, in up to two slices.
    pub fn since(&self, from: u64) -> (&[u8], &[u8]) {
        self.ring.since(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client as real ones behave: it receives what was sent, acks some of what it
    /// received (often less than all of it), and drops at arbitrary points, then
    /// attaches with the count of bytes it received.
    #[derive(Debug, Clone)]
    enum Step {
        /// The source offers a chunk of this size (if the window allows a read).
        Read(usize),
        /// The client acks this fraction (0–100 %) of what it received and did not ack.
        Ack(u8),
        /// The socket drops; output keeps flowing (under the window) while detached.
        /// Frames sent but still in flight are lost with the socket: the client keeps
        /// this fraction (0–100 %) of what it received beyond its acks.
        Drop(u8),
        /// A new socket attaches at the client's received offset.
        Attach,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (1usize..=MAX_SOURCE_CHUNK).prop_map(Step::Read),
            2 => (1usize..=17).prop_map(Step::Read),
            4 => (0u8..=100).prop_map(Step::Ack),
            1 => (0u8..=100).prop_map(Step::Drop),
            1 => Just(Step::Attach),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn every_unacknowledged_byte_is_replayable(
            window in 1usize..300_000,
            ring_extra in 0usize..100_000,
            steps in proptest::collection::vec(step(), 1..200),
        ) {
            // The ring setting may be smaller than the window: the flow sizes it up.
            let mut flow = OutputFlow::new(window, window.saturating_sub(ring_extra));
            let mut stream: Vec<u8> = Vec::new();
            let mut client: Vec<u8> = Vec::new();
            let mut client_acked = 0u64;
            let mut attached = true;
            for s in steps {
                match s {
                    Step::Read(n) => {
                        if !flow.can_read() { continue; }
                        let chunk: Vec<u8> = (0..n).map(|i| ((stream.len() + i) % 251) as u8).collect();
                        flow.produced(&chunk);
                        stream.extend_from_slice(&chunk);
                        if attached {
                            client.extend_from_slice(&chunk);
                            flow.sent_all();
                        }
                        // The unacknowledged output never exceeds a window plus one read.
                        prop_assert!(flow.end() - flow.acked <= (window + MAX_SOURCE_CHUNK) as u64);
                    }
                    Step::Ack(pct) => {
                        if !attached { continue; }
                        let unacked = client.len() as u64 - client_acked;
                        let n = unacked * pct as u64 / 100;
                        client_acked += n;
                        flow.ack(n);
                    }
                    Step::Drop(pct) => {
                        if !attached { continue; }
                        let unacked = client.len() as u64 - client_acked;
                        let kept = client_acked + unacked * pct as u64 / 100;
                        client.truncate(kept as usize);
                        attached = false;
                    }
                    Step::Attach => {
                        let offset = client.len() as u64;
                        let replay = flow.attach(offset).expect("offset within output");
                        prop_assert_eq!(replay.lost, 0, "bytes lost on attach");
                        prop_assert_eq!(replay.from, offset);
                        let (a, b) = flow.since(replay.from);
                        client.extend_from_slice(a);
                        client.extend_from_slice(b);
                        flow.sent_all();
                        client_acked = offset;
                        attached = true;
                        prop_assert_eq!(&client[..], &stream[..]);
                    }
                }
            }
        }
    }

    #[test]
    fn acks_beyond_what_was_sent_are_clamped() {
        let mut flow = OutputFlow::new(100, 100);
        // A client that acks 4 MiB up front banks nothing.
        flow.ack(4 << 20);
        let mut read = 0;
        while flow.can_read() {
            flow.produced(&[0; 10]);
            flow.sent_all();
            read += 10;
        }
        assert_eq!(read, 100);
        flow.ack(1_000);
        assert!(flow.all_acked());
    }

    #[test]
    fn attach_past_the_end_is_refused_and_old_offsets_report_loss() {
        let mut flow = OutputFlow::new(10, 10);
        // More than the ring holds (window + one read).
        for _ in 0..10_000 {
            flow.produced(&[1; 10]);
            flow.sent_all();
            flow.ack(10);
        }
        assert_eq!(flow.attach(100_001), Err(OffsetPastEnd { end: 100_000 }));
        let r = flow.attach(0).expect("attach");
        assert_eq!(r.lost, r.from);
        assert!(r.from > 0);
    }
}
