//! The `job` channel's source: one more source behind the same contract as terminals
//! and tools. It sends the current state of every target and the summary first (the
//! channel keeps the latest event per key and replays them on attach), then live
//! progress from the job's broadcast until the job ends.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::model::{Job, JobState};
use super::runner::{job_event, target_event};
use crate::app::App;
use crate::source::{Source, SourceEvent, Stopper};

/// A job channel's event queue (the channel's own window bounds the rest).
const WATCH_QUEUE: usize = 64;

/// A `job` channel's source: the current state of every target and the summary
/// first, then live progress until the job ends (`exit` 0 if it succeeded, else 1).
pub fn source(app: &Arc<App>, stored: Job) -> Source {
    let (ev_tx, ev_rx) = mpsc::channel(WATCH_QUEUE);
    let (ctl_tx, _ctl_rx) = mpsc::channel(1);
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    // Subscribe before taking the snapshot, so nothing falls between them.
    // Only the snapshot and a receiver: holding the sender would keep the stream open
    // after the job ends.
    let (live, mut rx) = match app.jobs.live.get(&stored.id) {
        Some(l) => (Some(l.snapshot.clone()), Some(l.events.subscribe())),
        None => (None, None),
    };
    tokio::spawn(async move {
        let snapshot = |live: &Option<Arc<Mutex<Job>>>| {
            live.as_ref()
                .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .unwrap_or_else(|| stored.clone())
        };
        let send_all = |job: Job, tx: mpsc::Sender<SourceEvent>| async move {
            for i in 0..job.targets.len() {
                let (key, event) = target_event(&job, i);
                if tx.send(SourceEvent::Progress { key, event }).await.is_err() {
                    return false;
                }
            }
            if let Some((key, event)) = super::external::output_snapshot(&job) {
                if tx.send(SourceEvent::Progress { key, event }).await.is_err() {
                    return false;
                }
            }
            let (key, event) = job_event(&job);
            tx.send(SourceEvent::Progress { key, event }).await.is_ok()
        };
        let mut last = snapshot(&live);
        if !send_all(last.clone(), ev_tx.clone()).await {
            return;
        }
        if let Some(rx) = rx.as_mut() {
            loop {
                let r = tokio::select! {
                    r = rx.recv() => r,
                    _ = &mut stop_rx => return,
                };
                match r {
                    Ok((key, event)) => {
                        if ev_tx
                            .send(SourceEvent::Progress { key, event })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow for the live stream: start again from the state.
                        if !send_all(snapshot(&live), ev_tx.clone()).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            last = snapshot(&live);
        }
        let code = if last.state == JobState::Succeeded {
            0
        } else {
            1
        };
        if last.state.is_done() {
            let _ = ev_tx
                .send(SourceEvent::Exit {
                    code: Some(code),
                    signal: None,
                })
                .await;
        }
    });
    Source {
        events: crate::source::queue_stream(ev_rx),
        control: ctl_tx,
        stopper: Stopper::Signal(stop_tx),
    }
}
