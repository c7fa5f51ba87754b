//! Persona-style ids (`inq_…`, `evt_…`, `req_…`). Every part of the emulator mints them, so they
//! live below all of it; nothing else belongs here.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A Persona-style id: the prefix and 24 random alphanumerics (`inq_2CvKbsmXgVcX1JGzYL8CfqLs`).
pub(super) fn new_id(prefix: &str) -> String {
    let suffix: String = rand::rng().sample_iter(Alphanumeric).take(24).map(char::from).collect();
    format!("{prefix}{suffix}")
}
