//! Region signing keys kept on disk (`<data>/keys/region-<code>.seed`, mode
//! 0600 in a 0700 directory, written atomically), created on first use and installed into the service at start, so
//! codes signed before a restart still verify after it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::RngCore;
use tongban_kernel::DivisionCode;
use tongban_store::EventStore;

use crate::error::HealthCodeError;
use crate::handler::HealthCodeService;
use crate::token::RegionKey;

/// The region keys of this node.
#[derive(Debug)]
pub struct Keyring {
    dir: PathBuf,
    installed: Mutex<BTreeSet<DivisionCode>>,
}

fn key_error(what: &str, path: &Path, e: impl std::fmt::Display) -> HealthCodeError {
    HealthCodeError::Vault(format!("{what} {}: {e}", path.display()))
}

impl Keyring {
    /// A keyring in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, HealthCodeError> {
        let dir = dir.into();
        tongban_store::private_fs::create_dir_all(&dir)
            .map_err(|e| key_error("failed to create the key directory", &dir, e))?;
        Ok(Self {
            dir,
            installed: Mutex::new(BTreeSet::new()),
        })
    }

    fn path(&self, region: &DivisionCode) -> PathBuf {
        self.dir.join(format!("region-{region}.seed"))
    }

    /// Installs every key found on disk into `service`. Returns how many.
    pub fn install_all<S: EventStore>(
        &self,
        service: &HealthCodeService<S>,
    ) -> Result<usize, HealthCodeError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| key_error("failed to list the key directory", &self.dir, e))?;
        let mut n = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(code) = name
                .strip_prefix("region-")
                .and_then(|r| r.strip_suffix(".seed"))
            else {
                continue;
            };
            let Ok(region) = DivisionCode::parse(code) else {
                continue;
            };
            self.ensure(service, region)?;
            n += 1;
        }
        Ok(n)
    }

    /// Makes sure `region` has a signing key installed: loads it from disk,
    /// or creates and stores a new one.
    pub fn ensure<S: EventStore>(
        &self,
        service: &HealthCodeService<S>,
        region: DivisionCode,
    ) -> Result<(), HealthCodeError> {
        let mut installed = self
            .installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if installed.contains(&region) {
            return Ok(());
        }
        let path = self.path(&region);
        let seed = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .map_err(|e| key_error("the region key file is not hex", &path, e))?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    key_error(
                        "the region key file must hold 32 bytes",
                        &path,
                        "wrong size",
                    )
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                write_secret(&path, &hex::encode(seed))
                    .map_err(|e| key_error("failed to write the region key", &path, e))?;
                seed
            }
            Err(e) => return Err(key_error("failed to read the region key", &path, e)),
        };
        service.install_region_key(RegionKey::from_seed(region, seed));
        installed.insert(region);
        Ok(())
    }
}

/// Writes a new secret file readable only by its owner (0600), atomically:
/// it appears whole or not at all (never empty or short after a crash), and
/// an existing file is never replaced (`AlreadyExists`).
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    tongban_store::private_fs::write_atomic_new(path, text.as_bytes())
}
