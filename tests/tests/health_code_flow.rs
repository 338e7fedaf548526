//! A person registers, a lab records a positive test, and the colour change
//! is seen through a query (read your writes) and through subscriptions
//! over both WebSocket protocols. Then the node restarts and nothing is lost,
//! neither after a clean stop nor after `kill -9` under concurrent writers.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tongban_e2e::{spawn_app, spawn_on, App};
use uuid::Uuid;

const REGISTER: &str = r#"mutation($home: String!, $residence: String!) {
  registerPerson(input: {homeRegion: $home, residence: $residence, idKind: "passport",
                         idNumber: "E12345678", name: "王芳", phone: "13800138000"}) {
    position events colour id } }"#;

const POSITIVE: &str = r#"mutation($id: ID!) {
  recordTestResult(personId: $id, kind: NUCLEIC_ACID, result: POSITIVE, lab: "Fengtai CDC") {
    position colour } }"#;

const ME: &str =
    r#"query($pos: Int) { me(minPosition: $pos) { id colour { colour reason } code { colour } } }"#;

/// A community in Huaxiang township, Fengtai.
const HUAXIANG_COMMUNITY: &str = "110106018002";

#[actix_web::test]
async fn a_positive_test_turns_the_code_red_in_queries_and_subscriptions() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let person = Uuid::now_v7().to_string();
    let citizen = app.token("citizen", &person, None)?;
    let lab = app.token("lab", "lab-fengtai", None)?;

    let registered = app
        .data(
            &citizen,
            REGISTER,
            json!({"home": "11", "residence": HUAXIANG_COMMUNITY}),
        )
        .await?;
    assert_eq!(registered["registerPerson"]["colour"], "green");
    assert_eq!(registered["registerPerson"]["id"], person.as_str());

    // Subscribe before the change, over the current protocol and the old one.
    let mut modern = app.ws("graphql-transport-ws", &citizen).await?;
    modern
        .subscribe(
            "1",
            "subscription { colourChanged { personId colour previous reason cursor } }",
        )
        .await?;
    let mut legacy = app.ws("graphql-ws", &citizen).await?;
    legacy
        .subscribe("7", "subscription { colourChanged { colour } }")
        .await?;
    // History first: the green of the registration.
    let first = modern.next_data("1").await?;
    assert_eq!(first["data"]["colourChanged"]["colour"], "green", "{first}");
    assert_eq!(
        legacy.next_data("7").await?["data"]["colourChanged"]["colour"],
        "green"
    );

    let code = app
        .data(
            &citizen,
            "mutation { generateCode { text colour } }",
            json!({}),
        )
        .await?;
    assert_eq!(code["generateCode"]["colour"], "green");

    let recorded = app.data(&lab, POSITIVE, json!({"id": person})).await?;
    assert_eq!(recorded["recordTestResult"]["colour"], "red");
    let position = recorded["recordTestResult"]["position"]
        .as_u64()
        .unwrap_or(0);

    // Read your writes: the query waits until the read models reached the position.
    let me = app.data(&citizen, ME, json!({"pos": position})).await?;
    assert_eq!(me["me"]["colour"]["colour"], "red", "{me}");
    assert_eq!(me["me"]["id"], person.as_str());

    let change = modern.next_data("1").await?;
    assert_eq!(change["data"]["colourChanged"]["colour"], "red", "{change}");
    assert_eq!(change["data"]["colourChanged"]["previous"], "green");
    assert_eq!(
        legacy.next_data("7").await?["data"]["colourChanged"]["colour"],
        "red"
    );

    // /metrics counts the open connections, their subscriptions, the
    // colour changes and the operations by name.
    let (status, metrics) = app.get("/metrics").await?;
    assert_eq!(status, 200);
    for line in [
        "tongban_websocket_connections 2",
        "tongban_websocket_operations 2",
        "tongban_graphql_operations_total{type=\"subscription\",field=\"colourChanged\"} 2",
        "tongban_graphql_operations_total{type=\"mutation\",field=\"recordTestResult\"} 1",
        "tongban_graphql_operation_errors_total{type=\"mutation\",field=\"recordTestResult\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    assert!(
        !metrics.contains("tongban_colour_changes_total 0"),
        "{metrics}"
    );
    drop(modern);
    drop(legacy);
    let mut closed = false;
    for _ in 0..50 {
        let (_, metrics) = app.get("/metrics").await?;
        if metrics.contains("tongban_websocket_connections 0")
            && metrics.contains("tongban_websocket_operations 0")
        {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed, "closed WebSockets are no longer counted");
    Ok(())
}

