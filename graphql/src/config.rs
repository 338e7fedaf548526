//! Layered configuration: built-in defaults, then `tongban.toml` (or the
//! file named by `--config` / `TONGBAN_CONFIG`), then `TONGBAN_*`
//! environment variables, then command-line flags. `tongban serve` works
//! with none of them: development mode, `./data`, `127.0.0.1:8080`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// A secret: never printed, not even by `Debug`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself (for the one place that needs it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Development or production.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Local development: HS256 tokens with the local development key are accepted.
    #[default]
    Development,
    /// Production: only tokens signed with configured public keys.
    Production,
}

/// Token verification.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PEM files with Ed25519 public keys.
    pub ed25519_public_keys: Vec<PathBuf>,
    /// PEM files with RSA public keys (RS256).
    pub rsa_public_keys: Vec<PathBuf>,
    /// A JWKS file (keys with `kid`, EdDSA or RS256).
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
}

/// Limits on requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deepest query nesting (introspection aside).
    pub max_depth: usize,
    /// Deepest nesting inside `__schema` / `__type` (the standard
    /// introspection query needs about 13).
    pub max_introspection_depth: usize,
    /// Highest query complexity (one per field, lists times their size).
    pub max_complexity: usize,
    /// Most fields a document expands to once its fragments are spread.
    pub max_fields: u64,
    /// Most fragment definitions in one document.
    pub max_fragments: usize,
    /// Largest response body, bytes.
    pub max_response_bytes: usize,
    /// Most HTTP requests in flight; past it, 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Longest a request waits for a slot when the cap is reached, ms.
    pub queue_wait_ms: u64,
    /// Most operations (subscriptions included) one WebSocket runs at once.
    pub max_operations_per_connection: usize,
    /// Longest a WebSocket may stay silent after the upgrade before its
    /// first message (`connection_init`), ms.
    pub ws_init_timeout_ms: u64,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Requests per second per token (or per address without a token).
    pub rate_per_second: u32,
    /// Burst allowance.
    pub rate_burst: u32,
    /// Longest a request may run, milliseconds.
    pub request_timeout_ms: u64,
    /// Longest a query waits for read models to reach `minPosition`, ms.
    pub read_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_introspection_depth: 20,
            max_complexity: 10_000,
            max_fields: 1_000,
            max_fragments: 100,
            max_response_bytes: 8 * 1024 * 1024,
            max_in_flight: 1024,
            queue_wait_ms: 100,
            max_operations_per_connection: 64,
            ws_init_timeout_ms: 10_000,
            max_body_bytes: 64 * 1024,
            rate_per_second: 5000,
            rate_burst: 10000,
            request_timeout_ms: 10_000,
            read_wait_ms: 5_000,
        }
    }
}

/// `tongban esdb-serve`: the embedded log served over the EventStoreDB
/// gRPC protocol. A non-loopback `listen` needs `users` and TLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EsdbServeConfig {
    /// The gRPC address (default 127.0.0.1:2113).
    pub listen: SocketAddr,
    /// The server's certificate chain, PEM (with `tls_private_key`).
    pub tls_certificate: Option<PathBuf>,
    /// The server's private key, PEM (with `tls_certificate`).
    pub tls_private_key: Option<PathBuf>,
    /// Users allowed in with basic authentication. None: every caller is
    /// an anonymous administrator (loopback only).
    pub users: Vec<EsdbUser>,
}

impl Default for EsdbServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], tongban_esdb_endpoint::DEFAULT_PORT)),
            tls_certificate: None,
            tls_private_key: None,
            users: Vec::new(),
        }
    }
}

/// A user of the EventStoreDB endpoint. The password comes from a file or
/// an environment variable, never from the configuration file itself.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsdbUser {
    /// The user name of `esdb://name:password@…`.
    pub name: String,
    /// A file holding the password (one line; the final newline is dropped).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// Administrators may read system streams (`$all`, which a gateway's
    /// esdb backend needs).
    #[serde(default)]
    pub admin: bool,
    /// The password given in `TONGBAN_ESDB_USERS`.
    #[serde(skip)]
    pub password: Option<Secret>,
}

