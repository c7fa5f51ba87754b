//! The request id: a sane client `X-Request-Id` kept, anything else replaced by a new one; one
//! value for the app's request, the response and the log line.

use http::{HeaderName, HeaderValue, Request};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client-supplied id is kept when it is short and plain, so a trace can cross the gateway;
/// anything else is replaced rather than copied into headers and logs. One value serves the app's
/// request, the response and the log line.
pub fn request_id<B>(req: &Request<B>) -> HeaderValue {
    match req.headers().get(REQUEST_ID) {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)) =>
        {
            id.clone()
        }
        _ => hex_id(rand::random()),
    }
}

/// 128 bits as 32 lowercase hex digits. Nearly every request makes one, so it is spelled out
/// rather than left to `format!`, whose machinery cost more than the rest of this phase.
fn hex_id(bits: u128) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bits.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    // Hex digits are always a valid header value; the fallback is never taken.
    HeaderValue::from_bytes(&digits).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The id as text, for logs and the webhook forwarder. Every id `request_id` makes or keeps is
/// plain ASCII.
pub fn id_text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::hex_id;

    #[test]
    fn hex_ids_are_32_lowercase_digits_of_the_bits() {
        for bits in [0, 1, 0xabc, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(hex_id(bits).to_str().ok(), Some(format!("{bits:032x}").as_str()));
        }
    }
}
