//! The portal in a real browser: headless Chromium driven by chromedriver
//! over WebDriver (`fantoccini`), against the real `tongban` binary on a
//! random port with a fresh data directory.
//!
//! - [`spawn_app`], [`spawn_demo`] / [`App`]: the node (the same approach as the
//!   `tongban-e2e` crate: build the binary once, `serve --listen
//!   127.0.0.1:0`, read the address from its first line), development
//!   tokens, GraphQL over plain HTTP for test setup.
//! - [`Driver`] / [`Browser`]: one chromedriver per test, one fresh browser
//!   profile per session; screenshots under `target/browser/`; every
//!   console message of level SEVERE fails the test.
//!
//! Chromium and chromedriver come from Debian (`chromium`,
//! `chromium-driver`); `.ci/run` and `infra/scripts/test.sh` install them
//! when missing. Set `CHROMEDRIVER` / `CHROMIUM` to use other paths.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub use tongban_e2e::{binary, workspace};

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"))
}

/// A running node.
pub struct App {
    /// `127.0.0.1:port`.
    pub addr: String,
    data: tempfile::TempDir,
    child: Child,
}

/// Starts a node on port 0 with a fresh data directory.
pub fn spawn_app() -> anyhow::Result<App> {
    spawn_on(tempfile::tempdir().context("failed to create a data directory")?)
}

