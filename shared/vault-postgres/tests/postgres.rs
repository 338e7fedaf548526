//! The PostgreSQL vault and region keys against a real PostgreSQL
//! (`TONGBAN_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`;
//! `infra/scripts/test.sh` starts one). Each test creates a database of
//! its own with a unique name and drops it afterwards.

use std::sync::Arc;

use time::macros::datetime;
use tongban_health_code::region_keys::{
    signing_keys, KeyStatus, RegionKeyError, RegionKeyStore, StoredRegionKey,
};
use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
use tongban_health_code::token::{sign_code, verify_code, CodeClaims, KeyDirectory};
use tongban_health_code::vault::{
    open, seal, KeyEncryptionKey, KeyVault, LocalKek, PersonalData, VaultError,
};
use tongban_health_code::Colour;
use tongban_kernel::{DivisionCode, PersonId};
use tongban_vault_postgres::{migrations, Database, PostgresKeyVault, PostgresRegionKeys};

fn server() -> String {
    std::env::var("TONGBAN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of this test's own, dropped at the end.
struct TestDb {
    admin: Arc<Database>,
    name: String,
    url: String,
}

impl TestDb {
    fn new() -> Self {
        let admin = Database::connect(&format!("{}/postgres", server()))
            .expect("PostgreSQL answers (run infra/scripts/test.sh, or set TONGBAN_TEST_POSTGRES)");
        let name = format!("tongban_test_{}", uuid::Uuid::new_v4().simple());
        let create = format!("CREATE DATABASE {name}");
        admin
            .run(move |c| async move { c.batch_execute(&create).await })
            .expect("database created");
        let url = format!("{}/{name}", server());
        Self { admin, name, url }
    }

    fn connect(&self) -> Arc<Database> {
        Database::connect(&self.url).expect("connects")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = self
            .admin
            .run(move |c| async move { c.batch_execute(&drop).await });
    }
}

fn kek(seed: u8) -> Arc<dyn KeyEncryptionKey> {
    Arc::new(LocalKek::from_text(&hex::encode([seed; 32]), format!("test kek {seed}")).unwrap())
}

fn data() -> PersonalData {
    PersonalData::new(
        IdentityDocument::ResidentId(ResidentId::parse("11010519491231002X").unwrap()),
        "张三",
        "+8613800000000",
    )
    .unwrap()
}

#[test]
fn two_replicas_share_one_vault_and_an_erasure_through_one_is_an_erasure_at_both() {
    let db = TestDb::new();
    let a = PostgresKeyVault::open(db.connect(), kek(1)).unwrap();
    let b = PostgresKeyVault::open(db.connect(), kek(1)).unwrap();
    let person = PersonId::from_u128(42);
    let sealed = seal(&a, person, &data()).unwrap();
    assert_eq!(open(&b, person, &sealed).unwrap(), data());
    // Both seal with the same key.
    let again = seal(&b, person, &data()).unwrap();
    assert_eq!(open(&a, person, &again).unwrap(), data());

    assert!(b.erase(person).unwrap());
    assert_eq!(
        open(&a, person, &sealed),
        Err(VaultError::KeyErased(person))
    );
    assert_eq!(
        a.key_for_new_data(person),
        Err(VaultError::KeyErased(person)),
        "an erased person never gets a new key"
    );
    assert!(!a.erase(person).unwrap(), "erased already");
    assert_eq!(
        b.key(PersonId::from_u128(7)),
        Err(VaultError::KeyErased(PersonId::from_u128(7)))
    );
}

#[test]
fn the_database_holds_only_wrapped_keys_and_another_kek_is_refused() {
    let db = TestDb::new();
    let vault = PostgresKeyVault::open(db.connect(), kek(1)).unwrap();
    let person = PersonId::from_u128(5);
    seal(&vault, person, &data()).unwrap();
    let id = person.uuid();
    let stored: Vec<u8> = db
        .connect()
        .run(move |c| async move {
            Ok(c.query_one(
                "SELECT wrapped FROM tongban_vault_keys WHERE person_id = $1",
                &[&id],
            )
            .await?
            .get(0))
        })
        .unwrap();
    assert_eq!(stored.len(), tongban_health_code::vault::kek::WRAPPED_LEN);
    assert!(kek(1).unwrap(person, &stored).is_ok());
    assert!(matches!(
        PostgresKeyVault::open(db.connect(), kek(2)),
        Err(VaultError::KekMismatch { .. })
    ));
}

#[test]
fn migrations_run_concurrently_by_several_replicas_apply_once_without_error() {
    let db = TestDb::new();
    let url = db.url.clone();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || migrations::migrate(&Database::connect(&url).unwrap()))
        })
        .collect();
    let mut applied: Vec<i32> = Vec::new();
    for run in runs {
        applied.extend(run.join().unwrap().expect("no replica fails"));
    }
    applied.sort();
    let all: Vec<i32> = migrations::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(applied, all, "each migration applied exactly once");
    assert!(migrations::migrate(&db.connect()).unwrap().is_empty());
    // and vaults opened at once on a fresh database both work
    let fresh = TestDb::new();
    let opened: Vec<_> = (0..2)
        .map(|_| {
            let url = fresh.url.clone();
            std::thread::spawn(move || {
                PostgresKeyVault::open(Database::connect(&url).unwrap(), kek(3)).map(drop)
            })
        })
        .collect();
    for o in opened {
        o.join().unwrap().unwrap();
    }
}

