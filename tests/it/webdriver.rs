//! A small WebDriver client for browser tests: headless Chromium driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`), spoken to over plain HTTP on loopback with
//! `reqwest` and `serde_json`. Test code: every call panics with the WebDriver error, the command
//! and the page's URL instead of returning errors.
//!
//! Without a browser the tests skip (`Browser::start` returns `None` and says so on stderr), unless
//! `CCPAYOUT_BROWSER_TESTS=required` (as `.ci/run` sets) makes that a failure.
//!
//! The browser's console — `console.*` calls, CSP violations, failed loads — is read with
//! [`Browser::browser_log`], chromedriver's legacy `POST /session/{id}/se/log` (still there in
//! chromedriver 148; the W3C protocol has no log command). Reading it empties it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

/// How long `find` waits for its element.
const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the waiting helpers look again.
const POLL: Duration = Duration::from_millis(50);
/// The key under which WebDriver gives an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const SKIP_MESSAGE: &str = "browser test skipped: no chromedriver/chromium (apt install chromium chromium-driver, \
                            or set CCPAYOUT_BROWSER_TESTS=required to make this a failure)";

/// The folder screenshots go to: `target/test-screenshots/` of this package, created if missing.
pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A headless Chromium in a WebDriver session of its own chromedriver, with its own temporary
/// profile. Dropping it ends the session, kills chromedriver and everything it started, and removes
/// the profile.
pub(crate) struct Browser {
    wire: Wire,
    session_id: String,
    driver: Driver,
}

