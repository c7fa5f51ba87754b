//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` the app receives,
//! so a request's line in the gateway's log joins the app's spans.
//!
//! A valid incoming `traceparent` keeps its trace id and flags, and its `tracestate` passes on; the
//! gateway is a hop of its own, so the app's parent is a fresh span id of the gateway's. An absent
//! or invalid one (or two of them) starts a new trace, marked sampled: an app whose tracer samples
//! by its parent (OpenTelemetry's default) would otherwise stop recording. The gateway exports no
//! spans itself; its log lines carry the trace id.

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The spec's bound on what a vendor must propagate of `tracestate`; beyond it, it is dropped.
const MAX_TRACESTATE: usize = 512;

/// Sampled: the one flag defined by version 00.
const SAMPLED: u8 = 0x01;

/// One request's place in its trace.
#[derive(Debug, Clone)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// The gateway's own span, the parent of whatever the app records.
    span_id: [u8; 8],
    flags: u8,
    tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// The request's context: the client's trace continued, or a new one.
    pub fn of(headers: &HeaderMap) -> TraceContext {
        let span_id = nonzero(rand::random::<u64>()).to_be_bytes();
        let mut parents = headers.get_all(TRACEPARENT).iter();
        let incoming = match (parents.next(), parents.next()) {
            (Some(one), None) => parse(one.as_bytes()),
            _ => None,
        };
        match incoming {
            Some((trace_id, flags)) => TraceContext {
                trace_id,
                span_id,
                flags,
                tracestate: tracestate(headers),
            },
            None => TraceContext {
                trace_id: nonzero(rand::random::<u128>()).to_be_bytes(),
                span_id,
                flags: SAMPLED,
                tracestate: None,
            },
        }
    }

    /// The trace id as 32 lowercase hex digits, for log lines.
    pub fn trace_id(&self) -> TraceId {
        let mut hex = [0u8; 32];
        write_hex(&mut hex, &self.trace_id);
        TraceId(hex)
    }

    /// Sets `traceparent` (and `tracestate`, when the client's trace had one) for the next hop,
    /// replacing whatever the client sent.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut value[3..35], &self.trace_id);
        write_hex(&mut value[36..52], &self.span_id);
        write_hex(&mut value[53..55], &[self.flags]);
        // Hex digits and dashes are always a valid header value.
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT, value);
        }
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }
}

/// A trace id's text, kept on the stack.
pub struct TraceId([u8; 32]);

impl TraceId {
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or("-")
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The trace id and flags of a valid `traceparent` (§3.2): `version-traceid-parentid-flags` in
/// lowercase hex, neither id all zeros, version `ff` invalid. A later version may append fields
/// after a dash, which are ignored; version 00 has exactly four.
fn parse(value: &[u8]) -> Option<([u8; 16], u8)> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff || (version == 0 && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    read_hex(&value[3..35], &mut trace_id)?;
    read_hex(&value[36..52], &mut parent_id)?;
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, flags))
}

/// The client's `tracestate`, its copies joined as the spec allows, when it is plain text of a
/// size worth passing on.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut joined = Vec::new();
    for value in headers.get_all(TRACESTATE) {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(value.as_bytes());
    }
    let plain = joined.iter().all(|b| (0x20..0x7f).contains(b));
    if joined.is_empty() || joined.len() > MAX_TRACESTATE || !plain {
        return None;
    }
    HeaderValue::from_bytes(&joined).ok()
}

fn nonzero<T: Default + PartialEq + From<u8>>(value: T) -> T {
    if value == T::default() { T::from(1) } else { value }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn read_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn forwarded(context: &TraceContext) -> HeaderMap {
        let mut out = HeaderMap::new();
        context.propagate(&mut out);
        out
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_the_gateways_span_as_parent() {
        let context = TraceContext::of(&headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, "congo=t61rcWkgMzE")]));
        assert_eq!(context.trace_id().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let out = forwarded(&context);
        let parent = out[TRACEPARENT].to_str().expect("text");
        assert_eq!(parent.len(), 55);
        assert!(parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(parent.ends_with("-01"));
        assert_ne!(&parent[36..52], "00f067aa0ba902b7", "the gateway is a hop of its own");
        assert_eq!(out[TRACESTATE], "congo=t61rcWkgMzE");
        // Flags pass as they came: an unsampled trace stays unsampled.
        let unsampled = TraceContext::of(&headers(&[(&TRACEPARENT, &VALID.replace("-01", "-00"))]));
        assert!(
            forwarded(&unsampled)[TRACEPARENT]
                .to_str()
                .expect("text")
                .ends_with("-00")
        );
        // A later version's extra fields are ignored.
        let future = format!("{}-extra", VALID.replacen("00", "cc", 1));
        let later = TraceContext::of(&headers(&[(&TRACEPARENT, &future)]));
        assert_eq!(later.trace_id().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn an_invalid_or_absent_traceparent_starts_a_sampled_trace() {
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in invalid {
            let context = TraceContext::of(&headers(&[(&TRACEPARENT, value), (&TRACESTATE, "a=b")]));
            assert_ne!(
                context.trace_id().as_str(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{value:?}"
            );
            let out = forwarded(&context);
            let parent = out[TRACEPARENT].to_str().expect("text");
            assert!(
                parse(parent.as_bytes()).is_some(),
                "a valid fresh one for {value:?}: {parent}"
            );
            assert!(parent.ends_with("-01"));
            assert!(out.get(TRACESTATE).is_none(), "no tracestate without a valid parent");
        }
        let two = TraceContext::of(&headers(&[(&TRACEPARENT, VALID), (&TRACEPARENT, VALID)]));
        assert_ne!(two.trace_id().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let none = TraceContext::of(&HeaderMap::new());
        assert_ne!(
            none.trace_id().as_str(),
            TraceContext::of(&HeaderMap::new()).trace_id().as_str()
        );
    }

    #[test]
    fn the_clients_own_headers_are_replaced_on_the_way_on() {
        let mut continued = headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, "a=1")]);
        TraceContext::of(&continued).propagate(&mut continued);
        assert_eq!(continued.get_all(TRACEPARENT).iter().count(), 1);
        assert_ne!(continued[TRACEPARENT], VALID);
        assert_eq!(continued[TRACESTATE], "a=1");
        // A tracestate without a valid parent, or beside two of them, does not reach the app.
        let two_parents = [(&TRACEPARENT, VALID), (&TRACEPARENT, VALID), (&TRACESTATE, "a=1")];
        for pairs in [
            &[(&TRACEPARENT, "junk"), (&TRACESTATE, "a=1")][..],
            &[(&TRACESTATE, "a=1")],
            &two_parents,
        ] {
            let mut map = headers(pairs);
            TraceContext::of(&map).propagate(&mut map);
            assert!(map.get(TRACESTATE).is_none(), "{pairs:?}");
            assert_eq!(map.get_all(TRACEPARENT).iter().count(), 1, "{pairs:?}");
        }
    }

    #[test]
    fn tracestate_copies_are_joined_and_oversized_ones_dropped() {
        let joined = TraceContext::of(&headers(&[
            (&TRACEPARENT, VALID),
            (&TRACESTATE, "a=1"),
            (&TRACESTATE, "b=2"),
        ]));
        assert_eq!(forwarded(&joined)[TRACESTATE], "a=1,b=2");
        let big = "k=".to_owned() + &"v".repeat(600);
        let dropped = TraceContext::of(&headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, &big)]));
        assert!(forwarded(&dropped).get(TRACESTATE).is_none());
    }
}
