//! The configured template's latest published version, read from Persona before an expired
//! inquiry is resumed and kept for `inquiry.template_version_ttl`, so a run of resumes costs one
//! template read, not one each. Persona pins an inquiry to the version it was created on and
//! advises a new inquiry when the template has moved on since.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::persona::{PersonaError, Round};

pub struct TemplateVersion {
    ttl: Duration,
    /// The version and when it was read.
    cached: Mutex<Option<(String, Instant)>>,
}

impl TemplateVersion {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The latest published version of `template_id`, from the cache while it is fresh.
    ///
    /// # Errors
    /// Persona could not be asked (see `Round::latest_template_version`).
    pub async fn latest(&self, template_id: &str, persona: &mut Round<'_>) -> Result<String, PersonaError> {
        if let Some(version) = self.fresh() {
            return Ok(version);
        }
        let version = persona.latest_template_version(template_id).await?;
        if !self.ttl.is_zero() {
            *self.lock() = Some((version.clone(), Instant::now()));
        }
        Ok(version)
    }

    fn fresh(&self) -> Option<String> {
        let cached = self.lock();
        let (version, read) = cached.as_ref()?;
        (read.elapsed() < self.ttl).then(|| version.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, Instant)>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
