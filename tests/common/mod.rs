//! Shared harness for integration tests: starts the real `opsgate` binary on a free
//! loopback port with its own data directory, and talks to it over real HTTP.
//!
//! ```ignore
//! let server = Server::start(ServerOptions::default()).await;
//! let mut admin = server.client();
//! admin.login(ADMIN, ADMIN_PASSWORD).await;
//! admin.post("/api/sessions", &session_input("r1", "10.0.0.1")).await.assert_status(201);
//! ```
//!
//! Each test file includes this with `mod common;`; not every file uses every helper.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The first admin's user name and the password the harness gives it.
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-test-password-1";

/// The gateway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

/// How long a start may take before the test fails (debug builds on a busy 2-core box).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful stop may take before the harness falls back to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a server. Everything is optional.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra TOML written to the `--config` file (tables allowed; top-level keys must
    /// come before any table, as in any TOML file).
    pub config: String,
    /// Serve under this prefix (`base_path` in the config); URLs of the client follow it.
    pub base_path: Option<String>,
    /// Generate a self-signed pair with `opsgate gen-cert` and serve HTTPS.
    pub tls: bool,
    /// Extra environment variables for the child (after the harness's own).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments after `serve`.
    pub args: Vec<String>,
    /// Address to listen on instead of 127.0.0.1 (e.g. 0.0.0.0); the port is still a
    /// free one and clients still connect through 127.0.0.1.
    pub listen_ip: Option<IpAddr>,
}

impl ServerOptions {
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }
    pub fn base_path(mut self, p: &str) -> Self {
        self.base_path = Some(p.to_string());
        self
    }
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn listen_ip(mut self, ip: IpAddr) -> Self {
        self.listen_ip = Some(ip);
        self
    }
}

/// A running gateway. Killed (SIGKILL) on drop; the data directory lives as long as this.
pub struct Server {
    pub opts: ServerOptions,
    /// Where clients connect: 127.0.0.1 and the server's port.
    pub addr: SocketAddr,
    data_dir: TempDir,
    /// Config file, certificates and logs: outside the data directory so that scanning
    /// the data directory sees only what the gateway wrote there.
    work: TempDir,
    config_path: PathBuf,
    child: Option<Child>,
}

/// A free loopback port (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A `Command` for the binary with a clean environment: no inherited `OPSGATE_*`.
pub fn opsgate_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("OPSGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs the binary to completion (bounded by `timeout`, then killed) and returns its
/// exit status (None if it had to be killed) and combined stdout+stderr.
pub fn run_to_exit(mut cmd: Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.log");
    let f = File::create(&out).expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().expect("dup"))
        .stderr(f);
    let mut child = cmd.spawn().expect("spawn opsgate");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&out).unwrap_or_default())
}

impl Server {
    /// Starts a server and waits until `/healthz` answers.
    pub async fn start(opts: ServerOptions) -> Server {
        let work = tempfile::tempdir().expect("tempdir");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut toml = String::new();
        if let Some(p) = &opts.base_path {
            toml.push_str(&format!("base_path = {}\n", toml_str(p)));
        }
        toml.push_str(&opts.config);
        toml.push('\n');
        if opts.tls {
            let certs = work.path().join("certs");
            let mut cmd = opsgate_command();
            cmd.arg("gen-cert").arg("--dir").arg(&certs);
            let (status, out) = run_to_exit(cmd, Duration::from_secs(30));
            assert!(
                status.is_some_and(|s| s.success()),
                "gen-cert failed: {out}"
            );
            toml.push_str(&format!(
                "[tls]\ncert = {}\nkey = {}\n",
                toml_str(&certs.join("opsgate-dev.crt").display().to_string()),
                toml_str(&certs.join("opsgate-dev.key").display().to_string()),
            ));
        }
        let config_path = work.path().join("opsgate.toml");
        std::fs::write(&config_path, toml).expect("write config");
        let mut server = Server {
            opts,
            addr,
            data_dir,
            work,
            config_path,
            child: None,
        };
        server.spawn_and_wait().await;
        server
    }

    /// Starts with default options.
    pub async fn start_default() -> Server {
        Server::start(ServerOptions::default()).await
    }

