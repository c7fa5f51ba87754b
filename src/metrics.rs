//! Prometheus metrics. Every metric the gateway exports is named here, next to the one function
//! that records it, so the list in the README and the code cannot drift apart. Recording goes
//! through the `metrics` facade (a few atomic operations); rendering happens only when the admin
//! listener is scraped.

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::time::Instant;

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
            describe();
            let _ = REQUEST_SERIES.set(RequestSeries::new());
            Some(handle)
        })
        .as_ref()
}

/// The `# HELP` lines of the exposition.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "persona_gate_requests_total",
        "Requests answered, by route class and status"
    );
    describe_histogram!(
        "persona_gate_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head, by route class"
    );
    describe_counter!(
        "persona_gate_auth_failures_total",
        "Requests refused for their token, by reason"
    );
    describe_counter!(
        "persona_gate_rate_limit_decisions_total",
        "Rate-limit decisions, by policy and decision"
    );
    describe_counter!(
        "persona_gate_persona_calls_total",
        "Persona API attempts (retries included), by endpoint and outcome"
    );
    describe_histogram!(
        "persona_gate_persona_call_duration_seconds",
        Unit::Seconds,
        "Persona API attempt latency, by endpoint"
    );
    describe_counter!(
        "persona_gate_get_or_create_total",
        "Get-or-create rounds, by flow and outcome"
    );
    describe_counter!(
        "persona_gate_single_flight_joins_total",
        "Requests that waited for another request's round, by single-flight"
    );
    describe_counter!("persona_gate_webhooks_total", "Webhook deliveries, by outcome");
    describe_counter!("persona_gate_jwks_refreshes_total", "JWKS fetches, by outcome");
    describe_counter!(
        "persona_gate_store_errors_total",
        "Failed store (Redis) round trips, by kind"
    );
    describe_counter!(
        "persona_gate_config_reloads_total",
        "Config reloads (SIGHUP or POST /admin/reload), by outcome"
    );
    describe_gauge!(
        "persona_gate_connections_in_flight",
        "Open client connections on the traffic listeners"
    );
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample (8 bytes per request) until it folds them into
/// buckets, which rendering does; without this, a gateway nobody scrapes would grow by hundreds
/// of kilobytes a second under load. Never resolves; does nothing when the recorder is another's.
pub async fn upkeep() {
    let Some(handle) = install() else {
        return std::future::pending().await;
    };
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    install()
        .map(PrometheusHandle::render)
        .unwrap_or_else(|| "# metrics recorder unavailable\n".to_owned())
}

/// The route classes requests are counted under: a fixed set, so label cardinality stays bounded
/// whatever paths clients send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Route {
    /// `/healthz` and `/readyz`.
    Health,
    /// Persona's webhook deliveries.
    Webhook,
    /// The embedded emulator's browser flow.
    Embed,
    /// `POST` (and the CORS preflight of) get-or-create.
    GetOrCreate,
    /// The caller's own inquiries (`/api/inquiries/current`, `/api/inquiries/{id}`).
    InquiryRead,
    /// Everything sent on to the app, gated paths included.
    #[default]
    Proxy,
}

impl Route {
    /// In declaration order, so `route as usize` indexes it.
    const ALL: [Route; 6] = [
        Route::Health,
        Route::Webhook,
        Route::Embed,
        Route::GetOrCreate,
        Route::InquiryRead,
        Route::Proxy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Webhook => "webhook",
            Route::Embed => "embed",
            Route::GetOrCreate => "get_or_create",
            Route::InquiryRead => "inquiry_read",
            Route::Proxy => "proxy",
        }
    }
}

/// One finished request (begun at `started`), by route class and status. Runs for every request,
/// so it does nothing without the gateway's recorder (no `[admin]`, not even read the clock), and
/// with it looks each series up once: a lookup through the `metrics` macros builds and hashes the
/// whole key every time.
pub fn request(route: Route, status: u16, started: Instant) {
    let Some(series) = REQUEST_SERIES.get() else {
        return;
    };
    series.count(route, status);
    series.durations[route as usize].record(started.elapsed().as_secs_f64());
}

/// Set by [`install`] once the gateway's recorder is the process's.
static REQUEST_SERIES: OnceLock<RequestSeries> = OnceLock::new();

