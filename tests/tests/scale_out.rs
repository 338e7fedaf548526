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
    let mut log = Command::new(binary()?)
        .args(["esdb-serve", "--esdb-listen", "127.0.0.1:0", "--data"])
        .arg(log_dir.path())
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
