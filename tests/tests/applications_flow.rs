//! Government services beside the health code, against the real binary:
//! a department publishes the elderly-care subsidy, a citizen finds it and
//! applies, the department's official opens (recorded), accepts and
//! approves it, and the citizen sees the status, the history, who looked
//! and the inbox notifications (live and queried). Illegal transitions,
//! invalid forms and officials of another department get clear errors.

use serde_json::{json, Value};
use tongban_e2e::{spawn_app, App};
use uuid::Uuid;

const SERVICE: &str = "elderly-care-subsidy";

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn publish_elderly_care(app: &App, official: &str) -> anyhow::Result<u64> {
    let data = app
        .data(
            official,
            r#"mutation($s: ServiceInput!) { publishService(service: $s) { code events position } }"#,
            json!({"s": {
                "code": SERVICE,
                "name": "Elderly-care subsidy",
                "department": "civil-affairs",
                "description": "Monthly subsidy for residents aged sixty or over who need care.",
                "requiredDocuments": ["Resident ID", "Care needs assessment"],
                "eligibleRegions": ["11"],
                "processingDays": 20,
                "formSchema": {
                    "type": "object",
                    "required": ["age", "careLevel", "bankAccount"],
                    "additionalProperties": false,
                    "properties": {
                        "age": {"type": "integer", "minimum": 60, "maximum": 130},
                        "careLevel": {"enum": ["self-care", "partial-care", "full-care"]},
                        "bankAccount": {"type": "string", "pattern": "^[0-9]{12,19}$"}
                    }
                }
            }}),
        )
        .await?;
    assert_eq!(
        data["publishService"]["events"],
        json!(["ServicePublished.v1"])
    );
    Ok(data["publishService"]["position"]
        .as_u64()
        .unwrap_or_default())
}

