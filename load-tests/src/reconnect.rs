//! `reconnect`: N sockets, one `pty` echo channel each, all dropped at once while output
//! is still on its way (as when a load balancer restarts), then all re-attached at once.
//! Measures the time until every channel is re-attached and until every missed byte has
//! arrived, and checks that not one byte is lost or wrong.
//!
//! Each client types a warm-up string and waits for its echo, then types a burst and
//! drops its socket as soon as the first byte of the burst's echo arrives — so the
//! gateway has read the whole burst (it is one WebSocket message) and most of its echo is
//! produced while the channel is detached. The expected output is exactly
//! `READY` + warm-up + burst.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use opsgate_protocol::{decode_data, decode_server, encode_data, ClientFrame, ServerFrame};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{histogram, ms_at, ms_max, record, Cell, ProcSample, Report};
use crate::opsgate::{self, send_frame, ChannelSpec, Gateway, Ws};
use crate::session::{login_many, TargetArgs};

#[derive(clap::Args, Clone, Debug)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sockets (one channel each)
    #[arg(long, default_value_t = 100)]
    pub sockets: usize,
    /// Bytes typed just before the drop (echoed while detached)
    #[arg(long, default_value_t = 16 * 1024)]
    pub burst: usize,
    /// Give up on the storm after this many seconds
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Before the drop, acknowledge only half of the output received
    #[arg(long)]
    pub partial_acks: bool,
    /// The gateway's input window (`mux.input_window_bytes`); `opened` says it too
    #[arg(long, default_value_t = 131_072)]
    pub input_window: u64,
}

const WARMUP: usize = 64;
const READY: &[u8] = b"READY";

fn pattern(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|k| b'a' + ((k + salt) % 26) as u8).collect()
}

/// One channel's expected output and what has arrived.
struct Stream {
    expected: Vec<u8>,
    got: usize,
    wrong: usize,
    unacked: u64,
    /// Ack only half of what arrived (a slow renderer).
    partial: bool,
    /// Input sent and not yet acknowledged by `input_ack`.
    input_in_flight: u64,
}

impl Stream {
    fn take(&mut self, data: &[u8]) {
        for &b in data {
            if self.expected.get(self.got) != Some(&b) {
                self.wrong += 1;
            }
            self.got += 1;
        }
        self.unacked += data.len() as u64;
    }
    fn done(&self) -> bool {
        self.got >= self.expected.len()
    }
}

/// Reads until `until(stream)` holds; acks as it goes. Errors on gateway errors.
async fn pump(
    ws: &mut Ws,
    st: &mut Stream,
    deadline: Instant,
    until: impl Fn(&Stream) -> bool,
) -> anyhow::Result<()> {
    while !until(st) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("timed out with {} of {} bytes", st.got, st.expected.len()))?
            .ok_or_else(|| anyhow!("socket closed"))??;
        match msg {
            Message::Binary(b) => {
                let (ch, payload) = decode_data(&b)?;
                if ch == 1 {
                    st.take(payload);
                }
            }
            Message::Text(t) => match decode_server(t.as_str())? {
                ServerFrame::Error { code, message, .. } => {
                    bail!("gateway error: {code}: {message}")
                }
                ServerFrame::InputAck { ch: 1, bytes } => {
                    st.input_in_flight = st.input_in_flight.saturating_sub(bytes)
                }
                _ => {}
            },
            Message::Close(_) => bail!("socket closed"),
            _ => {}
        }
        if st.unacked >= 16 * 1024 {
            let n = if st.partial {
                st.unacked / 2
            } else {
                st.unacked
            };
            send_frame(ws, &ClientFrame::Ack { ch: 1, bytes: n }).await?;
            st.unacked -= n;
        }
    }
    if st.unacked > 0 && !st.partial {
        send_frame(
            ws,
            &ClientFrame::Ack {
                ch: 1,
                bytes: st.unacked,
            },
        )
        .await?;
        st.unacked = 0;
    }
    Ok(())
}

/// What one client reports back.
enum Note {
    Ready,
    Dropped,
    Done(Outcome),
    Failed(String),
}

