//! `[inquiry]` section (placeholder until its issue lands).

use serde::Deserialize;

use super::Validator;

#[derive(Debug, Clone)]
pub struct InquiryConfig {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInquiry {}

impl RawInquiry {
    pub(super) fn validate(self, _v: &mut Validator) -> InquiryConfig {
        InquiryConfig {}
    }
}
#[derive(Debug, Clone, Copy)]
pub enum StatusPolicy {}
