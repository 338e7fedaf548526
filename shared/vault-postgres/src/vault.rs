//! The personal-data key vault in PostgreSQL (`tongban_vault_keys`): one
//! row per person holding their data key wrapped by the key-encryption key
//! (with the person id as associated data), never the key itself. Erasure
//! deletes the wrapped key in one statement, so every replica reading the
//! database finds the person erased from that moment on; the row stays as
//! a tombstone (`wrapped` NULL, `erased_at` set), so no replica ever makes
//! the person a new key. Nothing is cached: each read asks the database.

use std::sync::Arc;

use tongban_health_code::vault::{DataKey, KeyEncryptionKey, KeyVault, VaultError};
use tongban_kernel::PersonId;

use crate::{migrations, Database, PgError};

/// A key wrapped for the nil person id: opening it at start-up tells a
/// wrong key-encryption key from the right one.
const CHECK: &str = "kek_check";

/// The vault of every replica: PostgreSQL.
pub struct PostgresKeyVault {
    db: Arc<Database>,
    kek: Arc<dyn KeyEncryptionKey>,
}

impl std::fmt::Debug for PostgresKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresKeyVault")
            .field("db", &self.db)
            .field("kek", &self.kek.source())
            .finish()
    }
}

fn storage(e: PgError) -> VaultError {
    match e {
        PgError::Connect { url, message } => VaultError::Storage {
            path: url,
            message: format!("failed to connect: {message}"),
        },
        PgError::Query { url, message } | PgError::Url { url, message } => {
            VaultError::Storage { path: url, message }
        }
    }
}

impl PostgresKeyVault {
    /// Opens the vault in `db`: migrates the schema, then checks that
    /// `kek` is the key-encryption key the vault was created with.
    pub fn open(db: Arc<Database>, kek: Arc<dyn KeyEncryptionKey>) -> Result<Self, VaultError> {
        migrations::migrate(&db).map_err(storage)?;
        let nil = PersonId::from_u128(0);
        let candidate = kek.wrap(nil, &DataKey::generate())?;
        let check: Vec<u8> = db
            .run(move |client| async move {
                client
                    .execute(
                        "INSERT INTO tongban_vault_meta (name, value) VALUES ($1, $2) \
                         ON CONFLICT (name) DO NOTHING",
                        &[&CHECK, &candidate],
                    )
                    .await?;
                let row = client
                    .query_one(
                        "SELECT value FROM tongban_vault_meta WHERE name = $1",
                        &[&CHECK],
                    )
                    .await?;
                Ok(row.get(0))
            })
            .map_err(storage)?;
        kek.unwrap(nil, &check)?;
        Ok(Self { db, kek })
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// The person's stored entry: `None` without a row, `Some(None)` erased.
    fn entry(&self, person: PersonId) -> Result<Option<Option<Vec<u8>>>, VaultError> {
        let id = person.uuid();
        self.db
            .run(move |client| async move {
                let row = client
                    .query_opt(
                        "SELECT wrapped FROM tongban_vault_keys WHERE person_id = $1",
                        &[&id],
                    )
                    .await?;
                Ok(row.map(|r| r.get::<_, Option<Vec<u8>>>(0)))
            })
            .map_err(storage)
    }

    fn unwrap_entry(
        &self,
        person: PersonId,
        entry: Option<Vec<u8>>,
    ) -> Result<DataKey, VaultError> {
        match entry {
            Some(wrapped) => self.kek.unwrap(person, &wrapped),
            None => Err(VaultError::KeyErased(person)),
        }
    }
}

impl KeyVault for PostgresKeyVault {
    fn key_for_new_data(&self, person: PersonId) -> Result<DataKey, VaultError> {
        if let Some(entry) = self.entry(person)? {
            return self.unwrap_entry(person, entry);
        }
        let key = DataKey::generate();
        let wrapped = self.kek.wrap(person, &key)?;
        let id = person.uuid();
        // Inserted, or another replica's key (or tombstone) got there first.
        let inserted = self
            .db
            .run(move |client| async move {
                let n = client
                    .execute(
                        "INSERT INTO tongban_vault_keys (person_id, wrapped) VALUES ($1, $2) \
                         ON CONFLICT (person_id) DO NOTHING",
                        &[&id, &wrapped],
                    )
                    .await?;
                Ok(n == 1)
            })
            .map_err(storage)?;
        if inserted {
            return Ok(key);
        }
        match self.entry(person)? {
            Some(entry) => self.unwrap_entry(person, entry),
            None => Err(VaultError::KeyErased(person)),
        }
    }

    fn key(&self, person: PersonId) -> Result<DataKey, VaultError> {
        match self.entry(person)? {
            Some(entry) => self.unwrap_entry(person, entry),
            None => Err(VaultError::KeyErased(person)),
        }
    }

    fn erase(&self, person: PersonId) -> Result<bool, VaultError> {
        let id = person.uuid();
        self.db
            .run(move |client| async move {
                // The old row is locked by the upsert, so "had a key" is
                // read from the row it replaced.
                let row = client
                    .query_one(
                        "WITH old AS ( \
                             SELECT wrapped IS NOT NULL AS had FROM tongban_vault_keys \
                             WHERE person_id = $1 FOR UPDATE \
                         ), gone AS ( \
                             INSERT INTO tongban_vault_keys (person_id, wrapped, erased_at) \
                             VALUES ($1, NULL, now()) \
                             ON CONFLICT (person_id) DO UPDATE \
                             SET wrapped = NULL, \
                                 erased_at = COALESCE(tongban_vault_keys.erased_at, now()) \
                             RETURNING 1 \
                         ) \
                         SELECT COALESCE((SELECT had FROM old), false) \
                                AND EXISTS (SELECT 1 FROM gone)",
                        &[&id],
                    )
                    .await?;
                Ok(row.get::<_, bool>(0))
            })
            .map_err(storage)
    }
}
