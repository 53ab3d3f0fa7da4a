//! Jobs that another module runs itself (an app's start or stop, `crate::apps`): the
//! same stored [`Job`] record, the same `GET /api/jobs/{id}`, cancel and `job` channel
//! as fleet jobs, but the work is one remote command whose output streams live.
//!
//! Output travels as `progress` events `{"event":"output","job_id","offset","data"}`
//! (`offset`: the byte offset of `data` in the command's whole output), keyed
//! `output:<offset>` so a re-attaching socket gets them again. The job keeps only the
//! last `cap` bytes of output (the end is where an error is); a watcher that opens the
//! channel later first gets that tail as one event with `"snapshot":true` and `end`
//! (the offset just past it): live events with an `offset` below `end` are already in it.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::model::{self, CommandOutput, Job, JobState, TargetError, TargetState};
use super::runner::{job_event, target_event, LiveJob};
use super::JobError;
use crate::app::App;
use crate::store;

/// Largest `data` of one output event; longer reads are split.
const OUTPUT_EVENT_BYTES: usize = 4096;

/// A running external job: its owner (the caller) reports through it.
pub struct ExternalJob {
    app: Arc<App>,
    job: Job,
    live: LiveJob,
    cancel_rx: watch::Receiver<bool>,
    /// Total output bytes seen.
    offset: u64,
    /// The last `cap` bytes of output.
    tail: Vec<u8>,
    cap: usize,
    /// The start of a character whose other bytes have not arrived (at most 3 bytes):
    /// held back so no event ends in half a character, which its watcher would show as
    /// U+FFFD (SSH packets and 4 KiB events split output anywhere).
    carry: Vec<u8>,
}