#[actix_web::test]
async fn data_and_signed_codes_survive_a_restart() -> anyhow::Result<()> {
    let mut app = spawn_app()?;
    let dir = app.keep_data();
    let person = Uuid::now_v7().to_string();
    let citizen = app.token("citizen", &person, None)?;
    let lab = app.token("lab", "lab-1", None)?;
    let official = app.token("health_official", "official-1", Some("11"))?;
    app.data(
        &citizen,
        REGISTER,
        json!({"home": "11", "residence": HUAXIANG_COMMUNITY}),
    )
    .await?;
    let code = app
        .data(&citizen, "mutation { generateCode { text } }", json!({}))
        .await?;
    let text = code["generateCode"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let recorded = app.data(&lab, POSITIVE, json!({"id": person})).await?;
    let position = recorded["recordTestResult"]["position"]
        .as_u64()
        .unwrap_or(0);
    let data = app.data.clone();
    app.stop()?;

    let again = spawn_on(&data, &[])?;
    let me = again.data(&citizen, ME, json!({"pos": position})).await?;
    assert_eq!(me["me"]["colour"]["colour"], "red", "{me}");
    let verified = again
        .data(
            &official,
            "query($c: String!) { verifyCode(code: $c) { valid colour signedColour reasonCode checkedOnline } }",
            json!({"c": text}),
        )
        .await?;
    // The signature still verifies after the restart (the region key
    // survived), and the verdict is the holder's status at the log head:
    // the code was generated green before the positive test, so it is void.
    assert_eq!(
        verified["verifyCode"]["signedColour"], "green",
        "{verified}"
    );
    assert_eq!(verified["verifyCode"]["reasonCode"], "CODE_SUPERSEDED");
    assert_eq!(verified["verifyCode"]["valid"], false);
    assert_eq!(verified["verifyCode"]["colour"], "red");
    assert_eq!(verified["verifyCode"]["checkedOnline"], true);
    again.stop()?;
    drop(dir);
    Ok(())
}

#[actix_web::test]
async fn officials_reads_are_recorded_and_the_citizen_sees_them() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let person = Uuid::now_v7().to_string();
    let citizen = app.token("citizen", &person, None)?;
    let official = app.token("health_official", "official-fengtai", Some("110106"))?;
    let registered = app
        .data(
            &citizen,
            REGISTER,
            json!({"home": "11", "residence": HUAXIANG_COMMUNITY}),
        )
        .await?;
    let read = app
        .data(
            &official,
            "query($id: ID!, $p: Int) { person(id: $id, purpose: \"epidemiological investigation\", minPosition: $p) { colour { colour } personalData { name } } }",
            json!({"id": person, "p": registered["registerPerson"]["position"]}),
        )
        .await?;
    assert_eq!(read["person"]["personalData"]["name"], "王芳");
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        let log = app
            .data(
                &citizen,
                "{ me { accessLog { role purpose fields } } }",
                json!({}),
            )
            .await?;
        seen = log["me"]["accessLog"].clone();
        if seen.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen[0]["role"], "health_official", "{seen}");
    assert_eq!(seen[0]["purpose"], "epidemiological investigation");
    assert_eq!(seen[0]["fields"], json!(["colour", "personalData"]));
    Ok(())
}