/// An element of the page, as WebDriver references it. It goes stale when the page changes.
#[derive(Clone, Debug)]
pub(crate) struct Element {
    wire: Wire,
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (with a note on stderr) when
    /// either program is missing, unless `CCPAYOUT_BROWSER_TESTS=required`, which panics instead.
    pub(crate) async fn start() -> Option<Browser> {
        let (Some(chromedriver), Some(chromium)) = (find_chromedriver(), find_chromium()) else {
            if std::env::var("CCPAYOUT_BROWSER_TESTS").as_deref() == Ok("required") {
                panic!(
                    "CCPAYOUT_BROWSER_TESTS=required but no chromedriver/chromium was found: install them with \
                     `apt install chromium chromium-driver` (.ci/run does), or point CCPAYOUT_CHROMEDRIVER and \
                     CCPAYOUT_CHROMIUM at them"
                );
            }
            eprintln!("{SKIP_MESSAGE}");
            return None;
        };
        ccpayout::api::ensure_crypto_provider();

        let dir = tempfile::Builder::new()
            .prefix("ccpayout-browser-")
            .tempdir()
            .expect("temporary folder");
        let profile = dir.path().join("profile");
        let log_path = dir.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).expect("chromedriver log file");
        let port = free_port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            // Its own process group, so that Drop can kill chromedriver with every Chromium
            // process it started, whatever state the session is in.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut driver = Driver {
            child,
            port,
            log_path,
            _dir: dir,
        };

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("HTTP client for chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        driver.wait_ready(&http, &base, Duration::from_secs(20)).await;

        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,900",
                            "--lang=en-US",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let reply = send(&http, Method::POST, &format!("{base}/session"), Some(capabilities)).await;
        let session_id = match reply {
            Ok(value) => value["sessionId"].as_str().map(str::to_owned).unwrap_or_else(|| {
                panic!(
                    "chromedriver created a session without an id: {value}\n{}",
                    driver.log_tail()
                )
            }),
            Err(e) => panic!(
                "chromedriver could not start {}: {e}\nchromedriver log:\n{}",
                chromium.display(),
                driver.log_tail()
            ),
        };
        let wire = Wire {
            http,
            session: Arc::from(format!("{base}/session/{session_id}")),
        };
        Some(Browser {
            wire,
            session_id,
            driver,
        })
    }

    /// Navigates to `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.wire.cmd(Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub(crate) async fn current_url(&self) -> String {
        string(self.wire.cmd(Method::GET, "/url", None).await, "current URL")
    }

    pub(crate) async fn title(&self) -> String {
        string(self.wire.cmd(Method::GET, "/title", None).await, "title")
    }

    pub(crate) async fn page_source(&self) -> String {
        string(self.wire.cmd(Method::GET, "/source", None).await, "page source")
    }

    /// The first element matching `css`, waiting up to 10 s for one to appear.
    pub(crate) async fn find(&self, css: &str) -> Element {
        self.wait_for(css, FIND_TIMEOUT).await
    }

    /// The first element matching `css` now, if any.
    pub(crate) async fn try_find(&self, css: &str) -> Option<Element> {
        self.wire.try_find("", css).await
    }

    /// Every element matching `css` now (none is fine).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.wire.cmd(Method::POST, "/elements", Some(by_css(css))).await;
        let Value::Array(found) = found else {
            panic!("WebDriver gave no list of elements for {css:?}: {found}")
        };
        found
            .into_iter()
            .map(|reference| self.wire.element(reference))
            .collect()
    }

    /// The first element matching `css`, waiting up to `timeout` for one to appear.
    pub(crate) async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.try_find(css).await {
                return element;
            }
            if Instant::now() >= deadline {
                self.wire
                    .timed_out(&format!("an element matching {css:?}"), timeout)
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first element matching `css` once its text contains `needle`, waiting up to `timeout`.
    pub(crate) async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(element) = self.try_find(css).await {
                // The element may be replaced between finding it and reading it: look again.
                match element.wire.call(Method::GET, &element.path("/text"), None).await {
                    Ok(Value::String(text)) if text.contains(needle) => return element,
                    Ok(text) => last = Some(text),
                    Err(e) if e.error == "stale element reference" => {}
                    Err(e) => self.wire.failed("GET", &element.path("/text"), &e).await,
                }
            }
            if Instant::now() >= deadline {
                let seen = last.map_or("no such element".to_owned(), |text| format!("last text {text}"));
                self.wire
                    .timed_out(&format!("{css:?} to contain {needle:?} ({seen})"), timeout)
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls `ready` until it returns true; panics naming `what` after `timeout`. The predicate is
    /// an async closure, e.g. `async || browser.title().await == "Done"` (a synchronous check is
    /// just an async closure that does not await).
    pub(crate) async fn wait_until<F>(&self, what: &str, timeout: Duration, mut ready: F)
    where
        F: AsyncFnMut() -> bool,
    {
        let deadline = Instant::now() + timeout;
        while !ready().await {
            if Instant::now() >= deadline {
                self.wire.timed_out(what, timeout).await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` as a function body in the page (`arguments[i]` are `args`; pass an element as
    /// [`Element::reference`]) and gives its return value.
    pub(crate) async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.wire
            .cmd(
                Method::POST,
                "/execute/sync",
                Some(json!({ "script": script, "args": args })),
            )
            .await
    }

    /// Writes a PNG of the viewport to `path`, creating its folders.
    pub(crate) async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self
            .wire
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot failed: {e}"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Sets the outer window size (the viewport is the window less the height of the browser's
    /// toolbars, which headless Chromium still counts: 900 high gives a viewport of about 761).
    pub(crate) async fn set_window_size(&self, width: u32, height: u32) {
        self.wire
            .cmd(
                Method::POST,
                "/window/rect",
                Some(json!({ "width": width, "height": height })),
            )
            .await;
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light), through chromedriver's
    /// DevTools passthrough (`Emulation.setEmulatedMedia`).
    pub(crate) async fn prefer_color_scheme(&self, scheme: &str) {
        self.wire
            .cmd(
                Method::POST,
                "/goog/cdp/execute",
                Some(json!({
                    "cmd": "Emulation.setEmulatedMedia",
                    "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] }
                })),
            )
            .await;
    }

    /// The cookies visible to the current page, as WebDriver gives them (`name`, `value`, `path`…).
    pub(crate) async fn cookies(&self) -> Vec<Value> {
        list(self.wire.cmd(Method::GET, "/cookie", None).await, "cookies")
    }

    pub(crate) async fn delete_cookies(&self) {
        self.wire.cmd(Method::DELETE, "/cookie", None).await;
    }

    /// The browser console since the last call (reading empties it): entries such as
    /// `{"level": "SEVERE", "source": "security", "message": "http://… 0 Executing inline script
    /// violates the following Content Security Policy directive …", "timestamp": …}` or
    /// `{"level": "INFO", "source": "console-api", "message": "http://…/app.js 4:8 \"text\""}`.
    /// Read through chromedriver's `POST /session/{id}/se/log` with `{"type": "browser"}`; should a
    /// later chromedriver drop it, a page can collect violations itself from a
    /// `securitypolicyviolation` listener in a script of its own (the self-test below does both).
    pub(crate) async fn browser_log(&self) -> Vec<Value> {
        let path = "/se/log";
        match self
            .wire
            .call(Method::POST, path, Some(json!({ "type": "browser" })))
            .await
        {
            Ok(entries) => list(entries, "browser log"),
            Err(e) if e.error == "unknown command" || e.error == "unknown method" => panic!(
                "this chromedriver has no browser log (POST /session/{{id}}{path} answered {e}); collect console \
                 messages in the page instead (a securitypolicyviolation listener for CSP reports)"
            ),
            Err(e) => self.wire.failed("POST", path, &e).await,
        }
    }

    pub(crate) async fn back(&self) {
        self.wire.cmd(Method::POST, "/back", Some(json!({}))).await;
    }

    pub(crate) async fn refresh(&self) {
        self.wire.cmd(Method::POST, "/refresh", Some(json!({}))).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort and blocking (Drop cannot await): ending the session lets Chromium close
        // cleanly; Driver's Drop then kills whatever is left.
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            self.session_id, self.driver.port
        );
        let address = SocketAddr::from(([127, 0, 0, 1], self.driver.port));
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            if stream.write_all(request.as_bytes()).is_ok() {
                read_reply(&mut stream);
            }
        }
    }
}

/// Reads one HTTP reply to its end: chromedriver says `Connection: close` but keeps the connection
/// open, so reading to the end of the stream would wait for the read timeout.
fn read_reply(stream: &mut TcpStream) {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        reply.extend_from_slice(&chunk[..n]);
        let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok());
        if length.is_none_or(|length| reply.len() >= end + 4 + length) {
            return;
        }
    }
}

impl Element {
    pub(crate) async fn click(&self) {
        self.wire.cmd(Method::POST, &self.path("/click"), Some(json!({}))).await;
    }

    /// Types `text` into the element.
    pub(crate) async fn send_keys(&self, text: &str) {
        self.wire
            .cmd(Method::POST, &self.path("/value"), Some(json!({ "text": text })))
            .await;
    }

    pub(crate) async fn clear(&self) {
        self.wire.cmd(Method::POST, &self.path("/clear"), Some(json!({}))).await;
    }

    /// The rendered text (what the user sees; empty when hidden).
    pub(crate) async fn text(&self) -> String {
        string(
            self.wire.cmd(Method::GET, &self.path("/text"), None).await,
            "element text",
        )
    }

    /// The HTML attribute `name` as written in the markup (`None` when absent). A form field's
    /// current value is `property("value")`.
    pub(crate) async fn attribute(&self, name: &str) -> Option<String> {
        match self
            .wire
            .cmd(Method::GET, &self.path(&format!("/attribute/{name}")), None)
            .await
        {
            Value::Null => None,
            Value::String(value) => Some(value),
            other => panic!("attribute {name:?} is not a string: {other}"),
        }
    }

    /// The DOM property `name` (`value`, `checked`, …) as JSON.
    pub(crate) async fn property(&self, name: &str) -> Value {
        self.wire
            .cmd(Method::GET, &self.path(&format!("/property/{name}")), None)
            .await
    }

    pub(crate) async fn is_displayed(&self) -> bool {
        match self.wire.cmd(Method::GET, &self.path("/displayed"), None).await {
            Value::Bool(shown) => shown,
            other => panic!("WebDriver gave no boolean for displayed: {other}"),
        }
    }

    /// The first element matching `css` inside this one, waiting up to 10 s for one to appear.
    pub(crate) async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            if let Some(element) = self.wire.try_find(&self.path(""), css).await {
                return element;
            }
            if Instant::now() >= deadline {
                self.wire
                    .timed_out(&format!("an element matching {css:?} inside {}", self.id), FIND_TIMEOUT)
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The element as a script argument for [`Browser::execute`].
    pub(crate) fn reference(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }
}

/// The session's address and an HTTP client for it: what both Browser and Element speak through.
#[derive(Clone)]
struct Wire {
    http: reqwest::Client,
    /// `http://127.0.0.1:{port}/session/{id}`
    session: Arc<str>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.session)
    }
}

