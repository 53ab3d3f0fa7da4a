//! Scenarios that run against any target: keystroke echo, bulk throughput, idle memory.
//!
//! The same programs run everywhere. Where the target starts a program itself (opsgate
//! `pty`, wetty, ttyd, the bare PTY) it is configured to run:
//! - echo: `sh -c 'stty raw -echo; printf READY; exec cat'` — every keystroke comes back
//!   exactly once, through a real program, as in a shell's line editor;
//! - bulk: `sh -c 'head -c 50331648 /dev/urandom | base64 -w 0'` — exactly 64 MiB of
//!   incompressible printable output with no newline for the PTY to rewrite.
//!
//! Where the target gives a login shell (opsgate `ssh`, webssh, `ssh -tt`) the scenario
//! types the same thing into it, turning the terminal's echo off first so the typed
//! command does not come back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

use crate::common::{
    histogram, ms_at, ms_max, record, Cell, MarkerScan, ProcDelta, ProcSample, Report, MB, MIB,
};
use crate::session::{session_client_pid, Event, Prepared, Session, TargetArgs, TargetKind};

/// Shells are told this to become an echo terminal.
const ECHO_SHELL_LINE: &[u8] = b"stty raw -echo; printf 'REA''DY'; exec cat\r";
/// Shells are told this before a bulk run (echo off, then a marker).
const BULK_READY_LINE: &[u8] = b"stty raw -echo; printf 'REA''DY'\r";
/// Printed when a shell's bulk command is done. `#` is outside the base64 alphabet, so
/// the payload cannot contain it (a letters-only marker turns up in 64 MiB of base64).
const END_MARKER: &[u8] = b"#END#";
/// How long a session may take to open and get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Sessions opening at once.
const OPEN_CONCURRENCY: usize = 32;

/// Sessions opened at once for a target. webssh 1.6 keeps its workers in a per-client-IP
/// map that two overlapping `POST`s from one IP overwrite (the first worker is then
/// refused at the WebSocket), so it gets one open at a time.
fn open_concurrency(kind: TargetKind) -> usize {
    match kind {
        TargetKind::Webssh => 1,
        _ => OPEN_CONCURRENCY,
    }
}
/// Browser-like acknowledgement of everything rendered, at least this often.
const ACK_INTERVAL: Duration = Duration::from_millis(250);

/// The bulk command for a shell already in raw mode: `\n` ends the line (with the
/// terminal raw, `\r` is no longer turned into one).
fn bulk_shell_line(bytes: u64) -> Vec<u8> {
    format!(
        "head -c {} /dev/urandom | base64 -w 0; printf '#EN''D#'\n",
        bytes / 4 * 3
    )
    .into_bytes()
}

/// Reads until every channel of `s` has printed `READY`; returns what followed the
/// marker on each channel.
async fn wait_ready(s: &mut Session, channels: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut scans: Vec<MarkerScan> = (0..channels).map(|_| MarkerScan::new(b"READY")).collect();
    let mut after: Vec<Option<Vec<u8>>> = vec![None; channels];
    let deadline = Instant::now() + READY_TIMEOUT;
    while after.iter().any(Option::is_none) {
        let ev = tokio::time::timeout_at(deadline, s.next())
            .await
            .map_err(|_| anyhow!("terminal not ready within {READY_TIMEOUT:?}"))??;
        match ev {
            Event::Data(i, b) if i < channels => match &mut after[i] {
                Some(rest) => rest.extend_from_slice(&b),
                None => {
                    if let Some(end) = scans[i].feed(&b) {
                        after[i] = Some(b[end..].to_vec());
                    }
                }
            },
            Event::End(i) => bail!("terminal {i} ended before it was ready"),
            _ => {}
        }
        s.flush().await?;
    }
    s.ack_idle().await?;
    Ok(after.into_iter().flatten().collect())
}

