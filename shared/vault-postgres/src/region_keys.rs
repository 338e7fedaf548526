//! Region signing keys in PostgreSQL (`region_keys`), the private half
//! wrapped by the key-encryption key under the key id: every replica
//! signs with the same keys and sees a rotation or a retirement at its
//! next reload. Changes to a region's keys run in a transaction holding an
//! advisory lock per region, so two replicas creating a region's first
//! key at once create one.

use std::sync::Arc;

use futures::FutureExt as _;
use time::OffsetDateTime;
use tokio_postgres::Transaction;
use tongban_health_code::region_keys::{
    retirable, signing_keys, KeyStatus, RegionKeyError, RegionKeyStore, StoredRegionKey,
};
use tongban_health_code::vault::KeyEncryptionKey;
use tongban_kernel::DivisionCode;

use crate::{migrations, Database, PgError};

/// A key as a row holds it.
type Row = (
    String,
    String,
    String,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Vec<u8>,
);

const SELECT: &str =
    "SELECT kid, region, status, not_before, retired_at, wrapped_seed FROM region_keys";

/// Region keys in the vault's database.
pub struct PostgresRegionKeys {
    db: Arc<Database>,
    kek: Arc<dyn KeyEncryptionKey>,
}

impl std::fmt::Debug for PostgresRegionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRegionKeys")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

fn rows(found: Vec<tokio_postgres::Row>) -> Vec<Row> {
    found
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

async fn lock_region(tx: &Transaction<'_>, region: &str) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('tongban.region_keys.' || $1))",
        &[&region],
    )
    .await
    .map(drop)
}

async fn region_rows(
    tx: &Transaction<'_>,
    region: &str,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    Ok(rows(
        tx.query(&format!("{SELECT} WHERE region = $1"), &[&region])
            .await?,
    ))
}

impl PostgresRegionKeys {
    /// The region keys in `db` (the schema is migrated first).
    pub fn open(db: Arc<Database>, kek: Arc<dyn KeyEncryptionKey>) -> Result<Self, RegionKeyError> {
        let this = Self { db, kek };
        migrations::migrate(&this.db).map_err(|e| this.storage(e))?;
        Ok(this)
    }

    fn storage(&self, e: PgError) -> RegionKeyError {
        RegionKeyError::Storage {
            store: self.describe(),
            message: e.to_string(),
        }
    }

    fn decode(
        &self,
        (kid, region, status, not_before, retired_at, wrapped): Row,
    ) -> Result<StoredRegionKey, RegionKeyError> {
        let at = format!("{kid} in {}", self.describe());
        let corrupt = |message: String| RegionKeyError::Corrupt {
            at: at.clone(),
            message,
        };
        let region = DivisionCode::parse(&region).map_err(|e| corrupt(e.to_string()))?;
        let status = KeyStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
        let seed = self.kek.unwrap_secret(&kid, &wrapped)?;
        StoredRegionKey::from_parts(&at, region, &kid, status, not_before, retired_at, seed)
    }

    fn decode_all(&self, found: Vec<Row>) -> Result<Vec<StoredRegionKey>, RegionKeyError> {
        found.into_iter().map(|row| self.decode(row)).collect()
    }

    fn encode(&self, key: &StoredRegionKey) -> Result<Row, RegionKeyError> {
        Ok((
            key.kid().to_owned(),
            key.region().to_string(),
            key.status.as_str().to_owned(),
            key.not_before,
            key.retired_at,
            self.kek.wrap_secret(key.kid(), key.seed())?,
        ))
    }

