//! The nonce fence: replay protection that holds across instances while Redis is
//! unreachable, and after Redis lost data.
//!
//! Redis is the fast record of used nonces, but not a durable one: an outage hides it
//! and a restart without persistence, a `FLUSHALL`, an eviction or a failover to a
//! lagging replica empties part of it. [`Fenced`] keeps the rule "a nonce accepted
//! once is never accepted again while its timestamp can pass the window" with three
//! pieces:
//!
//! * a **shared store** every instance can read (PostgreSQL; the embedded store in a
//!   single-instance deployment), written whenever Redis alone might not be enough:
//!   during an *episode* of Redis trouble and for `2 × window` after its last report
//!   (so nonces claimed there during the outage stay claimed after it), and for any
//!   request stamped more than the margin ahead of the server's clock (so those
//!   survive a later loss of Redis data);
//! * a **fence** at the start of each episode: a nonce claimed in Redis alone before
//!   it may be gone, and was stamped at most `margin` after its claim, so requests
//!   stamped before (the last moment any instance claimed in Redis alone) + margin
//!   are refused while they can pass the window ([`NonceError::Fenced`]; the client
//!   sends a new request);
//! * a **board** on which instances publish episodes and take them in ([`Ledger`]:
//!   PostgreSQL), read by each instance every [`POLL`]. An instance claims in Redis
//!   alone only within the lease of its last read; past it, in PostgreSQL too, which
//!   fails closed when PostgreSQL is down. Each read records that the instance has
//!   taken the episode in, so the others learn when it stopped claiming in Redis
//!   alone — within a poll or two, or at worst a lease after its last read.
//!
//! An episode begins when a claim finds Redis unreachable or a loss is counted
//! ([`Losses`]). The edges are explained in `docs/operations.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ports::{Claim, NonceClaim, NonceError, NonceStore, StoreError};
use tracing::{debug, warn};

/// How often an instance reads the board.
pub const POLL: Duration = Duration::from_millis(250);

/// The fence's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceConfig {
    /// The timestamp window (ms).
    pub window_ms: u64,
    /// How far after its claim a request may be stamped and still be claimed in Redis
    /// alone; also the allowance for clock differences between instances (ms).
    pub margin_ms: u64,
    /// How long one read of the board lets an instance claim in Redis alone (ms):
    /// also how long a PostgreSQL outage leaves Redis-only claims going. Ignored
    /// without a board (a single instance).
    pub lease_ms: u64,
}

impl FenceConfig {
    /// After its last report, an episode is over once this has passed: no nonce claimed
    /// in the shared store alone during it can still pass the window.
    fn dual_ms(&self) -> u64 {
        self.lease_ms + self.margin_ms + 2 * self.window_ms
    }
    /// A report this long after the last one begins a new episode (less than
    /// [`Self::dual_ms`], so no instance has gone back to Redis alone in between).
    fn episode_gap_ms(&self) -> u64 {
        2 * self.window_ms
    }
}

/// An episode as the board records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Episode {
    /// When it began (ms; 0: never).
    pub started_ms: u64,
    /// Its latest report.
    pub last_seen_ms: u64,
}

/// One read of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoardRead {
    /// The latest episode.
    pub episode: Episode,
    /// The latest moment another instance may have claimed in Redis alone during it.
    pub others_ms: u64,
}

/// Where episodes are shared between instances.
pub trait Ledger: Send + Sync + 'static {
    /// Records trouble seen at `now_ms`; a report `gap_ms` after the previous one
    /// begins a new episode. Returns the episode after the report.
    fn report(
        &self,
        now_ms: u64,
        gap_ms: u64,
    ) -> impl Future<Output = Result<Episode, StoreError>> + Send;
    /// Reads the board as `instance` at `now_ms`, recording that it has taken in the
    /// episode begun at `acked_ms` (`None`: no episode yet).
    fn read(
        &self,
        instance: &str,
        now_ms: u64,
        acked_ms: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<BoardRead>, StoreError>> + Send;
}

