//! Region signing keys as an operator manages them: each key has an id
//! (kid), a status and a not-before time, and lives in a
//! [`RegionKeyStore`] that every replica of a hub reads — key files in a
//! shared directory ([`FileRegionKeys`]) or a database (the PostgreSQL
//! store of `tongban-vault-postgres`).
//!
//! Rules, the same for every store:
//! - a region's **newest active** key signs new codes ([`signing_keys`]);
//!   older active keys still verify what they signed (rotation);
//! - a **retired** key verifies nothing: codes it signed are refused; it
//!   stays listed (and published) so that peers drop it too;
//! - the signing key cannot be retired: rotate first
//!   ([`RegionKeyError::RetiringSigningKey`]).
//!
//! A region with no key gets one on first use ([`RegionKeyStore::create_first`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use tongban_kernel::DivisionCode;

use crate::token::RegionKey;
use crate::vault::VaultError;

/// Whether a key may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Verifies what it signed; the region's newest active key also signs.
    Active,
    /// Verifies nothing any more.
    Retired,
}

impl KeyStatus {
    /// `active` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    /// Parses `active` or `retired`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// Errors of a region key store.
#[derive(Debug, Error)]
pub enum RegionKeyError {
    /// The store could not be read or written.
    #[error("region keys in {store}: {message}")]
    Storage {
        /// Which store (a directory, a database URL without its password).
        store: String,
        /// What failed.
        message: String,
    },
    /// A stored key is malformed (wrong size, a kid that does not match its key).
    #[error("region key {at} is not valid: {message}")]
    Corrupt {
        /// Where the key is (a file, a row).
        at: String,
        /// What is wrong.
        message: String,
    },
    /// No such key in the region.
    #[error("region {region} has no key {kid} (see `tongban keys list --region {region}`)")]
    UnknownKey {
        /// The region.
        region: DivisionCode,
        /// The key id asked for.
        kid: String,
    },
    /// Retiring the key that signs would leave the region unable to sign.
    #[error(
        "key {kid} signs region {region}'s codes; rotate first (`tongban keys rotate --region \
         {region}`), then retire it"
    )]
    RetiringSigningKey {
        /// The region.
        region: DivisionCode,
        /// The signing key's id.
        kid: String,
    },
    /// The key-encryption key does not open a wrapped key.
    #[error(transparent)]
    Kek(#[from] VaultError),
}

/// A region signing key with its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRegionKey {
    region: DivisionCode,
    kid: String,
    /// Active or retired.
    pub status: KeyStatus,
    /// When it was created; the newest active key of a region signs.
    pub not_before: OffsetDateTime,
    /// When it was retired.
    pub retired_at: Option<OffsetDateTime>,
    seed: [u8; 32],
}

impl fmt::Debug for StoredRegionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRegionKey")
            .field("region", &self.region)
            .field("kid", &self.kid)
            .field("status", &self.status)
            .field("not_before", &self.not_before)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl StoredRegionKey {
    /// A new random active key for `region`, valid from `now`.
    pub fn generate(region: DivisionCode, now: OffsetDateTime) -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let kid = RegionKey::from_seed(region, seed).kid().to_owned();
        Self {
            region,
            kid,
            status: KeyStatus::Active,
            not_before: whole_seconds(now),
            retired_at: None,
            seed,
        }
    }

    /// A key read back from a store; refused when `kid` is not the id of
    /// the key `seed` makes for `region` (`at` names where it was read).
    pub fn from_parts(
        at: &str,
        region: DivisionCode,
        kid: &str,
        status: KeyStatus,
        not_before: OffsetDateTime,
        retired_at: Option<OffsetDateTime>,
        seed: [u8; 32],
    ) -> Result<Self, RegionKeyError> {
        let key = RegionKey::from_seed(region, seed);
        if key.kid() != kid {
            return Err(RegionKeyError::Corrupt {
                at: at.to_owned(),
                message: format!(
                    "its key id is {kid} but its key has the id {} (altered or misplaced)",
                    key.kid()
                ),
            });
        }
        Ok(Self {
            region,
            kid: kid.to_owned(),
            status,
            not_before,
            retired_at,
            seed,
        })
    }

    /// The region it signs for.
    pub fn region(&self) -> DivisionCode {
        self.region
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32-byte secret (for a store that wraps it before writing).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The signing key.
    pub fn signing_key(&self) -> RegionKey {
        RegionKey::from_seed(self.region, self.seed)
    }

    /// This key retired at `at`.
    pub fn retired(mut self, at: OffsetDateTime) -> Self {
        self.status = KeyStatus::Retired;
        self.retired_at = Some(whole_seconds(at));
        self
    }

    /// The public half as a hub publishes it (`signing`: whether it is the
    /// region's signing key).
    pub fn public(&self, signing: bool) -> PublicRegionKey {
        let key = self.signing_key().published();
        let public_key = hex::decode(&key.public_key)
            .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
            .unwrap_or_default();
        PublicRegionKey {
            region: self.region.to_string(),
            kid: self.kid.clone(),
            algorithm: "EdDSA".into(),
            curve: "Ed25519".into(),
            public_key,
            status: self.status,
            signing,
            not_before: self.not_before,
            retired_at: self.retired_at,
        }
    }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// A region key as published at `/.well-known/tongban/keys.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicRegionKey {
    /// The region (division code).
    pub region: String,
    /// The key id, as in a code token's protected header.
    pub kid: String,
    /// `EdDSA` (COSE algorithm of the tokens).
    pub algorithm: String,
    /// `Ed25519`.
    pub curve: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
    /// `active` or `retired`.
    pub status: KeyStatus,
    /// Whether it signs the region's new codes.
    pub signing: bool,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// When it was retired.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub retired_at: Option<OffsetDateTime>,
}

