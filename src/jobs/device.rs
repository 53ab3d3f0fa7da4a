//! Talking to network devices: one table of device types, and a driver for an
//! interactive shell with prompt detection.
//!
//! Many devices refuse SSH exec requests, and enable mode and paging are per-shell
//! state, so everything but `linux` goes through a PTY shell: wait for the prompt
//! (past banners and MOTD), enter enable mode with the credential's enable secret,
//! disable paging, send each command and read until the prompt comes back. Output is
//! cleaned of ANSI sequences, `\r` line endings (`\r\n`, `\r\r\n`), the echoed command
//! and pager prompts (answered with a space when paging could not be disabled).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opsgate_protocol::codes;
use regex::Regex;
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::inventory::DeviceType;

/// How to drive one device type. Adding a device type is one entry in [`profile`].
#[derive(Debug)]
pub struct Profile {
    /// Commands go through an exec request, not a shell (`linux`).
    pub exec: bool,
    /// The command that enters privileged mode, if the type has one; it is answered
    /// with the credential's `enable_secret`.
    pub enable: Option<&'static str>,
    /// Commands that turn paging off (errors are ignored: pagers are handled anyway).
    pub disable_paging: &'static [&'static str],
    /// The command that prints the running configuration.
    pub show_config: &'static str,
    /// Lines that change without a config change (timestamps, byte counts), removed
    /// before hashing and storing: regexes matched against each line.
    pub volatile: &'static [&'static str],
}

const CISCO_VOLATILE: &[&str] = &[
    r"^Building configuration",
    r"^Current configuration\s*:",
    r"^! Last configuration change at",
    r"^! NVRAM config last updated at",
    r"^! No configuration change since last restart",
    r"^ntp clock-period",
    r"^!Time:",
];

/// The table of device types.
pub fn profile(t: DeviceType) -> &'static Profile {
    use DeviceType::*;
    static CISCO: Profile = Profile {
        exec: false,
        enable: Some("enable"),
        disable_paging: &["terminal length 0"],
        show_config: "show running-config",
        volatile: CISCO_VOLATILE,
    };
    static NXOS: Profile = Profile {
        exec: false,
        enable: None,
        disable_paging: &["terminal length 0"],
        show_config: "show running-config",
        volatile: &[
            r"^!Command: show running-config",
            r"^!Running configuration last done at",
            r"^!Time:",
            r"^ntp clock-period",
        ],
    };
    static ARISTA: Profile = Profile {
        exec: false,
        enable: Some("enable"),
        disable_paging: &["terminal length 0"],
        show_config: "show running-config",
        volatile: &[
            r"^! Command: show running-config",
            r"^! device: .*\(.*EOS-",
            r"^! Startup-config last modified at",
            r"^! Time:",
        ],
    };
    static FORTINET: Profile = Profile {
        exec: false,
        enable: None,
        disable_paging: &[],
        show_config: "show full-configuration",
        volatile: &[r"^#conf_file_ver=", r"^#buildno="],
    };
    static JUNOS: Profile = Profile {
        exec: false,
        enable: None,
        disable_paging: &["set cli screen-length 0"],
        show_config: "show configuration | display set",
        volatile: &[r"^## Last commit:", r"^## Last changed:"],
    };
    static ARUBA: Profile = Profile {
        exec: false,
        enable: Some("enable"),
        disable_paging: &["no paging"],
        show_config: "show running-config",
        volatile: CISCO_VOLATILE,
    };
    static COMWARE: Profile = Profile {
        exec: false,
        enable: None,
        disable_paging: &["screen-length disable"],
        show_config: "display current-configuration",
        volatile: &[r"^\s*#\s*$"],
    };
    static PROCURVE: Profile = Profile {
        exec: false,
        enable: Some("enable"),
        disable_paging: &["no page"],
        show_config: "show running-config",
        volatile: &[
            r"^Running configuration:",
            r"^; .*Configuration Editor; Created on release",
        ],
    };
    static LINUX: Profile = Profile {
        exec: true,
        enable: None,
        disable_paging: &[],
        show_config: "cat /etc/hostname /etc/hosts",
        volatile: &[],
    };
    match t {
        CiscoIos | CiscoXe => &CISCO,
        CiscoNxos => &NXOS,
        AristaEos => &ARISTA,
        Fortinet => &FORTINET,
        JuniperJunos => &JUNOS,
        ArubaOs => &ARUBA,
        HpComware => &COMWARE,
        HpProcurve => &PROCURVE,
        Linux => &LINUX,
    }
}