fn as_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Ledger for postgres_adapter::PgNonceStore {
    async fn report(&self, now_ms: u64, gap_ms: u64) -> Result<Episode, StoreError> {
        let row = self.report_trouble(now_ms, gap_ms).await?;
        Ok(Episode {
            started_ms: as_ms(row.started_at_ms),
            last_seen_ms: as_ms(row.last_seen_ms),
        })
    }
    async fn read(
        &self,
        instance: &str,
        now_ms: u64,
        acked_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<BoardRead>, StoreError> {
        let poll = self
            .poll_fence(instance, now_ms, acked_ms, lease_ms)
            .await?;
        Ok(poll.map(|p| BoardRead {
            episode: Episode {
                started_ms: as_ms(p.started_at_ms),
                last_seen_ms: as_ms(p.last_seen_ms),
            },
            others_ms: as_ms(p.others_ms),
        }))
    }
}

/// A single instance has nothing to share (the type of a board without a ledger).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl Ledger for NoLedger {
    async fn report(&self, now_ms: u64, _gap_ms: u64) -> Result<Episode, StoreError> {
        Ok(Episode {
            started_ms: now_ms,
            last_seen_ms: now_ms,
        })
    }
    async fn read(&self, _: &str, _: u64, _: u64, _: u64) -> Result<Option<BoardRead>, StoreError> {
        Ok(None)
    }
}

/// A primary nonce store that counts the losses of its data it has seen.
pub trait Losses {
    /// Losses seen so far (only increases).
    fn losses(&self) -> u64;
}

impl Losses for redis_adapter::RedisNonceStore {
    fn losses(&self) -> u64 {
        self.redis().losses()
    }
}

#[derive(Debug, Default)]
struct State {
    episode: Episode,
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
struct View {
    /// Requests stamped before this are refused (0: none).
    refuse_before_ms: u64,
    /// Whether the shared store must be written too.
    shared: bool,
}

/// This instance's copy of the board.
pub struct Board<L> {
    config: FenceConfig,
    ledger: Option<L>,
    /// This instance's name on the board.
    instance: String,
    state: Mutex<State>,
    last_report_ms: AtomicU64,
    /// Fenced refusals so far (also counted in metrics).
    refused: AtomicU64,
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
            refused: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn view(&self, now_ms: u64) -> View {
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
            shared: unconfirmed || now_ms <= e.last_seen_ms + c.dual_ms(),
        }
    }

    /// Takes in an episode read from (or written to) the ledger at `now_ms`. The
    /// ledger names the episode (its start); this instance's own switch time stays.
    fn merge(&self, e: Episode, now_ms: u64) {
        let gap = self.config.episode_gap_ms();
        let mut s = self.state();
        if e.started_ms > s.episode.started_ms {
            // A later episode: taken in now.
            if s.episode.started_ms == 0 || s.episode.last_seen_ms + gap < e.started_ms {
                warn!("nonce fence: another instance reported redis trouble");
            }
            s.episode.started_ms = e.started_ms;
            // Before its first read this instance never claimed in Redis alone.
            if s.confirmed_ms > 0 {
                s.switched_ms = s.switched_ms.max(now_ms);
            }
        } else if e.started_ms < s.episode.started_ms
            && e.last_seen_ms + gap >= s.episode.started_ms
        {
            // The episode this instance began, begun earlier by another.
            s.episode.started_ms = e.started_ms;
        }
        s.episode.last_seen_ms = s.episode.last_seen_ms.max(e.last_seen_ms);
    }

    /// Trouble seen now: this instance fences at once, and tells the others.
    fn trouble(self: &Arc<Self>, now_ms: u64, why: &str) {
        {
            let mut s = self.state();
            let e = &mut s.episode;
            let new = e.started_ms == 0 || now_ms > e.last_seen_ms + self.config.episode_gap_ms();
            if new {
                warn!(why, "nonce fence: an episode of redis trouble begins");
                http_adapter::metrics::nonce_fence_episode();
                e.started_ms = now_ms;
            }
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            if new {
                s.switched_ms = now_ms;
            }
        }
        if self.ledger.is_none() {
            return;
        }
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
                Ok(e) => board.merge(e, now_ms),
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

    /// Starts an episode now (Redis lost data before this process saw it).
    pub fn begin(self: &Arc<Self>, why: &str) {
        self.trouble(now_ms(), why);
    }

    /// Fenced refusals so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The wall clock (ms since the epoch).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nonces claimed in a primary (Redis) behind the fence, with a shared store.
pub struct Fenced<P, S, L> {
    /// The fast store.
    pub primary: P,
    /// The store every instance shares (or the embedded one of a single instance).
    pub shared: S,
    /// The fence.
    pub board: Arc<Board<L>>,
    /// The primary's losses already taken in.
    pub losses_seen: AtomicU64,
}

impl<P, S, L> std::fmt::Debug for Fenced<P, S, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fenced").finish_non_exhaustive()
    }
}

impl<P: NonceStore + Losses, S: NonceStore, L: Ledger> Fenced<P, S, L> {
    /// The primary and the shared store behind `board`.
    pub fn new(primary: P, shared: S, board: Arc<Board<L>>) -> Self {
        let losses_seen = AtomicU64::new(primary.losses());
        Self {
            primary,
            shared,
            board,
            losses_seen,
        }
    }

