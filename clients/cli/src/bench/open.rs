//! `session-crypto bench --rate R`: the open-loop load generator. Flows (init +
//! purchase) are *scheduled* at a fixed rate, `R` per second, whatever the server does;
//! `-c` connections take them in turn. A flow's latency is measured from its scheduled
//! start, so time spent waiting for a free connection — when the server falls behind —
//! counts (no coordinated omission), and a flow that a connection picks up more than
//! [`LATE`] after its scheduled time is reported as late to start. Percentiles come from
//! HDR histograms (microseconds, 3 significant digits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ports::CryptoProvider;
use session_crypto_client::{Endpoint, InitRoute, ProtocolClient};
use tokio::sync::{Mutex, mpsc};

use super::common::cpu_time;
use super::open_report::{OpenLoopReport, Percentiles, print_report};
use crate::args::BenchArgs;

const PAYLOAD: &[u8] = br#"{"schemeCode":"AEF","amount":5000}"#;

/// A flow picked up later than this after its scheduled start is late.
pub const LATE: Duration = Duration::from_millis(2);

/// The schedule: flow `i` starts at `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    interval: Duration,
}

impl Schedule {
    /// `rate` flows per second from `start`.
    pub fn new(start: Instant, rate: f64) -> Self {
        Self {
            start,
            interval: Duration::from_secs_f64(1.0 / rate),
        }
    }

    /// When flow `i` is due.
    pub fn due(&self, i: usize) -> Instant {
        self.start + self.interval.mul_f64(i as f64)
    }
}

#[derive(Debug)]
struct Series {
    /// How long after its scheduled time each flow was picked up.
    start: Histogram<u64>,
    init: Histogram<u64>,
    purchase: Histogram<u64>,
    flow: Histogram<u64>,
    late: usize,
    max_delay: Duration,
    errors: usize,
    first_error: Option<String>,
}

impl Series {
    fn new() -> Result<Self, String> {
        let h = || Histogram::<u64>::new(3).map_err(|e| e.to_string());
        Ok(Self {
            start: h()?,
            init: h()?,
            purchase: h()?,
            flow: h()?,
            late: 0,
            max_delay: Duration::ZERO,
            errors: 0,
            first_error: None,
        })
    }

