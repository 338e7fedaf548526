//! Personal data, sealed with a per-person data key held outside the event log.
//!
//! Events carry only [`SealedPersonalData`] (ChaCha20-Poly1305 ciphertext
//! bound to the person id). The data keys live in a [`KeyVault`]; erasing a
//! person's key makes every copy of their personal data in the log unreadable
//! while the log and its hash chain stay intact (crypto-shredding).
//! [`RedbKeyVault`] is the durable on-disk vault; [`MemoryKeyVault`] serves
//! tests.

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use thiserror::Error;
use tongban_kernel::PersonId;

use crate::resident_id::IdentityDocument;

/// Errors of the key vault and of sealing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// The person's key was erased (or never created): their data is gone.
    #[error("no data key for person {0}: personal data erased")]
    KeyErased(PersonId),
    /// Decryption failed: wrong key or altered ciphertext.
    #[error("sealed personal data of person {0} failed authentication")]
    Tampered(PersonId),
    /// The vault's storage failed.
    #[error("key vault storage at {path}: {message}")]
    Storage {
        /// Where the vault lives.
        path: String,
        /// What failed.
        message: String,
    },
}

/// A 256-bit data key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Holds one data key per person, outside the event log.
pub trait KeyVault: Send + Sync {
    /// Returns the person's key, creating it if there is none yet. A person
    /// whose key was erased gets no new key ([`VaultError::KeyErased`]).
    fn key_for_new_data(&self, person: PersonId) -> Result<DataKey, VaultError>;
    /// The person's key, if it exists.
    fn key(&self, person: PersonId) -> Result<DataKey, VaultError>;
    /// Erases the key for good; returns whether there was one.
    fn erase(&self, person: PersonId) -> Result<bool, VaultError>;
}

/// A person's personal data (never stored in clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    /// Identity document.
    pub id_document: IdentityDocument,
    /// Name as on the document.
    pub name: String,
    /// Mobile phone number.
    pub phone: String,
}

impl PersonalData {
    /// Builds personal data, checking name and phone.
    pub fn new(
        id_document: IdentityDocument,
        name: &str,
        phone: &str,
    ) -> Result<Self, crate::HealthCodeError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(crate::HealthCodeError::InvalidInput {
                field: "name",
                rule: "a name has 1 to 64 characters".into(),
            });
        }
        let digits = phone.trim().trim_start_matches('+');
        if digits.len() < 5 || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(crate::HealthCodeError::InvalidInput {
                field: "phone",
                rule: "a phone number has 5 to 20 digits, optionally after a `+`".into(),
            });
        }
        Ok(Self {
            id_document,
            name: name.to_owned(),
            phone: phone.trim().to_owned(),
        })
    }
}

/// A name as a guard may see it: the first character, then `*` for every
/// further character (`王芳` → `王*`; spaces stay, `Li Wei` → `L* ***`).
pub fn masked_name(name: &str) -> String {
    let mut chars = name.trim().chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    std::iter::once(first)
        .chain(chars.map(|c| if c.is_whitespace() { c } else { '*' }))
        .collect()
}

/// Personal data encrypted with the person's data key (ChaCha20-Poly1305,
/// the person id as associated data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPersonalData {
    /// Algorithm name, for future rotation.
    pub alg: String,
    /// 96-bit nonce, hex.
    pub nonce: String,
    /// Ciphertext with tag, hex.
    pub ciphertext: String,
}

/// Seals `data` for `person` with a key from `vault`.
pub fn seal(
    vault: &dyn KeyVault,
    person: PersonId,
    data: &PersonalData,
) -> Result<SealedPersonalData, VaultError> {
    let key = vault.key_for_new_data(person)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let plaintext = serde_json::to_vec(data).map_err(|e| VaultError::Storage {
        path: "memory".into(),
        message: format!("failed to encode personal data: {e}"),
    })?;
    let aad = person.uuid();
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &plaintext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Tampered(person))?;
    Ok(SealedPersonalData {
        alg: "ChaCha20-Poly1305".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    })
}

/// Opens sealed data; fails with [`VaultError::KeyErased`] after crypto-shredding.
pub fn open(
    vault: &dyn KeyVault,
    person: PersonId,
    sealed: &SealedPersonalData,
) -> Result<PersonalData, VaultError> {
    let key = vault.key(person)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let nonce = hex::decode(&sealed.nonce).map_err(|_| VaultError::Tampered(person))?;
    if nonce.len() != 12 {
        return Err(VaultError::Tampered(person));
    }
    let ciphertext = hex::decode(&sealed.ciphertext).map_err(|_| VaultError::Tampered(person))?;
    let aad = person.uuid();
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Tampered(person))?;
    serde_json::from_slice(&plaintext).map_err(|_| VaultError::Tampered(person))
}

/// An in-memory vault (tests, demos).
#[derive(Debug, Default)]
pub struct MemoryKeyVault {
    keys: Mutex<HashMap<PersonId, Option<DataKey>>>,
}

impl MemoryKeyVault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<PersonId, Option<DataKey>>) -> R) -> R {
        match self.keys.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

impl KeyVault for MemoryKeyVault {
    fn key_for_new_data(&self, person: PersonId) -> Result<DataKey, VaultError> {
        self.with(|keys| {
            match keys
                .entry(person)
                .or_insert_with(|| Some(DataKey::generate()))
            {
                Some(k) => Ok(k.clone()),
                None => Err(VaultError::KeyErased(person)),
            }
        })
    }

    fn key(&self, person: PersonId) -> Result<DataKey, VaultError> {
        self.with(|keys| {
            keys.get(&person)
                .cloned()
                .flatten()
                .ok_or(VaultError::KeyErased(person))
        })
    }

