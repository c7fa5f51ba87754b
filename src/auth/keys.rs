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
        KeyMaterial::PublicPem(pem) => public_pem_key(pem, &config.algorithms)?,
    };
    Ok(VerifyKey {
        kid: config.kid.clone(),
        algorithms: config.algorithms.clone(),
        key,
    })
}

/// Parses a public PEM (SPKI, or PKCS#1 for RSA) as the family its algorithms name. Also used by
/// config validation, so `persona-gate check` reports an unusable key file.
///
/// # Errors
/// The algorithms span several families or none that a public key can serve, or the PEM is not a
/// public key of that family.
pub fn public_pem_key(pem: &[u8], algorithms: &[Algorithm]) -> Result<DecodingKey, String> {
    let family = single_family(algorithms)?;
    let parsed = match family {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => return Err("a public key cannot verify HS* algorithms".to_owned()),
    };
    parsed.map_err(|e| format!("not a {} public key in PEM form: {e}", family_name(family)))
}

fn single_family(algorithms: &[Algorithm]) -> Result<AlgorithmFamily, String> {
    let Some(first) = algorithms.first() else {
        return Err("list at least one algorithm".to_owned());
    };
    let family = first.family();
    if algorithms.iter().any(|a| a.family() != family) {
        return Err("one public key serves one family: RS*/PS*, ES* or EdDSA".to_owned());
    }
    Ok(family)
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "HMAC",
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn each_family_parses_its_own_pem() {
        assert!(public_pem_key(&fixture("rsa-public.pem"), &[Algorithm::RS256, Algorithm::PS256]).is_ok());
        assert!(public_pem_key(&fixture("ec-public.pem"), &[Algorithm::ES256]).is_ok());
        assert!(public_pem_key(&fixture("ed25519-public.pem"), &[Algorithm::EdDSA]).is_ok());
    }

    #[test]
    fn a_pem_of_another_family_is_refused() {
        assert!(public_pem_key(&fixture("ec-public.pem"), &[Algorithm::RS256]).is_err());
        assert!(public_pem_key(&fixture("rsa-public.pem"), &[Algorithm::EdDSA]).is_err());
    }

    #[test]
    fn mixed_or_symmetric_allowlists_are_refused() {
        let pem = fixture("rsa-public.pem");
        assert!(public_pem_key(&pem, &[Algorithm::RS256, Algorithm::ES256]).is_err());
        assert!(public_pem_key(&pem, &[Algorithm::HS256]).is_err());
        assert!(public_pem_key(&pem, &[]).is_err());
    }

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
