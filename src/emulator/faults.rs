//! Injected trouble for the `/api/v1` calls: the base latency every call waits, and the queue of
//! faults (statuses, hangs, lost answers, malformed bodies, 429s) waiting for the calls they
//! match. The control API fills it and the API pipeline takes from it; it decides nothing about
//! what a fault does to a call, which `api` owns.

use std::time::Duration;

use http::Method;
use serde::Deserialize;

/// What can go wrong with the next matching `/api/v1` calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Fault {
    /// Answer with this status and a Persona-style error body, without processing. Like any
    /// answer it is stored under the request's `Idempotency-Key` and replayed. With `lost`, the
    /// answer is stored but never arrives (the caller times out).
    Status {
        status: u16,
        #[serde(default)]
        lost: bool,
    },
    /// Process the request (an inquiry may be created), then answer with this status anyway,
    /// stored under the key like the status fault, and `lost` like it.
    ProcessThenStatus {
        status: u16,
        #[serde(default)]
        lost: bool,
    },
    /// Answer normally, this much later.
    Latency { ms: u64 },
    /// Never answer.
    Hang,
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Answer 429 with `RateLimit-*` headers (and `Retry-After` when given).
    RateLimit {
        #[serde(default = "default_reset")]
        reset: u64,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Process the request (storing its idempotent result), then never answer.
    ProcessThenHang,
}

fn default_reset() -> u64 {
    60
}

impl Fault {
    /// Persona answered (and stored the answer) but the answer never reached the caller.
    pub(super) fn loses_the_answer(&self) -> bool {
        matches!(
            self,
            Fault::ProcessThenHang | Fault::Status { lost: true, .. } | Fault::ProcessThenStatus { lost: true, .. }
        )
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::ProcessThenStatus { .. } => "process_then_status",
            Fault::Latency { .. } => "latency",
            Fault::Hang => "hang",
            Fault::Malformed => "malformed",
            Fault::RateLimit { .. } => "rate_limit",
            Fault::ProcessThenHang => "process_then_hang",
        }
    }
}

#[derive(Debug)]
struct FaultRule {
    fault: Fault,
    remaining: u32,
    method: Option<Method>,
    path_contains: Option<String>,
}

pub(super) struct Faults {
    /// Waited by every `/api/v1` call before anything else, an injected latency fault included.
    pub latency: Duration,
    rules: Vec<FaultRule>,
}

impl Faults {
    pub(super) fn new(latency: Duration) -> Faults {
        Faults {
            latency,
            rules: Vec::new(),
        }
    }

    /// Queues `fault` for the next `times` calls matching `method` (any when `None`) and a path
    /// containing `path_contains` (any when `None`); rules are tried in the order queued.
    pub(super) fn push(&mut self, fault: Fault, times: u32, method: Option<Method>, path_contains: Option<String>) {
        self.rules.push(FaultRule {
            fault,
            remaining: times,
            method,
            path_contains,
        });
    }

    pub(super) fn clear(&mut self) {
        self.rules.clear();
    }

    /// Takes one use of the first fault matching this call.
    pub(super) fn take(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let index = self.rules.iter().position(|rule| {
            rule.method.as_ref().is_none_or(|m| m == method)
                && rule.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let rule = self.rules.get_mut(index)?;
        let fault = rule.fault.clone();
        rule.remaining -= 1;
        if rule.remaining == 0 {
            self.rules.remove(index);
        }
        Some(fault)
    }
}