/// Seeds a small demo city (`tongban demo --persons N --no-serve`), then
/// serves it on port 0.
pub fn spawn_demo(persons: usize) -> anyhow::Result<App> {
    let data = tempfile::tempdir().context("failed to create a data directory")?;
    let out = Command::new(binary()?)
        .args([
            "demo",
            "--no-serve",
            "--persons",
            &persons.to_string(),
            "--data",
        ])
        .arg(data.path())
        .current_dir(workspace())
        .env_remove("TONGBAN_CONFIG")
        .output()
        .context("failed to run tongban demo")?;
    if !out.status.success() {
        bail!(
            "tongban demo failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    spawn_on(data)
}

fn spawn_on(data: tempfile::TempDir) -> anyhow::Result<App> {
    let mut child = Command::new(binary()?)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .current_dir(workspace())
        .env_remove("TONGBAN_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("failed to start tongban serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .context("tongban serve exited before printing its address")??;
    let addr = first
        .strip_prefix("Tongban listening on http://")
        .ok_or_else(|| anyhow!("unexpected first line: {first}"))?
        .trim()
        .to_string();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok(App { addr, data, child })
}

impl App {
    /// The portal's address.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Mints a development token with the binary.
    pub fn token(&self, role: &str, subject: &str, region: Option<&str>) -> anyhow::Result<String> {
        let mut cmd = Command::new(binary()?);
        cmd.args(["token", "--role", role, "--subject", subject, "--data"])
            .arg(self.data.path());
        if let Some(r) = region {
            cmd.args(["--region", r]);
        }
        let out = cmd.output().context("failed to run tongban token")?;
        if !out.status.success() {
            bail!(
                "tongban token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Runs a GraphQL operation for test setup; fails on any error, returns `data`.
    pub fn data(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = json!({"query": query, "variables": variables}).to_string();
        let (status, text) = http(&self.addr, "POST", "/graphql", Some(token), &body)?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("HTTP {status}: not JSON: {text}"))?;
        if status != 200 || value.get("errors").is_some() {
            bail!("HTTP {status}: {value}");
        }
        Ok(value["data"].clone())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange (the test's own setup calls; the browser
/// does the real work).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // Read the head, then exactly the body it announces (a keep-alive peer
    // may not close the connection).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length {
                if raw.len() >= end + 4 + length {
                    break;
                }
            } else if head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {addr}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A chromedriver process.
pub struct Driver {
    port: u16,
    child: Child,
    profiles: Vec<tempfile::TempDir>,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        let exe = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        if !Path::new(&exe).exists() {
            bail!(
                "{exe} is missing: install Debian's `chromium` and `chromium-driver` \
                 (`bash infra/scripts/test.sh` does it when they are missing)"
            );
        }
        let port = free_port()?;
        let child = Command::new(&exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {exe}"))?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            port,
            child,
            profiles: Vec::new(),
        })
    }

    /// Opens a browser session (fresh profile) of the given window size.
    pub async fn browser(
        &mut self,
        name: &str,
        width: u32,
        height: u32,
    ) -> anyhow::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--lang=en-US".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        // The workspace enables both of rustls' crypto providers (ring and
        // aws-lc-rs), so rustls cannot pick one by itself: choose ring.
        // (Only chromedriver on 127.0.0.1 is reached, over plain HTTP.)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()?
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .with_context(|| format!("failed to open a Chromium session for {name}"))?;
        client.set_window_size(width, height).await.ok();
        let session = client
            .session_id()
            .await?
            .ok_or_else(|| anyhow!("no WebDriver session id"))?;
        self.profiles.push(profile);
        let dir = target_dir().join("browser");
        std::fs::create_dir_all(&dir)?;
        Ok(Browser {
            name: name.into(),
            client,
            session,
            driver_port: self.port,
            shots: dir,
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Browsers whose session was not closed (a failing test) would
        // outlive chromedriver: end them by id, found by their own profile
        // directory.
        let profiles: Vec<String> = self
            .profiles
            .iter()
            .map(|p| format!("--user-data-dir={}", p.path().display()))
            .collect();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline
                    .split('\0')
                    .any(|arg| profiles.iter().any(|p| p == arg))
                {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Browser {
    name: String,
    /// The WebDriver client.
    pub client: Client,
    session: String,
    driver_port: u16,
    shots: PathBuf,
}

impl Browser {
    /// Opens a URL.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("{}: cannot open {url}", self.name))
    }

    /// Waits (up to `secs`) for an element matching `css`.
    pub async fn wait_for(
        &self,
        css: &str,
        secs: u64,
    ) -> anyhow::Result<fantoccini::elements::Element> {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(secs))
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => {
                let shot = self.screenshot("timeout").await.ok();
                let text = self.client.find(Locator::Css("main")).await.ok();
                let text = match text {
                    Some(m) => m.text().await.unwrap_or_default(),
                    None => String::new(),
                };
                bail!(
                    "{}: `{css}` did not appear within {secs} s ({e}); screenshot {shot:?}; the page says:\n{text}",
                    self.name
                )
            }
        }
    }

    /// Types into the element matching `css` (replacing its value).
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.wait_for(css, 10).await?;
        e.clear().await.ok();
        e.send_keys(text)
            .await
            .with_context(|| format!("{}: typing into {css}", self.name))
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.wait_for(css, 10).await?;
        e.click()
            .await
            .with_context(|| format!("{}: clicking {css}", self.name))
    }

    /// The text of the element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.wait_for(css, 10).await?.text().await?)
    }

    /// Signs in on the portal's sign-in page by pasting `token`.
    pub async fn sign_in(&self, base: &str, token: &str) -> anyhow::Result<()> {
        self.goto(&format!("{base}/#/signin")).await?;
        self.fill("#token", token).await?;
        self.click("#signin-go").await
    }

    /// Saves a screenshot as `target/browser/<name>-<step>.png`.
    pub async fn screenshot(&self, step: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{}-{step}.png", self.name));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Saves a screenshot of the whole page (the window grows to the page's
    /// height for the picture, then returns to its size).
    pub async fn full_screenshot(&self, step: &str) -> anyhow::Result<PathBuf> {
        let (width, height) = self.client.get_window_size().await?;
        let (width, height) = (
            u32::try_from(width).unwrap_or(1280),
            u32::try_from(height).unwrap_or(900),
        );
        let page = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await?
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .unwrap_or(height);
        self.client
            .set_window_size(width, page.clamp(height, 6000) + 140)
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = self.screenshot(step).await;
        self.client.set_window_size(width, height).await?;
        path
    }

    /// Saves a picture of one element as `target/browser/<name>-<step>.png`.
    pub async fn element_screenshot(&self, css: &str, step: &str) -> anyhow::Result<PathBuf> {
        let png = self.wait_for(css, 10).await?.screenshot().await?;
        let path = self.shots.join(format!("{}-{step}.png", self.name));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Browser console messages of level SEVERE since the last call.
    pub async fn console_errors(&self) -> anyhow::Result<Vec<String>> {
        let (status, text) = http(
            &format!("127.0.0.1:{}", self.driver_port),
            "POST",
            &format!("/session/{}/se/log", self.session),
            None,
            r#"{"type":"browser"}"#,
        )?;
        if status != 200 {
            bail!("chromedriver did not return the browser log: HTTP {status}: {text}");
        }
        let value: Value = serde_json::from_str(&text)?;
        Ok(value["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Fails if the page logged any JavaScript error; then closes the session.
    pub async fn finish(self) -> anyhow::Result<()> {
        let errors = self.console_errors().await?;
        let _ = self.client.close().await;
        if !errors.is_empty() {
            bail!(
                "{}: JavaScript console errors:\n{}",
                self.name,
                errors.join("\n")
            );
        }
        Ok(())
    }
}
