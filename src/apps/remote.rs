//! What runs on a server, as text: the one shell command of a start, a stop or a status
//! check, the quoting that keeps user input out of the remote shell's grammar, the
//! validation that comes first, and the parser of a status check's answer.
//!
//! An SSH exec request is a single string that the server's login shell parses, so
//! argv cannot be passed as a list. Every user-supplied value therefore reaches the
//! command as one single-quoted word ([`sh_quote`]): inside single quotes a POSIX shell
//! interprets nothing (no `$`, backtick, `;`, `"`, glob or space splitting), and the
//! only character that cannot appear, `'`, is written as `'\''`. Newlines and other
//! control characters are refused before quoting, so a value is always one line.

/// The longest `cd_path` accepted (bytes); Linux's `PATH_MAX` is 4096.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest systemd unit name (systemd's own limit is 255 plus the suffix).
pub const MAX_UNIT_BYTES: usize = 256;

/// Why a value may not reach the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// `s` as one single-quoted POSIX shell word, interpreted by no shell.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Checks a `cd_path`: absolute, at most [`MAX_PATH_BYTES`], no control characters (a
/// newline would end the command line even inside quotes for some shells' `-c`
/// handling, and no real path needs one).
pub fn check_cd_path(p: &str) -> Result<(), Invalid> {
    if !p.starts_with('/') {
        return Err(Invalid(
            "cd_path must be an absolute path (starting with /)".into(),
        ));
    }
    if p.len() > MAX_PATH_BYTES {
        return Err(Invalid(format!(
            "cd_path is longer than {MAX_PATH_BYTES} bytes"
        )));
    }
    if p.chars().any(char::is_control) {
        return Err(Invalid(
            "cd_path must not contain control characters (newlines, tabs, escapes)".into(),
        ));
    }
    Ok(())
}

/// Checks a systemd unit name against the characters systemd allows in unit names
/// (ASCII letters, digits, `:`, `-`, `_`, `.`, `\`, and `@` for instances), at most
/// [`MAX_UNIT_BYTES`], not starting with `-` (it would read as an option) or `.`.
pub fn check_unit(u: &str) -> Result<(), Invalid> {
    if u.is_empty() || u.len() > MAX_UNIT_BYTES {
        return Err(Invalid(format!(
            "unit must be 1-{MAX_UNIT_BYTES} characters"
        )));
    }
    if u.starts_with(['-', '.']) {
        return Err(Invalid("unit must not start with '-' or '.'".into()));
    }
    if !u
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'))
    {
        return Err(Invalid(
            "unit may hold only letters, digits and : - _ . \\ @ (systemd's unit name characters)"
                .into(),
        ));
    }
    Ok(())
}

/// What a start or stop does on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
}

/// The command of a compose app's start (`up -d`) or stop (`down`) in `cd_path`:
/// the `docker compose` plugin if `docker compose version` works, else the standalone
/// `docker-compose`. `cd_path` must have passed [`check_cd_path`].
pub fn compose_command(cd_path: &str, action: Action) -> String {
    let args = match action {
        Action::Start => "up -d",
        Action::Stop => "down",
    };
    format!(
        "cd -- {} && if docker compose version >/dev/null 2>&1; then docker compose {args}; else docker-compose {args}; fi",
        sh_quote(cd_path)
    )
}

/// The command of a systemd app's start or stop. `unit` must have passed
/// [`check_unit`] (quoted anyway).
pub fn systemd_command(unit: &str, action: Action) -> String {
    let verb = match action {
        Action::Start => "start",
        Action::Stop => "stop",
    };
    format!("systemctl {verb} {}", sh_quote(unit))
}

/// The status check: running containers (`-` when `docker ps` fails or docker is
/// missing), `/proc/uptime` and `/proc/loadavg`, one labelled line each so a MOTD or a
/// noisy login script cannot shift the fields.
pub const STATUS_COMMAND: &str = "if c=$(docker ps -q 2>/dev/null); then printf 'opsgate-containers:%s\\n' \"$(printf '%s\\n' \"$c\" | grep -c .)\"; else echo 'opsgate-containers:-'; fi; printf 'opsgate-uptime:%s\\n' \"$(cat /proc/uptime 2>/dev/null)\"; printf 'opsgate-load:%s\\n' \"$(cat /proc/loadavg 2>/dev/null)\"";

