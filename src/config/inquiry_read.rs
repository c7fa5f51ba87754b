//! `[inquiry_read]`: where the caller's own inquiries can be read (`GET` the latest one, or one by
//! id), so a page can show "your verification is pending review" without backend code. The routes
//! exist only when `[persona]` is configured, since they ask Persona with the server-side key. Both
//! read the default flow unless `?flow=<name>` names another.

use serde::Deserialize;

use super::inquiry::InquiryConfig;
use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct InquiryReadConfig {
    pub enabled: bool,
    /// `GET` here returns the caller's latest inquiry.
    pub current_path: String,
    /// `GET <prefix><inquiry id>` returns that inquiry if it is the caller's. Ends with `/`.
    pub by_id_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawInquiryRead {
    enabled: bool,
    current_path: String,
    by_id_prefix: String,
}

impl Default for RawInquiryRead {
    fn default() -> Self {
        Self {
            enabled: true,
            current_path: "/api/inquiries/current".into(),
            by_id_prefix: "/api/inquiries/".into(),
        }
    }
}

impl RawInquiryRead {
    pub(super) fn validate(self, v: &mut Validator) -> InquiryReadConfig {
        v.route("inquiry_read.current_path", &self.current_path);
        v.route("inquiry_read.by_id_prefix", &self.by_id_prefix);
        if !self.by_id_prefix.ends_with('/') {
            v.problem("inquiry_read.by_id_prefix", "must end with /");
        }
        InquiryReadConfig {
            enabled: self.enabled,
            current_path: self.current_path,
            by_id_prefix: self.by_id_prefix,
        }
    }
}

/// The current path must not shadow a get-or-create route. (A read under a public path is not
/// refused here: it answers 401, since it only ever answers a verified caller.)
pub(super) fn cross_check(read: &InquiryReadConfig, inquiry: &InquiryConfig, v: &mut Validator) {
    let shadowed = inquiry.flows.iter().find(|f| f.path == read.current_path);
    if let Some(flow) = shadowed.filter(|_| read.enabled) {
        v.problem(
            "inquiry_read.current_path",
            format!("must differ from the get-or-create path of flow {:?}", flow.name),
        );
    }
}
