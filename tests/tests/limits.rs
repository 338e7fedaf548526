//! Abusive requests are refused with clear errors: too deep, too complex,
//! too large, too many, too slow.

use serde_json::json;
use tongban_e2e::{spawn_app, spawn_on};

#[actix_web::test]
async fn deep_complex_and_large_queries_are_rejected() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let admin = app.token("admin", "admin-1", None)?;

    let deep = format!("{{ {} x {} }}", "a {".repeat(12), "}".repeat(12));
    let body = app.gql(&admin, &deep, json!({})).await?;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
        "{body}"
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("limit is 10"));

    let wide: String = (0..600)
        .map(|i| format!("a{i}: whoami {{ role }} "))
        .collect();
    let body = app.gql(&admin, &format!("{{ {wide} }}"), json!({})).await?;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{body}"
    );

    let huge = format!(
        "{{\"query\": \"{{ whoami {{ role }} }}\", \"padding\": \"{}\"}}",
        "x".repeat(100_000)
    );
    let (status, body) = app.post_raw(Some(&admin), huge).await?;
    assert_eq!(status, 413);
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("65536"));
    Ok(())
}

#[actix_web::test]
async fn a_token_over_its_rate_is_told_to_wait_and_slow_requests_time_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = spawn_on(
        dir.path(),
        &[
            ("TONGBAN_RATE_PER_SECOND", "1"),
            ("TONGBAN_RATE_BURST", "3"),
            ("TONGBAN_REQUEST_TIMEOUT_MS", "300"),
        ],
    )?;
    let admin = app.token("admin", "admin-1", None)?;
    let query = json!({"query": "{ whoami { role } }"});
    for _ in 0..3 {
        let (status, _) = app.post(Some(&admin), query.clone()).await?;
        assert_eq!(status, 200);
    }
    let (status, body) = app.post(Some(&admin), query.clone()).await?;
    assert_eq!(status, 429);
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    // Another token is not affected.
    let auditor = app.token("auditor", "auditor-1", None)?;
    // Waiting for a log position that never comes outlasts the request timeout.
    let (status, body) = app
        .post(
            Some(&auditor),
            json!({"query": "{ riskAreas(minPosition: 999999) { area } }"}),
        )
        .await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT");
    Ok(())
}

#[actix_web::test]
async fn websocket_operations_take_the_rate_limit_are_capped_and_a_silent_socket_is_closed(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = spawn_on(
        dir.path(),
        &[
            ("TONGBAN_RATE_PER_SECOND", "1"),
            ("TONGBAN_RATE_BURST", "4"),
            ("TONGBAN_MAX_OPERATIONS_PER_CONNECTION", "2"),
            ("TONGBAN_WS_INIT_TIMEOUT_MS", "500"),
        ],
    )?;
    let admin = app.token("admin", "admin-1", None)?;

    // Two subscriptions run; the third on the same connection is refused.
    let mut ws = app.ws("graphql-transport-ws", &admin).await?;
    for id in ["s1", "s2", "s3"] {
        ws.subscribe(id, "subscription { riskAreaChanged { kind } }")
            .await?;
    }
    let refused = ws.next().await?;
    assert_eq!(refused["id"], "s3", "{refused}");
    assert!(
        refused.to_string().contains("TOO_MANY_OPERATIONS"),
        "{refused}"
    );

    // Queries over the socket, one after another, spend the caller's
    // bucket: past the burst they are refused.
    let mut ws = app.ws("graphql-transport-ws", &admin).await?;
    let mut limited = 0;
    let mut seen = Vec::new();
    for i in 0..10 {
        let id = format!("q{i}");
        ws.subscribe(&id, "{ whoami { role } }").await?;
        loop {
            let msg = ws.next().await?;
            if msg["id"] == id.as_str() && matches!(msg["type"].as_str(), Some("next" | "error")) {
                if msg.to_string().contains("RATE_LIMITED") {
                    limited += 1;
                }
                seen.push(msg.to_string());
                break;
            }
        }
    }
    // At most what is left of the burst (4) and a refill or two get through.
    assert!(
        limited >= 4,
        "{limited} of 10 operations were rate limited: {seen:?}"
    );

    // A socket that never sends connection_init is closed.
    let mut silent = tongban_e2e::Ws::connect_silently(&app.addr, "graphql-transport-ws").await?;
    let closed = silent.next().await;
    let why = format!("{closed:?}");
    assert!(
        closed.is_err() && !why.contains("no WebSocket message within"),
        "the silent socket stayed open: {why}"
    );
    Ok(())
}

/// graphql-js, the reference implementation: its `getIntrospectionQuery()`
/// (what GraphiQL, Apollo tooling, codegen and Altair send), default and
/// with every option on, answered within the limits, and a client schema
/// built from the answer (`tests/introspection/introspect.mjs`). Node.js
/// and the pinned `graphql` package are required: the README's test command
/// installs the package; a missing Node fails this test.
#[actix_web::test]
async fn graphql_js_builds_a_client_schema_from_the_standard_introspection_query(
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = tongban_e2e::workspace().join("tests").join("introspection");
    anyhow::ensure!(
        dir.join("node_modules").join("graphql").exists(),
        "graphql-js is not installed: run `npm ci --prefix tests/introspection` (infra/scripts/test.sh does)"
    );
    let app = spawn_app()?;
    let out = std::process::Command::new("node")
        .arg("introspect.mjs")
        .arg(format!("http://{}/graphql", app.addr))
        .current_dir(&dir)
        .output()
        .context("failed to run `node` (Node.js 18 or later is needed for this test)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "graphql-js failed: {stderr}\n{stdout}"
    );
    let shapes: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(shapes.len(), 2, "{stdout}");
    for shape in &shapes {
        assert_eq!(shape["query"], "Query", "{shape}");
        assert_eq!(shape["mutation"], "Mutation", "{shape}");
        assert_eq!(shape["subscription"], "Subscription", "{shape}");
        assert!(shape["types"].as_u64().unwrap_or(0) > 20, "{shape}");
    }
    // Abusive queries are still refused.
    let admin = app.token("admin", "admin-1", None)?;
    let deep = format!("{{ {} x {} }}", "a {".repeat(12), "}".repeat(12));
    let body = app.gql(&admin, &deep, json!({})).await?;
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP");
    let deep_introspection = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "ofType {".repeat(30),
        "}".repeat(30)
    );
    let body = app.gql(&admin, &deep_introspection, json!({})).await?;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
        "{body}"
    );
    Ok(())
}
