//! `session-crypto bench` in closed loop: each connection sends its next flow (init +
//! purchase) when the last one is answered; min/mean/percentiles per step.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ports::CryptoProvider;
use session_crypto_client::{Endpoint, InitRoute, ProtocolClient, StepTimings};

use super::common::{Summary, cpu_time, micros, summarize};
use super::endpoint;
use crate::args::BenchArgs;

const PAYLOAD: &[u8] = br#"{"schemeCode":"AEF","amount":5000}"#;

#[derive(Debug, Default)]
struct WorkerResult {
    init_us: Vec<u32>,
    purchase_us: Vec<u32>,
    flow_us: Vec<u32>,
    init_steps: ServerSteps,
    purchase_steps: ServerSteps,
    errors: usize,
    first_error: Option<String>,
}

/// Shared progress counters.
#[derive(Debug, Default)]
struct Progress {
    next: AtomicUsize,
    done: AtomicUsize,
    errors: AtomicUsize,
}

async fn worker(
    args: Arc<BenchArgs>,
    endpoint: Arc<Endpoint>,
    crypto: CryptoProvider,
    progress: Arc<Progress>,
    total: usize,
) -> WorkerResult {
    let mut r = WorkerResult::default();
    let protocol = crate::client::protocol(args.protocol);
    let unmarked = args.unmarked_v1_answers;
    let mut client = match ProtocolClient::connect_to(&endpoint, crypto, &args.client_id)
        .await
        .map(|c| c.with_protocol(protocol).with_unmarked_v1_answers(unmarked))
    {
        Ok(c) => c,
        Err(e) => {
            r.errors = 1;
            r.first_error = Some(e.to_string());
            progress.errors.fetch_add(1, Ordering::Relaxed);
            return r;
        }
    };
    while progress.next.fetch_add(1, Ordering::Relaxed) < total {
        let t0 = Instant::now();
        let outcome = match client.init(InitRoute::Unversioned, Some(1800)).await {
            Ok((session, init_timings)) => {
                let t1 = Instant::now();
                match client.purchase(&session, PAYLOAD).await {
                    Ok((_, purchase_timings)) => {
                        let t2 = Instant::now();
                        r.init_steps.add(&init_timings);
                        r.purchase_steps.add(&purchase_timings);
                        r.init_us.push(micros(t1 - t0));
                        r.purchase_us.push(micros(t2 - t1));
                        r.flow_us.push(micros(t2 - t0));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            r.errors += 1;
            progress.errors.fetch_add(1, Ordering::Relaxed);
            r.first_error.get_or_insert_with(|| e.to_string());
            // A transport error leaves the connection unusable: reconnect.
            if let Ok(c) = ProtocolClient::connect_to(&endpoint, crypto, &args.client_id)
                .await
                .map(|c| c.with_protocol(protocol).with_unmarked_v1_answers(unmarked))
            {
                client = c;
            }
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// Sums of the server's `Server-Timing` steps (`name;dur=<ms>`), in first-seen order.
#[derive(Debug, Default)]
struct ServerSteps {
    steps: Vec<(String, f64)>,
    responses: usize,
}

impl ServerSteps {
    fn add(&mut self, timings: &StepTimings) {
        if timings.server_timing.is_none() {
            return;
        }
        self.responses += 1;
        for (name, dur) in timings.server_steps() {
            if let Ok(dur) = dur.parse::<f64>() {
                self.add_step(name, dur);
            }
        }
    }

    fn add_step(&mut self, name: &str, dur: f64) {
        match self.steps.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += dur,
            None => self.steps.push((name.to_owned(), dur)),
        }
    }

    fn merge(&mut self, other: Self) {
        self.responses += other.responses;
        for (name, sum) in other.steps {
            self.add_step(&name, sum);
        }
    }

    /// `  Server-Timing (mean ms): step 0.012, …, total 1.234`, or nothing when the
    /// server sent no `Server-Timing`.
    fn line(&self) -> Option<String> {
        if self.responses == 0 || self.steps.is_empty() {
            return None;
        }
        let n = self.responses as f64;
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(name, sum)| format!("{name} {:.3}", sum / n))
            .collect();
        Some(format!("  Server-Timing (mean ms): {}", parts.join(", ")))
    }
}

fn print_summary(title: &str, s: Option<Summary>) {
    println!("{title}");
    match s {
        None => println!("  (no successful requests)"),
        Some(s) => {
            println!("  Requests: {}", s.count);
            println!("  Min: {:.3} ms", s.min);
            println!("  Mean: {:.3} ms", s.mean);
            println!("  P50: {:.3} ms", s.p50);
            println!("  P95: {:.3} ms", s.p95);
            println!("  P99: {:.3} ms", s.p99);
            println!("  Max: {:.3} ms", s.max);
        }
    }
}

async fn run_phase(
    args: &Arc<BenchArgs>,
    endpoint: &Arc<Endpoint>,
    crypto: CryptoProvider,
    total: usize,
    show: bool,
) -> (Vec<WorkerResult>, Duration) {
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            tokio::spawn(worker(
                Arc::clone(args),
                Arc::clone(endpoint),
                crypto,
                Arc::clone(&progress),
                total,
            ))
        })
        .collect();
    let ticker = show.then(|| {
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let done = progress.done.load(Ordering::Relaxed);
                let rate = done as f64 / start.elapsed().as_secs_f64();
                let width = 30;
                let filled = (done * width / total.max(1)).min(width);
                eprint!(
                    "\r  [{}{}] {done}/{total} flows  {rate:>8.0} flows/s  errors {}   ",
                    "=".repeat(filled),
                    " ".repeat(width - filled),
                    progress.errors.load(Ordering::Relaxed)
                );
                let _ = std::io::stderr().flush();
            }
        })
    });
    let mut results = Vec::new();
    for w in workers {
        results.push(w.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    (results, elapsed)
}

/// Runs the closed loop (each connection sends its next flow when the last one is
/// answered) and prints the report.
///
/// # Errors
/// A message for the user.
pub(crate) async fn run(args: BenchArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    if args.iterations == 0 || args.concurrency == 0 {
        return Err("--iterations and --concurrency must be > 0".into());
    }
    let endpoint = endpoint(&args, crypto)?;
    let args = Arc::new(args);
    println!(
        "Benchmark: {} flows (init + purchase) at concurrency {} against {} (protocol {}, client crypto {}, warm-up {})",
        args.iterations, args.concurrency, args.url, args.protocol, crypto.name, args.warmup
    );
    if args.warmup > 0 {
        let (warm, _) = run_phase(&args, &endpoint, crypto, args.warmup, false).await;
        if let Some(e) = warm.iter().find_map(|w| w.first_error.clone()) {
            return Err(crate::Error::Runtime(format!("warm-up failed: {e}")));
        }
    }
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_cpu_before = server_pid.as_deref().and_then(cpu_time);
    let client_cpu_before = cpu_time("self");
    let (results, elapsed) = run_phase(
        &args,
        &endpoint,
        crypto,
        args.iterations,
        std::io::stderr().is_terminal(),
    )
    .await;
    let server_cpu = server_pid
        .as_deref()
        .and_then(cpu_time)
        .zip(server_cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let client_cpu = cpu_time("self")
        .zip(client_cpu_before)
        .map(|(a, b)| a.saturating_sub(b));

    let (mut init, mut purchase, mut flow) = (Vec::new(), Vec::new(), Vec::new());
    let (mut init_steps, mut purchase_steps) = (ServerSteps::default(), ServerSteps::default());
    let mut errors = 0;
    let mut first_error = None;
    for r in results {
        init.extend(r.init_us);
        purchase.extend(r.purchase_us);
        flow.extend(r.flow_us);
        init_steps.merge(r.init_steps);
        purchase_steps.merge(r.purchase_steps);
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let ok = flow.len();
    let secs = elapsed.as_secs_f64();
    println!();
    print_summary("/session/init:", summarize(&mut init));
    if let Some(line) = init_steps.line() {
        println!("{line}");
    }
    print_summary("/transaction/purchase:", summarize(&mut purchase));
    if let Some(line) = purchase_steps.line() {
        println!("{line}");
    }
    println!("Combined");
    println!("  Flows: {ok} ok, {errors} errors, in {secs:.3} s");
    println!("  Throughput: {:.1} req/s (actual)", 2.0 * ok as f64 / secs);
    println!("  Flow rate: {:.1} flows/s", ok as f64 / secs);
    if let Some(s) = summarize(&mut flow) {
        println!("  Mean: {:.3} ms", s.mean);
        println!("  P50: {:.3} ms", s.p50);
        println!("  P95: {:.3} ms", s.p95);
        println!("  P99: {:.3} ms", s.p99);
    }
    println!("  Errors: {errors}");
    if let Some(e) = first_error {
        println!("  First error: {e}");
    }
    if ok > 0 {
        if let Some(cpu) = server_cpu {
            println!(
                "Server CPU: {:.1} µs per flow ({:.2} s over the run, pid {})",
                cpu.as_secs_f64() * 1e6 / ok as f64,
                cpu.as_secs_f64(),
                server_pid.unwrap_or_default()
            );
        }
        if let Some(cpu) = client_cpu {
            println!(
                "Client CPU: {:.1} µs per flow",
                cpu.as_secs_f64() * 1e6 / ok as f64
            );
        }
    }
    if errors > 0 {
        Err(crate::Error::Runtime(format!("{errors} flows failed")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_means_per_step() {
        let header = |h: Option<&str>| StepTimings {
            server_timing: h.map(str::to_owned),
            ..StepTimings::default()
        };
        let mut a = ServerSteps::default();
        a.add(&header(Some(
            "validate-pubkey;dur=0.010, db-store;dur=2.000, total;dur=3.000",
        )));
        a.add(&header(None));
        let mut b = ServerSteps::default();
        b.add(&header(Some(
            "validate-pubkey;dur=0.030, bogus, x;desc=y, total;dur=5.000",
        )));
        a.merge(b);
        assert_eq!(
            a.line().unwrap(),
            "  Server-Timing (mean ms): validate-pubkey 0.020, db-store 1.000, total 4.000"
        );
        assert_eq!(ServerSteps::default().line(), None);
    }
}
