//! Layered configuration: defaults, TOML file, environment, flags.

use crate::helpers::*;
use crate::support::*;

#[test]
fn configuration_layers_file_then_environment_then_flags() {
    let dir = std::env::temp_dir().join(format!("sc-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("session-crypto.toml");
    std::fs::write(
        &file,
        format!(
            r#"
# every layer sets some of these
session_ttl_default_sec = 600
SESSION_TTL_MAX_SEC = 3000
nonce_ttl_sec = 700
cors_origins = ["https://a.example", "https://b.example"]
database_url = "postgres://app:hunter2pw@db.example/sc"
session_kek = "{KEK}"
"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let backend = default_backend().name;
    let ((code, out), err) = run_to_exit_with_stdout(
        &["check-config", "--config", path, "--nonce-ttl-sec", "900"],
        &[
            ("CRYPTO_BACKEND", backend),
            ("SESSION_TTL_MAX_SEC", "3500"),
            ("NONCE_TTL_SEC", "800"),
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    for line in [
        r#"SESSION_TTL_DEFAULT_SEC = "600"  # file"#,
        r#"SESSION_TTL_MAX_SEC = "3500"  # environment"#,
        r#"NONCE_TTL_SEC = "900"  # flag"#,
        r#"SESSION_TTL_MIN_SEC = "300"  # default"#,
        r#"CORS_ORIGINS = "https://a.example,https://b.example"  # file"#,
        r#"DATABASE_URL = "postgres://app:<redacted>@db.example/sc"  # file"#,
        "SESSION_KEK = <redacted>  # file",
        "REDIS_URL = (unset)  # unset",
        "# configuration is valid",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("hunter2pw") && !out.contains(KEK), "{out}");

    // Invalid settings are named, whichever layer they come from.
    let ((code, _), err) = run_to_exit_with_stdout(
        &["check-config", "--config", path],
        &[
            ("CRYPTO_BACKEND", backend),
            ("SESSION_TTL_DEFAULT_SEC", "4000"),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("SESSION_TTL_DEFAULT_SEC"), "{err}");
    std::fs::write(&file, "port = 3000\nno_such_setting = 1\n").unwrap();
    let ((code, _), err) = run_to_exit_with_stdout(
        &["check-config", "--config", path],
        &[("CRYPTO_BACKEND", backend)],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown setting `no_such_setting`") && err.contains(path),
        "{err}"
    );
    std::fs::write(&file, "port = [\n").unwrap();
    let ((code, _), err) = run_to_exit_with_stdout(&["check-config", "--config", path], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid TOML"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_reads_its_settings_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("sc-config-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "session_ttl_default_sec = 420\nsession_ttl_min_sec = 60\n",
    )
    .unwrap();
    let server = Server::start(&[("SESSION_CRYPTO_CONFIG", file.to_str().unwrap())]);
    let mut conn = server.connect().await;
    let key = idem(server.crypto);
    let body = format!(
        r#"{{"clientPublicKey":"{}"}}"#,
        b64(&fresh_public_key(server.crypto))
    );
    let r = post_init(&mut conn, "/session/init", &init_headers(&key, "C"), body).await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["expiresInSec"], 420);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keygen_works_with_every_backend_compiled_in_and_deprecated_settings_only_warn() {
    let ((code, key), err) = run_to_exit_with_stdout(&["keygen"], &[]);
    assert_eq!(code, 0, "{err}");
    let bytes = domain::encoding::base64_decode(key.trim()).expect("base64");
    assert_eq!(bytes.len(), 32);

    // The reference's MEMORY_NONCE_CLEANUP_THRESHOLD is accepted (and said to be ignored);
    // the per-client session cap is off by default.
    let ((code, out), err) = run_to_exit_with_stdout(
        &["check-config"],
        &[
            ("CRYPTO_BACKEND", "ring"),
            ("MEMORY_NONCE_CLEANUP_THRESHOLD", "1000"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("MAX_SESSIONS_PER_CLIENT = \"0\"  # default"),
        "{out}"
    );
    assert!(
        err.contains("MEMORY_NONCE_CLEANUP_THRESHOLD is deprecated and ignored"),
        "{err}"
    );
}

/// The store settings that cannot work stop `check-config` (and `serve`) with a
/// message naming them: two Redis topologies, a Sentinel without its primary's name, a
/// URL that is not Redis, a CA without TLS, a replica without a primary, a fence lease
/// shorter than two reads; and Cluster URLs show with their passwords redacted.
#[test]
fn store_settings_are_checked_and_shown_redacted() {
    for (env, says) in [
        (
            vec![
                ("REDIS_URL", "redis://a:1"),
                ("REDIS_CLUSTER_URLS", "redis://b:2"),
            ],
            "set only one of REDIS_URL, REDIS_CLUSTER_URLS and REDIS_SENTINEL_URLS",
        ),
        (
            vec![("REDIS_SENTINEL_URLS", "redis://a:1")],
            "REDIS_SENTINEL_URLS and REDIS_SENTINEL_MASTER go together",
        ),
        (
            vec![("REDIS_URL", "http://a:1")],
            "REDIS_URL: \"http://a:1\" is not a redis://",
        ),
        (
            vec![
                ("REDIS_URL", "redis://a:1"),
                ("REDIS_CA_FILE", "/etc/hostname"),
            ],
            "REDIS_CA_FILE is set but REDIS_URL does not use TLS",
        ),
        (
            vec![("PG_READ_URL", "postgres://r/db")],
            "PG_READ_URL is a replica of DATABASE_URL",
        ),
        (
            vec![("REPLAY_FENCE_LEASE_MS", "10")],
            "REPLAY_FENCE_LEASE_MS must be at least 500",
        ),
    ] {
        let mut all = vec![("CRYPTO_BACKEND", "ring")];
        all.extend(env);
        let ((code, _), err) = run_to_exit_with_stdout(&["check-config"], &all);
        assert_eq!(code, 1, "{all:?}");
        assert!(err.contains(says), "{all:?}: {err}");
    }
    let ((code, out), err) = run_to_exit_with_stdout(
        &["check-config"],
        &[
            ("CRYPTO_BACKEND", "ring"),
            ("REDIS_CLUSTER_URLS", "redis://:pw1@h1:1,redis://:pw2@h2:2"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(r#"REDIS_CLUSTER_URLS = "redis://:<redacted>@h1:1,redis://:<redacted>@h2:2""#),
        "{out}"
    );
    assert!(!out.contains("pw1") && !out.contains("pw2"), "{out}");
}