    fn take_in_losses(&self, now_ms: u64) {
        let losses = self.primary.losses();
        if self.losses_seen.swap(losses, Ordering::SeqCst) < losses {
            self.board.trouble(now_ms, "redis lost data");
        }
    }

    fn fenced(&self, claim: &Claim<'_>, view: View) -> Result<(), NonceError> {
        if claim.stamped_ms < view.refuse_before_ms {
            self.board.refused.fetch_add(1, Ordering::Relaxed);
            http_adapter::metrics::nonce_fence_refused();
            return Err(NonceError::Fenced(format!(
                "stamped {} ms before the fence",
                view.refuse_before_ms - claim.stamped_ms
            )));
        }
        Ok(())
    }

    /// The shared store first (the durable record), then the primary: a nonce the
    /// primary already holds is a replay whatever the shared store says; a primary
    /// that is down keeps the episode alive and leaves the decision to the shared one.
    async fn claim_in_both(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        if self.shared.claim(claim).await? == NonceClaim::Replay {
            return Ok(NonceClaim::Replay);
        }
        match self.primary.claim(claim).await {
            Ok(decided) => Ok(decided),
            Err(_) => {
                self.take_in_losses(claim.now_ms);
                self.board.trouble(claim.now_ms, "redis unavailable");
                Ok(NonceClaim::Fresh)
            }
        }
    }
}