#[test]
fn a_vault_that_does_not_answer_is_named_in_the_error() {
    let err = Database::connect("postgres://tongban:hunter2@127.0.0.1:1/hub").unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(
            "failed to connect to the vault at postgres://tongban:***@127.0.0.1:1/hub"
        ),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(message.matches("failed to connect").count(), 1, "{message}");
    assert!(message.contains("refused"), "the reason: {message}");
}

fn beijing() -> DivisionCode {
    DivisionCode::parse("11").unwrap()
}

fn directory(keys: &[StoredRegionKey]) -> KeyDirectory {
    let mut dir = KeyDirectory::new();
    for key in keys.iter().filter(|k| k.status == KeyStatus::Active) {
        dir.publish(key.signing_key().published());
    }
    dir
}

fn claims() -> CodeClaims {
    CodeClaims {
        code_id: uuid::Uuid::from_u128(1),
        colour: Colour::Green,
        region: beijing(),
        issued_at: datetime!(2020-06-13 12:00 UTC),
        expires_at: datetime!(2020-06-13 12:10 UTC),
        negative_test_at: None,
    }
}

#[test]
fn region_keys_in_postgres_rotate_and_retire_for_every_replica() {
    let db = TestDb::new();
    let a = PostgresRegionKeys::open(db.connect(), kek(1)).unwrap();
    let b = PostgresRegionKeys::open(db.connect(), kek(1)).unwrap();
    // Two replicas creating the region's first key at once make one.
    std::thread::scope(|s| {
        s.spawn(|| a.create_first(beijing()).unwrap());
        s.spawn(|| b.create_first(beijing()).unwrap());
    });
    let keys = b.load().unwrap();
    assert_eq!(keys.len(), 1);
    let first = keys[0].clone();

    let at = datetime!(2020-06-13 12:05 UTC);
    let old_code = sign_code(&first.signing_key(), &claims()).unwrap();
    let second = a.rotate(beijing()).unwrap();
    let keys = b.load().unwrap();
    assert_eq!(signing_keys(&keys)[&beijing()].kid(), second.kid());
    let new_code = sign_code(&signing_keys(&keys)[&beijing()].signing_key(), &claims()).unwrap();
    assert!(verify_code(&directory(&keys), &old_code, at).is_ok());
    assert!(verify_code(&directory(&keys), &new_code, at).is_ok());

    assert!(matches!(
        b.retire(beijing(), second.kid()),
        Err(RegionKeyError::RetiringSigningKey { .. })
    ));
    b.retire(beijing(), first.kid()).unwrap();
    let keys = a.load().unwrap();
    assert_eq!(
        keys.iter().find(|k| k.kid() == first.kid()).unwrap().status,
        KeyStatus::Retired
    );
    assert!(verify_code(&directory(&keys), &old_code, at).is_err());
    assert!(verify_code(&directory(&keys), &new_code, at).is_ok());

    // The private keys are stored wrapped: another KEK opens none.
    let stranger = PostgresRegionKeys::open(db.connect(), kek(9)).unwrap();
    assert!(matches!(stranger.load(), Err(RegionKeyError::Kek(_))));
}
