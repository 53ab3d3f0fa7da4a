//! Pieces every scenario uses: the loopback guard, the file-descriptor limit, process
//! figures from /proc, histograms and the results table.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{Map, Value};

/// Refuses anything but a loopback address or `localhost`: the load generator must never
/// be pointed at someone else's host.
pub fn check_loopback(url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("URL {url:?}"))?;
    let host = parsed.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing to load-test {host}: only loopback targets (127.0.0.0/8, ::1, localhost)");
    }
    Ok(())
}

/// Same check for a bare host name or address.
pub fn check_loopback_host(host: &str) -> anyhow::Result<()> {
    check_loopback(&format!("http://{host}/"))
        .or_else(|_| check_loopback(&format!("http://[{host}]/")))
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit (10,000 sockets need more than the
/// usual 1,024). Returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        // Root may go past the hard limit; try a generous one first, then the hard limit.
        let want = libc::rlimit {
            rlim_cur: 65_536.max(lim.rlim_max),
            rlim_max: 65_536.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return want.rlim_cur;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            return lim.rlim_cur;
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Memory and CPU time of one process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set size, KiB (VmRSS).
    pub rss_kib: u64,
    /// The anonymous part of it, KiB (RssAnon): heap and stacks, without the shared
    /// pages of the program's code and libraries.
    pub anon_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

impl ProcSample {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` for pid 0 or a gone process.
    pub fn read(pid: u32) -> Option<ProcSample> {
        if pid == 0 {
            return None;
        }
        Self::read_path(&format!("/proc/{pid}"))
    }

    /// This process.
    pub fn own() -> Option<ProcSample> {
        Self::read_path("/proc/self")
    }

    fn read_path(dir: &str) -> Option<ProcSample> {
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let rss_kib = field("VmRSS:");
        let anon_kib = field("RssAnon:");
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        Some(ProcSample {
            rss_kib,
            anon_kib,
            cpu_secs: (utime + stime) / clock_ticks(),
        })
    }
}

/// A process's figures over a measured stretch.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcDelta {
    pub before: ProcSample,
    pub after: ProcSample,
}

impl ProcDelta {
    pub fn cpu_secs(&self) -> f64 {
        (self.after.cpu_secs - self.before.cpu_secs).max(0.0)
    }
    pub fn rss_delta_kib(&self) -> i64 {
        self.after.rss_kib as i64 - self.before.rss_kib as i64
    }
}

/// A latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
/// The `name=value` of the session cookie a login response set, if any.
pub fn session_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_string())
}

pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 600_000_000);
    let _ = h.record(us);
}

/// Milliseconds at a quantile, as a float.
pub fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn ms_max(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.max() as f64 / 1000.0
}

pub const MIB: f64 = 1024.0 * 1024.0;
/// Throughput figures use decimal megabytes (10^6), as the peer figures do.
pub const MB: f64 = 1_000_000.0;

/// A results table: printed aligned for people and, with `--json`, appended to a file as
/// one JSON object per row (`scenario`, `target` and the columns) for the scripts.
pub struct Report {
    scenario: String,
    columns: Vec<String>,
    rows: Vec<Vec<(String, Value)>>,
}

/// One cell: a number (formatted with `decimals`) or text.
pub enum Cell {
    Num(f64, usize),
    Int(i64),
    Text(String),
}

impl Cell {
    fn display(&self) -> String {
        match self {
            Cell::Num(v, _) if !v.is_finite() => "-".into(),
            Cell::Num(v, d) => format!("{v:.*}", d),
            Cell::Int(v) => v.to_string(),
            Cell::Text(t) => t.clone(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Cell::Num(v, _) if !v.is_finite() => Value::Null,
            Cell::Num(v, _) => serde_json::json!(v),
            Cell::Int(v) => serde_json::json!(v),
            Cell::Text(t) => Value::String(t.clone()),
        }
    }
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            columns: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of (column, cell); columns appear in first-seen order.
    pub fn row(&mut self, cells: Vec<(&str, Cell)>) {
        let mut row = Vec::new();
        for (name, cell) in cells {
            if !self.columns.iter().any(|c| c == name) {
                self.columns.push(name.to_string());
            }
            row.push((name.to_string(), cell.json()));
            // Keep the display text alongside (under a private key) for printing.
            row.push((format!("\u{0}{name}"), Value::String(cell.display())));
        }
        self.rows.push(row);
    }

    pub fn print(&self) {
        let text = |row: &Vec<(String, Value)>, col: &str| -> String {
            let key = format!("\u{0}{col}");
            row.iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| text(r, c).len())
                    .max()
                    .unwrap_or(0)
                    .max(c.len())
            })
            .collect();
        println!("== {}", self.scenario);
        let line = |cells: Vec<String>| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect();
            println!("| {} |", parts.join(" | "));
        };
        line(self.columns.clone());
        line(widths.iter().map(|w| "-".repeat(*w)).collect());
        for r in &self.rows {
            line(self.columns.iter().map(|c| text(r, c)).collect());
        }
        println!();
    }

    /// Appends the rows to `path` as JSON lines.
    pub fn write_json(&self, path: &str, target: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        for r in &self.rows {
            let mut m = Map::new();
            m.insert("scenario".into(), Value::String(self.scenario.clone()));
            m.insert("target".into(), Value::String(target.to_string()));
            for (k, v) in r {
                if !k.starts_with('\u{0}') {
                    m.insert(k.clone(), v.clone());
                }
            }
            writeln!(f, "{}", Value::Object(m))?;
        }
        Ok(())
    }

    /// Prints, and writes JSON if asked.
    pub fn finish(&self, json: Option<&str>, target: &str) -> anyhow::Result<()> {
        self.print();
        if let Some(p) = json {
            self.write_json(p, target)?;
        }
        Ok(())
    }
}

/// Finds `needle` in `tail ++ data`, keeping a tail so a marker split across two reads
/// is still found. Returns the offset in `data` just past the marker.
pub struct MarkerScan {
    needle: Vec<u8>,
    tail: Vec<u8>,
}

impl MarkerScan {
    pub fn new(needle: &[u8]) -> MarkerScan {
        MarkerScan {
            needle: needle.to_vec(),
            tail: Vec::new(),
        }
    }

    /// Feeds `data`; `Some(end)` once the marker is seen, `end` being the index in `data`
    /// just past it (0 if it ended in the tail, which cannot happen: the tail is shorter).
    pub fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let n = self.needle.len();
        let mut joined = std::mem::take(&mut self.tail);
        let tail_len = joined.len();
        joined.extend_from_slice(data);
        if let Some(pos) = joined.windows(n).position(|w| w == self.needle.as_slice()) {
            return Some((pos + n).saturating_sub(tail_len));
        }
        let keep = n.saturating_sub(1).min(joined.len());
        self.tail = joined[joined.len() - keep..].to_vec();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_across_reads() {
        let mut m = MarkerScan::new(b"READY");
        assert_eq!(m.feed(b"xxRE"), None);
        assert_eq!(m.feed(b"ADYzz"), Some(3));
        let mut m = MarkerScan::new(b"END");
        assert_eq!(m.feed(b"aaENDbb"), Some(5));
    }

    #[test]
    fn loopback_only() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("ws://[::1]:1/ws").is_ok());
        assert!(check_loopback("http://localhost/").is_ok());
        assert!(check_loopback("http://10.0.0.1/").is_err());
        assert!(check_loopback_host("127.0.0.5").is_ok());
        assert!(check_loopback_host("::1").is_ok());
        assert!(check_loopback_host("example.com").is_err());
    }

    #[test]
    fn own_process_figures() {
        let s = ProcSample::own().expect("self");
        assert!(s.rss_kib > 0);
    }
}
