//! Personal data, sealed with a per-person data key held outside the event log.
//!
//! Events carry only [`SealedPersonalData`] (ChaCha20-Poly1305 ciphertext
//! bound to the person id) and, for free text a person writes (an appeal's
//! reason), [`SealedText`]. The data keys live in a [`KeyVault`]; erasing a
//! person's key makes every copy of their personal data in the log and the
//! read models unreadable while the log and its hash chain stay intact
//! (crypto-shredding). [`RedbKeyVault`] is the durable on-disk vault: it
//! stores every data key wrapped by a key-encryption key ([`kek`]) kept
//! outside the data directory, so the vault file alone opens nothing.
//! [`MemoryKeyVault`] serves tests.
//!
//! Other crates seal what their users write with [`seal_bytes`] /
//! [`open_bytes`] under a purpose label (the applications domain seals its
//! forms with the applicant's key this way).

pub mod kek;

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tongban_kernel::PersonId;

use crate::resident_id::IdentityDocument;
pub use kek::{KeyEncryptionKey, LocalKek};

/// Errors of the key vault and of sealing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// The person's key was erased (or never created): their data is gone.
    #[error("no data key for person {0}: personal data erased")]
    KeyErased(PersonId),
    /// Decryption failed: wrong key or altered ciphertext.
    #[error("sealed personal data of person {0} failed authentication")]
    Tampered(PersonId),
    /// The key-encryption key does not open the vault (or a wrapped key):
    /// the vault was created under another KEK, or was altered.
    #[error(
        "the key-encryption key ({kek}) does not open the key vault: it was created with another \
         key-encryption key, or altered. Configure the key it was created with \
         (TONGBAN_VAULT_KEK, TONGBAN_VAULT_KEK_FILE or [vault] kek_file); a new key cannot open old data"
    )]
    KekMismatch {
        /// Where the KEK in use came from (never the key).
        kek: String,
    },
    /// The key-encryption key is missing or malformed.
    #[error("{0}")]
    Kek(String),
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
        if let Some(c) = name.chars().find(|c| is_hidden_or_control(*c)) {
            return Err(crate::HealthCodeError::InvalidInput {
                field: "name",
                rule: format!(
                    "a name has no control, direction-override or invisible characters (U+{:04X})",
                    u32::from(c)
                ),
            });
        }
        if !name.chars().any(char::is_alphabetic) {
            return Err(crate::HealthCodeError::InvalidInput {
                field: "name",
                rule: "a name has at least one letter".into(),
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

/// Characters that make a name print differently from what it is: control
/// characters, bidirectional overrides and isolates, zero-width and other
/// invisible format characters (the middle dot of names like 阿依古丽·买买提
/// is visible and allowed).
fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
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

/// Data encrypted with a person's data key (ChaCha20-Poly1305, the person
/// id — and for [`seal_bytes`] the purpose — as associated data).
pub type SealedPersonalData = Sealed;

/// Ciphertext under a person's data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Algorithm name, for future rotation.
    pub alg: String,
    /// 96-bit nonce, hex.
    pub nonce: String,
    /// Ciphertext with tag, hex.
    pub ciphertext: String,
}

const ALG: &str = "ChaCha20-Poly1305";

fn seal_with_aad(
    vault: &dyn KeyVault,
    person: PersonId,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, VaultError> {
    let key = vault.key_for_new_data(person)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Tampered(person))?;
    Ok(Sealed {
        alg: ALG.into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    })
}

fn open_with_aad(
    vault: &dyn KeyVault,
    person: PersonId,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Vec<u8>, VaultError> {
    let key = vault.key(person)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let nonce = hex::decode(&sealed.nonce).map_err(|_| VaultError::Tampered(person))?;
    if nonce.len() != 12 {
        return Err(VaultError::Tampered(person));
    }
    let ciphertext = hex::decode(&sealed.ciphertext).map_err(|_| VaultError::Tampered(person))?;
    cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad,
            },
        )
        .map_err(|_| VaultError::Tampered(person))
}

/// Seals `data` for `person` with a key from `vault`.
pub fn seal(
    vault: &dyn KeyVault,
    person: PersonId,
    data: &PersonalData,
) -> Result<SealedPersonalData, VaultError> {
    let plaintext = serde_json::to_vec(data).map_err(|e| VaultError::Storage {
        path: "memory".into(),
        message: format!("failed to encode personal data: {e}"),
    })?;
    let aad = person.uuid();
    seal_with_aad(vault, person, aad.as_bytes(), &plaintext)
}

/// Opens sealed data; fails with [`VaultError::KeyErased`] after crypto-shredding.
pub fn open(
    vault: &dyn KeyVault,
    person: PersonId,
    sealed: &SealedPersonalData,
) -> Result<PersonalData, VaultError> {
    let aad = person.uuid();
    let plaintext = open_with_aad(vault, person, aad.as_bytes(), sealed)?;
    serde_json::from_slice(&plaintext).map_err(|_| VaultError::Tampered(person))
}

fn purpose_aad(person: PersonId, purpose: &str) -> Vec<u8> {
    let mut aad = person.uuid().as_bytes().to_vec();
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

/// Seals `plaintext` with `person`'s key for one `purpose` (a label such
/// as `appeal.reason`): the purpose is authenticated, so a ciphertext moved
/// to another field of the same person does not open there.
pub fn seal_bytes(
    vault: &dyn KeyVault,
    person: PersonId,
    purpose: &str,
    plaintext: &[u8],
) -> Result<Sealed, VaultError> {
    seal_with_aad(vault, person, &purpose_aad(person, purpose), plaintext)
}

/// Opens what [`seal_bytes`] sealed for the same person and purpose.
pub fn open_bytes(
    vault: &dyn KeyVault,
    person: PersonId,
    purpose: &str,
    sealed: &Sealed,
) -> Result<Vec<u8>, VaultError> {
    open_with_aad(vault, person, &purpose_aad(person, purpose), sealed)
}

/// Free text a person wrote, as events and read models hold it: sealed
/// with the person's key, or in clear in events written before free text
/// was sealed (the log is immutable, so both shapes stay readable).
///
/// In JSON (events, JSON read models) the clear form is a plain string and
/// the sealed one an object, so old events read unchanged; in binary
/// read models (postcard, not self-describing) it is a tagged enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedText {
    /// Not sealed: decided but not yet appended, or an old event.
    Clear(String),
    /// Sealed with the person's key.
    Sealed(Sealed),
}

impl SealedText {
    /// Seals `text` for `person` and `purpose`.
    pub fn seal(
        vault: &dyn KeyVault,
        person: PersonId,
        purpose: &str,
        text: &str,
    ) -> Result<Self, VaultError> {
        seal_bytes(vault, person, purpose, text.as_bytes()).map(Self::Sealed)
    }

    /// This text sealed, if it is still clear (sealed text is kept).
    pub fn sealed(
        &self,
        vault: &dyn KeyVault,
        person: PersonId,
        purpose: &str,
    ) -> Result<Self, VaultError> {
        match self {
            Self::Clear(text) => Self::seal(vault, person, purpose, text),
            Self::Sealed(_) => Ok(self.clone()),
        }
    }

    /// The text; [`VaultError::KeyErased`] once the person's key is erased.
    pub fn open(
        &self,
        vault: &dyn KeyVault,
        person: PersonId,
        purpose: &str,
    ) -> Result<String, VaultError> {
        match self {
            Self::Clear(text) => Ok(text.clone()),
            Self::Sealed(sealed) => {
                let bytes = open_bytes(vault, person, purpose, sealed)?;
                String::from_utf8(bytes).map_err(|_| VaultError::Tampered(person))
            }
        }
    }

    /// The text if it is not sealed.
    pub fn as_clear(&self) -> Option<&str> {
        match self {
            Self::Clear(text) => Some(text),
            Self::Sealed(_) => None,
        }
    }
}

impl From<String> for SealedText {
    fn from(text: String) -> Self {
        Self::Clear(text)
    }
}

impl From<&str> for SealedText {
    fn from(text: &str) -> Self {
        Self::Clear(text.to_owned())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SealedTextJson {
    Clear(String),
    Sealed(Sealed),
}

#[derive(Serialize, Deserialize)]
enum SealedTextBinary {
    Clear(String),
    Sealed(Sealed),
}

impl Serialize for SealedText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self, serializer.is_human_readable()) {
            (Self::Clear(t), true) => SealedTextJson::Clear(t.clone()).serialize(serializer),
            (Self::Sealed(s), true) => SealedTextJson::Sealed(s.clone()).serialize(serializer),
            (Self::Clear(t), false) => SealedTextBinary::Clear(t.clone()).serialize(serializer),
            (Self::Sealed(s), false) => SealedTextBinary::Sealed(s.clone()).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for SealedText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Ok(match SealedTextJson::deserialize(deserializer)? {
                SealedTextJson::Clear(t) => Self::Clear(t),
                SealedTextJson::Sealed(s) => Self::Sealed(s),
            })
        } else {
            Ok(match SealedTextBinary::deserialize(deserializer)? {
                SealedTextBinary::Clear(t) => Self::Clear(t),
                SealedTextBinary::Sealed(s) => Self::Sealed(s),
            })
        }
    }
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
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("vault_meta");
/// A key wrapped for the nil person id: opening it at start-up tells a
/// wrong KEK from a right one before any person's data is touched.
const CHECK: &str = "kek_check";

/// The pseudo-person the check key is wrapped for (no real id is nil).
fn check_person() -> PersonId {
    PersonId::from_u128(0)
}

/// A durable vault in a redb file (mode 0600). Every data key is stored
/// wrapped by the key-encryption key ([`KeyEncryptionKey`]) with the person
/// id as associated data; the file holds no usable key on its own. An
/// erased key is replaced by an empty tombstone (so it is never recreated)
/// and the file is compacted, so the freed pages that held the wrapped key
/// are released.
///
/// A vault written by an older version (keys in clear) is migrated when
/// opened: its keys are wrapped into a new file that replaces the old one,
/// so no page of the old file with a clear key stays in the vault.
pub struct RedbKeyVault {
    db: Mutex<redb::Database>,
    path: String,
    kek: Arc<dyn KeyEncryptionKey>,
}

impl fmt::Debug for RedbKeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbKeyVault")
            .field("path", &self.path)
            .field("kek", &self.kek.source())
            .finish()
    }
}

