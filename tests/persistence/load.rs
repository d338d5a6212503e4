//! A load generator with a replay injector, for the fault tests: workers run inits
//! and purchases round-robin over a fleet of instances; every request an instance
//! accepts is sent again at once to a *different* instance, and kept so that it can
//! be replayed again later. Any replay that is answered 200 is a broken guarantee.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use domain::client::{ClientSession, SealedRequest};
use hyper::Method;
use session_crypto_client::{Connection, Endpoint, FlowError, InitRoute, ProtocolClient};

use crate::support::*;

/// Instances that can be killed and restarted while the load runs (a restart gets a
/// new port).
pub(crate) struct Fleet {
    servers: Vec<RwLock<Option<Arc<Server>>>>,
}

impl Fleet {
    pub(crate) fn new(servers: Vec<Server>) -> Self {
        Self {
            servers: servers
                .into_iter()
                .map(|s| RwLock::new(Some(Arc::new(s))))
                .collect(),
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }
    /// Instance `i` (modulo the fleet), if it runs.
    pub(crate) fn get(&self, i: usize) -> Option<Arc<Server>> {
        self.servers[i % self.len()]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    /// Kills instance `i` (SIGKILL once the requests in flight let go of it).
    pub(crate) fn kill(&self, i: usize) {
        self.servers[i]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
    /// Puts `with` in the place of instance `i`.
    pub(crate) fn restart(&self, i: usize, with: Server) {
        *self.servers[i]
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(with));
    }
    /// The first running instance after `i`.
    fn other_than(&self, i: usize) -> Option<(usize, Arc<Server>)> {
        (1..self.len()).find_map(|d| {
            let j = (i + d) % self.len();
            self.get(j).map(|s| (j, s))
        })
    }
}

/// One accepted request, as sent.
#[derive(Clone)]
enum Sent {
    Purchase {
        session: Arc<ClientSession>,
        sealed: SealedRequest,
    },
    Init {
        key: String,
        body: String,
    },
}

impl Sent {
    fn kind(&self) -> &'static str {
        match self {
            Self::Purchase { .. } => "purchase",
            Self::Init { .. } => "init",
        }
    }
}

/// What the load saw.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) accepted: AtomicU64,
    pub(crate) replays: AtomicU64,
    pub(crate) replays_accepted: AtomicU64,
    /// Failures by kind ("purchase 503 fenced (Retry-After)", "init 503 store
    /// unavailable", "connect", …), replays excluded.
    errors: Mutex<BTreeMap<String, u64>>,
    /// (when, instance, request) of every accepted request.
    sent: Mutex<Vec<(Instant, usize, Sent)>>,
    /// Sessions whose init was answered 200.
    pub(crate) sessions: Mutex<Vec<Arc<ClientSession>>>,
}

impl Tally {
    fn error(&self, kind: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }
    pub(crate) fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn ok(&self, instance: usize, sent: Sent) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((now, instance, sent));
    }
    /// The longest stretch without an accepted request from `since` to the last one.
    pub(crate) fn longest_gap(&self, since: Instant) -> Duration {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let mut times: Vec<Instant> = sent
            .iter()
            .map(|(t, _, _)| *t)
            .filter(|t| *t >= since)
            .collect();
        times.sort();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// How long after `t` the first request was accepted (`None`: none was).
    pub(crate) fn first_after(&self, t: Instant) -> Option<Duration> {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.iter()
            .map(|(at, _, _)| *at)
            .filter(|at| *at >= t)
            .min()
            .map(|at| at - t)
    }

    /// How many requests have been accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn connect(server: &Server) -> Result<Connection, String> {
    let endpoint = Endpoint::parse(&server.url).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(2), Connection::open(&endpoint))
        .await
        .map_err(|_| "connect timeout".to_owned())?
        .map_err(|_| "connect".to_owned())
}

/// Sends `sent` to `server`; the status, or the kind of failure.
async fn send(server: &Server, sent: &Sent) -> Result<u16, String> {
    answer(server, sent).await.map(|(status, _)| status)
}

/// How a refusal is counted: a fence refusal (503 with `Retry-After`) apart from
/// other 503s (a store unavailable) and from client errors.
fn refusal_kind(sent: &Sent, status: u16, retry_after: bool) -> String {
    let why = match (status, retry_after) {
        (503, true) => " fenced (Retry-After)",
        (503, false) => " store unavailable",
        (429, _) => " rate limited",
        _ => "",
    };
    format!("{} {status}{why}", sent.kind())
}

/// Sends `sent` to `server`; the status and whether it came with `Retry-After`, or
/// the kind of failure.
async fn answer(server: &Server, sent: &Sent) -> Result<(u16, bool), String> {
    let mut conn = connect(server).await?;
    let answer = match sent {
        Sent::Purchase { session, sealed } => post_sealed(&mut conn, session, sealed).await,
        Sent::Init { key, body } => {
            let headers = [
                ("content-type", "application/json"),
                ("x-idempotency-key", key.as_str()),
                ("x-clientid", "LOAD"),
            ];
            conn.send(Method::POST, "/session/init", &headers, body.clone())
                .await
        }
    };
    tokio::time::timeout(Duration::from_secs(5), async { answer })
        .await
        .map_err(|_| "timeout".to_owned())?
        .map(|r| (r.status.as_u16(), r.header("retry-after").is_some()))
        .map_err(|_| "no answer".to_owned())
}

