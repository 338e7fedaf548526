//! A node: what `serve` and `demo` run on. Opens the event store (embedded
//! under `<data>/events`, or EventStoreDB with `--store esdb://…`), the
//! read models (`<data>/projections`), the key vault (`<data>/vault.redb`,
//! or PostgreSQL with `--vault postgres://…`, which replicas share), region
//! keys (files in `<data>/keys` or `[keys] dir`, or the vault's
//! PostgreSQL; reloaded every `[keys] reload_secs`), starts the projections
//! and builds every service's context (health code, catalogue, applications
//! and inbox), and runs the residence process manager.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use time::OffsetDateTime;
use tongban_cases::graphql::{CasesApi, NoEmploymentRegistry};
use tongban_cases::{
    CasesService, CasesViews, HealthCodeGreenShare, InboxService, InboxViews, ResidenceProcess,
};
use tongban_catalog::graphql::CatalogApi;
use tongban_catalog::{CatalogService, CatalogViews};
use tongban_health_code::graphql::{HealthCodeApi, Keyring, SharedStore};
use tongban_health_code::handler::HealthCodeService;
use tongban_health_code::overrides::OverrideConfig;
use tongban_health_code::projections::HealthCodeViews;
use tongban_health_code::reactions;
use tongban_health_code::region_keys::{FileRegionKeys, RegionKeyStore};
use tongban_health_code::vault::kek::development_kek_path;
use tongban_health_code::vault::{KeyEncryptionKey, KeyVault, LocalKek, RedbKeyVault};
use tongban_kernel::{Clock, Divisions};
use tongban_projection::{
    EmbeddedReadModels, LeaseConfig, ProjectionRunner, ReadModelStore, RunnerConfig,
};
use tongban_store::chain::{ChainReport, Head};
use tongban_store::metadata::StreamMetadataResult;
use tongban_store::{
    AppendResult, Direction, EmbeddedStore, EventData, EventFilter, EventStore, ExpectedRevision,
    Position, PositionRange, ReadFrom, RecordedEvent, StoreError, StreamMetadata, StreamName,
    SubscribeFrom, Subscription,
};

use crate::config::{Config, KeyStoreKind, Mode};
use crate::metrics::Metrics;

/// The system clock, which the demo can hold at a simulated time while it
/// seeds history.
#[derive(Debug, Default)]
pub struct NodeClock {
    held: Mutex<Option<OffsetDateTime>>,
}

impl NodeClock {
    /// Holds the clock at `at` (demo seeding).
    pub fn hold(&self, at: OffsetDateTime) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// Lets the clock follow the system time again.
    pub fn release(&self) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

impl Clock for NodeClock {
    fn now(&self) -> OffsetDateTime {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or_else(OffsetDateTime::now_utc)
    }
}

/// Counts appends for `/metrics`.
struct MeteredStore {
    inner: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl EventStore for MeteredStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
        let result = self.inner.append(stream, expected, events).await;
        if result.is_ok() {
            self.metrics.append(types.iter().map(String::as_str));
        }
        result
    }
    async fn append_to_system_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        self.inner
            .append_to_system_stream(stream, expected, events)
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom<u64>,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner
            .read_stream(stream, direction, from, max_count)
            .await
    }
    async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom<Position>,
        max_count: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner
            .read_all(direction, from, max_count, filter)
            .await
    }
    fn subscribe_to_stream(&self, stream: &StreamName, from: SubscribeFrom<u64>) -> Subscription {
        self.inner.subscribe_to_stream(stream, from)
    }
    fn subscribe_to_all(&self, from: SubscribeFrom<Position>, filter: EventFilter) -> Subscription {
        self.inner.subscribe_to_all(from, filter)
    }
    async fn get_stream_metadata(
        &self,
        stream: &StreamName,
    ) -> Result<StreamMetadataResult, StoreError> {
        self.inner.get_stream_metadata(stream).await
    }
    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, StoreError> {
        self.inner
            .set_stream_metadata(stream, expected, metadata)
            .await
    }
    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        self.inner.delete_stream(stream, expected).await
    }
    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Position, StoreError> {
        self.inner.tombstone_stream(stream, expected).await
    }
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.inner.head().await
    }
    async fn verify_chain(&self, range: PositionRange) -> Result<ChainReport, StoreError> {
        self.inner.verify_chain(range).await
    }
}

