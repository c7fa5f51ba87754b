//! The header rules at the seam with the app: which client header names the app could mistake
//! for one the gateway sets, and the one text encoding of the values the gateway sets from
//! verified facts (the user id, claims, Persona's reference id).
//!
//! CGI, WSGI and Rack fold `-` and `_` into one variable (`HTTP_X_USER_ID`), so a client's
//! `X_User_Id` reads as the gateway's `X-User-Id`. Names are therefore compared with `_` read as
//! `-`, and what to do with any other underscore name is the operator's choice (nginx drops them).

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// What happens to a client header whose name has an underscore (`limits.headers_with_underscores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Underscores {
    /// Removed before the request reaches the app (nginx's default).
    Drop,
    /// The request is refused with 400 `header_underscore`.
    Reject,
    /// Passed to the app, unless it folds to a header the gateway sets.
    Allow,
}

/// The first client header with an underscore in its name, for `Underscores::Reject`.
pub fn underscore_name(headers: &HeaderMap) -> Option<&HeaderName> {
    headers.keys().find(|name| has_underscore(name))
}

pub fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().contains('_')
}

/// Removes every header the app must not receive from the client: the names in `reserved` in
/// any spelling, those in `owned` in a spelling other than their own (the gateway rewrites the
/// proper one itself, as with `X-Forwarded-For`), and, under `Drop`, any other underscore name.
pub fn strip_client_copies(headers: &mut HeaderMap, reserved: &[HeaderName], owned: &[HeaderName], rule: Underscores) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            if reserved.contains(name) {
                return true;
            }
            if !has_underscore(name) {
                return false;
            }
            let folded = name.as_str().replace('_', "-");
            let is = |list: &[HeaderName]| list.iter().any(|n| n.as_str() == folded);
            is(reserved) || is(owned) || rule == Underscores::Drop
        })
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// Bytes that are not visible ASCII, and `%`, are percent-encoded; visible ASCII stays as it is.
/// Spaces are encoded too: HTTP trims a field value's outer whitespace, so a raw one at either end
/// would not arrive.
const NOT_VISIBLE: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// A verified text (a user id, a claim, a reference id) as the header value the app receives:
/// reversible with any percent-decoder (`urllib.parse.unquote`, `decodeURIComponent`), and no two
/// texts share one. Plain ASCII ids without `%` or spaces arrive unchanged.
pub fn encode_text(text: &str) -> HeaderValue {
    let encoded: String = utf8_percent_encode(text, NOT_VISIBLE).collect();
    // Visible ASCII only, so always a valid header value; the fallback is never taken.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_encoded_reversibly_and_plain_ids_unchanged() {
        let cases = [
            ("usr_123", "usr_123"),
            ("alice@example.com", "alice@example.com"),
            ("José", "Jos%C3%A9"),
            ("山田", "%E5%B1%B1%E7%94%B0"),
            ("50%", "50%25"),
            ("a b", "a%20b"),
            ("x\r\ny: 1", "x%0D%0Ay:%201"),
            ("+/=?&#", "+/=?&#"),
        ];
        for (text, header) in cases {
            let value = encode_text(text);
            assert_eq!(value, header, "{text:?}");
            let decoded = percent_encoding::percent_decode(value.as_bytes())
                .decode_utf8()
                .expect("utf-8");
            assert_eq!(decoded, text, "{header} decodes back");
        }
        // `%` is encoded, so an id that looks like an escape cannot pass for another id.
        assert_ne!(encode_text("%41"), encode_text("A"));
    }

    #[test]
    fn reserved_names_are_stripped_in_every_spelling() {
        let reserved = [
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-verification-status"),
        ];
        let owned = [HeaderName::from_static("x-forwarded-for")];
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-user-id", "mallory"),
            ("x_user_id", "mallory"),
            ("x-verification_status", "approved"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.1"),
            ("x_custom", "1"),
            ("x-kept", "1"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let mut allowed = headers.clone();
        let names = |headers: &HeaderMap| {
            let mut names: Vec<String> = headers.keys().map(|n| n.as_str().to_owned()).collect();
            names.sort();
            names
        };
        strip_client_copies(&mut headers, &reserved, &owned, Underscores::Drop);
        assert_eq!(names(&headers), ["x-forwarded-for", "x-kept"]);
        strip_client_copies(&mut allowed, &reserved, &owned, Underscores::Allow);
        assert_eq!(names(&allowed), ["x-forwarded-for", "x-kept", "x_custom"]);
    }
}
