//! The `Persona-Signature` header: parsing it, dropping signature sets whose timestamp is outside
//! the tolerance, and checking the rest against the raw body with every configured secret.
//! Nothing here reads the clock or the request; the receiver passes both in, so the rules can be
//! tested exactly.
//!
//! The format (persona-api.md §5) is `t=<unix seconds>,v1=<lowercase hex HMAC-SHA256>`, with
//! several space-separated sets while a secret is being rotated. The MAC is computed over
//! `"<t>.<raw body>"` with the secret string as the key, and a delivery passes when any `v1`
//! matches any configured secret.

use std::time::Duration;

use aws_lc_rs::{constant_time, hmac};
use http::{HeaderName, HeaderValue};

use super::error::WebhookError;

pub const HEADER: HeaderName = HeaderName::from_static("persona-signature");

/// Bounds the HMAC work one delivery can ask for (signatures × secrets). Persona sends one set
/// per valid secret, so two in practice.
const MAX_SIGNATURES: usize = 8;

const SHA256_LEN: usize = 32;

/// A parsed header: each set's timestamp with the signatures made at that time.
#[derive(Debug)]
pub struct Signature {
    sets: Vec<SignedSet>,
}

#[derive(Debug)]
struct SignedSet {
    timestamp: u64,
    macs: Vec<[u8; SHA256_LEN]>,
}

