//! The gateway in process: the HTTP application of `tongban serve` on a
//! fresh data directory, driven by actix's test client. What an attacker
//! tries first is refused here, quickly and with a clear error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web, App};
use serde_json::{json, Value};
use tongban_graphql::auth::{self, Claims, Verifier};
use tongban_graphql::config::{Config, Limits};
use tongban_graphql::node::{Node, NodeClock};
use tongban_graphql::server::{self, AppState};

struct Gateway {
    state: web::Data<AppState>,
    secret: tongban_graphql::config::Secret,
    _node: Node,
    dir: tempfile::TempDir,
}

async fn gateway_with(limits: Limits) -> anyhow::Result<Gateway> {
    gateway_configured(|c| c.limits = limits).await
}

async fn gateway_configured(configure: impl FnOnce(&mut Config)) -> anyhow::Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data: dir.path().to_path_buf(),
        ..Config::default()
    };
    configure(&mut config);
    let secret = auth::dev_key(&config.data, true)?.expect("created");
    let verifier = Verifier::new(&config.auth, config.mode, Some(&secret))?;
    let node = Node::open(config, Arc::new(NodeClock::default())).await?;
    let state = server::app_state(&node, verifier);
    Ok(Gateway {
        state,
        secret,
        _node: node,
        dir,
    })
}

async fn gateway() -> anyhow::Result<Gateway> {
    gateway_with(Limits::default()).await
}

const LOCAL: &str = "127.0.0.1:50000";

impl Gateway {
    fn token(&self, role: &str, sub: &str, region: Option<&str>) -> String {
        self.named_token(role, sub, region, None)
    }

    fn named_token(
        &self,
        role: &str,
        sub: &str,
        region: Option<&str>,
        name: Option<&str>,
    ) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        auth::mint_dev(
            &self.secret,
            &Claims {
                sub: sub.into(),
                role: role.into(),
                region: region.map(str::to_owned),
                sub_regions: vec![],
                name: name.map(str::to_owned),
                exp: now + 3600,
                iat: now,
            },
        )
        .expect("signs")
    }

    async fn call(&self, req: test::TestRequest) -> (u16, Value) {
        let app = test::init_service(
            App::new()
                .app_data(self.state.clone())
                .configure(server::routes),
        )
        .await;
        let res: ServiceResponse = app
            .call(req.to_request())
            .await
            .expect("the application answers");
        let status = res.status().as_u16();
        let body = test::read_body(res).await;
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&body) }));
        (status, json)
    }

    async fn post(&self, token: Option<&str>, query: &str) -> (u16, Value) {
        self.post_vars(token, query, json!({})).await
    }

    async fn post_vars(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut req = test::TestRequest::post()
            .uri("/graphql")
            .peer_addr(LOCAL.parse::<SocketAddr>().expect("addr"))
            .insert_header(("host", "127.0.0.1:8080"))
            .set_json(json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        self.call(req).await
    }
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

fn fan_out(levels: usize) -> String {
    let mut q = String::from("query { ...F0 }");
    for i in 0..levels {
        q.push_str(&format!(
            " fragment F{i} on Query {{ ...F{n} ...F{n} }}",
            n = i + 1
        ));
    }
    q.push_str(&format!(
        " fragment F{levels} on Query {{ whoami {{ id }} }}"
    ));
    q
}

#[actix_web::test]
async fn a_fragment_fan_out_without_a_token_is_refused_before_it_runs() -> anyhow::Result<()> {
    let gw = gateway().await?;
    for levels in [26, 30] {
        let started = Instant::now();
        let (status, body) = gw.post(None, &fan_out(levels)).await;
        println!(
            "fan-out of {levels} levels answered in {} ms",
            started.elapsed().as_millis()
        );
        assert_eq!(status, 200);
        assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
        assert!(body["data"].is_null(), "{body}");
    }
    // A legitimate query still answers.
    let (_, body) = gw.post(None, "{ demoRoles { role } }").await;
    assert!(body["errors"].is_null(), "{body}");
    Ok(())
}

#[actix_web::test]
async fn the_standard_introspection_query_is_answered_and_deep_queries_are_not(
) -> anyhow::Result<()> {
    let gw = gateway().await?;
    // The shape graphql-js's getIntrospectionQuery() sends (TypeRef nests
    // ofType seven levels deep).
    let type_ref = format!(
        "kind name {}",
        "ofType { kind name ".repeat(7) + &"}".repeat(7)
    );
    let introspection = format!(
        "query IntrospectionQuery {{ __schema {{ queryType {{ name }} mutationType {{ name }} \
         subscriptionType {{ name }} types {{ ...FullType }} directives {{ name description \
         locations args {{ ...InputValue }} }} }} }} \
         fragment FullType on __Type {{ kind name description fields(includeDeprecated: true) \
         {{ name description args {{ ...InputValue }} type {{ ...TypeRef }} isDeprecated \
         deprecationReason }} inputFields {{ ...InputValue }} interfaces {{ ...TypeRef }} \
         enumValues(includeDeprecated: true) {{ name description isDeprecated deprecationReason }} \
         possibleTypes {{ ...TypeRef }} }} \
         fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} defaultValue }} \
         fragment TypeRef on __Type {{ {type_ref} }}"
    );
    let (status, body) = gw.post(None, &introspection).await;
    assert_eq!(status, 200);
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["__schema"]["types"]
        .as_array()
        .is_some_and(|t| t.len() > 20));
    let too_deep = format!("{{ {} x {} }}", "a {".repeat(12), "}".repeat(12));
    let (_, body) = gw.post(None, &too_deep).await;
    assert_eq!(code(&body), "QUERY_TOO_DEEP", "{body}");
    Ok(())
}