/// Why driving a device failed.
#[derive(Debug, Clone)]
pub struct DriveError {
    pub code: &'static str,
    pub message: String,
}

impl DriveError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        DriveError {
            code,
            message: message.into(),
        }
    }
}

pub const COMMAND_TIMEOUT: &str = "command_timeout";
pub const ENABLE_FAILED: &str = "enable_failed";
pub const OUTPUT_TOO_LARGE: &str = "output_too_large";
pub const OUTPUT_BUDGET: &str = "output_budget";

/// The most output one target of a job may produce, over all its commands together (a
/// large config is a few MiB). Per command it let a 50-command job hold 1.6 GB for one
/// device.
pub const MAX_OUTPUT: usize = 32 * 1024 * 1024;

/// The budget is handed out in steps of this many bytes.
const BUDGET_UNIT: usize = 64 * 1024;

/// Memory for device output held by running targets, over all jobs (`[jobs]
/// output_budget_mib`). Without it, `max_concurrency` targets could each hold
/// [`MAX_OUTPUT`] at once (64 × 32 MiB, before the copies cleaning makes), which one
/// operator with a chatty server could bring about. A target takes budget as its
/// output grows and gives it back once its output is stored.
///
/// A target that finds the budget spent must not simply wait while holding its share:
/// if every running target did (64 devices printing 8 MiB each against 256 MiB), none
/// could finish and all would fail at their deadlines. So one target at a time may
/// overdraw: the first to find the budget spent goes on beyond it (up to its own
/// [`MAX_OUTPUT`]), and the others wait, as their devices do through SSH flow control,
/// for budget or for that overdraft to be given back; one still waiting at its command's
/// deadline fails with `output_budget`. Memory stays within the budget plus one target's
/// output, and some target always makes progress.
#[derive(Clone)]
pub struct OutputBudget {
    units: Arc<Semaphore>,
    /// The one overdraft (a single permit).
    overdraft: Arc<Semaphore>,
    /// The most one target may hold: [`MAX_OUTPUT`], or the whole budget if smaller.
    per_target: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

impl OutputBudget {
    /// A budget of `mib` MiB (at least 1).
    pub fn new(mib: usize, metrics: Arc<crate::metrics::Metrics>) -> OutputBudget {
        let mib = mib.clamp(1, 1 << 20);
        OutputBudget {
            units: Arc::new(Semaphore::new(mib.saturating_mul((1 << 20) / BUDGET_UNIT))),
            overdraft: Arc::new(Semaphore::new(1)),
            per_target: mib.saturating_mul(1 << 20).min(MAX_OUTPUT),
            metrics,
        }
    }

    /// The most output one target may produce (over all its commands).
    pub fn per_target(&self) -> usize {
        self.per_target
    }

    /// An empty share for one target.
    pub fn hold(&self) -> OutputHold {
        OutputHold {
            budget: self.clone(),
            permit: None,
            overdraft: None,
        }
    }
}

/// One target's share of the [`OutputBudget`]; given back when dropped.
pub struct OutputHold {
    budget: OutputBudget,
    permit: Option<OwnedSemaphorePermit>,
    /// Held by the one target going on beyond the spent budget.
    overdraft: Option<OwnedSemaphorePermit>,
}

impl OutputHold {
    /// The most output one target may produce.
    pub fn per_target(&self) -> usize {
        self.budget.per_target
    }