/// The key that signs for each region: its newest active key.
pub fn signing_keys(keys: &[StoredRegionKey]) -> BTreeMap<DivisionCode, &StoredRegionKey> {
    let mut out: BTreeMap<DivisionCode, &StoredRegionKey> = BTreeMap::new();
    for key in keys.iter().filter(|k| k.status == KeyStatus::Active) {
        let newer = out
            .get(&key.region)
            .is_none_or(|k| (key.not_before, &key.kid) > (k.not_before, &k.kid));
        if newer {
            out.insert(key.region, key);
        }
    }
    out
}

/// Every key published, sorted by region then age, flagged when it signs.
pub fn published(keys: &[StoredRegionKey]) -> Vec<PublicRegionKey> {
    let signing = signing_keys(keys);
    let mut out: Vec<PublicRegionKey> = keys
        .iter()
        .map(|k| k.public(signing.get(&k.region).is_some_and(|s| s.kid == k.kid)))
        .collect();
    out.sort_by(|a, b| (&a.region, a.not_before, &a.kid).cmp(&(&b.region, b.not_before, &b.kid)));
    out
}

/// Checks that `kid` of `region` may be retired among `keys` and returns it.
pub fn retirable<'k>(
    keys: &'k [StoredRegionKey],
    region: DivisionCode,
    kid: &str,
) -> Result<&'k StoredRegionKey, RegionKeyError> {
    let key = keys
        .iter()
        .find(|k| k.region == region && k.kid == kid)
        .ok_or_else(|| RegionKeyError::UnknownKey {
            region,
            kid: kid.to_owned(),
        })?;
    if signing_keys(keys)
        .get(&region)
        .is_some_and(|s| s.kid == kid)
    {
        return Err(RegionKeyError::RetiringSigningKey {
            region,
            kid: kid.to_owned(),
        });
    }
    Ok(key)
}

/// Where a hub's region keys live. Every replica of a hub reads the same
/// store, so they sign with the same keys and verify each other's codes.
pub trait RegionKeyStore: Send + Sync {
    /// Where the keys are, for messages (never a password).
    fn describe(&self) -> String;
    /// Every key, retired ones included.
    fn load(&self) -> Result<Vec<StoredRegionKey>, RegionKeyError>;
    /// Creates an active key for `region` unless it has one.
    fn create_first(&self, region: DivisionCode) -> Result<(), RegionKeyError>;
    /// Creates a new active key for `region`, which signs from now on; the
    /// older keys still verify until retired.
    fn rotate(&self, region: DivisionCode) -> Result<StoredRegionKey, RegionKeyError>;
    /// Retires `kid` of `region`: codes it signed are refused from now on.
    fn retire(&self, region: DivisionCode, kid: &str) -> Result<StoredRegionKey, RegionKeyError>;
}