    /// Inserts `key` under the region's lock. Returns the region's keys as
    /// they were before.
    fn insert(&self, key: &StoredRegionKey) -> Result<Vec<StoredRegionKey>, RegionKeyError> {
        let (kid, region, status, not_before, retired_at, wrapped) = self.encode(key)?;
        let found = self
            .db
            .run_alone(move |client| {
                async move {
                    let tx = client.transaction().await?;
                    lock_region(&tx, &region).await?;
                    let before = region_rows(&tx, &region).await?;
                    tx.execute(
                        "INSERT INTO region_keys \
                         (kid, region, status, not_before, retired_at, wrapped_seed) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&kid, &region, &status, &not_before, &retired_at, &wrapped],
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(before)
                }
                .boxed()
            })
            .map_err(|e| self.storage(e))?;
        self.decode_all(found)
    }
}

impl RegionKeyStore for PostgresRegionKeys {
    fn describe(&self) -> String {
        format!("PostgreSQL at {}", self.db.shown_url())
    }

    fn load(&self) -> Result<Vec<StoredRegionKey>, RegionKeyError> {
        let found = self
            .db
            .run(|client| async move {
                Ok(rows(
                    client
                        .query(&format!("{SELECT} ORDER BY region, not_before, kid"), &[])
                        .await?,
                ))
            })
            .map_err(|e| self.storage(e))?;
        self.decode_all(found)
    }

    fn create_first(&self, region: DivisionCode) -> Result<(), RegionKeyError> {
        let key = StoredRegionKey::generate(region, OffsetDateTime::now_utc());
        let (kid, code, status, not_before, retired_at, wrapped) = self.encode(&key)?;
        self.db
            .run_alone(move |client| {
                async move {
                    let tx = client.transaction().await?;
                    lock_region(&tx, &code).await?;
                    let active: i64 = tx
                        .query_one(
                            "SELECT count(*) FROM region_keys WHERE region = $1 AND status = 'active'",
                            &[&code],
                        )
                        .await?
                        .get(0);
                    if active == 0 {
                        tx.execute(
                            "INSERT INTO region_keys \
                             (kid, region, status, not_before, retired_at, wrapped_seed) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                            &[&kid, &code, &status, &not_before, &retired_at, &wrapped],
                        )
                        .await?;
                    }
                    tx.commit().await
                }
                .boxed()
            })
            .map_err(|e| self.storage(e))
    }

    fn rotate(&self, region: DivisionCode) -> Result<StoredRegionKey, RegionKeyError> {
        // Strictly newer than the region's signing key, even within its second.
        let keys = self.load()?;
        let mut now = OffsetDateTime::now_utc();
        if let Some(current) = signing_keys(&keys).get(&region) {
            if now.replace_nanosecond(0).unwrap_or(now) <= current.not_before {
                now = current.not_before + time::Duration::seconds(1);
            }
        }
        let key = StoredRegionKey::generate(region, now);
        self.insert(&key)?;
        Ok(key)
    }

    fn retire(&self, region: DivisionCode, kid: &str) -> Result<StoredRegionKey, RegionKeyError> {
        let keys = self.load()?;
        let retired = retirable(&keys, region, kid)?
            .clone()
            .retired(OffsetDateTime::now_utc());
        let (kid, code, _, _, retired_at, _) = self.encode(&retired)?;
        // The rule again, in the statement: a newer active key must still
        // exist (none retired or added meanwhile changes who signs).
        let updated = self
            .db
            .run(move |client| async move {
                client
                    .execute(
                        "UPDATE region_keys k SET status = 'retired',                          retired_at = COALESCE(k.retired_at, $3)                          WHERE k.kid = $1 AND k.region = $2 AND EXISTS (                              SELECT 1 FROM region_keys n WHERE n.region = $2                              AND n.status = 'active' AND n.kid <> $1                              AND (n.not_before, n.kid) > (k.not_before, k.kid))",
                        &[&kid, &code, &retired_at],
                    )
                    .await
            })
            .map_err(|e| self.storage(e))?;
        if updated == 0 {
            let keys = self.load()?;
            retirable(&keys, region, retired.kid())?;
            return Err(RegionKeyError::Storage {
                store: self.describe(),
                message: format!("the keys of region {region} changed meanwhile; try again"),
            });
        }
        Ok(retired)
    }
}
