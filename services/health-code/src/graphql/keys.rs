//! The node's view of its region signing keys: loaded from a
//! [`RegionKeyStore`] that every replica shares (key files in a directory,
//! by default `<data>/keys`, or PostgreSQL) and installed into the service.
//! A replica picks up a rotation or a retirement when it reloads: on a
//! short interval (the gateway's node runs [`Keyring::reload`]), when a
//! region it must sign for has no key, and when a scanned code names a key
//! it does not know yet.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tongban_kernel::DivisionCode;
use tongban_store::EventStore;

use crate::error::HealthCodeError;
use crate::handler::HealthCodeService;
use crate::region_keys::{
    published, signing_keys, FileRegionKeys, KeyStatus, PublicRegionKey, RegionKeyError,
    RegionKeyStore,
};

/// Least time between two reloads caused by unknown key ids: a stream of
/// forged kids must not become a stream of reads of the store.
const MISS_RELOAD_EVERY: Duration = Duration::from_millis(500);

/// The region keys of this node.
pub struct Keyring {
    store: Arc<dyn RegionKeyStore>,
    published: Mutex<Vec<PublicRegionKey>>,
    last_miss_reload: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

fn key_error(e: RegionKeyError) -> HealthCodeError {
    HealthCodeError::Vault(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Keyring {
    /// A keyring of key files in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, HealthCodeError> {
        Ok(Self::new(Arc::new(
            FileRegionKeys::open(dir).map_err(key_error)?,
        )))
    }

    /// A keyring over `store`.
    pub fn new(store: Arc<dyn RegionKeyStore>) -> Self {
        Self {
            store,
            published: Mutex::new(Vec::new()),
            last_miss_reload: Mutex::new(None),
        }
    }

    /// The store the keys come from.
    pub fn store(&self) -> &Arc<dyn RegionKeyStore> {
        &self.store
    }

    /// Reads every key from the store and installs them into `service`:
    /// each region's newest active key signs, its other active keys
    /// verify, retired keys verify nothing. Returns how many keys verify.
    pub fn reload<S: EventStore>(
        &self,
        service: &HealthCodeService<S>,
    ) -> Result<usize, HealthCodeError> {
        let keys = self.store.load().map_err(key_error)?;
        let signing = signing_keys(&keys);
        let verifying: Vec<_> = keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .filter(|k| signing.get(&k.region()).is_none_or(|s| s.kid() != k.kid()))
            .map(|k| k.signing_key())
            .collect();
        let n = signing.len() + verifying.len();
        service.replace_region_keys(
            signing.values().map(|k| k.signing_key()).collect(),
            verifying,
        );
        *lock(&self.published) = published(&keys);
        Ok(n)
    }

    /// [`reload`](Self::reload), under the name of older versions.
    pub fn install_all<S: EventStore>(
        &self,
        service: &HealthCodeService<S>,
    ) -> Result<usize, HealthCodeError> {
        self.reload(service)
    }

    /// Makes sure `region` has a signing key installed: reloads (another
    /// replica may have created it), or creates one in the store.
    pub fn ensure<S: EventStore>(
        &self,
        service: &HealthCodeService<S>,
        region: DivisionCode,
    ) -> Result<(), HealthCodeError> {
        if service.signs_for(region) {
            return Ok(());
        }
        self.reload(service)?;
        if service.signs_for(region) {
            return Ok(());
        }
        self.store.create_first(region).map_err(key_error)?;
        self.reload(service)?;
        Ok(())
    }

    /// Reloads when `token` (a code or place token) names a key `service`
    /// does not know — a rotation on another replica — at most every half
    /// second. Returns whether it reloaded.
    pub fn refresh_for_token<S: EventStore>(
        &self,
        service: &HealthCodeService<S>,
        token: &[u8],
    ) -> Result<bool, HealthCodeError> {
        let Some(kid) = crate::token::peek_kid(token) else {
            return Ok(false);
        };
        if service.knows_kid(&kid) {
            return Ok(false);
        }
        {
            let mut last = lock(&self.last_miss_reload);
            if last.is_some_and(|t| t.elapsed() < MISS_RELOAD_EVERY) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        self.reload(service)?;
        Ok(true)
    }

    /// The public keys as last loaded, for `/.well-known/tongban/keys.json`.
    pub fn published(&self) -> Vec<PublicRegionKey> {
        lock(&self.published).clone()
    }
}

/// Writes a new secret file readable only by its owner (0600), atomically:
/// it appears whole or not at all (never empty or short after a crash), and
/// an existing file is never replaced (`AlreadyExists`).
pub fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    tongban_store::private_fs::write_atomic_new(path, text.as_bytes())
}