/// Region keys as files in one directory (default `<data>/keys`; point
/// every replica at the same directory to share them): `<kid>.key`, JSON
/// with the region, status, not-before and the seed as hex, mode 0600,
/// written atomically. `region-<code>.seed` files of older versions (one
/// hex seed) read as active keys older than any new one.
#[derive(Debug)]
pub struct FileRegionKeys {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    region: String,
    kid: String,
    status: KeyStatus,
    #[serde(with = "time::serde::rfc3339")]
    not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    retired_at: Option<OffsetDateTime>,
    seed: String,
}

impl FileRegionKeys {
    /// The keys in `dir` (created owner-only if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RegionKeyError> {
        let dir = dir.into();
        let this = Self { dir };
        tongban_store::private_fs::create_dir_all(&this.dir)
            .map_err(|e| this.storage("failed to create the key directory", e))?;
        Ok(this)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn storage(&self, what: &str, e: impl fmt::Display) -> RegionKeyError {
        RegionKeyError::Storage {
            store: self.describe(),
            message: format!("{what}: {e}"),
        }
    }

    fn path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.key"))
    }

    fn legacy_path(&self, region: DivisionCode) -> PathBuf {
        self.dir.join(format!("region-{region}.seed"))
    }

    fn corrupt(path: &Path, message: impl fmt::Display) -> RegionKeyError {
        RegionKeyError::Corrupt {
            at: path.display().to_string(),
            message: message.to_string(),
        }
    }

    fn seed_of(path: &Path, text: &str) -> Result<[u8; 32], RegionKeyError> {
        let bytes = hex::decode(text.trim()).map_err(|e| Self::corrupt(path, e))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| Self::corrupt(path, "a key holds 32 bytes written as 64 hex digits"))
    }

    fn read_key(path: &Path) -> Result<StoredRegionKey, RegionKeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| Self::corrupt(path, e))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| Self::corrupt(path, e))?;
        let region = DivisionCode::parse(&file.region).map_err(|e| Self::corrupt(path, e))?;
        StoredRegionKey::from_parts(
            &path.display().to_string(),
            region,
            &file.kid,
            file.status,
            file.not_before,
            file.retired_at,
            Self::seed_of(path, &file.seed)?,
        )
    }

    fn write(&self, key: &StoredRegionKey, replace: bool) -> Result<(), RegionKeyError> {
        let file = KeyFile {
            region: key.region.to_string(),
            kid: key.kid.clone(),
            status: key.status,
            not_before: key.not_before,
            retired_at: key.retired_at,
            seed: hex::encode(key.seed),
        };
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|e| self.storage("failed to encode a key", e))?;
        text.push('\n');
        let path = self.path(&key.kid);
        let written = if replace {
            tongban_store::private_fs::write_atomic(&path, text.as_bytes())
        } else {
            tongban_store::private_fs::write_atomic_new(&path, text.as_bytes())
        };
        written.map_err(|e| self.storage(&format!("failed to write {}", path.display()), e))
    }
}

impl RegionKeyStore for FileRegionKeys {
    fn describe(&self) -> String {
        format!("the key directory {}", self.dir.display())
    }

