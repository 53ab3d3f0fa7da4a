//! `connect`: ramp N authenticated idle sockets at a given rate and read what each costs
//! the gateway; optionally open one `pty` channel on some of them to cost a channel.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::common::{histogram, ms_at, ms_max, record, Cell, ProcSample, Report};
use crate::opsgate::{self, ChannelSpec, Gateway};
use crate::session::{login_many, TargetArgs};

#[derive(clap::Args, Clone, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sockets to hold open at once
    #[arg(long, default_value_t = 100)]
    pub sockets: usize,
    /// New sockets per second during the ramp
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds to hold every socket once all are up (they answer pings meanwhile)
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Of those sockets, how many also open one `pty` channel running `--program`
    #[arg(long, default_value_t = 0)]
    pub with_channel: usize,
}

/// Phases the coordinator moves the socket tasks through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Hold,
    /// Sockets numbered below this open their channel.
    OpenChannel(usize),
    Stop,
}

/// What a socket task reports.
enum Report1 {
    Connected(Duration),
    Failed(String),
    ChannelOpen,
    ChannelFailed(String),
    Dropped,
}

/// Settles the allocator and reads the gateway.
async fn settle_and_read(pid: u32) -> ProcSample {
    tokio::time::sleep(Duration::from_secs(2)).await;
    ProcSample::read(pid).unwrap_or_default()
}