fn storage_error(path: &Path, e: impl fmt::Display) -> VaultError {
    VaultError::Storage {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// What an existing vault file holds.
#[derive(Debug, Default)]
struct Survey {
    check: Option<Vec<u8>>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Survey {
    fn clear_keys(&self) -> usize {
        self.entries.iter().filter(|(_, v)| v.len() == 32).count()
    }
}

fn survey(db: &redb::Database, path: &Path) -> Result<Survey, VaultError> {
    use redb::{ReadableDatabase, ReadableTable};
    let tx = db.begin_read().map_err(|e| storage_error(path, e))?;
    let mut out = Survey::default();
    match tx.open_table(META) {
        Ok(meta) => {
            out.check = meta
                .get(CHECK)
                .map_err(|e| storage_error(path, e))?
                .map(|v| v.value().to_vec());
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(storage_error(path, e)),
    }
    match tx.open_table(KEYS) {
        Ok(keys) => {
            for entry in keys.iter().map_err(|e| storage_error(path, e))? {
                let (k, v) = entry.map_err(|e| storage_error(path, e))?;
                out.entries.push((k.value().to_vec(), v.value().to_vec()));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(storage_error(path, e)),
    }
    Ok(out)
}

fn person_of(key: &[u8], path: &Path) -> Result<PersonId, VaultError> {
    uuid::Uuid::from_slice(key)
        .map(PersonId::from_uuid)
        .map_err(|_| storage_error(path, "a key entry is not a person id"))
}

impl RedbKeyVault {
    /// Opens (or creates) the vault file at `path`, its keys wrapped by
    /// `kek`. Fails with [`VaultError::KekMismatch`] if the vault was
    /// created under another KEK; migrates a vault of clear keys (older
    /// versions) by wrapping them.
    pub fn open(
        path: impl AsRef<Path>,
        kek: Arc<dyn KeyEncryptionKey>,
    ) -> Result<Self, VaultError> {
        let path = path.as_ref();
        let db = Self::open_file(path)?;
        let found = survey(&db, path)?;
        let db = match &found.check {
            Some(check) => {
                kek.unwrap(check_person(), check)?;
                if found.clear_keys() > 0 {
                    drop(db);
                    Self::migrate(path, &found, kek.as_ref())?
                } else {
                    db
                }
            }
            None if found.entries.is_empty() => {
                Self::write_check(&db, path, kek.as_ref())?;
                db
            }
            None => {
                drop(db);
                Self::migrate(path, &found, kek.as_ref())?
            }
        };
        Ok(Self {
            db: Mutex::new(db),
            path: path.display().to_string(),
            kek,
        })
    }

    fn open_file(path: &Path) -> Result<redb::Database, VaultError> {
        tongban_store::private_fs::ensure_file(path)
            .map_err(|e| storage_error(path, format!("failed to create the key vault: {e}")))?;
        redb::Database::create(path)
            .map_err(|e| storage_error(path, format!("failed to open the key vault: {e}")))
    }

    fn write_check(
        db: &redb::Database,
        path: &Path,
        kek: &dyn KeyEncryptionKey,
    ) -> Result<(), VaultError> {
        let check = kek.wrap(check_person(), &DataKey::generate())?;
        let tx = db.begin_write().map_err(|e| storage_error(path, e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| storage_error(path, e))?;
            meta.insert(CHECK, check.as_slice())
                .map_err(|e| storage_error(path, e))?;
            tx.open_table(KEYS).map_err(|e| storage_error(path, e))?;
        }
        tx.commit().map_err(|e| storage_error(path, e))
    }

    /// Rewrites the vault with every key wrapped: into a new file beside it
    /// (fsynced by the commit), renamed over the old one, directory
    /// fsynced. A crash before the rename leaves the old vault, which is
    /// migrated again at the next start. Keys already wrapped must open
    /// with `kek` (a vault half-written under another KEK is refused).
    fn migrate(
        path: &Path,
        found: &Survey,
        kek: &dyn KeyEncryptionKey,
    ) -> Result<redb::Database, VaultError> {
        let mut temp = path.as_os_str().to_owned();
        temp.push(".migrating");
        let temp = PathBuf::from(temp);
        match std::fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage_error(&temp, e)),
        }
        let mut wrapped = 0usize;
        {
            let db = Self::open_file(&temp)?;
            let tx = db.begin_write().map_err(|e| storage_error(&temp, e))?;
            {
                let mut keys = tx.open_table(KEYS).map_err(|e| storage_error(&temp, e))?;
                for (id, value) in &found.entries {
                    let person = person_of(id, path)?;
                    let stored = match value.len() {
                        0 => Vec::new(),
                        32 => {
                            let mut raw = [0u8; 32];
                            raw.copy_from_slice(value);
                            wrapped += 1;
                            kek.wrap(person, &DataKey(raw))?
                        }
                        _ => {
                            kek.unwrap(person, value)?;
                            value.clone()
                        }
                    };
                    keys.insert(id.as_slice(), stored.as_slice())
                        .map_err(|e| storage_error(&temp, e))?;
                }
                let mut meta = tx.open_table(META).map_err(|e| storage_error(&temp, e))?;
                let check = match &found.check {
                    Some(check) => check.clone(),
                    None => kek.wrap(check_person(), &DataKey::generate())?,
                };
                meta.insert(CHECK, check.as_slice())
                    .map_err(|e| storage_error(&temp, e))?;
            }
            tx.commit().map_err(|e| storage_error(&temp, e))?;
        }
        std::fs::rename(&temp, path).map_err(|e| storage_error(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tongban_store::private_fs::sync_dir(dir).map_err(|e| storage_error(dir, e))?;
        }
        tracing::warn!(
            path = %path.display(),
            wrapped,
            kek = kek.source(),
            "the key vault held data keys in clear (written by an older version): wrapped them \
             with the key-encryption key and replaced the file; copies of the old file (backups) \
             still hold the keys in clear"
        );
        Self::open_file(path)
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

    /// The stored entry as a key: an empty tombstone means erased.
    fn unwrap_entry(&self, person: PersonId, bytes: &[u8]) -> Result<DataKey, VaultError> {
        if bytes.is_empty() {
            return Err(VaultError::KeyErased(person));
        }
        self.kek.unwrap(person, bytes)
    }
}

impl KeyVault for RedbKeyVault {
    fn key_for_new_data(&self, person: PersonId) -> Result<DataKey, VaultError> {
        self.with_db(|db| {
            if let Some(existing) = self.read(db, person)? {
                return self.unwrap_entry(person, &existing);
            }
            let key = DataKey::generate();
            let wrapped = self.kek.wrap(person, &key)?;
            let tx = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut table = tx.open_table(KEYS).map_err(|e| self.err(e))?;
                let uuid = person.uuid();
                table
                    .insert(uuid.as_bytes().as_slice(), wrapped.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))?;
            Ok(key)
        })
    }

    fn key(&self, person: PersonId) -> Result<DataKey, VaultError> {
        self.with_db(|db| match self.read(db, person)? {
            Some(bytes) => self.unwrap_entry(person, &bytes),
            None => Err(VaultError::KeyErased(person)),
        })
    }

    fn erase(&self, person: PersonId) -> Result<bool, VaultError> {
        self.with_db(|db| {
            let existed = self.read(db, person)?.is_some_and(|b| !b.is_empty());
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
mod name_tests {
    use super::*;
    use crate::resident_id::IdentityDocument;

    fn named(name: &str) -> Result<PersonalData, crate::HealthCodeError> {
        PersonalData::new(
            IdentityDocument::parse("passport", "E12345678").expect("valid"),
            name,
            "13800138000",
        )
    }

    #[test]
    fn names_with_control_bidi_or_invisible_characters_are_refused_naming_the_field() {
        for bad in [
            "王\u{202E}芳",
            "\u{200B}\u{200B}",
            "王\u{0007}芳",
            "\u{2066}x",
            "123",
            "·",
        ] {
            let err = named(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    crate::HealthCodeError::InvalidInput { field: "name", .. }
                ),
                "{bad:?}: {err}"
            );
        }
        for good in ["王芳", "Li Wei", "阿依古丽·买买提", "O'Brien"] {
            named(good).unwrap();
        }
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

    fn kek(seed: u8) -> Arc<dyn KeyEncryptionKey> {
        Arc::new(LocalKek::from_text(&hex::encode([seed; 32]), format!("test kek {seed}")).unwrap())
    }

    /// The attack: every 32-byte window of the file, tried as the
    /// person's data key on their sealed data.
    fn any_window_opens(file: &[u8], person: PersonId, sealed: &Sealed) -> bool {
        let nonce = hex::decode(&sealed.nonce).unwrap();
        let ciphertext = hex::decode(&sealed.ciphertext).unwrap();
        let aad = person.uuid();
        file.windows(32).any(|window| {
            ChaCha20Poly1305::new(Key::from_slice(window))
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: aad.as_bytes(),
                    },
                )
                .is_ok()
        })
    }

    /// A vault as versions before key wrapping wrote it: keys in clear.
    fn legacy_vault(path: &Path, person: PersonId) -> DataKey {
        let key = DataKey::generate();
        let db = redb::Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(KEYS).unwrap();
            let uuid = person.uuid();
            table
                .insert(uuid.as_bytes().as_slice(), key.0.as_slice())
                .unwrap();
            let erased = PersonId::from_u128(77).uuid();
            table
                .insert(erased.as_bytes().as_slice(), [].as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
        key
    }

    #[test]
    fn no_32_byte_window_of_the_vault_file_opens_a_persons_sealed_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        let people: Vec<PersonId> = (1..=20).map(PersonId::from_u128).collect();
        let sealed: Vec<Sealed> = {
            let vault = RedbKeyVault::open(&path, kek(1)).unwrap();
            people
                .iter()
                .map(|p| seal(&vault, *p, &data()).unwrap())
                .collect()
        };
        let file = std::fs::read(&path).unwrap();
        for (person, sealed) in people.iter().zip(&sealed) {
            assert!(
                !any_window_opens(&file, *person, sealed),
                "the vault file holds {person}'s key in clear"
            );
        }
        // and the data does open through the vault with the right KEK
        let vault = RedbKeyVault::open(&path, kek(1)).unwrap();
        assert_eq!(open(&vault, people[0], &sealed[0]).unwrap(), data());
    }

    #[cfg(unix)]
    #[test]
    fn the_vault_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        drop(RedbKeyVault::open(&path, kek(1)).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_vault_opened_with_another_kek_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        drop(RedbKeyVault::open(&path, kek(1)).unwrap());
        let err = RedbKeyVault::open(&path, kek(2)).unwrap_err();
        assert_eq!(
            err,
            VaultError::KekMismatch {
                kek: "test kek 2".into()
            }
        );
        let message = err.to_string();
        assert!(message.contains("test kek 2"), "{message}");
        assert!(message.contains("another"), "{message}");
        // the right one still opens it
        assert!(RedbKeyVault::open(&path, kek(1)).is_ok());
    }

    #[test]
    fn a_vault_of_clear_keys_from_an_older_version_is_wrapped_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        let person = PersonId::from_u128(5);
        let clear = legacy_vault(&path, person);
        let sealed = {
            let legacy = MemoryKeyVault::new();
            legacy.with(|keys| keys.insert(person, Some(clear.clone())));
            seal(&legacy, person, &data()).unwrap()
        };
        assert!(any_window_opens(
            &std::fs::read(&path).unwrap(),
            person,
            &sealed
        ));

        let vault = RedbKeyVault::open(&path, kek(3)).unwrap();
        assert_eq!(open(&vault, person, &sealed).unwrap(), data());
        assert_eq!(
            vault.key(PersonId::from_u128(77)),
            Err(VaultError::KeyErased(PersonId::from_u128(77)))
        );
        drop(vault);
        assert!(!any_window_opens(
            &std::fs::read(&path).unwrap(),
            person,
            &sealed
        ));
        assert!(matches!(
            RedbKeyVault::open(&path, kek(4)),
            Err(VaultError::KekMismatch { .. })
        ));
        let vault = RedbKeyVault::open(&path, kek(3)).unwrap();
        assert_eq!(open(&vault, person, &sealed).unwrap(), data());
    }

    #[test]
    fn sealed_text_reads_old_plain_strings_and_is_bound_to_its_purpose() {
        let vault = MemoryKeyVault::new();
        let person = PersonId::from_u128(3);
        let old: SealedText = serde_json::from_str("\"my test was negative\"").unwrap();
        assert_eq!(old.as_clear(), Some("my test was negative"));
        let sealed = old.sealed(&vault, person, "appeal.reason").unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("negative"), "{json}");
        let back: SealedText = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.open(&vault, person, "appeal.reason").unwrap(),
            "my test was negative"
        );
        assert_eq!(
            back.open(&vault, person, "case.form"),
            Err(VaultError::Tampered(person))
        );
        let binary = postcard::to_allocvec(&back).unwrap();
        assert_eq!(postcard::from_bytes::<SealedText>(&binary).unwrap(), back);
        vault.erase(person).unwrap();
        assert_eq!(
            back.open(&vault, person, "appeal.reason"),
            Err(VaultError::KeyErased(person))
        );
    }

    #[test]
    fn redb_vault_keeps_keys_across_reopen_and_erasure_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.redb");
        let person = PersonId::from_u128(9);
        let sealed = {
            let vault = RedbKeyVault::open(&path, kek(1)).unwrap();
            seal(&vault, person, &data()).unwrap()
        };
        {
            let vault = RedbKeyVault::open(&path, kek(1)).unwrap();
            assert_eq!(open(&vault, person, &sealed).unwrap(), data());
            assert!(vault.erase(person).unwrap());
        }
        let vault = RedbKeyVault::open(&path, kek(1)).unwrap();
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
