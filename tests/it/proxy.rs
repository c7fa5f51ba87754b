//! The reverse proxy: what reaches the app, and what the client gets back when the app fails.

use super::common::*;

#[tokio::test]
async fn public_path_is_proxied_without_a_token() {
    let upstream = echo_upstream().await;
    let gw = TestGateway::start(&base_config(upstream, "")).await;
    let echo = echoed(
        client()
            .get(gw.url("/public/app.css?v=1"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(echo["path"], "/public/app.css");
    assert_eq!(echo["query"], "v=1");
    assert_eq!(seen_header(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen_header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen_header(&echo, "x-request-id").is_some_and(|id| id.len() == 32));
    gw.shutdown().await;
}