/// Everything a running node holds.
pub struct Node {
    /// The configuration in force.
    pub config: Config,
    /// The log (metered).
    pub store: Arc<dyn EventStore>,
    /// The projections.
    pub runner: Arc<ProjectionRunner>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<NodeClock>,
    /// The health-code service's context.
    pub health_code: Arc<HealthCodeApi>,
    /// The catalogue's context.
    pub catalog: Arc<CatalogApi>,
    /// The applications' and inbox's context.
    pub cases: Arc<CasesApi>,
    residence: tokio::task::JoinHandle<()>,
    key_reload: tokio::task::JoinHandle<()>,
    embedded: Option<EmbeddedStore>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("data", &self.config.data)
            .finish_non_exhaustive()
    }
}

/// Finds the division code files: configured, the repository's copy, or
/// `shared/divisions` under the working directory.
pub fn divisions_dir(config: &Config) -> PathBuf {
    if let Some(d) = &config.divisions {
        return d.clone();
    }
    let built_in = Divisions::default_dir();
    if built_in.join("provinces.csv").exists() {
        return built_in;
    }
    PathBuf::from("shared/divisions")
}

/// Opens the configured event store: the embedded one under
/// `<data>/events`, or an EventStoreDB/KurrentDB node or cluster.
fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn EventStore>, Option<EmbeddedStore>)> {
    match config.store.as_deref() {
        None | Some("embedded") => {
            let dir = config.data.join("events");
            let store = EmbeddedStore::open(&dir)
                .with_context(|| format!("failed to open the event store at {}", dir.display()))?;
            Ok((Arc::new(store.clone()), Some(store)))
        }
        Some(url) if url.starts_with("esdb://") || url.starts_with("esdb+discover://") => {
            let store =
                tongban_store_esdb::EsdbStore::connect(tongban_store_esdb::EsdbConfig::new(url))
                    .context(
                        "failed to set up the EventStoreDB backend (check the connection string)",
                    )?;
            Ok((Arc::new(store), None))
        }
        Some(other) => {
            bail!("unknown store {other:?}: use `embedded` or `esdb://host:port?tls=false`")
        }
    }
}

/// Creates the data directory owner-only (0700), or tightens an existing
/// one (and everything in it) that the group or others can read: it holds
/// the log, read models and keys, all of them personal data or secrets.
/// Older versions created it 0755 with 0644 files.
fn secure_data_dir(data: &Path) -> anyhow::Result<()> {
    if data.exists() {
        let changed = tongban_store::private_fs::tighten_tree(data).with_context(|| {
            format!(
                "failed to restrict the data directory {} to its owner",
                data.display()
            )
        })?;
        if !changed.is_empty() {
            tracing::warn!(
                data = %data.display(),
                tightened = changed.len(),
                first = %changed[0].display(),
                "the data directory was readable by other users; restricted it and its files to the owner (0700/0600)"
            );
        }
    }
    tongban_store::private_fs::create_dir_all(data)
        .with_context(|| format!("failed to create the data directory {}", data.display()))
}

/// The key-encryption key that wraps the vault's data keys: from
/// `TONGBAN_VAULT_KEK`, or the file `[vault] kek_file` /
/// `TONGBAN_VAULT_KEK_FILE`. Production refuses to start without one, or
/// with a file inside the data directory (a copy of the directory would
/// then carry its own key). Development without one generates
/// `<data>/vault.kek` — convenient, and exactly as weak as that sounds,
/// hence the warning.
fn key_encryption_key(config: &Config) -> anyhow::Result<Arc<dyn KeyEncryptionKey>> {
    let vault = &config.vault;
    let kek = match (&vault.kek, &vault.kek_file) {
        (Some(_), Some(_)) => {
            bail!("both TONGBAN_VAULT_KEK and a key-encryption key file are configured; keep one")
        }
        (Some(key), None) => LocalKek::from_text(key.expose(), "TONGBAN_VAULT_KEK")?,
        (None, Some(file)) => {
            if is_inside(file, &config.data) {
                if config.mode == Mode::Production {
                    bail!(
                        "the key-encryption key file {} is inside the data directory {}: keep it \
                         elsewhere (e.g. /etc/tongban/vault.kek), or anyone with a copy of the \
                         data has the key too",
                        file.display(),
                        config.data.display()
                    );
                }
                tracing::warn!(
                    file = %file.display(),
                    "the key-encryption key file is inside the data directory; production refuses this"
                );
            }
            LocalKek::from_file(file)?
        }
        (None, None) if config.mode == Mode::Production => bail!(
            "production mode needs a key-encryption key for the key vault: set [vault] kek_file \
             (or TONGBAN_VAULT_KEK_FILE) to a file outside the data directory holding 32 random \
             bytes as hex (`openssl rand -hex 32`), or TONGBAN_VAULT_KEK to the key itself"
        ),
        (None, None) => {
            let path = development_kek_path(&config.data);
            let (kek, created) = LocalKek::open_or_generate(&path)?;
            tracing::warn!(
                path = %path.display(),
                created,
                "DEVELOPMENT MODE: the key vault's key-encryption key is kept in the data \
                 directory, beside the keys it protects; production refuses this and needs \
                 [vault] kek_file or TONGBAN_VAULT_KEK"
            );
            kek
        }
    };
    Ok(Arc::new(kek))
}

