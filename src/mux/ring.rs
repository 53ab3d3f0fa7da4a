//! A channel's recent output, addressed by absolute byte offset, for resume.

/// Keeps the last `cap` bytes of a stream. Memory grows with use up to `cap`, so an
/// idle channel costs little.
#[derive(Debug)]
pub struct RingBuffer {
    buf: Vec<u8>,
    cap: usize,
    /// Index in `buf` of the oldest byte (once `buf` is full).
    head: usize,
    /// Total bytes ever pushed: the offset just past the newest byte.
    end: u64,
}

impl RingBuffer {
    pub fn new(cap: usize) -> Self {
        RingBuffer {
            buf: Vec::new(),
            cap: cap.max(1),
            head: 0,
            end: 0,
        }
    }

    /// Offset just past the newest byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Offset of the oldest byte still held.
    pub fn start(&self) -> u64 {
        self.end - self.buf.len() as u64
    }

    /// Appends bytes, dropping the oldest beyond capacity.
    pub fn push(&mut self, mut data: &[u8]) {
        self.end += data.len() as u64;
        if data.len() >= self.cap {
            data = &data[data.len() - self.cap..];
            self.buf.clear();
            self.buf.extend_from_slice(data);
            self.head = 0;
            return;
        }
        let room = self.cap - self.buf.len();
        if room > 0 {
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // Full: overwrite from head, wrapping.
        while !data.is_empty() {
            let n = (self.cap - self.head).min(data.len());
            self.buf[self.head..self.head + n].copy_from_slice(&data[..n]);
            self.head = (self.head + n) % self.cap;
            data = &data[n..];
        }
    }

    /// The held bytes from `offset` to the end, as up to two slices in order.
    /// `offset` is clamped to `start()..=end()`.
    pub fn since(&self, offset: u64) -> (&[u8], &[u8]) {
        let offset = offset.clamp(self.start(), self.end);
        let skip = (offset - self.start()) as usize;
        let (a, b) = if self.buf.len() < self.cap {
            (&self.buf[..], &[][..])
        } else {
            (&self.buf[self.head..], &self.buf[..self.head])
        };
        if skip <= a.len() {
            (&a[skip..], b)
        } else {
            (&b[skip - a.len()..], &[][..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &RingBuffer, from: u64) -> Vec<u8> {
        let (a, b) = r.since(from);
        [a, b].concat()
    }

    #[test]
    fn keeps_the_last_bytes_with_offsets() {
        let mut r = RingBuffer::new(8);
        r.push(b"abcde");
        assert_eq!((r.start(), r.end()), (0, 5));
        assert_eq!(collect(&r, 2), b"cde");
        r.push(b"fghij");
        assert_eq!((r.start(), r.end()), (2, 10));
        assert_eq!(collect(&r, 0), b"cdefghij");
        assert_eq!(collect(&r, 7), b"hij");
        r.push(b"0123456789AB");
        assert_eq!((r.start(), r.end()), (14, 22));
        assert_eq!(collect(&r, 14), b"456789AB");
    }

    #[test]
    fn matches_a_naive_model() {
        let mut r = RingBuffer::new(37);
        let mut all = Vec::new();
        let mut seed = 7u32;
        for _ in 0..500 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = (seed >> 16) as usize % 50;
            let chunk: Vec<u8> = (0..n).map(|i| (all.len() + i) as u8).collect();
            r.push(&chunk);
            all.extend_from_slice(&chunk);
            let start = all.len().saturating_sub(37);
            assert_eq!(r.start() as usize, start);
            assert_eq!(collect(&r, start as u64), &all[start..]);
            let mid = (start + all.len()) / 2;
            assert_eq!(collect(&r, mid as u64), &all[mid..]);
        }
    }
}
