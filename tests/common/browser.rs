//! Debian's Chromium, headless, driven over WebDriver by its chromedriver: the viewer's
//! end-to-end tests see what an investigator's browser sees.
//!
//! Both programs are found on `PATH` (packages `chromium` and `chromium-driver`); when one
//! is missing the test prints a loud `SKIPPED` line and passes, unless
//! `AUDIT_REQUIRE_SERVICES=1`, when it fails.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A headless Chromium session; the driver and the browser are killed when dropped.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    /// Where the demo listens: pages are asked of `http://{origin}`.
    origin: SocketAddr,
}

/// The installed browser and its driver.
pub struct Chromium {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Chromium {
    /// Chromium and chromedriver from `PATH`; `None` after a SKIPPED line when one is not
    /// installed (a failure under `AUDIT_REQUIRE_SERVICES=1`).
    pub fn find() -> Option<Self> {
        Some(Self {
            chromium: super::services::program("chromium", "chromium")?,
            chromedriver: super::services::program("chromedriver", "chromium-driver")?,
        })
    }

    /// Starts chromedriver on a free loopback port and a headless Chromium session (a laptop's
    /// 1366x900 window) for the site at `origin`.
    pub async fn start(self, origin: SocketAddr) -> Browser {
        let Self {
            chromium,
            chromedriver,
        } = self;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Driver(
            Command::new(chromedriver)
                .args([
                    format!("--port={port}"),
                    "--allowed-ips=127.0.0.1".to_owned(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own group, so that dropping the session kills the browser with the driver.
                .process_group(0)
                .spawn()
                .expect("start chromedriver"),
        );
        let browser = Browser {
            client: connect(port, &chromium).await,
            _driver: driver,
            origin,
        };
        browser
            .client
            .set_window_size(1366, 900)
            .await
            .expect("window size");
        browser
    }
}

impl Browser {
    /// The absolute URL of `path` on the site.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.origin)
    }

    /// Opens `path` on the site.
    pub async fn open(&self, path: &str) {
        self.client.goto(&self.url(path)).await.expect("open page");
    }

    /// The element `css` selects, once it is there.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("`{css}` never appeared: {error}"))
    }

    /// Runs `script` in the page (a function body: `return ...`) and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.eval("return document.body.innerText;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every URL the page fetched or names as a source or a link (the document, its style,
    /// script and images, its live stream, its anchors and form targets): an external
    /// resource would show here.
    pub async fn urls(&self) -> Vec<String> {
        let urls = self
            .eval(
                "const urls = [location.href];
                 for (const entry of performance.getEntriesByType('resource')) { urls.push(entry.name); }
                 for (const node of document.querySelectorAll('[src],[href],[action],[data-live]')) {
                   for (const name of ['src', 'href', 'action', 'data-live']) {
                     const value = node.getAttribute(name);
                     if (value !== null) { urls.push(new URL(value, location.href).href); }
                   }
                 }
                 return urls;",
            )
            .await;
        serde_json::from_value(urls).expect("a list of URLs")
    }

    /// Saves a screenshot of the window as `target/tmp/screenshots/{name}.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (the browser exits) and stops the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Connects to the driver once it listens (it takes a moment to start).
async fn connect(port: u16, chromium: &std::path::Path) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            // `--no-sandbox`: tests may run as root, where Chromium's sandbox refuses to start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                     "--window-size=1366,900"],
        }
    });
    let capabilities = match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    };
    let started = Instant::now();
    loop {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities.clone());
        match builder.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return client,
            Err(_) if started.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no WebDriver session from chromedriver: {error}"),
        }
    }
}

/// chromedriver, leader of a process group that holds the browser's processes too.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: the driver and every browser process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}
