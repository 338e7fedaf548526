//! Scale-out: one log served over the EventStoreDB protocol
//! (`tongban esdb-serve`) and two gateway replicas on it
//! (`serve --store esdb://…`), each with its own read models. A write
//! through one replica is read through the other.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use tongban_e2e::{binary, spawn_on};
use uuid::Uuid;

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn two_gateway_replicas_on_one_log_see_each_others_writes() -> anyhow::Result<()> {
    let log_dir = tempfile::tempdir()?;
    let (log, url) = start_log(log_dir.path())?;

    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let one = spawn_on(d1.path(), &[("TONGBAN_STORE", &url)])?;
    let two = spawn_on(d2.path(), &[("TONGBAN_STORE", &url)])?;
    let person = Uuid::now_v7().to_string();
    let on_one = one.token("citizen", &person, None)?;
    let on_two = two.token("citizen", &person, None)?;
    let registered = one
        .data(
            &on_one,
            r#"mutation { registerPerson(input: {homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E1111111", name: "赵磊", phone: "13700000000"}) { position colour } }"#,
            json!({}),
        )
        .await?;
    let position = registered["registerPerson"]["position"].clone();
    let me = two
        .data(
            &on_two,
            "query($p: Int) { me(minPosition: $p) { id colour { colour } } }",
            json!({"p": position}),
        )
        .await?;
    assert_eq!(me["me"]["id"], person.as_str(), "{me}");
    assert_eq!(me["me"]["colour"]["colour"], "green");
    drop(one);
    drop(two);
    drop(log);
    Ok(())
}

fn start_log(dir: &std::path::Path) -> anyhow::Result<(Kill, String)> {
    let mut log = Command::new(binary()?)
        .args(["esdb-serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = log
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let log = Kill(log);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("esdb-serve printed nothing"))??;
    let url = first
        .strip_prefix("EventStoreDB endpoint listening on ")
        .ok_or_else(|| anyhow::anyhow!("unexpected line {first}"))?
        .trim()
        .to_string();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok((log, url))
}

/// A database of this test's own on the machine's PostgreSQL, dropped after.
struct Database(String);

impl Database {
    fn create() -> anyhow::Result<Self> {
        let name = format!("tongban_e2e_{}", Uuid::now_v7().simple());
        let status = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .status()?;
        anyhow::ensure!(status.success(), "could not create database {name}");
        Ok(Self(name))
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .status();
    }
}

#[actix_web::test]
async fn three_replicas_with_one_vault_and_one_key_set_decide_alike() -> anyhow::Result<()> {
    let log_dir = tempfile::tempdir()?;
    let (log, url) = start_log(log_dir.path())?;
    let database = Database::create()?;
    let secrets = tempfile::tempdir()?;
    let kek = secrets.path().join("vault.kek");
    std::fs::write(&kek, "5a".repeat(32))?;
    let keys = secrets.path().join("keys");
    std::fs::create_dir_all(&keys)?;
    let vault = database.url();
    let kek_text = kek.display().to_string();
    let keys_text = keys.display().to_string();
    let env = [
        ("TONGBAN_STORE", url.as_str()),
        ("TONGBAN_VAULT", vault.as_str()),
        ("TONGBAN_VAULT_KEK_FILE", kek_text.as_str()),
        ("TONGBAN_KEYS_DIR", keys_text.as_str()),
    ];
    let (da, db, dc) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    let a = spawn_on(da.path(), &env)?;
    let b = spawn_on(db.path(), &env)?;
    let c = spawn_on(dc.path(), &env)?;
    let person = Uuid::now_v7().to_string();

    // Register on A, generate the code on B, register a checkpoint on A
    // and scan on C.
    let registered = a
        .data(
            &a.token("citizen", &person, None)?,
            r#"mutation { registerPerson(input: {homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E2222222", name: "赵磊", phone: "13700000000"}) { position } }"#,
            json!({}),
        )
        .await?;
    let mut position = registered["registerPerson"]["position"]
        .as_u64()
        .unwrap_or(0);
    let code = b
        .data(
            &b.token("citizen", &person, None)?,
            "mutation { generateCode { text position } }",
            json!({}),
        )
        .await?;
    let text = code["generateCode"]["text"].clone();
    let checkpoint = a
        .data(
            &a.token("health_official", "o-ft", Some("110106"))?,
            r#"mutation { registerCheckpoint(name: "Xinfadi gate", place: "110106018") { checkpointId } }"#,
            json!({}),
        )
        .await?;
    let checkpoint_id = checkpoint["registerCheckpoint"]["checkpointId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let verified = c
        .data(
            &c.token("checkpoint", &checkpoint_id, None)?,
            "query($code: String!) { verifyCode(code: $code) { valid colour } }",
            json!({"code": text}),
        )
        .await?;
    assert_eq!(
        verified["verifyCode"]["valid"], true,
        "a code from B verifies at C: {verified}"
    );
    let scanned = c
        .data(
            &c.token("checkpoint", &checkpoint_id, None)?,
            "mutation($code: String!) { scanCode(code: $code, temperature: 36.5) { admitted position } }",
            json!({"code": text}),
        )
        .await?;
    assert_eq!(scanned["scanCode"]["admitted"], true, "{scanned}");

    // A risk area declared on A and a policy published on B.
    let declared = a
        .data(
            &a.token("health_official", "o-ft", Some("110106"))?,
            r#"mutation { declareRiskArea(area: "110106018", level: HIGH) { position } }"#,
            json!({}),
        )
        .await?;
    position = position.max(
        declared["declareRiskArea"]["position"]
            .as_u64()
            .unwrap_or(0),
    );
    let policy = serde_json::to_value(tongban_health_code::policy::baseline_document())?;
    let published = b
        .data(
            &b.token("health_official", "o-bj", Some("11"))?,
            r#"mutation($policy: JSON!) { publishPolicy(region: "11", policyId: "beijing", document: $policy) { position } }"#,
            json!({"policy": policy}),
        )
        .await?;
    position = position.max(published["publishPolicy"]["position"].as_u64().unwrap_or(0));

    // Every replica answers the same colour once the re-evaluation (run by
    // whichever replica holds its lease) has landed.
    let mut colours = Vec::new();
    for _ in 0..60 {
        colours.clear();
        for replica in [&a, &b, &c] {
            let me = replica
                .data(
                    &replica.token("citizen", &person, None)?,
                    "query($p: Int) { me(minPosition: $p) { colour { colour ruleId } } }",
                    json!({"p": position}),
                )
                .await?;
            colours.push(me["me"]["colour"].clone());
        }
        if colours.iter().all(|c| *c == colours[0]) && colours[0]["colour"] != "green" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        colours.iter().all(|c| *c == colours[0]) && colours[0]["colour"] != "green",
        "the replicas answer {colours:?}"
    );

    // An erasure through C is an erasure at A.
    let official = a.token("health_official", "o-ft", Some("110106"))?;
    let query =
        r#"query($id: ID!) { person(id: $id, purpose: "tracing") { personalData { name } } }"#;
    let before = a.data(&official, query, json!({"id": person})).await?;
    assert_eq!(before["person"]["personalData"]["name"], "赵磊", "{before}");
    c.data(
        &c.token("citizen", &person, None)?,
        "mutation { erasePersonalData { position } }",
        json!({}),
    )
    .await?;
    let after = a.data(&official, query, json!({"id": person})).await?;
    assert!(
        !after.to_string().contains("赵磊"),
        "erased at C, read at A: {after}"
    );
    drop((a, b, c, log));
    Ok(())
}
