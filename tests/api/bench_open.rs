//! `session-crypto bench --rate`: the open-loop load generator's schedule and report
//! (not its speed), against a real server.

use crate::support::{Server, run_to_exit_with_stdout};

#[test]
fn the_open_loop_bench_keeps_its_schedule_and_writes_the_whole_report_as_json() {
    let server = Server::start(&[]);
    let dir = crate::gateway::tempfile_dir("bench-open");
    let report = dir.join("report.json");
    let pid = server.pid().to_string();
    let started = std::time::Instant::now();
    let ((code, out), err) = run_to_exit_with_stdout(
        &[
            "bench",
            "--url",
            &server.url,
            "--rate",
            "100",
            "--duration",
            "1.5",
            "-c",
            "4",
            "--warmup",
            "2",
            "--server-pid",
            &pid,
            "--json",
            report.to_str().unwrap(),
        ],
        &[("CRYPTO_BACKEND", server.crypto.name)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    // 150 flows due over 1.5 s: the run cannot be shorter than the schedule.
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(1490), "{took:?}");
    assert!(
        out.trim().is_empty(),
        "--json replaces the text report: {out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["mode"], "open-loop");
    assert_eq!(v["target_rate"], 100.0);
    assert_eq!(v["scheduled"], 150);
    assert_eq!(v["ok"], 150);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["concurrency"], 4);
    let achieved = v["achieved_rate"].as_f64().unwrap();
    assert!((80.0..=101.0).contains(&achieved), "{v}");
    assert!(v["late_to_start"].as_u64().is_some(), "{v}");
    // Every flow's pick-up delay is in the start-delay series; its largest is the one
    // reported as the largest start delay.
    assert_eq!(v["start_delay"]["count"], 150, "{v}");
    let (max_delay, max_start) = (
        v["start_delay"]["max_ms"].as_f64().unwrap(),
        v["max_start_delay_ms"].as_f64().unwrap(),
    );
    assert!(
        (max_delay - max_start).abs() <= 0.01 * max_start + 0.002,
        "{v}"
    );
    assert!(
        v["server_cpu_us_per_flow"]
            .as_f64()
            .is_some_and(|us| us > 0.0),
        "{v}"
    );
    for series in ["init", "purchase", "flow"] {
        let p = &v[series];
        assert_eq!(p["count"], 150, "{series}: {v}");
        let (p50, p99, max) = (
            p["p50_ms"].as_f64().unwrap(),
            p["p99_ms"].as_f64().unwrap(),
            p["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{series}: {v}");
    }
    // A flow's latency runs from its scheduled start: never less than its init's.
    assert!(
        v["flow"]["p50_ms"].as_f64() >= v["init"]["p50_ms"].as_f64(),
        "{v}"
    );

    // Without --json, the same in text.
    let ((code, out), err) = run_to_exit_with_stdout(
        &[
            "bench",
            "--url",
            &server.url,
            "--rate",
            "50",
            "-n",
            "20",
            "-c",
            "2",
        ],
        &[("CRYPTO_BACKEND", server.crypto.name)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Open-loop benchmark: 20 flows (init + purchase) scheduled at 50 flows/s"),
        "{out}"
    );
    assert!(out.contains("20 ok, 0 errors"), "{out}");
    assert!(
        out.contains("Late to start (> 2 ms after schedule):"),
        "{out}"
    );
    assert!(out.contains("flow (from scheduled start): p50"), "{out}");
}

#[test]
fn a_server_slower_than_the_schedule_makes_flows_late_and_counts_the_wait() {
    // One connection, 20,000 flows/s: far more than one connection can answer on this
    // machine, so flows queue behind each other — late to start, and their latency from
    // the schedule grows beyond the service time (no coordinated omission).
    let server = Server::start(&[]);
    let dir = crate::gateway::tempfile_dir("bench-open-late");
    let report = dir.join("late.json");
    let ((code, out), err) = run_to_exit_with_stdout(
        &[
            "bench",
            "--url",
            &server.url,
            "--rate",
            "20000",
            "-n",
            "400",
            "-c",
            "1",
            "--json",
            report.to_str().unwrap(),
        ],
        &[("CRYPTO_BACKEND", server.crypto.name)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["ok"], 400);
    let late = v["late_to_start"].as_u64().unwrap();
    assert!(late > 100, "{v}");
    // More than a quarter of the flows started over 2 ms late, so the start delays'
    // p90 is past that threshold too.
    assert!(v["start_delay"]["p90_ms"].as_f64().unwrap() > 2.0, "{v}");
    assert!(v["achieved_rate"].as_f64().unwrap() < 20000.0, "{v}");
    // The last flows waited for the earlier ones: their latency from the schedule is
    // much more than a single purchase's.
    assert!(
        v["flow"]["max_ms"].as_f64().unwrap() > 5.0 * v["purchase"]["p50_ms"].as_f64().unwrap(),
        "{v}"
    );
}
