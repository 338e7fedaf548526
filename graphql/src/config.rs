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
    /// Deepest query nesting.
    pub max_depth: usize,
    /// Highest query complexity (one per field, lists times `limit`).
    pub max_complexity: usize,
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
            max_complexity: 1000,
            max_body_bytes: 64 * 1024,
            rate_per_second: 5000,
            rate_burst: 10000,
            request_timeout_ms: 10_000,
            read_wait_ms: 5_000,
        }
    }
}

/// The key vault.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// A file holding the key-encryption key (32 bytes as 64 hex digits or
    /// base64), outside the data directory (`TONGBAN_VAULT_KEK_FILE`).
    pub kek_file: Option<PathBuf>,
    /// The key-encryption key itself, from `TONGBAN_VAULT_KEK` only: a key
    /// written into the configuration file would travel with every copy
    /// of it.
    #[serde(skip)]
    pub kek: Option<Secret>,
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
    /// The key vault's key-encryption key.
    pub vault: VaultConfig,
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
            vault: VaultConfig::default(),
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
        env_parse("LISTEN", &mut config.listen)?;
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
        if let Some(k) = env("VAULT_KEK") {
            config.vault.kek = Some(Secret::new(k));
        }
        if let Some(f) = env("VAULT_KEK_FILE") {
            config.vault.kek_file = Some(PathBuf::from(f));
        }
        if let Some(j) = env("JWKS_FILE") {
            config.auth.jwks_file = Some(PathBuf::from(j));
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
        Ok(config)
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
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