#[actix_web::test]
async fn a_checkpoint_scan_is_durable_and_admits_green() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let person = Uuid::now_v7().to_string();
    let citizen = app.token("citizen", &person, None)?;
    let official = app.token("health_official", "official-fengtai", Some("110106"))?;
    app.data(
        &citizen,
        REGISTER,
        json!({"home": "11", "residence": HUAXIANG_COMMUNITY}),
    )
    .await?;
    let cp = app
        .data(
            &official,
            r#"mutation { registerCheckpoint(name: "新发地市场", place: "110106018002") { checkpointId placeCode } }"#,
            json!({}),
        )
        .await?;
    let checkpoint_id = cp["registerCheckpoint"]["checkpointId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let device = app.token("checkpoint", &checkpoint_id, None)?;
    let code = app
        .data(&citizen, "mutation { generateCode { text } }", json!({}))
        .await?;
    let scan = app
        .data(
            &device,
            "mutation($c: String!) { scanCode(code: $c, temperature: 36.6) { admitted colour reason position } }",
            json!({"c": code["generateCode"]["text"]}),
        )
        .await?;
    assert_eq!(scan["scanCode"]["admitted"], true, "{scan}");
    let pos = scan["scanCode"]["position"].as_u64().unwrap_or(0);
    let log = app
        .data(
            &device,
            "query($id: ID!, $p: Int) { checkpoint(id: $id, minPosition: $p) { name scans { colour admitted temperature } } }",
            json!({"id": checkpoint_id, "p": pos}),
        )
        .await?;
    assert_eq!(log["checkpoint"]["scans"][0]["admitted"], true, "{log}");
    let (_, metrics) = app.get("/metrics").await?;
    assert!(metrics.contains("tongban_scans_total 1"), "{metrics}");
    Ok(())
}

#[actix_web::test]
async fn a_department_feed_delivery_is_recorded_for_the_person() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let person = Uuid::now_v7().to_string();
    let citizen = app.token("citizen", &person, None)?;
    let department = app.token("department", "transport", None)?;
    app.data(
        &citizen,
        REGISTER,
        json!({"home": "11", "residence": HUAXIANG_COMMUNITY}),
    )
    .await?;
    let mut feed = app.ws("graphql-transport-ws", &department).await?;
    feed.subscribe(
        "d",
        "subscription { colourChanged(purpose: \"rail boarding checks\") { personId colour } }",
    )
    .await?;
    let first = feed.next_data("d").await?;
    assert_eq!(first["data"]["colourChanged"]["personId"], person.as_str());
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        let log = app
            .data(
                &citizen,
                "{ me { accessLog { role purpose fields } } }",
                json!({}),
            )
            .await?;
        seen = log["me"]["accessLog"].clone();
        if seen.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen[0]["role"], "department", "{seen}");
    assert_eq!(seen[0]["purpose"], "rail boarding checks");
    Ok(())
}

/// What an acknowledged write promised: found again after any restart.
#[derive(Clone, Debug)]
enum Ack {
    /// `registerPerson` answered this position for this person.
    Person {
        token: String,
        person: String,
        position: u64,
    },
    /// `scanCode` answered this scan id (its answer's position is that of
    /// the person's evidence the scan became, not of the scan itself).
    Scan { checkpoint: String, scan_id: String },
}

/// One concurrent writer: a citizen whose code its checkpoint scans, and
/// who registers new persons in between.
struct Writer {
    citizen: String,
    checkpoint: String,
    device: String,
}

/// Generous rate limits: the writers are few callers writing fast.
const KILL_ENV: [(&str, &str); 2] = [
    ("TONGBAN_RATE_PER_SECOND", "1000000"),
    ("TONGBAN_RATE_BURST", "1000000"),
];

/// A development token minted in-process (thousands of persons; starting
/// `tongban token` for each would dominate the test).
fn mint(data: &Path, role: &str, subject: &str, region: Option<&str>) -> anyhow::Result<String> {
    let key = std::fs::read_to_string(data.join("dev-jwt.key"))
        .context("failed to read the development key")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut claims = json!({"sub": subject, "role": role, "iat": now, "exp": now + 3600});
    if let Some(r) = region {
        claims["region"] = json!(r);
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.trim().as_bytes()),
    )?)
}

/// The position a successful answer reports at `field`, or `None` when the
/// answer is not an acknowledgement (an error, a refusal).
fn acknowledged(status: u16, body: &Value, field: &str) -> Option<u64> {
    if status != 200 || body.get("errors").is_some() {
        return None;
    }
    body["data"][field]["position"].as_u64()
}

/// A document number of the person's own (one number, one person).
fn passport_of(person: &str) -> String {
    let hex: String = person.chars().filter(char::is_ascii_hexdigit).collect();
    format!("E{}", &hex[hex.len().saturating_sub(19)..])
}

