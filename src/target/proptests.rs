//! Property tests of the path normalizer: what no table of examples covers. The canonical form
//! is a fixed point, holds nothing a stack could read two ways, and every spelling of a gated
//! path an attacker can build from dot segments, repeated slashes and escapes either becomes
//! that path (so the gate sees it) or is refused.

use proptest::prelude::*;

use super::*;

fn strict(merge_slashes: bool) -> PathPolicy {
    PathPolicy {
        merge_slashes,
        allow: Vec::new(),
    }
}

fn relaxed() -> PathPolicy {
    PathPolicy {
        merge_slashes: true,
        allow: Relax::ALL.to_vec(),
    }
}

/// Paths of the characters that matter to the normalizer: separators, dots, escapes (good,
/// malformed, of unreserved and reserved bytes, of `%` itself), `;`, `\`, controls, non-ASCII.
fn raw_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%25".to_owned()),
        Just("%00".to_owned()),
        Just("%c3%a9".to_owned()),
        Just("%ff".to_owned()),
        Just("%4".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        Just("é".to_owned()),
        "[a-zA-Z0-9_~-]{1,4}",
        "%[0-9a-fA-F]{2}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
}

/// One spelling of `segment` with every character optionally percent-encoded, either case.
fn spelled(segment: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<bool>(), any::<bool>()), segment.len()).prop_map(move |choices| {
        segment
            .bytes()
            .zip(choices)
            .map(|(b, (encode, upper))| match (encode, upper) {
                (false, _) => (b as char).to_string(),
                (true, true) => format!("%{b:02X}"),
                (true, false) => format!("%{b:02x}"),
            })
            .collect()
    })
}

/// Noise that resolves to nothing: `./`, `x/../`, an encoded dot segment, an extra slash.
fn detour() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("./"), Just("x/../"), Just("%2e/"), Just("y/%2E%2e/"), Just("/")]
}

proptest! {
    #[test]
    fn the_canonical_form_is_a_fixed_point(path in raw_path(), merge in any::<bool>()) {
        for policy in [strict(merge), relaxed()] {
            if let Ok(canonical) = policy.canonical(&path) {
                let again = policy.canonical(&canonical);
                prop_assert!(
                    matches!(&again, Ok(Cow::Borrowed(p)) if *p == canonical.as_ref()),
                    "{path:?} -> {canonical:?} -> {again:?}"
                );
            }
        }
    }

    #[test]
    fn a_strict_canonical_path_holds_nothing_read_two_ways(path in raw_path(), merge in any::<bool>()) {
        let Ok(canonical) = strict(merge).canonical(&path) else { return Ok(()) };
        let c = canonical.as_ref();
        prop_assert!(c.starts_with('/'), "{c:?}");
        for bad in ["/./", "/../", "%2F", "%5C", "\\", ";"] {
            prop_assert!(!c.contains(bad), "{path:?} -> {c:?} holds {bad:?}");
        }
        prop_assert!(!c.ends_with("/.") && !c.ends_with("/.."), "{c:?}");
        prop_assert!(!c.bytes().any(|b| b.is_ascii_control()), "{c:?}");
        if merge {
            prop_assert!(!c.contains("//"), "{c:?}");
        }
        // Escapes left are of bytes that are not unreserved, in uppercase hex.
        for (i, _) in c.match_indices('%') {
            let byte = escape_at(c.as_bytes(), i);
            prop_assert!(byte.is_some_and(|b| !is_unreserved(b)), "{c:?} at {i}");
            prop_assert!(!c[i + 1..i + 3].bytes().any(|h| h.is_ascii_lowercase()), "{c:?}");
            prop_assert!(byte != Some(b'%') || !hex_pair_follows(c.as_bytes(), i + 3), "{c:?}: double encoding");
        }
    }

    #[test]
    fn every_spelling_of_a_gated_path_is_that_path_or_refused(
        first in detour(),
        walker in spelled("walker"),
        second in detour(),
        secret in spelled("secret"),
        merge in any::<bool>(),
    ) {
        let policy = strict(merge);
        let gate = PathPrefix::new("/walker/", &policy, false).expect("a canonical prefix");
        let path = format!("/{first}{walker}/{second}{secret}");
        match policy.canonical(&path) {
            Ok(canonical) => prop_assert!(
                gate.matches(&canonical) || (!merge && canonical.contains("//")),
                "{path:?} -> {canonical:?} escapes the gate"
            ),
            Err(e) => prop_assert!(false, "{path:?} refused: {e}"),
        }
    }

    #[test]
    fn any_text_is_normalized_or_refused_without_panicking(path in "\\PC{0,40}") {
        for policy in [strict(true), strict(false), relaxed()] {
            let _ = policy.canonical(&path);
            let _ = policy.canonical(&format!("/{path}"));
        }
    }
}