/// Opens a session and makes every channel an echo terminal.
async fn open_echo(p: &Prepared, n: usize, channels: usize) -> anyhow::Result<Session> {
    let mut s = p.open(n, channels).await?;
    if p.args.target.is_shell() {
        for i in 0..channels {
            s.write(i, ECHO_SHELL_LINE).await?;
        }
    }
    wait_ready(&mut s, channels).await?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// echo

#[derive(clap::Args, Clone, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Total terminals; a comma list runs one step per count (a sweep)
    #[arg(long, default_value = "1")]
    pub channels: String,
    /// Terminals per socket (opsgate multiplexes; peers have one per connection)
    #[arg(long, default_value_t = 1)]
    pub per_socket: usize,
    /// One keystroke per terminal every this many ms
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Measured seconds per step
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// p99 bound for "channels held" (ms)
    #[arg(long, default_value_t = 10.0)]
    pub p99_bound_ms: f64,
}

struct EchoOutcome {
    hist: Histogram<u64>,
    sent: u64,
    echoed: u64,
    wrong: u64,
}

/// Runs the echo scenario (every step of the sweep) and prints the table.
pub async fn echo(a: EchoArgs) -> anyhow::Result<()> {
    let steps: Vec<usize> = a
        .channels
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("--channels: {e}"))?;
    let per = if matches!(
        a.target.target,
        TargetKind::Opsgate | TargetKind::OpsgateSsh
    ) {
        a.per_socket.max(1)
    } else {
        1
    };
    let max_sessions = steps.iter().map(|c| c.div_ceil(per)).max().unwrap_or(1);
    let prep = Arc::new(Prepared::new(&a.target, max_sessions).await?);
    let mut report = Report::new(&format!("echo ({})", a.target.label()));
    let mut held = 0usize;
    for &total in &steps {
        let row = echo_step(&prep, total, per, &a).await;
        match row {
            Ok((o, d, sessions)) => {
                let p99 = ms_at(&o.hist, 0.99);
                if p99 < a.p99_bound_ms && o.echoed == o.sent && o.wrong == 0 {
                    held = held.max(total);
                }
                report.row(vec![
                    ("target", Cell::Text(a.target.label())),
                    ("channels", Cell::Int(total as i64)),
                    ("sockets", Cell::Int(sessions as i64)),
                    ("every_ms", Cell::Int(a.interval_ms as i64)),
                    ("keystrokes", Cell::Int(o.sent as i64)),
                    ("lost", Cell::Int((o.sent - o.echoed.min(o.sent)) as i64)),
                    ("wrong", Cell::Int(o.wrong as i64)),
                    ("p50_ms", Cell::Num(ms_at(&o.hist, 0.5), 3)),
                    ("p99_ms", Cell::Num(p99, 3)),
                    ("p999_ms", Cell::Num(ms_at(&o.hist, 0.999), 3)),
                    ("max_ms", Cell::Num(ms_max(&o.hist), 3)),
                    (
                        "server_cpu_pct",
                        Cell::Num(100.0 * d.cpu_secs() / a.duration, 1),
                    ),
                    (
                        "server_rss_mib",
                        Cell::Num(d.after.rss_kib as f64 / 1024.0, 1),
                    ),
                ]);
            }
            Err(e) => {
                report.row(vec![
                    ("target", Cell::Text(a.target.label())),
                    ("channels", Cell::Int(total as i64)),
                    ("error", Cell::Text(format!("{e:#}"))),
                ]);
                report.finish(a.target.json.as_deref(), &a.target.label())?;
                return Err(e);
            }
        }
    }
    report.finish(a.target.json.as_deref(), &a.target.label())?;
    if steps.len() > 1 {
        println!(
            "most channels held at p99 < {} ms: {held}\n",
            a.p99_bound_ms
        );
    }
    Ok(())
}