    /// Starts the process again (after [`Server::stop`] or [`Server::kill9`]) on the same
    /// port and data directory.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn_and_wait().await;
    }

    /// Graceful stop (SIGTERM, then SIGKILL after a while) and start again; the data
    /// directory and port are kept.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().await;
    }

    /// SIGTERM and wait for exit (SIGKILL if it takes longer than the stop timeout).
    /// Returns the exit status, if the process exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no chance to flush or clean up, like a power cut for the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn log_file(&self) -> PathBuf {
        self.work.path().join("opsgate.log")
    }

    async fn spawn_and_wait(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("log file");
        let mut cmd = opsgate_command();
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.listen_addr().to_string())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.opts.args)
            .env("OPSGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Tests compare RSS before and after their work: a release of code pages in
            // between would let the work's code map back in and read as growth, and a
            // heap trim every 10 s (the default) makes the same more likely for the heap.
            // The test of the release itself sets its own (`env` below wins).
            .env("OPSGATE_MEMORY__RELEASE_CODE_PAGES", "false")
            .env("OPSGATE_MEMORY__RELEASE_SECS", "60")
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn opsgate"));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = self.url("/healthz");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "opsgate exited during start-up ({status}):\n{}",
                        self.logs()
                    );
                }
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "opsgate did not answer {url} within {START_TIMEOUT:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address the process is told to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.opts
                .listen_ip
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            self.addr.port(),
        )
    }

    pub fn scheme(&self) -> &'static str {
        if self.opts.tls {
            "https"
        } else {
            "http"
        }
    }

    /// `scheme://127.0.0.1:port` — the origin a browser would send.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// Origin plus the base path: every API path is appended to this.
    pub fn base_url(&self) -> String {
        format!(
            "{}{}",
            self.origin(),
            self.opts.base_path.as_deref().unwrap_or("")
        )
    }

    /// Full URL of `path` (which starts with `/`), under the base path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// The running process's id, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory of the gateway process in KiB (from /proc), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// One KiB figure of the gateway's `/proc/PID/status` (e.g. `RssFile:`), if it runs.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Everything the process wrote to stdout and stderr, over all its runs.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// A client with no cookie, from 127.0.0.1.
    pub fn client(&self) -> Client {
        Client::new(self, None)
    }

    /// A client whose connections come from another loopback address (e.g. 127.0.0.2),
    /// so that per-IP limits see a different client.
    pub fn client_from(&self, source: IpAddr) -> Client {
        Client::new(self, Some(source))
    }

    /// A new client logged in as `user`.
    pub async fn login(&self, user: &str, password: &str) -> Client {
        let mut c = self.client();
        c.login(user, password).await;
        c
    }

    /// A new client logged in as the bootstrap admin.
    pub async fn admin(&self) -> Client {
        self.login(ADMIN, ADMIN_PASSWORD).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn toml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response ({}) is not JSON: {e}: {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The `name=value` part of the first `Set-Cookie`, if any.
    pub fn cookie(&self) -> Option<String> {
        self.set_cookies()
            .first()
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
    }

    /// Panics (showing the body) unless the status is `status`.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Checks status and the one error shape `{"error":{"code","message"}}` (and
    /// nothing else); `code` is checked when given. Returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: Option<&str>) -> String {
        self.assert_status(status);
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "error content-type {ct:?}; body: {}",
            self.text()
        );
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "error body has extra keys: {v}");
        let err = v["error"].as_object().expect("error is an object");
        assert_eq!(err.len(), 2, "error object has extra keys: {v}");
        let got = err["code"].as_str().expect("code is a string");
        assert!(
            !got.is_empty() && got.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "code is not snake_case: {got:?}"
        );
        let message = err["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "empty error message");
        if let Some(code) = code {
            assert_eq!(got, code, "error code; body: {v}");
        }
        message.to_string()
    }
}

/// A REST client bound to one server. Holds at most one cookie (`name=value`), set by
/// [`Client::login`] or by hand; sends `X-Requested-With: test` unless told not to.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    base: String,
    pub cookie: Option<String>,
    pub requested_with: bool,
}

impl Client {
    pub fn new(server: &Server, source: Option<IpAddr>) -> Client {
        let mut b = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = source {
            b = b.local_address(ip);
        }
        Client {
            http: b.build().expect("client"),
            base: server.base_url(),
            cookie: None,
            requested_with: true,
        }
    }

