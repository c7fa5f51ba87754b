//! Reading an IdP's JSON documents (a JWKS, an OpenID Connect discovery document): whole, but
//! never larger than a key set can plausibly be.

/// A document larger than this is not one; refuse it rather than buffer it.
const MAX_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("response is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("response is not a JWKS: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the set holds no usable signing key")]
    NoUsableKeys,
}

/// An IdP's answer, read whole but never beyond [`MAX_BYTES`].
pub(super) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
