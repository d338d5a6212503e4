//! The Python client library (`clients/python`): `mypy --strict`, then its pytest suite —
//! every published vector recomputed, and flows against a real server of every backend
//! (signed, so the pinning tests run; each a gateway to a Python echo service) — must pass
//! with nothing skipped; then `python -m build` makes an sdist and a wheel, and the wheel,
//! installed into a fresh virtual environment, runs the README's example against the
//! orders service behind a gateway.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::services::temp_dir;
use crate::typescript::{OrdersBehindGateway, server_urls, signed_gateways};

fn run(dir: &Path, program: &Path, args: &[&str], envs: &[(&str, String)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?}: {text}",
        program.display()
    );
    text
}

/// A virtual environment at `dir` with `packages` (from PyPI), made once.
fn venv(dir: &Path, packages: &[&str]) -> PathBuf {
    let python = dir.join("bin/python");
    if !python.exists() {
        run(
            Path::new("."),
            Path::new("python3"),
            &["-m", "venv", dir.to_str().unwrap()],
            &[],
        );
    }
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    args.extend_from_slice(packages);
    run(Path::new("."), &python, &args, &[]);
    python
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_library_passes_its_suite_and_its_wheel_runs_the_readme_example() {
    let lib = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python"));
    let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target"));
    let python = venv(
        &target.join("python-venv"),
        &[
            "cryptography>=42",
            "httpx>=0.27",
            "requests>=2.31",
            "types-requests",
            "pytest>=8",
            "mypy>=1.10",
            "build",
        ],
    );
    run(
        &lib,
        &python,
        &["-m", "mypy", "--strict", "src", "tests"],
        &[],
    );

    let (servers, echo) = signed_gateways("python");
    let urls = server_urls(&servers);
    let (dir, py) = (lib.clone(), python.clone());
    let out = tokio::task::spawn_blocking(move || {
        run(
            &dir,
            &py,
            &["-m", "pytest", "-q", "-rs", "tests"],
            &[("SERVER_URLS", urls), ("PYTHONPATH", "src".to_owned())],
        )
    })
    .await
    .unwrap();
    assert!(!out.contains("skipped") && !out.contains("failed"), "{out}");
    assert!(out.contains(" passed"), "{out}");
    drop(servers);
    drop(echo);

    // The wheel, installed into a fresh environment with its httpx extra, runs the
    // README's first example as written.
    let wheels = temp_dir("python-wheel");
    // An sdist and a wheel, as `python -m build` makes them for an upload.
    run(
        &lib,
        &python,
        &["-m", "build", "--outdir", wheels.to_str().unwrap(), "."],
        &[],
    );
    let built: Vec<String> = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        built.iter().any(|f| f.ends_with(".tar.gz")),
        "an sdist: {built:?}"
    );
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("a wheel");
    let fresh = venv(
        &temp_dir("python-consumer").join("venv"),
        &[&format!("{}[httpx]", wheel.display())],
    );
    let readme = std::fs::read_to_string(lib.join("README.md")).unwrap();
    let example = readme
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the README's first example")
        .to_owned();
    let orders = OrdersBehindGateway::start();
    let url = orders.gateway.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(
            Path::new("."),
            &fresh,
            &["-c", &example],
            &[("SESSION_CRYPTO_URL", url)],
        )
    })
    .await
    .unwrap();
    drop(orders);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines[0].starts_with("201 {'id': '1'"), "{out}");
    assert_eq!(&lines[1..3], ["200", "204"], "{out}");
}