struct RequestSeries {
    /// Indexed by `Route as usize`.
    durations: [metrics::Histogram; Route::ALL.len()],
    /// One slot per route class and status (100-999), filled on first use: after that, counting
    /// is a lookup by index and one atomic add, with no lock shared by every request.
    counts: Box<[OnceLock<metrics::Counter>]>,
}

/// Statuses 100 to 999, as `http::StatusCode` allows.
const STATUSES: usize = 900;

impl RequestSeries {
    fn new() -> Self {
        Self {
            durations: Route::ALL
                .map(|route| metrics::histogram!("persona_gate_request_duration_seconds", "route" => route.as_str())),
            counts: (0..Route::ALL.len() * STATUSES).map(|_| OnceLock::new()).collect(),
        }
    }

    fn count(&self, route: Route, status: u16) {
        let status = status.clamp(100, 999);
        let slot = route as usize * STATUSES + usize::from(status - 100);
        if let Some(counter) = self.counts.get(slot) {
            counter
                .get_or_init(|| {
                    metrics::counter!("persona_gate_requests_total", "route" => route.as_str(), "status" => status_label(status))
                })
                .increment(1);
        }
    }
}

/// Every three-digit status as text ("100101102...999"), so a status label is a slice of this
/// table and never an allocation.
static STATUS_DIGITS: [u8; 2700] = status_digits();

const fn status_digits() -> [u8; 2700] {
    let mut table = [0u8; 2700];
    let mut i = 0;
    while i < 900 {
        let n = i + 100;
        table[i * 3] = b'0' + (n / 100) as u8;
        table[i * 3 + 1] = b'0' + (n / 10 % 10) as u8;
        table[i * 3 + 2] = b'0' + (n % 10) as u8;
        i += 1;
    }
    table
}

/// `http::StatusCode` guarantees 100..=999; the clamp keeps the slice in range regardless.
fn status_label(status: u16) -> &'static str {
    let at = usize::from(status.clamp(100, 999) - 100) * 3;
    std::str::from_utf8(&STATUS_DIGITS[at..at + 3]).unwrap_or("999")
}

/// `reason` is [`crate::auth::AuthError::code`] (`token_missing`, `token_expired`, ...).
pub fn auth_failure(reason: &'static str) {
    metrics::counter!("persona_gate_auth_failures_total", "reason" => reason).increment(1);
}

/// One rate-limit policy's decision counters, registered when the limiter is built so that
/// counting a decision is one atomic add and the policy name is never copied per request.
#[derive(Clone)]
pub struct RateLimitDecisions {
    allowed: metrics::Counter,
    limited: metrics::Counter,
}

impl RateLimitDecisions {
    /// `policy` is a configured policy name, so the set of series is bounded by the config.
    pub fn new(policy: &str) -> Self {
        let name = "persona_gate_rate_limit_decisions_total";
        let policy = std::sync::Arc::<str>::from(policy);
        Self {
            allowed: metrics::counter!(name, "policy" => policy.clone(), "decision" => "allowed"),
            limited: metrics::counter!(name, "policy" => policy, "decision" => "limited"),
        }
    }

    pub fn record(&self, allowed: bool) {
        let counter = if allowed { &self.allowed } else { &self.limited };
        counter.increment(1);
    }
}

/// One attempt at a Persona call. `op` is the client's operation name ("list inquiries", ...),
/// labelled by its verb (`list`, `create`, `retrieve`, `resume`); `answer` is `None` when the
/// attempt timed out, else the HTTP status or the transport error.
pub fn persona_call(op: &str, answer: Option<Result<StatusCode, &reqwest::Error>>, elapsed: Duration) {
    let endpoint = persona_endpoint(op);
    let outcome = match answer {
        None => "timeout",
        Some(Ok(status)) if status.is_success() => "ok",
        Some(Ok(StatusCode::TOO_MANY_REQUESTS)) => "429",
        Some(Ok(status)) if status.is_client_error() => "4xx",
        Some(Ok(status)) if status.is_server_error() => "5xx",
        Some(Ok(_)) => "other_status",
        Some(Err(e)) if e.is_connect() => "connect_error",
        Some(Err(e)) if e.is_timeout() => "timeout",
        Some(Err(_)) => "transport_error",
    };
    metrics::counter!("persona_gate_persona_calls_total", "endpoint" => endpoint, "outcome" => outcome).increment(1);
    metrics::histogram!("persona_gate_persona_call_duration_seconds", "endpoint" => endpoint)
        .record(elapsed.as_secs_f64());
}

