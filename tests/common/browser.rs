//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`): a
//! chromedriver process on a free loopback port, one session, and the few commands the
//! console's tests use (navigate, find, click, type, run a script, screenshots, the browser's
//! console log).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The WebDriver id of elements in W3C responses.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Start chromedriver and a Chromium window of `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver; scripts/test installs it)");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base,
            http,
            _profile: profile,
        };
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": args, "binary": "/usr/bin/chromium"},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r = browser.raw("POST", "/session", caps);
        let id = r["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r: Value = req.send().expect("talking to chromedriver").json().unwrap();
        r["value"].clone()
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let v = self.raw(method, path, body);
        match v.get("error") {
            Some(e) => Err(format!("{e}: {}", v["message"])),
            None => Ok(v),
        }
    }

    /// Open `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).unwrap();
    }

    /// Run `script` (a function body; `arguments` are `args`) and return its value.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The text of the first element matching `css`, waiting up to 10 s for one whose text
    /// satisfies `ok`.
    pub fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let t = self.eval(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                json!([css]),
            );
            if let Some(t) = t.as_str() {
                if ok(t) {
                    return t.to_string();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "`{css}` never showed the expected text; it shows {t}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until `script` returns true (10 s at most); how long that took.
    pub fn wait_for(&self, what: &str, script: &str, args: Value) -> Duration {
        let started = Instant::now();
        loop {
            if self.eval(script, args.clone()) == json!(true) {
                return started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(10) {
                let page = self.eval("return document.body.innerText.slice(0, 2000)", json!([]));
                panic!(
                    "timed out waiting for {what}; the page shows:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            match self.cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            ) {
                Ok(v) => {
                    return v[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("not an element reference: {v}"))
                        .to_string()
                }
                Err(e) => assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no element `{css}`: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Click the first element matching `css` (waiting for it to exist and be enabled).
    pub fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let id = self.find(css);
            match self.cmd("POST", &format!("/element/{id}/click"), json!({})) {
                Ok(_) => return,
                Err(e) => assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "cannot click `{css}`: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replace the value of the input or text area matching `css` with `text`.
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), json!({}))
            .unwrap();
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .unwrap();
    }

    /// Save a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", json!({})).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Resize the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .unwrap();
    }

    /// The browser console's entries since the last call (level, message).
    pub fn console_log(&self) -> Vec<(String, String)> {
        let v = self
            .cmd("POST", "/se/log", json!({"type": "browser"}))
            .unwrap_or(Value::Array(vec![]));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