    fn units(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// `/metrics`' `opsgate_job_output_held_bytes`, which every share adds to and takes
    /// back from.
    fn held_gauge(&self) -> &std::sync::atomic::AtomicI64 {
        &self.budget.metrics.jobs.output_held_bytes
    }

    fn add(&mut self, permit: OwnedSemaphorePermit) {
        let added = permit.num_permits() * BUDGET_UNIT;
        self.held_gauge().fetch_add(added as i64, Relaxed);
        match &mut self.permit {
            Some(p) => OwnedSemaphorePermit::merge(p, permit),
            None => self.permit = Some(permit),
        }
    }

    /// Makes the share cover `bytes` of output in all: from the budget, or through the
    /// overdraft; waits for either until `deadline`.
    pub async fn cover(&mut self, bytes: usize, deadline: Instant) -> Result<(), DriveError> {
        let want = bytes.div_ceil(BUDGET_UNIT);
        let have = self.units();
        if want <= have || self.overdraft.is_some() {
            return Ok(());
        }
        let more = u32::try_from(want - have).unwrap_or(u32::MAX);
        let (units, overdraft) = (self.budget.units.clone(), self.budget.overdraft.clone());
        if let Ok(p) = units.clone().try_acquire_many_owned(more) {
            self.add(p);
            return Ok(());
        }
        self.budget.metrics.jobs.output_waits.fetch_add(1, Relaxed);
        let spent = || {
            DriveError::new(
                OUTPUT_BUDGET,
                "the gateway's memory for job output stayed taken by other running targets until this command's deadline",
            )
        };
        tokio::select! {
            p = units.acquire_many_owned(more) => {
                self.add(p.map_err(|_| spent())?);
            }
            o = overdraft.acquire_owned() => {
                self.overdraft = Some(o.map_err(|_| spent())?);
            }
            _ = tokio::time::sleep_until(deadline) => return Err(spent()),
        }
        Ok(())
    }
}

impl Drop for OutputHold {
    fn drop(&mut self) {
        let held = self.units() * BUDGET_UNIT;
        self.held_gauge().fetch_sub(held as i64, Relaxed);
    }
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    // The patterns are constants of this file, checked by the unit tests.
    #[allow(clippy::expect_used)]
    cell.get_or_init(|| Regex::new(pattern).expect("constant pattern"))
}

fn ansi() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>78]",
    )
}

/// A prompt: a word-like token (with `@`, `.`, `-`, `/`, `:`, `~`, parentheses, or
/// in `<…>`/`[…]` for Comware) ending in `>`, `#`, `$`, `%` or `]`, nothing after.
fn prompt_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"^[<\[]?[A-Za-z0-9_.\-@:/~()]+(?:\([A-Za-z0-9_\-]+\))?[>#$%\]] ?$",
    )
}

fn pager_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)(?:-+ ?more ?-+|-+\(more[^)]*\)-+|<--- more --->|press any key to continue)[^\n]*$",
    )
}

fn password_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)password: ?$")
}

/// Turns raw terminal output into text lines: ANSI sequences out, backspaces applied,
/// `\r\n` and `\r\r\n` as `\n`, and a bare `\r` (a line redrawn, e.g. after a pager)
/// keeps only what follows it.
pub fn clean(raw: &str) -> String {
    let text = ansi().replace_all(raw, "");
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.trim_end_matches('\r');
        let line = match line.rfind('\r') {
            Some(p) => &line[p + 1..],
            None => line,
        };
        let mut l = String::with_capacity(line.len());
        for c in line.chars() {
            match c {
                '\x08' => {
                    l.pop();
                }
                '\x07' | '\0' => {}
                c => l.push(c),
            }
        }
        out.push_str(l.trim_end_matches(' '));
    }
    out
}

/// The volatile patterns of a profile, compiled once per profile (not per backup).
fn volatile_set(profile: &Profile) -> std::sync::Arc<regex::RegexSet> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<regex::RegexSet>>>> = OnceLock::new();
    let key = profile as *const Profile as usize;
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache
        .entry(key)
        .or_insert_with(|| {
            // The patterns are constants of this file, checked by the unit tests; a
            // bad one would match nothing rather than fail a backup.
            Arc::new(
                regex::RegexSet::new(profile.volatile).unwrap_or_else(|_| regex::RegexSet::empty()),
            )
        })
        .clone()
}