impl<P: NonceStore + Losses, S: NonceStore, L: Ledger> NonceStore for Fenced<P, S, L> {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        let now = claim.now_ms;
        self.take_in_losses(now);
        let view = self.board.view(now);
        self.fenced(&claim, view)?;
        let ahead = claim.stamped_ms > now.saturating_add(self.board.config.margin_ms);
        if view.shared || ahead {
            return self.claim_in_both(claim).await;
        }
        match self.primary.claim(claim).await {
            Err(NonceError::Unavailable(why)) => {
                // An outage, or a loss the claim itself found: fence, then decide
                // under the fence.
                self.take_in_losses(now);
                self.board.trouble(now, &why);
                let view = self.board.view(now);
                self.fenced(&claim, view)?;
                self.claim_in_both(claim).await
            }
            decided => decided,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use memory::MemoryNonceStore;

    use super::*;

    const W: u64 = 300_000;
    const CONFIG: FenceConfig = FenceConfig {
        window_ms: W,
        margin_ms: 2_000,
        lease_ms: 1_000,
    };

    /// A primary that can be switched off or emptied, as Redis can.
    #[derive(Default)]
    struct Primary {
        down: AtomicBool,
        nonces: Mutex<Arc<MemoryNonceStore>>,
        losses: AtomicU64,
    }

    impl Primary {
        fn lose_everything(&self) {
            *self.nonces.lock().unwrap() = Arc::new(MemoryNonceStore::new(1000));
            self.losses.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl NonceStore for Primary {
        async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(NonceError::Unavailable("down".into()));
            }
            let store = Arc::clone(&self.nonces.lock().unwrap());
            store.claim(claim).await
        }
    }

    impl Losses for Primary {
        fn losses(&self) -> u64 {
            self.losses.load(Ordering::SeqCst)
        }
    }

    /// instance → (seen, acked episode start, acked at)
    type Instances = Arc<Mutex<std::collections::HashMap<String, (u64, u64, u64)>>>;

    /// A ledger in memory, shared by the boards of several "instances", that can be
    /// made unreachable; the same rules as the PostgreSQL one.
    #[derive(Default, Clone)]
    struct SharedLedger {
        fence: Arc<Mutex<Option<Episode>>>,
        instances: Instances,
        down: Arc<AtomicBool>,
    }

    impl SharedLedger {
        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("pg down".into()));
            }
            Ok(())
        }
    }

    impl Ledger for SharedLedger {
        async fn report(&self, now_ms: u64, gap_ms: u64) -> Result<Episode, StoreError> {
            self.check()?;
            let mut e = self.fence.lock().unwrap();
            let next = match *e {
                Some(old) if old.last_seen_ms + gap_ms >= now_ms => Episode {
                    started_ms: old.started_ms,
                    last_seen_ms: old.last_seen_ms.max(now_ms),
                },
                _ => Episode {
                    started_ms: now_ms,
                    last_seen_ms: now_ms,
                },
            };
            *e = Some(next);
            Ok(next)
        }
        async fn read(
            &self,
            instance: &str,
            now_ms: u64,
            acked_ms: u64,
            lease_ms: u64,
        ) -> Result<Option<BoardRead>, StoreError> {
            self.check()?;
            let mut all = self.instances.lock().unwrap();
            let fence = *self.fence.lock().unwrap();
            let others_ms = fence.map_or(0, |f| {
                all.iter()
                    .filter(|(id, (seen, _, _))| {
                        id.as_str() != instance && seen + lease_ms >= f.started_ms
                    })
                    .map(|(_, (seen, acked, at))| {
                        if *acked >= f.started_ms {
                            *at
                        } else {
                            seen + lease_ms
                        }
                    })
                    .max()
                    .unwrap_or(0)
            });
            let current = fence.map_or(0, |f| f.started_ms);
            let me = all
                .entry(instance.to_owned())
                .or_insert((now_ms, acked_ms.max(current), 0));
            if acked_ms > me.1 {
                *me = (now_ms, acked_ms, now_ms);
            } else {
                me.0 = now_ms;
            }
            Ok(fence.map(|episode| BoardRead { episode, others_ms }))
        }
    }

    fn claim(key: &str, now_ms: u64, stamped_ms: u64) -> Claim<'_> {
        Claim {
            key,
            ttl_sec: 2 * W / 1000 + 1,
            now_ms,
            stamped_ms,
        }
    }

    /// `key`, stamped and claimed at `t`: fresh once, then a replay.
    async fn single_use<N: NonceStore>(store: &N, key: &str, t: u64) {
        assert_eq!(store.claim(claim(key, t, t)).await, Ok(NonceClaim::Fresh));
        assert_eq!(
            store.claim(claim(key, t + 1, t)).await,
            Ok(NonceClaim::Replay)
        );
    }

    type Single = Fenced<Arc<Primary>, Arc<MemoryNonceStore>, NoLedger>;

    fn single(primary: &Arc<Primary>) -> Single {
        let board = Arc::new(Board::new(CONFIG, None));
        Fenced::new(
            Arc::clone(primary),
            Arc::new(MemoryNonceStore::new(1000)),
            board,
        )
    }

    impl<T: Losses> Losses for Arc<T> {
        fn losses(&self) -> u64 {
            (**self).losses()
        }
    }

    #[tokio::test]
    async fn a_loss_of_the_primary_fences_what_it_held() {
        let primary = Arc::new(Primary::default());
        let store = single(&primary);
        let t = 1_000_000_000;
        assert_eq!(store.claim(claim("a", t, t)).await, Ok(NonceClaim::Fresh));
        primary.lose_everything();
        // Before the fence: the primary no longer knows "a", so it is refused.
        let replay = store.claim(claim("a", t + 10, t)).await;
        assert!(matches!(replay, Err(NonceError::Fenced(_))), "{replay:?}");
        // A request stamped after the fence is accepted, once.
        let late = t + 10 + CONFIG.margin_ms;
        single_use(&store, "b", late).await;
        assert_eq!(store.board.refused(), 1);
    }

    #[tokio::test]
    async fn a_request_stamped_ahead_survives_a_loss_in_the_shared_store() {
        let primary = Arc::new(Primary::default());
        let store = single(&primary);
        let t = 1_000_000_000;
        // Stamped a minute ahead: also written to the shared store.
        let ahead = t + 60_000;
        assert_eq!(
            store.claim(claim("f", t, ahead)).await,
            Ok(NonceClaim::Fresh)
        );
        primary.lose_everything();
        // Later, within the window, after the fence: the shared store still has it.
        let later = t + 30_000;
        assert_eq!(
            store.claim(claim("f", later, ahead)).await,
            Ok(NonceClaim::Replay)
        );
    }

    #[tokio::test]
    async fn nonces_claimed_during_an_outage_stay_claimed_after_it() {
        let primary = Arc::new(Primary::default());
        let store = single(&primary);
        let t = 1_000_000_000;
        primary.down.store(true, Ordering::SeqCst);
        // The outage begins: requests stamped before the fence are refused.
        let early = store.claim(claim("x", t, t)).await;
        assert!(matches!(early, Err(NonceError::Fenced(_))), "{early:?}");
        let s = t + CONFIG.margin_ms;
        assert_eq!(store.claim(claim("y", s, s)).await, Ok(NonceClaim::Fresh));
        primary.down.store(false, Ordering::SeqCst);
        // Redis is back but never saw "y": still a replay, for two windows after.
        for dt in [1, W, 2 * W] {
            assert_eq!(
                store.claim(claim("y", s + dt, s)).await,
                Ok(NonceClaim::Replay)
            );
        }
        // Long after, claims go to Redis alone again.
        single_use(&store, "z", s + 3 * W).await;
    }

    /// Two instances on one Redis and one ledger; only the first loses Redis.
    #[tokio::test]
    async fn an_instance_that_lost_redis_fences_the_others_through_the_ledger() {
        let redis = Arc::new(Primary::default());
        let cut_off = Arc::new(Primary::default());
        cut_off.down.store(true, Ordering::SeqCst);
        let ledger = SharedLedger::default();
        let shared = Arc::new(MemoryNonceStore::new(1000));
        let a = Fenced::new(
            Arc::clone(&cut_off),
            Arc::clone(&shared),
            Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
        );
        let b = Fenced::new(
            Arc::clone(&redis),
            Arc::clone(&shared),
            Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
        );
        let t = now_ms();
        a.board.refresh(t).await.unwrap();
        b.board.refresh(t).await.unwrap();
        // B accepted "r" in Redis alone just before A lost Redis.
        assert_eq!(b.claim(claim("r", t, t)).await, Ok(NonceClaim::Fresh));
        // A: Redis unreachable. The replay of "r" is stamped before the fence.
        let at_a = a.claim(claim("r", t + 5, t)).await;
        assert!(matches!(at_a, Err(NonceError::Fenced(_))), "{at_a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // the report lands
        // Until A reads that B took the episode in, B may be claiming in Redis alone
        // for a whole lease after its last read: A refuses what B may have accepted.
        a.board.refresh(t + 10).await.unwrap();
        let s = t + 100 + CONFIG.margin_ms;
        let early = a.claim(claim("s", s, s)).await;
        assert!(matches!(early, Err(NonceError::Fenced(_))), "{early:?}");
        // B reads the board (and so takes the episode in); A reads that B did.
        b.board.refresh(t + 20).await.unwrap();
        b.board.refresh(t + 30).await.unwrap();
        a.board.refresh(t + 40).await.unwrap();
        // From now on B writes the shared store too, and A's fence ends a margin
        // after B took the episode in, not a lease after.
        let q = t + 40 + CONFIG.margin_ms;
        assert_eq!(b.claim(claim("q", q, q)).await, Ok(NonceClaim::Fresh));
        assert_eq!(a.claim(claim("q", q + 1, q)).await, Ok(NonceClaim::Replay));
        assert_eq!(a.claim(claim("p", q + 2, q)).await, Ok(NonceClaim::Fresh));
        assert_eq!(b.claim(claim("p", q + 3, q)).await, Ok(NonceClaim::Replay));
    }

    /// An instance on a Redis of its own and `shared`, reading `ledger`.
    fn on_board(
        shared: MemoryNonceStore,
        ledger: &SharedLedger,
    ) -> Fenced<Arc<Primary>, Arc<MemoryNonceStore>, SharedLedger> {
        Fenced::new(
            Arc::new(Primary::default()),
            Arc::new(shared),
            Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
        )
    }

    /// An instance that cannot read the board keeps claiming in Redis alone for a
    /// lease (a short PostgreSQL outage costs nothing), then fails closed.
    #[tokio::test]
    async fn a_board_that_cannot_be_read_allows_redis_alone_for_one_lease() {
        let ledger = SharedLedger::default();
        let b = on_board(MemoryNonceStore::new(1000), &ledger);
        let t = now_ms();
        b.board.refresh(t).await.unwrap();
        ledger.down.store(true, Ordering::SeqCst);
        assert!(b.board.refresh(t + 500).await.is_err());
        single_use(&b, "a", t + CONFIG.lease_ms).await;
        // Past the lease the shared store decides too: here it holds everything, so
        // only its answer can make a claim a replay.
        b.shared.claim(claim("b", t, t)).await.unwrap();
        let late = t + CONFIG.lease_ms + 1;
        assert_eq!(
            b.claim(claim("b", late, late)).await,
            Ok(NonceClaim::Replay)
        );
    }

    #[tokio::test]
    async fn without_a_fresh_board_an_instance_fails_closed_on_the_shared_store() {
        let ledger = SharedLedger::default();
        let b = on_board(MemoryNonceStore::new(0), &ledger);
        let t = now_ms();
        b.board.refresh(t).await.unwrap();
        assert_eq!(b.claim(claim("a", t, t)).await, Ok(NonceClaim::Fresh));
        // The board has not been read for longer than the lease: Redis alone is not
        // enough (another instance may be claiming elsewhere), and the shared store
        // (here: one that holds nothing) decides.
        let late = t + CONFIG.lease_ms + 1;
        assert_eq!(b.claim(claim("b", late, late)).await, Err(NonceError::Full));
    }
}