#[actix_web::test]
async fn a_citizen_applies_for_the_elderly_care_subsidy_and_sees_the_approval_in_the_inbox(
) -> anyhow::Result<()> {
    let app = spawn_app()?;
    let person = Uuid::now_v7().to_string();
    let citizen = app.token("citizen", &person, None)?;
    let civil_affairs = app.token("department", "civil-affairs", Some("110106"))?;
    let commerce = app.token("department", "commerce", Some("110106"))?;
    let no_region = app.token("department", "civil-affairs", None)?;

    // Only a department (or an admin) changes the catalogue.
    let body = app
        .gql(
            &citizen,
            r#"mutation { withdrawService(code: "elderly-care-subsidy", reason: "x") { position } }"#,
            json!({}),
        )
        .await?;
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");

    let published = publish_elderly_care(&app, &civil_affairs).await?;
    let found = app
        .data(
            &citizen,
            r#"query($p: Int) { catalogue(keyword: "elderly subsidy", region: "110106018", minPosition: $p) { code department status } }"#,
            json!({"p": published}),
        )
        .await?;
    assert_eq!(
        found["catalogue"],
        json!([{"code": SERVICE, "department": "civil-affairs", "status": "published"}])
    );

    // Live inbox updates, subscribed before applying.
    let mut ws = app.ws("graphql-transport-ws", &citizen).await?;
    ws.subscribe(
        "inbox",
        "subscription { inboxUpdates { cursor notification { kind title applicationId } } }",
    )
    .await?;

    // A form breaking the schema names the field and the rule.
    let body = app
        .gql(
            &citizen,
            r#"mutation { submitApplication(service: "elderly-care-subsidy", region: "110106018", form: {age: 59, careLevel: "partial-care", bankAccount: "6222020200112233445"}) { id } }"#,
            json!({}),
        )
        .await?;
    assert_eq!(codes(&body), ["INVALID_INPUT"], "{body}");
    assert!(message(&body).contains("/age"), "{body}");

    let submitted = app
        .data(
            &citizen,
            r#"mutation { submitApplication(service: "elderly-care-subsidy", region: "110106018", form: {age: 72, careLevel: "partial-care", bankAccount: "6222020200112233445"}) { id events position } }"#,
            json!({}),
        )
        .await?;
    let id = submitted["submitApplication"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let position = submitted["submitApplication"]["position"].as_u64();

    let live = ws.next_data("inbox").await?;
    let note = &live["data"]["inboxUpdates"]["notification"];
    assert_eq!(note["kind"], "application_status", "{live}");
    assert_eq!(note["applicationId"], json!(id), "{live}");

    // The official's queue holds it; another department's does not.
    let queue = r#"query($p: Int) { applicationQueue(minPosition: $p) { id status } }"#;
    let mine = app
        .data(&civil_affairs, queue, json!({"p": position}))
        .await?;
    assert_eq!(
        mine["applicationQueue"],
        json!([{"id": id, "status": "submitted"}])
    );
    let theirs = app.data(&commerce, queue, json!({"p": position})).await?;
    assert_eq!(theirs["applicationQueue"], json!([]));

    // Approving before accepting is an illegal transition.
    let approve = r#"mutation($id: ID!) { approveApplication(id: $id, reasons: ["aged 72, partial care"]) { events position } }"#;
    let body = app.gql(&civil_affairs, approve, json!({"id": id})).await?;
    assert_eq!(codes(&body), ["CONFLICT"], "{body}");
    assert!(
        message(&body).contains("is submitted; it cannot be approved"),
        "{body}"
    );

    // An official of another department may neither decide nor open it;
    // a department token without a region handles no applications.
    let body = app.gql(&commerce, approve, json!({"id": id})).await?;
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    let open = r#"query($id: ID!, $p: Int) { application(id: $id, purpose: "subsidy review", minPosition: $p) { status form } }"#;
    let body = app
        .gql(&commerce, open, json!({"id": id, "p": position}))
        .await?;
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");
    let body = app.gql(&no_region, approve, json!({"id": id})).await?;
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");

    // The handling official must say why they open it; the opening is recorded.
    let body = app
        .gql(
            &civil_affairs,
            r#"query($id: ID!) { application(id: $id) { status } }"#,
            json!({"id": id}),
        )
        .await?;
    assert_eq!(codes(&body), ["INVALID_INPUT"], "{body}");
    let opened = app
        .data(&civil_affairs, open, json!({"id": id, "p": position}))
        .await?;
    assert_eq!(opened["application"]["form"]["age"], 72);
    app.data(
        &civil_affairs,
        r#"mutation($id: ID!) { acceptApplication(id: $id) { events } }"#,
        json!({"id": id}),
    )
    .await?;
    let approved = app.data(&civil_affairs, approve, json!({"id": id})).await?;
    let position = approved["approveApplication"]["position"].as_u64();

    // The citizen sees the status, the history and who looked.
    let mine = app
        .data(
            &citizen,
            r#"query($p: Int) { myApplications(minPosition: $p) { id status history { step status reasons } accessLog { department purpose fields } } }"#,
            json!({"p": position}),
        )
        .await?;
    let application = &mine["myApplications"][0];
    assert_eq!(application["id"], json!(id));
    assert_eq!(application["status"], "approved");
    let steps: Vec<&str> = application["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|s| s["step"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(steps, ["submit", "accept", "approve"]);
    assert_eq!(
        application["accessLog"],
        json!([{"department": "civil-affairs", "purpose": "subsidy review", "fields": ["status", "form"]}])
    );
    // The official does not read the applicant's access log.
    let body = app
        .gql(
            &civil_affairs,
            r#"query($id: ID!) { application(id: $id, purpose: "audit") { accessLog { purpose } } }"#,
            json!({"id": id}),
        )
        .await?;
    assert_eq!(codes(&body), ["FORBIDDEN"], "{body}");

    // And the inbox: the approval, unread, until marked read.
    let inbox = app
        .data(
            &citizen,
            r#"query($p: Int) { inbox(minPosition: $p) { id title read } unreadCount(minPosition: $p) }"#,
            json!({"p": position}),
        )
        .await?;
    assert_eq!(inbox["inbox"][0]["title"], "Your application was approved");
    assert_eq!(inbox["unreadCount"], 3, "{inbox}");
    let read = app
        .data(
            &citizen,
            "mutation { markInboxRead { position } }",
            json!({}),
        )
        .await?;
    let after = app
        .data(
            &citizen,
            "query($p: Int) { unreadCount(minPosition: $p) }",
            json!({"p": read["markInboxRead"]["position"]}),
        )
        .await?;
    assert_eq!(after["unreadCount"], 0);

    // A decided application cannot be withdrawn.
    let body = app
        .gql(
            &citizen,
            r#"mutation($id: ID!) { withdrawApplication(id: $id) { events } }"#,
            json!({"id": id}),
        )
        .await?;
    assert_eq!(codes(&body), ["CONFLICT"], "{body}");
    drop(ws);
    app.stop()
}
