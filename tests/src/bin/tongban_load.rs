//! `tongban-load`: a load generator against a running `tongban` node.
//!
//! It registers persons and checkpoints through GraphQL, then measures two
//! workloads over keep-alive HTTP/1.1 connections and prints `name=value`
//! lines:
//!
//! - `my_code_queries_per_s`, `my_code_p99_ms`: citizens asking for their
//!   own code and colour (`{ me { colour code } }`).
//! - `scans_per_s`, `scans_p99_ms`: checkpoints scanning codes
//!   (`scanCode`), each answered only once the scan is durable.
//!
//! Without `--addr` it starts a node itself (the binary from `TONGBAN_BIN`,
//! or a debug build) on a fresh data directory. Tokens are minted with the
//! node's development key (`<data>/dev-jwt.key`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Load generator for a running Tongban node.
#[derive(Parser, Debug)]
#[command(name = "tongban-load", version, about)]
struct Args {
    /// Address of a running node (`127.0.0.1:8080`); default: start one.
    #[arg(long)]
    addr: Option<String>,
    /// The node's data directory (for its development key).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Persons to register.
    #[arg(long, default_value_t = 1000)]
    persons: usize,
    /// Checkpoints to register.
    #[arg(long, default_value_t = 64)]
    checkpoints: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    addr: String,
    io: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("failed to connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr: addr.to_string(),
            io: BufReader::new(stream),
        })
    }

    async fn post(&mut self, token: &str, body: &str) -> anyhow::Result<(u16, Value)> {
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.io.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                }
            }
        }
        let mut buf = vec![0u8; length];
        self.io.read_exact(&mut buf).await?;
        Ok((status, serde_json::from_slice(&buf).unwrap_or(Value::Null)))
    }

    async fn gql(&mut self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = json!({"query": query, "variables": variables}).to_string();
        let (status, value) = self.post(token, &body).await?;
        if status != 200 || value.get("errors").is_some() {
            bail!("HTTP {status}: {value}");
        }
        Ok(value["data"].clone())
    }
}

fn mint(key: &str, role: &str, sub: &str, region: Option<&str>) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut claims = json!({"sub": sub, "role": role, "exp": now + 6 * 3600, "iat": now});
    if let Some(r) = region {
        claims["region"] = json!(r);
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )?)
}

fn p99(mut v: Vec<Duration>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64) * 0.99).ceil() as usize;
    v[i.saturating_sub(1).min(v.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs `work` on `connections` connections for `seconds`; returns
/// (requests per second, p99 ms, errors).
async fn measure<F>(
    addr: &str,
    connections: usize,
    seconds: u64,
    work: F,
) -> anyhow::Result<(f64, f64, usize)>
where
    F: Fn(usize, u64) -> (String, String) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let work = work.clone();
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let (token, body) = work(c, n);
                n += 1;
                let t = Instant::now();
                let (status, value) = conn.post(&token, &body).await?;
                latencies.push(t.elapsed());
                if status != 200 || value.get("errors").is_some() {
                    errors += 1;
                    if errors == 1 {
                        eprintln!("first error: HTTP {status}: {value}");
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((all.len() as f64 / elapsed, p99(all), errors))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _own;
    let (addr, data) = match (&args.addr, &args.data) {
        (Some(a), Some(d)) => (a.clone(), d.clone()),
        (Some(_), None) => {
            bail!("--addr needs --data (the node's data directory, for its development key)")
        }
        (None, _) => {
            let app = tongban_e2e::spawn_app()?;
            let out = (app.addr.clone(), app.data.clone());
            _own = app;
            out
        }
    };
    let key = std::fs::read_to_string(data.join("dev-jwt.key"))
        .with_context(|| format!("no development key in {}", data.display()))?;
    let key = key.trim().to_string();
    let official = mint(&key, "health_official", "load-official", Some("11"))?;

    // Setup: persons, their codes, checkpoints.
    eprintln!(
        "setting up {} persons and {} checkpoints on {addr}",
        args.persons, args.checkpoints
    );
    let communities = [
        "110106018002",
        "110106018006",
        "110106018009",
        "110101001001",
    ];
    let persons: Vec<String> = (0..args.persons)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let setup = futures::stream::iter(persons.iter().enumerate().map(|(i, p)| {
        let addr = addr.clone();
        let key = key.clone();
        let p = p.clone();
        async move {
            let mut conn = Conn::open(&addr).await?;
            let citizen = mint(&key, "citizen", &p, None)?;
            conn.gql(
                &citizen,
                "mutation($r: String!) { registerPerson(input: {homeRegion: \"11\", residence: $r, idKind: \"passport\", idNumber: \"E1234567\", name: \"测试\", phone: \"13800000000\"}) { position } }",
                json!({"r": communities[i % communities.len()]}),
            )
            .await?;
            let code = conn
                .gql(&citizen, "mutation { generateCode { text } }", json!({}))
                .await?;
            anyhow::Ok((citizen, code["generateCode"]["text"].as_str().unwrap_or_default().to_string()))
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut citizens = Vec::new();
    let mut codes = Vec::new();
    for r in setup {
        let (t, c) = r?;
        citizens.push(t);
        codes.push(c);
    }
    let mut conn = Conn::open(&addr).await?;
    let mut devices = Vec::new();
    for i in 0..args.checkpoints {
        let cp = conn
            .gql(
                &official,
                "mutation($n: String!) { registerCheckpoint(name: $n, place: \"110106018002\", admission: {admit: [\"green\", \"yellow\"]}) { checkpointId } }",
                json!({"n": format!("load checkpoint {i}")}),
            )
            .await?;
        let id = cp["registerCheckpoint"]["checkpointId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        devices.push(mint(&key, "checkpoint", &id, None)?);
    }

    // Workload 1: citizens read their own code.
    let citizens = Arc::new(citizens);
    let body =
        json!({"query": "{ me { colour { colour } code { colour expiresAt } } }"}).to_string();
    let c2 = citizens.clone();
    let (qps, qp99, qerr) = measure(&addr, args.connections, args.seconds, move |c, n| {
        let i = (c * 7919 + n as usize) % c2.len();
        (c2[i].clone(), body.clone())
    })
    .await?;

    // Workload 2: checkpoints scan codes (durable end to end).
    // Bodies are built before the clock starts, so the generator spends its
    // share of the machine on requests rather than on JSON.
    let devices = Arc::new(devices);
    let scans: Arc<Vec<String>> = Arc::new(
        codes
            .iter()
            .map(|code| {
                json!({
                    "query": "mutation($c: String!) { scanCode(code: $c, temperature: 36.5) { admitted position } }",
                    "variables": {"c": code},
                })
                .to_string()
            })
            .collect(),
    );
    let (sps, sp99, serr) = measure(&addr, args.connections, args.seconds, move |c, n| {
        let device = devices[c % devices.len()].clone();
        let body = scans[(c * 104_729 + n as usize * 31) % scans.len()].clone();
        (device, body)
    })
    .await?;

    println!("connections={}", args.connections);
    println!("my_code_queries_per_s={qps:.0}");
    println!("my_code_p99_ms={qp99:.2}");
    println!("my_code_errors={qerr}");
    println!("scans_per_s={sps:.0}");
    println!("scans_p99_ms={sp99:.2}");
    println!("scan_errors={serr}");
    Ok(())
}
