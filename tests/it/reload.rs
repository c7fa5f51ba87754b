//! Config reload without downtime, over real sockets: a gateway started from a real config file,
//! the file rewritten, and `POST /admin/reload` (or SIGHUP to the real binary) asked to apply it.
//! Covers new limits for new requests while a slow one finishes, refused configs that change
//! nothing, the TLS certificate swap, and what is reported as needing a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::common::*;

const WAIT: Duration = Duration::from_secs(4);

// ===== harness =====

/// A gateway loaded from a [`ConfigFile`], with its admin listener, serving until dropped.
struct FileGateway {
    file: ConfigFile,
    http: SocketAddr,
    https: Option<SocketAddr>,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl FileGateway {
    async fn start(text: &str) -> FileGateway {
        let file = ConfigFile::new(text);
        let config = persona_gate::config::load(&file.path).expect("valid test config");
        let bound = persona_gate::bind(config).await.expect("gateway binds");
        let (http, https) = (bound.http_addr().expect("http listener"), bound.https_addr());
        let admin = bound.admin_addr().expect("admin listener");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        FileGateway {
            file,
            http,
            https,
            admin,
            _stop: stop,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Rewrites the config file and asks the admin listener to reload it: (status, JSON body).
    async fn reload_with(&self, text: &str) -> (u16, Value) {
        self.file.write(text);
        let response = client()
            .post(format!("http://{}/admin/reload", self.admin))
            .send()
            .await
            .expect("reload request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("reload json"))
    }
}

impl Drop for FileGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// [`base_config`] with an admin listener and one per-user policy allowing `rate` on every path.
fn user_limited(upstream: SocketAddr, rate: &str) -> String {
    base_config(
        upstream,
        &format!(
            r#"{ADMIN}
[[rate_limit.policies]]
name = "per-user"
rate = "{rate}"
key = "user"
"#
        ),
    )
}

// ===== rate limits =====

#[tokio::test]
async fn a_raised_rate_limit_applies_to_new_requests_while_a_slow_one_finishes() {
    let (upstream, mut arrivals) = echo_upstream_observed().await;
    let gw = FileGateway::start(&user_limited(upstream, "2/m")).await;

    let slow_url = gw.url("/slow/1000");
    let slow = tokio::spawn(async move { get_as(&slow_url, "usr_reload").await.status() });
    let arrived = tokio::time::timeout(WAIT, arrivals.recv())
        .await
        .expect("slow request reaches the app");
    assert_eq!(arrived.as_deref(), Some("/slow/1000"));
    assert_eq!(
        get_as(&gw.url("/a"), "usr_reload").await.status(),
        200,
        "second of two allowed"
    );
    assert_eq!(
        get_as(&gw.url("/b"), "usr_reload").await.status(),
        429,
        "third is over 2/m"
    );

    let (status, body) = gw.reload_with(&user_limited(upstream, "100/m")).await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "status": "reloaded", "restart_needed": [] }))
    );
    assert!(
        !slow.is_finished(),
        "the slow request must still be in flight across the reload"
    );

    for i in 0..5 {
        assert_eq!(
            get_as(&gw.url(&format!("/after/{i}")), "usr_reload").await.status(),
            200,
            "request {i} after reload"
        );
    }
    let slow_status = tokio::time::timeout(WAIT, slow)
        .await
        .expect("slow request ends")
        .expect("task");
    assert_eq!(slow_status, 200, "the in-flight request completes on the old pipeline");
}

// ===== refused configs =====