    fn merge(&mut self, other: &Self) -> Result<(), String> {
        self.start.add(&other.start).map_err(|e| e.to_string())?;
        self.init.add(&other.init).map_err(|e| e.to_string())?;
        self.purchase
            .add(&other.purchase)
            .map_err(|e| e.to_string())?;
        self.flow.add(&other.flow).map_err(|e| e.to_string())?;
        self.late += other.late;
        self.max_delay = self.max_delay.max(other.max_delay);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One connection: takes due flows from `due` until the schedule ends.
async fn connection(
    args: Arc<BenchArgs>,
    endpoint: Arc<Endpoint>,
    crypto: CryptoProvider,
    due: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
) -> Result<Series, String> {
    let mut s = Series::new()?;
    let protocol = crate::client::protocol(args.protocol);
    let unmarked = args.unmarked_v1_answers;
    let connect = || async {
        ProtocolClient::connect_to(&endpoint, crypto, &args.client_id)
            .await
            .map(|c| c.with_protocol(protocol).with_unmarked_v1_answers(unmarked))
    };
    let mut client = connect().await.map_err(|e| e.to_string())?;
    loop {
        let Some(scheduled) = due.lock().await.recv().await else {
            return Ok(s);
        };
        let picked = Instant::now();
        let delay = picked.saturating_duration_since(scheduled);
        s.max_delay = s.max_delay.max(delay);
        s.start.record(us(delay)).ok();
        if delay > LATE {
            s.late += 1;
        }
        let outcome = match client.init(InitRoute::Unversioned, Some(1800)).await {
            Ok((session, _)) => {
                let inited = Instant::now();
                client
                    .purchase(&session, PAYLOAD)
                    .await
                    .map(|_| (inited, Instant::now()))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok((inited, done)) => {
                let record = |h: &mut Histogram<u64>, d: Duration| h.record(us(d)).ok();
                record(&mut s.init, inited - scheduled);
                record(&mut s.purchase, done - inited);
                record(&mut s.flow, done - scheduled);
            }
            Err(e) => {
                s.errors += 1;
                s.first_error.get_or_insert_with(|| e.to_string());
                if let Ok(c) = connect().await {
                    client = c;
                }
            }
        }
    }
}

/// Runs the open-loop load and prints (or with `--json`, writes) the report.
///
/// # Errors
/// A message for the user.
pub(crate) async fn run(args: BenchArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    let rate = args.rate as f64;
    let total = match args.duration_sec {
        Some(d) => (rate * d).round() as usize,
        None => args.iterations,
    };
    if total == 0 || args.concurrency == 0 {
        return Err("--rate × --duration (or -n) and --concurrency must be > 0".into());
    }
    let endpoint = super::endpoint(&args, crypto)?;
    let args = Arc::new(args);
    if args.warmup > 0 {
        let mut client = ProtocolClient::connect_to(&endpoint, crypto, &args.client_id)
            .await
            .map_err(|e| crate::Error::Runtime(format!("warm-up: {e}")))?
            .with_protocol(crate::client::protocol(args.protocol))
            .with_unmarked_v1_answers(args.unmarked_v1_answers);
        for _ in 0..args.warmup {
            let (session, _) = client
                .init(InitRoute::Unversioned, Some(1800))
                .await
                .map_err(|e| crate::Error::Runtime(format!("warm-up failed: {e}")))?;
            client
                .purchase(&session, PAYLOAD)
                .await
                .map_err(|e| crate::Error::Runtime(format!("warm-up failed: {e}")))?;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(connection(
                Arc::clone(&args),
                Arc::clone(&endpoint),
                crypto,
                Arc::clone(&rx),
            ))
        })
        .collect();
    // Let the connections open before the schedule starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_before = server_pid.as_deref().and_then(cpu_time);
    let client_before = cpu_time("self");
    let schedule = Schedule::new(Instant::now(), rate);
    // The schedule is kept by a thread of its own: the runtime's timer ticks every
    // millisecond, which alone started the median flow about 1 ms late; an OS sleep
    // wakes within tens of µs.
    let dispatcher = std::thread::spawn(move || {
        for i in 0..total {
            let due = schedule.due(i);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send(due).is_err() {
                break;
            }
        }
    });
    let mut all = Series::new().map_err(crate::Error::Runtime)?;
    for w in workers {
        let series = w
            .await
            .map_err(|e| crate::Error::Runtime(e.to_string()))?
            .map_err(|e| crate::Error::Runtime(format!("connection: {e}")))?;
        all.merge(&series).map_err(crate::Error::Runtime)?;
    }
    dispatcher
        .join()
        .map_err(|_| crate::Error::Runtime("the schedule's thread panicked".into()))?;
    let elapsed = schedule.due(0).elapsed().as_secs_f64();
    let ok = all.flow.len() as usize;
    let per_flow = |before: Option<Duration>, pid: Option<&str>| {
        let used = cpu_time(pid?)?.checked_sub(before?)?;
        Some(used.as_secs_f64() * 1e6 / ok.max(1) as f64)
    };
    let report = OpenLoopReport {
        mode: "open-loop",
        url: args.url.clone(),
        protocol: args.protocol,
        target_rate: rate,
        achieved_rate: ok as f64 / elapsed,
        concurrency: args.concurrency,
        scheduled: total,
        ok,
        errors: all.errors,
        first_error: all.first_error.clone(),
        late_to_start: all.late,
        late_threshold_ms: LATE.as_secs_f64() * 1000.0,
        max_start_delay_ms: all.max_delay.as_secs_f64() * 1000.0,
        start_delay: Percentiles::of(&all.start),
        elapsed_sec: elapsed,
        init: Percentiles::of(&all.init),
        purchase: Percentiles::of(&all.purchase),
        flow: Percentiles::of(&all.flow),
        server_cpu_us_per_flow: per_flow(server_before, server_pid.as_deref()),
        client_cpu_us_per_flow: per_flow(client_before, Some("self")),
    };
    match &args.json {
        Some(path) => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| crate::Error::Runtime(e.to_string()))?;
            std::fs::write(path, text + "\n")
                .map_err(|e| format!("--json {}: {e}", path.display()))?;
        }
        None => print_report(&report),
    }
    if report.errors > 0 {
        Err(crate::Error::Runtime(format!(
            "{} flows failed",
            report.errors
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_due_at_fixed_intervals_from_the_start() {
        let start = Instant::now();
        let s = Schedule::new(start, 400.0);
        assert_eq!(s.due(0), start);
        assert_eq!(s.due(1) - start, Duration::from_micros(2500));
        assert_eq!(s.due(400) - start, Duration::from_secs(1));
    }
}