/// Writes until `stop`: registrations and scans, alternating.
async fn write_until_stopped(
    app: &App,
    data: &Path,
    writer: &Writer,
    code: &str,
    stop: &Cell<bool>,
    acks: &RefCell<Vec<Ack>>,
    refused: &Cell<u64>,
) -> anyhow::Result<()> {
    let mut n = 0u64;
    while !stop.get() {
        n += 1;
        let outcome = if n.is_multiple_of(2) {
            app.post(
                Some(&writer.device),
                json!({"query": "mutation($c: String!) { scanCode(code: $c, temperature: 36.6) { position scanId } }",
                       "variables": {"c": code}}),
            )
            .await
            .map(|(status, body)| {
                acknowledged(status, &body, "scanCode").and_then(|_| {
                    Some(Ack::Scan {
                        checkpoint: writer.checkpoint.clone(),
                        scan_id: body["data"]["scanCode"]["scanId"].as_str()?.to_owned(),
                    })
                })
            })
        } else {
            let person = Uuid::now_v7().to_string();
            let token = mint(data, "citizen", &person, None)?;
            app.post(
                Some(&token),
                json!({"query": REGISTER_UNIQUE,
                       "variables": {"home": "11", "residence": HUAXIANG_COMMUNITY,
                                     "number": passport_of(&person)}}),
            )
            .await
            .map(|(status, body)| {
                acknowledged(status, &body, "registerPerson").map(|position| Ack::Person {
                    token,
                    person,
                    position,
                })
            })
        };
        match outcome {
            Ok(Some(ack)) => acks.borrow_mut().push(ack),
            // An answer that is not an acknowledgement promises nothing.
            Ok(None) => refused.set(refused.get() + 1),
            // The node was killed under this request.
            Err(_) => {}
        }
    }
    Ok(())
}

const REGISTER_UNIQUE: &str = r#"mutation($home: String!, $residence: String!, $number: String!) {
  registerPerson(input: {homeRegion: $home, residence: $residence, idKind: "passport",
                         idNumber: $number, name: "王芳", phone: "13800138000"}) {
    position } }"#;

/// Counts the acknowledged writes the node cannot show.
async fn lost_writes(app: &App, admin: &str, acks: &[Ack]) -> anyhow::Result<Vec<Ack>> {
    let mut scans: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut lost = Vec::new();
    for ack in acks {
        match ack {
            Ack::Person {
                token,
                person,
                position,
            } => {
                let me = app
                    .data(token, ME, json!({"pos": position}))
                    .await
                    .with_context(|| format!("reading person {person} at {position}"))?;
                if me["me"]["id"] != person.as_str() {
                    lost.push(ack.clone());
                }
            }
            Ack::Scan {
                checkpoint,
                scan_id,
            } => {
                scans.entry(checkpoint).or_default().insert(scan_id);
            }
        }
    }
    for (checkpoint, scan_ids) in scans {
        let mut seen = String::new();
        let mut from = Some(0u64);
        while let Some(f) = from {
            let page = app
                .data(
                    admin,
                    "query($s: String!, $f: Int) { streamEvents(stream: $s, from: $f, limit: 200) { events { data } nextFrom } }",
                    json!({"s": format!("checkpoint-{checkpoint}"), "f": f}),
                )
                .await?;
            let page = &page["streamEvents"];
            for e in page["events"].as_array().into_iter().flatten() {
                seen.push_str(&e["data"].to_string());
            }
            from = page["nextFrom"].as_u64();
        }
        for scan_id in scan_ids.into_iter().filter(|id| !seen.contains(id)) {
            lost.push(Ack::Scan {
                checkpoint: checkpoint.to_owned(),
                scan_id: scan_id.to_owned(),
            });
        }
    }
    Ok(lost)
}

/// Recomputes the whole hash chain through `verifyChain`, page by page.
async fn chain_is_intact(app: &App, admin: &str) -> anyhow::Result<u64> {
    let mut checked = 0;
    let mut from = Some(0u64);
    while let Some(f) = from {
        let v = app
            .data(
                admin,
                "query($f: Int) { verifyChain(from: $f) { intact eventsChecked brokenAt problem nextFrom } }",
                json!({"f": f}),
            )
            .await?;
        let v = &v["verifyChain"];
        if v["intact"] != true {
            bail!("the hash chain is broken: {v}");
        }
        checked += v["eventsChecked"].as_u64().unwrap_or(0);
        from = v["nextFrom"].as_u64();
    }
    Ok(checked)
}

