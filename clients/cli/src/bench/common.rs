//! What the load generator's modes share: latency summaries and the CPU time of a
//! process.

use std::time::Duration;

pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Latency summary of one series (microsecond samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Min (ms).
    pub min: f64,
    /// Mean (ms).
    pub mean: f64,
    /// Median (ms).
    pub p50: f64,
    /// 95th percentile (ms).
    pub p95: f64,
    /// 99th percentile (ms).
    pub p99: f64,
    /// Max (ms).
    pub max: f64,
}

/// Nearest-rank percentiles.
pub fn summarize(samples: &mut [u32]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank =
        |p: f64| samples[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0;
    let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
    Some(Summary {
        count: n,
        min: samples[0] as f64 / 1000.0,
        mean: sum as f64 / n as f64 / 1000.0,
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: samples[n - 1] as f64 / 1000.0,
    })
}

/// CPU time (user + system) of a process, from /proc (Linux; USER_HZ = 100).
pub(crate) fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let s = summarize(&mut v).unwrap();
        assert_eq!(
            (s.min, s.p50, s.p95, s.p99, s.max),
            (1.0, 50.0, 95.0, 99.0, 100.0)
        );
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert_eq!(summarize(&mut []), None);
        let mut one = vec![2500];
        assert_eq!(summarize(&mut one).unwrap().p99, 2.5);
    }
}