pub async fn run(a: ConnectArgs) -> anyhow::Result<()> {
    let nofile = crate::common::raise_nofile();
    if (nofile as usize) < a.sockets + 64 {
        eprintln!(
            "warning: file-descriptor limit {nofile} is below {} sockets",
            a.sockets
        );
    }
    let gw = Gateway::new(&a.target.url)?;
    let pid = a.target.server_pid;
    let label = a.target.label();
    let per = a.target.sockets_per_login.max(1);
    let logins = a.sockets.div_ceil(per).max(1);

    let rss0 = settle_and_read(pid).await;
    let t_login = Instant::now();
    let cookies = Arc::new(login_many(&gw, &a.target.user, &a.target.password, logins).await?);
    let login_secs = t_login.elapsed().as_secs_f64();
    let rss1 = settle_and_read(pid).await;

    // Does the gateway negotiate permessage-deflate if offered?
    let (probe, headers) = gw
        .connect_with(
            &cookies[0],
            &[(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            )],
        )
        .await?;
    let deflate = headers
        .get("sec-websocket-extensions")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .contains("permessage-deflate");
    drop(probe);

    // Ramp, in two halves with a reading after each: the second half's growth is the
    // marginal cost of a socket, free of whatever the allocator does with the memory
    // the logins' password hashing used and freed (it can shrink or stay).
    let (phase_tx, phase_rx) = watch::channel(Phase::Hold);
    let (rep_tx, mut rep_rx) = mpsc::channel::<Report1>(a.sockets.max(1) * 2);
    let spec = ChannelSpec::Pty {
        program: a.target.program.clone(),
    };
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let mut tasks = Vec::with_capacity(a.sockets);
    let mut connect = histogram();
    let mut failed = 0usize;
    let mut first_err = None;
    let mut got = 0usize;
    let half = a.sockets / 2;
    let mut rss_half = rss1;
    let ramp_deadline = Instant::now() + Duration::from_secs(600);
    let mut ramp_pause = Duration::ZERO;
    for (from, to) in [(0, half), (half, a.sockets)] {
        for i in from..to {
            tokio::time::sleep_until(t0 + ramp_pause + gap * (i - from) as u32).await;
            let gw = gw.clone();
            let cookie = cookies[(i / per) % cookies.len()].clone();
            let rep = rep_tx.clone();
            let phase = phase_rx.clone();
            let spec = spec.clone();
            tasks.push(tokio::spawn(async move {
                socket_task(gw, cookie, rep, phase, spec, i).await
            }));
        }
        while got < to {
            match tokio::time::timeout_at(ramp_deadline, rep_rx.recv()).await {
                Ok(Some(Report1::Connected(d))) => {
                    record(&mut connect, d);
                    got += 1;
                }
                Ok(Some(Report1::Failed(e))) => {
                    failed += 1;
                    got += 1;
                    first_err.get_or_insert(e);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if to == half {
            rss_half = settle_and_read(pid).await;
            // The second half starts now, at the same rate.
            ramp_pause = t0.elapsed();
        }
    }
    drop(rep_tx);
    let ramp_secs = t0.elapsed().as_secs_f64();
    let connected = connect.len() as usize;
    let rss2 = settle_and_read(pid).await;

    // Channels, also in two halves.
    let mut chan_ok = 0usize;
    let mut chan_failed = 0usize;
    let want = a.with_channel.min(connected);
    let mut rss_chan_half = rss2;
    let mut rss3 = rss2;
    let mut chan_half_ok = 0usize;
    if want > 0 {
        let deadline = Instant::now() + Duration::from_secs(300);
        for limit in [want / 2, want] {
            let _ = phase_tx.send(Phase::OpenChannel(limit));
            while chan_ok + chan_failed < limit {
                match tokio::time::timeout_at(deadline, rep_rx.recv()).await {
                    Ok(Some(Report1::ChannelOpen)) => chan_ok += 1,
                    Ok(Some(Report1::ChannelFailed(e))) => {
                        chan_failed += 1;
                        first_err.get_or_insert(e);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            if limit == want / 2 {
                rss_chan_half = settle_and_read(pid).await;
                chan_half_ok = chan_ok;
            } else {
                rss3 = settle_and_read(pid).await;
            }
        }
    }

    // Hold: count sockets the gateway drops meanwhile.
    let hold_end = Instant::now() + Duration::from_secs_f64(a.hold);
    let mut dropped = 0usize;
    loop {
        match tokio::time::timeout_at(hold_end, rep_rx.recv()).await {
            Ok(Some(Report1::Dropped)) => dropped += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let during = ProcSample::read(pid).unwrap_or_default();
    let _ = phase_tx.send(Phase::Stop);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }

    let kib = |a: ProcSample, b: ProcSample, n: usize| -> f64 {
        if n == 0 || pid == 0 {
            f64::NAN
        } else {
            (b.rss_kib as f64 - a.rss_kib as f64) / n as f64
        }
    };
    let mut report = Report::new(&format!("connect ({label})"));
    report.row(vec![
        ("target", Cell::Text(label.clone())),
        ("sockets", Cell::Int(a.sockets as i64)),
        ("connected", Cell::Int(connected as i64)),
        ("failed", Cell::Int(failed as i64)),
        ("dropped_in_hold", Cell::Int(dropped as i64)),
        ("logins", Cell::Int(logins as i64)),
        ("login_s", Cell::Num(login_secs, 2)),
        ("ramp_s", Cell::Num(ramp_secs, 2)),
        ("connect_p50_ms", Cell::Num(ms_at(&connect, 0.5), 2)),
        ("connect_p99_ms", Cell::Num(ms_at(&connect, 0.99), 2)),
        ("connect_max_ms", Cell::Num(ms_max(&connect), 2)),
        ("rss_start_mib", Cell::Num(rss0.rss_kib as f64 / 1024.0, 1)),
        (
            "rss_sockets_mib",
            Cell::Num(rss2.rss_kib as f64 / 1024.0, 1),
        ),
        ("rss_logins_mib", Cell::Num(rss1.rss_kib as f64 / 1024.0, 1)),
        (
            "kib_per_socket",
            Cell::Num(kib(rss_half, rss2, connected - half.min(connected)), 2),
        ),
        (
            "kib_per_socket_all",
            Cell::Num(kib(rss1, rss2, connected), 2),
        ),
        ("channels", Cell::Int(chan_ok as i64)),
        (
            "kib_per_channel",
            Cell::Num(kib(rss_chan_half, rss3, chan_ok - chan_half_ok), 1),
        ),
        ("rss_end_mib", Cell::Num(during.rss_kib as f64 / 1024.0, 1)),
        (
            "deflate",
            Cell::Text(if deflate { "negotiated" } else { "not offered" }.into()),
        ),
    ]);
    report.finish(a.target.json.as_deref(), &label)?;
    if let Some(e) = first_err {
        eprintln!("first failure: {e}");
    }
    if connected == 0 {
        bail!("no socket connected");
    }
    if failed > 0 || chan_failed > 0 || dropped > 0 {
        bail!("{failed} sockets failed, {chan_failed} channels failed, {dropped} dropped");
    }
    Ok(())
}

async fn socket_task(
    gw: Gateway,
    cookie: String,
    rep: mpsc::Sender<Report1>,
    mut phase: watch::Receiver<Phase>,
    spec: ChannelSpec,
    index: usize,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let conn = tokio::time::timeout(Duration::from_secs(30), gw.connect(&cookie)).await;
    let mut ws = match conn {
        Ok(Ok(ws)) => {
            let _ = rep.send(Report1::Connected(t.elapsed())).await;
            ws
        }
        Ok(Err(e)) => {
            let _ = rep.send(Report1::Failed(format!("{e:#}"))).await;
            return Ok(());
        }
        Err(_) => {
            let _ = rep.send(Report1::Failed("connect timed out".into())).await;
            return Ok(());
        }
    };
    let mut opened = false;
    loop {
        let p = *phase.borrow_and_update();
        match p {
            Phase::Stop => break,
            Phase::OpenChannel(limit) if index < limit && !opened => {
                opened = true;
                let r = opsgate::open_channels(&mut ws, &[1], &spec).await;
                let _ = rep
                    .send(match r {
                        Ok(_) => Report1::ChannelOpen,
                        Err(e) => Report1::ChannelFailed(format!("{e:#}")),
                    })
                    .await;
                continue;
            }
            _ => {}
        }
        tokio::select! {
            r = phase.changed() => if r.is_err() { break },
            // Reading answers the gateway's pings (tungstenite queues the pong).
            m = ws.next() => match m {
                Some(Ok(_)) => {}
                _ => {
                    let _ = rep.send(Report1::Dropped).await;
                    return Ok(());
                }
            },
        }
    }
    if opened {
        let _ = opsgate::close_channels(&mut ws, &[1]).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
    Ok(())
}
