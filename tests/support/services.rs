//! Throwaway PostgreSQL and Redis servers for the tests: started from the installed
//! binaries in a temporary directory on free loopback ports, never the standard ones,
//! and stoppable so tests can inject faults.

// Shared by several test binaries (api, persistence, contract), each using a part of
// it: what one binary leaves unused is not dead, and `pub` is for those binaries.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "session-crypto-{kind}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// `initdb`/`pg_ctl`: on PATH, else the newest `/usr/lib/postgresql/<v>/bin`.
fn pg_bin(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/test.sh (it installs postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("{name} not found"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL cluster of its own.
pub struct PgServer {
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PgServer {
    pub fn start() -> Self {
        let dir = temp_dir("pg");
        let as_postgres = is_root(); // initdb and postgres refuse to run as root
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&dir));
        }
        let pg = Self {
            dir,
            port: free_port(),
            as_postgres,
        };
        pg.tool(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_server();
        pg.psql_db("postgres", "CREATE DATABASE session_crypto");
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn tool(&self, name: &str, args: &[&str]) -> String {
        let bin = pg_bin(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        run(cmd.args(args))
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    pub fn stop_server(&self) {
        self.tool("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/session_crypto", self.port)
    }

    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        run(Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ]))
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("session_crypto", sql)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let bin = pg_bin("pg_ctl");
        let data = self.data();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of its own.
pub struct RedisServer {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// Arguments after the common ones (cluster mode, `--replicaof`, …).
    extra: Vec<String>,
    /// What `redis-cli` needs besides host and port (`--tls`, `-a`).
    cli_args: Vec<String>,
    /// `rediss://` instead of `redis://`, and the password in the URL.
    tls: bool,
    password: Option<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(free_port(), &[])
    }

    /// A server on `port` with `extra` arguments, without persistence (a restart
    /// starts empty, as the project's tests want their Redis).
    pub fn start_with(port: u16, extra: &[&str]) -> Self {
        Self::start_full(port, extra, &[], false, None)
    }

    /// A server with `requirepass password` (and `masterauth`, for replicas).
    pub fn start_with_password(port: u16, extra: &[&str], password: &str) -> Self {
        let mut all: Vec<&str> = extra.to_vec();
        all.extend(["--requirepass", password, "--masterauth", password]);
        Self::start_full(
            port,
            &all,
            &["-a", password, "--no-auth-warning"],
            false,
            Some(password),
        )
    }

    /// A TLS-only server (certificate and CA from `pki`) with a password.
    pub fn start_tls(pki: &super::TestPki, password: &str) -> Self {
        Self::start_tls_with(free_port(), pki, password, &[])
    }

    /// A TLS-only server on `port` with `extra` arguments (cluster mode, `--replicaof`):
    /// replication and the cluster bus over TLS too.
    pub fn start_tls_with(port: u16, pki: &super::TestPki, password: &str, extra: &[&str]) -> Self {
        let (cert, key, ca) = (
            pki.cert.display().to_string(),
            pki.key.display().to_string(),
            pki.ca.display().to_string(),
        );
        let port_text = port.to_string();
        let mut args = vec![
            "--port",
            "0",
            "--tls-port",
            &port_text,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
            "--tls-cluster",
            "yes",
            "--requirepass",
            password,
            "--masterauth",
            password,
        ];
        args.extend_from_slice(extra);
        Self::start_full(
            port,
            &args,
            &[
                "--tls",
                "--cacert",
                &ca,
                "-a",
                password,
                "--no-auth-warning",
            ],
            true,
            Some(password),
        )
    }

    fn start_full(
        port: u16,
        extra: &[&str],
        cli_args: &[&str],
        tls: bool,
        password: Option<&str>,
    ) -> Self {
        let owned = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect();
        let mut r = Self {
            dir: temp_dir("redis"),
            port,
            child: None,
            extra: owned(extra),
            cli_args: owned(cli_args),
            tls,
            password: password.map(str::to_owned),
        };
        r.start_server();
        r
    }

    pub fn start_server(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server is not installed: run scripts/test.sh (it installs redis-server)",
            );
        self.child = Some(child);
        let started = Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What `redis-cli` needs besides host and port.
    pub fn cli_args(&self) -> &[String] {
        &self.cli_args
    }

    /// Whether the process runs (it has not been killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGSTOP / SIGCONT: the process hangs (and misses replication) until resumed.
    pub fn pause(&self, paused: bool) {
        if let Some(c) = &self.child {
            let signal = if paused { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, as an outage would look.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(p) => format!("{scheme}://:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Deletes the keys matching `pattern` (e.g. `sess:*`: the session cache alone,
    /// where a `FLUSHALL` would also be a loss of nonces that fences the servers).
    pub fn delete_keys(&self, pattern: &str) {
        let keys = self.cli(&["--scan", "--pattern", pattern]);
        for k in keys.lines().filter(|k| !k.is_empty()) {
            self.cli(&["DEL", k]);
        }
    }

    /// Every key and its value (`GET`), as text.
    pub fn dump(&self) -> String {
        let keys = self.cli(&["--scan"]);
        let mut out = String::new();
        for k in keys.lines().filter(|k| !k.is_empty()) {
            out.push_str(k);
            out.push(' ');
            out.push_str(&self.cli(&["GET", k]));
        }
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