/// A vault, and the PostgreSQL database it is in (if it is).
type OpenedVault = (
    Arc<dyn KeyVault>,
    Option<Arc<tongban_vault_postgres::Database>>,
);

/// Opens the configured key vault: `<data>/vault.redb`, or PostgreSQL
/// (migrated at start-up). Returns the database too, for region keys.
fn open_vault(config: &Config, kek: Arc<dyn KeyEncryptionKey>) -> anyhow::Result<OpenedVault> {
    match config.vault_postgres_url()? {
        None => {
            let path = config.data.join("vault.redb");
            let vault = RedbKeyVault::open(&path, kek)
                .with_context(|| format!("failed to open the key vault {}", path.display()))?;
            Ok((Arc::new(vault), None))
        }
        Some(url) => {
            let db = tongban_vault_postgres::Database::connect(url)?;
            let vault = tongban_vault_postgres::PostgresKeyVault::open(db.clone(), kek)
                .with_context(|| format!("failed to open the key vault at {}", db.shown_url()))?;
            Ok((Arc::new(vault), Some(db)))
        }
    }
}

/// Opens the configured region key store: key files (`[keys] dir`, default
/// `<data>/keys`) or the vault's PostgreSQL (`db`, connected if `None`).
fn open_key_store(
    config: &Config,
    kek: Option<Arc<dyn KeyEncryptionKey>>,
    db: Option<Arc<tongban_vault_postgres::Database>>,
) -> anyhow::Result<Arc<dyn RegionKeyStore>> {
    match config.key_store()? {
        KeyStoreKind::Files => {
            let dir = config.keys_dir();
            let store = FileRegionKeys::open(&dir)
                .with_context(|| format!("failed to open the region keys in {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        KeyStoreKind::Postgres => {
            let db = match db {
                Some(db) => db,
                None => match config.vault_postgres_url()? {
                    Some(url) => tongban_vault_postgres::Database::connect(url)?,
                    None => bail!("region keys in PostgreSQL need [vault] url = postgres://…"),
                },
            };
            let kek = match kek {
                Some(kek) => kek,
                None => key_encryption_key(config)?,
            };
            let store = tongban_vault_postgres::PostgresRegionKeys::open(db.clone(), kek)
                .with_context(|| format!("failed to open the region keys at {}", db.shown_url()))?;
            Ok(Arc::new(store))
        }
    }
}

/// The region key store of `config`, for `tongban keys` (no node opened).
pub fn region_key_store(config: &Config) -> anyhow::Result<Arc<dyn RegionKeyStore>> {
    open_key_store(config, None, None)
}

/// Whether `file` lies under `dir` (both resolved when they exist).
fn is_inside(file: &Path, dir: &Path) -> bool {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let file = resolve(file);
    file.starts_with(resolve(dir))
}

impl Node {
    /// Opens a node on `config`'s data directory.
    pub async fn open(config: Config, clock: Arc<NodeClock>) -> anyhow::Result<Self> {
        let data: &Path = &config.data;
        secure_data_dir(data)?;
        // Before anything is opened: a missing or misplaced key stops the
        // start with nothing left open.
        let kek = key_encryption_key(&config)?;
        let dir = divisions_dir(&config);
        let divisions = Arc::new(Divisions::load_from(&dir).with_context(|| {
            format!(
                "failed to load the division codes from {} (set TONGBAN_DIVISIONS)",
                dir.display()
            )
        })?);
        let metrics = Arc::new(Metrics::default());
        let (inner, embedded) = open_store(&config)?;
        let store: Arc<dyn EventStore> = Arc::new(MeteredStore {
            inner,
            metrics: metrics.clone(),
        });
        let models: Arc<dyn ReadModelStore> =
            Arc::new(EmbeddedReadModels::beside(data).context("failed to open the read models")?);
        let runner = Arc::new(ProjectionRunner::new(
            store.clone(),
            models.clone(),
            RunnerConfig::default(),
        ));
        let views = HealthCodeViews::default();
        let tables = views.tables.clone();
        runner
            .start(Arc::new(views))
            .context("failed to start the health-code projection")?;
        for (name, projection) in [
            ("catalog", Arc::new(CatalogViews::default()) as Arc<_>),
            ("cases", Arc::new(CasesViews::default()) as Arc<_>),
            ("inbox", Arc::new(InboxViews::default()) as Arc<_>),
        ] {
            runner
                .start(projection)
                .with_context(|| format!("failed to start the {name} projection"))?;
        }
        let (vault, database) = open_vault(&config, kek.clone())?;
        let key_store = open_key_store(&config, Some(kek), database)?;
        let service = Arc::new(HealthCodeService::new(
            Arc::new(store.clone()),
            clock.clone(),
            divisions.clone(),
            vault.clone(),
            OverrideConfig::default(),
        ));
        let loaded = service
            .rebuild()
            .await
            .context("failed to load the health-code history")?;
        let keyring = Arc::new(Keyring::new(key_store));
        keyring
            .reload(&service)
            .context("failed to install the region keys")?;
        let key_reload = tokio::spawn(reload_keys(
            keyring.clone(),
            service.clone(),
            Duration::from_secs(config.keys.reload_secs.max(1)),
        ));
        tracing::info!(events = loaded, "health-code history loaded");
        // Reactions (scan → evidence, override → persons, risk area → the
        // persons it touches): process managers on the runner, one owner
        // among replicas by a lease in the log.
        reactions::start_reactions(
            &runner,
            store.clone(),
            models,
            service.clone(),
            LeaseConfig::default(),
        )
        .context("failed to start the health-code reactions")?;
        let read_wait = Duration::from_millis(config.limits.read_wait_ms);
        let shared = Arc::new(store.clone());
        let catalog_service = Arc::new(CatalogService::new(
            shared.clone(),
            clock.clone(),
            divisions.clone(),
        ));
        let cases_service = Arc::new(CasesService::new(
            shared.clone(),
            clock.clone(),
            divisions.clone(),
            catalog_service.clone(),
            vault.clone(),
        ));
        let green_share = HealthCodeGreenShare::new(
            NoEmploymentRegistry,
            runner
                .read_models(tongban_health_code::projections::VIEWS)
                .context("failed to open the health-code read models")?,
        );
        let catalog = Arc::new(CatalogApi {
            commands: catalog_service,
            store: store.clone(),
            runner: runner.clone(),
            read_wait,
        });
        let cases = Arc::new(CasesApi {
            service: cases_service.clone(),
            inbox: InboxService::new(shared, clock.clone()),
            green_share: Arc::new(green_share),
            store: store.clone(),
            runner: runner.clone(),
            divisions: divisions.clone(),
            read_wait,
        });
        let residence = tokio::spawn(run_residence_process(ResidenceProcess::new(
            cases_service,
            service.clone(),
        )));
        let health_code = Arc::new(HealthCodeApi {
            service,
            store: store.clone(),
            runner: runner.clone(),
            keyring,
            vault,
            divisions,
            clock: clock.clone(),
            read_wait,
            tables,
        });
        Ok(Self {
            config,
            store,
            runner,
            metrics,
            clock,
            health_code,
            catalog,
            cases,
            residence,
            key_reload,
            embedded,
        })
    }

    /// Stops the projections and flushes the store.
    pub async fn close(mut self) {
        let embedded = self.embedded.take();
        let Self {
            runner,
            health_code,
            catalog,
            cases,
            residence,
            key_reload,
            store,
            ..
        } = self;
        residence.abort();
        let _ = residence.await;
        key_reload.abort();
        let _ = key_reload.await;
        drop((health_code, catalog, cases));
        drop(store);
        match Arc::try_unwrap(runner) {
            Ok(runner) => runner.shutdown().await,
            Err(_) => tracing::warn!("projections still in use at shutdown; not waiting for them"),
        }
        if let Some(store) = embedded {
            store.close().await;
        }
    }
}

/// Reloads the region keys every `every`, so that a rotation or a
/// retirement made through another replica (or `tongban keys`) reaches
/// this one. The store is read on a blocking thread (PostgreSQL calls wait).
async fn reload_keys(
    keyring: Arc<Keyring>,
    service: Arc<HealthCodeService<SharedStore>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (keyring, service) = (keyring.clone(), service.clone());
        match tokio::task::spawn_blocking(move || keyring.reload(&service)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "failed to reload the region keys"),
            Err(error) => tracing::warn!(%error, "the region key reload stopped"),
        }
    }
}

