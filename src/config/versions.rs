//! The Persona API versions: which exist, which the gateway's client is built for, and what
//! changed between them that the gateway depends on (see ARCHITECTURE.md's Persona facts).

/// Every `Persona-Version` value Persona's API reference lists, newest first. The emulator
/// accepts each of them.
pub const PUBLISHED_VERSIONS: [&str; 8] = [
    "2025-12-08",
    "2025-10-27",
    "2023-01-05",
    "2022-09-01",
    "2021-08-18",
    "2021-07-05",
    "2021-02-21",
    "2020-05-18",
];

/// The versions the gateway's client is built and tested for. Between them only 2025-10-27
/// changes what the client sends or reads (field keys are no longer inflected, and `included` is
/// empty by default); the others' breaking changes touch files, graph queries, reports and
/// documents, which the client never uses. Older versions are refused rather than guessed at.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-12-08", "2025-10-27", "2023-01-05"];

/// The first version that takes and returns inquiry field keys exactly as the template spells
/// them; before it, Persona inflected them like every other key.
pub const FIELD_KEYS_VERBATIM_SINCE: &str = "2025-10-27";

/// Whether `version` (a `YYYY-MM-DD` Persona version) leaves field keys as the template has them.
pub fn field_keys_verbatim(version: &str) -> bool {
    version >= FIELD_KEYS_VERBATIM_SINCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_keys_are_verbatim_from_2025_10_27() {
        assert!(field_keys_verbatim("2025-10-27"));
        assert!(field_keys_verbatim("2025-12-08"));
        assert!(!field_keys_verbatim("2023-01-05"));
    }
}