struct Outcome {
    attach: Duration,
    complete: Duration,
    lost_reported: u64,
    missing: u64,
    wrong: u64,
    offset_ok: bool,
    /// Input bytes resent after attach (lost in transit with the old socket).
    resent: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Go {
    Wait,
    Drop,
    Reattach(Instant),
}

pub async fn run(a: ReconnectArgs) -> anyhow::Result<()> {
    crate::common::raise_nofile();
    let gw = Gateway::new(&a.target.url)?;
    let per = a.target.sockets_per_login.max(1);
    let cookies = Arc::new(
        login_many(
            &gw,
            &a.target.user,
            &a.target.password,
            a.sockets.div_ceil(per),
        )
        .await?,
    );
    let spec = ChannelSpec::Pty {
        program: a.target.program.clone(),
    };
    let (go_tx, go_rx) = watch::channel(Go::Wait);
    let (note_tx, mut note_rx) = mpsc::channel::<Note>(a.sockets * 3 + 1);
    let gate = Arc::new(Semaphore::new(32));
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    let mut tasks = Vec::new();
    for i in 0..a.sockets {
        let gw = gw.clone();
        let cookie = cookies[(i / per) % cookies.len()].clone();
        let spec = spec.clone();
        let note = note_tx.clone();
        let go = go_rx.clone();
        let gate = gate.clone();
        let shape = Shape {
            burst: a.burst,
            partial: a.partial_acks,
            input_window: a.input_window,
        };
        tasks.push(tokio::spawn(async move {
            let r = client(gw, cookie, spec, i, shape, go, note.clone(), gate, deadline).await;
            if let Err(e) = r {
                let _ = note.send(Note::Failed(format!("{e:#}"))).await;
            }
        }));
    }
    drop(note_tx);

    let mut failed = 0usize;
    let mut first_err: Option<String> = None;
    // Phase 1: everyone connected, channel open, warm-up echoed.
    let mut ready = 0usize;
    while ready + failed < a.sockets {
        match tokio::time::timeout_at(deadline, note_rx.recv()).await {
            Ok(Some(Note::Ready)) => ready += 1,
            Ok(Some(Note::Failed(e))) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            Ok(Some(_)) => {}
            _ => bail!("clients not ready in time ({ready} of {})", a.sockets),
        }
    }
    let pid = a.target.server_pid;
    let before = ProcSample::read(pid).unwrap_or_default();

    // Phase 2: burst and drop, all at once.
    let _ = go_tx.send(Go::Drop);
    let mut dropped = 0usize;
    while dropped + failed < a.sockets {
        match tokio::time::timeout_at(deadline, note_rx.recv()).await {
            Ok(Some(Note::Dropped)) => dropped += 1,
            Ok(Some(Note::Failed(e))) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            Ok(Some(_)) => {}
            _ => bail!("clients did not drop in time"),
        }
    }

    // Phase 3: the storm.
    let t0 = Instant::now();
    let _ = go_tx.send(Go::Reattach(t0));
    let mut attach = histogram();
    let mut complete = histogram();
    let (mut lost, mut missing, mut wrong, mut bad_offset, mut done) = (0u64, 0u64, 0u64, 0, 0);
    let mut resent = 0u64;
    while done + failed < a.sockets {
        match tokio::time::timeout_at(deadline, note_rx.recv()).await {
            Ok(Some(Note::Done(o))) => {
                done += 1;
                record(&mut attach, o.attach);
                record(&mut complete, o.complete);
                lost += o.lost_reported;
                missing += o.missing;
                wrong += o.wrong;
                resent += o.resent;
                if !o.offset_ok {
                    bad_offset += 1;
                }
            }
            Ok(Some(Note::Failed(e))) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let storm = t0.elapsed();
    let after = ProcSample::read(pid).unwrap_or_default();
    // Let every client close its channel (so its PTY is freed now), then stop stragglers.
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let label = a.target.label();
    let mut report = Report::new(&format!("reconnect storm ({label})"));
    report.row(vec![
        ("target", Cell::Text(label.clone())),
        ("sockets", Cell::Int(a.sockets as i64)),
        ("reattached", Cell::Int(done as i64)),
        ("failed", Cell::Int(failed as i64)),
        ("burst_bytes", Cell::Int(a.burst as i64)),
        ("partial_acks", Cell::Text(a.partial_acks.to_string())),
        ("all_attached_ms", Cell::Num(ms_max(&attach), 1)),
        ("attach_p50_ms", Cell::Num(ms_at(&attach, 0.5), 1)),
        ("attach_p99_ms", Cell::Num(ms_at(&attach, 0.99), 1)),
        ("all_complete_ms", Cell::Num(ms_max(&complete), 1)),
        ("storm_s", Cell::Num(storm.as_secs_f64(), 2)),
        ("bytes_lost", Cell::Int((lost + missing) as i64)),
        ("bytes_wrong", Cell::Int(wrong as i64)),
        ("bad_offsets", Cell::Int(bad_offset as i64)),
        ("input_resent", Cell::Int(resent as i64)),
        (
            "server_cpu_s",
            Cell::Num(after.cpu_secs - before.cpu_secs, 2),
        ),
        (
            "server_rss_mib",
            Cell::Num(after.rss_kib as f64 / 1024.0, 1),
        ),
    ]);
    report.finish(a.target.json.as_deref(), &label)?;
    if let Some(e) = &first_err {
        eprintln!("first failure: {e}");
    }
    if failed > 0 || done < a.sockets || lost + missing + wrong > 0 || bad_offset > 0 {
        bail!(
            "reconnect storm: {failed} failed, {done}/{} done, {} bytes lost, {wrong} wrong",
            a.sockets,
            lost + missing
        );
    }
    Ok(())
}

/// What each client does around its drop.
#[derive(Clone, Copy)]
struct Shape {
    burst: usize,
    partial: bool,
    input_window: u64,
}

/// How long a client waits for output before it drops anyway (its window is full of
/// output it did not acknowledge, so nothing more comes).
const STALL: Duration = Duration::from_millis(500);

#[allow(clippy::too_many_arguments)]
async fn client(
    gw: Gateway,
    cookie: String,
    spec: ChannelSpec,
    i: usize,
    shape: Shape,
    mut go: watch::Receiver<Go>,
    note: mpsc::Sender<Note>,
    gate: Arc<Semaphore>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let warm = pattern(WARMUP, i);
    let burst_bytes = pattern(shape.burst, i + 7);
    let mut expected = READY.to_vec();
    expected.extend_from_slice(&warm);
    let mut st = Stream {
        expected,
        got: 0,
        wrong: 0,
        unacked: 0,
        partial: false,
        input_in_flight: 0,
    };

    let permit = gate.acquire_owned().await?;
    let mut ws = gw.connect(&cookie).await?;
    let (ids, early) = opsgate::open_channels(&mut ws, &[1], &spec).await?;
    let id = ids
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no channel id"))?;
    st.take(&early[0]);
    pump(&mut ws, &mut st, deadline, |s| s.got >= READY.len()).await?;
    ws.send(Message::Binary(encode_data(1, &warm).into()))
        .await?;
    pump(&mut ws, &mut st, deadline, |s| {
        s.got >= READY.len() + WARMUP
    })
    .await?;
    drop(permit);
    note.send(Note::Ready).await?;

    while *go.borrow_and_update() == Go::Wait {
        go.changed().await?;
    }
    // The burst, in pieces under the input window; with partial acks the output window
    // fills and the echo stalls, and the client drops once nothing more comes.
    st.partial = shape.partial;
    st.input_in_flight = 0;
    const PIECE: usize = 16 * 1024;
    let mut sent = 0usize;
    let first = READY.len() + WARMUP + 1;
    loop {
        while sent < burst_bytes.len()
            && st.input_in_flight + PIECE.min(burst_bytes.len() - sent) as u64 <= shape.input_window
        {
            let piece = &burst_bytes[sent..(sent + PIECE).min(burst_bytes.len())];
            ws.send(Message::Binary(encode_data(1, piece).into()))
                .await?;
            st.expected.extend_from_slice(piece);
            st.input_in_flight += piece.len() as u64;
            sent += piece.len();
        }
        if sent == burst_bytes.len() && st.got >= first {
            break;
        }
        let before = (st.got, st.input_in_flight);
        let stall = Instant::now() + STALL;
        let r = pump(&mut ws, &mut st, stall.min(deadline), |s| {
            (s.got, s.input_in_flight) != before
        })
        .await;
        match r {
            // Nothing moves: the output window is full of unacknowledged output.
            Err(e) if e.to_string().starts_with("timed out") && st.got >= first => break,
            Err(e) if e.to_string().starts_with("timed out") && Instant::now() < deadline => {}
            other => other?,
        }
    }
    let offset = st.got as u64;
    // Input offsets: the warm-up went before the burst.
    let input_base = WARMUP;
    let input_total = input_base + sent;
    let mut resent = 0u64;
    drop(ws); // abrupt: no close frame, as when a balancer restarts
    note.send(Note::Dropped).await?;

    let t0 = loop {
        if let Go::Reattach(t) = *go.borrow_and_update() {
            break t;
        }
        go.changed().await?;
    };
    let mut ws = gw.connect(&cookie).await?;
    send_frame(
        &mut ws,
        &ClientFrame::Attach {
            ch: 1,
            id: id.clone(),
            offset,
        },
    )
    .await?;
    let (attach, lost_reported, offset_ok) = loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("attach not answered in time"))?
            .ok_or_else(|| anyhow!("socket closed before opened"))??;
        match msg {
            Message::Text(t) => match decode_server(t.as_str())? {
                ServerFrame::Opened {
                    ch: 1,
                    offset: o,
                    lost,
                    input_received,
                    ..
                } => {
                    // Input sent just before the drop may have died with the socket:
                    // resend what the channel did not take.
                    let taken = input_received.unwrap_or(input_total as u64) as usize;
                    if taken < input_total {
                        let from = taken.saturating_sub(input_base);
                        let tail = &burst_bytes[from..sent];
                        resent = tail.len() as u64;
                        ws.send(Message::Binary(encode_data(1, tail).into()))
                            .await?;
                    }
                    break (
                        t0.elapsed(),
                        lost.unwrap_or(0),
                        o.unwrap_or(offset) == offset,
                    );
                }
                ServerFrame::Error { code, message, .. } => {
                    bail!("attach refused: {code}: {message}")
                }
                _ => {}
            },
            Message::Binary(b) => {
                // Data before `opened` would be a protocol violation; count it.
                let (_, p) = decode_data(&b)?;
                st.take(p);
            }
            _ => {}
        }
    };
    st.partial = false;
    pump(&mut ws, &mut st, deadline, Stream::done).await?;
    let complete = t0.elapsed();
    note.send(Note::Done(Outcome {
        attach,
        complete,
        lost_reported,
        missing: (st.expected.len() as u64).saturating_sub(st.got as u64),
        wrong: st.wrong as u64,
        offset_ok,
        resent,
    }))
    .await?;
    let _ = opsgate::close_channels(&mut ws, &[1]).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(())
}
