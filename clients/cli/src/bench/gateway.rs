//! `session-crypto bench --gateway <path>`: what the gateway costs. In each round, the
//! same number of requests go (1) straight to the upstream (`--direct`, when given),
//! (2) to `/transaction/purchase` and (3) through the gateway path, each phase at the
//! same concurrency, one session per worker set up before the round. The report gives
//! per phase the rate, latency and server CPU per request (from /proc, `--server-pid`),
//! and the medians over the rounds of the two ratios that matter: the gateway's server
//! CPU per request ÷ the purchase route's, and the latency it adds over the direct call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ports::CryptoProvider;
use session_crypto_client::{Connection, Endpoint, InitRoute, Method, Outgoing, ProtocolClient};

use super::common::{cpu_time, micros, summarize};
use crate::args::BenchArgs;

const BODY: &[u8] = br#"{"schemeCode":"AEF","amount":5000}"#;

/// The three phases of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Direct,
    Purchase,
    Gateway,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct upstream",
            Self::Purchase => "purchase route",
            Self::Gateway => "gateway",
        }
    }
}

/// One phase of one round.
#[derive(Debug, Clone, Copy)]
struct Measured {
    ok: usize,
    errors: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_us: Option<f64>,
    upstream_us: Option<f64>,
}

/// Sends a worker's requests at `interval` from each other (none: back to back).
struct Pace {
    next: Instant,
    interval: Option<Duration>,
}

impl Pace {
    fn new(args: &BenchArgs, workers: usize) -> Self {
        let interval =
            (args.rate > 0).then(|| Duration::from_secs_f64(workers as f64 / args.rate as f64));
        Self {
            next: Instant::now(),
            interval,
        }
    }

    /// Waits for the next request's turn (at once when behind).
    async fn wait(&mut self) {
        if let Some(interval) = self.interval {
            tokio::time::sleep_until(self.next.into()).await;
            self.next += interval;
        }
    }
}

async fn worker(
    phase: Phase,
    args: Arc<BenchArgs>,
    endpoint: Arc<Endpoint>,
    direct: Option<Arc<(Endpoint, String)>>,
    crypto: CryptoProvider,
    count: usize,
) -> Result<(Vec<u32>, usize), String> {
    let mut samples = Vec::with_capacity(count);
    let mut errors = 0;
    let mut pace = Pace::new(&args, args.concurrency.max(1));
    if phase == Phase::Direct {
        let (upstream, path) = &*direct.ok_or("no --direct URL")?;
        let mut conn = Connection::open(upstream)
            .await
            .map_err(|e| e.to_string())?;
        let headers = [("content-type", "application/json")];
        for _ in 0..count {
            pace.wait().await;
            let t = Instant::now();
            match conn.send(Method::POST, path, &headers, BODY).await {
                Ok(r) if r.status.is_success() => samples.push(micros(t.elapsed())),
                _ => errors += 1,
            }
        }
        return Ok((samples, errors));
    }
    let protocol = crate::client::protocol(args.protocol);
    let mut client = ProtocolClient::connect_to(&endpoint, crypto, &args.client_id)
        .await
        .map_err(|e| e.to_string())?
        .with_protocol(protocol)
        .with_unmarked_v1_answers(args.unmarked_v1_answers);
    let (session, _) = client
        .init(InitRoute::Unversioned, Some(3600))
        .await
        .map_err(|e| e.to_string())?;
    let path = args.gateway.as_deref().unwrap_or_default();
    let mut pace = Pace::new(&args, args.concurrency.max(1));
    for _ in 0..count {
        pace.wait().await;
        let t = Instant::now();
        let ok = match phase {
            Phase::Purchase => client.purchase(&session, BODY).await.is_ok(),
            _ => {
                let request = Outgoing {
                    call_key: None,
                    method: "POST",
                    path,
                    content_type: Some("application/json"),
                    body: BODY,
                    headers: &[],
                };
                matches!(client.fetch(&session, request).await, Ok((a, _)) if a.status.is_success())
            }
        };
        if ok {
            samples.push(micros(t.elapsed()));
        } else {
            errors += 1;
        }
    }
    Ok((samples, errors))
}