async fn echo_step(
    prep: &Arc<Prepared>,
    total: usize,
    per: usize,
    a: &EchoArgs,
) -> anyhow::Result<(EchoOutcome, ProcDelta, usize)> {
    let sessions = total.div_ceil(per).max(1);
    let interval = Duration::from_millis(a.interval_ms.max(1));
    let duration = Duration::from_secs_f64(a.duration.max(0.1));
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(sessions);
    let (start_tx, start_rx) = watch::channel::<Option<(Instant, Instant)>>(None);
    let gate = Arc::new(Semaphore::new(open_concurrency(prep.args.target)));
    let mut tasks = Vec::new();
    for n in 0..sessions {
        let chans = per.min(total - n * per);
        let prep = prep.clone();
        let ready_tx = ready_tx.clone();
        let start_rx = start_rx.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            echo_session(prep, n, sessions, chans, interval, gate, ready_tx, start_rx).await
        }));
    }
    drop(ready_tx);
    let deadline = Instant::now() + READY_TIMEOUT;
    for _ in 0..sessions {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                let _ = start_tx.send(Some((Instant::now(), Instant::now())));
                return Err(e.context("opening a terminal"));
            }
            _ => {
                let _ = start_tx.send(Some((Instant::now(), Instant::now())));
                bail!("terminals not ready within {READY_TIMEOUT:?}");
            }
        }
    }
    let pid = prep.args.server_pid;
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + duration;
    let _ = start_tx.send(Some((start, end)));
    tokio::time::sleep_until(start).await;
    let before = ProcSample::read(pid).unwrap_or_default();
    tokio::time::sleep_until(end).await;
    let after = ProcSample::read(pid).unwrap_or_default();
    let mut out = EchoOutcome {
        hist: histogram(),
        sent: 0,
        echoed: 0,
        wrong: 0,
    };
    for t in tasks {
        let o = t.await??;
        out.hist.add(&o.hist)?;
        out.sent += o.sent;
        out.echoed += o.echoed;
        out.wrong += o.wrong;
    }
    Ok((out, ProcDelta { before, after }, sessions))
}

