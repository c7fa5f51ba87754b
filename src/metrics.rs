//! Prometheus metrics. Every metric the gateway exports is named here, next to the one function
//! that records it, so the list in the README and the code cannot drift apart. Recording goes
//! through the `metrics` facade (a few atomic operations); rendering happens only when the admin
//! listener is scraped.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds: sub-millisecond for gateway-owned work, up to a minute for slow
/// upstream calls.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Installs the process-wide recorder once; later calls reuse it. `None` when another recorder
/// was installed first (an embedding program's), in which case `/metrics` says so.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    install()
        .map(PrometheusHandle::render)
        .unwrap_or_else(|| "# metrics recorder unavailable\n".to_owned())
}

/// One finished request. `route` is a small fixed set (`health`, `get_or_create`, `webhook`,
/// `inquiry_read`, `proxy`, ...) so label cardinality stays bounded whatever paths clients send.
pub fn request(route: &'static str, status: u16, elapsed: Duration) {
    let status = status.to_string();
    metrics::counter!("persona_gate_requests_total", "route" => route, "status" => status).increment(1);
    metrics::histogram!("persona_gate_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());
}

pub fn auth_failure(reason: &'static str) {
    metrics::counter!("persona_gate_auth_failures_total", "reason" => reason).increment(1);
}

pub fn rate_limit_decision(policy: &str, allowed: bool) {
    let decision = if allowed { "allowed" } else { "limited" };
    metrics::counter!("persona_gate_rate_limit_decisions_total", "policy" => policy.to_owned(), "decision" => decision)
        .increment(1);
}

pub fn persona_call(endpoint: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!("persona_gate_persona_calls_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
    metrics::histogram!("persona_gate_persona_call_duration_seconds", "endpoint" => endpoint)
        .record(elapsed.as_secs_f64());
}

/// `created`, `resumed_created`, `resumed_pending`, `returned_terminal` or `error`.
pub fn get_or_create(outcome: &'static str) {
    metrics::counter!("persona_gate_get_or_create_total", "outcome" => outcome).increment(1);
}

/// A request that waited for another request's Persona round instead of starting its own.
pub fn single_flight_join() {
    metrics::counter!("persona_gate_single_flight_joins_total").increment(1);
}

pub fn webhook(outcome: &'static str) {
    metrics::counter!("persona_gate_webhooks_total", "outcome" => outcome).increment(1);
}

pub fn jwks_refresh(ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("persona_gate_jwks_refreshes_total", "outcome" => outcome).increment(1);
}

pub fn store_error(operation: &'static str) {
    metrics::counter!("persona_gate_store_errors_total", "operation" => operation).increment(1);
}

/// Tracks open client connections; the guard decrements on drop, so every exit path counts.
pub struct ConnectionGauge(());

impl ConnectionGauge {
    pub fn open() -> Self {
        metrics::gauge!("persona_gate_connections_in_flight").increment(1.0);
        ConnectionGauge(())
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("persona_gate_connections_in_flight").decrement(1.0);
    }
}
