//! Listening: plain HTTP on loopback, HTTPS (rustls) anywhere, connection limits and
//! timeouts, and graceful shutdown.
//!
//! Limits, because every connection holds a file descriptor and some memory:
//! - a total cap (`[http] max_connections`, lowered to three quarters of the fd limit,
//!   which is raised to its hard maximum at start): `accept` waits for a free slot;
//! - a per-address cap (`max_connections_per_ip`, trusted proxies exempt): a connection
//!   over it is closed at once;
//! - HTTP/1 request headers must be complete within `header_read_timeout_secs` (hyper's
//!   timer; it also bounds the wait for the next request on a keep-alive connection);
//! - a connection with no request in flight and no bytes moving for `idle_timeout_secs`
//!   is closed (HTTP/2 too).
//!
//! Both caps count a connection until its socket closes, WebSocket upgrades included:
//! the slot travels with the I/O object into the upgraded stream.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::hosts::ListenPort;
use crate::app::App;
use crate::config::HttpConfig;

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard {
                match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                    Ok(()) => return hard,
                    Err(e) => {
                        tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit")
                    }
                }
            }
            soft
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
            1024
        }
    }
}

/// The total connection cap for an fd limit: a quarter of the descriptors stay free for
/// PTYs, SSH connections, the database and logs.
fn connection_cap(cfg: &HttpConfig, fd_limit: u64) -> usize {
    let room = usize::try_from(fd_limit / 4 * 3)
        .unwrap_or(usize::MAX)
        .max(1);
    cfg.max_connections.min(room)
}

/// Open connections per client address.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection's place in both caps; released when the socket is dropped.
struct Slot {
    per_ip: Option<(Arc<PerIp>, IpAddr)>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((table, ip)) = &self.per_ip {
            let mut open = table.lock();
            if let Some(n) = open.get_mut(ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(ip);
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many requests it is serving.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether any request has started on it.
    served: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
        })
    }
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Decrements the in-flight count when a request's handling ends (or is cancelled).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.served.store(true, Ordering::Relaxed);
        a.touch();
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that records activity and holds the connection's slot.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs a connection until it ends, or drops it (which closes the socket) when
/// - no request has started within `first` of the accept: hyper's header timer starts
///   only once the protocol is known, so a client that sends nothing, or dribbles an
///   HTTP/2 preface, is bounded here;
/// - or no request is in flight and no bytes moved for `idle`.
///
/// After a WebSocket upgrade the connection future is done and the socket lives on in
/// the upgraded stream (the mux's heartbeat watches it).
async fn close_when_idle<F: std::future::Future>(
    conn: F,
    activity: Arc<Activity>,
    first: Duration,
    idle: Duration,
) {
    tokio::pin!(conn);
    loop {
        let served = activity.served.load(Ordering::Relaxed);
        let left = if served {
            idle.saturating_sub(activity.idle_for())
        } else {
            first.saturating_sub(activity.start.elapsed())
        };
        tokio::select! {
            _ = &mut conn => return,
            _ = tokio::time::sleep(left.max(Duration::from_millis(50))) => {
                if !activity.served.load(Ordering::Relaxed) {
                    if activity.start.elapsed() >= first {
                        tracing::debug!("closing a connection that sent no request in time");
                        return;
                    }
                } else if activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.idle_for() >= idle
                {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, tells
/// the mux to close every socket and channel, and waits (bounded) for requests in flight.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let http = app.cfg.http.clone();
    let fd_limit = raise_fd_limit();
    let cap = connection_cap(&http, fd_limit);
    tracing::info!(
        fd_limit,
        max_connections = cap,
        max_connections_per_ip = http.max_connections_per_ip,
        "connection limits"
    );
    let listen_port = ListenPort(
        listener
            .local_addr()
            .map_or(app.cfg.listen.port(), |a| a.port()),
    );
    let idle = Duration::from_secs(http.idle_timeout_secs);
    let first = Duration::from_secs(http.header_read_timeout_secs);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(http.header_read_timeout_secs));
    builder.http2().timer(TokioTimer::new());
    let per_ip = Arc::new(PerIp::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => { backoff = Duration::from_millis(5); c }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let ip = peer.ip();
        let counted = if app.cfg.trusted_proxies.contains(&ip) {
            None
        } else {
            let mut open = per_ip.lock();
            let n = open.entry(ip).or_insert(0);
            if *n >= http.max_connections_per_ip {
                drop(open);
                tracing::debug!(%ip, "connection over the per-address cap closed");
                continue; // drops the stream: closed at once
            }
            *n += 1;
            Some((per_ip.clone(), ip))
        };
        let slot = Slot {
            per_ip: counted,
            _permit: permit,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
            _slot: slot,
        };
        let router = router.clone();
        let act = activity.clone();
        let svc = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req.extensions_mut().insert(listen_port);
            let busy = InFlight::start(&act);
            let call = router.clone().oneshot(req);
            async move {
                let r = call.await;
                drop(busy);
                r
            }
        });
        let svc = TowerToHyperService::new(svc);
        match &tls {
            None => {
                let conn = graceful.watch(
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(io), svc)
                        .into_owned(),
                );
                tokio::spawn(close_when_idle(conn, activity, first, idle));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(io)).await;
                    let Ok(Ok(tls_stream)) = handshake else {
                        return;
                    };
                    let conn = watcher.watch(
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls_stream), svc)
                            .into_owned(),
                    );
                    close_when_idle(conn, activity, first, idle).await;
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: closing sockets and channels");
    app.mux.shutdown();
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 5 s");
    }
    // Channels record their close in the audit log as they end; give them a moment,
    // then commit whatever is queued.
    for _ in 0..50 {
        if app.mux.channel_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.audit.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_cap_stays_below_the_fd_limit() {
        let cfg = HttpConfig::default();
        assert_eq!(connection_cap(&cfg, 1024), 768);
        assert_eq!(connection_cap(&cfg, 1 << 20), cfg.max_connections);
        assert_eq!(connection_cap(&cfg, 0), 1);
    }
}
