//! The open loop's report: latency percentiles from HDR histograms, the whole report
//! (`--json` writes it as is), and its text form.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles of one series (milliseconds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    pub(super) fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The whole report (`--json` writes it as is).
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopReport {
    /// `"open-loop"`.
    pub mode: &'static str,
    /// The server.
    pub url: String,
    /// Protocol version of the flows.
    pub protocol: u8,
    /// Scheduled flows per second.
    pub target_rate: f64,
    /// Completed flows per second over the run (first scheduled start to last end).
    pub achieved_rate: f64,
    /// Connections.
    pub concurrency: usize,
    /// Flows scheduled.
    pub scheduled: usize,
    /// Flows that completed.
    pub ok: usize,
    /// Flows that failed.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Flows picked up more than `late_threshold_ms` after their scheduled start.
    pub late_to_start: usize,
    /// The threshold (ms).
    pub late_threshold_ms: f64,
    /// The latest pick-up after a scheduled start (ms).
    pub max_start_delay_ms: f64,
    /// How long after its scheduled start each flow was picked up: the load generator's
    /// own wake-ups when connections are free, the wait for a free connection when the
    /// server falls behind.
    pub start_delay: Percentiles,
    /// Run time (s).
    pub elapsed_sec: f64,
    /// Init latency from the flow's scheduled start.
    pub init: Percentiles,
    /// Purchase latency (from the end of its init).
    pub purchase: Percentiles,
    /// Whole-flow latency from its scheduled start.
    pub flow: Percentiles,
    /// The server's CPU per flow (µs), with `--server-pid`.
    pub server_cpu_us_per_flow: Option<f64>,
    /// The load generator's CPU per flow (µs).
    pub client_cpu_us_per_flow: Option<f64>,
}

pub(super) fn print_report(r: &OpenLoopReport) {
    println!(
        "Open-loop benchmark: {} flows (init + purchase) scheduled at {:.0} flows/s over {} connections against {} (protocol {})",
        r.scheduled, r.target_rate, r.concurrency, r.url, r.protocol
    );
    println!(
        "  Achieved: {:.1} flows/s, {} ok, {} errors, in {:.3} s",
        r.achieved_rate, r.ok, r.errors, r.elapsed_sec
    );
    println!(
        "  Late to start (> {:.0} ms after schedule): {} (max start delay {:.3} ms)",
        r.late_threshold_ms, r.late_to_start, r.max_start_delay_ms
    );
    for (name, p) in [
        ("start delay", &r.start_delay),
        ("init (from scheduled start)", &r.init),
        ("purchase", &r.purchase),
        ("flow (from scheduled start)", &r.flow),
    ] {
        println!(
            "  {name}: p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}, mean {:.3}",
            p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms, p.mean_ms
        );
    }
    if let Some(us) = r.server_cpu_us_per_flow {
        println!("Server CPU: {us:.1} µs per flow");
    }
    if let Some(us) = r.client_cpu_us_per_flow {
        println!("Client CPU: {us:.1} µs per flow");
    }
    if let Some(e) = &r.first_error {
        println!("  First error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.01, "{p:?}");
    }
}