/// What a status check reported; a field the server did not give is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub running_containers: Option<u64>,
    /// Seconds since boot.
    pub uptime_secs: Option<u64>,
    /// 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
}

/// Parses [`STATUS_COMMAND`]'s output; unknown lines are ignored, a malformed field is
/// `None`.
pub fn parse_report(text: &str) -> Report {
    let mut r = Report::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("opsgate-containers:") {
            r.running_containers = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("opsgate-uptime:") {
            r.uptime_secs = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64);
        } else if let Some(v) = line.strip_prefix("opsgate-load:") {
            let f: Vec<f64> = v
                .split_whitespace()
                .take(3)
                .filter_map(|s| s.parse::<f64>().ok())
                .filter(|f| f.is_finite() && *f >= 0.0)
                .collect();
            if let [a, b, c] = f[..] {
                r.load = Some([a, b, c]);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs `sh -c "printf '%s' <quoted>"` and returns what the shell made of it.
    fn through_sh(s: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' {}", sh_quote(s)))
            .output()
            .expect("sh");
        String::from_utf8(out.stdout).expect("utf8")
    }

    #[test]
    fn quoting_reaches_the_shell_verbatim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("marker");
        let nasty = [
            "/srv/my app",
            "/srv/it's",
            "/srv/\"quoted\"",
            "/srv/a;b",
            &format!("/srv/$(touch {})", marker.display()),
            &format!("/srv/`touch {}`", marker.display()),
            "/srv/'; touch /tmp/x; '",
            "/srv/$HOME/*",
            "/srv/\\back\\slash",
            "/srv/ünïcødé",
            "",
        ];
        for s in nasty {
            assert_eq!(through_sh(s), s, "{s:?}");
        }
        assert!(!marker.exists(), "a quoted value was executed");
    }

    #[test]
    fn commands_quote_their_values() {
        assert_eq!(
            compose_command("/srv/it's", Action::Start),
            "cd -- '/srv/it'\\''s' && if docker compose version >/dev/null 2>&1; then docker compose up -d; else docker-compose up -d; fi"
        );
        assert_eq!(
            systemd_command("web@1.service", Action::Stop),
            "systemctl stop 'web@1.service'"
        );
    }

    #[test]
    fn paths_and_units_are_validated() {
        assert!(check_cd_path("/srv/app with spaces/$(x);'\"").is_ok());
        assert!(check_cd_path("relative/path").is_err());
        assert!(check_cd_path("/srv/a\nb").is_err());
        assert!(check_cd_path("/srv/a\tb").is_err());
        assert!(check_cd_path("/srv/a\u{1b}[2J").is_err());
        assert!(check_cd_path(&format!("/{}", "a".repeat(MAX_PATH_BYTES))).is_err());
        assert!(check_unit("nginx.service").is_ok());
        assert!(check_unit("getty@tty1.service").is_ok());
        assert!(check_unit("dev-disk-by\\x2duuid.device").is_ok());
        for bad in ["", "-x", ".hidden", "a b", "a;b", "a$(b)", "a'b", "a/b"] {
            assert!(check_unit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reports_parse_robustly() {
        let r = parse_report(
            "Welcome!\nopsgate-containers:3\nopsgate-uptime:12345.67 23456.78\nopsgate-load:0.50 0.25 0.10 1/123 4567\n",
        );
        assert_eq!(r.running_containers, Some(3));
        assert_eq!(r.uptime_secs, Some(12345));
        assert_eq!(r.load, Some([0.5, 0.25, 0.1]));
        let r = parse_report("opsgate-containers:-\nopsgate-uptime:\nopsgate-load:x y\n");
        assert_eq!(r, Report::default());
        assert_eq!(parse_report("garbage"), Report::default());
    }

    #[test]
    fn the_status_command_runs_in_sh() {
        let out = Command::new("sh")
            .arg("-c")
            .arg(STATUS_COMMAND)
            .output()
            .expect("sh");
        let r = parse_report(&String::from_utf8_lossy(&out.stdout));
        assert!(r.uptime_secs.is_some(), "{r:?}");
        assert!(r.load.is_some(), "{r:?}");
    }
}