/// Removes the volatile lines of `profile` from a config (and blank lines at its ends),
/// so an unchanged device hashes the same.
pub fn strip_volatile(profile: &Profile, config: &str) -> String {
    let set = volatile_set(profile);
    let lines: Vec<&str> = config.lines().filter(|l| !set.is_match(l)).collect();
    let mut s = lines.join("\n");
    s = s.trim_matches('\n').to_string();
    s.push('\n');
    s
}

/// The longest end of a last line looked at for a prompt. A prompt is a short token; a
/// longer raw line is one only through its ANSI sequences, backspaces or a `\r` redraw,
/// and what follows the redraw fits here. Bounding it keeps the check per SSH packet
/// constant: a device printing one endless line cost a scan of the whole line per packet,
/// quadratic in its output (32 MiB of it is ~1,000 packets of up to 32 MiB each).
const PROMPT_TAIL: usize = 1024;

/// What a device printed since the last prompt, as raw bytes. It is decoded once, when a
/// prompt ends it: decoding each SSH packet on its own turned a character split across two
/// packets into two U+FFFD, so a config with any non-ASCII text could read differently
/// from one backup to the next (and be stored as a change).
#[derive(Default)]
struct Pending {
    raw: Vec<u8>,
    /// Where the last line starts (after the last `\n`): kept as bytes arrive, so each
    /// byte is searched once.
    line_start: usize,
}

impl Pending {
    fn push(&mut self, data: &[u8]) {
        if let Some(p) = memchr::memrchr(b'\n', data) {
            self.line_start = self.raw.len() + p + 1;
        }
        self.raw.extend_from_slice(data);
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    /// The raw end of the last line that [`Pending::last_line`] cleans: at most
    /// [`PROMPT_TAIL`] bytes.
    fn last_line_raw(&self) -> &[u8] {
        let line = self.raw.get(self.line_start..).unwrap_or_default();
        line.get(line.len().saturating_sub(PROMPT_TAIL)..)
            .unwrap_or_default()
    }

    /// The last line, cleaned (only its end, [`PROMPT_TAIL`]), and whether it can be a
    /// prompt. A line that fits can. A longer one can only through what its end holds:
    /// a redraw (`\r`: cleaning keeps what follows the last one), or escape sequences
    /// (cursor moves before a prompt, as ProCurve and Comware draw it), in which case the
    /// end is cleaned from its first escape, so it never starts inside one. Without
    /// either, the end of a long line could look like a prompt when the line does not.
    fn last_line(&self) -> (String, bool) {
        let mut tail = self.last_line_raw();
        let mut whole = self.raw.len() - self.line_start <= PROMPT_TAIL;
        if !whole {
            let end = tail.iter().rposition(|b| *b != b'\r').map_or(0, |p| p + 1);
            if tail[..end].contains(&b'\r') {
                whole = true;
            } else if let Some(esc) = memchr::memchr(0x1b, tail) {
                tail = &tail[esc..];
                whole = true;
            }
        }
        (clean(&String::from_utf8_lossy(tail)), whole)
    }

    /// Drops the last line (a pager prompt).
    fn drop_last_line(&mut self) {
        self.raw.truncate(self.line_start);
    }

    /// Everything, decoded and cleaned; empties the buffer.
    fn take_text(&mut self) -> String {
        let text = clean(&String::from_utf8_lossy(&self.raw));
        self.raw = Vec::new();
        self.line_start = 0;
        text
    }
}

/// An interactive shell on a device.
pub struct Shell {
    channel: Channel<Msg>,
    /// Output not yet consumed.
    buf: Pending,
    /// The device's name as its prompt shows it (`rtr1`, `user@rtr1`), learned from the
    /// first prompt: later prompts must contain it, so a config line ending in `#`
    /// is not mistaken for one.
    base: String,
    timeout: Duration,
    /// Output this session may still produce (of [`OutputBudget::per_target`]).
    output_left: usize,
    /// The most it may produce.
    output_max: usize,
    /// Its share of the budget: what earlier commands returned and `buf`.
    hold: OutputHold,
}

impl Shell {
    /// Waits for the first prompt (after any banner and MOTD).
    pub async fn start(
        channel: Channel<Msg>,
        timeout: Duration,
        hold: OutputHold,
    ) -> Result<Shell, DriveError> {
        let output_max = hold.budget.per_target();
        let mut sh = Shell {
            channel,
            buf: Pending::default(),
            base: String::new(),
            timeout,
            output_left: output_max,
            output_max,
            hold,
        };
        let (_, prompt) = sh.read_until_prompt(false).await?;
        sh.base = prompt
            .trim()
            .trim_start_matches(['<', '['])
            .trim_end_matches(['>', '#', '$', '%', ']', ' '])
            .split('(')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(sh)
    }

