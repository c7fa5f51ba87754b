//! Identity: which tokens the gateway accepts, from where, with which keys, and the exact 401 it
//! answers for everything else. A local IdP (hyper on port 0) serves the JWKS so rotation, outages
//! and floods of bogus key ids can be driven from the test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::common::*;

// === tokens and keys ===

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("tests/fixtures").join(name)).expect("fixture")
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).expect("rsa key")
}

fn rsa2_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa2-private.pem")).expect("rsa2 key")
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture("ec-private.pem")).expect("ec key")
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&fixture("ed25519-private.pem")).expect("ed key")
}

fn hs_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret)
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign token")
}

/// Claims that pass every check of [`strict_auth`] for `user`.
fn claims(user: &str) -> Value {
    json!({ "sub": user, "exp": now() + 3600, "iss": ISSUER, "aud": AUDIENCE, "email": format!("{user}@example.com") })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// An HS256 token over a payload written by hand (for JSON `json!` cannot express).
fn signed_payload(key: &EncodingKey, payload: &str) -> String {
    let message = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::HS256).expect("sign");
    format!("{message}.{signature}")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// === gateway configs ===

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "persona-gate";
const SECRET: &str = "auth-test-secret-0123456789abcdef0123";

/// A gateway config whose `[auth]` section is exactly `auth` (plus the identity headers).
fn config(upstream: SocketAddr, auth: &str) -> String {
    let identity = "[identity]\nuser_header = \"x-user-id\"\n[identity.claim_headers]\nemail = \"x-user-email\"\n";
    gateway_config(upstream, auth, identity)
}

/// Issuer, audience and size limits set, trusting [`SECRET`] for HS256.
fn strict_auth(extra: &str) -> String {
    format!(
        r#"
sources = ["header", "cookie"]
cookie = "session"
issuers = ["{ISSUER}"]
audiences = ["{AUDIENCE}"]
leeway = "5s"
max_token_bytes = 2048
max_user_id_len = 32
public_paths = ["/public/"]
{extra}

[[auth.keys]]
algorithms = ["HS256"]
secret = {{ value = "{SECRET}" }}
"#
    )
}

/// A gateway and one client for it: building a client per request costs more than the request.
struct Gateway {
    server: TestGateway,
    client: reqwest::Client,
}

impl Gateway {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.server.url(path))
    }
}

async fn gateway(auth: &str) -> Gateway {
    Gateway {
        server: TestGateway::start(&config(echo_upstream().await, auth)).await,
        client: client(),
    }
}

// === requests and verdicts ===

async fn get(gw: &Gateway, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = gw.get("/app/page");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

async fn with_bearer(gw: &Gateway, token: &str) -> reqwest::Response {
    get(gw, &[("authorization", &format!("Bearer {token}"))]).await
}

/// The user id the app saw for an accepted request.
async fn accepted_user(response: reqwest::Response) -> String {
    let echo = echoed(response).await;
    seen_header(&echo, "x-user-id")
        .expect("x-user-id reached the app")
        .to_owned()
}

/// A 401 with the stable code and the RFC 6750 challenge for a present-but-bad token.
async fn assert_rejected(response: reqwest::Response, code: &str, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii"));
    assert_eq!(challenge, Some("Bearer error=\"invalid_token\""), "{case}");
    let body: Value = response.json().await.expect("json error body");
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    assert!(body["error"]["message"].is_string(), "{case}");
}

// === where the token comes from ===

#[tokio::test]
async fn no_token_gets_a_bare_bearer_challenge() {
    let gw = gateway(&strict_auth("")).await;
    let response = get(&gw, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "token_missing");
    // A public path needs no token at all.
    let public = gw.get("/public/logo.png").send().await.expect("request");
    assert_eq!(public.status(), StatusCode::OK);
}

#[tokio::test]
async fn header_token_is_accepted_and_spoofed_identity_headers_are_replaced() {
    let gw = gateway(&strict_auth("")).await;
    let token = sign(
        Algorithm::HS256,
        &hs_key(SECRET.as_bytes()),
        None,
        &claims("usr_header"),
    );
    let response = get(
        &gw,
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-user-id", "usr_admin"),
            ("x-user-email", "admin@example.com"),
        ],
    )
    .await;
    let echo = echoed(response).await;
    assert_eq!(echo["headers"]["x-user-id"], json!(["usr_header"]));
    assert_eq!(echo["headers"]["x-user-email"], json!(["usr_header@example.com"]));

    // Without the claim, the client's copy of the claim header is still removed.
    let no_email = sign(
        Algorithm::HS256,
        &hs_key(SECRET.as_bytes()),
        None,
        &with(claims("usr_plain"), json!({ "email": null })),
    );
    let response = get(
        &gw,
        &[
            ("authorization", &format!("Bearer {no_email}")),
            ("x-user-email", "admin@example.com"),
        ],
    )
    .await;
    let echo = echoed(response).await;
    assert_eq!(seen_header(&echo, "x-user-id"), Some("usr_plain"));
    assert_eq!(seen_header(&echo, "x-user-email"), None);
}

