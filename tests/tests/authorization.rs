//! The authorisation matrix: every role against representative fields and
//! mutations, each either allowed or answered with `extensions.code =
//! "FORBIDDEN"`; and bad tokens answered with 401.

use serde_json::{json, Value};
use tongban_e2e::{spawn_app, App};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Allowed,
    Forbidden,
}
use Expect::{Allowed as A, Forbidden as F};

async fn outcome(app: &App, token: &str, query: &str, vars: &Value) -> anyhow::Result<Expect> {
    let body = app.gql(token, query, vars.clone()).await?;
    match body.get("errors").and_then(|e| e.as_array()) {
        None => Ok(A),
        Some(errors) => {
            let codes: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str())
                .collect();
            if codes.contains(&"FORBIDDEN") {
                Ok(F)
            } else {
                anyhow::bail!("unexpected errors for {query}: {body}")
            }
        }
    }
}

#[actix_web::test]
async fn every_role_sees_exactly_the_fields_it_may() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let person = Uuid::now_v7().to_string();
    let other_person = Uuid::now_v7().to_string();
    let checkpoint = Uuid::now_v7().to_string();
    let roles: Vec<(&str, String)> = vec![
        ("citizen (self)", app.token("citizen", &person, None)?),
        (
            "citizen (other)",
            app.token("citizen", &other_person, None)?,
        ),
        ("checkpoint", app.token("checkpoint", &checkpoint, None)?),
        ("lab", app.token("lab", "lab-1", None)?),
        (
            "official (Fengtai)",
            app.token("health_official", "o-ft", Some("110106"))?,
        ),
        (
            "official (Dongcheng)",
            app.token("health_official", "o-dc", Some("110101"))?,
        ),
        ("department", app.token("department", "transport", None)?),
        ("auditor", app.token("auditor", "auditor-1", None)?),
        ("admin", app.token("admin", "admin-1", None)?),
    ];
    let citizen = &roles[0].1;
    let registered = app
        .data(
            citizen,
            r#"mutation { registerPerson(input: {homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E7654321", name: "李明", phone: "13900000000"}) { position } }"#,
            json!({}),
        )
        .await?;
    let code = app
        .data(
            citizen,
            "mutation { generateCode { text position } }",
            json!({}),
        )
        .await?;
    let vars = json!({
        "id": person,
        "code": code["generateCode"]["text"],
        "p": code["generateCode"]["position"],
    });
    let _ = registered;

    let person_q = |fields: &str| {
        format!("query($id: ID!, $p: Int) {{ person(id: $id, purpose: \"audit\", minPosition: $p) {{ {fields} }} }}")
    };
    //                      self   other  chkpt  lab    offFT  offDC  dept   audit  admin
    let matrix: Vec<(String, [Expect; 9])> = vec![
        ("query($p: Int) { me(minPosition: $p) { colour { colour } } }".into(),
                           [A,     A,     F,     F,     F,     F,     F,     F,     F]),
        (person_q("colour { colour }"),
                           [A,     F,     F,     F,     A,     F,     F,     A,     A]),
        (person_q("personalData { name }"),
                           [A,     F,     F,     F,     A,     F,     F,     F,     A]),
        (person_q("accessLog { by }"),
                           [A,     F,     F,     F,     F,     F,     F,     A,     A]),
        (person_q("travelHistory { county }"),
                           [A,     F,     F,     F,     A,     F,     F,     A,     A]),
        ("query($code: String!) { verifyCode(code: $code) { valid colour } }".into(),
                           [F,     F,     A,     F,     A,     A,     F,     F,     A]),
        (r#"{ colourCounts(region: "110106") { red } }"#.into(),
                           [F,     F,     F,     F,     A,     F,     A,     A,     A]),
        (r#"{ appeals(region: "110106") { appealId } }"#.into(),
                           [F,     F,     F,     F,     A,     F,     F,     A,     A]),
        ("{ logHead { position } }".into(),
                           [F,     F,     F,     F,     F,     F,     F,     A,     A]),
        (r#"{ riskAreas { area } }"#.into(),
                           [A,     A,     A,     A,     A,     A,     A,     A,     A]),
        // Officials record evidence only about people of their region;
        // departments report travel and dwell, not test results.
        (r#"mutation($id: ID!) { recordTestResult(personId: $id, kind: NUCLEIC_ACID, result: NEGATIVE, lab: "x") { position } }"#.into(),
                           [F,     F,     F,     A,     A,     F,     F,     F,     A]),
        (r#"{ colourCountHistory(region: "110106") { hour green } }"#.into(),
                           [F,     F,     F,     F,     A,     F,     A,     A,     A]),
        (r#"{ pendingOverrides(region: "110106") { overrideId } }"#.into(),
                           [F,     F,     F,     F,     A,     F,     F,     A,     A]),
        ("{ verifyChain(from: 0) { intact } }".into(),
                           [F,     F,     F,     F,     F,     F,     F,     A,     A]),
        (r#"mutation { declareRiskArea(area: "110106018", level: HIGH) { position } }"#.into(),
                           [F,     F,     F,     F,     A,     F,     F,     F,     F]),
        // The risk area's stream (it exists now); no person's data in it.
        (r#"{ streamEvents(stream: "riskarea-110106018") { events { eventType } } }"#.into(),
                           [F,     F,     F,     F,     F,     F,     F,     A,     A]),
        ("mutation { reevaluateAll { position } }".into(),
                           [F,     F,     F,     F,     F,     F,     F,     F,     A]),
    ];
    let mut wrong = Vec::new();
    for (query, expected) in &matrix {
        for ((role, token), want) in roles.iter().zip(expected.iter()) {
            let got = outcome(&app, token, query, &vars).await?;
            if got != *want {
                wrong.push(format!("{role}: {query} -> {got:?}, expected {want:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "authorisation mismatches:\n{}",
        wrong.join("\n")
    );
    Ok(())
}

#[actix_web::test]
async fn bad_tokens_get_401_with_the_reason() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let body = json!({"query": "{ whoami { role } }"});
    let (status, answer) = app.post(Some("not-a-jwt"), body.clone()).await?;
    assert_eq!(status, 401);
    assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("malformed"));

    let good = app.token("admin", "admin-1", None)?;
    let mut forged = good.clone();
    forged.truncate(good.len() - 4);
    forged.push_str("AAAA");
    let (status, answer) = app.post(Some(&forged), body.clone()).await?;
    assert_eq!(status, 401);
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("forged"),
        "{answer}"
    );

    let key = std::fs::read_to_string(app.data.join("dev-jwt.key"))?;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "admin-1", "role": "admin", "exp": 1_000_000}),
        &jsonwebtoken::EncodingKey::from_secret(key.trim().as_bytes()),
    )?;
    let (status, answer) = app.post(Some(&expired), body.clone()).await?;
    assert_eq!(status, 401);
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{answer}"
    );

    let (status, answer) = app.post(Some(&good), body).await?;
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["whoami"]["role"], "admin");
    Ok(())
}

/// `tongban token` mints from the data directory's development key: it
/// neither listens nor opens a store, so it lists and accepts no such
/// options (an option it ignored would mislead an operator).
#[test]
fn the_token_command_refuses_options_it_would_ignore() -> anyhow::Result<()> {
    let bin = tongban_e2e::binary()?;
    let help = std::process::Command::new(&bin)
        .args(["token", "--help"])
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--data"), "{help}");
    for flag in ["--listen", "--store", "--allow-remote-development"] {
        assert!(!help.contains(flag), "{flag} is listed:\n{help}");
    }
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(&bin)
        .args([
            "token",
            "--role",
            "admin",
            "--listen",
            "127.0.0.1:9",
            "--data",
        ])
        .arg(dir.path())
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
