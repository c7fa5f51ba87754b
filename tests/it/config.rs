//! `persona-gate check`: the shipped config is valid, and a broken one is refused with every
//! problem named by its key.

use std::process::Command;

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_persona-gate"))
        .args(["check", "--config"])
        .arg(path)
        .env("PERSONA_API_KEY", "persona_sandbox_test_key_for_check")
        .output()
        .expect("run persona-gate check")
}

#[test]
fn shipped_config_is_valid() {
    let out = check(&super::common::repo_path("config.toml"));
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn broken_config_lists_every_problem_by_key() {
    let dir = std::env::temp_dir().join(format!("pg-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
http = "not-an-address"
https = "127.0.0.1:8443"

[limits]
idle_timeout = "60"
max_connections = 0

[upstream]
url = "https://app.internal:3000"

[auth]
sources = ["cookie"]

[[auth.keys]]
algorithms = ["HS256", "RS256"]
secret = { env = "PG_TEST_SURELY_UNSET_VARIABLE" }
"#,
    )
    .expect("write config");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.http",
        "server.https",
        "limits.idle_timeout",
        "limits.max_connections",
        "upstream.url",
        "auth.cookie",
        "auth.keys[0].algorithms",
        "auth.keys[0].secret",
    ] {
        assert!(stderr.contains(&format!("{key}:")), "missing {key} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("PG_TEST_SURELY") || stderr.contains("is not set"),
        "{stderr}"
    );
}

/// Regression (scripts/chaos.sh, case 9, the config fuzzer): `max_connections =
/// 9223372036854775807` passed `check` and the binary then panicked as it began serving (tokio's
/// semaphore holds at most 2^61 permits). It is refused by its key, and the binary exits 64.
#[test]
fn a_connection_limit_no_process_could_hold_is_refused() {
    let dir = std::env::temp_dir().join(format!("pg-check-max-conn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("huge.toml");
    let text = super::common::base_config("127.0.0.1:1".parse().expect("addr"), "")
        .replace("[limits]", "[limits]\nmax_connections = 9223372036854775807");
    assert!(text.contains("max_connections = 9223372036854775807"), "{text}");
    std::fs::write(&path, text).expect("write config");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_connections: must be at most"));
    let run = Command::new(env!("CARGO_BIN_EXE_persona-gate"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run persona-gate");
    assert_eq!(run.status.code(), Some(64), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let dir = std::env::temp_dir().join(format!("pg-check-unknown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("unknown.toml");
    let text = super::common::base_config("127.0.0.1:1".parse().expect("addr"), "")
        .replace("[limits]", "[limits]\nmax_conections = 5");
    std::fs::write(&path, text).expect("write config");
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_conections"));
}
