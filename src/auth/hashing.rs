//! A small, fixed pool of threads for argon2id.
//!
//! Each hash takes ~19 MiB. Run on tokio's blocking pool, a burst of logins spreads over
//! many threads, and the allocator keeps a per-thread arena of freed hash memory: 625
//! logins left the gateway at 520 MiB RSS. A pool of one thread per core bounds that to
//! a few hashes' worth, and bounds the CPU a login flood can take. The job queue is
//! bounded; callers wait for a place (that wait is the back-pressure).

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

const QUEUE: usize = 256;

fn pool() -> &'static mpsc::Sender<Job> {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 4);
        for i in 0..threads {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("opsgate-argon2-{i}"))
                .spawn(move || loop {
                    let job = {
                        let mut guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                        guard.blocking_recv()
                    };
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                });
        }
        tx
    })
}

/// Runs a password-hashing job on the pool; `None` if the pool is gone.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(f());
    });
    pool().send(job).await.ok()?;
    result.await.ok()
}