    async fn send_line(&mut self, line: &str) -> Result<(), DriveError> {
        self.channel
            .data(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| DriveError::new(codes::REMOTE_CLOSED, e.to_string()))
    }

    fn is_prompt(&self, last: &str) -> bool {
        prompt_re().is_match(last) && (self.base.is_empty() || last.contains(&self.base))
    }

    /// Reads until the last line is a prompt (or, with `password`, a password
    /// question). Returns the cleaned text before it and the prompt line.
    async fn read_until_prompt(&mut self, password: bool) -> Result<(String, String), DriveError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            // Only the last line can be a prompt or a pager: cleaning just its end per
            // packet keeps a long output linear (the whole buffer is cleaned once, at the
            // prompt). Lines are cleaned independently, so this is the same last line.
            let (last, whole) = self.buf.last_line();
            let last = last.as_str();
            if whole && (self.is_prompt(last) || (password && password_re().is_match(last))) {
                let text = self.buf.take_text();
                let body = text.rfind('\n').map_or("", |p| &text[..p]);
                return Ok((body.to_string(), last.to_string()));
            }
            if pager_re().is_match(last) {
                // Paging could not be turned off: page on, dropping the pager prompt.
                self.buf.drop_last_line();
                self.channel
                    .data(&b" "[..])
                    .await
                    .map_err(|e| DriveError::new(codes::REMOTE_CLOSED, e.to_string()))?;
            }
            let msg = match tokio::time::timeout_at(deadline, self.channel.wait()).await {
                Ok(m) => m,
                Err(_) => {
                    return Err(DriveError::new(
                        COMMAND_TIMEOUT,
                        format!(
                            "no prompt within {} s (last output: {:?})",
                            self.timeout.as_secs(),
                            last.chars().take(80).collect::<String>()
                        ),
                    ))
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    self.buf.push(&data);
                    if self.buf.len() > self.output_left {
                        return Err(DriveError::new(
                            OUTPUT_TOO_LARGE,
                            format!(
                                "the device printed more than {} MiB for this job",
                                self.output_max >> 20
                            ),
                        ));
                    }
                    let held = self.output_max - self.output_left + self.buf.len();
                    self.hold.cover(held, deadline).await?;
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                    return Err(DriveError::new(
                        codes::REMOTE_CLOSED,
                        "the device closed the session",
                    ))
                }
                Some(_) => {}
            }
        }
    }

    /// Runs one command and returns its output without the echo and the prompt.
    pub async fn command(&mut self, command: &str) -> Result<String, DriveError> {
        self.send_line(command).await?;
        let (body, _) = self.read_until_prompt(false).await?;
        self.output_left = self.output_left.saturating_sub(body.len());
        Ok(strip_echo(&body, command))
    }

    /// Enters privileged mode unless the prompt already shows it.
    pub async fn enable(&mut self, command: &str, secret: Option<&str>) -> Result<(), DriveError> {
        self.send_line("").await?;
        let (_, prompt) = self.read_until_prompt(false).await?;
        if prompt.trim_end().ends_with('#') {
            return Ok(());
        }
        self.send_line(command).await?;
        let (_, last) = self.read_until_prompt(true).await?;
        if password_re().is_match(&last) {
            let Some(secret) = secret else {
                return Err(DriveError::new(
                    ENABLE_FAILED,
                    "the device asks for an enable password and the credential set has no enable_secret",
                ));
            };
            self.send_line(secret).await?;
            let (_, last) = self.read_until_prompt(true).await?;
            if !last.trim_end().ends_with('#') {
                return Err(DriveError::new(
                    ENABLE_FAILED,
                    "the enable secret was not accepted",
                ));
            }
        } else if !last.trim_end().ends_with('#') {
            return Err(DriveError::new(ENABLE_FAILED, "enable mode was refused"));
        }
        Ok(())
    }

    /// Closes the shell; the outputs its commands returned keep their share.
    pub async fn close(self) -> OutputHold {
        let _ = self.channel.close().await;
        self.hold
    }
}