#[allow(clippy::too_many_arguments)]
async fn echo_session(
    prep: Arc<Prepared>,
    n: usize,
    sessions: usize,
    chans: usize,
    interval: Duration,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<anyhow::Result<()>>,
    mut start: watch::Receiver<Option<(Instant, Instant)>>,
) -> anyhow::Result<EchoOutcome> {
    let permit = gate.acquire_owned().await?;
    let mut s = match open_echo(&prep, n, chans).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e)).await;
            bail!("{msg}");
        }
    };
    drop(permit);
    let _ = ready.send(Ok(())).await;
    // Keep reading (pings, stray output) until the start signal.
    let (t0, t_end) = loop {
        if let Some(w) = *start.borrow() {
            break w;
        }
        tokio::select! {
            r = start.changed() => { if r.is_err() { bail!("coordinator gone"); } }
            ev = s.next() => { ev?; s.flush().await?; }
        }
    };
    let mut out = EchoOutcome {
        hist: histogram(),
        sent: 0,
        echoed: 0,
        wrong: 0,
    };
    if t_end <= t0 {
        s.close().await;
        return Ok(out);
    }
    // Keystrokes go round-robin over the channels, spread evenly over the interval, and
    // sessions are phase-shifted so the gateway sees a steady rate, not bursts.
    let period = interval / chans as u32;
    let phase = period.mul_f64(n as f64 / sessions as f64);
    let mut tick = tokio::time::interval_at(t0 + phase, period.max(Duration::from_micros(100)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut acks = tokio::time::interval(ACK_INTERVAL);
    let mut pending: Vec<std::collections::VecDeque<(u8, Instant)>> =
        vec![Default::default(); chans];
    let mut rr = 0usize;
    let mut k = 0u64;
    let drain_until = t_end + Duration::from_secs(3);
    loop {
        let now = Instant::now();
        let sending = now < t_end;
        if !sending && (pending.iter().all(|p| p.is_empty()) || now >= drain_until) {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sending => {
                let c = b'a' + (k % 26) as u8;
                k += 1;
                let ch = rr;
                rr = (rr + 1) % chans;
                pending[ch].push_back((c, Instant::now()));
                s.write(ch, &[c]).await?;
                out.sent += 1;
            }
            ev = s.next() => {
                match ev? {
                    Event::Data(i, b) if i < chans => {
                        let at = Instant::now();
                        for &byte in b.iter() {
                            match pending[i].pop_front() {
                                Some((c, sent)) => {
                                    if c == byte {
                                        record(&mut out.hist, at - sent);
                                        out.echoed += 1;
                                    } else {
                                        out.wrong += 1;
                                    }
                                }
                                None => out.wrong += 1,
                            }
                        }
                    }
                    Event::End(i) => bail!("terminal {i} ended during the echo run"),
                    _ => {}
                }
                s.flush().await?;
            }
            _ = acks.tick() => s.ack_idle().await?,
            _ = tokio::time::sleep_until(drain_until), if !sending => {}
        }
    }
    s.close().await;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// throughput

#[derive(clap::Args, Clone, Debug)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Terminals streaming at once
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Terminals per socket (opsgate only)
    #[arg(long, default_value_t = 1)]
    pub per_socket: usize,
    /// Output per terminal; must match what the target's bulk program writes
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub bytes: u64,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Repeat the run this many times (one row each)
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Keep the sockets open this long after the output is in, then read how much more
    /// memory the server holds than before the run, per channel
    #[arg(long, default_value_t = 0.0)]
    pub hold_secs: f64,
}

struct BulkOutcome {
    bytes: u64,
    /// Output that never arrived (the terminal ended first).
    missing: u64,
    /// Messages (frames, events, reads) the output arrived in.
    frames: u64,
    secs: f64,
    /// CPU time of the client process the terminal went through (`ssh -tt`), if ours.
    client_cpu: Option<f64>,
}

pub async fn throughput(a: ThroughputArgs) -> anyhow::Result<()> {
    let per = if matches!(
        a.target.target,
        TargetKind::Opsgate | TargetKind::OpsgateSsh
    ) {
        a.per_socket.max(1)
    } else {
        1
    };
    let sessions = a.channels.max(1).div_ceil(per);
    let prep = Arc::new(Prepared::new(&a.target, sessions).await?);
    let mut report = Report::new(&format!("throughput ({})", a.target.label()));
    for _ in 0..a.repeat.max(1) {
        let r = throughput_once(&prep, &a, per, sessions).await;
        match r {
            Ok(cells) => report.row(cells),
            Err(e) => {
                report.row(vec![
                    ("target", Cell::Text(a.target.label())),
                    ("error", Cell::Text(format!("{e:#}"))),
                ]);
                report.finish(a.target.json.as_deref(), &a.target.label())?;
                return Err(e);
            }
        }
    }
    report.finish(a.target.json.as_deref(), &a.target.label())
}

async fn throughput_once(
    prep: &Arc<Prepared>,
    a: &ThroughputArgs,
    per: usize,
    sessions: usize,
) -> anyhow::Result<Vec<(&'static str, Cell)>> {
    let total_chans = a.channels.max(1);
    let own_before = ProcSample::own().unwrap_or_default();
    let before = ProcSample::read(prep.args.server_pid).unwrap_or_default();
    let t0 = Instant::now();
    let timeout = Duration::from_secs(a.timeout_secs);
    let mut tasks = Vec::new();
    for n in 0..sessions {
        let chans = per.min(total_chans - n * per);
        let prep = prep.clone();
        let bytes = a.bytes;
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(timeout, bulk_session(prep, n, chans, bytes))
                .await
                .map_err(|_| anyhow!("bulk run did not finish within {timeout:?}"))?
        }));
    }
    let mut outs = Vec::new();
    let mut open = Vec::new();
    for t in tasks {
        let (o, s) = t.await??;
        outs.extend(o);
        open.push(s);
    }
    let wall = t0.elapsed().as_secs_f64();
    let after = ProcSample::read(prep.args.server_pid).unwrap_or_default();
    let own_after = ProcSample::own().unwrap_or_default();
    // Memory the gateway keeps for sockets that carried bulk output and are now idle.
    let held = if a.hold_secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(a.hold_secs)).await;
        ProcSample::read(prep.args.server_pid)
    } else {
        None
    };
    futures_util::future::join_all(open.into_iter().map(Session::close)).await;
    let kib_held = match held {
        Some(h) => (h.rss_kib as f64 - before.rss_kib as f64) / total_chans as f64,
        None => f64::NAN,
    };
    let d = ProcDelta { before, after };
    let total_bytes: u64 = outs.iter().map(|o| o.bytes).sum();
    let rates: Vec<f64> = outs.iter().map(|o| o.bytes as f64 / MB / o.secs).collect();
    let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    let slowest = outs.iter().map(|o| o.secs).fold(0.0, f64::max);
    // The `ssh -tt` reference has no server of ours: its client process is the cost.
    let client_cpu: Option<f64> = outs.iter().map(|o| o.client_cpu).sum();
    let (cpu, measured) = match (prep.args.server_pid, client_cpu) {
        (0, Some(c)) => (c, true),
        (0, None) => (f64::NAN, false),
        _ => (d.cpu_secs(), true),
    };
    let per_64 = if measured {
        cpu / (total_bytes as f64 / (64.0 * MIB))
    } else {
        f64::NAN
    };
    Ok(vec![
        ("target", Cell::Text(prep.args.label())),
        ("channels", Cell::Int(total_chans as i64)),
        ("mib_each", Cell::Num(a.bytes as f64 / MIB, 0)),
        ("wall_s", Cell::Num(wall, 2)),
        ("mb_s_per_channel", Cell::Num(mean, 1)),
        ("mb_s_min", Cell::Num(min, 1)),
        // Over the measured stretch (a shell's login is not part of it).
        (
            "mb_s_total",
            Cell::Num(total_bytes as f64 / MB / slowest, 1),
        ),
        ("server_cpu_s", Cell::Num(cpu, 2)),
        ("server_cpu_s_per_64mib", Cell::Num(per_64, 3)),
        (
            "server_cpu_ms_per_mb",
            Cell::Num(per_64 * 1000.0 / (64.0 * MIB / MB), 2),
        ),
        (
            "server_rss_mib",
            Cell::Num(after.rss_kib as f64 / 1024.0, 1),
        ),
        (
            "loadgen_cpu_s",
            Cell::Num(own_after.cpu_secs - own_before.cpu_secs, 2),
        ),
        ("kib_held_per_channel", Cell::Num(kib_held, 1)),
        (
            "avg_frame_kib",
            Cell::Num(
                total_bytes as f64
                    / 1024.0
                    / outs.iter().map(|o| o.frames).sum::<u64>().max(1) as f64,
                1,
            ),
        ),
        (
            "bytes_missing",
            Cell::Int(outs.iter().map(|o| o.missing).sum::<u64>() as i64),
        ),
    ])
}

