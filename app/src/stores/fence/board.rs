//! The board: each instance's copy of the episodes of Redis trouble published on the
//! [`Ledger`] ([`Board`]), from which a claim learns what it must do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ports::StoreError;
use tracing::{debug, info, warn};

use super::now_ms as now_ms_wall;
use super::{FenceConfig, Ledger, POLL, now_ms};

/// An episode as the board records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Episode {
    /// When it began (ms; 0: never).
    pub started_ms: u64,
    /// Its latest report.
    pub last_seen_ms: u64,
    /// When an instance closed it by writing the shared store's nonces back into Redis
    /// (0: open). Claims then need Redis alone; the next report begins a new episode.
    pub closed_ms: u64,
}

/// One read of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoardRead {
    /// The latest episode.
    pub episode: Episode,
    /// The latest moment another instance may have claimed in Redis alone during it.
    pub others_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) episode: Episode,
    /// When this instance took the current episode in (and stopped claiming in Redis
    /// alone).
    switched_ms: u64,
    /// From the last read: the latest moment another instance may have claimed in
    /// Redis alone during the episode begun at `others_for`.
    others_ms: u64,
    others_for: u64,
    /// When the board was last read successfully (ms).
    confirmed_ms: u64,
}

/// What a claim must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct View {
    /// Requests stamped before this are refused (0: none).
    pub(super) refuse_before_ms: u64,
    /// Whether the shared store must be written too.
    pub(super) shared: bool,
}

/// This instance's copy of the board.
pub struct Board<L> {
    pub(super) config: FenceConfig,
    pub(super) ledger: Option<L>,
    /// This instance's name on the board.
    instance: String,
    state: Mutex<State>,
    last_report_ms: AtomicU64,
    /// The latest trouble this instance saw (its report time), and the latest report
    /// that reached the ledger: a later trouble is reported again with the next read.
    pub(super) latest_trouble_ms: AtomicU64,
    pub(super) reported_ms: AtomicU64,
    /// Fenced refusals so far (also counted in metrics).
    pub(super) refused: AtomicU64,
    /// Set by [`Self::leave`]: reads stop renewing the lease.
    left: std::sync::atomic::AtomicBool,
}

impl<L> std::fmt::Debug for Board<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A name for this instance on the board (unique, not secret).
fn instance_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.write_u32(std::process::id());
    format!("{:016x}-{}", h.finish(), std::process::id())
}