/// A WebDriver error reply, or a transport failure (`error` says which).
#[derive(Debug)]
struct WireError {
    error: String,
    message: String,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl Wire {
    /// The command's `value`, or its error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, WireError> {
        send(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    /// The command's `value`; panics with the error and the page's URL.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let name = method.to_string();
        match self.call(method, path, body).await {
            Ok(value) => value,
            Err(e) => self.failed(&name, path, &e).await,
        }
    }

    async fn failed(&self, method: &str, path: &str, error: &WireError) -> ! {
        panic!(
            "WebDriver {method} {path} failed: {error} (page: {})",
            self.url_for_message().await
        )
    }

    /// Panics for a wait that ran out, with a screenshot of the moment to look at.
    async fn timed_out(&self, what: &str, timeout: Duration) -> ! {
        let words: Vec<String> = what
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let name: String = words.join("-").chars().take(60).collect();
        let path = screenshot_dir().join(format!("timeout-{name}.png"));
        let shot = match self.screenshot().await {
            Ok(png) => match std::fs::write(&path, png) {
                Ok(()) => format!("screenshot: {}", path.display()),
                Err(e) => format!("no screenshot: {e}"),
            },
            Err(e) => format!("no screenshot: {e}"),
        };
        panic!(
            "timed out after {:.1} s waiting for {what} (page: {}; {shot})",
            timeout.as_secs_f64(),
            self.url_for_message().await
        )
    }

    async fn url_for_message(&self) -> String {
        match self.call(Method::GET, "/url", None).await {
            Ok(Value::String(url)) => url,
            Ok(other) => other.to_string(),
            Err(e) => format!("unknown, {e}"),
        }
    }

    /// `under` is "" for the page or "/element/{id}" for inside an element.
    async fn try_find(&self, under: &str, css: &str) -> Option<Element> {
        let path = format!("{under}/element");
        match self.call(Method::POST, &path, Some(by_css(css))).await {
            Ok(reference) => Some(self.element(reference)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => self.failed("POST", &path, &e).await,
        }
    }

    fn element(&self, reference: Value) -> Element {
        match reference.get(ELEMENT_KEY).and_then(Value::as_str) {
            Some(id) => Element {
                wire: self.clone(),
                id: id.to_owned(),
            },
            None => panic!("WebDriver gave no element reference: {reference}"),
        }
    }

    async fn screenshot(&self) -> Result<Vec<u8>, WireError> {
        match self.call(Method::GET, "/screenshot", None).await? {
            Value::String(encoded) => base64_decode(&encoded).map_err(|e| WireError {
                error: "bad screenshot".to_owned(),
                message: e,
            }),
            other => Err(WireError {
                error: "bad screenshot".to_owned(),
                message: format!("not a string: {other}"),
            }),
        }
    }
}

/// One WebDriver request: the reply's `value`, or its `error` and `message`.
async fn send(http: &reqwest::Client, method: Method, url: &str, body: Option<Value>) -> Result<Value, WireError> {
    let transport = |e: String| WireError {
        error: "no reply from chromedriver".to_owned(),
        message: e,
    };
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string());
    }
    let reply = request.send().await.map_err(|e| transport(format!("{e:#}")))?;
    let status = reply.status();
    let bytes = reply.bytes().await.map_err(|e| transport(format!("{e:#}")))?;
    let mut parsed: Value = serde_json::from_slice(&bytes).map_err(|e| {
        transport(format!(
            "HTTP {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    let value = parsed.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let error = value["error"].as_str().unwrap_or("error").to_owned();
    let message = value["message"].as_str().unwrap_or_default();
    // chromedriver repeats the error at the start and appends "\n  (Session info: chrome=…)"; its
    // stack trace is addresses only.
    let message = message.split("\n  (Session info").next().unwrap_or_default();
    let message = message.strip_prefix(&format!("{error}: ")).unwrap_or(message).trim();
    Err(WireError {
        error,
        message: format!("{message} [HTTP {status}]"),
    })
}

/// chromedriver's process (in a process group of its own) and the folder with the profile and
/// chromedriver's log.
struct Driver {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Driver {
    async fn wait_ready(&mut self, http: &reqwest::Client, base: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromedriver exited at start ({status}):\n{}", self.log_tail());
            }
            let last = match send(http, Method::GET, &format!("{base}/status"), None).await {
                Ok(status) if status["ready"] == json!(true) => return,
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "chromedriver not ready after {timeout:?} ({last}):\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any Chromium process still running.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory effects; the group is the one chromedriver was started in.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

fn find_chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CCPAYOUT_CHROMEDRIVER") {
        return is_executable(Path::new(&path)).then(|| PathBuf::from(path));
    }
    on_path("chromedriver").or_else(|| {
        let path = Path::new("/usr/bin/chromedriver");
        is_executable(path).then(|| path.to_owned())
    })
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CCPAYOUT_CHROMIUM") {
        return is_executable(Path::new(&path)).then(|| PathBuf::from(path));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(on_path)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn string(value: Value, what: &str) -> String {
    match value {
        Value::String(text) => text,
        other => panic!("WebDriver gave no string for the {what}: {other}"),
    }
}

fn list(value: Value, what: &str) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("WebDriver gave no list for the {what}: {other}"),
    }
}

/// Standard base64 (RFC 4648 alphabet, `=` padding), as WebDriver encodes screenshots.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for (at, c) in text.bytes().enumerate() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not base64: byte {c:#04x} at {at}")),
        };
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    if count >= 6 {
        return Err("base64 of a wrong length".to_owned());
    }
    Ok(out)
}

#[test]
fn screenshot_base64_decodes_the_rfc_4648_vectors() {
    for (encoded, plain) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes(), "{encoded}");
    }
    assert_eq!(base64_decode("/+8=").unwrap(), [0xff, 0xef]);
    assert!(base64_decode("Zm9v!").is_err());
    assert!(base64_decode("Z").is_err());
}

