//! Building the request pipeline (a [`Gateway`]) from a validated config, in one place for the
//! start-up and every reload. Each part gets what it needs when it is made, so no part can be
//! wired to another in the wrong order.

use std::sync::Arc;

use crate::auth::{AuthSetupError, Authenticator};
use crate::config::{Config, PersonaConfig, PersonaEndpoint, WebhookConfig};
#[cfg(feature = "emulator")]
use crate::embedded::EmbedMount;
use crate::embedded::{Embedded, EmulatorEndpoint};
use crate::gateway::{Gateway, Parts};
use crate::inquiry::{self, InquirySetupError};
use crate::persona::{PersonaClient, PersonaSetupError};
use crate::proxy::Proxy;
use crate::ratelimit::RateLimiter;
use crate::store::{Store, StoreError};
use crate::verification::{Ledger, Verification};
use crate::webhook::{self, Dedupe, MemoryDedupe, Receiver, StoreDedupe};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Persona(#[from] PersonaSetupError),
    #[error(transparent)]
    Inquiry(#[from] InquirySetupError),
    #[error("persona.use_emulator is set but no emulator is running")]
    NoEmulator,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The request pipeline and everything it owns, built from a validated config: at start-up and
/// again on every reload. The verification ledger is made first, since the webhook receiver and
/// the get-or-create routes feed it and the gate reads it.
///
/// # Errors
/// A verification key, the Persona client or the profile client cannot be built.
pub(crate) async fn build(config: &Arc<Config>, embedded: &Embedded, store: &Store) -> Result<Gateway, BuildError> {
    let auth = Authenticator::new(&config.auth).await?;
    let proxy = Proxy::new(
        &config.upstream,
        &config.identity,
        &config.auth,
        &webhook::FORWARDED_HEADERS,
        config.limits.headers_with_underscores,
    );
    let ledger = Ledger::new(&config.gate, &config.inquiry.flows, store);
    let webhook = config.webhook.as_ref().map(|hooks| {
        let dedupe = webhook_dedupe(hooks, store);
        Receiver::new(hooks, &config.upstream, dedupe, ledger.clone())
    });
    let (inquiries, verification) = match &config.persona {
        Some(persona) => {
            let mut client = persona_client(persona, embedded.emulator.as_ref())?;
            if let Some(budget) = config.rate_limit.persona_budget {
                client = client.with_budget(store.clone(), budget);
            }
            // One client for every flow: Persona limits per API key, so they share one budget.
            let routes = inquiry::routes(&config.inquiry, &client, store, ledger.as_ref())?;
            (routes, Some(Verification::new(config, client, ledger)))
        }
        None => (Vec::new(), None),
    };
    #[cfg(feature = "emulator")]
    let embed = match (&embedded.emulator, &config.emulator) {
        (Some(emulator), Some(settings)) => Some(EmbedMount::new(settings, emulator.addr, config)),
        _ => None,
    };
    Ok(Gateway::new(Parts {
        config: config.clone(),
        auth,
        proxy,
        ratelimit: RateLimiter::new(&config.rate_limit, store),
        store: store.clone(),
        webhook,
        inquiries,
        verification,
        #[cfg(feature = "emulator")]
        embed,
    }))
}

/// Replicas sharing Redis must agree on which events were forwarded; one process remembers them
/// itself (bounded by `dedupe_capacity`).
fn webhook_dedupe(hooks: &WebhookConfig, store: &Store) -> Arc<dyn Dedupe> {
    match store.redis() {
        Some(_) => Arc::new(StoreDedupe::new(store.clone(), hooks.dedupe_ttl)),
        None => Arc::new(MemoryDedupe::new(hooks.dedupe_capacity, hooks.dedupe_ttl)),
    }
}

/// The Persona client for `[persona]`: the configured API, or the embedded emulator (config
/// validation guarantees `[emulator]` exists when `use_emulator` is set).
fn persona_client(config: &PersonaConfig, embedded: Option<&EmulatorEndpoint>) -> Result<PersonaClient, BuildError> {
    let (base_url, api_key) = match (&config.endpoint, embedded) {
        (PersonaEndpoint::Remote { base_url, api_key }, _) => (base_url, api_key),
        (PersonaEndpoint::Emulator, Some(e)) => (&e.base_url, &e.api_key),
        (PersonaEndpoint::Emulator, None) => return Err(BuildError::NoEmulator),
    };
    Ok(PersonaClient::new(config, base_url, api_key)?)
}
