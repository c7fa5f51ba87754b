//! The `fields` a new inquiry is created with. Only server-side data is used: claims of the
//! verified token (mapped by config) and, optionally, the app's profile endpoint. The request
//! body is never read, so a user cannot choose what Persona is told about them.

use std::sync::Arc;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::error::InquiryError;
use crate::auth::Identity;
use crate::config::{FlowConfig, ProfileConfig};

/// One flow's prefill: its claim mapping, and the profile endpoint every flow shares.
pub struct Prefill {
    claim_fields: Vec<(String, String)>,
    profile: Option<Arc<Profile>>,
}

/// The app's profile endpoint and the HTTP client that asks it, one for all flows.
pub struct Profile {
    config: ProfileConfig,
    http: reqwest::Client,
}

impl Profile {
    pub fn new(config: &ProfileConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            config: config.clone(),
            http: reqwest::Client::builder().timeout(config.timeout).build()?,
        })
    }
}

impl Prefill {
    pub fn new(flow: &FlowConfig, profile: Option<Arc<Profile>>) -> Self {
        Self {
            claim_fields: flow.claim_fields.clone(),
            profile,
        }
    }

    /// Claims first, then the profile on top: the app's own record is the better source.
    pub async fn fields(&self, identity: &Identity) -> Result<Map<String, Value>, InquiryError> {
        let mut fields = Map::new();
        for (claim, field) in &self.claim_fields {
            if let Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) = identity.claims.get(claim) {
                fields.insert(field.clone(), v.clone());
            }
        }
        if let Some(profile) = &self.profile {
            fields.extend(fetch_profile(&profile.config, &profile.http, &identity.user_id).await?);
        }
        Ok(fields)
    }
}

/// `GET` the profile URL with the user id filled in. 404 means "no profile": the inquiry is
/// created with what the claims gave. Anything else unexpected stops the create (502), since
/// creating it without the data would leave the user typing what the app already knows.
async fn fetch_profile(
    profile: &ProfileConfig,
    http: &reqwest::Client,
    user_id: &str,
) -> Result<Map<String, Value>, InquiryError> {
    let user = utf8_percent_encode(user_id, NON_ALPHANUMERIC).to_string();
    let url = profile.url.replace("{user_id}", &user);
    let failed = |what: String| InquiryError::Profile(format!("profile endpoint: {what}"));
    let response = http
        .get(&url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    match response.status() {
        s if s == http::StatusCode::NOT_FOUND => Ok(Map::new()),
        s if s.is_success() => match response.json::<Value>().await {
            Ok(Value::Object(fields)) => Ok(fields),
            _ => Err(failed("the answer is not a JSON object".into())),
        },
        s => Err(failed(format!("answered {s}"))),
    }
}
