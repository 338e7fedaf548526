//! The schema, as numbered migrations recorded in
//! `tongban_vault_migrations`. [`migrate`] applies the missing ones in one
//! transaction that first takes an advisory lock: replicas starting at the
//! same time apply them once, one after the other, and none fails.

use futures::FutureExt as _;

use crate::{Database, PgError};

/// The advisory lock every migration run takes (`tongban.v` as digits).
const MIGRATION_LOCK: i64 = 0x746f_6e67_6261_6e76;

/// Each migration: version, name, statements. Never edit one that was
/// released; add the next.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "person data keys",
        "CREATE TABLE tongban_vault_keys (
             person_id uuid PRIMARY KEY,
             -- the data key wrapped by the key-encryption key; NULL once erased
             wrapped bytea,
             created_at timestamptz NOT NULL DEFAULT now(),
             erased_at timestamptz,
             CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL))
         );
         CREATE TABLE tongban_vault_meta (
             name text PRIMARY KEY,
             value bytea NOT NULL
         );",
    ),
    (
        2,
        "region signing keys",
        "CREATE TABLE region_keys (
             kid text PRIMARY KEY,
             region text NOT NULL,
             status text NOT NULL CHECK (status IN ('active', 'retired')),
             not_before timestamptz NOT NULL,
             retired_at timestamptz,
             -- the Ed25519 seed wrapped by the key-encryption key
             wrapped_seed bytea NOT NULL
         );
         CREATE INDEX region_keys_region ON region_keys (region, not_before);",
    ),
];

/// Brings the schema up to date; returns the versions it applied.
pub fn migrate(db: &Database) -> Result<Vec<i32>, PgError> {
    db.run_alone(|client| {
        async move {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS tongban_vault_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await?;
            let applied: Vec<i32> = tx
                .query("SELECT version FROM tongban_vault_migrations", &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let mut done = Vec::new();
            for (version, name, statements) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                tx.batch_execute(statements).await?;
                tx.execute(
                    "INSERT INTO tongban_vault_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
                done.push(*version);
            }
            tx.commit().await?;
            Ok(done)
        }
        .boxed()
    })
    .map_err(|e| match e {
        PgError::Query { url, message } => PgError::Query {
            url,
            message: format!("failed to migrate the schema: {message}"),
        },
        other => other,
    })
}