async fn bulk_session(
    prep: Arc<Prepared>,
    n: usize,
    chans: usize,
    bytes: u64,
) -> anyhow::Result<(Vec<BulkOutcome>, Session)> {
    let shell = prep.args.target.is_shell();
    let mut t0 = Instant::now();
    let mut s = prep.open(n, chans).await?;
    let mut got = vec![0u64; chans];
    let mut frames = 0u64;
    let mut done: Vec<Option<f64>> = vec![None; chans];
    let mut ends: Vec<MarkerScan> = (0..chans).map(|_| MarkerScan::new(END_MARKER)).collect();
    if shell {
        for i in 0..chans {
            s.write(i, BULK_READY_LINE).await?;
        }
        wait_ready(&mut s, chans).await?;
        t0 = Instant::now();
        let line = bulk_shell_line(bytes);
        for i in 0..chans {
            s.write(i, &line).await?;
        }
    }
    let mut acks = tokio::time::interval(ACK_INTERVAL);
    while done.iter().any(Option::is_none) {
        tokio::select! {
            ev = s.next() => {
                match ev? {
                    Event::Data(i, b) if i < chans && done[i].is_none() => {
                        frames += 1;
                        if shell {
                            if let Some(end) = ends[i].feed(&b) {
                                got[i] += end as u64;
                                got[i] = got[i].saturating_sub(END_MARKER.len() as u64);
                                done[i] = Some(t0.elapsed().as_secs_f64());
                            } else {
                                got[i] += b.len() as u64;
                            }
                        } else {
                            got[i] += b.len() as u64;
                            if got[i] >= bytes {
                                done[i] = Some(t0.elapsed().as_secs_f64());
                            }
                        }
                    }
                    Event::End(i) => {
                        let ended: Vec<usize> = (0..chans)
                            .filter(|&j| (i == usize::MAX || i == j) && done[j].is_none())
                            .collect();
                        for j in ended {
                            // A peer that loses the tail of the output at exit (wetty
                            // emits `logout` before its last batch) is measured with
                            // what arrived and the loss reported; opsgate must be exact.
                            let lossy_peer = !matches!(prep.args.target, TargetKind::Opsgate | TargetKind::OpsgateSsh);
                            if lossy_peer && got[j] >= bytes / 100 * 99 {
                                done[j] = Some(t0.elapsed().as_secs_f64());
                            } else {
                                bail!("terminal ended after {} of {bytes} bytes", got[j]);
                            }
                        }
                    }
                    _ => {}
                }
                s.flush().await?;
            }
            _ = acks.tick() => s.ack_idle().await?,
        }
    }
    let client_cpu = session_client_pid(&s)
        .and_then(ProcSample::read)
        .map(|p| p.cpu_secs);
    let mut out = Vec::new();
    for i in 0..chans {
        // The shell's prompt may precede the payload: a few bytes over is expected.
        if got[i] > bytes + 64 || (got[i] < bytes && done[i].is_none()) {
            bail!("terminal {i} delivered {} bytes, expected {bytes}", got[i]);
        }
        out.push(BulkOutcome {
            bytes: got[i].min(bytes),
            missing: bytes.saturating_sub(got[i]),
            frames: frames / chans as u64,
            secs: done[i].unwrap_or(f64::NAN),
            client_cpu,
        });
    }
    Ok((out, s))
}

