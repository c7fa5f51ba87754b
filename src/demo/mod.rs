//! The built-in demo app: the "existing web app" of the quick start. It signs the user in (a
//! session cookie holding a JWT signed with a demo-only key), serves the onboarding page of
//! Persona's tutorial (with a second verification flow, the walker's payout details), a payout
//! page the gateway lets through only to verified walkers, and records the webhooks persona-gate
//! forwards to it. It knows nothing about Persona's API: that is the point of the sidecar.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::body::{Body, full, json_response};
use crate::config::DemoConfig;

const SIGN_IN_PAGE: &str = include_str!("sign-in.html");
const ONBOARDING_PAGE: &str = include_str!("onboarding.html");

/// What the demo needs to mint tokens the gateway will accept.
pub(crate) struct SessionSettings {
    pub cookie: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo.listen {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("demo.signing_key: {0}")]
    Key(jsonwebtoken::errors::Error),
}

/// The demo app, bound and not yet serving.
pub(crate) struct Demo {
    listener: TcpListener,
    app: Arc<App>,
}

struct App {
    config: DemoConfig,
    session: SessionSettings,
    key: EncodingKey,
    /// Webhooks received, newest last; bounded so a long-running demo cannot grow without end.
    webhooks: Mutex<Vec<Value>>,
}

const MAX_WEBHOOKS: usize = 200;

impl Demo {
    /// # Errors
    /// The listener cannot bind or the signing key is not an EC private key in PEM.
    pub async fn bind(config: &DemoConfig, session: SessionSettings) -> Result<Demo, DemoError> {
        let key = EncodingKey::from_ec_pem(config.signing_key.expose().as_bytes()).map_err(DemoError::Key)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| DemoError::Bind {
                addr: config.listen,
                source,
            })?;
        let app = Arc::new(App {
            config: config.clone(),
            session,
            key,
            webhooks: Mutex::new(Vec::new()),
        });
        Ok(Demo { listener, app })
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                let (io, _) = tokio::select! {
                    accepted = self.listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    () = &mut shutdown => break,
                };
                let app = self.app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), service)
                        .await;
                });
            }
        })
    }
}

impl App {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/demo/") => html(self.render(SIGN_IN_PAGE)),
            (&Method::GET, "/") => redirect("/onboarding"),
            (&Method::POST, "/demo/sign-in") => self.sign_in(&req),
            (&Method::GET, "/onboarding") => html(self.render(ONBOARDING_PAGE)),
            (&Method::GET, "/demo/webhooks") => self.webhooks(),
            (&Method::GET, "/walker/payouts") => payouts(&req),
            (&Method::POST, p) if p == self.config.webhook_path => self.record_webhook(req).await,
            _ => json_response(StatusCode::NOT_FOUND, &json!({ "error": "not found" })),
        }
    }

    fn render(&self, page: &str) -> String {
        let user = &self.config.user;
        let birthdate = human_date(&user.birthdate).unwrap_or_else(|| user.birthdate.clone());
        page.replace("{{persona_script}}", &escape(&self.config.persona_script))
            .replace("{{environment_id}}", &escape(&self.config.environment_id))
            .replace("{{name_first}}", &escape(&user.given_name))
            .replace(
                "{{full_name}}",
                &escape(&format!("{} {}", user.given_name, user.family_name)),
            )
            .replace("{{birthdate}}", &escape(&birthdate))
    }

    fn sign_in(&self, req: &Request<Incoming>) -> Response<Body> {
        let Ok(token) = self.mint() else {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": "could not sign the demo token" }),
            );
        };
        let secure = req.headers().get("x-forwarded-proto").is_some_and(|p| p == "https");
        let cookie = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.session.cookie,
            self.config.token_ttl.as_secs(),
            if secure { "; Secure" } else { "" }
        );
        let mut response = redirect("/onboarding");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(SET_COOKIE, value);
        }
        response
    }

    /// The session JWT: the user's id and the profile claims the gateway prefills Persona from.
    fn mint(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let user = &self.config.user;
        let mut claims = json!({
            "sub": user.id,
            "given_name": user.given_name,
            "family_name": user.family_name,
            "birthdate": user.birthdate,
            "iat": now,
            "exp": now + self.config.token_ttl.as_secs(),
        });
        if let Some(iss) = &self.session.issuer {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = &self.session.audience {
            claims["aud"] = json!(aud);
        }
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)
    }

    /// Keeps what the app would act on. Only requests persona-gate marked as verified count;
    /// the gateway strips that marker from every other request, so it cannot be forged.
    async fn record_webhook(&self, req: Request<Incoming>) -> Response<Body> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if header("x-persona-verified").as_deref() != Some("true") {
            return json_response(
                StatusCode::FORBIDDEN,
                &json!({ "error": "not verified by persona-gate" }),
            );
        }
        let event = json!({
            "name": header("x-persona-event-name"),
            "event_id": header("x-persona-event-id"),
            "inquiry_id": header("x-persona-inquiry-id"),
            "reference_id": header("x-persona-reference-id"),
        });
        // The body is the raw Persona event; the demo only checks that it arrived whole.
        let body_ok = req.into_body().collect().await.is_ok();
        if let Ok(mut hooks) = self.webhooks.lock() {
            if hooks.len() == MAX_WEBHOOKS {
                hooks.remove(0);
            }
            hooks.push(event);
        }
        let status = if body_ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        json_response(status, &json!({ "received": body_ok }))
    }

    fn webhooks(&self) -> Response<Body> {
        let hooks = self.webhooks.lock().map(|h| h.clone()).unwrap_or_default();
        json_response(StatusCode::OK, &Value::Array(hooks))
    }
}

/// The walker's payout account. The app writes no KYC code: the shipped config gates this path
/// (identity and payout verification both approved), and the gateway's header says the status.
fn payouts(req: &Request<Incoming>) -> Response<Body> {
    let status = req.headers().get("x-verification-status").and_then(|v| v.to_str().ok());
    json_response(
        StatusCode::OK,
        &json!({ "account": "•••• 4242", "verification_status": status }),
    )
}

fn redirect(location: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    response
}

fn html(page: String) -> Response<Body> {
    let mut response = Response::new(full(page));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// Config values end up in HTML and inline JS strings; escape what could break out of either.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            '\\' => "&#92;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// `1977-08-31` -> `August 31, 1977`, as the tutorial's page shows it.
fn human_date(iso: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut parts = iso.splitn(3, '-');
    let (year, month, day) = (
        parts.next()?,
        parts.next()?.parse::<usize>().ok()?,
        parts.next()?.parse::<u32>().ok()?,
    );
    Some(format!("{} {day}, {year}", MONTHS.get(month.checked_sub(1)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_like_the_tutorial() {
        assert_eq!(human_date("1977-08-31").as_deref(), Some("August 31, 1977"));
        assert_eq!(human_date("1977-13-01"), None);
        assert_eq!(human_date("nope"), None);
    }

    #[test]
    fn config_values_cannot_break_out_of_html() {
        assert_eq!(escape("</script><b>'x'"), "&lt;/script&gt;&lt;b&gt;&#39;x&#39;");
    }
}