/// Replays `sent` (accepted by `instance`) to another instance.
async fn replay(fleet: &Fleet, tally: &Tally, instance: usize, sent: &Sent) {
    let Some((_, other)) = fleet.other_than(instance) else {
        return;
    };
    tally.replays.fetch_add(1, Ordering::Relaxed);
    if send(&other, sent).await == Ok(200) {
        tally.replays_accepted.fetch_add(1, Ordering::Relaxed);
    }
}

/// A session for the load, made on `server` (retried until it works).
async fn session(server: &Server, stop: &AtomicBool) -> Option<Arc<ClientSession>> {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut client) = ProtocolClient::connect(&server.url, server.crypto, "LOAD").await
            && let Ok((s, _)) = client.init(InitRoute::Unversioned, None).await
        {
            return Some(Arc::new(s));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn worker(fleet: Arc<Fleet>, tally: Arc<Tally>, stop: Arc<AtomicBool>, id: usize) {
    let Some((_, first)) = fleet.other_than(id + fleet.len() - 1) else {
        return;
    };
    let crypto = first.crypto;
    let Some(mut mine) = session(&first, &stop).await else {
        return;
    };
    tally
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&mine));
    let mut n = id;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let instance = n % fleet.len();
        let Some(server) = fleet.get(instance) else {
            tally.error("instance down".into());
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let sent = if n.is_multiple_of(10) {
            Sent::Init {
                key: idem(crypto),
                body: format!(
                    r#"{{"clientPublicKey":"{}"}}"#,
                    b64(&fresh_public_key(crypto))
                ),
            }
        } else {
            Sent::Purchase {
                session: Arc::clone(&mine),
                sealed: mine.seal_request(now(), PAYLOAD).unwrap(),
            }
        };
        match answer(&server, &sent).await {
            Ok((200, _)) => {
                tally.ok(instance, sent.clone());
                replay(&fleet, &tally, instance, &sent).await;
            }
            Ok((401, _)) => {
                // The session is gone (it must not be: counted, and a new one made).
                tally.error(format!("{} 401", sent.kind()));
                if let Some(s) = session(&server, &stop).await {
                    mine = s;
                }
            }
            Ok((status, retry_after)) => tally.error(refusal_kind(&sent, status, retry_after)),
            Err(kind) => {
                tally.error(kind);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Running load; stopped by [`Load::stop`].
pub(crate) struct Load {
    pub(crate) tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(fleet: Arc<Fleet>, workers: usize) -> Self {
        let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
        let workers = (0..workers)
            .map(|id| {
                tokio::spawn(worker(
                    Arc::clone(&fleet),
                    Arc::clone(&tally),
                    Arc::clone(&stop),
                    id,
                ))
            })
            .collect();
        Self {
            tally,
            stop,
            workers,
        }
    }

    /// Stops the workers.
    pub(crate) async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        self.tally
    }
}

/// Replays again every request accepted at or after `since`, each to a different
/// instance than the one that accepted it; returns (replayed, accepted).
pub(crate) async fn replay_all(fleet: &Fleet, tally: &Tally, since: Instant) -> (u64, u64) {
    let sent: Vec<(usize, Sent)> = tally
        .sent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(t, _, _)| *t >= since)
        .map(|(_, i, s)| (*i, s.clone()))
        .collect();
    let before = tally.replays_accepted.load(Ordering::Relaxed);
    for chunk in sent.chunks(16) {
        let replays = chunk.iter().map(|(i, s)| replay(fleet, tally, *i, s));
        futures_util::future::join_all(replays).await;
    }
    let accepted = tally.replays_accepted.load(Ordering::Relaxed) - before;
    (sent.len() as u64, accepted)
}

/// Whether every session acknowledged during the run still works: one purchase each.
pub(crate) async fn sessions_lost(fleet: &Fleet, tally: &Tally) -> usize {
    let sessions = tally
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut lost = 0;
    for (i, s) in sessions.iter().enumerate() {
        let (_, server) = fleet.other_than(i).expect("a running instance");
        let mut client = ProtocolClient::connect(&server.url, server.crypto, "LOAD")
            .await
            .unwrap();
        // A fence refusal (503 with Retry-After: an instance that started while Redis
        // was slow to answer fences until the killed instance's lease is over) says
        // "later", not "lost": waited out, at most 30 s in all.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.purchase(s, PAYLOAD).await {
                Ok(_) => break,
                Err(FlowError::Status { status, .. }) if status == 401 => {
                    lost += 1;
                    break;
                }
                Err(FlowError::Status {
                    status,
                    retry_after: Some(after),
                    ..
                }) if status == 503 && Instant::now() < deadline => {
                    eprintln!("checking a session: fenced, retrying after {after} s");
                    tokio::time::sleep(Duration::from_secs(after)).await;
                }
                Err(e) => panic!("checking a session: {e}"),
            }
        }
    }
    lost
}