#[tokio::test]
async fn cookie_token_is_accepted() {
    let gw = gateway(&strict_auth("")).await;
    let token = sign(
        Algorithm::HS256,
        &hs_key(SECRET.as_bytes()),
        None,
        &claims("usr_cookie"),
    );
    let response = get(&gw, &[("cookie", &format!("theme=dark; session={token}; lang=en"))]).await;
    assert_eq!(accepted_user(response).await, "usr_cookie");
}

#[tokio::test]
async fn the_configured_source_order_decides() {
    let key = hs_key(SECRET.as_bytes());
    let from_header = sign(Algorithm::HS256, &key, None, &claims("usr_h"));
    let from_cookie = sign(Algorithm::HS256, &key, None, &claims("usr_c"));
    let both = [
        ("authorization", format!("Bearer {from_header}")),
        ("cookie", format!("session={from_cookie}")),
    ];
    let both: Vec<(&str, &str)> = both.iter().map(|(n, v)| (*n, v.as_str())).collect();

    let header_first = gateway(&strict_auth("")).await;
    assert_eq!(accepted_user(get(&header_first, &both).await).await, "usr_h");
    // The first source carrying a token decides, even when that token is bad.
    let bad_header = [("authorization", "Bearer not.a-valid.token"), ("cookie", both[1].1)];
    assert_rejected(
        get(&header_first, &bad_header).await,
        "token_malformed",
        "bad header first",
    )
    .await;

    let cookie_first = gateway(&strict_auth("").replace(r#"["header", "cookie"]"#, r#"["cookie", "header"]"#)).await;
    assert_eq!(accepted_user(get(&cookie_first, &both).await).await, "usr_c");
    // A source not configured is ignored entirely.
    let header_only = gateway(&strict_auth("").replace(r#"["header", "cookie"]"#, r#"["header"]"#)).await;
    let response = get(&header_only, &[("cookie", both[1].1)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

// === what is rejected ===

#[tokio::test]
async fn every_unacceptable_token_gets_its_own_401() {
    let gw = gateway(&strict_auth("")).await;
    let key = hs_key(SECRET.as_bytes());
    let ok = |changes: Value| sign(Algorithm::HS256, &key, None, &with(claims("usr_1"), changes));
    let t = now();
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims("usr_1").to_string().as_bytes());
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", ok(json!({ "exp": t - 60 })), "token_expired"),
        ("exp missing", ok(json!({ "exp": null })), "token_malformed"),
        ("exp not a number", ok(json!({ "exp": "tomorrow" })), "token_malformed"),
        ("not yet valid", ok(json!({ "nbf": t + 60 })), "token_not_yet_valid"),
        (
            "wrong issuer",
            ok(json!({ "iss": "https://evil.test" })),
            "token_wrong_issuer",
        ),
        ("issuer missing", ok(json!({ "iss": null })), "token_wrong_issuer"),
        (
            "wrong audience",
            ok(json!({ "aud": "someone-else" })),
            "token_wrong_audience",
        ),
        ("audience missing", ok(json!({ "aud": null })), "token_wrong_audience"),
        (
            "bad signature",
            sign(
                Algorithm::HS256,
                &hs_key(b"another-secret-0123456789abcdef"),
                None,
                &claims("usr_1"),
            ),
            "token_bad_signature",
        ),
        (
            "tampered payload",
            {
                let token = ok(json!({}));
                let parts: Vec<&str> = token.split('.').collect();
                let forged = b64(with(claims("usr_admin"), json!({})).to_string().as_bytes());
                format!("{}.{forged}.{}", parts[0], parts[2])
            },
            "token_bad_signature",
        ),
        ("garbage", "definitely-not-a-jwt".to_owned(), "token_malformed"),
        (
            "two segments",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0".to_owned(),
            "token_malformed",
        ),
        (
            "header not json",
            format!("{}.{payload}.c2ln", b64(b"nope")),
            "token_malformed",
        ),
        (
            "alg none",
            format!("{none_header}.{payload}."),
            "token_algorithm_not_allowed",
        ),
        (
            "alg none with signature",
            format!("{none_header}.{payload}.c2ln"),
            "token_algorithm_not_allowed",
        ),
        (
            "alg not allowed",
            sign(Algorithm::HS512, &key, None, &claims("usr_1")),
            "token_algorithm_not_allowed",
        ),
        (
            "oversized",
            ok(json!({ "padding": "x".repeat(3000) })),
            "token_too_large",
        ),
        ("user id missing", ok(json!({ "sub": null })), "token_invalid_user_id"),
        (
            "user id not a string",
            ok(json!({ "sub": 12345 })),
            "token_invalid_user_id",
        ),
        ("user id empty", ok(json!({ "sub": "" })), "token_invalid_user_id"),
        (
            "user id too long",
            ok(json!({ "sub": "u".repeat(33) })),
            "token_invalid_user_id",
        ),
        (
            "user id with control char",
            ok(json!({ "sub": "usr\r\nx-admin: 1" })),
            "token_invalid_user_id",
        ),
        (
            "user id with NUL",
            ok(json!({ "sub": "usr\u{0}" })),
            "token_invalid_user_id",
        ),
        (
            "user id with a trailing space",
            ok(json!({ "sub": "usr_1 " })),
            "token_invalid_user_id",
        ),
        (
            "user id with a leading non-breaking space",
            ok(json!({ "sub": "\u{a0}usr_1" })),
            "token_invalid_user_id",
        ),
        (
            "user id with a C1 control",
            ok(json!({ "sub": "usr\u{85}1" })),
            "token_invalid_user_id",
        ),
        // RFC 7519's types for the registered claims, whatever jsonwebtoken itself lets through.
        ("issuer as an array", ok(json!({ "iss": [ISSUER] })), "token_malformed"),
        (
            "issued in the future",
            ok(json!({ "iat": t + 60 })),
            "token_issued_in_future",
        ),
        ("iat not a number", ok(json!({ "iat": "now" })), "token_malformed"),
        ("nbf not a number", ok(json!({ "nbf": "now" })), "token_malformed"),
        (
            "exp as a string of digits",
            ok(json!({ "exp": (t + 60).to_string() })),
            "token_malformed",
        ),
        (
            "a claim named twice",
            signed_payload(
                &key,
                &format!(
                    r#"{{"sub":"usr_1","exp":{},"iss":"{ISSUER}","aud":"{AUDIENCE}","email":"a@x.test","email":"b@x.test"}}"#,
                    t + 3600
                ),
            ),
            "token_malformed",
        ),
        (
            "the user claim named twice",
            signed_payload(
                &key,
                &format!(
                    r#"{{"sub":"usr_1","sub":"usr_admin","exp":{},"iss":"{ISSUER}","aud":"{AUDIENCE}"}}"#,
                    t + 3600
                ),
            ),
            "token_malformed",
        ),
    ];
    for (case, token, code) in &cases {
        assert_rejected(with_bearer(&gw, token).await, code, case).await;
    }
    // The same rules hold for a token arriving by cookie.
    let expired = ok(json!({ "exp": t - 60 }));
    assert_rejected(
        get(&gw, &[("cookie", &format!("session={expired}"))]).await,
        "token_expired",
        "cookie",
    )
    .await;
    // Two Authorization headers are ambiguous, not a choice for the gateway to make.
    let good = ok(json!({}));
    let twice = gw
        .get("/app/page")
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .expect("request");
    assert_rejected(twice, "token_malformed", "two authorization headers").await;
}

/// Ids are any Unicode text: the app gets each one in the documented encoding (every byte that
/// is not visible ASCII, and `%`, percent-encoded) and decodes exactly the id that was verified,
/// claim headers alike; plain ids arrive unchanged.
#[tokio::test]
async fn a_unicode_user_id_reaches_the_app_exactly_in_its_encoding() {
    let gw = gateway(&strict_auth("")).await;
    let key = hs_key(SECRET.as_bytes());
    let cases = [
        ("usr_plain-1", "usr_plain-1"),
        ("José García", "Jos%C3%A9%20Garc%C3%ADa"),
        ("山田太郎", "%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E"),
        ("100%real", "100%25real"),
        ("%41", "%2541"),
    ];
    for (user, header) in cases {
        let email = format!("{user}@例え.jp");
        let token = sign(
            Algorithm::HS256,
            &key,
            None,
            &with(claims(user), json!({ "email": email })),
        );
        let echo = echoed(with_bearer(&gw, &token).await).await;
        let seen = seen_header(&echo, "x-user-id").expect("x-user-id reached the app");
        assert_eq!(seen, header, "{user:?}");
        let decoded = percent_encoding::percent_decode_str(seen).decode_utf8().expect("utf-8");
        assert_eq!(decoded, user, "the app decodes the exact id");
        let seen_email = seen_header(&echo, "x-user-email").expect("x-user-email reached the app");
        let decoded = percent_encoding::percent_decode_str(seen_email)
            .decode_utf8()
            .expect("utf-8");
        assert_eq!(decoded, email, "claim headers use the same encoding");
    }
}

#[tokio::test]
async fn leeway_absorbs_small_clock_skew_only() {
    let gw = gateway(&strict_auth("")).await;
    let key = hs_key(SECRET.as_bytes());
    let t = now();
    let just_expired = sign(
        Algorithm::HS256,
        &key,
        None,
        &with(claims("usr_skew"), json!({ "exp": t - 2 })),
    );
    assert_eq!(accepted_user(with_bearer(&gw, &just_expired).await).await, "usr_skew");
    let almost_valid = sign(
        Algorithm::HS256,
        &key,
        None,
        &with(claims("usr_skew"), json!({ "nbf": t + 2 })),
    );
    assert_eq!(accepted_user(with_bearer(&gw, &almost_valid).await).await, "usr_skew");
    let well_expired = sign(
        Algorithm::HS256,
        &key,
        None,
        &with(claims("usr_skew"), json!({ "exp": t - 30 })),
    );
    assert_rejected(with_bearer(&gw, &well_expired).await, "token_expired", "past leeway").await;
}

#[tokio::test]
async fn a_custom_user_claim_is_used() {
    let gw = gateway(&strict_auth(r#"user_claim = "uid""#)).await;
    let key = hs_key(SECRET.as_bytes());
    let token = sign(
        Algorithm::HS256,
        &key,
        None,
        &with(claims("ignored"), json!({ "uid": "usr_uid" })),
    );
    assert_eq!(accepted_user(with_bearer(&gw, &token).await).await, "usr_uid");
    let without = sign(Algorithm::HS256, &key, None, &claims("usr_sub"));
    assert_rejected(with_bearer(&gw, &without).await, "token_invalid_user_id", "no uid").await;
}

// === static public keys and key confusion ===

fn pem_keys_auth() -> String {
    strict_auth(
        r#"
[[auth.keys]]
algorithms = ["RS256"]
public_key_pem = "tests/fixtures/rsa-public.pem"

[[auth.keys]]
algorithms = ["ES256"]
public_key_pem = "tests/fixtures/ec-public.pem"

[[auth.keys]]
algorithms = ["EdDSA"]
public_key_pem = "tests/fixtures/ed25519-public.pem"
"#,
    )
}

#[tokio::test]
async fn hs256_rs256_es256_and_eddsa_tokens_verify_with_their_keys() {
    let gw = gateway(&pem_keys_auth()).await;
    let cases = [
        (Algorithm::HS256, hs_key(SECRET.as_bytes()), "usr_hs"),
        (Algorithm::RS256, rsa_key(), "usr_rs"),
        (Algorithm::ES256, ec_key(), "usr_es"),
        (Algorithm::EdDSA, ed_key(), "usr_ed"),
    ];
    for (alg, key, user) in &cases {
        let token = sign(*alg, key, None, &claims(user));
        assert_eq!(accepted_user(with_bearer(&gw, &token).await).await, *user, "{alg:?}");
        // Served from the cache the second time; the answer must not change.
        assert_eq!(
            accepted_user(with_bearer(&gw, &token).await).await,
            *user,
            "{alg:?} cached"
        );
    }
    let wrong_rsa = sign(Algorithm::RS256, &rsa2_key(), None, &claims("usr_rs"));
    assert_rejected(
        with_bearer(&gw, &wrong_rsa).await,
        "token_bad_signature",
        "other rsa key",
    )
    .await;
    let ps256 = sign(Algorithm::PS256, &rsa_key(), None, &claims("usr_rs"));
    assert_rejected(
        with_bearer(&gw, &ps256).await,
        "token_algorithm_not_allowed",
        "PS256 not listed",
    )
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_bytes_is_rejected() {
    let public_pem = fixture("rsa-public.pem");
    let forged = sign(Algorithm::HS256, &hs_key(&public_pem), None, &claims("usr_admin"));
    // With an RSA key only, HS256 is not an algorithm any key allows.
    let rsa_only = gateway(
        r#"
sources = ["header"]

[[auth.keys]]
algorithms = ["RS256"]
public_key_pem = "tests/fixtures/rsa-public.pem"
"#,
    )
    .await;
    assert_rejected(
        with_bearer(&rsa_only, &forged).await,
        "token_algorithm_not_allowed",
        "rsa only",
    )
    .await;
    // With an HS key as well, the forgery is checked against the HS secret alone, and fails.
    let both = gateway(&pem_keys_auth()).await;
    assert_rejected(with_bearer(&both, &forged).await, "token_bad_signature", "hs and rsa").await;
    // The other way round: an RS256 token is never offered to the HS secret.
    let hs_only = gateway(&strict_auth("")).await;
    let rs = sign(Algorithm::RS256, &rsa_key(), None, &claims("usr_rs"));
    assert_rejected(
        with_bearer(&hs_only, &rs).await,
        "token_algorithm_not_allowed",
        "hs only",
    )
    .await;
}

#[tokio::test]
async fn a_key_bound_to_a_kid_checks_only_tokens_naming_it() {
    let gw = gateway(
        r#"
sources = ["header"]

[[auth.keys]]
kid = "rsa-1"
algorithms = ["RS256"]
public_key_pem = "tests/fixtures/rsa-public.pem"
"#,
    )
    .await;
    let plain = |user: &str| json!({ "sub": user, "exp": now() + 600 });
    let named = sign(Algorithm::RS256, &rsa_key(), Some("rsa-1"), &plain("usr_kid"));
    assert_eq!(accepted_user(with_bearer(&gw, &named).await).await, "usr_kid");
    let other = sign(Algorithm::RS256, &rsa_key(), Some("rsa-2"), &plain("usr_kid"));
    assert_rejected(with_bearer(&gw, &other).await, "token_unknown_key", "other kid").await;
    let unnamed = sign(Algorithm::RS256, &rsa_key(), None, &plain("usr_kid"));
    assert_rejected(with_bearer(&gw, &unnamed).await, "token_unknown_key", "no kid").await;
}

#[test]
fn check_reports_a_public_key_file_of_the_wrong_type() {
    let text = config(
        "127.0.0.1:9".parse().expect("addr"),
        r#"
sources = ["header"]

[[auth.keys]]
algorithms = ["RS256"]
public_key_pem = "tests/fixtures/ec-public.pem"
"#,
    );
    let err = persona_gate::config::parse(&text, &repo_path("test-config.toml")).expect_err("refused");
    let problems = err.problems().join("\n");
    assert!(problems.contains("auth.keys[0].public_key_pem"), "{problems}");
}

// === JWKS ===

/// A local IdP serving a JWKS the test can change, take down, and count fetches of.
struct Idp {
    addr: SocketAddr,
    state: Arc<IdpState>,
}

#[derive(Default)]
struct IdpState {
    jwks: Mutex<String>,
    /// The OpenID Connect discovery document served under `/realms/main/`.
    discovery: Mutex<String>,
    down: AtomicBool,
    fetches: AtomicUsize,
    discoveries: AtomicUsize,
}

impl Idp {
    async fn start(keys: &[(&str, &EncodingKey, Algorithm)]) -> Idp {
        let state = Arc::new(IdpState::default());
        let serving = state.clone();
        let addr = serve(move |req: http::Request<hyper::body::Incoming>| {
            let state = serving.clone();
            let discovery = req.uri().path().ends_with("/.well-known/openid-configuration");
            async move { Ok::<_, Infallible>(answer(&state, discovery)) }
        })
        .await;
        let idp = Idp { addr, state };
        idp.serve(keys);
        idp
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn serve(&self, keys: &[(&str, &EncodingKey, Algorithm)]) {
        let keys = keys
            .iter()
            .map(|(kid, key, alg)| {
                let mut jwk = Jwk::from_encoding_key(key, *alg).expect("public jwk");
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect();
        *self.state.jwks.lock().expect("lock") = serde_json::to_string(&JwkSet { keys }).expect("jwks json");
    }

    /// The issuer a discovery document served here would name.
    fn issuer(&self) -> String {
        format!("http://{}/realms/main", self.addr)
    }

    /// Serves a discovery document naming `issuer`, this IdP's JWKS and `algorithms`.
    fn discover(&self, issuer: &str, algorithms: &[&str]) {
        let document = json!({
            "issuer": issuer,
            "jwks_uri": self.url(),
            "id_token_signing_alg_values_supported": algorithms,
            "authorization_endpoint": format!("{}/auth", self.issuer()),
        });
        *self.state.discovery.lock().expect("lock") = document.to_string();
    }

    fn discoveries(&self) -> usize {
        self.state.discoveries.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

fn answer(state: &IdpState, discovery: bool) -> Response<Full<Bytes>> {
    let counter = if discovery { &state.discoveries } else { &state.fetches };
    counter.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Full::new(Bytes::from_static(b"down")))
            .expect("response");
    }
    let source = if discovery { &state.discovery } else { &state.jwks };
    let body = source.lock().expect("lock").clone();
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

fn jwks_auth(idp: &Idp, refresh: &str, floor: &str) -> String {
    format!(
        r#"
sources = ["header"]

[auth.jwks]
url = "{}"
algorithms = ["RS256", "ES256"]
refresh_interval = "{refresh}"
min_refresh_interval = "{floor}"
timeout = "2s"
"#,
        idp.url()
    )
}

fn jwt(key: &EncodingKey, alg: Algorithm, kid: &str, user: &str) -> String {
    sign(
        alg,
        key,
        Some(kid),
        &json!({ "sub": user, "exp": now() + 600, "jti": rand::random::<u64>() }),
    )
}

async fn ready(gw: &Gateway) -> StatusCode {
    gw.get("/readyz").send().await.expect("readyz").status()
}

#[tokio::test]
async fn jwks_new_kid_is_picked_up_and_a_removed_kid_is_rejected() {
    let (a, b) = (rsa_key(), ec_key());
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    let gw = gateway(&jwks_auth(&idp, "10m", "0ms")).await;
    let token_a = jwt(&a, Algorithm::RS256, "a", "usr_a");
    assert_eq!(accepted_user(with_bearer(&gw, &token_a).await).await, "usr_a");

    // The IdP adds key b; the first token naming it makes the gateway fetch the set again.
    idp.serve(&[("a", &a, Algorithm::RS256), ("b", &b, Algorithm::ES256)]);
    let token_b = jwt(&b, Algorithm::ES256, "b", "usr_b");
    assert_eq!(accepted_user(with_bearer(&gw, &token_b).await).await, "usr_b");

    // The IdP drops key a. Until the gateway refetches, a's token is still known (and cached).
    idp.serve(&[("b", &b, Algorithm::ES256)]);
    assert_eq!(accepted_user(with_bearer(&gw, &token_a).await).await, "usr_a");
    // Any unknown kid triggers a refetch; the changed set empties the cache, so a is gone.
    let bogus = jwt(&b, Algorithm::ES256, "no-such-kid", "usr_x");
    assert_rejected(with_bearer(&gw, &bogus).await, "token_unknown_key", "bogus kid").await;
    assert_rejected(with_bearer(&gw, &token_a).await, "token_unknown_key", "removed kid").await;
    assert_eq!(accepted_user(with_bearer(&gw, &token_b).await).await, "usr_b");
    // An HS256 token naming a JWKS kid is not an algorithm the JWKS (or anything) allows.
    let hs = sign(
        Algorithm::HS256,
        &hs_key(b"x"),
        Some("b"),
        &json!({ "sub": "u", "exp": now() + 60 }),
    );
    assert_rejected(
        with_bearer(&gw, &hs).await,
        "token_algorithm_not_allowed",
        "hs with jwks kid",
    )
    .await;
}

#[tokio::test]
async fn jwks_is_refreshed_on_its_own_schedule() {
    let (a, b) = (rsa_key(), rsa2_key());
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    // A long floor: requests cannot trigger fetches, only the 100ms schedule can.
    let gw = gateway(&jwks_auth(&idp, "100ms", "1h")).await;
    idp.serve(&[("b", &b, Algorithm::RS256)]);
    let token_b = jwt(&b, Algorithm::RS256, "b", "usr_b");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let response = with_bearer(&gw, &token_b).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "scheduled refresh never picked up kid b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token_a = jwt(&a, Algorithm::RS256, "a", "usr_a");
    assert_rejected(with_bearer(&gw, &token_a).await, "token_unknown_key", "a rotated out").await;
}

#[tokio::test]
async fn jwks_outage_keeps_the_last_good_key_set() {
    let a = rsa_key();
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    let gw = gateway(&jwks_auth(&idp, "10m", "0ms")).await;
    assert_eq!(
        accepted_user(with_bearer(&gw, &jwt(&a, Algorithm::RS256, "a", "usr_1")).await).await,
        "usr_1"
    );

    idp.set_down(true);
    let before = idp.fetches();
    let bogus = jwt(&a, Algorithm::RS256, "rotated?", "usr_x");
    assert_rejected(with_bearer(&gw, &bogus).await, "token_unknown_key", "unknown kid").await;
    assert!(idp.fetches() > before, "the unknown kid did not reach the IdP");
    // Fresh tokens (not cached) for the known key still verify, and the gateway stays ready.
    assert_eq!(
        accepted_user(with_bearer(&gw, &jwt(&a, Algorithm::RS256, "a", "usr_2")).await).await,
        "usr_2"
    );
    assert_eq!(ready(&gw).await, StatusCode::OK);
}

#[tokio::test]
async fn jwks_unreachable_at_start_is_unready_until_keys_arrive() {
    let a = rsa_key();
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    idp.set_down(true);
    let gw = gateway(&jwks_auth(&idp, "10m", "0ms")).await;
    assert_eq!(ready(&gw).await, StatusCode::SERVICE_UNAVAILABLE);
    let token = jwt(&a, Algorithm::RS256, "a", "usr_1");
    assert_rejected(with_bearer(&gw, &token).await, "token_keys_unavailable", "no keys yet").await;

    idp.set_down(false);
    assert_eq!(accepted_user(with_bearer(&gw, &token).await).await, "usr_1");
    assert_eq!(ready(&gw).await, StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_bogus_kids_fetches_at_most_once_per_floor() {
    const FLOOR: Duration = Duration::from_millis(500);
    let a = rsa_key();
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    let started = Instant::now();
    let gw = gateway(&jwks_auth(&idp, "10m", "500ms")).await;
    assert_eq!(idp.fetches(), 1, "start-up fetch");

    let tokens: Vec<String> = (0..60)
        .map(|i| jwt(&a, Algorithm::RS256, &format!("bogus-{i}"), "usr_x"))
        .collect();
    let flood = || async {
        let responses = futures_util::future::join_all(tokens.iter().map(|t| with_bearer(&gw, t))).await;
        for response in responses {
            assert_rejected(response, "token_unknown_key", "bogus kid").await;
        }
    };
    // Fetches are at least FLOOR apart however many unknown kids arrive, so by now there can
    // have been one per FLOOR elapsed since start-up, plus the start-up fetch; without the floor
    // there would be one per request.
    let bound = |fetches: usize| {
        let allowed = 1 + started.elapsed().as_millis() / FLOOR.as_millis();
        assert!(
            fetches as u128 <= allowed,
            "{fetches} fetches, at most {allowed} allowed"
        );
    };
    flood().await;
    bound(idp.fetches());
    // Once the floor has passed, unknown kids do reach the IdP again (and concurrent ones share
    // the fetch).
    let before = idp.fetches();
    tokio::time::sleep(FLOOR + Duration::from_millis(50)).await;
    flood().await;
    assert!(idp.fetches() > before, "no refetch after the floor passed");
    bound(idp.fetches());
}

// === OpenID Connect discovery ===

fn oidc_auth(idp: &Idp, extra: &str) -> String {
    format!(
        r#"
sources = ["header"]
{extra}

[auth.oidc]
issuer = "{}"
refresh_interval = "10m"
min_refresh_interval = "0ms"
timeout = "2s"
"#,
        idp.issuer()
    )
}

/// A token from the IdP: signed by `key` under `kid`, naming `iss`.
fn idp_token(key: &EncodingKey, alg: Algorithm, kid: &str, user: &str, iss: &str) -> String {
    sign(
        alg,
        key,
        Some(kid),
        &json!({ "sub": user, "iss": iss, "exp": now() + 600, "jti": rand::random::<u64>() }),
    )
}

async fn wait_ready(gw: &Gateway, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready(gw).await != want {
        assert!(Instant::now() < deadline, "/readyz never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn oidc_tokens_of_the_issuer_verify_with_its_discovered_keys_and_algorithms() {
    let (a, ec) = (rsa_key(), ec_key());
    let idp = Idp::start(&[("a", &a, Algorithm::RS256), ("e", &ec, Algorithm::ES256)]).await;
    // The document allows RS256 only (and lists `none` and HS256, which are never taken).
    idp.discover(&idp.issuer(), &["none", "HS256", "RS256"]);
    let gw = gateway(&oidc_auth(&idp, "")).await;
    assert_eq!(ready(&gw).await, StatusCode::OK);
    let issuer = idp.issuer();
    let good = idp_token(&a, Algorithm::RS256, "a", "usr_oidc", &issuer);
    assert_eq!(accepted_user(with_bearer(&gw, &good).await).await, "usr_oidc");
    let cases = [
        (
            "another issuer",
            idp_token(&a, Algorithm::RS256, "a", "u", "https://evil.test"),
            "token_wrong_issuer",
        ),
        (
            "issuer with a trailing slash",
            idp_token(&a, Algorithm::RS256, "a", "u", &format!("{issuer}/")),
            "token_wrong_issuer",
        ),
        (
            "no issuer",
            sign(
                Algorithm::RS256,
                &a,
                Some("a"),
                &json!({ "sub": "u", "exp": now() + 600 }),
            ),
            "token_wrong_issuer",
        ),
        (
            "an algorithm the document does not list",
            idp_token(&ec, Algorithm::ES256, "e", "u", &issuer),
            "token_algorithm_not_allowed",
        ),
        (
            "HS256 under the issuer's name",
            idp_token(&hs_key(b"whatever-secret"), Algorithm::HS256, "a", "u", &issuer),
            "token_algorithm_not_allowed",
        ),
    ];
    for (case, token, code) in &cases {
        assert_rejected(with_bearer(&gw, token).await, code, case).await;
    }
}

#[tokio::test]
async fn oidc_key_rotation_is_picked_up_and_an_outage_keeps_the_last_good_keys() {
    let (a, b) = (rsa_key(), rsa2_key());
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    idp.discover(&idp.issuer(), &["RS256"]);
    let gw = gateway(&oidc_auth(&idp, "")).await;
    let issuer = idp.issuer();
    assert_eq!(
        accepted_user(with_bearer(&gw, &idp_token(&a, Algorithm::RS256, "a", "usr_a", &issuer)).await).await,
        "usr_a"
    );
    // The IdP rotates to key b: the first token naming it fetches the document and keys again.
    idp.serve(&[("b", &b, Algorithm::RS256)]);
    let discoveries = idp.discoveries();
    let token_b = idp_token(&b, Algorithm::RS256, "b", "usr_b", &issuer);
    assert_eq!(accepted_user(with_bearer(&gw, &token_b).await).await, "usr_b");
    assert!(
        idp.discoveries() > discoveries,
        "the document was fetched again before the keys"
    );
    // Down: the last good document and keys stay, and so does readiness.
    idp.set_down(true);
    let bogus = idp_token(&b, Algorithm::RS256, "rotated?", "usr_x", &issuer);
    assert_rejected(with_bearer(&gw, &bogus).await, "token_unknown_key", "unknown kid").await;
    let fresh_b = idp_token(&b, Algorithm::RS256, "b", "usr_b2", &issuer);
    assert_eq!(accepted_user(with_bearer(&gw, &fresh_b).await).await, "usr_b2");
    assert_eq!(ready(&gw).await, StatusCode::OK);
}

#[tokio::test]
async fn oidc_stands_beside_static_keys() {
    let a = rsa_key();
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    idp.discover(&idp.issuer(), &["RS256"]);
    let statics = format!("[[auth.keys]]\nalgorithms = [\"HS256\"]\nsecret = {{ value = \"{SECRET}\" }}\n");
    let text = oidc_auth(&idp, "").replace("\n[auth.oidc]", &format!("\n{statics}\n[auth.oidc]"));
    let gw = gateway(&text).await;
    let service = sign(
        Algorithm::HS256,
        &hs_key(SECRET.as_bytes()),
        None,
        &json!({ "sub": "svc_batch", "exp": now() + 600 }),
    );
    assert_eq!(accepted_user(with_bearer(&gw, &service).await).await, "svc_batch");
    let user = idp_token(&a, Algorithm::RS256, "a", "usr_idp", &idp.issuer());
    assert_eq!(accepted_user(with_bearer(&gw, &user).await).await, "usr_idp");
}

/// The IdP down at start: unready, with a log line saying why, until the IdP answers; and a
/// document naming another issuer is refused (OIDC Discovery §4.3), which keeps it unready. The
/// real binary, so its log is its own.
#[tokio::test]
async fn oidc_unreachable_or_of_another_issuer_is_unready_and_says_why() {
    let a = rsa_key();
    let idp = Idp::start(&[("a", &a, Algorithm::RS256)]).await;
    idp.discover("https://impostor.test/realms/main", &["RS256"]);
    idp.set_down(true);
    let upstream = echo_upstream().await;
    let file = ConfigFile::new(&config(upstream, &oidc_auth(&idp, "").replace("\"0ms\"", "\"100ms\"")));
    let mut gw = GatewayProcess::start(&file.path, "info").await;
    let (ready_url, app_url) = (gw.url("/readyz"), gw.url("/app"));
    let readyz = || async { client().get(&ready_url).send().await.expect("readyz").status() };
    assert_eq!(readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    gw.wait_for_log("oidc discovery failed").await;

    // Up, but the document names another issuer: still refused, and the reason is logged.
    idp.set_down(false);
    let line = gw.wait_for_log("is not the configured issuer").await;
    assert!(line.contains("impostor.test"), "{line}");
    assert_eq!(readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    let token = idp_token(&a, Algorithm::RS256, "a", "usr_1", &idp.issuer());
    let response = client()
        .get(&app_url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_rejected(response, "token_keys_unavailable", "no document yet").await;

    // The right document: ready on the next retry, and the issuer's tokens verify.
    idp.discover(&idp.issuer(), &["RS256"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while readyz().await != StatusCode::OK {
        assert!(Instant::now() < deadline, "never became ready:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = client()
        .get(&app_url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(accepted_user(response).await, "usr_1");
}

#[tokio::test]
async fn oidc_document_changes_are_picked_up_on_the_schedule() {
    let (a, b) = (rsa_key(), ec_key());
    let idp = Idp::start(&[("a", &a, Algorithm::RS256), ("b", &b, Algorithm::ES256)]).await;
    idp.discover(&idp.issuer(), &["RS256"]);
    // A long floor, so only the 100ms schedule refreshes.
    let text = oidc_auth(&idp, "")
        .replace("\"10m\"", "\"100ms\"")
        .replace("\"0ms\"", "\"1h\"");
    let gw = gateway(&text).await;
    wait_ready(&gw, StatusCode::OK).await;
    let es = idp_token(&b, Algorithm::ES256, "b", "usr_es", &idp.issuer());
    assert_rejected(
        with_bearer(&gw, &es).await,
        "token_algorithm_not_allowed",
        "ES256 not yet listed",
    )
    .await;
    idp.discover(&idp.issuer(), &["RS256", "ES256"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let es = idp_token(&b, Algorithm::ES256, "b", "usr_es", &idp.issuer());
        if with_bearer(&gw, &es).await.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the document's new algorithm was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