impl Signature {
    /// # Errors
    /// `SignatureMissing` without a header, `SignatureMalformed` when it does not follow the
    /// format or carries more than [`MAX_SIGNATURES`] signatures.
    pub fn parse(header: Option<&HeaderValue>) -> Result<Signature, WebhookError> {
        let header = header.ok_or(WebhookError::SignatureMissing)?;
        let text = header
            .to_str()
            .map_err(|_| WebhookError::SignatureMalformed("not visible ASCII"))?;
        let sets = text
            .split_ascii_whitespace()
            .map(SignedSet::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if sets.is_empty() {
            return Err(WebhookError::SignatureMalformed("empty"));
        }
        if sets.iter().map(|s| s.macs.len()).sum::<usize>() > MAX_SIGNATURES {
            return Err(WebhookError::SignatureMalformed("too many signatures"));
        }
        Ok(Signature { sets })
    }

    /// Keeps the sets signed within `tolerance` of `now` (unix seconds), either way: a timestamp
    /// from the future is as suspect as an old one, and the clocks of Persona and the gateway are
    /// both expected to be synchronised.
    ///
    /// # Errors
    /// `TimestampOutOfTolerance` when no set is left.
    pub fn fresh(self, now: u64, tolerance: Duration) -> Result<Signature, WebhookError> {
        let sets: Vec<SignedSet> = self
            .sets
            .into_iter()
            .filter(|s| s.timestamp.abs_diff(now) <= tolerance.as_secs())
            .collect();
        if sets.is_empty() {
            return Err(WebhookError::TimestampOutOfTolerance(tolerance));
        }
        Ok(Signature { sets })
    }

    /// # Errors
    /// `SignatureMismatch` when no signature matches `body` under any of `keys`.
    pub fn verify(&self, body: &[u8], keys: &[hmac::Key]) -> Result<(), WebhookError> {
        for set in &self.sets {
            for key in keys {
                let expected = mac(key, set.timestamp, body);
                // Constant-time, so the comparison does not tell an attacker how many leading
                // bytes of a forged signature were right.
                let matched = set
                    .macs
                    .iter()
                    .any(|given| constant_time::verify_slices_are_equal(expected.as_ref(), given).is_ok());
                if matched {
                    return Ok(());
                }
            }
        }
        Err(WebhookError::SignatureMismatch)
    }
}

impl SignedSet {
    /// One `t=..,v1=..` set. Keys other than `t` and `v1` are skipped, so a future signature
    /// scheme sent alongside `v1` does not break verification.
    fn parse(text: &str) -> Result<SignedSet, WebhookError> {
        let mut timestamp = None;
        let mut macs = Vec::new();
        for pair in text.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or(WebhookError::SignatureMalformed("expected key=value pairs"))?;
            match key {
                "t" if timestamp.is_some() => return Err(WebhookError::SignatureMalformed("repeated t")),
                "t" => {
                    let t = value
                        .parse::<u64>()
                        .map_err(|_| WebhookError::SignatureMalformed("t is not unix seconds"))?;
                    timestamp = Some(t);
                }
                "v1" => {
                    macs.push(decode_hex(value).ok_or(WebhookError::SignatureMalformed("v1 is not a hex SHA-256"))?)
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(WebhookError::SignatureMalformed("a signature set has no t"))?;
        if macs.is_empty() {
            return Err(WebhookError::SignatureMalformed("a signature set has no v1"));
        }
        Ok(SignedSet { timestamp, macs })
    }
}

/// The HMAC Persona computes, fed in pieces so the body is never copied.
fn mac(key: &hmac::Key, timestamp: u64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// Exactly 64 hex digits; Persona sends lowercase, uppercase is accepted too.
fn decode_hex(text: &str) -> Option<[u8; SHA256_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != SHA256_LEN * 2 {
        return None;
    }
    let mut out = [0u8; SHA256_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn key(secret: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
    }

    fn sign(secret: &str, t: u64, body: &str) -> String {
        let tag = hmac::sign(&key(secret), format!("{t}.{body}").as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn check(header: &str, body: &str, secrets: &[&str]) -> Result<(), WebhookError> {
        let value = HeaderValue::from_str(header).expect("header value");
        let keys: Vec<_> = secrets.iter().map(|s| key(s)).collect();
        Signature::parse(Some(&value))?
            .fresh(NOW, TOLERANCE)?
            .verify(body.as_bytes(), &keys)
    }

    #[test]
    fn a_correct_signature_passes() {
        let header = format!("t={NOW},v1={}", sign("wbhsec_a", NOW, "{}"));
        assert!(check(&header, "{}", &["wbhsec_a"]).is_ok());
    }

    #[test]
    fn the_message_is_timestamp_dot_body() {
        // Known answer, computed independently (Python's hmac): key "wbhsec_test",
        // message "1700000000.{\"a\":1}".
        let header = format!("t={NOW},v1=5125d9de9279d564db197b70a6c699dd005beb53dc22371dcaf347ac390940d7");
        assert!(check(&header, "{\"a\":1}", &["wbhsec_test"]).is_ok());
        let upper = header.to_uppercase().replace("T=", "t=").replace("V1=", "v1=");
        assert!(check(&upper, "{\"a\":1}", &["wbhsec_test"]).is_ok());
    }

    #[test]
    fn tampered_body_and_wrong_secret_fail() {
        let header = format!("t={NOW},v1={}", sign("wbhsec_a", NOW, "{}"));
        assert!(matches!(
            check(&header, "{ }", &["wbhsec_a"]),
            Err(WebhookError::SignatureMismatch)
        ));
        assert!(matches!(
            check(&header, "{}", &["wbhsec_b"]),
            Err(WebhookError::SignatureMismatch)
        ));
    }

    #[test]
    fn the_timestamp_is_part_of_the_signature() {
        let header = format!("t={},v1={}", NOW - 1, sign("wbhsec_a", NOW, "{}"));
        assert!(matches!(
            check(&header, "{}", &["wbhsec_a"]),
            Err(WebhookError::SignatureMismatch)
        ));
    }

    #[test]
    fn any_set_and_any_secret_may_match() {
        let header = format!(
            "t={NOW},v1={} t={NOW},v1={}",
            sign("wbhsec_new", NOW, "{}"),
            sign("wbhsec_old", NOW, "{}")
        );
        assert!(check(&header, "{}", &["wbhsec_old"]).is_ok());
        assert!(check(&header, "{}", &["wbhsec_new"]).is_ok());
        assert!(check(&header, "{}", &["wbhsec_other", "wbhsec_old"]).is_ok());
        let two_in_one = format!("t={NOW},v1={},v1={}", "0".repeat(64), sign("wbhsec_a", NOW, "{}"));
        assert!(check(&two_in_one, "{}", &["wbhsec_a"]).is_ok());
    }

    #[test]
    fn timestamps_outside_tolerance_fail_both_ways() {
        for t in [NOW - 301, NOW + 301] {
            let header = format!("t={t},v1={}", sign("wbhsec_a", t, "{}"));
            assert!(matches!(
                check(&header, "{}", &["wbhsec_a"]),
                Err(WebhookError::TimestampOutOfTolerance(_))
            ));
        }
        for t in [NOW - 300, NOW + 300] {
            let header = format!("t={t},v1={}", sign("wbhsec_a", t, "{}"));
            assert!(check(&header, "{}", &["wbhsec_a"]).is_ok());
        }
    }

    #[test]
    fn a_stale_set_does_not_vouch_for_a_fresh_one() {
        let stale = NOW - 3600;
        let header = format!(
            "t={NOW},v1={} t={stale},v1={}",
            "0".repeat(64),
            sign("wbhsec_a", stale, "{}")
        );
        assert!(matches!(
            check(&header, "{}", &["wbhsec_a"]),
            Err(WebhookError::SignatureMismatch)
        ));
    }

    #[test]
    fn malformed_headers_are_named() {
        let good = sign("wbhsec_a", NOW, "{}");
        for header in [
            "",
            "garbage",
            "t=abc,v1=00",
            &format!("v1={good}"),
            &format!("t={NOW}"),
            &format!("t={NOW},t={NOW},v1={good}"),
            &format!("t={NOW},v1={}", &good[..62]),
            &format!("t={NOW},v1={}zz", &good[..62]),
            &format!("t=-{NOW},v1={good}"),
            &vec![format!("t={NOW},v1={good}"); 9].join(" "),
        ] {
            assert!(
                matches!(
                    check(header, "{}", &["wbhsec_a"]),
                    Err(WebhookError::SignatureMalformed(_))
                ),
                "{header:?} should be malformed"
            );
        }
        assert!(matches!(Signature::parse(None), Err(WebhookError::SignatureMissing)));
    }

    #[test]
    fn unknown_schemes_are_ignored() {
        let header = format!("t={NOW},v0=whatever,v1={}", sign("wbhsec_a", NOW, "{}"));
        assert!(check(&header, "{}", &["wbhsec_a"]).is_ok());
    }
}

/// Property tests: the rules above over generated secrets, timestamps, bodies and headers.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn key(secret: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
    }

    fn hex(tag: &hmac::Tag) -> String {
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).expect("visible ASCII")
    }

    const DAY: Duration = Duration::from_secs(86_400);

    proptest! {
        #[test]
        fn a_signature_made_as_persona_makes_it_verifies(
            secret in "[ -~]{1,64}",
            t in any::<u64>(),
            body in prop::collection::vec(any::<u8>(), 0..512),
            upper in any::<bool>(),
        ) {
            let mut v1 = hex(&mac(&key(&secret), t, &body));
            if upper {
                v1 = v1.to_uppercase();
            }
            let signature = Signature::parse(Some(&header(&format!("t={t},v1={v1}"))))
                .and_then(|s| s.fresh(t, DAY));
            prop_assert!(signature.is_ok());
            prop_assert!(signature.and_then(|s| s.verify(&body, &[key(&secret)])).is_ok());
        }

        #[test]
        fn any_changed_digit_of_the_signature_fails(
            secret in "[a-z0-9_]{1,32}",
            body in prop::collection::vec(any::<u8>(), 0..256),
            at in 0usize..64,
            digit in prop::sample::select(b"0123456789abcdef".to_vec()),
        ) {
            let t = 1_700_000_000;
            let mut v1 = hex(&mac(&key(&secret), t, &body)).into_bytes();
            prop_assume!(v1[at] != digit);
            v1[at] = digit;
            let text = format!("t={t},v1={}", String::from_utf8_lossy(&v1));
            let signature = Signature::parse(Some(&header(&text))).expect("well formed");
            prop_assert!(matches!(signature.verify(&body, &[key(&secret)]), Err(WebhookError::SignatureMismatch)));
        }

        #[test]
        fn any_changed_body_or_secret_fails(
            secret in "[a-z0-9_]{1,32}",
            other in "[a-z0-9_]{1,32}",
            body in prop::collection::vec(any::<u8>(), 1..256),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let t = 1_700_000_000;
            let text = format!("t={t},v1={}", hex(&mac(&key(&secret), t, &body)));
            let signature = Signature::parse(Some(&header(&text))).expect("well formed");
            let mut tampered = body.clone();
            let i = at.index(tampered.len());
            tampered[i] ^= flip;
            prop_assert!(matches!(signature.verify(&tampered, &[key(&secret)]), Err(WebhookError::SignatureMismatch)));
            if other != secret {
                prop_assert!(matches!(signature.verify(&body, &[key(&other)]), Err(WebhookError::SignatureMismatch)));
            }
        }

        #[test]
        fn freshness_is_the_distance_from_now_either_way(t in any::<u64>(), now in any::<u64>(), tolerance in any::<u32>()) {
            let text = format!("t={t},v1={}", "0".repeat(64));
            let signature = Signature::parse(Some(&header(&text))).expect("well formed");
            let fresh = signature.fresh(now, Duration::from_secs(u64::from(tolerance)));
            prop_assert_eq!(fresh.is_ok(), t.abs_diff(now) <= u64::from(tolerance));
        }

        #[test]
        fn only_the_fresh_sets_vouch(stale in 301u64..1_000_000, secret in "[a-z]{1,16}") {
            let now = 1_700_000_000;
            let old = now - stale;
            let body = b"{}";
            let text = format!(
                "t={now},v1={} t={old},v1={}",
                "0".repeat(64),
                hex(&mac(&key(&secret), old, body))
            );
            let fresh = Signature::parse(Some(&header(&text))).and_then(|s| s.fresh(now, Duration::from_secs(300)));
            prop_assert!(matches!(fresh.and_then(|s| s.verify(body, &[key(&secret)])), Err(WebhookError::SignatureMismatch)));
        }

        #[test]
        fn parsing_takes_any_header_value(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                match Signature::parse(Some(&value)) {
                    Ok(signature) => {
                        let macs: usize = signature.sets.iter().map(|s| s.macs.len()).sum();
                        prop_assert!((1..=MAX_SIGNATURES).contains(&macs));
                    }
                    Err(e) => prop_assert!(matches!(e, WebhookError::SignatureMalformed(_))),
                }
            }
        }

        #[test]
        fn parsing_takes_any_arrangement_of_the_format_s_pieces(
            pieces in prop::collection::vec(
                prop_oneof![
                    "t=[0-9]{0,22}",
                    "t=-[0-9]{1,3}",
                    "v1=[0-9a-fA-F]{62,66}",
                    "v[0-9]=[a-z0-9]{0,8}",
                    Just(",".to_owned()),
                    Just(" ".to_owned()),
                    Just("=".to_owned()),
                ],
                0..24,
            ),
        ) {
            let text = pieces.concat();
            if let Ok(value) = HeaderValue::from_str(&text) {
                match Signature::parse(Some(&value)) {
                    Ok(signature) => {
                        prop_assert!(signature.sets.iter().all(|s| !s.macs.is_empty()));
                        let macs: usize = signature.sets.iter().map(|s| s.macs.len()).sum();
                        prop_assert!(macs <= MAX_SIGNATURES);
                    }
                    Err(e) => prop_assert!(matches!(e, WebhookError::SignatureMalformed(_))),
                }
            }
        }

        #[test]
        fn more_than_eight_signatures_are_refused(n in 9usize..32, per_set in 1usize..4) {
            let set = format!("t=1700000000{}", format!(",v1={}", "a".repeat(64)).repeat(per_set));
            let text = vec![set; n.div_ceil(per_set)].join(" ");
            prop_assume!(n.div_ceil(per_set) * per_set > MAX_SIGNATURES);
            prop_assert!(matches!(
                Signature::parse(Some(&header(&text))),
                Err(WebhookError::SignatureMalformed(_))
            ));
        }
    }
}
