//! Webhook deliveries as Persona sends them: the `Persona-Signature` header (one `t=,v1=` set per
//! secret, for rotation), the `Persona-Webhook-Attempts-*` headers, in-order delivery with short
//! retries, and the test-only redelivery of an event (duplicates, stale timestamps). The event
//! bodies come from `event`; each attempt is handed back to the caller to record, so this file
//! knows nothing of the emulator's state.

use std::time::Duration;

use aws_lc_rs::hmac;
use serde::Serialize;
use tokio::sync::mpsc;

use super::clock;
use super::event::Event;
use crate::config::{EmulatorConfig, Secret};

/// `t=<t>,v1=<hex>` per secret, space-separated, all with the same `t`.
fn signature(secrets: &[Secret], t: u64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
            let mut ctx = hmac::Context::with_key(&key);
            ctx.update(t.to_string().as_bytes());
            ctx.update(b".");
            ctx.update(body);
            format!("t={t},v1={}", hex(ctx.sign().as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How hard the emulator tries. Persona retries for two days; the emulator keeps Persona's
/// per-attempt timeout but retries briefly, so tests and demos see the outcome quickly.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    first_backoff: Duration,
    timeout: Duration,
}

const RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    first_backoff: Duration::from_millis(100),
    timeout: Duration::from_secs(5),
};

/// One attempt, as `GET /_emulator/webhooks` lists it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Delivery {
    pub event_id: String,
    pub event_name: &'static str,
    pub inquiry_id: String,
    /// The receiver's status, or null when it could not be reached in time.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub attempt: u32,
    /// The signed `t`.
    pub timestamp: u64,
    pub redelivery: bool,
}

/// Where events go and how they are signed.
pub(super) struct Webhooks {
    url: String,
    secrets: Vec<Secret>,
    events: Vec<String>,
    client: reqwest::Client,
}

struct Attempt {
    t: u64,
    made: u32,
    left: u32,
    first_attempted_at: u64,
    redelivery: bool,
}

impl Webhooks {
    /// `None` when no `webhook_url` is configured.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub(super) fn new(config: &EmulatorConfig) -> std::io::Result<Option<Webhooks>> {
        let Some(url) = &config.webhook_url else {
            return Ok(None);
        };
        let client = reqwest::Client::builder()
            .timeout(RETRY.timeout)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Some(Webhooks {
            url: url.clone(),
            secrets: config.webhook_secrets.clone(),
            events: config.webhook_events.clone(),
            client,
        }))
    }

    pub(super) fn wants(&self, name: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == name)
    }

    async fn attempt(&self, event: &Event, attempt: Attempt) -> Delivery {
        let sent = self
            .client
            .post(&self.url)
            .header("content-type", "application/json; charset=utf-8")
            .header("persona-signature", signature(&self.secrets, attempt.t, &event.body))
            .header("persona-webhook-attempts-made", attempt.made)
            .header("persona-webhook-attempts-left", attempt.left)
            .header("persona-webhook-first-attempted-at", attempt.first_attempted_at)
            .body(event.body.clone())
            .send()
            .await;
        let (status, error) = match sent {
            Ok(response) => (Some(response.status().as_u16()), None),
            // Without the URL: reqwest's message can include it, and it may carry a token.
            Err(e) => (None, Some(e.without_url().to_string())),
        };
        Delivery {
            event_id: event.id.clone(),
            event_name: event.name,
            inquiry_id: event.inquiry_id.clone(),
            status,
            error,
            attempt: attempt.made,
            timestamp: attempt.t,
            redelivery: attempt.redelivery,
        }
    }

    /// Delivers until a 2xx or the attempts run out, handing each attempt to `record`.
    async fn deliver(&self, event: &Event, record: &impl Fn(Delivery)) {
        let first = clock::unix_seconds(clock::wall());
        let mut backoff = RETRY.first_backoff;
        for made in 1..=RETRY.attempts {
            let attempt = Attempt {
                t: clock::unix_seconds(clock::wall()),
                made,
                left: RETRY.attempts - made,
                first_attempted_at: first,
                redelivery: false,
            };
            let delivery = self.attempt(event, attempt).await;
            let delivered = delivery.status.is_some_and(|s| (200..300).contains(&s));
            if !delivered {
                tracing::debug!(event = %event.id, status = ?delivery.status, "webhook delivery failed");
            }
            record(delivery);
            if delivered {
                return;
            }
            if made < RETRY.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }

    /// Sends `event` again `times` times, once each, signed `stale_seconds` in the past, the way
    /// a duplicate or a replayed capture would arrive.
    pub(super) async fn redeliver(&self, event: &Event, times: u32, stale_seconds: u64) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for _ in 0..times {
            let t = clock::unix_seconds(clock::wall()).saturating_sub(stale_seconds);
            let attempt = Attempt {
                t,
                made: 1,
                left: 0,
                first_attempted_at: t,
                redelivery: true,
            };
            deliveries.push(self.attempt(event, attempt).await);
        }
        deliveries
    }
}

/// Delivers queued events one at a time, in the order they happened, handing every attempt to
/// `record`. Runs until dropped; with no webhook URL configured it has nothing to do.
pub(super) async fn worker(
    webhooks: Option<&Webhooks>,
    mut outbox: mpsc::UnboundedReceiver<Event>,
    record: impl Fn(Delivery),
) {
    let Some(webhooks) = webhooks else {
        return std::future::pending().await;
    };
    while let Some(event) = outbox.recv().await {
        webhooks.deliver(&event, &record).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body_per_secret() {
        let secrets = [Secret::new("wbhsec_new"), Secret::new("wbhsec_old")];
        let header = signature(&secrets, 1_700_000_000, b"{\"a\":1}");
        let sets: Vec<&str> = header.split(' ').collect();
        assert_eq!(sets.len(), 2);
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac wbhsec_new
        assert_eq!(
            sets[0],
            "t=1700000000,v1=c107adc1b6532eecafa51d951beb0c560f1697c596515f79ddd6894b5d9b2784"
        );
        assert!(sets[1].starts_with("t=1700000000,v1="));
        assert_ne!(sets[0], sets[1]);
    }
}
