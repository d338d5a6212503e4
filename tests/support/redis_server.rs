//! A throwaway Redis server of its own (standalone, or a node of a Cluster or a
//! Sentinel deployment: `topologies.rs`), started from the installed binary in a
//! temporary directory on a free loopback port, and stoppable to inject faults.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::services::{free_port, temp_dir};

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
