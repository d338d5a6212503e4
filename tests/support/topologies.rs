//! Throwaway Redis Cluster and Sentinel deployments, made of the installed
//! `redis-server` and `redis-cli`, on free loopback ports, stoppable node by node.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::services::{RedisServer, free_port, temp_dir};

/// A free port whose cluster-bus port (+10000) is free too and below 65536.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The password of every node of the test deployments: passwords are part of what
/// the topologies must support.
pub const PASSWORD: &str = "topology-secret";

/// A Redis Cluster of `masters` primaries with one replica each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_nodes(masters, |port, args| {
            RedisServer::start_with_password(port, args, PASSWORD)
        })
    }

    /// The same over TLS (clients, replication and the cluster bus), certificates from
    /// `pki`.
    pub fn start_tls(masters: usize, pki: &super::TestPki) -> Self {
        Self::start_nodes(masters, |port, args| {
            RedisServer::start_tls_with(port, pki, PASSWORD, args)
        })
    }

    fn start_nodes(masters: usize, start: impl Fn(u16, &[&str]) -> RedisServer) -> Self {
        let nodes: Vec<RedisServer> = (0..masters * 2)
            .map(|_| {
                start(
                    free_cluster_port(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(nodes[0].cli_args())
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Until every running node says `cluster_state:ok` and every slot has a primary
    /// that answers.
    pub fn wait_ok(&self) {
        wait_until("cluster ok", Duration::from_secs(30), || {
            self.nodes
                .iter()
                .filter(|n| n.is_running())
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
    }

    /// `redis://` seed URLs of every node.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Indexes of the nodes that are primaries now.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_running()
                    && self.nodes[i].cli(&["ROLE"]).lines().next() == Some("master")
            })
            .collect()
    }

    /// Every key on every primary.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.primaries()
            .into_iter()
            .flat_map(|i| {
                self.nodes[i]
                    .cli(&["--scan", "--pattern", pattern])
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// One primary, one replica and three sentinels monitoring them as `mymaster`.
pub struct RedisSentinel {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<Sentinel>,
}

/// One `redis-server --sentinel`.
pub struct Sentinel {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// The CA for `redis-cli --tls`, when the sentinel speaks TLS.
    tls_ca: Option<String>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const MASTER: &str = "mymaster";

impl RedisSentinel {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// The same over TLS (clients, replication, sentinels), certificates from `pki`.
    pub fn start_tls(pki: &super::TestPki) -> Self {
        Self::start_with(Some(pki))
    }

    fn start_with(pki: Option<&super::TestPki>) -> Self {
        let server = |extra: &[&str]| match pki {
            Some(pki) => RedisServer::start_tls_with(free_port(), pki, PASSWORD, extra),
            None => RedisServer::start_with_password(free_port(), extra, PASSWORD),
        };
        let primary = server(&[]);
        let replica = server(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        wait_until("replica in sync", Duration::from_secs(20), || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels = (0..3)
            .map(|_| {
                let (port, dir) = (free_port(), temp_dir("sentinel"));
                let conf = dir.join("sentinel.conf");
                let listen = match pki {
                    Some(pki) => format!(
                        "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                         tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                        pki.cert.display(),
                        pki.key.display(),
                        pki.ca.display()
                    ),
                    None => format!("port {port}\n"),
                };
                std::fs::write(
                    &conf,
                    format!(
                        "{listen}bind 127.0.0.1\ndir {}\nrequirepass {PASSWORD}\n\
                         sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                         sentinel auth-pass {MASTER} {PASSWORD}\n\
                         sentinel down-after-milliseconds {MASTER} 1000\n\
                         sentinel failover-timeout {MASTER} 3000\n\
                         sentinel parallel-syncs {MASTER} 1\n",
                        dir.display(),
                        primary.port
                    ),
                )
                .unwrap();
                let child = Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server --sentinel");
                Sentinel {
                    port,
                    dir,
                    child: Some(child),
                    tls_ca: pki.map(|p| p.ca.display().to_string()),
                }
            })
            .collect::<Vec<_>>();
        let s = Self {
            primary,
            replica,
            sentinels,
        };
        wait_until("sentinels see the replica", Duration::from_secs(20), || {
            s.sentinels.iter().all(|x| {
                s.sentinel_cli(x, &["SENTINEL", "REPLICAS", MASTER])
                    .contains(&s.replica.port.to_string())
            })
        });
        s
    }

    pub fn sentinel_cli(&self, sentinel: &Sentinel, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &sentinel.port.to_string()])
            .args(["-a", PASSWORD, "--no-auth-warning"])
            .args(
                sentinel
                    .tls_ca
                    .iter()
                    .flat_map(|ca| ["--tls".to_owned(), "--cacert".to_owned(), ca.clone()]),
            )
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// `redis://` URLs of the sentinels.
    pub fn urls(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| {
                let scheme = if s.tls_ca.is_some() {
                    "rediss"
                } else {
                    "redis"
                };
                format!("{scheme}://:{PASSWORD}@127.0.0.1:{}", s.port)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port the sentinels name as the primary.
    pub fn primary_port(&self) -> u16 {
        let answer = self.sentinel_cli(
            &self.sentinels[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        );
        answer
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The server that is primary now.
    pub fn current_primary(&self) -> &RedisServer {
        if self.primary_port() == self.replica.port {
            &self.replica
        } else {
            &self.primary
        }
    }

    /// Kills the primary and waits until the sentinels promoted the replica and every
    /// one of them names it (so that the next connection reaches it at once).
    pub fn fail_over(&mut self) {
        self.primary.kill();
        let replica = self.replica.port.to_string();
        wait_until("sentinel failover", Duration::from_secs(30), || {
            self.replica.cli(&["ROLE"]).starts_with("master")
                && self.sentinels.iter().all(|s| {
                    self.sentinel_cli(s, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
                        .lines()
                        .nth(1)
                        == Some(replica.as_str())
                })
        });
    }
}
