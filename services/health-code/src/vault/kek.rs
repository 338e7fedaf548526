//! The key-encryption key (KEK): the vault stores every data key wrapped
//! by it, so the vault file alone opens nothing.
//!
//! The KEK lives outside the data directory (a file the operator provides,
//! or an environment variable), so a copy of the data directory — a backup,
//! a stolen disk, a snapshot — holds only wrapped keys. [`LocalKek`] is the
//! one implementation here; an external KMS or HSM implements
//! [`KeyEncryptionKey`] by sending `wrap`/`unwrap` to the service and never
//! handing out the key.
//!
//! A wrapped key is `version (1) | nonce (12) | ChaCha20-Poly1305 of the
//! 32-byte key (48)`, with `tongban.vault.v1` and the person id as
//! associated data: a wrapped key copied to another person's entry does not
//! open. Other 32-byte secrets (a region's signing key kept in a shared
//! database) are wrapped the same way with `tongban.secret.v1` and a label
//! naming the secret ([`KeyEncryptionKey::wrap_secret`]).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use tongban_kernel::PersonId;

use super::{DataKey, VaultError};

/// The first byte of a key wrapped by [`LocalKek`].
const WRAP_VERSION: u8 = 1;
/// Length of a wrapped key: version, nonce, key, tag.
pub const WRAPPED_LEN: usize = 1 + 12 + 32 + 16;
const AAD_LABEL: &[u8] = b"tongban.vault.v1";
const SECRET_AAD_LABEL: &[u8] = b"tongban.secret.v1";

/// Wraps and unwraps the vault's data keys.
pub trait KeyEncryptionKey: Send + Sync + fmt::Debug {
    /// Where the key comes from, for messages (never the key itself), e.g.
    /// `file /etc/tongban/vault.kek` or `TONGBAN_VAULT_KEK`.
    fn source(&self) -> &str;
    /// Wraps `key` for `person`.
    fn wrap(&self, person: PersonId, key: &DataKey) -> Result<Vec<u8>, VaultError>;
    /// Unwraps a key wrapped for `person`; [`VaultError::KekMismatch`] if it
    /// was wrapped by another KEK (or for another person, or altered).
    fn unwrap(&self, person: PersonId, wrapped: &[u8]) -> Result<DataKey, VaultError>;
    /// Wraps another 32-byte secret, bound to `label` (e.g. a region key's
    /// id): a wrapped secret moved under another label does not open.
    fn wrap_secret(&self, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError>;
    /// Unwraps what [`wrap_secret`](Self::wrap_secret) wrapped under `label`;
    /// [`VaultError::KekMismatch`] for another KEK, label or altered bytes.
    fn unwrap_secret(&self, label: &str, wrapped: &[u8]) -> Result<[u8; 32], VaultError>;
}

/// A 256-bit KEK held in this process, read from a file or an environment
/// variable as 64 hex digits or base64. Its `Debug` never shows the bytes.
pub struct LocalKek {
    key: [u8; 32],
    source: String,
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn kek_error(source: &str, rule: impl fmt::Display) -> VaultError {
    VaultError::Kek(format!("the key-encryption key from {source}: {rule}"))
}

impl LocalKek {
    /// Parses 32 bytes written as 64 hex digits or as base64 (standard or
    /// URL-safe, padded or not); `source` says where the text came from.
    pub fn from_text(text: &str, source: impl Into<String>) -> Result<Self, VaultError> {
        let source = source.into();
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| kek_error(&source, e))?
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or_else(|| {
                    kek_error(
                        &source,
                        "must be 32 bytes written as 64 hex digits or base64 \
                         (generate one with `openssl rand -hex 32`)",
                    )
                })?
        };
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            kek_error(
                &source,
                format!(
                    "must be 32 bytes, found {} (generate one with `openssl rand -hex 32`)",
                    bytes.len()
                ),
            )
        })?;
        Ok(Self { key, source })
    }

    /// Reads the KEK from `path`. A file the group or others can read is
    /// accepted with a warning (secret mounts are often 0644).
    pub fn from_file(path: &Path) -> Result<Self, VaultError> {
        let source = format!("file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| kek_error(&source, format!("cannot be read: {e}")))?;
        if tongban_store::private_fs::is_shared(path).unwrap_or(false) {
            tracing::warn!(
                path = %path.display(),
                "the key-encryption key file is readable by other users; make it 0600"
            );
        }
        Self::from_text(&text, source)
    }

    /// Creates a new random KEK in `path` (owner-only, written atomically;
    /// an existing file is never replaced) and returns it.
    pub fn generate_file(path: &Path) -> Result<Self, VaultError> {
        let source = format!("file {}", path.display());
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut text = hex::encode(key);
        text.push('\n');
        tongban_store::private_fs::write_atomic_new(path, text.as_bytes())
            .map_err(|e| kek_error(&source, format!("cannot be created: {e}")))?;
        Ok(Self { key, source })
    }

    /// Reads the KEK at `path`, creating it first if there is none
    /// (development mode).
    pub fn open_or_generate(path: &Path) -> Result<(Self, bool), VaultError> {
        if path.exists() {
            return Self::from_file(path).map(|k| (k, false));
        }
        match Self::generate_file(path) {
            Ok(k) => Ok((k, true)),
            // Another process created it meanwhile: use theirs.
            Err(_) if path.exists() => Self::from_file(path).map(|k| (k, false)),
            Err(e) => Err(e),
        }
    }

    fn aad(person: PersonId) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.extend_from_slice(person.uuid().as_bytes());
        aad
    }
}