    fn erase(&self, person: PersonId) -> Result<bool, VaultError> {
        self.with(|keys| Ok(matches!(keys.insert(person, None), Some(Some(_)))))
    }
}

const KEYS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("person_data_keys");

/// A durable vault in a redb file. An erased key is replaced by an empty
/// tombstone (so it is never recreated) and the file is compacted, so the
/// freed pages that held the key are released.
pub struct RedbKeyVault {
    db: Mutex<redb::Database>,
    path: String,
}

impl fmt::Debug for RedbKeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbKeyVault")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbKeyVault {
    /// Opens (or creates) the vault file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VaultError> {
        let shown = path.as_ref().display().to_string();
        let db = redb::Database::create(path.as_ref()).map_err(|e| VaultError::Storage {
            path: shown.clone(),
            message: format!("failed to open the key vault: {e}"),
        })?;
        Ok(Self {
            db: Mutex::new(db),
            path: shown,
        })
    }

    fn err(&self, e: impl fmt::Display) -> VaultError {
        VaultError::Storage {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn with_db<R>(&self, f: impl FnOnce(&mut redb::Database) -> R) -> R {
        match self.db.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn read(&self, db: &redb::Database, person: PersonId) -> Result<Option<Vec<u8>>, VaultError> {
        use redb::ReadableDatabase;
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        let table = match tx.open_table(KEYS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let uuid = person.uuid();
        let value = table
            .get(uuid.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

fn to_key(person: PersonId, bytes: &[u8]) -> Result<DataKey, VaultError> {
    <[u8; 32]>::try_from(bytes)
        .map(DataKey)
        .map_err(|_| VaultError::KeyErased(person))
}

impl KeyVault for RedbKeyVault {
    fn key_for_new_data(&self, person: PersonId) -> Result<DataKey, VaultError> {
        self.with_db(|db| {
            if let Some(existing) = self.read(db, person)? {
                return to_key(person, &existing);
            }
            let key = DataKey::generate();
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut table = tx.open_table(KEYS).map_err(|e| self.err(e))?;
                let uuid = person.uuid();
                table
                    .insert(uuid.as_bytes().as_slice(), key.0.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            Ok(key)
        })
    }

    fn key(&self, person: PersonId) -> Result<DataKey, VaultError> {
        self.with_db(|db| match self.read(db, person)? {
            Some(bytes) => to_key(person, &bytes),
            None => Err(VaultError::KeyErased(person)),
        })
    }

    fn erase(&self, person: PersonId) -> Result<bool, VaultError> {
        self.with_db(|db| {
            let existed = self.read(db, person)?.is_some_and(|b| b.len() == 32);
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut table = tx.open_table(KEYS).map_err(|e| self.err(e))?;
                let uuid = person.uuid();
                // An empty tombstone: the person never gets a key again.
                table
                    .insert(uuid.as_bytes().as_slice(), [].as_slice())
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            // Release the pages that held the old key; a failed compaction
            // (e.g. a concurrent reader) leaves the key unreachable anyway.
            let _compacted = db.compact();
            Ok(existed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resident_id::ResidentId;

    fn data() -> PersonalData {
        PersonalData::new(
            IdentityDocument::ResidentId(ResidentId::parse("11010519491231002X").unwrap()),
            "张三",
            "+8613800000000",
        )
        .unwrap()
    }

    #[test]
    fn a_masked_name_keeps_only_its_first_character() {
        assert_eq!(masked_name("王芳"), "王*");
        assert_eq!(masked_name("欧阳娜娜"), "欧***");
        assert_eq!(masked_name(" Li Wei "), "L* ***");
        assert_eq!(masked_name(""), "");
    }

    #[test]
    fn sealed_data_opens_with_the_key_and_not_after_erasure() {
        let vault = MemoryKeyVault::new();
        let person = PersonId::from_u128(7);
        let sealed = seal(&vault, person, &data()).unwrap();
        assert!(!sealed.ciphertext.contains("张三"));
        assert_eq!(open(&vault, person, &sealed).unwrap(), data());
        assert!(vault.erase(person).unwrap());
        assert_eq!(
            open(&vault, person, &sealed),
            Err(VaultError::KeyErased(person))
        );
        assert_eq!(
            seal(&vault, person, &data()),
            Err(VaultError::KeyErased(person))
        );
    }

    #[test]
    fn sealed_data_is_bound_to_its_person() {
        let vault = MemoryKeyVault::new();
        let (a, b) = (PersonId::from_u128(1), PersonId::from_u128(2));
        let sealed = seal(&vault, a, &data()).unwrap();
        vault.key_for_new_data(b).unwrap();
        assert_eq!(open(&vault, b, &sealed), Err(VaultError::Tampered(b)));
    }

    #[test]
    fn redb_vault_keeps_keys_across_reopen_and_erasure_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.redb");
        let person = PersonId::from_u128(9);
        let sealed = {
            let vault = RedbKeyVault::open(&path).unwrap();
            seal(&vault, person, &data()).unwrap()
        };
        {
            let vault = RedbKeyVault::open(&path).unwrap();
            assert_eq!(open(&vault, person, &sealed).unwrap(), data());
            assert!(vault.erase(person).unwrap());
        }
        let vault = RedbKeyVault::open(&path).unwrap();
        assert_eq!(
            open(&vault, person, &sealed),
            Err(VaultError::KeyErased(person))
        );
        assert_eq!(
            vault.key_for_new_data(person),
            Err(VaultError::KeyErased(person))
        );
    }
}