// ---------------------------------------------------------------------------------------
// idle

#[derive(clap::Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Connections (each with one echo terminal, ready and idle)
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Seconds to wait before the memory reading
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
}

/// Opens `sessions` terminals and reads the server's memory per connection.
pub async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let prep = Arc::new(Prepared::new(&a.target, a.sessions).await?);
    let pid = a.target.server_pid;
    if pid == 0 {
        bail!("idle needs --server-pid");
    }
    // One terminal opened and closed first, so the code and the one-time state of the
    // terminal path (pages of the program touched for the first time, pools, caches)
    // are in `before` and the figure is what each further terminal costs.
    open_echo(&prep, 0, 1).await?.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = ProcSample::read(pid).ok_or_else(|| anyhow!("no process {pid}"))?;
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(open_concurrency(a.target.target)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(a.sessions.max(1));
    let mut tasks = Vec::new();
    for n in 0..a.sessions {
        let prep = prep.clone();
        let gate = gate.clone();
        let mut stop = stop_rx.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            let mut s = match open_echo(&prep, n, 1).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(anyhow!("{e:#}"))).await;
                    return Err(e);
                }
            };
            drop(permit);
            let _ = ready.send(Ok(())).await;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    ev = s.next() => { if let Event::End(_) = ev? { bail!("terminal ended while idle"); } s.flush().await?; }
                }
            }
            s.close().await;
            anyhow::Ok(())
        }));
    }
    drop(ready_tx);
    let mut ok = 0usize;
    let mut failed = 0usize;
    let mut first_err = None;
    let deadline = Instant::now() + READY_TIMEOUT;
    while ok + failed < a.sessions {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ok += 1,
            Ok(Some(Err(e))) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            _ => break,
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let after = ProcSample::read(pid).ok_or_else(|| anyhow!("process {pid} is gone"))?;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let d = ProcDelta { before, after };
    let mut report = Report::new(&format!("idle terminals ({})", a.target.label()));
    report.row(vec![
        ("target", Cell::Text(a.target.label())),
        ("connections", Cell::Int(ok as i64)),
        ("failed", Cell::Int(failed as i64)),
        ("open_s", Cell::Num(open_secs, 2)),
        (
            "rss_before_mib",
            Cell::Num(before.rss_kib as f64 / 1024.0, 1),
        ),
        ("rss_after_mib", Cell::Num(after.rss_kib as f64 / 1024.0, 1)),
        (
            "kib_per_connection",
            Cell::Num(d.rss_delta_kib() as f64 / ok.max(1) as f64, 1),
        ),
        (
            "anon_kib_per_connection",
            Cell::Num(
                (after.anon_kib as f64 - before.anon_kib as f64) / ok.max(1) as f64,
                1,
            ),
        ),
    ]);
    report.finish(a.target.json.as_deref(), &a.target.label())?;
    if let Some(e) = first_err {
        eprintln!("first failure: {e:#}");
    }
    if ok == 0 {
        bail!("no terminal opened");
    }
    Ok(())
}
