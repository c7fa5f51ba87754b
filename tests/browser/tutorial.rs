//! The tutorial's "Test the complete flow" step, in a real browser: headless Chromium drives the
//! onboarding page through persona-gate (HTTPS, session cookie) with the embedded emulator and
//! the demo app behind it, then the second verification flow (the walker's payout details) that
//! unlocks the gated payout page. Screenshots of each step land in `target/browser-screenshots/`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::*;
use super::webdriver::{Driver, browser_binaries};

async fn emulator_calls(emulator: std::net::SocketAddr) -> Vec<Value> {
    let log: Value = client()
        .get(format!("http://{emulator}/_emulator/calls"))
        .send()
        .await
        .expect("call log")
        .json()
        .await
        .expect("call log json");
    log["calls"].as_array().cloned().unwrap_or_default()
}

fn count(calls: &[Value], method: &str, path_suffix: &str) -> usize {
    calls
        .iter()
        .filter(|c| c["method"] == method && c["path"].as_str().is_some_and(|p| p.ends_with(path_suffix)))
        .count()
}

async fn webhooks_received(gateway: &TestGateway) -> Vec<Value> {
    let url = format!(
        "http://{}/demo/webhooks",
        gateway.demo.expect("the shipped config runs the demo app")
    );
    client()
        .get(url)
        .send()
        .await
        .expect("webhooks")
        .json()
        .await
        .expect("webhooks json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_scenarios_in_a_real_browser() {
    let Some((browser, driver_bin)) = browser_binaries() else {
        return;
    };
    let gateway = TestGateway::start(&shipped_config_on_free_ports()).await;
    let emulator = gateway.emulator.expect("the shipped config embeds the emulator");
    let https = gateway.https.expect("the shipped config serves https");
    let base = format!("https://localhost:{}", https.port());
    let shots = repo_path("target/browser-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let profile = std::env::temp_dir().join(format!("pg-chromium-{}", std::process::id()));

    let driver = Driver::start(&driver_bin).await;
    let page = driver.session(&browser, &profile).await;

    // Sign in to the demo app: it sets the session cookie persona-gate verifies.
    page.goto(&format!("{base}/demo/")).await;
    page.screenshot(&shots.join("0-sign-in.png")).await;
    page.click("#sign-in").await;
    page.wait_text("h1", |t| t.contains("Welcome, Alexander")).await;
    page.screenshot(&shots.join("1-onboarding.png")).await;

    // Scenario 1: a new inquiry is created and the flow opens at its first step, prefilled from
    // the sign-in token under the KYC template's own field keys.
    page.click("#verify-button").await;
    page.wait_text("#persona-step-title", |t| t == "Government ID").await;
    page.wait_text("#persona-prefill", |t| {
        t.contains("birthdate = 1977-08-31") && t.contains("name_first = Alexander") && t.contains("name_last = Sample")
    })
    .await;
    let debug = page.wait_text("#debug-info", |t| t.starts_with("inquiry inq_")).await;
    let inquiry = debug.split_whitespace().nth(1).expect("inquiry id").to_owned();
    assert!(debug.contains("no session token"), "{debug}");
    page.screenshot(&shots.join("2-scenario1-new-inquiry.png")).await;
    let calls = emulator_calls(emulator).await;
    assert_eq!(count(&calls, "POST", "/api/v1/inquiries"), 1, "one create: {calls:?}");
    page.click("#persona-close").await;

    // Scenario 2: after a reload the same created inquiry comes back without a session token.
    page.goto(&format!("{base}/onboarding")).await;
    page.click("#verify-button").await;
    let debug = page.wait_text("#debug-info", |t| t.starts_with("inquiry inq_")).await;
    assert!(
        debug.contains(&inquiry) && debug.contains("(created)") && debug.contains("no session token"),
        "{debug}"
    );
    page.wait_text("#persona-step-title", |t| t == "Government ID").await;
    page.click("#persona-submit").await;
    page.wait_text("#persona-step-title", |t| t == "Selfie").await;
    page.screenshot(&shots.join("3-scenario2-government-id-done.png")).await;
    page.click("#persona-close").await;
    let calls = emulator_calls(emulator).await;
    assert_eq!(count(&calls, "POST", "/api/v1/inquiries"), 1, "still one create");

    // Scenario 3: the pending inquiry resumes at the selfie step, with a session token.
    page.goto(&format!("{base}/onboarding")).await;
    page.click("#verify-button").await;
    let debug = page.wait_text("#debug-info", |t| t.contains("(pending)")).await;
    assert!(
        debug.contains(&inquiry) && debug.contains("resumed with a session token"),
        "{debug}"
    );
    page.wait_text("#persona-step-title", |t| t == "Selfie").await;
    page.wait_text("#persona-meta", |t| t.contains("session token: yes"))
        .await;
    page.screenshot(&shots.join("4-scenario3-resumed-at-selfie.png")).await;
    let calls = emulator_calls(emulator).await;
    assert_eq!(
        count(&calls, "POST", &format!("/inquiries/{inquiry}/resume")),
        1,
        "one resume: {calls:?}"
    );
    page.click("#persona-submit").await;
    page.wait_text("#persona-step-title", |t| t == "Verification complete")
        .await;
    page.click("#persona-submit").await;
    page.wait_text("#debug-info", |t| t.contains(&format!("Completed inquiry {inquiry}")))
        .await;
    page.screenshot(&shots.join("5-scenario3-completed.png")).await;

    // Scenario 4: the shipped policy reports an approved user's status instead of re-verifying.
    page.goto(&format!("{base}/onboarding")).await;
    page.click("#verify-button").await;
    page.wait_text("#status", |t| t.contains("approved")).await;
    page.screenshot(&shots.join("6-scenario4-approved.png")).await;
    let calls = emulator_calls(emulator).await;
    assert_eq!(
        count(&calls, "POST", "/api/v1/inquiries"),
        1,
        "an approved user gets no new inquiry"
    );

    // The app learned the outcome from verified webhooks, for this user and inquiry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hooks = webhooks_received(&gateway).await;
        let names: Vec<&str> = hooks
            .iter()
            .filter(|h| h["inquiry_id"] == inquiry.as_str() && h["reference_id"] == "usr_ABC123")
            .filter_map(|h| h["name"].as_str())
            .collect();
        if ["inquiry.started", "inquiry.completed", "inquiry.approved"]
            .iter()
            .all(|n| names.contains(n))
        {
            break;
        }
        assert!(Instant::now() < deadline, "webhooks the app received: {hooks:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The second flow: the payout page is gated on both verifications. The identity one is
    // approved, so the page says the payout one is missing; it has a button and a template of
    // its own, and its approval (a webhook of the payout template) unlocks the page.
    page.goto(&format!("{base}/onboarding")).await;
    page.wait_text("#payout-state", |t| t.contains("verify your payout details"))
        .await;
    page.click("#payout-button").await;
    page.wait_text("#persona-step-title", |t| t == "Government ID").await;
    let debug = page.wait_text("#payout-debug", |t| t.starts_with("inquiry inq_")).await;
    let payout = debug.split_whitespace().nth(1).expect("inquiry id").to_owned();
    assert_ne!(payout, inquiry, "a new inquiry for the second flow: {debug}");
    let calls = emulator_calls(emulator).await;
    let templates: Vec<&str> = calls
        .iter()
        .filter(|c| c["method"] == "POST" && c["path"] == "/api/v1/inquiries")
        .filter_map(|c| c["body"]["data"]["attributes"]["inquiry-template-id"].as_str())
        .collect();
    assert_eq!(templates, ["itmpl_emulator_kyc", "itmpl_emulator_payout"], "{calls:?}");
    for next in ["Selfie", "Verification complete"] {
        page.click("#persona-submit").await;
        page.wait_text("#persona-step-title", |t| t == next).await;
    }
    page.click("#persona-submit").await;
    page.wait_text("#payout-debug", |t| t.contains(&format!("Completed inquiry {payout}")))
        .await;
    page.wait_text("#payout-state", |t| t.contains("unlocked (verification approved)"))
        .await;
    page.screenshot(&shots.join("7-payout-unlocked.png")).await;
    page.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    gateway.shutdown().await;
}