    /// The same client with another cookie (or none).
    pub fn with_cookie(&self, cookie: Option<&str>) -> Client {
        let mut c = self.clone();
        c.cookie = cookie.map(str::to_string);
        c
    }

    /// The same client without the `X-Requested-With` header.
    pub fn without_requested_with(&self) -> Client {
        let mut c = self.clone();
        c.requested_with = false;
        c
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with this client's cookie and default headers; add to it and [`Client::send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(c) = &self.cookie {
            rb = rb.header(reqwest::header::COOKIE, c);
        }
        if self.requested_with {
            rb = rb.header(
                HeaderName::from_static("x-requested-with"),
                HeaderValue::from_static("test"),
            );
        }
        rb
    }

    /// Sends and reads the whole response; panics on transport errors.
    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        self.try_send(rb)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}"))
    }

    /// Sends and reads the whole response.
    pub async fn try_send(&self, rb: RequestBuilder) -> Result<Resp, reqwest::Error> {
        let r = rb.send().await?;
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await?.to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    /// A request with a raw body and content type (malformed JSON, YAML …).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        self.send(
            self.request(method, path)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
        )
        .await
    }

    /// `POST /api/auth/login` with JSON; does not touch this client's cookie.
    pub async fn try_login(&self, user: &str, password: &str) -> Resp {
        self.post(
            "/api/auth/login",
            &json!({"username": user, "password": password}),
        )
        .await
    }

    /// `POST /api/auth/login` with `Authorization: Basic` and no body.
    pub async fn try_login_basic(&self, user: &str, password: &str) -> Resp {
        self.send(
            self.request(Method::POST, "/api/auth/login")
                .basic_auth(user, Some(password)),
        )
        .await
    }

    /// Logs in (panics unless 200) and keeps the session cookie; returns it.
    pub async fn login(&mut self, user: &str, password: &str) -> String {
        let r = self.try_login(user, password).await;
        r.assert_status(200);
        let cookie = r
            .cookie()
            .unwrap_or_else(|| panic!("login set no cookie: {:?}", r.headers));
        self.cookie = Some(cookie.clone());
        cookie
    }

    /// Admin only: creates a user (panics unless 201).
    pub async fn create_user(&self, username: &str, password: &str, role: &str) {
        self.post(
            "/api/users",
            &json!({"username": username, "password": password, "role": role}),
        )
        .await
        .assert_status(201);
    }

    /// Stores a password credential named `pw`; returns its id.
    pub async fn password_credential(&self, secret: &str) -> String {
        let r = self
            .post(
                "/api/credentials",
                &serde_json::json!({"name":"pw","kind":"password","secret":secret}),
            )
            .await;
        r.assert_status(201);
        r.json()["id"].as_str().expect("credential id").to_string()
    }

    /// `GET /api/sessions[?q=]` as JSON (panics unless 200).
    pub async fn list_sessions(&self) -> Value {
        let r = self.get("/api/sessions").await;
        r.assert_status(200);
        r.json()
    }

    /// Every saved session of every folder, flattened.
    pub async fn all_sessions(&self) -> Vec<Value> {
        flatten_sessions(&self.list_sessions().await)
    }

    /// `GET /api/sessions/export` as text (panics unless 200).
    pub async fn export(&self) -> String {
        let r = self.get("/api/sessions/export").await;
        r.assert_status(200);
        r.text()
    }

    /// Creates a saved session (panics unless 201) and returns it.
    pub async fn create_session(&self, body: &Value) -> Value {
        let r = self.post("/api/sessions", body).await;
        r.assert_status(201);
        r.json()
    }
}

/// The sessions of a `GET /api/sessions` answer, flattened.
pub fn flatten_sessions(list: &Value) -> Vec<Value> {
    list["folders"]
        .as_array()
        .expect("folders array")
        .iter()
        .flat_map(|f| f["sessions"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A valid saved-session body.
pub fn session_input(display_name: &str, host: &str) -> Value {
    json!({
        "display_name": display_name,
        "host": host,
        "port": 22,
        "username": "netops",
        "device_type": "cisco_ios",
    })
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for path in all_files(dir) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(path);
        }
    }
    hits
}

/// Every regular file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}
