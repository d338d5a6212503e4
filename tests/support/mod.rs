//! Test harness: runs the real `session-crypto` binary on a free port and talks to it
//! with the project's own client.

// Shared by several test binaries (api, persistence, contract), each using a part of
// it: what one binary leaves unused is not dead, and `pub` is for those binaries.
#![allow(dead_code, unreachable_pub)]

pub mod mitm;
mod pki;
pub mod redis_server;
pub mod resp_gate;
pub mod services;
pub mod topologies;
pub mod upstream;

pub use pki::TestPki;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyper::Method;
use ports::CryptoProvider;
use session_crypto_client::{
    Connection, Endpoint, HttpResponse, InitRoute, ProtocolClient, fresh_idempotency_key, now_ms,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_session-crypto");

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub internal_url: Option<String>,
    pub admin_url: Option<String>,
    /// The public listener's start-up line.
    pub banner: String,
    pub crypto: CryptoProvider,
}

/// The backends compiled into this test build (the binary has the same features).
pub fn backends() -> Vec<CryptoProvider> {
    session_crypto::backend::compiled()
}

pub fn default_backend() -> CryptoProvider {
    backends()[0]
}

impl Server {
    pub fn start(envs: &[(&str, &str)]) -> Self {
        Self::start_with(default_backend(), envs)
    }

    pub fn start_with(crypto: CryptoProvider, envs: &[(&str, &str)]) -> Self {
        Self::spawn(crypto, envs, Stdio::null())
    }

    /// Starts a server whose log (stderr) goes to `log`.
    pub fn start_logging_to(envs: &[(&str, &str)], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(default_backend(), envs, Stdio::from(file))
    }

    /// Starts a server under the open-file limits `soft` and `hard` (set by `sh`'s
    /// `ulimit` before it execs the binary), its log going to `log`.
    pub fn start_with_open_file_limits(
        soft: u64,
        hard: u64,
        envs: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" serve"
            ))
            .arg(BIN);
        Self::spawn_command(cmd, default_backend(), envs, Stdio::from(file))
    }

    fn spawn(crypto: CryptoProvider, envs: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        Self::spawn_command(cmd, crypto, envs, stderr)
    }

    fn spawn_command(
        mut cmd: Command,
        crypto: CryptoProvider,
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        cmd.env_clear()
            .env("PORT", "0")
            .env("CRYPTO_BACKEND", crypto.name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn session-crypto");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut url, mut internal_url, mut admin_url) = (None, None, None);
        let mut banner = String::new();
        while url.is_none() {
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("read stdout");
            let addr = line
                .strip_prefix("listening on ")
                .and_then(|l| l.split(' ').next())
                .map(str::to_owned);
            if line.contains("(internal") {
                internal_url = addr;
            } else if line.contains("(admin") {
                admin_url = addr;
            } else if line.contains("(public") {
                url = addr;
                banner = line.clone();
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            url: url.unwrap_or_default(),
            internal_url,
            admin_url,
            banner,
            crypto,
        }
    }

    pub async fn connect(&self) -> Connection {
        Connection::open(&Endpoint::parse(&self.url).unwrap())
            .await
            .unwrap()
    }

    pub async fn client(&self, client_id: &str) -> ProtocolClient {
        ProtocolClient::connect(&self.url, self.crypto, client_id)
            .await
            .unwrap()
    }

    /// `GET /metrics` on the admin listener, as text.
    pub async fn metrics(&self) -> String {
        let admin = self.admin_url.as_deref().expect("started with ADMIN_PORT");
        let mut conn = Connection::open(&Endpoint::parse(admin).unwrap())
            .await
            .unwrap();
        let r = conn.send(Method::GET, "/metrics", &[], "").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal_term();
        self.wait_exit()
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
    }

    /// Waits (at most 5 s) for the process to exit.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (for start-up failures).
pub fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PORT", "0")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary to completion: ((exit code, stdout), stderr).
pub fn run_to_exit_with_stdout(args: &[&str], envs: &[(&str, &str)]) -> ((i32, String), String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        (out.status.code().unwrap_or(-1), stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn json(resp: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {:?} {:?}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        )
    })
}

/// Asserts an unversioned error: status and `{"error": code}` as JSON.
#[track_caller]
pub fn assert_code(resp: &HttpResponse, status: u16, code: &str) {
    assert_eq!(
        resp.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(json(resp), serde_json::json!({ "error": code }));
}

/// Asserts an identity (`/v1`) error: status, reason phrase and a message.
#[track_caller]
pub fn assert_identity(resp: &HttpResponse, status: u16) {
    assert_eq!(
        resp.status.as_u16(),
        status,
        "body: {}",
        String::from_utf8_lossy(&resp.body)
    );
    let v = json(resp);
    assert_eq!(v["error"], resp.status.canonical_reason().unwrap());
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

pub fn idem(crypto: CryptoProvider) -> String {
    fresh_idempotency_key(crypto).unwrap()
}

pub fn idem_at(ts: u64) -> String {
    format!("{ts}.{}", uuid_like())
}

pub fn uuid_like() -> String {
    let mut r = [0u8; 16];
    default_backend().random.fill(&mut r).unwrap();
    domain::encoding::uuid_v4(r)
}

pub fn b64(bytes: &[u8]) -> String {
    domain::encoding::base64_encode(bytes)
}

pub fn now() -> u64 {
    now_ms()
}

pub fn fresh_public_key(crypto: CryptoProvider) -> Vec<u8> {
    crypto
        .key_agreement
        .generate()
        .unwrap()
        .public_key()
        .0
        .to_vec()
}

/// Sends one sealed purchase of `session` as given (for replays) on `conn`.
pub async fn post_sealed(
    conn: &mut Connection,
    session: &domain::client::ClientSession,
    sealed: &domain::client::SealedRequest,
) -> Result<HttpResponse, session_crypto_client::FlowError> {
    let headers = [
        ("x-kid", session.kid()),
        ("x-idempotency-key", sealed.idempotency_key.as_str()),
        ("x-clientid", session.client_id()),
    ];
    conn.send(
        Method::POST,
        "/transaction/purchase",
        &headers,
        sealed.envelope.clone(),
    )
    .await
}

/// A whole number of seconds from the environment variable `name`, else `default`.
pub fn secs_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// A raw init request.
pub async fn post_init(
    conn: &mut Connection,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> HttpResponse {
    conn.send(Method::POST, path, headers, body).await.unwrap()
}

/// The status and body of a flow step the server refused; panics when it succeeded
/// or failed without an answer.
pub fn refusal<T: std::fmt::Debug>(
    result: Result<T, session_crypto_client::FlowError>,
) -> (u16, String) {
    match result {
        Err(session_crypto_client::FlowError::Status { status, body, .. }) => {
            (status.as_u16(), body)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub const INIT: InitRoute = InitRoute::Unversioned;
pub const PAYLOAD: &[u8] = br#"{"schemeCode":"AEF","amount":5000}"#;
pub const REVOKE: &[u8] = session_crypto_client::REVOKE_PLAINTEXT;