async fn measure(
    phase: Phase,
    args: &Arc<BenchArgs>,
    endpoint: &Arc<Endpoint>,
    direct: &Option<Arc<(Endpoint, String)>>,
    crypto: CryptoProvider,
    total: usize,
) -> Result<Measured, crate::Error> {
    let workers = args.concurrency.max(1);
    let server = args.server_pid.map(|p| p.to_string());
    let upstream = args.upstream_pid.map(|p| p.to_string());
    let server_before = server.as_deref().and_then(cpu_time);
    let upstream_before = upstream.as_deref().and_then(cpu_time);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let count = total / workers + usize::from(i < total % workers);
            tokio::spawn(worker(
                phase,
                Arc::clone(args),
                Arc::clone(endpoint),
                direct.clone(),
                crypto,
                count,
            ))
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t
            .await
            .map_err(|e| crate::Error::Runtime(e.to_string()))?
            .map_err(|e| crate::Error::Runtime(format!("{}: {e}", phase.name())))?;
        samples.extend(s);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let per_request = |before: Option<Duration>, pid: &Option<String>, ok: usize| {
        let used = pid.as_deref().and_then(cpu_time)?.checked_sub(before?)?;
        Some(used.as_secs_f64() * 1e6 / ok.max(1) as f64)
    };
    let ok = samples.len();
    let s = summarize(&mut samples);
    Ok(Measured {
        ok,
        errors,
        rate: ok as f64 / secs,
        p50_ms: s.map_or(0.0, |s| s.p50),
        p99_ms: s.map_or(0.0, |s| s.p99),
        server_us: (phase != Phase::Direct)
            .then(|| per_request(server_before, &server, ok))
            .flatten(),
        upstream_us: per_request(upstream_before, &upstream, ok),
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn show(us: Option<f64>) -> String {
    us.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"))
}

/// Runs the gateway benchmark and prints its report.
///
/// # Errors
/// A message for the user.
pub(crate) async fn run(args: BenchArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    if args.iterations == 0 || args.concurrency == 0 || args.rounds == 0 {
        return Err("--iterations, --concurrency and --rounds must be > 0".into());
    }
    let path = args.gateway.clone().unwrap_or_default();
    if !path.starts_with('/') {
        return Err("--gateway must be a path (e.g. /api/echo)".into());
    }
    let endpoint = super::endpoint(&args, crypto)?;
    let direct = match &args.direct {
        None => None,
        Some(url) => {
            // http://host:port/path → the origin and the target.
            let after_scheme = url.find("://").map_or(0, |i| i + 3);
            let split = url[after_scheme..]
                .find('/')
                .map_or(url.len(), |i| after_scheme + i);
            let (base, target) = url.split_at(split);
            let target = if target.is_empty() { "/" } else { target }.to_owned();
            let upstream = Endpoint::parse(base).map_err(|e| format!("--direct: {e}"))?;
            Some(Arc::new((upstream, target)))
        }
    };
    let args = Arc::new(args);
    let pacing = if args.rate > 0 {
        format!("paced to {} requests/s", args.rate)
    } else {
        "unpaced".to_owned()
    };
    println!(
        "Gateway benchmark: {} rounds of {} requests per phase at concurrency {}, {pacing}, \
         against {} (gateway path {path}, direct {}, protocol {}, client crypto {})",
        args.rounds,
        args.iterations,
        args.concurrency,
        args.url,
        args.direct.as_deref().unwrap_or("not measured"),
        args.protocol,
        crypto.name,
    );
    let mut phases = vec![Phase::Purchase, Phase::Gateway];
    if direct.is_some() {
        phases.insert(0, Phase::Direct);
    }
    // Warm-up: connections, pools, caches.
    for &phase in &phases {
        let n = args.warmup.max(1) * args.concurrency;
        let m = measure(phase, &args, &endpoint, &direct, crypto, n).await?;
        if m.errors > 0 {
            return Err(crate::Error::Runtime(format!(
                "warm-up of the {} failed",
                phase.name()
            )));
        }
    }
    println!();
    println!(
        "| round | phase | requests | errors | req/s | p50 ms | p99 ms | server CPU µs/req | upstream CPU µs/req |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut cpu_ratios, mut added_p50, mut errors) = (Vec::new(), Vec::new(), 0);
    let (mut gateway_rates, mut direct_rates) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let mut results = Vec::new();
        for &phase in &phases {
            let m = measure(phase, &args, &endpoint, &direct, crypto, args.iterations).await?;
            println!(
                "| {round} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} |",
                phase.name(),
                m.ok,
                m.errors,
                m.rate,
                m.p50_ms,
                m.p99_ms,
                show(m.server_us),
                show(m.upstream_us),
            );
            errors += m.errors;
            results.push((phase, m));
        }
        let get = |p: Phase| results.iter().find(|(q, _)| *q == p).map(|(_, m)| *m);
        let (purchase, gateway) = (get(Phase::Purchase), get(Phase::Gateway));
        if let (Some(Some(g)), Some(Some(p))) =
            (gateway.map(|m| m.server_us), purchase.map(|m| m.server_us))
        {
            cpu_ratios.push(g / p);
        }
        if let (Some(g), Some(d)) = (gateway, get(Phase::Direct)) {
            added_p50.push(g.p50_ms - d.p50_ms);
            direct_rates.push(d.rate);
        }
        if let Some(g) = gateway {
            gateway_rates.push(g.rate);
        }
    }
    println!();
    println!("Medians over {} rounds:", args.rounds);
    if let Some(r) = median(gateway_rates) {
        println!("  Gateway: {r:.0} req/s");
    }
    if let Some(r) = median(direct_rates) {
        println!("  Direct: {r:.0} req/s");
    }
    if let Some(ms) = median(added_p50) {
        println!("  Latency the gateway adds (p50, gateway − direct): {ms:.3} ms");
    }
    match median(cpu_ratios) {
        Some(r) => println!("  Server CPU per forwarded request ÷ per purchase: {r:.2}×"),
        None => println!("  Server CPU: not measured (pass --server-pid)"),
    }
    if errors > 0 {
        Err(crate::Error::Runtime(format!("{errors} requests failed")))
    } else {
        Ok(())
    }
}
