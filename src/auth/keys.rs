//! Verification keys and which tokens each one may check. A [`VerifyKey`] pairs a jsonwebtoken
//! `DecodingKey` with its own algorithm allowlist, whether it came from `[[auth.keys]]` (an HS
//! secret or a public PEM file) or from the JWKS. Keeping the allowlist on the key is what stops
//! key confusion: an HS256 token is never offered to a public key, nor an RS256 token to a secret.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::config::{KeyConfig, KeyMaterial};

/// One key and the algorithms it may verify.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// Never empty, and every entry is of the key's own family.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether a token signed with `alg` may be checked against this key at all.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg) && self.key.family() == alg.family()
    }
}

/// Builds the static keys from `[[auth.keys]]`, in configured order.
///
/// # Errors
/// The index of the first key whose material cannot be used, and why.
pub fn static_keys(configs: &[KeyConfig]) -> Result<Vec<VerifyKey>, (usize, String)> {
    configs
        .iter()
        .enumerate()
        .map(|(index, config)| static_key(config).map_err(|message| (index, message)))
        .collect()
}

fn static_key(config: &KeyConfig) -> Result<VerifyKey, String> {
    let key = match &config.material {
        KeyMaterial::Secret(secret) => {
            if config.algorithms.iter().any(|a| a.family() != AlgorithmFamily::Hmac) {
                return Err("a secret only verifies HS256/HS384/HS512".to_owned());
            }
            DecodingKey::from_secret(secret.expose().as_bytes())
        }
        KeyMaterial::Public(key) => key.clone(),
    };
    Ok(VerifyKey {
        kid: config.kid.clone(),
        algorithms: config.algorithms.clone(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_allows_only_its_listed_algorithms_of_its_family() {
        let key = VerifyKey {
            kid: None,
            algorithms: vec![Algorithm::HS256],
            key: DecodingKey::from_secret(b"secret"),
        };
        assert!(key.allows(Algorithm::HS256));
        assert!(!key.allows(Algorithm::HS512));
        assert!(!key.allows(Algorithm::RS256));
    }
}
