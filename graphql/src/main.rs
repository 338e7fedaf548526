//! `tongban`: serve the hub, mint development tokens, run the demo.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use tongban_graphql::auth::{self, Claims, Verifier};
use tongban_graphql::config::{Config, Mode, Overrides};
use tongban_graphql::node::{Node, NodeClock};
use tongban_graphql::{demo, server};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tongban (通办, "handled in one place"): an event-sourced hub for
/// integrated government services. Health codes, applications and other
/// services are events in one hash-chained log, projected into read models
/// and served through one GraphQL gateway with a portal for citizens,
/// checkpoints, officials and auditors.
///
/// Start with `tongban demo --persons 10000` (a seeded Beijing, then
/// serving on http://127.0.0.1:8080) or `tongban serve` (an empty hub).
#[derive(Parser, Debug)]
#[command(name = "tongban", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the node keeps its data and listens.
#[derive(clap::Args, Debug, Clone)]
struct NodeArgs {
    /// Configuration file (default: ./tongban.toml if present).
    #[arg(long, env = "TONGBAN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./data, or TONGBAN_DATA).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on, `host:port` (default: 127.0.0.1:8080, or
    /// TONGBAN_LISTEN); a host name such as `localhost:8080` is resolved.
    #[arg(long, value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// Event store: `embedded` (default) or `esdb://host:port`.
    #[arg(long)]
    store: Option<String>,
    /// Serve development mode on an address other hosts can reach (refused
    /// otherwise: development mode hands out demo tokens).
    #[arg(long)]
    allow_remote_development: bool,
    /// Key vault: `embedded` (default, `<data>/vault.redb`) or
    /// `postgres://user@host:port/database`, shared by replicas (or
    /// TONGBAN_VAULT, [vault] url).
    #[arg(long)]
    vault: Option<String>,
    /// Directory of the region key files (default: `<data>/keys`, or
    /// TONGBAN_KEYS_DIR, [keys] dir).
    #[arg(long)]
    keys_dir: Option<PathBuf>,
}

impl NodeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        Config::load(&Overrides {
            config: self.config.clone(),
            data: self.data.clone(),
            listen: self.listen,
            store: self.store.clone(),
            allow_remote_development: self.allow_remote_development,
            vault: self.vault.clone(),
            keys_dir: self.keys_dir.clone(),
        })
    }

    /// The configuration of a node that will serve: refused when unsafe.
    fn serving_config(&self) -> anyhow::Result<Config> {
        let config = self.config()?;
        config.check_serving()?;
        Ok(config)
    }
}

/// Where a command that does not serve finds its configuration and data
/// (`token`: the mode and the development key).
#[derive(clap::Args, Debug, Clone)]
struct DataArgs {
    /// Configuration file (default: ./tongban.toml if present).
    #[arg(long, env = "TONGBAN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./data, or TONGBAN_DATA).
    #[arg(long)]
    data: Option<PathBuf>,
}

