//! `[admin]`: the operator's listener (metrics, reload). Separate from the traffic listeners so
//! it can stay on loopback or a private interface while the gateway faces the world.

use std::net::SocketAddr;

use serde::Deserialize;

use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default = "default_listen")]
    listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:9901".into()
}

impl RawAdmin {
    pub(super) fn validate(self, v: &mut Validator) -> Option<AdminConfig> {
        let listen = v.check("admin.listen", self.listen.parse::<SocketAddr>())?;
        if !listen.ip().is_loopback() {
            // Allowed (a pod network may need it) but worth a word: /admin/reload is unauthenticated.
            tracing::warn!(%listen, "admin.listen is not loopback: anyone who reaches it can scrape and reload");
        }
        Some(AdminConfig { listen })
    }
}