/// Runs the residence process manager for the node's lifetime: approved
/// changes of residence community become the health-code domain's own
/// command. Handling is idempotent, so after a failure it resumes from the
/// last position handled (or re-reads, which only costs time).
async fn run_residence_process(
    process: ResidenceProcess<SharedStore, HealthCodeService<SharedStore>>,
) {
    let mut last = None;
    loop {
        let (position, error) = process.run(last).await;
        last = position.or(last);
        tracing::warn!(%error, "the residence process manager stopped; restarting in a second");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tongban_kernel::DivisionCode;

    fn config(data: &Path, mode: Mode) -> Config {
        Config {
            data: data.to_path_buf(),
            mode,
            ..Config::default()
        }
    }

    /// Every path under `dir` the group or others may access, with its mode.
    fn shared_paths(dir: &Path) -> Vec<(PathBuf, u32)> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(path) = pending.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                found.push((path.clone(), mode));
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn a_data_directory_created_by_the_hub_has_nothing_the_group_or_others_can_read() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let node = Node::open(
            config(&data, Mode::Development),
            Arc::new(NodeClock::default()),
        )
        .await
        .unwrap();
        crate::auth::dev_key(&data, true).unwrap();
        node.health_code
            .keyring
            .ensure(
                &node.health_code.service,
                DivisionCode::parse("11").unwrap(),
            )
            .unwrap();
        node.close().await;
        assert!(data.join("vault.redb").exists() && data.join("vault.kek").exists());
        let keys: Vec<_> = std::fs::read_dir(data.join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            keys.len() == 1 && keys[0].starts_with("11-") && keys[0].ends_with(".key"),
            "{keys:?}"
        );
        assert_eq!(shared_paths(&data), vec![]);
    }

    #[tokio::test]
    async fn an_old_data_directory_readable_by_others_is_tightened_at_start_up() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("demo-roles.json"), b"[]").unwrap();
        for (path, mode) in [(&data, 0o755), (&data.join("demo-roles.json"), 0o644)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let node = Node::open(
            config(&data, Mode::Development),
            Arc::new(NodeClock::default()),
        )
        .await
        .unwrap();
        node.close().await;
        assert_eq!(shared_paths(&data), vec![]);
    }

    #[tokio::test]
    async fn production_refuses_to_start_without_a_key_encryption_key_or_with_one_in_the_data_directory(
    ) {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let clock = Arc::new(NodeClock::default());
        let err = Node::open(config(&data, Mode::Production), clock.clone())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("kek_file"), "{err:#}");

        let mut inside = config(&data, Mode::Production);
        let kek = data.join("my.kek");
        std::fs::write(&kek, "ab".repeat(32)).unwrap();
        inside.vault.kek_file = Some(kek);
        let err = Node::open(inside, clock.clone()).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("inside the data directory"),
            "{err:#}"
        );

        let mut outside = config(&data, Mode::Production);
        let kek = root.path().join("vault.kek");
        std::fs::write(&kek, "ab".repeat(32)).unwrap();
        outside.vault.kek_file = Some(kek);
        Node::open(outside, clock.clone())
            .await
            .unwrap()
            .close()
            .await;

        // Reopened with another key, the vault is refused with a clear error.
        let mut wrong = config(&data, Mode::Production);
        wrong.vault.kek = Some(crate::config::Secret::new("cd".repeat(32)));
        let err = Node::open(wrong, clock).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("vault.redb") && message.contains("TONGBAN_VAULT_KEK"),
            "{message}"
        );
    }
}