/// Drops the echoed command (the first line, if it ends with the command).
fn strip_echo(body: &str, command: &str) -> String {
    let mut lines = body.split('\n');
    let first = body.split('\n').next().unwrap_or_default();
    if first.trim_end().ends_with(command.trim()) {
        lines.next();
    }
    lines.collect::<Vec<_>>().join("\n")
}

/// Runs `command` through an exec request and collects its output (`linux`): at most
/// `limit` bytes, with `hold` covering `held_before` (earlier commands) and this output.
pub async fn exec_output(
    mut channel: Channel<Msg>,
    timeout: Duration,
    limit: usize,
    hold: &mut OutputHold,
    held_before: usize,
) -> Result<(String, Option<u32>), DriveError> {
    let mut out = Vec::new();
    let mut status = None;
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, channel.wait()).await {
            Err(_) => {
                return Err(DriveError::new(
                    COMMAND_TIMEOUT,
                    format!("the command did not finish within {} s", timeout.as_secs()),
                ))
            }
            Ok(Some(ChannelMsg::Data { data }))
            | Ok(Some(ChannelMsg::ExtendedData { data, .. })) => {
                out.extend_from_slice(&data);
                if out.len() > limit {
                    return Err(DriveError::new(
                        OUTPUT_TOO_LARGE,
                        format!(
                            "more than {} MiB of output for this job",
                            hold.budget.per_target() >> 20
                        ),
                    ));
                }
                hold.cover(held_before + out.len(), deadline).await?;
            }
            Ok(Some(ChannelMsg::ExitStatus { exit_status })) => status = Some(exit_status),
            Ok(Some(ChannelMsg::Close)) | Ok(None) => break,
            Ok(Some(_)) => {}
        }
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        for t in [
            DeviceType::CiscoIos,
            DeviceType::CiscoNxos,
            DeviceType::AristaEos,
            DeviceType::Fortinet,
            DeviceType::JuniperJunos,
            DeviceType::ArubaOs,
            DeviceType::HpComware,
            DeviceType::HpProcurve,
            DeviceType::Linux,
        ] {
            for p in profile(t).volatile {
                assert!(Regex::new(p).is_ok(), "{p}");
            }
        }
        assert!(!ansi().is_match("plain"));
        assert!(prompt_re().is_match("rtr1#"));
    }

    #[test]
    fn cleans_terminal_output() {
        let raw = "show run\r\r\n\x1b[1mBuilding configuration...\x1b[0m\r\nhostname rtr1\r\n --More-- \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\r          \rinterface Gi1\r\nrtr1#";
        let c = clean(raw);
        assert_eq!(
            c,
            "show run\nBuilding configuration...\nhostname rtr1\ninterface Gi1\nrtr1#"
        );
        let p = profile(DeviceType::CiscoIos);
        assert_eq!(
            strip_volatile(p, "Building configuration...\nCurrent configuration : 120 bytes\nhostname rtr1\nntp clock-period 123\n"),
            "hostname rtr1\n"
        );
    }

    /// Each device type's cleaning: what a device prints around its config (volatile
    /// lines, prompt echo, \r) and what must remain.
    #[test]
    fn volatile_lines_per_device_type() {
        let cases: &[(DeviceType, &str, &str)] = &[
            (
                DeviceType::CiscoIos,
                "Building configuration...\n\nCurrent configuration : 1234 bytes\n!\n! Last configuration change at 10:01:02 UTC Mon Nov 23 2026 by admin\n! NVRAM config last updated at 10:01:03 UTC Mon Nov 23 2026\n!\nhostname rtr1\nntp clock-period 17179869\nend\n",
                "!\n!\nhostname rtr1\nend\n",
            ),
            (
                DeviceType::CiscoNxos,
                "!Command: show running-config\n!Running configuration last done at: Mon Nov 23 10:01:02 2026\n!Time: Mon Nov 23 10:05:00 2026\n\nversion 9.3(8)\nhostname n9k\n",
                "version 9.3(8)\nhostname n9k\n",
            ),
            (
                DeviceType::AristaEos,
                "! Command: show running-config\n! device: rtr1 (vEOS-lab, EOS-4.31.2F)\n! Time: Mon Nov 23 10:05:00 2026\n! Startup-config last modified at Mon Nov 23 10:01:02 2026 by admin\n!\n! boot system flash:/vEOS-lab.swi\n!\nhostname rtr1\n! device: a comment that stays\nend\n",
                "!\n! boot system flash:/vEOS-lab.swi\n!\nhostname rtr1\n! device: a comment that stays\nend\n",
            ),
            (
                DeviceType::JuniperJunos,
                "## Last commit: 2026-11-23 10:01:02 UTC by admin\nset system host-name mx1\n",
                "set system host-name mx1\n",
            ),
            (
                DeviceType::Fortinet,
                "#config-version=FGT60F-7.2.5\n#conf_file_ver=123456789\n#buildno=1517\nconfig system global\nend\n",
                "#config-version=FGT60F-7.2.5\nconfig system global\nend\n",
            ),
            (
                DeviceType::HpProcurve,
                "Running configuration:\n\n; J9729A Configuration Editor; Created on release #WB.16.10\nhostname \"sw1\"\n",
                "hostname \"sw1\"\n",
            ),
            (DeviceType::Linux, "rtr1\n127.0.0.1 localhost\n", "rtr1\n127.0.0.1 localhost\n"),
        ];
        for (t, raw, want) in cases {
            assert_eq!(&strip_volatile(profile(*t), &clean(raw)), want, "{t:?}");
        }
        // Through the terminal: the EOS header arrives with \r\r\n and an ANSI reset.
        let raw = "show running-config\r\r\n\x1b[0m! Command: show running-config\r\r\n! device: rtr1 (vEOS-lab, EOS-4.31.2F)\r\r\nhostname rtr1\r\r\nend\r\r\n";
        assert_eq!(
            strip_volatile(
                profile(DeviceType::AristaEos),
                &strip_echo(&clean(raw), "show running-config")
            ),
            "hostname rtr1\nend\n"
        );
    }

    #[test]
    fn pending_output_keeps_split_characters_and_looks_at_a_bounded_last_line() {
        let line = "description Übergang – Zentrale ✓\r\n";
        let bytes = line.as_bytes();
        // Split at every byte, inside each multi-byte character too.
        for cut in 0..=bytes.len() {
            let mut p = Pending::default();
            p.push(&bytes[..cut]);
            p.push(&bytes[cut..]);
            p.push(b"rtr1#");
            assert_eq!(p.last_line(), ("rtr1#".into(), true), "cut at {cut}");
            assert_eq!(
                p.take_text(),
                "description Übergang – Zentrale ✓\nrtr1#",
                "cut at {cut}"
            );
            assert_eq!(p.len(), 0);
        }
        // One endless line: each check looks at its end only, and the prompt after it
        // is still found.
        let mut p = Pending::default();
        for _ in 0..4096 {
            p.push(&[b'x'; 256]);
            assert!(p.last_line_raw().len() <= PROMPT_TAIL);
        }
        assert!(!p.last_line().1, "a long line's end is not a prompt");
        p.push(b"\r\n\x1b[1mrtr1#\x1b[0m");
        assert_eq!(p.last_line(), ("rtr1#".into(), true));
        // A long line whose redraw (`\r`) leaves a prompt is one; one that only ends
        // like a prompt is not.
        let mut p = Pending::default();
        p.push(&[b'y'; 5000]);
        p.push(b"\r          \rrtr1#");
        assert_eq!(p.last_line(), ("rtr1#".into(), true));
        let mut p = Pending::default();
        p.push(&[b'y'; 5000]);
        p.push(b"rtr1#\r");
        assert!(!p.last_line().1);
        // A long run of cursor moves before a prompt (no newline between): the end is
        // cleaned from an escape, so it starts on one.
        let mut p = Pending::default();
        for row in 0..400 {
            p.push(format!("\x1b[{row};1H\x1b[2K").as_bytes());
        }
        p.push(b"\x1b[24;1Hsw1# ");
        assert!(p.raw.len() > PROMPT_TAIL);
        assert_eq!(p.last_line(), ("sw1#".into(), true));
        // A pager line goes; the lines before it stay.
        let mut p = Pending::default();
        p.push(b"hostname rtr1\r\n --More-- ");
        assert!(pager_re().is_match(&p.last_line().0));
        p.drop_last_line();
        p.push(b"end\r\n");
        assert_eq!(p.take_text(), "hostname rtr1\nend\n");
    }

    #[tokio::test]
    async fn the_output_budget_is_shared_overdrawn_by_one_and_given_back() {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let held = || metrics.jobs.output_held_bytes.load(Relaxed);
        let waits = || metrics.jobs.output_waits.load(Relaxed);
        // 1 MiB in all: one target may hold all of it, not MAX_OUTPUT.
        let budget = OutputBudget::new(1, metrics.clone());
        assert_eq!(budget.per_target(), 1 << 20);
        assert_eq!(OutputBudget::new(0, metrics.clone()).per_target(), 1 << 20);
        let soon = || Instant::now() + Duration::from_millis(50);
        let mut a = budget.hold();
        a.cover(700_000, soon()).await.expect("room");
        assert_eq!(held(), 704 * 1024, "whole 64 KiB steps");
        a.cover(10, soon()).await.expect("already covered");
        assert_eq!(waits(), 0);
        // 700 KB more do not fit beside a's: b overdraws at once (were it to wait, and a
        // with it, neither could finish).
        let mut b = budget.hold();
        b.cover(700_000, soon()).await.expect("the overdraft");
        b.cover(1 << 20, soon()).await.expect("still the overdraft");
        assert_eq!(waits(), 1);
        // A third waits, the overdraft being taken, and fails at its deadline.
        let mut c = budget.hold();
        let e = c.cover(700_000, soon()).await.expect_err("no room");
        assert_eq!(e.code, OUTPUT_BUDGET);
        assert_eq!(waits(), 2);
        // Waiting again, it goes on once b gives the overdraft back.
        let waiting = tokio::spawn(async move {
            c.cover(700_000, Instant::now() + Duration::from_secs(10))
                .await
                .map(|()| c)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(b);
        let c = waiting.await.expect("join").expect("the overdraft after b");
        assert!(c.overdraft.is_some());
        drop(c);
        drop(a);
        assert_eq!(held(), 0);
        assert_eq!(budget.units.available_permits(), 16);
        assert_eq!(budget.overdraft.available_permits(), 1);
    }

    #[test]
    fn prompts_and_pagers() {
        for p in [
            "rtr1>",
            "rtr1#",
            "user@rtr1>",
            "rtr1(config)#",
            "<rtr1>",
            "[rtr1]",
            "admin@host:~$ ",
        ] {
            assert!(prompt_re().is_match(p), "{p}");
        }
        for p in ["interface Gi1", "description uplink to core#", " --More-- "] {
            assert!(!prompt_re().is_match(p), "{p}");
        }
        for p in [
            " --More-- ",
            "-- More --",
            "---- More ----",
            "---(more 45%)---",
        ] {
            assert!(pager_re().is_match(p), "{p}");
        }
        assert_eq!(strip_echo("show version\nIOS 15", "show version"), "IOS 15");
    }
}