// The self-test: a page with a strict Content-Security-Policy, an inline script it must block, a
// script of its own that it allows, and a form that posts back.

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'";
const TITLE: &str = "ccpayout webdriver self-test";
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ccpayout webdriver self-test</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js"></script>
</head>
<body>
<h1>Self-test</h1>
<form id="note-form" method="post" action="/">
<label for="note">Note</label>
<input id="note" name="note" type="text" value="draft">
<button id="send" type="submit">Send</button>
</form>
<p id="secret" class="hidden">not shown</p>
<script>document.title='pwned'</script>
</body>
</html>
"#;
/// Allowed by `script-src 'self'`: marks the page and records the violations it sees.
const APP_JS: &str = "window.cspViolations = [];\n\
document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective));\n\
document.addEventListener('DOMContentLoaded', () => {\n\
  document.body.dataset.script = 'ran';\n\
  console.log('app.js ran');\n\
});\n";
const STYLE_CSS: &str = ".hidden { display: none; }\n";

fn strict(content_type: &'static str, body: String) -> axum::response::Response {
    use axum::http::header;
    axum::response::Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::SET_COOKIE, "selftest=1; Path=/; SameSite=Strict")
        .body(axum::body::Body::from(body))
        .unwrap()
}

/// One `application/x-www-form-urlencoded` field.
fn form_field(body: &str, name: &str) -> Option<String> {
    let raw = body
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let mut bytes = Vec::new();
    let mut input = raw.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next()?, input.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

#[tokio::test]
async fn a_headless_browser_drives_a_local_page() {
    use axum::routing::get;

    let started = Instant::now();
    let Some(browser) = Browser::start().await else { return };
    let start_took = started.elapsed();

    let posted = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorded = posted.clone();
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { strict("text/html; charset=utf-8", PAGE.to_owned()) }).post(move |body: String| {
                let recorded = recorded.clone();
                async move {
                    let note = form_field(&body, "note").unwrap_or_else(|| format!("(no note in {body:?})"));
                    let shown = note.replace('&', "&amp;").replace('<', "&lt;");
                    recorded.lock().unwrap().push(note);
                    strict(
                        "text/html; charset=utf-8",
                        format!("<!doctype html><title>{TITLE}</title><p id=done>received: {shown}</p>"),
                    )
                }
            }),
        )
        .route(
            "/app.js",
            get(|| async { strict("text/javascript", APP_JS.to_owned()) }),
        )
        .route("/style.css", get(|| async { strict("text/css", STYLE_CSS.to_owned()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.current_url().await, format!("{base}/"));
    // The page's own script ran; the inline one was blocked by the policy.
    browser
        .wait_for("body[data-script='ran']", Duration::from_secs(5))
        .await;
    assert_eq!(browser.title().await, TITLE, "the inline script ran despite the CSP");
    assert!(browser.page_source().await.contains("<h1>Self-test</h1>"));

    // The violation, as the browser's console reports it and as the page sees it.
    let mut console = Vec::new();
    browser
        .wait_until(
            "the CSP violation in the browser log",
            Duration::from_secs(5),
            async || {
                console.extend(browser.browser_log().await);
                console.iter().any(|entry| {
                    entry["source"] == "security"
                        && entry["level"] == "SEVERE"
                        && entry["message"].as_str().is_some_and(|m| {
                            m.contains(
                                "Executing inline script violates the following Content Security Policy directive",
                            )
                        })
                })
            },
        )
        .await;
    assert!(
        console.iter().any(|entry| entry["source"] == "console-api"
            && entry["message"].as_str().is_some_and(|m| m.contains("app.js ran"))),
        "app.js's console.log is in the browser log: {console:#?}"
    );
    let seen = browser.execute("return window.cspViolations", vec![]).await;
    assert_eq!(
        seen,
        json!(["script-src-elem"]),
        "the page's securitypolicyviolation listener"
    );

    // Elements, attributes, properties, visibility, scripts with element arguments.
    assert!(browser.try_find("#nothing-like-this").await.is_none());
    assert_eq!(browser.find_all("form input, form button").await.len(), 2);
    assert!(browser.find_all("table").await.is_empty());
    let form = browser.find("#note-form").await;
    let input = form.find("input[name=note]").await;
    assert_eq!(input.attribute("value").await.as_deref(), Some("draft"));
    assert_eq!(input.attribute("data-nothing").await, None);
    assert!(input.is_displayed().await);
    assert!(
        !browser.find("#secret").await.is_displayed().await,
        "style.css hides it"
    );
    assert_eq!(browser.find("h1").await.text().await, "Self-test");
    let id = browser
        .execute(
            "return arguments[0].id + arguments[1]",
            vec![input.reference(), json!("!")],
        )
        .await;
    assert_eq!(id, json!("note!"));

    // Cookies.
    let cookies = browser.cookies().await;
    assert!(
        cookies.iter().any(|c| c["name"] == "selftest" && c["value"] == "1"),
        "{cookies:#?}"
    );
    browser.delete_cookies().await;
    assert!(browser.cookies().await.is_empty());

    // Typing and submitting reaches the server.
    input.clear().await;
    assert_eq!(input.property("value").await, json!(""));
    let note = "payout batch 42 & co, café";
    input.send_keys(note).await;
    assert_eq!(input.property("value").await, json!(note));
    browser.set_window_size(1024, 768).await;
    browser
        .screenshot(screenshot_dir().join("webdriver-selftest.png"))
        .await;
    form.find("#send").await.click().await;
    let done = browser
        .wait_for_text("#done", "received:", Duration::from_secs(10))
        .await;
    assert_eq!(done.text().await, format!("received: {note}"));
    assert_eq!(*posted.lock().unwrap(), [note]);

    // History.
    browser.back().await;
    browser.wait_for("#note-form", Duration::from_secs(5)).await;
    browser.refresh().await;
    browser
        .wait_for("body[data-script='ran']", Duration::from_secs(5))
        .await;
    assert_eq!(browser.title().await, TITLE);

    let png = std::fs::read(screenshot_dir().join("webdriver-selftest.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // IHDR: the width follows the 8-byte signature and the chunk's length and type.
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        1024,
        "the window's width"
    );

    drop(browser);
    server.abort();
    eprintln!(
        "browser started in {:.2} s; self-test took {:.2} s",
        start_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
