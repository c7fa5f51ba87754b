//! Mints JWTs for `scripts/bench-proxy.sh`: one token per line on stdout, for users
//! `bench-user-0` .. `bench-user-{N-1}`, valid for two hours. Not part of the gateway.
//!
//! Usage: `bench_tokens <HS256|RS256|ES256> <KEY> <KID> <N> [ISS AUD]`, where KEY is the HS256
//! secret itself or the path of a PKCS#8 private key PEM for RS256/ES256. With ISS and AUD the
//! tokens carry `iss`, `aud` and an `email`, as an identity provider's do
//! (`scripts/bench-gateway.sh`).

use std::process::ExitCode;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (alg, key, kid, count, audience) = match args.as_slice() {
        [alg, key, kid, count] => (alg, key, kid, count, None),
        [alg, key, kid, count, iss, aud] => (alg, key, kid, count, Some((iss.as_str(), aud.as_str()))),
        _ => {
            eprintln!("usage: bench_tokens <HS256|RS256|ES256> <KEY> <KID> <N> [ISS AUD]");
            return ExitCode::from(2);
        }
    };
    match mint(alg, key, kid, count, audience) {
        Ok(tokens) => {
            println!("{}", tokens.join("\n"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_tokens: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mint(
    alg: &str,
    key: &str,
    kid: &str,
    count: &str,
    audience: Option<(&str, &str)>,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let count: usize = count.parse()?;
    let (algorithm, encoding) = match alg {
        "HS256" => (Algorithm::HS256, EncodingKey::from_secret(key.as_bytes())),
        "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&std::fs::read(key)?)?),
        "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(&std::fs::read(key)?)?),
        other => return Err(format!("unsupported algorithm {other}").into()),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    (0..count)
        .map(|i| {
            let mut claims = json!({ "sub": format!("bench-user-{i}"), "iat": now, "exp": now + 7200 });
            if let Some((iss, aud)) = audience {
                claims["iss"] = json!(iss);
                claims["aud"] = json!(aud);
                claims["email"] = json!(format!("bench-user-{i}@example.com"));
            }
            Ok(jsonwebtoken::encode(&header, &claims, &encoding)?)
        })
        .collect()
}