#[tokio::test]
async fn a_broken_config_is_refused_logged_and_the_old_one_keeps_serving() {
    let upstream = echo_upstream().await;
    let good = user_limited(upstream, "1/m");
    // The real binary, whose log is its own: a subscriber in this process would share callsite
    // interest with every other test's thread and could miss the refusal's line.
    let file = ConfigFile::new(&good);
    let mut gw = GatewayProcess::start(&file.path, "info").await;
    let admin = gw.admin.expect("admin listener");
    let reload_with = |text: &str| {
        file.write(text);
        async move {
            let response = client()
                .post(format!("http://{admin}/admin/reload"))
                .send()
                .await
                .expect("reload request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("reload json"))
        }
    };
    assert_eq!(get_as(&gw.url("/x"), "usr_broken").await.status(), 200);
    assert_eq!(get_as(&gw.url("/x"), "usr_broken").await.status(), 429);

    let bad_value = user_limited(upstream, "lots");
    let unknown_key = good.replace("timeout = \"2s\"\n", "timeout = \"2s\"\nsurprise = true\n");
    assert_ne!(unknown_key, good, "the unknown key was inserted");
    let cases = [
        (bad_value, "rate_limit.policies[0].rate", "usr_newcomer_1"),
        (unknown_key, "surprise", "usr_newcomer_2"),
    ];
    for (broken, key, newcomer) in cases {
        let mark = gw.log_mark();
        let (status, body) = reload_with(&broken).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "config_invalid", "{body}");
        let problems = body["error"]["problems"].as_array().expect("problems list");
        assert!(
            problems.iter().any(|p| p.as_str().is_some_and(|p| p.contains(key))),
            "{key} is listed: {body}"
        );
        // The old pipeline, limiter state included, still answers: a fresh one would allow this.
        assert_eq!(
            get_as(&gw.url("/x"), "usr_broken").await.status(),
            429,
            "after refusing {key}"
        );
        assert_eq!(
            get_as(&gw.url("/x"), newcomer).await.status(),
            200,
            "after refusing {key}"
        );
        // A TOML syntax problem spans several lines, so look past the refusal's own line.
        gw.wait_for_log_after(mark, "config reload refused").await;
        let log = gw.logs();
        let refusal = log.rfind("config reload refused").map(|at| &log[at..]);
        assert!(
            refusal.is_some_and(|r| r.contains(key)),
            "the refusal naming {key} is logged:\n{log}"
        );
    }
}

#[tokio::test]
async fn a_missing_certificate_is_refused_and_nothing_changes() {
    let upstream = echo_upstream().await;
    let good = tls_config(upstream, "certs/dev-cert.pem", "certs/dev-key.pem");
    let gw = FileGateway::start(&good).await;
    let missing = tls_config(upstream, "tests/fixtures/no-such-cert.pem", "certs/dev-key.pem");
    let (status, body) = gw.reload_with(&missing).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_invalid", "{body}");
    let problems = body["error"]["problems"].to_string();
    assert!(
        problems.contains("server.tls_cert") && problems.contains("no-such-cert.pem"),
        "the key and the file are named: {body}"
    );
    // A key that is not the certificate's is refused the same way.
    let mismatched = tls_config(upstream, "certs/dev-cert.pem", "tests/fixtures/rsa-private.pem");
    let (status, body) = gw.reload_with(&mismatched).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &serde_json::json!("config_invalid")),
        "{body}"
    );
    assert!(
        body["error"]["problems"].to_string().contains("server.tls_key"),
        "{body}"
    );
    let tls = tls_connect(&gw, "certs/dev-ca.pem")
        .await
        .expect("the dev certificate still serves");
    assert_eq!(get_over(&mut tls_sender(tls).await, "/still").await, 200);
}

// ===== TLS certificate =====

fn tls_config(upstream: SocketAddr, cert: &str, key: &str) -> String {
    let (cert, key) = (repo_path(cert), repo_path(key));
    open_config(upstream, "", "", ADMIN).replace(
        "[server]\n",
        &format!(
            "[server]\nhttps = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
}

/// A new TLS connection from a client that trusts only the CA in `ca` (repository-relative).
async fn tls_connect(gw: &FileGateway, ca: &str) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(repo_path(ca)).expect("ca file") {
        roots.add(cert.expect("ca pem")).expect("ca cert");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(gw.https.expect("https listener"))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// An HTTP/1.1 keep-alive connection over `tls`.
async fn tls_sender(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http1 handshake");
    tokio::spawn(conn);
    sender
}

async fn get_over(sender: &mut Sender, path: &str) -> u16 {
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await.expect("body");
    status
}

#[tokio::test]
async fn a_new_certificate_is_seen_by_new_clients_and_old_connections_keep_working() {
    let upstream = echo_upstream().await;
    let gw = FileGateway::start(&tls_config(upstream, "certs/dev-cert.pem", "certs/dev-key.pem")).await;
    let before = tls_connect(&gw, "certs/dev-ca.pem")
        .await
        .expect("dev CA trusted at start");
    let mut before = tls_sender(before).await;
    assert_eq!(get_over(&mut before, "/before").await, 200);
    assert!(
        tls_connect(&gw, "tests/fixtures/reload-ca.pem").await.is_err(),
        "the new CA is not trusted before the swap"
    );

    let swapped = tls_config(
        upstream,
        "tests/fixtures/reload-cert.pem",
        "tests/fixtures/reload-key.pem",
    );
    let (status, body) = gw.reload_with(&swapped).await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "status": "reloaded", "restart_needed": [] }))
    );

    let fresh = tls_connect(&gw, "tests/fixtures/reload-ca.pem")
        .await
        .expect("a new client trusting only the new CA connects");
    assert_eq!(get_over(&mut tls_sender(fresh).await, "/new").await, 200);
    let refused = tls_connect(&gw, "certs/dev-ca.pem").await;
    assert!(refused.is_err(), "a new client trusting only the old CA must fail");
    assert_eq!(
        get_over(&mut before, "/after").await,
        200,
        "the pre-reload connection still works"
    );
}

