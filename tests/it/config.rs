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
