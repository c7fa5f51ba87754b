//! A small W3C WebDriver client over reqwest, driving Debian's chromium through chromedriver.
//! Only what the browser test uses: sessions, navigation, elements, script, screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::free_port;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `None` (after a loud message) when chromium or chromedriver is missing on a developer's
/// machine; a panic when `CI=true`, where a skipped browser test would hide a broken install.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("chromium"), find("chromedriver")) {
        (Some(browser), Some(driver)) => Some((browser, driver)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but chromium/chromedriver are missing: .ci/run must install chromium and chromium-driver")
        }
        _ => {
            eprintln!(
                "\n*** SKIPPING browser test: chromium and chromedriver not found (apt-get install chromium chromium-driver) ***\n"
            );
            None
        }
    }
}

pub struct Driver {
    process: Child,
    http: reqwest::Client,
    base: String,
}

impl Driver {
    pub async fn start(driver: &Path) -> Driver {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("client");
        // Another test may take the free port before chromedriver binds it; then try another.
        for _ in 0..5 {
            let port = free_port();
            let mut process = Command::new(driver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let base = format!("http://127.0.0.1:{port}");
            if wait_ready(&http, &base, &mut process).await {
                return Driver { process, http, base };
            }
        }
        panic!("chromedriver could not bind any of five free ports");
    }

    pub async fn session(&self, browser: &Path, profile: &Path) -> Session<'_> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // The quick start serves the dev certificate; the browser is told to accept it as a
            // person would click through it.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1200,900", format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        // Chromium's start-up is the one step whose time we do not control: a cold disk cache can
        // make it miss chromedriver's deadline once. Three tries, each reported.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match self
                .try_call(reqwest::Method::POST, "/session", Some(caps.clone()))
                .await
            {
                Ok(value) => {
                    let id = value["sessionId"].as_str().expect("session id").to_owned();
                    return Session { driver: self, id };
                }
                Err(e) => {
                    eprintln!("chromium did not start: {e}");
                    failures.push(e);
                }
            }
        }
        panic!("chromium did not start three times: {failures:?}")
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(e) => panic!("webdriver {path}: {e}"),
        }
    }

    /// Like `call`, but hands WebDriver errors (e.g. a stale element) back for a retry.
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("webdriver request: {e}"))?;
        let status = response.status();
        let value: Value = response.json().await.expect("webdriver json");
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!("{status} {}", value["value"]["message"]))
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.driver
            .try_call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    /// Polls until `css` matches a displayed element, then returns its id. Elements the page
    /// replaces while we look (stale references) are simply looked up again.
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .try_call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({ "using": "css selector", "value": css })),
                )
                .await;
            if let Ok(value) = found {
                let id = value[ELEMENT_KEY].as_str().unwrap_or_default().to_owned();
                let shown = self
                    .try_call(reqwest::Method::GET, &format!("/element/{id}/displayed"), None)
                    .await;
                if shown == Ok(json!(true)) {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no visible element matches {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let id = self.wait_for(css).await;
            if self
                .try_call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})))
                .await
                .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "could not click {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element's text, or `None` if it went stale between lookup and read.
    async fn text(&self, css: &str) -> Option<String> {
        let id = self.wait_for(css).await;
        let text = self
            .try_call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .ok()?;
        Some(text.as_str().unwrap_or("").to_owned())
    }

    /// Polls until the text of `css` satisfies `check`, returning it.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.text(css).await.unwrap_or_default();
            if check(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "text of {css} never matched; last: {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64"))
            .expect("png");
        std::fs::write(path, png).expect("write screenshot");
    }

    pub async fn close(self) {
        self.call(reqwest::Method::DELETE, "", None).await;
    }
}

/// True once chromedriver reports ready; false if it exited first (its port was taken).
async fn wait_ready(http: &reqwest::Client, base: &str, process: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = http.get(format!("{base}/status")).send().await.ok();
        if let Some(r) = ready
            && r.json::<Value>().await.ok().and_then(|v| v["value"]["ready"].as_bool()) == Some(true)
        {
            return true;
        }
        if process.try_wait().expect("chromedriver status").is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "chromedriver did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
