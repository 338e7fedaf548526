//! A person registers, a lab records a positive test, and the colour change
//! is seen through a query (read your writes) and through subscriptions
//! over both WebSocket protocols. Then the node restarts and nothing is lost.

use serde_json::json;
use tongban_e2e::{spawn_app, spawn_on};
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
