//! `opsgate-load`: the load generator and side-by-side benchmark driver (issue 4), plus
//! the REST figures of issue 2 (`rest`).
//!
//! Every scenario is bounded in count and time and refuses non-loopback targets.

mod apps;
mod common;
mod connect;
mod opsgate;
mod reconnect;
mod rest;
mod session;
mod terminal;

use clap::{Parser, Subcommand};

use crate::session::TargetKind;

#[derive(Parser)]
#[command(
    name = "opsgate-load",
    about = "opsgate load generator (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ramp N authenticated idle sockets; connect latency and memory per socket/channel
    Connect(connect::ConnectArgs),
    /// Keystroke echo round trips on N terminals (any target); a sweep finds the most
    /// channels held under a p99 bound
    Echo(terminal::EchoArgs),
    /// Bulk output through K terminals (any target): MB/s and server CPU per MB
    Throughput(terminal::ThroughputArgs),
    /// Echo and throughput through opsgate `ssh` channels
    Ssh(SshArgs),
    /// Drop N sockets at once and re-attach their channels; time and bytes lost
    Reconnect(reconnect::ReconnectArgs),
    /// Memory per idle connection with one terminal (any target)
    Idle(terminal::IdleArgs),
    /// REST: search over many saved sessions, login throughput
    Rest(rest::RestArgs),
    /// Server status poller: one poll round over many linux servers, some unreachable
    AppsPoll(apps::AppsPollArgs),
}

/// `ssh`: the echo scenario, then the throughput scenario, on `ssh` channels.
#[derive(clap::Args, Clone, Debug)]
struct SshArgs {
    #[command(flatten)]
    echo: terminal::EchoArgs,
    /// Terminals streaming at once in the throughput part
    #[arg(long, default_value_t = 1)]
    bulk_channels: usize,
    /// Output per terminal in the throughput part
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    bytes: u64,
    /// Give up on the throughput part after this many seconds
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

async fn ssh(a: SshArgs) -> anyhow::Result<()> {
    let mut echo = a.echo;
    if !matches!(echo.target.target, TargetKind::OpsgateSsh) {
        echo.target.target = TargetKind::OpsgateSsh;
    }
    let target = echo.target.clone();
    terminal::echo(echo).await?;
    terminal::throughput(terminal::ThroughputArgs {
        target,
        channels: a.bulk_channels,
        per_socket: 1,
        bytes: a.bytes,
        timeout_secs: a.timeout_secs,
        repeat: 1,
        hold_secs: 0.0,
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::raise_nofile();
    match Cli::parse().cmd {
        Cmd::Connect(a) => connect::run(a).await,
        Cmd::Echo(a) => terminal::echo(a).await,
        Cmd::Throughput(a) => terminal::throughput(a).await,
        Cmd::Ssh(a) => ssh(a).await,
        Cmd::Reconnect(a) => reconnect::run(a).await,
        Cmd::Idle(a) => terminal::idle(a).await,
        Cmd::Rest(a) => rest::run(a).await,
        Cmd::AppsPoll(a) => apps::run(a).await,
    }
}
