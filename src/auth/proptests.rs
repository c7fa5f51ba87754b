//! Property tests of the token's extraction and shape check: what `extract`, `bearer_token`,
//! `cookie_value` and `compact_jws` accept, over inputs no list of examples covers.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

/// A base64url segment, possibly empty.
const SEGMENT: &str = "[A-Za-z0-9_-]{0,40}";
/// A base64url segment that is not empty.
const FILLED: &str = "[A-Za-z0-9_-]{1,40}";

fn outside_the_shape(b: &u8) -> bool {
    !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' || *b == b'.')
}

fn header_map(name: http::HeaderName, value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
    headers
}

proptest! {
    #[test]
    fn three_base64url_segments_are_a_compact_jws(header in FILLED, payload in FILLED, signature in SEGMENT) {
        let token = format!("{header}.{payload}.{signature}");
        prop_assert_eq!(compact_jws(token.as_bytes()), Some(token.as_str()));
    }

    #[test]
    fn only_two_dots_make_a_compact_jws(segments in prop::collection::vec(FILLED, 1..8)) {
        let token = segments.join(".");
        prop_assert_eq!(compact_jws(token.as_bytes()).is_some(), segments.len() == 3);
    }

    #[test]
    fn an_empty_header_or_payload_is_refused(filled in FILLED, signature in SEGMENT, header_empty in any::<bool>()) {
        let token = if header_empty {
            format!(".{filled}.{signature}")
        } else {
            format!("{filled}..{signature}")
        };
        prop_assert_eq!(compact_jws(token.as_bytes()), None);
    }

    #[test]
    fn any_byte_outside_base64url_breaks_the_shape(
        header in FILLED,
        payload in FILLED,
        signature in SEGMENT,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>().prop_filter("outside base64url and the dot", outside_the_shape),
    ) {
        let mut token = format!("{header}.{payload}.{signature}").into_bytes();
        let at = at.index(token.len() + 1);
        token.insert(at, byte);
        prop_assert_eq!(compact_jws(&token), None);
    }

    #[test]
    fn the_shape_check_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        // Accepted only as the same bytes, read as text.
        if let Some(text) = compact_jws(&bytes) {
            prop_assert_eq!(text.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_case_and_the_spaces(
        token in "[A-Za-z0-9_.~+/=-]{1,80}",
        upper in prop::collection::vec(any::<bool>(), 6),
        before in 1usize..5,
        after in 0usize..5,
    ) {
        let scheme: String = "bearer"
            .chars()
            .zip(&upper)
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let value = format!("{scheme}{}{token}{}", " ".repeat(before), " ".repeat(after));
        prop_assert_eq!(bearer_token(value.as_bytes()), Some(token.as_bytes()));
        let headers = header_map(AUTHORIZATION, value.as_bytes());
        prop_assert_eq!(
            extract(&headers, &[TokenSource::Header], None),
            Ok((TokenSource::Header, token.as_bytes()))
        );
    }

    #[test]
    fn another_scheme_is_not_a_bearer_token(
        scheme in "[A-Za-z]{1,12}".prop_filter("not bearer", |s| !s.eq_ignore_ascii_case("bearer")),
        rest in "[ -~]{0,60}",
    ) {
        let value = format!("{scheme} {rest}");
        prop_assert_eq!(bearer_token(value.as_bytes()), None);
        let headers = header_map(AUTHORIZATION, value.as_bytes());
        prop_assert_eq!(extract(&headers, &[TokenSource::Header], None), Err(AuthError::Missing));
    }

    #[test]
    fn the_session_cookie_is_found_among_any_others(
        others in prop::collection::vec(("[a-z_]{1,10}", "[A-Za-z0-9.=-]{0,16}"), 0..8),
        at in any::<prop::sample::Index>(),
        token in "[A-Za-z0-9_.-]{1,60}",
        quoted in any::<bool>(),
    ) {
        let mut pairs: Vec<String> = others
            .iter()
            .filter(|(name, _)| name != "session")
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let value = if quoted { format!("\"{token}\"") } else { token.clone() };
        pairs.insert(at.index(pairs.len() + 1), format!("session={value}"));
        let headers = header_map(COOKIE, pairs.join("; ").as_bytes());
        prop_assert_eq!(
            extract(&headers, &[TokenSource::Cookie], Some("session")),
            Ok((TokenSource::Cookie, token.as_bytes()))
        );
    }

    #[test]
    fn extraction_takes_any_header_values(
        authorization in prop::collection::vec(any::<u8>(), 0..120),
        cookie in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut headers = header_map(AUTHORIZATION, &authorization);
        if let Ok(value) = HeaderValue::from_bytes(&cookie) {
            headers.insert(COOKIE, value);
        }
        match extract(&headers, &[TokenSource::Header, TokenSource::Cookie], Some("session")) {
            // Whatever is found is a part of what was sent, never empty.
            Ok((_, token)) => {
                prop_assert!(!token.is_empty());
                let inside = |sent: &[u8]| sent.windows(token.len()).any(|w| w == token);
                prop_assert!(inside(&authorization) || inside(&cookie));
            }
            Err(e) => prop_assert!(matches!(e, AuthError::Missing | AuthError::Malformed)),
        }
    }
}