/// A Persona call refused by the gateway's own outbound budget before any attempt was made; it
/// is counted with the calls (outcome `budget`) but has no latency to record.
pub fn persona_budget_refused(op: &str) {
    let endpoint = persona_endpoint(op);
    metrics::counter!("persona_gate_persona_calls_total", "endpoint" => endpoint, "outcome" => "budget").increment(1);
}

fn persona_endpoint(op: &str) -> &'static str {
    match op.split_once(' ').map_or(op, |(verb, _)| verb) {
        "list" => "list",
        "create" => "create",
        "retrieve" => "retrieve",
        "resume" => "resume",
        "template" => "template",
        _ => "other",
    }
}

/// How one get-or-create round ended; requests that joined a running round are counted by
/// [`single_flight_join`], not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOrCreate {
    /// No usable inquiry: a new one was created.
    Created,
    /// The user's latest inquiry was still `created`: its id, no token.
    ResumedCreated,
    /// An inquiry that needs a session token (`pending`, or an expired one resumed): a cached or
    /// fresh token.
    ResumedPending,
    /// A finished inquiry, reported as it is.
    ReturnedTerminal,
    /// Persona, the profile endpoint or the cross-replica lock failed.
    Error,
}

/// `flow` is a configured flow's name, so the series stay as few as the flows.
pub fn get_or_create(flow: &str, outcome: GetOrCreate) {
    let outcome = match outcome {
        GetOrCreate::Created => "created",
        GetOrCreate::ResumedCreated => "resumed_created",
        GetOrCreate::ResumedPending => "resumed_pending",
        GetOrCreate::ReturnedTerminal => "returned_terminal",
        GetOrCreate::Error => "error",
    };
    metrics::counter!("persona_gate_get_or_create_total", "flow" => flow.to_owned(), "outcome" => outcome).increment(1);
}

/// A request that waited for another request's round instead of starting its own. `flight` names
/// the single-flight: `get_or_create`, or `gate_lookup` (the gate asking Persona about a user).
pub fn single_flight_join(flight: &'static str) {
    metrics::counter!("persona_gate_single_flight_joins_total", "flight" => flight).increment(1);
}

/// `forwarded`, `duplicate`, `ignored`, `forward_failed`, `dedupe_unavailable`, or the stable
/// error code of a rejected delivery (`webhook_signature_invalid`, ...).
pub fn webhook(outcome: &'static str) {
    metrics::counter!("persona_gate_webhooks_total", "outcome" => outcome).increment(1);
}

pub fn jwks_refresh(ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("persona_gate_jwks_refreshes_total", "outcome" => outcome).increment(1);
}

/// A store round trip that failed (Redis errors and timeouts, health probes included).
pub fn store_error(kind: &'static str) {
    metrics::counter!("persona_gate_store_errors_total", "kind" => kind).increment(1);
}

/// One config reload, SIGHUP or `POST /admin/reload`: `ok` (swapped in), `invalid` (the file
/// failed validation) or `failed` (a key, certificate or store it names could not be loaded).
/// Either of the last two leaves the running config in force.
pub fn config_reload(outcome: &'static str) {
    metrics::counter!("persona_gate_config_reloads_total", "outcome" => outcome).increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_come_from_the_table() {
        assert_eq!(status_label(100), "100");
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(429), "429");
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(999), "999");
        assert_eq!(status_label(0), "100");
    }

    #[test]
    fn routes_index_their_own_series() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, i);
        }
    }

    #[test]
    fn persona_endpoints_are_the_operation_verbs() {
        assert_eq!(persona_endpoint("list inquiries"), "list");
        assert_eq!(persona_endpoint("create inquiry"), "create");
        assert_eq!(persona_endpoint("retrieve inquiry"), "retrieve");
        assert_eq!(persona_endpoint("resume inquiry"), "resume");
    }
}