// ===== restart needed =====

#[tokio::test]
async fn a_changed_listener_is_reported_as_needing_a_restart_and_keeps_its_address() {
    let upstream = echo_upstream().await;
    let text = user_limited(upstream, "5/m");
    let gw = FileGateway::start(&text).await;
    let moved = text.replace("http = \"127.0.0.1:0\"", "http = \"127.0.0.1:1\"");
    assert_ne!(moved, text);
    let (status, body) = gw.reload_with(&moved).await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "status": "reloaded", "restart_needed": ["server.http"] }))
    );
    assert_eq!(
        get_as(&gw.url("/still-here"), "usr_moved").await.status(),
        200,
        "the old address still serves"
    );
}

// ===== shared store =====

#[tokio::test]
async fn a_new_redis_url_moves_the_rate_limits_to_the_new_redis() {
    let (Some(first), Some(second)) = (Redis::start().await, Redis::start().await) else {
        return;
    };
    let upstream = echo_upstream().await;
    let on = |redis: &Redis| {
        format!(
            "{}\n{}",
            user_limited(upstream, "1/m"),
            redis_store(&redis.url(), "deny")
        )
    };
    let gw = FileGateway::start(&on(&first)).await;
    assert_eq!(get_as(&gw.url("/x"), "usr_redis").await.status(), 200);
    assert_eq!(
        get_as(&gw.url("/x"), "usr_redis").await.status(),
        429,
        "limited in the first Redis"
    );

    let (status, body) = gw.reload_with(&on(&second)).await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "status": "reloaded", "restart_needed": [] }))
    );
    assert_eq!(
        get_as(&gw.url("/x"), "usr_redis").await.status(),
        200,
        "the second Redis has no count for this user yet"
    );
}

// ===== SIGHUP, on the real binary =====

#[tokio::test]
async fn sighup_reloads_the_config_file_of_the_running_binary() {
    let upstream = echo_upstream().await;
    let text = |rate: &str| {
        base_config(
            upstream,
            &format!(
                "[log]\nformat = \"json\"\n\n[[rate_limit.policies]]\nname = \"anon\"\nrate = \"{rate}\"\nkey = \"ip\"\nroutes = [\"/public/\"]\n"
            ),
        )
    };
    let file = ConfigFile::new(&text("1/m"));
    let mut gate = GatewayProcess::start(&file.path, "info").await;
    // At once: the handler must be in place by the time the gateway says it is listening.
    let mark = gate.log_mark();
    gate.signal("HUP");
    gate.wait_for_log_after(mark, "config reloaded").await;
    let url = gate.url("/public/page");
    let get = || async { client().get(&url).send().await.expect("request").status().as_u16() };
    assert_eq!(get().await, 200);
    assert_eq!(get().await, 429, "1/m is spent");

    file.write(&text("lots"));
    let mark = gate.log_mark();
    gate.signal("HUP");
    let refused = gate.wait_for_log_after(mark, "config reload refused").await;
    assert!(refused.contains("rate_limit.policies[0].rate"), "{refused}");
    assert_eq!(get().await, 429, "the running config stays after a refused reload");

    file.write(&text("100/m"));
    let mark = gate.log_mark();
    gate.signal("HUP");
    gate.wait_for_log_after(mark, "config reloaded").await;
    assert_eq!(get().await, 200, "the raised limit is in effect");
    assert_eq!(get().await, 200);
}
