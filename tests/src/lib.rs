//! End-to-end support: start the real `tongban` binary on a random port with
//! a fresh data directory, mint development tokens with it, and talk to it
//! over HTTP and WebSocket.
//!
//! - [`spawn_app`] / [`App`]: a running node with typed request helpers.
//! - [`Ws`]: a GraphQL subscription client (`graphql-transport-ws` or the
//!   older `graphql-ws`).
//! - `src/bin/tongban_load.rs`: the load generator.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `tongban` binary, built once per test process (`TONGBAN_BIN` overrides).
pub fn binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(bin) = std::env::var("TONGBAN_BIN") {
                return Ok(PathBuf::from(bin));
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "tongban-graphql",
                    "--bin",
                    "tongban",
                ])
                .current_dir(workspace())
                .status()
                .map_err(|e| format!("failed to run cargo build: {e}"))?;
            if !status.success() {
                return Err("building the tongban binary failed".into());
            }
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| workspace().join("target"));
            Ok(target.join("debug").join("tongban"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A running node.
pub struct App {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Its data directory.
    pub data: PathBuf,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a node on port 0 with a fresh data directory.
pub fn spawn_app() -> anyhow::Result<App> {
    let dir = tempfile::tempdir().context("failed to create a data directory")?;
    let data = dir.path().to_path_buf();
    let mut app = spawn_on(&data, &[])?;
    app._dir = Some(dir);
    Ok(app)
}

/// Starts a node on an existing data directory with extra environment.
pub fn spawn_on(data: &Path, env: &[(&str, &str)]) -> anyhow::Result<App> {
    let mut cmd = Command::new(binary()?);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env_remove("TONGBAN_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("failed to start tongban serve")?;
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
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok(App {
        addr,
        data: data.to_path_buf(),
        child,
        _dir: None,
    })
}

impl App {
    /// Mints a development token with the binary.
    pub fn token(&self, role: &str, subject: &str, region: Option<&str>) -> anyhow::Result<String> {
        token_for(&self.data, role, subject, region)
    }

    /// Stops the node gracefully (SIGTERM) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("tongban exited with {status}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        bail!("tongban did not stop within 10 s of SIGTERM")
    }

    /// The node's process id (for `kill -9` in crash tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Keeps the data directory after the node stops (for restarts).
    pub fn keep_data(&mut self) -> Option<tempfile::TempDir> {
        self._dir.take()
    }

    /// POSTs a GraphQL request; returns the status and the JSON body.
    pub async fn post(&self, token: Option<&str>, body: Value) -> anyhow::Result<(u16, Value)> {
        self.post_raw(token, body.to_string()).await
    }

    /// POSTs a raw body.
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        body: String,
    ) -> anyhow::Result<(u16, Value)> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let mut req = client
            .post(format!("http://{}/graphql", self.addr))
            .insert_header(("content-type", "application/json"));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        let mut res = req
            .send_body(body)
            .await
            .map_err(|e| anyhow!("request failed: {e}"))?;
        let bytes = res
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .map_err(|e| anyhow!("reading the body failed: {e}"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((res.status().as_u16(), value))
    }

    /// Runs a query or mutation; fails on HTTP errors, returns the body.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let (status, body) = self
            .post(Some(token), json!({"query": query, "variables": variables}))
            .await?;
        if status != 200 {
            bail!("HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// Like [`gql`](Self::gql) but fails on GraphQL errors; returns `data`.
    pub async fn data(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = self.gql(token, query, variables).await?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }

    /// GETs a path.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let client = awc::Client::default();
        let mut res = client
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .map_err(|e| anyhow!("request failed: {e}"))?;
        let bytes = res.body().await.map_err(|e| anyhow!("{e}"))?;
        Ok((
            res.status().as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    /// Opens a subscription client.
    pub async fn ws(&self, protocol: &str, token: &str) -> anyhow::Result<Ws> {
        Ws::connect(&self.addr, protocol, token).await
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mints a development token for a data directory.
pub fn token_for(
    data: &Path,
    role: &str,
    subject: &str,
    region: Option<&str>,
) -> anyhow::Result<String> {
    let mut cmd = Command::new(binary()?);
    cmd.args(["token", "--role", role, "--subject", subject, "--data"])
        .arg(data);
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

/// A GraphQL-over-WebSocket client.
pub struct Ws {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    protocol: String,
}

impl Ws {
    /// Opens a WebSocket and sends nothing (not even `connection_init`).
    pub async fn connect_silently(addr: &str, protocol: &str) -> anyhow::Result<Self> {
        let (_res, framed) = awc::Client::new()
            .ws(format!("ws://{addr}/graphql"))
            .protocols([protocol])
            .connect()
            .await
            .map_err(|e| anyhow!("WebSocket connect failed: {e}"))?;
        Ok(Self {
            framed,
            protocol: protocol.into(),
        })
    }

    async fn connect(addr: &str, protocol: &str, token: &str) -> anyhow::Result<Self> {
        let (_res, framed) = awc::Client::new()
            .ws(format!("ws://{addr}/graphql"))
            .protocols([protocol])
            .connect()
            .await
            .map_err(|e| anyhow!("WebSocket connect failed: {e}"))?;
        let mut ws = Self {
            framed,
            protocol: protocol.into(),
        };
        ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
            .await?;
        loop {
            let msg = ws.next().await?;
            match msg["type"].as_str() {
                Some("connection_ack") => return Ok(ws),
                Some("ka") | Some("ping") => continue,
                _ => bail!("expected connection_ack, got {msg}"),
            }
        }
    }

    async fn send(&mut self, msg: Value) -> anyhow::Result<()> {
        self.framed
            .send(awc::ws::Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| anyhow!("WebSocket send failed: {e}"))
    }

    /// Starts a subscription with id `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str) -> anyhow::Result<()> {
        let kind = if self.protocol == "graphql-ws" {
            "start"
        } else {
            "subscribe"
        };
        self.send(json!({"id": id, "type": kind, "payload": {"query": query}}))
            .await
    }

    /// The next JSON message (pings answered, keep-alives skipped), within 20 s.
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.framed.next())
                .await
                .map_err(|_| anyhow!("no WebSocket message within 20 s"))?
                .ok_or_else(|| anyhow!("WebSocket closed"))?
                .map_err(|e| anyhow!("WebSocket error: {e}"))?;
            match frame {
                awc::ws::Frame::Text(bytes) => {
                    let v: Value = serde_json::from_slice(&bytes)?;
                    if v["type"] == "ping" {
                        self.send(json!({"type": "pong"})).await?;
                        continue;
                    }
                    if v["type"] == "ka" {
                        continue;
                    }
                    return Ok(v);
                }
                awc::ws::Frame::Ping(p) => {
                    self.framed
                        .send(awc::ws::Message::Pong(p))
                        .await
                        .map_err(|e| anyhow!("{e}"))?;
                }
                awc::ws::Frame::Close(reason) => bail!("WebSocket closed: {reason:?}"),
                _ => {}
            }
        }
    }

    /// The next `data` payload of subscription `id` (`next` or `data` messages).
    pub async fn next_data(&mut self, id: &str) -> anyhow::Result<Value> {
        loop {
            let msg = self.next().await?;
            match msg["type"].as_str() {
                Some("next") | Some("data") if msg["id"] == id => {
                    return Ok(msg["payload"].clone());
                }
                Some("error") => bail!("subscription error: {msg}"),
                _ => continue,
            }
        }
    }
}