#[actix_web::test]
async fn a_get_never_runs_a_mutation_and_a_post_must_be_json() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let admin = gw.token("admin", "admin-1", None);
    let query = "#x\nmutation { reevaluateAll { position } }";
    let uri = format!(
        "/graphql?query={}",
        query
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let (status, body) = gw
        .call(
            test::TestRequest::get()
                .uri(&uri)
                .insert_header(("authorization", format!("Bearer {admin}"))),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("not run over GET"), "{body}");

    let (status, body) = gw
        .call(
            test::TestRequest::post()
                .uri("/graphql")
                .insert_header(("content-type", "text/plain"))
                .set_payload(r#"{"query":"{ demoRoles { token } }"}"#),
        )
        .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(code(&body), "UNSUPPORTED_MEDIA_TYPE");
    Ok(())
}

#[actix_web::test]
async fn demo_tokens_are_never_handed_to_another_host_or_a_rebound_name() -> anyhow::Result<()> {
    let gw = gateway().await?;
    // Seed the roles file the demo writes.
    let roles = vec![(
        "admin".to_owned(),
        Claims {
            sub: "admin-1".into(),
            role: "admin".into(),
            region: None,
            sub_regions: vec![],
            name: None,
            exp: 0,
            iat: 0,
        },
    )];
    let data = gw.dir.path();
    std::fs::write(
        tongban_graphql::demo::roles_path(data),
        serde_json::to_string(&roles)?,
    )?;
    let ask = |peer: &str, host: &str| {
        test::TestRequest::post()
            .uri("/graphql")
            .peer_addr(peer.parse::<SocketAddr>().expect("addr"))
            .insert_header(("host", host.to_owned()))
            .set_json(json!({"query": "{ demoRoles { role token } }"}))
    };
    let (_, local) = gw.call(ask(LOCAL, "localhost:8080")).await;
    assert_eq!(local["data"]["demoRoles"][0]["role"], "admin", "{local}");
    for (peer, host) in [
        ("10.1.2.3:4000", "127.0.0.1:8080"),
        (LOCAL, "attacker.example:8080"),
    ] {
        let (_, body) = gw.call(ask(peer, host)).await;
        assert_eq!(
            body["data"]["demoRoles"],
            json!([]),
            "{peer} {host}: {body}"
        );
    }
    Ok(())
}

#[actix_web::test]
async fn the_same_token_spelt_differently_shares_one_rate_bucket() -> anyhow::Result<()> {
    let gw = gateway_with(Limits {
        rate_per_second: 1,
        rate_burst: 2,
        ..Limits::default()
    })
    .await?;
    let admin = gw.token("admin", "admin-1", None);
    let mut statuses = Vec::new();
    for spaces in 1..=4 {
        let req = test::TestRequest::post()
            .uri("/graphql")
            .insert_header((
                "authorization",
                format!("Bearer{}{admin}", " ".repeat(spaces)),
            ))
            .set_json(json!({"query": "{ whoami { role } }"}));
        statuses.push(gw.call(req).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
    Ok(())
}

#[actix_web::test]
async fn out_of_range_arguments_are_invalid_input_not_a_crash() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let person = uuid::Uuid::now_v7().to_string();
    let citizen = gw.token("citizen", &person, None);
    let (status, body) = gw
        .post(
            Some(&citizen),
            r#"mutation { registerPerson(input: {homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E7654321", name: "李明", phone: "13900000000"}) { position } }"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let position = body["data"]["registerPerson"]["position"]
        .as_u64()
        .unwrap_or(0);
    let (status, body) = gw
        .post(
            Some(&citizen),
            &format!(
                "{{ me(minPosition: {position}) {{ travelHistory(days: 5000000) {{ date }} }} }}"
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("days"),
        "{body}"
    );
    Ok(())
}

#[actix_web::test]
async fn many_aliases_of_a_long_history_are_refused_before_they_run() -> anyhow::Result<()> {
    let gw = gateway().await?;
    let admin = gw.token("admin", "admin-1", None);
    let aliases: String = (0..150)
        .map(|i| {
            format!(
                r#"h{i}: colourCountHistory(region: "11", from: "2020-01-01T00:00:00+08:00", to: "2020-12-31T00:00:00+08:00") {{ hour green }} "#
            )
        })
        .collect();
    let (_, body) = gw.post(Some(&admin), &format!("{{ {aliases} }}")).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
    Ok(())
}

#[actix_web::test]
async fn past_the_cap_on_requests_in_flight_callers_get_503_with_retry_after() -> anyhow::Result<()>
{
    let gw = gateway_with(Limits {
        max_in_flight: 1,
        queue_wait_ms: 10,
        read_wait_ms: 1_000,
        ..Limits::default()
    })
    .await?;
    let app = test::init_service(
        App::new()
            .app_data(gw.state.clone())
            .configure(server::routes),
    )
    .await;
    let person = uuid::Uuid::now_v7().to_string();
    let citizen = gw.token("citizen", &person, None);
    // Each waits (bounded) for a log position that never comes.
    let slow = || {
        test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", format!("Bearer {citizen}")))
            .set_json(json!({"query": "{ me(minPosition: 999999999) { colour { colour } } }"}))
            .to_request()
    };
    let responses = futures::future::join_all((0..6).map(|_| app.call(slow()))).await;
    let mut overloaded = 0;
    for res in responses {
        let res = res.expect("answers");
        if res.status().as_u16() == 503 {
            assert!(res.headers().contains_key("retry-after"));
            overloaded += 1;
        }
    }
    assert!(overloaded >= 4, "{overloaded} of 6 were shed");
    Ok(())
}

// ---- the authorisation matrix of every mutation ---------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Allowed,
    Forbidden,
}
use Expect::{Allowed as A, Forbidden as F};

/// The roles of the matrix, in column order.
const ROLES: [&str; 12] = [
    "citizen (self)",
    "citizen (other)",
    "checkpoint",
    "lab",
    "official (Beijing)",
    "official (Fengtai)",
    "official (Dongcheng)",
    "official (Shanghai)",
    "department (civil-affairs)",
    "enterprise",
    "auditor",
    "admin",
];

/// Every mutation of the schema with the call that exercises it and, per
/// role, whether the role may make it. A mutation the schema has and this
/// table lacks fails the test: a new mutation cannot be forgotten.
fn mutation_rows() -> Vec<(&'static str, &'static str, [Expect; 12])> {
    //   self other chk  lab  BJ   FT   DC   SH   dept ent  aud  admin
    vec![
        (
            "registerPerson",
            r#"mutation($fresh: String) { registerPerson(input: {personId: $fresh, homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E1112223", name: "张三", phone: "13900000001"}) { position } }"#,
            [F, F, F, F, A, A, F, F, F, F, F, A],
        ),
        (
            "declareHealth",
            r#"mutation($person: ID) { declareHealth(personId: $person, temperature: 36.6) { position } }"#,
            [A, F, F, F, A, A, F, F, F, F, F, F],
        ),
        (
            "declareItinerary",
            r#"mutation($person: ID) { declareItinerary(personId: $person, trips: [{mode: RAIL, from: "110101", to: "110106", date: "2020-06-10"}]) { position } }"#,
            [A, F, F, F, A, A, F, F, F, F, F, F],
        ),
        (
            "requestCodeCall",
            r#"mutation($person: ID) { requestCodeCall(personId: $person, requester: "metro", purpose: "entry") { position } }"#,
            [A, F, A, F, F, F, F, F, F, F, F, F],
        ),
        (
            "generateCode",
            r#"mutation($person: ID) { generateCode(personId: $person) { position } }"#,
            [A, F, F, F, A, A, F, F, F, F, F, A],
        ),
        (
            "correctInformation",
            r#"mutation($person: ID) { correctInformation(personId: $person, region: "11", reason: "my test was negative") { id } }"#,
            [A, F, F, F, F, F, F, F, F, F, F, F],
        ),
        (
            "recordTestResult",
            r#"mutation($person: ID!) { recordTestResult(personId: $person, kind: NUCLEIC_ACID, result: NEGATIVE, lab: "x") { position } }"#,
            [F, F, F, A, A, A, F, F, F, F, F, A],
        ),
        (
            "recordEvidence",
            r#"mutation($person: ID!) { recordEvidence(personId: $person, source: TELCO, evidence: {kind: "dwell_reported", county: "110106", minutes: 30}) { position } }"#,
            [F, F, F, F, A, A, F, F, A, F, F, A],
        ),
        (
            "declareRiskArea",
            r#"mutation { declareRiskArea(area: "110106018", level: LOW) { position } }"#,
            [F, F, F, F, A, A, F, F, F, F, F, F],
        ),
        (
            "liftRiskArea",
            r#"mutation { liftRiskArea(area: "110106018") { position } }"#,
            [F, F, F, F, A, A, F, F, F, F, F, F],
        ),
        (
            "publishPolicy",
            r#"mutation($policy: JSON!) { publishPolicy(region: "11", policyId: "beijing", document: $policy) { position } }"#,
            [F, F, F, F, A, F, F, F, F, F, F, F],
        ),
        (
            "registerCheckpoint",
            r#"mutation { registerCheckpoint(name: "Xinfadi gate 2", place: "110106018") { checkpointId } }"#,
            [F, F, F, F, A, A, F, F, F, F, F, F],
        ),
        (
            "scanCode",
            r#"mutation($code: String!, $checkpoint: ID) { scanCode(code: $code, checkpointId: $checkpoint, temperature: 36.5) { admitted } }"#,
            [F, F, A, F, F, F, F, F, F, F, F, A],
        ),
        (
            "upholdAppeal",
            r#"mutation($person: ID!, $appeal: ID!) { upholdAppeal(personId: $person, appealId: $appeal, reason: "the test was negative") { position } }"#,
            [F, F, F, F, A, F, F, F, F, F, F, F],
        ),
        (
            "requestOverride",
            r#"mutation($person: ID!, $expires: String!) { requestOverride(region: "11", persons: [$person], colour: GREEN, legalBasis: "rule 4", reason: "cleared", caseRef: "BJ-1", expiresAt: $expires) { id } }"#,
            [F, F, F, F, A, F, F, F, F, F, F, F],
        ),
        (
            "approveOverride",
            r#"mutation($override: ID!) { approveOverride(region: "11", overrideId: $override) { position } }"#,
            [F, F, F, F, A, F, F, F, F, F, F, F],
        ),
        (
            "reevaluateAll",
            "mutation { reevaluateAll { position } }",
            [F, F, F, F, F, F, F, F, F, F, F, A],
        ),
        (
            "publishService",
            r#"mutation($service: ServiceInput!) { publishService(service: $service) { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, A],
        ),
        (
            "updateService",
            r#"mutation($service: ServiceInput!) { updateService(service: $service) { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, A],
        ),
        // An enterprise may apply (for its permits); this service then
        // refuses it as an applicant kind, not as a role.
        (
            "submitApplication",
            r#"mutation { submitApplication(service: "elderly-care-subsidy", region: "110106", form: {age: 70, careLevel: "self-care", monthlyIncome: 800, bankAccount: "6222020200112233445"}) { id } }"#,
            [A, A, F, F, F, F, F, F, F, A, F, F],
        ),
        (
            "acceptApplication",
            r#"mutation($case: ID!) { acceptApplication(id: $case) { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, F],
        ),
        (
            "requestInformation",
            r#"mutation($case: ID!) { requestInformation(id: $case, requested: "care assessment") { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, F],
        ),
        (
            "supplementApplication",
            r#"mutation($case: ID!) { supplementApplication(id: $case, form: {age: 70, careLevel: "partial-care", monthlyIncome: 800, bankAccount: "6222020200112233445"}) { position } }"#,
            [A, F, F, F, F, F, F, F, F, F, F, F],
        ),
        (
            "approveApplication",
            r#"mutation($case: ID!) { approveApplication(id: $case, reasons: ["eligible"]) { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, F],
        ),
        (
            "rejectApplication",
            r#"mutation($case: ID!) { rejectApplication(id: $case, reasons: ["not eligible"]) { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, F],
        ),
        (
            "withdrawApplication",
            r#"mutation($case: ID!) { withdrawApplication(id: $case, reason: "moved") { position } }"#,
            [A, F, F, F, F, F, F, F, F, F, F, F],
        ),
        (
            "markInboxRead",
            "mutation { markInboxRead { position } }",
            [A, A, F, F, F, F, F, F, F, A, F, F],
        ),
        (
            "withdrawService",
            r#"mutation { withdrawService(code: "matrix-service", reason: "ended") { position } }"#,
            [F, F, F, F, F, F, F, F, A, F, F, A],
        ),
        (
            "erasePersonalData",
            r#"mutation($person: ID) { erasePersonalData(personId: $person) { position } }"#,
            [A, F, F, F, F, F, F, F, F, F, F, A],
        ),
    ]
}

/// Publishes a catalogue service of `civil-affairs` in Beijing with a form
/// that takes any object; answers the service's input.
async fn publish_service(
    gw: &Gateway,
    token: &str,
    code: &str,
    name: &str,
) -> anyhow::Result<Value> {
    let service = json!({
        "code": code, "name": name, "department": "civil-affairs",
        "eligibleRegions": ["11"], "processingDays": 20,
        "formSchema": {"type": "object"}
    });
    let (_, body) = gw
        .post_vars(
            Some(token),
            r#"mutation($service: ServiceInput!) { publishService(service: $service) { position } }"#,
            json!({"service": service}),
        )
        .await;
    anyhow::ensure!(body["errors"].is_null(), "publishing {code} failed: {body}");
    Ok(service)
}

fn in_a_week() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(7))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[actix_web::test]
async fn every_mutation_of_the_schema_is_allowed_exactly_to_the_roles_that_may_make_it(
) -> anyhow::Result<()> {
    let gw = gateway().await?;
    let person = uuid::Uuid::now_v7().to_string();
    let other = uuid::Uuid::now_v7().to_string();
    let enterprise = uuid::Uuid::now_v7().to_string();
    let admin = gw.token("admin", "admin-1", None);
    let self_token = gw.token("citizen", &person, None);
    let other_token = gw.token("citizen", &other, None);
    let data = |body: &Value| -> anyhow::Result<Value> {
        anyhow::ensure!(body["errors"].is_null(), "setup failed: {body}");
        Ok(body["data"].clone())
    };
    // The person (Huaxiang, Fengtai) and another (Dongcheng).
    for (token, residence, id) in [
        (&self_token, "110106018002", "E7654321"),
        (&other_token, "110101001001", "E7654322"),
    ] {
        let (_, body) = gw
            .post(
                Some(token),
                &format!(r#"mutation {{ registerPerson(input: {{homeRegion: "11", residence: "{residence}", idKind: "passport", idNumber: "{id}", name: "李明", phone: "13900000000"}}) {{ position }} }}"#),
            )
            .await;
        data(&body)?;
    }
    let (_, body) = gw
        .post(Some(&self_token), "mutation { generateCode { text } }")
        .await;
    let code = data(&body)?["generateCode"]["text"].clone();
    let fengtai = gw.token("health_official", "o-ft", Some("110106"));
    let (_, body) = gw
        .post(
            Some(&fengtai),
            r#"mutation { registerCheckpoint(name: "Xinfadi gate", place: "110106018") { checkpointId } }"#,
        )
        .await;
    let checkpoint = data(&body)?["registerCheckpoint"]["checkpointId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, body) = gw
        .post(
            Some(&self_token),
            r#"mutation { correctInformation(region: "11", reason: "wrong") { id } }"#,
        )
        .await;
    let appeal = data(&body)?["correctInformation"]["id"].clone();
    let beijing = gw.token("health_official", "o-bj", Some("11"));
    let second_beijing = gw.token("health_official", "o-bj-2", Some("11"));
    let (_, body) = gw
        .post_vars(
            Some(&second_beijing),
            r#"mutation($persons: [ID!]!, $expires: String!) { requestOverride(region: "11", persons: $persons, colour: GREEN, legalBasis: "rule 4", reason: "cleared", caseRef: "BJ-1", expiresAt: $expires) { id } }"#,
            // More persons than the threshold: it waits for a second official.
            json!({"persons": (0..11).map(|_| uuid::Uuid::now_v7().to_string()).collect::<Vec<_>>(), "expires": in_a_week()}),
        )
        .await;
    let override_id = data(&body)?["requestOverride"]["id"].clone();
    let policy = serde_json::to_value(tongban_health_code::policy::baseline_document())?;
    let department = gw.named_token("department", "dept-1", Some("11"), Some("civil-affairs"));
    let service = publish_service(&gw, &department, "matrix-service", "Matrix service").await?;
    publish_service(&gw, &admin, "elderly-care-subsidy", "Elderly-care subsidy").await?;

    let tokens = [
        self_token.clone(),
        other_token,
        gw.token("checkpoint", &checkpoint, None),
        gw.named_token("lab", "lab-1", None, Some("Fengtai CDC")),
        beijing,
        fengtai,
        gw.token("health_official", "o-dc", Some("110101")),
        gw.token("health_official", "o-sh", Some("31")),
        department,
        gw.token("enterprise", &enterprise, None),
        gw.token("auditor", "auditor-1", None),
        admin.clone(),
    ];

    // The schema's mutations, as the schema itself lists them.
    let (_, body) = gw
        .post(None, "{ __schema { mutationType { fields { name } } } }")
        .await;
    let in_schema: Vec<String> = data(&body)?["__schema"]["mutationType"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let rows = mutation_rows();
    let missing: Vec<&String> = in_schema
        .iter()
        .filter(|m| !rows.iter().any(|(name, _, _)| name == m))
        .collect();
    assert!(
        missing.is_empty(),
        "mutations without a row in the authorisation matrix: {missing:?}"
    );

    let mut wrong = Vec::new();
    let mut actual = Vec::new();
    for (name, query, expected) in &rows {
        let mut line = format!("{name:>22}:");
        // A fresh application per row, so one role's step does not
        // change what the next role finds.
        let (_, body) = gw
            .post(
                Some(&self_token),
                r#"mutation { submitApplication(service: "elderly-care-subsidy", region: "110106", form: {age: 70}) { id } }"#,
            )
            .await;
        let case = data(&body)?["submitApplication"]["id"].clone();
        for ((role, token), want) in ROLES.iter().zip(tokens.iter()).zip(expected.iter()) {
            let variables = json!({
                "person": person, "fresh": uuid::Uuid::now_v7().to_string(), "code": code,
                "checkpoint": if *role == "admin" { Value::String(checkpoint.clone()) } else { Value::Null },
                "appeal": appeal, "override": override_id, "policy": policy,
                "service": service, "case": case, "expires": in_a_week(),
            });
            let (_, body) = gw.post_vars(Some(token), query, variables).await;
            let codes: Vec<&str> = body["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(|x| x["extensions"]["code"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let got = if codes.contains(&"FORBIDDEN") { F } else { A };
            line.push_str(if got == A { " A" } else { " F" });
            if codes
                .iter()
                .any(|c| *c == "UNAUTHENTICATED" || *c == "INTERNAL")
            {
                wrong.push(format!("{name} as {role}: unexpected {body}"));
            } else if got != *want {
                wrong.push(format!(
                    "{name} as {role}: {got:?}, expected {want:?} ({body})"
                ));
            }
        }
        actual.push(line);
    }
    assert!(
        wrong.is_empty(),
        "authorisation mismatches:\n{}\n\nthe matrix as answered:\n{}",
        wrong.join("\n"),
        actual.join("\n")
    );
    Ok(())
}

#[actix_web::test]
async fn hidden_characters_impossible_ids_and_dates_are_refused_naming_the_field(
) -> anyhow::Result<()> {
    let gw = gateway().await?;
    let admin = gw.token("admin", "admin-1", None);
    let register = |name: &str, kind: &str, number: &str| {
        format!(
            r#"mutation {{ registerPerson(input: {{homeRegion: "11", residence: "110106018002", idKind: "{kind}", idNumber: "{number}", name: "{name}", phone: "13900000000"}}) {{ id position }} }}"#
        )
    };
    let message = |body: &Value| {
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (_, body) = gw
        .post(
            Some(&admin),
            &register("王\u{202E}芳", "passport", "E1234567"),
        )
        .await;
    assert_eq!(code(&body), "INVALID_INPUT", "{body}");
    assert!(message(&body).contains("`name`"), "{body}");
    let (_, body) = gw
        .post(
            Some(&admin),
            &register("\u{200B}\u{200B}", "passport", "E1234567"),
        )
        .await;
    assert_eq!(code(&body), "INVALID_INPUT", "{body}");

    // Born in 2099, and registered in province 99: both valid checksums.
    for first17 in ["11010120990101001", "99010119900101001"] {
        let check = tongban_health_code::resident_id::ResidentId::check_character(first17)
            .expect("17 digits");
        let (_, body) = gw
            .post(
                Some(&admin),
                &register("王芳", "resident_id", &format!("{first17}{check}")),
            )
            .await;
        assert_eq!(code(&body), "INVALID_INPUT", "{body}");
        assert!(message(&body).contains("id_document.number"), "{body}");
    }

    let (_, body) = gw
        .post(Some(&admin), &register("王芳", "passport", "E1234567"))
        .await;
    let person = body["data"]["registerPerson"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!person.is_empty(), "{body}");
    let evidence = |date: &str| {
        format!(
            r#"mutation {{ recordEvidence(personId: "{person}", source: CONTACT_TRACING, evidence: {{kind: "close_contact_identified", case_ref: "BJ-0611-001", exposure_date: "{date}"}}) {{ position }} }}"#
        )
    };
    let (_, body) = gw.post(Some(&admin), &evidence("2020-06-10")).await;
    assert!(body["errors"].is_null(), "an ISO date is accepted: {body}");
    let (_, body) = gw.post(Some(&admin), &evidence("0001-01-01")).await;
    assert_eq!(code(&body), "INVALID_INPUT", "{body}");
    assert!(message(&body).contains("evidence.exposure_date"), "{body}");
    Ok(())
}

#[actix_web::test]
async fn production_mode_serves_neither_graphiql_nor_introspection_unless_asked(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let kek = tempfile::tempdir()?;
    let kek_file = kek.path().join("vault.kek");
    std::fs::write(&kek_file, "42".repeat(32))?;
    let mut config = Config {
        data: dir.path().to_path_buf(),
        mode: tongban_graphql::config::Mode::Production,
        ..Config::default()
    };
    config.vault.kek_file = Some(kek_file);
    let verifier = Verifier::new(&config.auth, config.mode, None)?;
    let node = Node::open(config, Arc::new(NodeClock::default())).await?;
    let state = server::app_state(&node, verifier);
    let app = test::init_service(App::new().app_data(state).configure(server::routes)).await;
    let res = app
        .call(test::TestRequest::get().uri("/graphiql").to_request())
        .await
        .expect("answers");
    assert_eq!(res.status().as_u16(), 404);
    let res = app
        .call(
            test::TestRequest::post()
                .uri("/graphql")
                .set_json(json!({"query": "{ __schema { types { name } } }"}))
                .to_request(),
        )
        .await
        .expect("answers");
    let body: Value = serde_json::from_slice(&test::read_body(res).await)?;
    assert!(body["data"]["__schema"].is_null(), "{body}");
    Ok(())
}

#[actix_web::test]
async fn a_refused_operation_carries_its_stable_return_code_beside_the_graphql_code(
) -> anyhow::Result<()> {
    let gw = gateway().await?;
    let person = uuid::Uuid::now_v7().to_string();
    let other = gw.token("citizen", &uuid::Uuid::now_v7().to_string(), None);
    let (_, body) = gw
        .post(
            Some(&other),
            &format!(r#"mutation {{ declareItinerary(personId: "{person}", trips: [{{mode: RAIL, from: "110101", to: "110106", date: "2020-06-10"}}]) {{ position }} }}"#),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["returnCode"], "3001",
        "{body}"
    );
    Ok(())
}

// ---- shared secrets for replicas: the vault and the region keys ----------

/// A PostgreSQL database of this test's own (unique name), dropped at the
/// end: `TONGBAN_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432`
/// (`infra/scripts/test.sh` starts one).
struct TestDb {
    admin: Arc<tongban_vault_postgres::Database>,
    name: String,
    url: String,
}

impl TestDb {
    fn new() -> anyhow::Result<Self> {
        let server = std::env::var("TONGBAN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let admin = tongban_vault_postgres::Database::connect(&format!("{server}/postgres"))?;
        let name = format!("tongban_test_{}", uuid::Uuid::new_v4().simple());
        let create = format!("CREATE DATABASE {name}");
        admin.run(move |c| async move { c.batch_execute(&create).await })?;
        Ok(Self {
            admin,
            url: format!("{server}/{name}"),
            name,
        })
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

const SHARED_KEK: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn beijing() -> tongban_kernel::DivisionCode {
    tongban_kernel::DivisionCode::parse("11").expect("a division code")
}

impl Gateway {
    fn node(&self) -> &Node {
        &self._node
    }

    async fn get(&self, uri: &str) -> (u16, Value) {
        self.call(
            test::TestRequest::get()
                .uri(uri)
                .peer_addr("203.0.113.9:4000".parse::<SocketAddr>().expect("addr")),
        )
        .await
    }

    /// Registers a person in Beijing and returns their code's text.
    async fn code_of_a_new_person(&self) -> String {
        let person = uuid::Uuid::now_v7().to_string();
        let citizen = self.token("citizen", &person, None);
        let (status, body) = self
            .post(
                Some(&citizen),
                r#"mutation { registerPerson(input: {homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E7654321", name: "李明", phone: "13900000000"}) { position } }"#,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = self
            .post(Some(&citizen), "mutation { generateCode { text } }")
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["generateCode"]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("a code: {body}"))
            .to_owned()
    }

    /// Whether this hub's verifyCode finds `code` valid (signed by a key it
    /// accepts; the holder is green).
    async fn verifies(&self, code: &str) -> bool {
        let admin = self.token("admin", "ops", None);
        let literal = serde_json::to_string(code).expect("a string");
        let (status, body) = self
            .post(
                Some(&admin),
                &format!("{{ verifyCode(code: {literal}) {{ valid reasonCode }} }}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["verifyCode"]["valid"] == true
    }
}

#[actix_web::test]
async fn the_hub_publishes_its_public_region_keys_at_a_well_known_url_without_a_token(
) -> anyhow::Result<()> {
    let gw = gateway().await?;
    gw.node().health_code.ensure_key_for(beijing())?;
    let (status, body) = gw.get("/.well-known/tongban/keys.json").await;
    assert_eq!(status, 200, "{body}");
    let key = &body["keys"][0];
    assert_eq!(key["region"], "11", "{body}");
    assert!(key["kid"].as_str().is_some_and(|k| k.starts_with("11-")));
    assert_eq!(key["algorithm"], "EdDSA");
    assert_eq!(key["status"], "active");
    assert_eq!(key["signing"], true);
    assert!(key["notBefore"].as_str().is_some_and(|t| t.contains('T')));
    let public = key["publicKey"].as_str().unwrap_or_default();
    assert_eq!(
        public.len(),
        43,
        "32 bytes in base64url without padding: {public}"
    );
    assert!(public
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    Ok(())
}

/// Two replicas configured alike (`configure`): a code from one verifies
/// at the other; after a rotation the new key signs and the old code
/// still verifies; a retired key's codes are refused.
async fn replicas_share_region_keys(configure: impl Fn(&mut Config)) -> anyhow::Result<()> {
    let configure = |c: &mut Config| {
        configure(c);
        c.keys.reload_secs = 1;
    };
    let a = gateway_configured(configure).await?;
    let b = gateway_configured(configure).await?;
    let old_code = a.code_of_a_new_person().await;
    // B opened before A created the key: it loads it on the unknown kid.
    assert!(b.verifies(&old_code).await, "B verifies A's code");

    let store = a.node().health_code.keyring.store().clone();
    let old = store.load()?[0].kid().to_owned();
    let new = store.rotate(beijing())?;
    // B picks the rotation up at its next reload (every second here).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let new_code = b.code_of_a_new_person().await;
    let kid_of = |text: &str| {
        tongban_health_code::token::parse_text(text)
            .ok()
            .and_then(|t| tongban_health_code::token::peek_kid(&t))
    };
    assert_eq!(
        kid_of(&new_code).as_deref(),
        Some(new.kid()),
        "the new key signs"
    );
    assert!(a.verifies(&new_code).await && b.verifies(&new_code).await);
    assert!(a.verifies(&old_code).await, "the old key still verifies");

    store.retire(beijing(), &old)?;
    for gw in [&a, &b] {
        gw.node()
            .health_code
            .keyring
            .reload(&gw.node().health_code.service)?;
        assert!(
            !gw.verifies(&old_code).await,
            "a retired key verifies nothing"
        );
        assert!(gw.verifies(&new_code).await);
    }
    let (_, body) = b.get("/.well-known/tongban/keys.json").await;
    let statuses: Vec<_> = body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            (
                k["kid"].as_str().unwrap_or_default().to_owned(),
                k["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (old, json!("retired")),
            (new.kid().to_owned(), json!("active"))
        ]
    );
    Ok(())
}

#[actix_web::test]
async fn two_replicas_with_one_key_directory_verify_each_others_codes_across_rotation(
) -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let dir = keys.path().to_path_buf();
    replicas_share_region_keys(move |c| c.keys.dir = Some(dir.clone())).await
}

#[actix_web::test]
async fn two_replicas_on_one_postgres_share_personal_data_keys_erasure_and_region_keys(
) -> anyhow::Result<()> {
    use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
    use tongban_health_code::vault::{open, seal, PersonalData, VaultError};
    let db = TestDb::new()?;
    let url = db.url.clone();
    let configure = move |c: &mut Config| {
        c.vault.url = Some(tongban_graphql::config::Secret::new(url.clone()));
        c.vault.kek = Some(tongban_graphql::config::Secret::new(SHARED_KEK));
    };
    {
        let a = gateway_configured(&configure).await?;
        let b = gateway_configured(&configure).await?;
        let person = tongban_kernel::PersonId::from_u128(0x5eed);
        let data = PersonalData::new(
            IdentityDocument::ResidentId(ResidentId::parse("11010519491231002X")?),
            "张三",
            "+8613800000000",
        )?;
        let (vault_a, vault_b) = (&a.node().health_code.vault, &b.node().health_code.vault);
        let sealed = seal(vault_a.as_ref(), person, &data)?;
        assert_eq!(open(vault_b.as_ref(), person, &sealed)?, data);
        assert!(vault_b.erase(person)?);
        assert_eq!(
            open(vault_a.as_ref(), person, &sealed),
            Err(VaultError::KeyErased(person)),
            "an erasure through one replica is an erasure at the other"
        );
    }
    replicas_share_region_keys(configure).await
}

/// A GET through the whole application (middleware included) with headers;
/// returns the status, the headers and the body.
async fn fetch(
    state: &web::Data<AppState>,
    method: actix_web::http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, actix_web::http::header::HeaderMap, Vec<u8>) {
    let app = test::init_service(server::app(state.clone())).await;
    let mut req = test::TestRequest::default()
        .method(method)
        .uri(path)
        .peer_addr(LOCAL.parse::<SocketAddr>().expect("addr"));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let res = app.call(req.to_request()).await.expect("answers");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = test::read_body(res).await.to_vec();
    (status, headers, body)
}

fn header<'h>(headers: &'h actix_web::http::header::HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[actix_web::test]
async fn portal_files_are_compressed_tagged_and_a_revisit_costs_a_304() -> anyhow::Result<()> {
    use actix_web::http::Method;
    let gw = gateway().await?;
    let jsqr_size = include_bytes!("../portal/vendor/jsQR.js").len();
    for encoding in ["br", "gzip"] {
        let (status, headers, body) = fetch(
            &gw.state,
            Method::GET,
            "/portal/vendor/jsQR.js",
            &[("accept-encoding", encoding)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), encoding);
        assert!(
            body.len() * 3 < jsqr_size,
            "jsQR in {encoding}: {} of {jsqr_size} bytes",
            body.len()
        );
    }
    // The pages too, and GraphQL answers.
    let (_, headers, _) = fetch(&gw.state, Method::GET, "/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&headers, "content-encoding"), "gzip");
    let (_, headers, _) = fetch(
        &gw.state,
        Method::GET,
        "/portal/app.js",
        &[("accept-encoding", "br")],
    )
    .await;
    assert_eq!(header(&headers, "content-encoding"), "br");
    // No Accept-Encoding: the bytes as they are.
    let (_, headers, body) = fetch(&gw.state, Method::GET, "/portal/vendor/jsQR.js", &[]).await;
    assert_eq!(header(&headers, "content-encoding"), "");
    assert_eq!(body.len(), jsqr_size);

    // Every file has an ETag; sending it back answers 304 without a body.
    for path in ["/", "/portal/app.js", "/portal/vendor/jsQR.js"] {
        let (_, headers, _) = fetch(&gw.state, Method::GET, path, &[]).await;
        let etag = header(&headers, "etag").to_owned();
        assert!(etag.starts_with("W/\""), "{path}: {etag:?}");
        let (status, headers, body) = fetch(
            &gw.state,
            Method::GET,
            path,
            &[("if-none-match", &etag), ("accept-encoding", "br, gzip")],
        )
        .await;
        assert_eq!(status, 304, "{path}");
        assert!(body.is_empty());
        assert_eq!(header(&headers, "etag"), etag);
        // Another file's tag is not this one's.
        let (status, _, _) = fetch(
            &gw.state,
            Method::GET,
            path,
            &[("if-none-match", "W/\"0123456789abcdef01234567\"")],
        )
        .await;
        assert_eq!(status, 200, "{path}");
    }

    // HEAD is answered (the server drops the body on the wire).
    for path in ["/", "/portal/app.css", "/healthz"] {
        let (status, _, _) = fetch(&gw.state, Method::HEAD, path, &[]).await;
        assert_eq!(status, 200, "HEAD {path}");
    }
    let (status, _, _) = fetch(&gw.state, Method::HEAD, "/portal/nothing.js", &[]).await;
    assert_eq!(status, 404);
    Ok(())
}

#[actix_web::test]
async fn graphiql_is_served_from_the_binary_and_loads_nothing_from_another_origin(
) -> anyhow::Result<()> {
    use actix_web::http::Method;
    let gw = gateway().await?;
    let (status, headers, page) = fetch(&gw.state, Method::GET, "/graphiql", &[]).await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page)?;
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let csp = header(&headers, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let files: Vec<&str> = page
        .split('"')
        .filter(|s| s.starts_with("/graphiql/"))
        .collect();
    assert_eq!(files.len(), 6, "{page}");
    for file in files {
        let (status, headers, body) = fetch(&gw.state, Method::GET, file, &[]).await;
        assert_eq!(status, 200, "{file}");
        let kind = header(&headers, "content-type");
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{file}: {kind}"
        );
        assert!(!body.is_empty());
        if file.ends_with("graphiql.min.js") {
            // The bundle carries the graphql-ws client its subscriptions use.
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("graphql-transport-ws"));
        }
        if file.ends_with("start.js") {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("subscriptionUrl") && text.contains("/graphql"));
        }
    }
    let (status, _, _) = fetch(&gw.state, Method::GET, "/graphiql/vendor/other.js", &[]).await;
    assert_eq!(status, 404);
    Ok(())
}

#[actix_web::test]
async fn metrics_count_every_route_and_name_operations_process_runtime_and_build(
) -> anyhow::Result<()> {
    use actix_web::http::Method;
    let gw = gateway().await?;
    let (status, _, _) = fetch(&gw.state, Method::GET, "/healthz", &[]).await;
    assert_eq!(status, 200);
    fetch(&gw.state, Method::GET, "/portal/app.css", &[]).await;
    fetch(&gw.state, Method::GET, "/no-such-page", &[]).await;
    for query in [
        "{ demoRoles { role } }",
        "query Named { r: demoRoles { role } }",
        // Names the schema does not have never become labels.
        "{ attackerChosenName }",
        "query attackerChosenOperation { __typename }",
    ] {
        let app = test::init_service(server::app(gw.state.clone())).await;
        let req = test::TestRequest::post()
            .uri("/graphql")
            .peer_addr(LOCAL.parse::<SocketAddr>().expect("addr"))
            .set_json(json!({ "query": query }))
            .to_request();
        assert_eq!(app.call(req).await.expect("answers").status().as_u16(), 200);
    }
    let (status, _, body) = fetch(&gw.state, Method::GET, "/metrics", &[]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body)?;
    let value = |line: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    // healthz, app.css and the request for /metrics itself so far: counted
    // when answered, so /metrics is not yet among them.
    assert!(
        value("tongban_http_requests_total{route=\"other\",status=\"2xx\"}") >= 2.0,
        "{text}"
    );
    assert!(value("tongban_http_requests_total{route=\"other\",status=\"4xx\"}") >= 1.0);
    assert_eq!(
        value("tongban_http_requests_total{route=\"graphql\",status=\"2xx\"}"),
        4.0
    );
    assert_eq!(
        value("tongban_graphql_operations_total{type=\"query\",field=\"demoRoles\"}"),
        2.0
    );
    assert_eq!(
        value("tongban_graphql_operations_total{type=\"query\",field=\"__typename\"}"),
        1.0
    );
    assert!(!text.contains("attackerChosen"), "{text}");
    for name in [
        "tongban_graphql_operation_errors_total{type=\"query\",field=\"demoRoles\"} 0",
        "tongban_graphql_operation_seconds_total{type=\"query\",field=\"demoRoles\"}",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
        "process_threads ",
        "tongban_runtime_alive_tasks{runtime=",
        "tongban_runtime_workers{runtime=",
        "tongban_websocket_connections 0",
        "tongban_websocket_operations 0",
        "tongban_scans_total 0",
        "tongban_colour_changes_total 0",
        "tongban_store_appends_total ",
        "tongban_projection_lag_events{projection=",
        &format!(
            "tongban_build_info{{version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(name), "no {name} in\n{text}");
    }
    assert!(value("process_resident_memory_bytes ") > 1e6);
    assert!(value("process_open_fds ") > 2.0);
    Ok(())
}

#[actix_web::test]
async fn reads_are_recorded_once_per_request_and_auditors_reads_of_forms_too() -> anyhow::Result<()>
{
    let gw = gateway().await?;
    let person = uuid::Uuid::now_v7().to_string();
    let citizen = gw.token("citizen", &person, None);
    let (_, body) = gw
        .post(
            Some(&citizen),
            r#"mutation { registerPerson(input: {homeRegion: "11", residence: "110106018002", idKind: "passport", idNumber: "E7654399", name: "李明", phone: "13900000000"}) { position } }"#,
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let (_, body) = gw
        .post(
            Some(&citizen),
            r#"mutation { correctInformation(region: "11", reason: "my test was negative") { position } }"#,
        )
        .await;
    let position = body["data"]["correctInformation"]["position"]
        .as_u64()
        .unwrap_or(0);

    // 40 aliases of the appeals queue name the person 40 times: one read.
    let official = gw.token("health_official", "o-bj", Some("11"));
    let aliases: String = (0..40)
        .map(|i| {
            format!(
                r#"a{i}: appeals(region: "11", minPosition: {position}) {{ appealId personId }} "#
            )
        })
        .collect();
    let (_, body) = gw.post(Some(&official), &format!("{{ {aliases} }}")).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["a39"][0]["personId"],
        person.as_str(),
        "{body}"
    );
    let auditor = gw.token("auditor", "auditor-1", None);
    let log = |p: u64| {
        format!(
            r#"{{ person(id: "{person}", purpose: "audit", minPosition: {p}) {{ accessLog {{ role purpose }} }} }}"#
        )
    };
    let mut reads = Vec::new();
    for _ in 0..50 {
        let (_, body) = gw.post(Some(&auditor), &log(position)).await;
        reads = body["data"]["person"]["accessLog"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["purpose"] == "appeals queue")
            .collect();
        if !reads.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(reads.len(), 1, "one access event for 40 aliases: {reads:?}");

    // A checkpoint asking for an id learns nothing about whether it exists.
    let checkpoint = gw.token("checkpoint", &uuid::Uuid::now_v7().to_string(), None);
    for id in [person.clone(), uuid::Uuid::now_v7().to_string()] {
        let (_, body) = gw
            .post(
                Some(&checkpoint),
                &format!(r#"{{ person(id: "{id}", purpose: "x") {{ id }} }}"#),
            )
            .await;
        assert_eq!(code(&body), "FORBIDDEN", "{body}");
    }

    // An auditor opening an application (a form with a bank account) is
    // recorded where the applicant sees it.
    let admin = gw.token("admin", "admin-1", None);
    publish_service(&gw, &admin, "elderly-care-subsidy", "Elderly-care subsidy").await?;
    let (_, body) = gw
        .post(
            Some(&citizen),
            r#"mutation { submitApplication(service: "elderly-care-subsidy", region: "110106", form: {age: 70, bankAccount: "6222020200112233445"}) { id position } }"#,
        )
        .await;
    let case = body["data"]["submitApplication"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let at = body["data"]["submitApplication"]["position"]
        .as_u64()
        .unwrap_or(0);
    assert!(!case.is_empty(), "{body}");
    let (_, body) = gw
        .post(
            Some(&auditor),
            &format!(r#"{{ application(id: "{case}", minPosition: {at}) {{ id }} }}"#),
        )
        .await;
    assert_eq!(
        code(&body),
        "INVALID_INPUT",
        "an auditor must say why: {body}"
    );
    let (_, body) = gw
        .post(
            Some(&auditor),
            &format!(r#"{{ application(id: "{case}", purpose: "annual audit", minPosition: {at}) {{ id }} }}"#),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let mut seen = json!(null);
    for _ in 0..50 {
        let (_, body) = gw
            .post(
                Some(&citizen),
                &format!(
                    r#"{{ application(id: "{case}") {{ accessLog {{ purpose department }} }} }}"#
                ),
            )
            .await;
        seen = body["data"]["application"]["accessLog"].clone();
        if seen.to_string().contains("annual audit") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.to_string().contains("annual audit"), "{seen}");
    Ok(())
}

#[actix_web::test]
async fn an_official_limited_to_a_district_follows_changes_of_that_district_only(
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let gw = gateway().await?;
    for (residence, number) in [("110106018002", "E5550001"), ("110101001001", "E5550002")] {
        let person = uuid::Uuid::now_v7().to_string();
        let (_, body) = gw
            .post(
                Some(&gw.token("citizen", &person, None)),
                &format!(r#"mutation {{ registerPerson(input: {{homeRegion: "11", residence: "{residence}", idKind: "passport", idNumber: "{number}", name: "李明", phone: "13900000000"}}) {{ position }} }}"#),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let dongcheng_only = tongban_kernel::Actor {
        id: tongban_kernel::ActorId::from_u128(0xD0),
        role: tongban_kernel::Role::HealthOfficial {
            region: tongban_kernel::DivisionCode::parse("11")?,
            sub_regions: vec![tongban_kernel::DivisionCode::parse("110101")?],
        },
    };
    let mut stream = gw.state.schema.execute_stream(
        async_graphql::Request::new(r#"subscription { changes(after: "0.0") { region kind } }"#)
            .data(dongcheng_only),
    );
    let mut regions = Vec::new();
    while let Ok(Some(response)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), stream.next()).await
    {
        let value = serde_json::to_value(&response.data)?;
        regions.push(
            value["changes"]["region"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(!regions.is_empty(), "the Dongcheng records arrive");
    assert!(
        regions.iter().all(|r| r.starts_with("110101")),
        "only Dongcheng's records: {regions:?}"
    );
    Ok(())
}