    fn load(&self) -> Result<Vec<StoredRegionKey>, RegionKeyError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| self.storage("failed to list the key directory", e))?;
        let mut keys: Vec<StoredRegionKey> = Vec::new();
        let mut legacy = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.storage("failed to list the key directory", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                continue; // a temporary file being written
            }
            if name.ends_with(".key") {
                keys.push(Self::read_key(&path)?);
            } else if let Some(code) = name
                .strip_prefix("region-")
                .and_then(|r| r.strip_suffix(".seed"))
            {
                let Ok(region) = DivisionCode::parse(code) else {
                    continue;
                };
                let text = std::fs::read_to_string(&path).map_err(|e| Self::corrupt(&path, e))?;
                let seed = Self::seed_of(&path, &text)?;
                let kid = RegionKey::from_seed(region, seed).kid().to_owned();
                legacy.push(StoredRegionKey {
                    region,
                    kid,
                    status: KeyStatus::Active,
                    not_before: OffsetDateTime::UNIX_EPOCH,
                    retired_at: None,
                    seed,
                });
            }
        }
        // A legacy key rewritten as `<kid>.key` (when retired) is that file.
        for key in legacy {
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
        keys.sort_by(|a, b| {
            (a.region, a.not_before, &a.kid).cmp(&(b.region, b.not_before, &b.kid))
        });
        Ok(keys)
    }

    fn create_first(&self, region: DivisionCode) -> Result<(), RegionKeyError> {
        if signing_keys(&self.load()?).contains_key(&region) {
            return Ok(());
        }
        self.write(
            &StoredRegionKey::generate(region, OffsetDateTime::now_utc()),
            false,
        )
    }

    fn rotate(&self, region: DivisionCode) -> Result<StoredRegionKey, RegionKeyError> {
        let keys = self.load()?;
        let mut now = OffsetDateTime::now_utc();
        // Strictly newer than the current signing key, even within its second.
        if let Some(current) = signing_keys(&keys).get(&region) {
            if whole_seconds(now) <= current.not_before {
                now = current.not_before + time::Duration::seconds(1);
            }
        }
        let key = StoredRegionKey::generate(region, now);
        self.write(&key, false)?;
        Ok(key)
    }

    fn retire(&self, region: DivisionCode, kid: &str) -> Result<StoredRegionKey, RegionKeyError> {
        let keys = self.load()?;
        let key = retirable(&keys, region, kid)?
            .clone()
            .retired(OffsetDateTime::now_utc());
        self.write(&key, true)?;
        // An older version's file of the same key goes: `<kid>.key` says it is retired.
        let legacy = self.legacy_path(region);
        let same = std::fs::read_to_string(&legacy)
            .ok()
            .and_then(|text| Self::seed_of(&legacy, &text).ok())
            == Some(key.seed);
        if same {
            std::fs::remove_file(&legacy)
                .map_err(|e| self.storage(&format!("failed to remove {}", legacy.display()), e))?;
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beijing() -> DivisionCode {
        DivisionCode::parse("11").unwrap()
    }

    #[test]
    fn rotation_makes_the_new_key_sign_and_the_signing_key_cannot_be_retired() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileRegionKeys::open(dir.path()).unwrap();
        store.create_first(beijing()).unwrap();
        store.create_first(beijing()).unwrap();
        let keys = store.load().unwrap();
        assert_eq!(keys.len(), 1);
        let first = keys[0].kid().to_owned();
        let second = store.rotate(beijing()).unwrap();
        let keys = store.load().unwrap();
        assert_eq!(signing_keys(&keys)[&beijing()].kid(), second.kid());
        assert!(matches!(
            store.retire(beijing(), second.kid()),
            Err(RegionKeyError::RetiringSigningKey { .. })
        ));
        let retired = store.retire(beijing(), &first).unwrap();
        assert_eq!(retired.status, KeyStatus::Retired);
        let keys = store.load().unwrap();
        assert_eq!(keys.len(), 2);
        let public = published(&keys);
        assert_eq!(public[0].kid, first);
        assert_eq!(public[0].status, KeyStatus::Retired);
        assert!(public[1].signing && !public[0].signing);
        assert!(matches!(
            store.retire(beijing(), "11-nope"),
            Err(RegionKeyError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_key_file_of_an_older_version_is_an_active_key_and_can_be_retired() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("region-11.seed"), hex::encode([4u8; 32])).unwrap();
        let store = FileRegionKeys::open(dir.path()).unwrap();
        let keys = store.load().unwrap();
        let old = RegionKey::from_seed(beijing(), [4; 32]).kid().to_owned();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), old);
        store.rotate(beijing()).unwrap();
        store.retire(beijing(), &old).unwrap();
        assert!(!dir.path().join("region-11.seed").exists());
        let keys = store.load().unwrap();
        assert_eq!(
            keys.iter().find(|k| k.kid() == old).unwrap().status,
            KeyStatus::Retired
        );
    }

    #[test]
    fn a_key_file_whose_kid_does_not_match_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileRegionKeys::open(dir.path()).unwrap();
        let key = store.rotate(beijing()).unwrap();
        let path = dir.path().join(format!("{}.key", key.kid()));
        let text = std::fs::read_to_string(&path).unwrap();
        let altered = text.replace(&hex::encode(key.seed()), &hex::encode([1u8; 32]));
        std::fs::write(&path, altered).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains(key.kid()), "{err}");
    }
}
