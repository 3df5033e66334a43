//! A headless Chromium driven through chromedriver (WebDriver, `fantoccini`), and the few
//! gestures the console tests need: wait for a page of the console (`main#page`'s `data-page`
//! and `data-state`), click, type, choose, read, run a script, and take a screenshot.
//!
//! chromedriver runs as a child in a process group of its own, killed with its Chromium when the
//! `Browser` is dropped (a failing test included). Each browser gets a fresh profile directory.
//! Tests take turns (`turn`): two Chromiums at once are too slow on a loaded 2-core machine.

use std::cell::RefCell;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use saga_common::testing::{PATIENCE, eventually, eventually_or};

use crate::helpers::ADMIN_TOKEN;

/// The desktop size every screenshot is taken at.
pub const DESKTOP: (u32, u32) = (1280, 900);

/// Serialises the tests of this target: hold the guard for the whole test.
pub async fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// A path given by name alone is looked up on PATH.
fn exists(program: &str) -> bool {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(path).is_file()))
}

pub struct Browser {
    pub client: Client,
    /// Declared after `client`: killed last.
    _driver: Driver,
}

/// chromedriver's process group and the profile directory, gone when dropped.
struct Driver {
    child: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium at the desktop size.
    pub async fn start() -> Browser {
        let chromium = program("SAGA_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("SAGA_CHROMEDRIVER", "/usr/bin/chromedriver");
        for (what, path, env) in [
            ("chromedriver", &chromedriver, "SAGA_CHROMEDRIVER"),
            ("Chromium", &chromium, "SAGA_CHROMIUM"),
        ] {
            assert!(
                exists(path),
                "{what} not found at {path}: run deploy/test.sh, which installs Debian's \
                 chromium and chromium-driver (or point {env} at it)"
            );
        }
        let profile = std::env::temp_dir().join(format!("saga-console-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(profile.join("chromedriver.log")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {chromedriver}: {error}"));
        // Killed from here on, whatever fails next.
        let driver = Driver { child, profile };
        let url = format!("http://127.0.0.1:{port}");
        let status = reqwest::Client::new();
        eventually("chromedriver to answer", PATIENCE, || async {
            let response = status.get(format!("{url}/status")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;

        let (width, height) = DESKTOP;
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", driver.profile.join("profile").display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let session = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await;
        let client = match session {
            Ok(client) => client,
            Err(error) => {
                let log = std::fs::read_to_string(driver.profile.join("chromedriver.log"));
                panic!("no Chromium session: {error}\nchromedriver's log: {log:?}");
            }
        };
        let browser = Browser {
            client,
            _driver: driver,
        };
        browser.resize(DESKTOP).await;
        browser
    }

    /// Sizes the viewport (not the window, which headless Chromium draws a frame around) to
    /// `width`×`height` CSS pixels.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client.set_window_size(width, height).await.unwrap();
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]", vec![])
            .await;
        let frame = |outer: u32, inner: &Value| {
            let inner = u32::try_from(inner.as_u64().unwrap()).unwrap();
            outer + outer.saturating_sub(inner)
        };
        self.client
            .set_window_size(frame(width, &inner[0]), frame(height, &inner[1]))
            .await
            .unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Opens the console at `base` and signs in with the operator token: the overview, ready.
    pub async fn sign_in(&self, base: &str) {
        self.goto(&format!("{base}/console")).await;
        self.wait_for("#token").await;
        self.fill("#token", ADMIN_TOKEN).await;
        self.click("#signin-submit").await;
        self.wait_page("overview").await;
    }

    /// Waits for `main#page[data-page=page][data-state=ready]`; a page in the `error` state
    /// fails at once with its alert.
    pub async fn wait_page(&self, page: &str) {
        let script = "const m = document.querySelector('main#page');
            const alert = [...document.querySelectorAll('[role=alert]')]
                .find(a => a.offsetParent !== null && a.textContent.trim());
            return m ? [m.dataset.page || '', m.dataset.state || '',
                alert ? alert.textContent.trim() : ''] : null;";
        let last = RefCell::new(Value::Null);
        let found = eventually_or(PATIENCE, || async {
            let state = self.client.execute(script, vec![]).await.ok()?;
            last.replace(state.clone());
            if state[0] == page && state[1] == "error" {
                panic!("the {page} page is in error: {}", state[2]);
            }
            (state[0] == page && state[1] == "ready").then_some(())
        })
        .await;
        if found.is_none() {
            let dump = self.dump().await;
            panic!(
                "the {page} page was not ready within {PATIENCE:?}; last seen [page, state, \
                 alert]: {}\n{dump}",
                last.take()
            );
        }
    }

    /// The page as it is (the URL and `main#page`, shortened), for a failure's message.
    pub async fn dump(&self) -> String {
        let script = "const m = document.querySelector('main#page');
            return location.href + '\\n' + (m ? m.outerHTML : document.body.outerHTML).slice(0, 6000);";
        match self.client.execute(script, vec![]).await {
            Ok(Value::String(html)) => format!("the page: {html}"),
            other => format!("the page could not be read: {other:?}"),
        }
    }

    /// Waits until `css` matches an element and returns it.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let found = self
            .client
            .wait()
            .at_most(PATIENCE)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(error) => panic!(
                "no element {css} within {PATIENCE:?}: {error}\n{}",
                self.dump().await
            ),
        }
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        eventually(&format!("{css} to go"), PATIENCE, || async {
            let found = self.client.find_all(Locator::Css(css)).await.ok()?;
            found.is_empty().then_some(())
        })
        .await;
    }

    /// Clicks the first element matching `css` once it is shown and enabled (retried while
    /// something covers it, e.g. a dialog still opening).
    pub async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), PATIENCE, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            if !element.is_displayed().await.ok()? || !element.is_enabled().await.ok()? {
                return None;
            }
            element.click().await.ok()
        })
        .await;
    }

    /// Replaces the value of the input `css` with `text`, typed.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    /// Chooses the option of `value` in the select `css`.
    pub async fn choose(&self, css: &str, value: &str) {
        let element = self.wait_for(css).await;
        element
            .select_by_value(value)
            .await
            .unwrap_or_else(|error| panic!("{css} has no option {value:?}: {error}"));
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// Waits until the text of `css` satisfies `check`; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let last = RefCell::new(String::new());
        let found = eventually_or(PATIENCE, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            last.replace(text.clone());
            check(&text).then_some(text)
        })
        .await;
        if let Some(text) = found {
            return text;
        }
        let dump = self.dump().await;
        panic!(
            "{css} never showed {what}; last text: {:?}\n{dump}",
            last.take()
        )
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// Confirms the open `dialog#confirm` and waits until it closes.
    pub async fn confirm(&self) {
        self.wait_for("dialog#confirm[open]").await;
        self.click("dialog#confirm[open] #confirm-yes").await;
        self.wait_gone("dialog#confirm[open]").await;
    }

    /// Presses Tab once, wherever the focus is.
    pub async fn tab(&self) {
        let tab: char = Key::Tab.into();
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: tab })
            .then(KeyAction::Up { value: tab });
        self.client.perform_actions(keys).await.unwrap();
    }

    /// A PNG of the viewport (taken at the desktop size only), checked; written as `{name}.png` into `SAGA_CONSOLE_SCREENSHOTS`
    /// when set (a path relative to the workspace root, created if missing).
    pub async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(
            png_size(&png),
            DESKTOP,
            "{name}: the viewport at the desktop size"
        );
        if let Some(dir) = std::env::var_os("SAGA_CONSOLE_SCREENSHOTS") {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
        png
    }
}

/// Width and height from a PNG's IHDR chunk; panics unless `bytes` starts as a PNG does.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(bytes.len() > 33, "not a PNG: {} bytes", bytes.len());
    assert_eq!(&bytes[..8], SIGNATURE, "not a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "a PNG starts with its IHDR chunk");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (width, height)
}