/// How many bytes at the end of `b` begin a UTF-8 character that `b` does not finish.
fn incomplete_suffix(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let byte = b[b.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: its lead is further back
        }
        let need = match byte {
            0xF0..=0xF4 => 4,
            0xE0..=0xEF => 3,
            0xC2..=0xDF => 2,
            _ => 1, // ASCII, or a byte no character starts with
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// The output-tail event for a watcher that opens the channel of an external job.
pub fn output_snapshot(job: &Job) -> Option<(String, Map<String, Value>)> {
    if !matches!(job.kind, model::JobType::AppStart | model::JobType::AppStop) {
        return None;
    }
    let out = job.targets.first()?.output.as_ref()?.first()?;
    let mut m = Map::new();
    m.insert("event".into(), json!("output"));
    m.insert("job_id".into(), json!(job.id));
    m.insert("snapshot".into(), json!(true));
    m.insert("data".into(), json!(out.output));
    m.insert("end".into(), json!(out.bytes.unwrap_or(0)));
    Some(("output".to_string(), m))
}

impl ExternalJob {
    /// Registers `job` (already stored, one target) as running here, so its channel
    /// streams live and `POST /api/jobs/{id}/cancel` reaches [`ExternalJob::cancelled`].
    pub fn start(app: &Arc<App>, job: Job, cap: usize) -> ExternalJob {
        let (live, cancel_rx) = LiveJob::register(app, &job);
        ExternalJob {
            app: app.clone(),
            job,
            live,
            cancel_rx,
            offset: 0,
            tail: Vec::new(),
            cap: cap.max(1024),
            carry: Vec::new(),
        }
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.job.id
    }

    fn publish(&self, ev: (String, Map<String, Value>)) {
        *self.live.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = self.job.clone();
        let _ = self.live.events.send(ev);
    }

    async fn persist(&self) {
        let j = self.job.clone();
        if let Err(e) = self
            .app
            .store
            .write(move |tx| -> Result<(), JobError> { model::put(tx, &j) })
            .await
        {
            tracing::error!(error = %e, job = %self.job.id, "writing the job failed");
        }
    }

    /// The job and its target are running `command`.
    pub async fn running(&mut self, command: &str) {
        self.job.state = JobState::Running;
        if let Some(t) = self.job.targets.first_mut() {
            t.state = TargetState::Running;
            t.attempts = 1;
            t.started_at = Some(store::now());
            t.output = Some(vec![CommandOutput {
                command: command.to_string(),
                output: String::new(),
                bytes: Some(0),
            }]);
        }
        self.persist().await;
        self.publish(target_event(&self.job, 0));
        self.publish(job_event(&self.job));
    }

    /// Streams output to watchers and keeps it in the bounded tail, in events of whole
    /// characters.
    pub fn output(&mut self, data: &[u8]) {
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.extend_from_slice(data);
        let whole = bytes.len() - incomplete_suffix(&bytes);
        self.carry = bytes.split_off(whole);
        self.emit(&bytes);
    }

    fn emit(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let mut n = data.len().min(OUTPUT_EVENT_BYTES);
            if n < data.len() {
                // Never 0: the event size is far more than a character's 3 held bytes.
                n -= incomplete_suffix(&data[..n]);
            }
            let (piece, rest) = data.split_at(n);
            data = rest;
            let mut m = Map::new();
            m.insert("event".into(), json!("output"));
            m.insert("job_id".into(), json!(self.job.id));
            m.insert("offset".into(), json!(self.offset));
            m.insert("data".into(), json!(String::from_utf8_lossy(piece)));
            let key = format!("output:{}", self.offset);
            self.offset += piece.len() as u64;
            self.tail.extend_from_slice(piece);
            if self.tail.len() > self.cap {
                // Oldest output goes first: the end of a failed command says why. The
                // cut moves past a character's continuation bytes, so the kept tail does
                // not start with half of one.
                let mut cut = self.tail.len() - self.cap;
                cut += self
                    .tail
                    .iter()
                    .skip(cut)
                    .take(3)
                    .take_while(|b| **b & 0xC0 == 0x80)
                    .count();
                self.tail.drain(..cut);
            }
            self.sync_output();
            self.publish((key, m));
        }
    }

    fn sync_output(&mut self) {
        let dropped = self.offset - self.tail.len() as u64;
        let mut text = String::new();
        if dropped > 0 {
            text.push_str(&format!(
                "[opsgate: the first {dropped} bytes are not kept]\n"
            ));
        }
        text.push_str(&String::from_utf8_lossy(&self.tail));
        if let Some(o) = self
            .job
            .targets
            .first_mut()
            .and_then(|t| t.output.as_mut())
            .and_then(|o| o.first_mut())
        {
            o.output = text;
            o.bytes = Some(self.offset);
        }
    }

    /// The kept output tail as text.
    pub fn output_tail(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }

    /// A receiver that turns `true` when someone cancels the job.
    pub fn cancel_receiver(&self) -> watch::Receiver<bool> {
        self.cancel_rx.clone()
    }

    /// Ends the job: `Ok` succeeded, `Err` failed (or cancelled, code `cancelled`).
    /// Stores it, tells watchers, and unregisters it.
    pub async fn finish(mut self, result: Result<(), TargetError>) {
        // Output that ended inside a character: what there is of it, as U+FFFD.
        let rest = std::mem::take(&mut self.carry);
        self.emit(&rest);
        let started = self.job.targets.first().and_then(|t| t.started_at);
        if let Some(t) = self.job.targets.first_mut() {
            t.duration_ms = started.map(|s| ((store::now() - s).max(0) as u64) * 1000);
            match result {
                Ok(()) => t.state = TargetState::Succeeded,
                Err(e) if e.code == "cancelled" => {
                    t.state = TargetState::Cancelled;
                    t.error = Some(e);
                }
                Err(e) => {
                    t.state = TargetState::Failed;
                    t.error = Some(e);
                }
            }
        }
        self.job.cancel_requested |= *self.cancel_rx.borrow();
        self.job.state = self.job.final_state();
        self.job.finished_at = Some(store::now());
        self.persist().await;
        self.publish(target_event(&self.job, 0));
        self.publish(job_event(&self.job));
        self.app.jobs.live.remove(&self.job.id);
    }
}

#[cfg(test)]
mod tests {
    use super::incomplete_suffix;

    #[test]
    fn an_unfinished_character_at_the_end_is_found() {
        let text = "a✓ü€😀".as_bytes();
        for end in 0..=text.len() {
            let b = &text[..end];
            let whole = b.len() - incomplete_suffix(b);
            assert!(std::str::from_utf8(&b[..whole]).is_ok(), "end {end}");
            // Only an unfinished character is held back, never a finished one.
            assert!(whole + 3 >= end, "end {end}");
            if std::str::from_utf8(b).is_ok() {
                assert_eq!(whole, end, "end {end}");
            }
        }
        // Bytes that are not UTF-8 are passed on (as U+FFFD), not held.
        assert_eq!(incomplete_suffix(b"ab\xff"), 0);
        assert_eq!(incomplete_suffix(b"\x80\x80\x80"), 0);
    }
}