impl LocalKek {
    fn seal(&self, aad: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: secret, aad })
            .map_err(|_| kek_error(&self.source, "failed to wrap a key"))?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, aad: &[u8], wrapped: &[u8]) -> Result<[u8; 32], VaultError> {
        let mismatch = || VaultError::KekMismatch {
            kek: self.source.clone(),
        };
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAP_VERSION {
            return Err(mismatch());
        }
        let (nonce, sealed) = wrapped[1..].split_at(12);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.key));
        let key = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| mismatch())?;
        <[u8; 32]>::try_from(key.as_slice()).map_err(|_| mismatch())
    }

    fn secret_aad(label: &str) -> Vec<u8> {
        let mut aad = SECRET_AAD_LABEL.to_vec();
        aad.extend_from_slice(label.as_bytes());
        aad
    }
}

impl KeyEncryptionKey for LocalKek {
    fn source(&self) -> &str {
        &self.source
    }

    fn wrap(&self, person: PersonId, key: &DataKey) -> Result<Vec<u8>, VaultError> {
        self.seal(&Self::aad(person), &key.0)
    }

    fn unwrap(&self, person: PersonId, wrapped: &[u8]) -> Result<DataKey, VaultError> {
        self.open(&Self::aad(person), wrapped).map(DataKey)
    }

    fn wrap_secret(&self, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        self.seal(&Self::secret_aad(label), secret)
    }

    fn unwrap_secret(&self, label: &str, wrapped: &[u8]) -> Result<[u8; 32], VaultError> {
        self.open(&Self::secret_aad(label), wrapped)
    }
}

/// Where a development node keeps its generated KEK when none is
/// configured: beside the vault, which is exactly what production must not
/// do (see the node's start-up warning).
pub fn development_kek_path(data: &Path) -> PathBuf {
    data.join("vault.kek")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kek_reads_from_hex_or_base64_and_refuses_other_lengths() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = LocalKek::from_text(hex, "test").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(a.key);
        let b = LocalKek::from_text(&b64, "test").unwrap();
        assert_eq!(a.key, b.key);
        let short = LocalKek::from_text("abcd", "TONGBAN_VAULT_KEK").unwrap_err();
        assert!(short.to_string().contains("TONGBAN_VAULT_KEK"), "{short}");
        assert!(short.to_string().contains("32 bytes"), "{short}");
        assert!(!format!("{a:?}").contains("0011"));
    }

    #[test]
    fn a_wrapped_key_opens_only_with_its_kek_and_for_its_person() {
        let dir = tempfile::tempdir().unwrap();
        let (kek, created) = LocalKek::open_or_generate(&dir.path().join("k")).unwrap();
        assert!(created);
        let (same, created) = LocalKek::open_or_generate(&dir.path().join("k")).unwrap();
        assert!(!created);
        let other = LocalKek::generate_file(&dir.path().join("other")).unwrap();
        let (p, q) = (PersonId::from_u128(1), PersonId::from_u128(2));
        let key = DataKey::generate();
        let wrapped = kek.wrap(p, &key).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(same.unwrap(p, &wrapped).unwrap(), key);
        assert!(matches!(
            other.unwrap(p, &wrapped),
            Err(VaultError::KekMismatch { .. })
        ));
        assert!(matches!(
            kek.unwrap(q, &wrapped),
            Err(VaultError::KekMismatch { .. })
        ));
        let secret = kek.wrap_secret("11-abc", &[7; 32]).unwrap();
        assert_eq!(same.unwrap_secret("11-abc", &secret).unwrap(), [7; 32]);
        assert!(kek.unwrap_secret("11-abd", &secret).is_err());
        assert!(other.unwrap_secret("11-abc", &secret).is_err());
        assert!(kek.unwrap(p, &secret).is_err());
    }
}
