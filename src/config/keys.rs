//! Public verification keys from PEM files: parsed once, here, when the config is loaded, so
//! `persona-gate check` reports a key file the gateway could not use and `auth` receives keys
//! ready to verify with.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// Parses a public PEM (SPKI, or PKCS#1 for RSA) as the family its algorithms name.
///
/// # Errors
/// The algorithms span several families or none that a public key can serve, or the PEM is not a
/// public key of that family.
pub(super) fn public_pem_key(pem: &[u8], algorithms: &[Algorithm]) -> Result<DecodingKey, String> {
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
}
