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

/// A config whose `[persona]` names `version` and whose prefill maps a claim to `field`.
fn prefill_config(version: &str, field: &str) -> super::common::ConfigFile {
    let extra = format!(
        "[emulator]\nlisten = \"127.0.0.1:0\"\n\n[persona]\nuse_emulator = true\nversion = \"{version}\"\n\
         template_id = \"itmpl_emulator_kyc\"\n\n[inquiry.fields]\ngiven_name = \"{field}\"\n"
    );
    super::common::ConfigFile::new(&super::common::base_config(
        "127.0.0.1:1".parse().expect("addr"),
        &extra,
    ))
}

/// `check` warns, naming the key, about prefill field keys Persona would not match: not
/// snake_case from 2025-10-27 (and not in the emulator's template), not an inflection Persona
/// understands before it. Warnings do not fail the check; the shipped config has none.
#[test]
fn check_warns_about_field_keys_persona_would_not_match() {
    let shipped = check(&super::common::repo_path("config.toml"));
    let stdout = String::from_utf8_lossy(&shipped.stdout);
    assert!(!stdout.contains("warning: inquiry.fields"), "{stdout}");
    for (version, field, warned) in [
        ("2025-10-27", "name-first", true),
        ("2025-12-08", "nameFirst", true),
        ("2025-10-27", "name_first", false),
        ("2023-01-05", "name-first", false),
        ("2023-01-05", "Name First", true),
    ] {
        let out = check(&prefill_config(version, field).path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{version} {field}: {stdout}");
        assert_eq!(
            stdout.contains("warning: inquiry.fields.given_name:"),
            warned,
            "{version} {field}: {stdout}"
        );
        if warned {
            assert!(stdout.contains(&format!("{field:?}")), "names the key: {stdout}");
        }
    }
    let out = check(&prefill_config("2025-10-27", "nickname").path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("has no field \"nickname\""), "{stdout}");
}

/// `persona.version` must be a version the client supports; others are config errors by key.
#[test]
fn an_unsupported_persona_version_is_a_config_error() {
    for (version, why) in [
        ("2024-06-01", "is not a Persona API version"),
        ("2021-07-05", "does not support"),
    ] {
        let out = check(&prefill_config(version, "name_first").path);
        assert_eq!(out.status.code(), Some(1), "{version}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("persona.version:") && stderr.contains(why), "{stderr}");
    }
}

/// Relaxing a path refusal or passing underscore headers is allowed, and `check` says what it
/// risks, naming the key; a name it does not know, or a path written non-canonically, is an error.
#[test]
fn check_warns_about_each_relaxed_refusal_and_refuses_non_canonical_paths() {
    let base = super::common::base_config("127.0.0.1:9".parse().expect("addr"), "");
    let relaxed = super::common::ConfigFile::new(&format!(
        "{base}\n[paths]\nallow = [\"semicolon\", \"encoded_slash\"]\nmerge_slashes = false\n"
    ));
    let out = check(&relaxed.path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for expected in [
        "warning: paths.allow[0]: semicolon relaxed:",
        "warning: paths.allow[1]: encoded_slash relaxed:",
        "warning: paths.merge_slashes: off:",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let broken = super::common::ConfigFile::new(
        &format!("{base}\n[paths]\nallow = [\"everything\"]\n[gate]\npaths = [\"/a/../walker/\"]\n")
            .replace("[limits]\n", "[limits]\nheaders_with_underscores = \"sometimes\"\n")
            .replace(r#"public_paths = ["/public/"]"#, r#"public_paths = ["//public/"]"#),
    );
    let out = check(&broken.path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("limits.headers_with_underscores"), "{stderr}");
    let fixed = super::common::ConfigFile::new(
        &format!("{base}\n[paths]\nallow = [\"everything\"]\n[gate]\npaths = [\"/a/../walker/\"]\n")
            .replace(r#"public_paths = ["/public/"]"#, r#"public_paths = ["//public/"]"#),
    );
    let out = check(&fixed.path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "paths.allow[0]: \"everything\" is not one of",
        "gate.paths[0]: is not in canonical form; write it as \"/walker/\"",
        "auth.public_paths[0]: is not in canonical form; write it as \"/public/\"",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}