impl<L: Ledger> Board<L> {
    /// A board shared through `ledger` (`None`: a single instance).
    pub fn new(config: FenceConfig, ledger: Option<L>) -> Self {
        Self {
            config,
            ledger,
            instance: instance_name(),
            state: Mutex::new(State::default()),
            last_report_ms: AtomicU64::new(0),
            latest_trouble_ms: AtomicU64::new(0),
            reported_ms: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            left: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn view(&self, now_ms: u64) -> View {
        let c = self.config;
        let s = self.state();
        let unconfirmed =
            self.ledger.is_some() && now_ms > s.confirmed_ms.saturating_add(c.lease_ms);
        let e = s.episode;
        if e.started_ms == 0 {
            return View {
                refuse_before_ms: 0,
                shared: unconfirmed,
            };
        }
        // The last moment any instance may have claimed in Redis alone: this one when
        // it switched; the others as the board says, or — before a read that knows
        // this episode — as late as a whole lease after it began.
        let mine = e.started_ms.max(s.switched_ms);
        let others = match &self.ledger {
            None => 0,
            Some(_) if s.others_for == e.started_ms => s.others_ms,
            Some(_) => e.started_ms + c.lease_ms,
        };
        View {
            refuse_before_ms: mine.max(others) + c.margin_ms,
            shared: unconfirmed || (e.closed_ms == 0 && now_ms <= e.last_seen_ms + c.dual_ms()),
        }
    }

    /// Takes in an episode read from (or written to) the ledger at `now_ms`. The
    /// ledger names the episode (its start); this instance's own switch time stays.
    /// A closed episode counts as closed here only if this instance saw no trouble
    /// after its last report (that trouble, reported again, begins a new one).
    pub(super) fn merge(&self, e: Episode, now_ms: u64) {
        let gap = self.config.episode_gap_ms();
        let closed =
            if e.closed_ms > 0 && self.latest_trouble_ms.load(Ordering::SeqCst) <= e.last_seen_ms {
                e.closed_ms
            } else {
                0
            };
        let mut s = self.state();
        if e.started_ms > s.episode.started_ms {
            // A later episode: taken in now.
            if s.episode.started_ms == 0 || s.episode.last_seen_ms + gap < e.started_ms {
                warn!("nonce fence: another instance reported redis trouble");
            }
            s.episode.started_ms = e.started_ms;
            s.episode.closed_ms = closed;
            // Before its first read this instance never claimed in Redis alone.
            if s.confirmed_ms > 0 {
                s.switched_ms = s.switched_ms.max(now_ms);
            }
        } else if e.started_ms == s.episode.started_ms {
            if s.episode.closed_ms == 0 && closed > 0 {
                info!("nonce fence: the episode was closed (its nonces are back in redis)");
            }
            s.episode.closed_ms = s.episode.closed_ms.max(closed);
        } else if e.started_ms < s.episode.started_ms
            && e.last_seen_ms + gap >= s.episode.started_ms
        {
            // The episode this instance began, begun earlier by another.
            s.episode.started_ms = e.started_ms;
        }
        s.episode.last_seen_ms = s.episode.last_seen_ms.max(e.last_seen_ms);
    }

    /// Takes in trouble seen at `now_ms` (beginning an episode when none is going on).
    fn note(&self, now_ms: u64, why: &str) {
        let mut s = self.state();
        let e = &mut s.episode;
        let new = e.started_ms == 0
            || e.closed_ms > 0
            || now_ms > e.last_seen_ms + self.config.episode_gap_ms();
        if new {
            warn!(why, "nonce fence: an episode of redis trouble begins");
            http_adapter::metrics::nonce_fence_episode();
            e.started_ms = now_ms.max(e.started_ms + 1);
            e.closed_ms = 0;
        }
        e.last_seen_ms = e.last_seen_ms.max(now_ms);
        if new {
            s.switched_ms = now_ms;
        }
    }

    /// Trouble seen now: this instance fences at once, and tells the others. The
    /// report carries the time it is made (at least `now_ms`), after whatever the
    /// claim wrote to the shared store: a write-back that began before it cannot close
    /// the episode ([`Self::write_back`]). Reports are made at most every [`POLL`];
    /// one left out is made with the next read of the board.
    pub(super) fn trouble(self: &Arc<Self>, now_ms: u64, why: &str) {
        self.note(now_ms, why);
        if self.ledger.is_none() {
            return;
        }
        let now_ms = now_ms.max(now_ms_wall());
        self.latest_trouble_ms.fetch_max(now_ms, Ordering::SeqCst);
        let every = POLL.as_millis() as u64;
        let last = self.last_report_ms.load(Ordering::Relaxed);
        if now_ms < last + every
            || self
                .last_report_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let board = Arc::clone(self);
        tokio::spawn(async move {
            let Some(ledger) = &board.ledger else { return };
            match ledger.report(now_ms, board.config.episode_gap_ms()).await {
                Ok(e) => {
                    board.reported_ms.fetch_max(now_ms, Ordering::SeqCst);
                    board.merge(e, now_ms);
                }
                Err(e) => {
                    // Try again with the next claim.
                    board.last_report_ms.store(0, Ordering::Relaxed);
                    warn!(error = %e, "nonce fence: the episode could not be published");
                }
            }
        });
    }

    /// Reads the board once (the read starting at `now_ms`).
    ///
    /// # Errors
    /// The ledger's error; the lease then runs out.
    pub async fn refresh(&self, now_ms: u64) -> Result<(), StoreError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        if self.left.load(Ordering::SeqCst) {
            return Ok(());
        }
        let pending = self.latest_trouble_ms.load(Ordering::SeqCst);
        if pending > self.reported_ms.load(Ordering::SeqCst) {
            let e = ledger.report(pending, self.config.episode_gap_ms()).await?;
            self.reported_ms.fetch_max(pending, Ordering::SeqCst);
            self.merge(e, now_ms);
        }
        let acked = self.state().episode.started_ms;
        let read = ledger
            .read(&self.instance, now_ms, acked, self.config.lease_ms)
            .await?;
        if let Some(r) = read {
            self.merge(r.episode, now_ms);
            let mut s = self.state();
            s.others_ms = r.others_ms;
            s.others_for = r.episode.started_ms;
        }
        let mut s = self.state();
        s.confirmed_ms = s.confirmed_ms.max(now_ms);
        Ok(())
    }

    /// Reads the board every [`POLL`], for as long as the process runs.
    pub fn spawn_refresh(self: &Arc<Self>) {
        if self.ledger.is_none() {
            return;
        }
        let board = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = board.refresh(now_ms()).await {
                    debug!(error = %e, "nonce fence: board not read");
                }
                tokio::time::sleep(POLL).await;
            }
        });
    }

    /// Starts an episode at `now_ms`, at start-up (Redis unreachable, or it may have
    /// lost data while no instance watched), and publishes it before the first request:
    /// a board read that knows the episode then sets the fence, which ends a margin
    /// after start-up unless another instance claimed in Redis alone later.
    pub async fn begin_at_start(&self, now_ms: u64, why: &str) {
        self.note(now_ms, why);
        let Some(ledger) = &self.ledger else { return };
        match ledger.report(now_ms, self.config.episode_gap_ms()).await {
            Ok(e) => {
                self.merge(e, now_ms);
                self.last_report_ms.store(now_ms, Ordering::Relaxed);
                self.reported_ms.fetch_max(now_ms, Ordering::SeqCst);
            }
            Err(e) => warn!(error = %e, "nonce fence: the episode could not be published"),
        }
    }

    /// A clean shutdown, once no request is in flight: records on the board that this
    /// instance claims no more from `now_ms`, so that a deployment restarted right
    /// after fences a margin after its start, not a lease after this instance's last
    /// read. Without it (a crash) the others wait out the lease.
    pub async fn leave(&self, now_ms: u64) {
        self.left.store(true, Ordering::SeqCst);
        let Some(ledger) = &self.ledger else { return };
        if let Err(e) = ledger
            .leave(&self.instance, now_ms, self.config.lease_ms)
            .await
        {
            warn!(error = %e, "nonce fence: the shutdown could not be recorded (the others wait out this instance's lease)");
        }
    }

    /// Fenced refusals so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}