impl EsdbUser {
    fn password(&self) -> anyhow::Result<Secret> {
        let name = &self.name;
        let password = match (&self.password, &self.password_file, &self.password_env) {
            (Some(password), None, None) => password.clone(),
            (None, Some(file), None) => {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!(
                        "failed to read the password of EventStoreDB user {name:?} from {}",
                        file.display()
                    )
                })?;
                Secret::new(text.trim_end_matches(['\n', '\r']))
            }
            (None, None, Some(var)) => Secret::new(std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "EventStoreDB user {name:?}: the environment variable {var} (password_env) \
                     is not set or not UTF-8"
                )
            })?),
            (None, None, None) => bail!(
                "EventStoreDB user {name:?} has no password: set password_file or password_env"
            ),
            _ => bail!(
                "EventStoreDB user {name:?} has more than one password: set only one of \
                 password_file and password_env"
            ),
        };
        if password.expose().is_empty() {
            bail!("EventStoreDB user {name:?} has an empty password");
        }
        Ok(password)
    }
}

impl EsdbServeConfig {
    /// The endpoint's configuration: passwords read, TLS files paired, and
    /// the exposure rule checked ([`EndpointConfig::protection`]), with an
    /// error that names the settings to add. `allow_insecure_remote` is
    /// the `--insecure-allow-remote` flag.
    ///
    /// [`EndpointConfig::protection`]: tongban_esdb_endpoint::EndpointConfig::protection
    pub fn endpoint(
        &self,
        allow_insecure_remote: bool,
    ) -> anyhow::Result<tongban_esdb_endpoint::EndpointConfig> {
        use tongban_esdb_endpoint::{EndpointConfig, EndpointError, TlsFiles, User};
        let mut config = EndpointConfig::listening_on(self.listen);
        config.allow_insecure_remote = allow_insecure_remote;
        config.tls = match (&self.tls_certificate, &self.tls_private_key) {
            (Some(certificate), Some(private_key)) => Some(TlsFiles {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => bail!(
                "esdb_serve.tls_certificate is set but esdb_serve.tls_private_key is not \
                 (TONGBAN_ESDB_TLS_PRIVATE_KEY, --tls-private-key)"
            ),
            (None, Some(_)) => bail!(
                "esdb_serve.tls_private_key is set but esdb_serve.tls_certificate is not \
                 (TONGBAN_ESDB_TLS_CERTIFICATE, --tls-certificate)"
            ),
        };
        for (i, user) in self.users.iter().enumerate() {
            if user.name.is_empty() || user.name.contains(':') {
                bail!(
                    "EventStoreDB user {:?}: a name is non-empty and has no ':'",
                    user.name
                );
            }
            if self.users[..i].iter().any(|u| u.name == user.name) {
                bail!("EventStoreDB user {:?} is configured twice", user.name);
            }
            config
                .users
                .push(User::new(&user.name, user.password()?.expose(), user.admin));
        }
        match config.protection() {
            Ok(_) => Ok(config),
            Err(EndpointError::Insecure { addr, missing }) => {
                let mut message = format!(
                    "refusing to serve the event log on {addr}, which other machines can reach, \
                     with {missing}.\nAdd"
                );
                if missing.users() {
                    message.push_str(
                        "\n  users: [[esdb_serve.users]] in tongban.toml (name, password_file or \
                         password_env, admin) or TONGBAN_ESDB_USERS=name:password[:admin],...",
                    );
                }
                if missing.tls() {
                    message.push_str(
                        "\n  TLS: esdb_serve.tls_certificate and esdb_serve.tls_private_key (PEM \
                         files), TONGBAN_ESDB_TLS_CERTIFICATE and TONGBAN_ESDB_TLS_PRIVATE_KEY, \
                         or --tls-certificate and --tls-private-key",
                    );
                }
                message.push_str(
                    "\nor listen on a loopback address (--listen 127.0.0.1:2113), or, on a \
                     network secured by other means, pass --insecure-allow-remote",
                );
                Err(anyhow::anyhow!(message))
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// The key vault.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// Where the personal-data keys live: `embedded` (default:
    /// `<data>/vault.redb`, one node) or `postgres://user@host:port/db`,
    /// which every replica shares (`--vault`, `TONGBAN_VAULT`). A secret:
    /// it may hold a password.
    pub url: Option<Secret>,
    /// A file holding the key-encryption key (32 bytes as 64 hex digits or
    /// base64), outside the data directory (`TONGBAN_VAULT_KEK_FILE`).
    pub kek_file: Option<PathBuf>,
    /// The key-encryption key itself, from `TONGBAN_VAULT_KEK` only: a key
    /// written into the configuration file would travel with every copy
    /// of it.
    #[serde(skip)]
    pub kek: Option<Secret>,
}

/// Where region signing keys are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    /// Key files in `[keys] dir`.
    Files,
    /// The vault's PostgreSQL database (`[vault] url`).
    Postgres,
}

/// Region signing keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// `files` or `postgres`; default: `postgres` when the vault is in
    /// PostgreSQL, else `files` (`TONGBAN_KEYS_STORE`).
    pub store: Option<KeyStoreKind>,
    /// The key files' directory (default `<data>/keys`; `TONGBAN_KEYS_DIR`,
    /// `--keys-dir`). Replicas sharing files point at one directory.
    pub dir: Option<PathBuf>,
    /// How often a node reloads the keys to pick up rotations made
    /// elsewhere, seconds (it also reloads on a key id it does not know).
    pub reload_secs: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            store: None,
            dir: None,
            reload_secs: 5,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Development or production.
    pub mode: Mode,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data directory (embedded store, read models, keys).
    pub data: PathBuf,
    /// `embedded` (default) or `esdb://host:port`.
    pub store: Option<String>,
    /// Directory of the division code files (default: the repository's copy).
    pub divisions: Option<PathBuf>,
    /// Worker threads of the HTTP server (default: the number of cores).
    pub workers: Option<usize>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Request limits.
    pub limits: Limits,
    /// Development mode on an address other hosts can reach (it hands out
    /// demo tokens and accepts locally minted ones): refused unless set.
    pub allow_remote_development: bool,
    /// Serve GraphiQL at `/graphiql` (default: in development mode only).
    pub graphiql: Option<bool>,
    /// Answer introspection queries (default: in development mode only).
    pub introspection: Option<bool>,
    /// `tongban esdb-serve`.
    pub esdb_serve: EsdbServeConfig,
    /// The key vault: where, and its key-encryption key.
    pub vault: VaultConfig,
    /// Region signing keys.
    pub keys: KeysConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("data"),
            store: None,
            divisions: None,
            workers: None,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            allow_remote_development: false,
            graphiql: None,
            introspection: None,
            esdb_serve: EsdbServeConfig::default(),
            vault: VaultConfig::default(),
            keys: KeysConfig::default(),
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--store`.
    pub store: Option<String>,
    /// `--allow-remote-development`.
    pub allow_remote_development: bool,
    /// `--vault`.
    pub vault: Option<String>,
    /// `--keys-dir`.
    pub keys_dir: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(format!("TONGBAN_{name}"))
        .ok()
        .filter(|v| !v.is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str, slot: &mut T) -> anyhow::Result<()>
where
    T::Err: fmt::Display,
{
    if let Some(v) = env(name) {
        *slot = v
            .parse()
            .map_err(|e| anyhow::anyhow!("TONGBAN_{name}={v:?} is not valid: {e}"))?;
    }
    Ok(())
}

impl Config {
    /// Loads the layers.
    pub fn load(flags: &Overrides) -> anyhow::Result<Self> {
        let file = flags
            .config
            .clone()
            .or_else(|| env("CONFIG").map(PathBuf::from));
        let mut config = match &file {
            Some(path) => Self::from_file(path)?,
            None if Path::new("tongban.toml").exists() => {
                Self::from_file(Path::new("tongban.toml"))?
            }
            None => Self::default(),
        };
        if let Some(m) = env("MODE") {
            config.mode = match m.to_ascii_lowercase().as_str() {
                "development" | "dev" => Mode::Development,
                "production" | "prod" => Mode::Production,
                other => bail!("TONGBAN_MODE={other:?} must be development or production"),
            };
        }
        if let Some(l) = env("LISTEN") {
            use std::net::ToSocketAddrs as _;
            config.listen = l
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| anyhow::anyhow!("TONGBAN_LISTEN={l:?} is not host:port"))?;
        }
        if let Some(d) = env("DATA") {
            config.data = PathBuf::from(d);
        }
        if let Some(s) = env("STORE") {
            config.store = Some(s);
        }
        if let Some(d) = env("DIVISIONS") {
            config.divisions = Some(PathBuf::from(d));
        }
        if let Some(w) = env("WORKERS") {
            config.workers = Some(w.parse().context("TONGBAN_WORKERS must be a number")?);
        }
        env_parse("RATE_PER_SECOND", &mut config.limits.rate_per_second)?;
        env_parse("RATE_BURST", &mut config.limits.rate_burst)?;
        env_parse("MAX_DEPTH", &mut config.limits.max_depth)?;
        env_parse("MAX_COMPLEXITY", &mut config.limits.max_complexity)?;
        env_parse("MAX_BODY_BYTES", &mut config.limits.max_body_bytes)?;
        env_parse("REQUEST_TIMEOUT_MS", &mut config.limits.request_timeout_ms)?;
        env_parse("MAX_FIELDS", &mut config.limits.max_fields)?;
        env_parse("MAX_IN_FLIGHT", &mut config.limits.max_in_flight)?;
        env_parse(
            "MAX_OPERATIONS_PER_CONNECTION",
            &mut config.limits.max_operations_per_connection,
        )?;
        env_parse("WS_INIT_TIMEOUT_MS", &mut config.limits.ws_init_timeout_ms)?;
        if let Some(k) = env("VAULT_KEK") {
            config.vault.kek = Some(Secret::new(k));
        }
        if let Some(f) = env("VAULT_KEK_FILE") {
            config.vault.kek_file = Some(PathBuf::from(f));
        }
        if let Some(v) = env("VAULT") {
            config.vault.url = Some(Secret::new(v));
        }
        if let Some(d) = env("KEYS_DIR") {
            config.keys.dir = Some(PathBuf::from(d));
        }
        if let Some(k) = env("KEYS_STORE") {
            config.keys.store = Some(match k.to_ascii_lowercase().as_str() {
                "files" => KeyStoreKind::Files,
                "postgres" => KeyStoreKind::Postgres,
                other => bail!("TONGBAN_KEYS_STORE={other:?} must be files or postgres"),
            });
        }
        env_parse("KEYS_RELOAD_SECS", &mut config.keys.reload_secs)?;
        if let Some(j) = env("JWKS_FILE") {
            config.auth.jwks_file = Some(PathBuf::from(j));
        }
        env_parse("ESDB_LISTEN", &mut config.esdb_serve.listen)?;
        if let Some(c) = env("ESDB_TLS_CERTIFICATE") {
            config.esdb_serve.tls_certificate = Some(PathBuf::from(c));
        }
        if let Some(k) = env("ESDB_TLS_PRIVATE_KEY") {
            config.esdb_serve.tls_private_key = Some(PathBuf::from(k));
        }
        if let Some(users) = env("ESDB_USERS") {
            config.esdb_serve.users = tongban_esdb_endpoint::User::parse_list(&users)
                // The error names the rule, never the value (it holds passwords).
                .map_err(|e| anyhow::anyhow!("TONGBAN_ESDB_USERS is not valid: {e}"))?
                .into_iter()
                .map(|u| EsdbUser {
                    password: Some(Secret::new(u.password.expose())),
                    name: u.name,
                    password_file: None,
                    password_env: None,
                    admin: u.admin,
                })
                .collect();
        }
        if let Some(d) = &flags.data {
            config.data = d.clone();
        }
        if let Some(l) = flags.listen {
            config.listen = l;
        }
        if let Some(s) = &flags.store {
            config.store = Some(s.clone());
        }
        if let Some(v) = &flags.vault {
            config.vault.url = Some(Secret::new(v.clone()));
        }
        if let Some(d) = &flags.keys_dir {
            config.keys.dir = Some(d.clone());
        }
        if let Some(v) = env("ALLOW_REMOTE_DEVELOPMENT") {
            config.allow_remote_development = matches!(v.as_str(), "1" | "true" | "yes");
        }
        config.allow_remote_development |= flags.allow_remote_development;
        for (name, slot) in [
            ("GRAPHIQL", &mut config.graphiql),
            ("INTROSPECTION", &mut config.introspection),
        ] {
            if let Some(v) = env(name) {
                *slot = Some(match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    other => bail!("TONGBAN_{name}={other:?} must be true or false"),
                });
            }
        }
        Ok(config)
    }

    /// Whether GraphiQL is served: opt-in in production.
    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(self.mode == Mode::Development)
    }

    /// Whether introspection is answered: opt-in in production.
    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(self.mode == Mode::Development)
    }

    /// Refuses configurations that would be unsafe to serve: development
    /// mode (demo tokens, locally minted tokens) on an address other hosts
    /// reach unless explicitly allowed; production mode without any token
    /// verification key (nobody could sign in).
    pub fn check_serving(&self) -> anyhow::Result<()> {
        match self.mode {
            Mode::Development
                if !self.listen.ip().is_loopback() && !self.allow_remote_development =>
            {
                bail!(
                    "development mode on {} would let other hosts use development tokens; \
                     listen on 127.0.0.1, set `mode = \"production\"` with token keys, \
                     or pass --allow-remote-development (TONGBAN_ALLOW_REMOTE_DEVELOPMENT=1) \
                     if this is a throwaway test machine",
                    self.listen
                )
            }
            Mode::Production
                if self.auth.ed25519_public_keys.is_empty()
                    && self.auth.rsa_public_keys.is_empty()
                    && self.auth.jwks_file.is_none() =>
            {
                bail!(
                    "production mode needs token verification keys: set [auth] \
                     ed25519_public_keys, rsa_public_keys or jwks_file (TONGBAN_JWKS_FILE)"
                )
            }
            _ => Ok(()),
        }
    }

    /// The vault's PostgreSQL URL, when the vault is in PostgreSQL (`None`
    /// for the embedded vault); an unknown kind of vault is an error.
    pub fn vault_postgres_url(&self) -> anyhow::Result<Option<&str>> {
        match self.vault.url.as_ref().map(Secret::expose) {
            None | Some("embedded") => Ok(None),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Some(url))
            }
            Some(_) => bail!(
                "unknown vault (--vault, TONGBAN_VAULT, [vault] url): use `embedded` or \
                 `postgres://user@host:port/database`"
            ),
        }
    }

    /// Where region keys are kept: as configured, else in PostgreSQL with a
    /// PostgreSQL vault (what replicas share) unless a key directory is set.
    pub fn key_store(&self) -> anyhow::Result<KeyStoreKind> {
        let postgres = self.vault_postgres_url()?.is_some();
        Ok(match self.keys.store {
            Some(KeyStoreKind::Postgres) if !postgres => bail!(
                "[keys] store = \"postgres\" keeps region keys in the vault's database, but the \
                 vault is embedded: set [vault] url (--vault, TONGBAN_VAULT) to postgres://…"
            ),
            Some(kind) => kind,
            None if postgres && self.keys.dir.is_none() => KeyStoreKind::Postgres,
            None => KeyStoreKind::Files,
        })
    }

    /// The key files' directory: `[keys] dir`, or `<data>/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.keys
            .dir
            .clone()
            .unwrap_or_else(|| self.data.join("keys"))
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("the configuration file {} is not valid", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_configuration_means_development_on_localhost_8080_under_data() {
        let c = Config::default();
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data, PathBuf::from("data"));
    }

    #[test]
    fn the_example_configuration_parses() {
        let text = include_str!("../../infra/tongban.example.toml");
        let c: Config = toml::from_str(text).expect("infra/tongban.example.toml parses");
        assert_eq!(c.mode, Mode::Production);
        assert_eq!(c.limits.max_depth, 10);
        assert!(c.vault.kek_file.is_some_and(|f| !f.starts_with(&c.data)));
        assert_eq!(c.esdb_serve.listen.to_string(), "0.0.0.0:2113");
        assert_eq!(c.esdb_serve.users.len(), 2);
        assert!(c.esdb_serve.users[0].admin && c.esdb_serve.users[0].password_file.is_some());
    }

    fn esdb_serve(toml: &str) -> EsdbServeConfig {
        let c: Config = toml::from_str(toml).expect("valid toml");
        c.esdb_serve
    }

    #[test]
    fn esdb_serve_refuses_a_non_loopback_address_and_names_the_missing_settings() {
        let open = esdb_serve("[esdb_serve]\nlisten = \"0.0.0.0:2113\"\n");
        let message = open.endpoint(false).expect_err("refused").to_string();
        for setting in [
            "0.0.0.0:2113",
            "[[esdb_serve.users]]",
            "TONGBAN_ESDB_USERS",
            "esdb_serve.tls_certificate",
            "esdb_serve.tls_private_key",
            "--insecure-allow-remote",
        ] {
            assert!(message.contains(setting), "{setting} in {message}");
        }
        let dir = tempfile::tempdir().expect("a directory");
        let password = dir.path().join("ops.password");
        std::fs::write(&password, "changeit\n").expect("written");
        let users_only = esdb_serve(&format!(
            "[esdb_serve]\nlisten = \"0.0.0.0:2113\"\n[[esdb_serve.users]]\nname = \"ops\"\n\
             password_file = {:?}\nadmin = true\n",
            password.display().to_string()
        ));
        let message = users_only.endpoint(false).expect_err("refused").to_string();
        assert!(message.contains("tls_certificate"), "{message}");
        assert!(!message.contains("TONGBAN_ESDB_USERS"), "{message}");
        let mut secured = users_only.clone();
        secured.tls_certificate = Some("esdb.crt".into());
        secured.tls_private_key = Some("esdb.key".into());
        let endpoint = secured
            .endpoint(false)
            .expect("users and TLS may serve remotely");
        assert_eq!(endpoint.users[0].password.expose(), "changeit");
        assert!(
            open.endpoint(true).is_ok(),
            "the escape hatch waives the rule"
        );
    }

    #[test]
    fn esdb_serve_serves_loopback_without_users_or_tls_by_default() {
        let c = Config::default();
        assert_eq!(c.esdb_serve.listen.to_string(), "127.0.0.1:2113");
        let endpoint = c
            .esdb_serve
            .endpoint(false)
            .expect("loopback may serve openly");
        assert!(endpoint.users.is_empty() && endpoint.tls.is_none());
    }

    #[test]
    fn an_esdb_user_needs_exactly_one_password_source_and_tls_needs_both_files() {
        let none = esdb_serve("[[esdb_serve.users]]\nname = \"ops\"\n");
        assert!(none.endpoint(false).is_err());
        let both = esdb_serve(
            "[[esdb_serve.users]]\nname = \"ops\"\npassword_file = \"a\"\npassword_env = \"B\"\n",
        );
        assert!(both.endpoint(false).is_err());
        let missing_env =
            esdb_serve("[[esdb_serve.users]]\nname = \"ops\"\npassword_env = \"TONGBAN_TEST_UNSET_PASSWORD\"\n");
        assert!(missing_env.endpoint(false).is_err());
        let half_tls = esdb_serve("[esdb_serve]\ntls_certificate = \"esdb.crt\"\n");
        let message = half_tls.endpoint(false).expect_err("refused").to_string();
        assert!(message.contains("tls_private_key"), "{message}");
    }

    #[test]
    fn esdb_passwords_never_print() {
        let dir = tempfile::tempdir().expect("a directory");
        let password = dir.path().join("ops.password");
        std::fs::write(&password, "hunter2-esdb").expect("written");
        let c = esdb_serve(&format!(
            "[[esdb_serve.users]]\nname = \"ops\"\npassword_file = {:?}\n",
            password.display().to_string()
        ));
        let endpoint = c.endpoint(false).expect("valid");
        assert!(!format!("{endpoint:?}").contains("hunter2"));
    }

    #[test]
    fn development_mode_is_refused_on_a_reachable_address_unless_allowed() {
        let mut c = Config::default();
        c.check_serving().unwrap();
        c.listen = "0.0.0.0:8080".parse().unwrap();
        let err = c.check_serving().unwrap_err().to_string();
        assert!(err.contains("--allow-remote-development"), "{err}");
        c.allow_remote_development = true;
        c.check_serving().unwrap();
    }

    #[test]
    fn production_mode_without_token_keys_is_refused() {
        let c = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        let err = c.check_serving().unwrap_err().to_string();
        assert!(err.contains("token verification keys"), "{err}");
    }

    #[test]
    fn region_keys_follow_a_postgres_vault_unless_a_key_directory_is_set() {
        let mut c = Config::default();
        assert_eq!(c.key_store().unwrap(), KeyStoreKind::Files);
        assert_eq!(c.keys_dir(), PathBuf::from("data").join("keys"));
        c.vault.url = Some(Secret::new("postgres://postgres@127.0.0.1/hub"));
        assert_eq!(c.key_store().unwrap(), KeyStoreKind::Postgres);
        c.keys.dir = Some("/etc/tongban/keys".into());
        assert_eq!(c.key_store().unwrap(), KeyStoreKind::Files);
        c.vault.url = Some(Secret::new("mysql://x"));
        assert!(c.vault_postgres_url().is_err());
        let c: Config = toml::from_str("[keys]\nstore = \"postgres\"\n").unwrap();
        let err = c.key_store().unwrap_err().to_string();
        assert!(err.contains("[vault] url"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