impl DataArgs {
    fn config(&self) -> anyhow::Result<Config> {
        Config::load(&Overrides {
            config: self.config.clone(),
            data: self.data.clone(),
            ..Overrides::default()
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the GraphQL gateway (works with no configuration).
    Serve(NodeArgs),
    /// Print a development token (HS256 with the local development key;
    /// refused outside development mode).
    Token {
        /// citizen, checkpoint, lab, health_official, department, enterprise,
        /// auditor, admin.
        #[arg(long)]
        role: String,
        /// Subject: the person's id (citizen), the checkpoint's id
        /// (checkpoint), the enterprise's id in the hub (enterprise) or any
        /// stable id.
        #[arg(long)]
        subject: Option<String>,
        /// Region of a health official or of a department official's
        /// authority over applications (division code, e.g. 110106).
        #[arg(long)]
        region: Option<String>,
        /// Sub-regions a health official is limited to (repeatable).
        #[arg(long = "sub-region")]
        sub_regions: Vec<String>,
        /// Name of a lab or department.
        #[arg(long)]
        name: Option<String>,
        /// Validity in hours.
        #[arg(long, default_value_t = 24)]
        hours: i64,
        #[command(flatten)]
        node: DataArgs,
    },
    /// Seed a realistic city (Beijing, a Xinfadi-style outbreak in Fengtai's
    /// Huaxiang township), then serve it and print tokens for each role.
    Demo {
        /// How many persons to register.
        #[arg(long, default_value_t = 100_000)]
        persons: usize,
        /// Seed only; do not serve afterwards.
        #[arg(long)]
        no_serve: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Serve the embedded event store over the EventStoreDB gRPC protocol
    /// (for the `esdb` backend of other nodes and official clients). A
    /// non-loopback address needs users and TLS ([esdb_serve] in
    /// tongban.toml, TONGBAN_ESDB_*).
    EsdbServe(EsdbServeArgs),
    /// Region signing keys, in the store every replica reads (key files or
    /// the vault's PostgreSQL): list, rotate, retire. Running nodes pick
    /// changes up within `[keys] reload_secs`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand, Debug)]
enum KeysAction {
    /// Lists the keys: region, key id, status, not-before.
    List {
        /// Only this region's keys (division code, e.g. 11).
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Creates a new key for a region, which signs its codes from now on;
    /// the older keys still verify the codes they signed until retired.
    Rotate {
        /// The region (division code, e.g. 11).
        #[arg(long)]
        region: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Retires a key: codes it signed are refused from now on (the key
    /// that signs cannot be retired: rotate first).
    Retire {
        /// The region (division code).
        #[arg(long)]
        region: String,
        /// The key id (see `tongban keys list`).
        #[arg(long)]
        kid: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn region_arg(text: &str) -> anyhow::Result<tongban_kernel::DivisionCode> {
    tongban_kernel::DivisionCode::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--region {text:?} is not a division code: {e}"))
}

fn print_keys(keys: &[tongban_health_code::region_keys::PublicRegionKey]) {
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<8} {:<28} {:<17} {:<22} RETIRED-AT",
        "REGION", "KID", "STATUS", "NOT-BEFORE"
    );
    for key in keys {
        let status = match (key.status.as_str(), key.signing) {
            (status, true) => format!("{status} (signs)"),
            (status, false) => status.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<28} {:<17} {:<22} {}",
            key.region,
            key.kid,
            status,
            fmt(key.not_before),
            key.retired_at.map(fmt).unwrap_or_else(|| "-".into())
        );
    }
    let _ = out.flush();
}

fn keys(action: KeysAction) -> anyhow::Result<()> {
    use tongban_health_code::region_keys::published;
    match action {
        KeysAction::List { region, node } => {
            let store = tongban_graphql::node::region_key_store(&node.config()?)?;
            let region = region.as_deref().map(region_arg).transpose()?;
            let keys = published(&store.load()?);
            let shown: Vec<_> = keys
                .into_iter()
                .filter(|k| region.is_none_or(|r| k.region == r.to_string()))
                .collect();
            print_keys(&shown);
        }
        KeysAction::Rotate { region, node } => {
            let store = tongban_graphql::node::region_key_store(&node.config()?)?;
            let region = region_arg(&region)?;
            let key = store.rotate(region)?;
            println!(
                "region {region}: {} signs from now on; older keys verify until retired \
                 (running nodes reload within [keys] reload_secs)",
                key.kid()
            );
        }
        KeysAction::Retire { region, kid, node } => {
            let store = tongban_graphql::node::region_key_store(&node.config()?)?;
            let region = region_arg(&region)?;
            let key = store.retire(region, kid.trim())?;
            println!(
                "region {region}: {} retired; codes it signed are refused",
                key.kid()
            );
        }
    }
    Ok(())
}

/// `tongban esdb-serve`: flags override `[esdb_serve]` and `TONGBAN_ESDB_*`.
/// Users (and their passwords) come only from the file or the environment,
/// never from the command line, where other users of the machine see them.
#[derive(clap::Args, Debug, Clone)]
struct EsdbServeArgs {
    /// Configuration file (default: ./tongban.toml if present).
    #[arg(long, env = "TONGBAN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./data, or TONGBAN_DATA); the log is
    /// `<data>/events`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address of the gRPC endpoint (default: 127.0.0.1:2113, or
    /// TONGBAN_ESDB_LISTEN).
    #[arg(long, visible_alias = "esdb-listen", value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// The server's TLS certificate chain, a PEM file (or
    /// TONGBAN_ESDB_TLS_CERTIFICATE).
    #[arg(long)]
    tls_certificate: Option<PathBuf>,
    /// The server's TLS private key, a PEM file (or
    /// TONGBAN_ESDB_TLS_PRIVATE_KEY).
    #[arg(long)]
    tls_private_key: Option<PathBuf>,
    /// Serve on a non-loopback address even without users or TLS: only on
    /// a network secured by other means (a service mesh, a VPN).
    #[arg(long)]
    insecure_allow_remote: bool,
}

impl EsdbServeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(&Overrides {
            config: self.config.clone(),
            data: self.data.clone(),
            ..Overrides::default()
        })?;
        let esdb = &mut config.esdb_serve;
        if let Some(listen) = self.listen {
            esdb.listen = listen;
        }
        if let Some(certificate) = &self.tls_certificate {
            esdb.tls_certificate = Some(certificate.clone());
        }
        if let Some(key) = &self.tls_private_key {
            esdb.tls_private_key = Some(key.clone());
        }
        Ok(config)
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TONGBAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_urls(addr: SocketAddr, mode: Mode) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Tongban listening on http://{addr}");
    let _ = writeln!(out, "  GraphQL        http://{addr}/graphql");
    let _ = writeln!(out, "  Subscriptions  ws://{addr}/graphql");
    let _ = writeln!(out, "  GraphiQL       http://{addr}/graphiql");
    let _ = writeln!(
        out,
        "  Health         http://{addr}/healthz  http://{addr}/readyz"
    );
    let _ = writeln!(out, "  Metrics        http://{addr}/metrics");
    match mode {
        Mode::Development => {
            let _ = writeln!(
                out,
                "Mode: DEVELOPMENT. Tokens signed with the local development key are accepted \
                 and the portal offers demo tokens to this machine: never expose it.\n\
                 Mint tokens with `tongban token --role <role> --subject <id>`"
            );
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "development mode on an address other hosts can reach (--allow-remote-development)");
            }
        }
        Mode::Production => {
            let _ = writeln!(out, "Mode: production");
        }
    }
    let _ = out.flush();
}

async fn open(config: Config, clock: Arc<NodeClock>) -> anyhow::Result<(Node, Verifier)> {
    let dev = match config.mode {
        Mode::Development => auth::dev_key(&config.data, true)?,
        Mode::Production => None,
    };
    let verifier = Verifier::new(&config.auth, config.mode, dev.as_ref())?;
    let node = Node::open(config, clock).await?;
    let verifier = verifier.with_divisions(node.health_code.divisions.clone());
    Ok((node, verifier))
}

fn token(
    config: &Config,
    role: &str,
    subject: Option<String>,
    region: Option<String>,
    sub_regions: Vec<String>,
    name: Option<String>,
    hours: i64,
) -> anyhow::Result<String> {
    if config.mode != Mode::Development {
        bail!("development tokens are refused outside development mode (mode = production)");
    }
    let secret = auth::dev_key(&config.data, true)?
        .context("no development key; start `tongban serve` once first")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let subject = subject.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let claims = Claims {
        sub: subject,
        role: role.into(),
        region,
        sub_regions,
        name,
        exp: now + hours.max(1) * 3600,
        iat: now,
    };
    claims.identity().map_err(|e| anyhow::anyhow!("{e}"))?;
    auth::mint_dev(&secret, &claims)
}

/// The connection string a gateway would use for the endpoint at `url`
/// (`esdb://addr?tls=…`), with placeholders for what only the operator
/// knows: the host name when listening on every interface, credentials, the
/// CA file.
fn gateway_url(url: &str, users: bool) -> String {
    let mut url = url.replacen("esdb://0.0.0.0:", "esdb://THIS-HOST:", 1);
    url = url.replacen("esdb://[::]:", "esdb://THIS-HOST:", 1);
    if users {
        url = url.replacen("esdb://", "esdb://USER:PASSWORD@", 1);
    }
    if url.ends_with("tls=true") {
        url.push_str("&tlsCaFile=/path/to/ca.pem");
    }
    url
}

/// `host:port`, resolved (the first address the name has).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}` is not host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// A user's mistake (a bad flag, an unsafe configuration, a busy data
/// directory) prints its message and causes, never a backtrace.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[actix_web::main]
async fn run() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = args.serving_config()?;
            let mode = config.mode;
            let (node, verifier) = open(config, Arc::new(NodeClock::default())).await?;
            server::serve(node, verifier, |addr| print_urls(addr, mode)).await
        }
        Command::Token {
            role,
            subject,
            region,
            sub_regions,
            name,
            hours,
            node,
        } => {
            let config = node.config()?;
            let jwt = token(&config, &role, subject, region, sub_regions, name, hours)?;
            println!("{jwt}");
            Ok(())
        }
        Command::Demo {
            persons,
            no_serve,
            node,
        } => {
            let config = if no_serve {
                node.config()?
            } else {
                node.serving_config()?
            };
            let mode = config.mode;
            let clock = Arc::new(NodeClock::default());
            let (node, verifier) = open(config.clone(), clock.clone()).await?;
            let seeded = demo::seed(&node, &clock, persons).await?;
            if no_serve {
                node.close().await;
                return Ok(());
            }
            server::serve(node, verifier, move |addr| {
                print_urls(addr, mode);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "\nReady-made tokens (valid 24 h):");
                for (label, claims) in seeded.roles() {
                    match token(
                        &config,
                        &claims.role,
                        Some(claims.sub.clone()),
                        claims.region.clone(),
                        claims.sub_regions.clone(),
                        claims.name.clone(),
                        24,
                    ) {
                        Ok(t) => {
                            let _ = writeln!(out, "  {label:<28} {t}");
                        }
                        Err(e) => {
                            let _ = writeln!(out, "  {label:<28} (no token: {e})");
                        }
                    }
                }
                let _ = out.flush();
            })
            .await
        }
        Command::Keys { action } => keys(action),
        Command::EsdbServe(args) => {
            let config = args.config()?;
            let endpoint_config = config.esdb_serve.endpoint(args.insecure_allow_remote)?;
            let dir = config.data.join("events");
            let store = tongban_store::EmbeddedStore::open(&dir)
                .with_context(|| format!("failed to open the event store at {}", dir.display()))?;
            let listen = endpoint_config.listen;
            let secured = !endpoint_config.users.is_empty();
            let endpoint =
                tongban_esdb_endpoint::Endpoint::bind(Arc::new(store.clone()), endpoint_config)
                    .await
                    .with_context(|| format!("failed to serve the event log on {listen}"))?;
            let url = endpoint.connection_string();
            println!("EventStoreDB endpoint listening on {url}");
            println!(
                "  serve a gateway on it: tongban serve --store '{}'",
                gateway_url(&url, secured)
            );
            let _ = std::io::stdout().flush();
            endpoint
                .serve(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("the EventStoreDB endpoint failed")?;
            store.close().await;
            Ok(())
        }
    }
}