/// `kill -9` rounds: `TONGBAN_KILL_ROUNDS` (3 by default; the script
/// `infra/scripts/kill9.sh` runs 20).
fn kill_rounds() -> u32 {
    std::env::var("TONGBAN_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

#[actix_web::test]
async fn every_acknowledged_write_survives_kill_nine_under_concurrent_writers() -> anyhow::Result<()>
{
    const WRITERS: usize = 4;
    let rounds = kill_rounds();
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_path_buf();
    let first = spawn_on(&data, &KILL_ENV)?;
    let admin = mint(&data, "admin", "admin-kill9", None)?;
    let official = mint(&data, "health_official", "official-fengtai", Some("110106"))?;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let person = Uuid::now_v7().to_string();
        let citizen = mint(&data, "citizen", &person, None)?;
        first
            .data(
                &citizen,
                REGISTER_UNIQUE,
                json!({"home": "11", "residence": HUAXIANG_COMMUNITY,
                       "number": passport_of(&person)}),
            )
            .await?;
        let cp = first
            .data(
                &official,
                r#"mutation { registerCheckpoint(name: "新发地市场", place: "110106018002") { checkpointId } }"#,
                json!({}),
            )
            .await?;
        let checkpoint = cp["registerCheckpoint"]["checkpointId"]
            .as_str()
            .context("a checkpoint id")?
            .to_owned();
        let device = mint(&data, "checkpoint", &checkpoint, None)?;
        writers.push(Writer {
            citizen,
            checkpoint,
            device,
        });
    }

    let mut all: Vec<Ack> = Vec::new();
    let mut previous: Vec<Ack> = Vec::new();
    let mut refused_total = 0;
    let mut node = Some(first);
    for round in 0..rounds {
        let app = match node.take() {
            Some(app) => app,
            None => spawn_on(&data, &KILL_ENV)?,
        };
        if round > 0 {
            let lost = lost_writes(&app, &admin, &previous).await?;
            assert!(
                lost.is_empty(),
                "round {round}: {} of {} acknowledged writes lost after kill -9: {lost:?}",
                lost.len(),
                previous.len()
            );
            chain_is_intact(&app, &admin).await?;
        }
        let mut codes = Vec::new();
        for w in &writers {
            let code = app
                .data(&w.citizen, "mutation { generateCode { text } }", json!({}))
                .await?;
            codes.push(
                code["generateCode"]["text"]
                    .as_str()
                    .context("a code")?
                    .to_owned(),
            );
        }
        let stop = Cell::new(false);
        let acks = RefCell::new(Vec::new());
        let refused = Cell::new(0);
        // Kill between 0.3 and 1.1 s into the writes.
        let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) * 3;
        let killer = async {
            tokio::time::sleep(Duration::from_millis(300 + jitter)).await;
            let status = std::process::Command::new("kill")
                .args(["-9", &app.pid().to_string()])
                .status();
            stop.set(true);
            status
        };
        let writing =
            futures::future::try_join_all(writers.iter().zip(&codes).map(|(w, code)| {
                write_until_stopped(&app, &data, w, code, &stop, &acks, &refused)
            }));
        let (written, killed) = futures::join!(writing, killer);
        written?;
        if !killed?.success() {
            bail!("kill -9 failed");
        }
        drop(app);
        let acks = acks.into_inner();
        assert!(!acks.is_empty(), "round {round}: no write was acknowledged");
        eprintln!(
            "kill -9 round {round}: {} writes acknowledged, {} refused",
            acks.len(),
            refused.get()
        );
        refused_total += refused.get();
        all.extend(acks.iter().cloned());
        previous = acks;
    }

    let app = spawn_on(&data, &KILL_ENV)?;
    let lost = lost_writes(&app, &admin, &all).await?;
    let checked = chain_is_intact(&app, &admin).await?;
    eprintln!(
        "kill -9: {rounds} rounds, {} writes acknowledged, {} lost, {refused_total} refused, chain intact over {checked} events",
        all.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    app.stop()?;
    drop(dir);
    Ok(())
}
