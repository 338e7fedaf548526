//! The portal in headless Chromium against the real binary: a citizen signs
//! in and sees a green QR; an official declares Huaxiang township high-risk
//! and the citizen who dwelt in Fengtai sees yellow without reloading; a
//! checkpoint scans that code and shows denied; an auditor sees the
//! explanation. Screenshots go to `target/browser/`; any JavaScript console
//! error fails the test.

use serde_json::json;
use tongban_browser_tests::{spawn_app, spawn_demo, Driver};

/// A community in Chaoyang district, where the citizen lives.
const CHAOYANG_COMMUNITY: &str = "110105001024";
/// Huaxiang township (a street of Fengtai district).
const HUAXIANG: &str = "110106018";

const REGISTER: &str = r#"mutation($residence: String!) {
  registerPerson(input: {homeRegion: "11", residence: $residence, idKind: "passport",
                         idNumber: "E12345678", name: "王芳", phone: "13800138000"}) { colour } }"#;

const DWELL: &str = r#"mutation($id: ID!) {
  recordEvidence(personId: $id, source: TELCO,
                 evidence: {kind: "dwell_reported", county: "110106", minutes: 240}) { colour } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_official_checkpoint_and_auditor_see_a_risk_area_turn_a_code_yellow(
) -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let person = uuid::Uuid::now_v7().to_string();
    let citizen_token = app.token("citizen", &person, None)?;
    let official_token = app.token("health_official", "official-beijing", Some("11"))?;
    let auditor_token = app.token("auditor", "auditor-1", None)?;

    // Setup through the API: the citizen is registered and their phone
    // stayed four hours in Fengtai; the market's checkpoint is registered.
    let registered = app.data(
        &citizen_token,
        REGISTER,
        json!({"residence": CHAOYANG_COMMUNITY}),
    )?;
    assert_eq!(registered["registerPerson"]["colour"], "green");
    let dwelt = app.data(&official_token, DWELL, json!({"id": person}))?;
    assert!(
        dwelt["recordEvidence"]["colour"].is_null(),
        "no risk area yet: {dwelt}"
    );
    let checkpoint = app.data(
        &official_token,
        r#"mutation($place: String!) { registerCheckpoint(name: "新发地市场 Xinfadi market", place: $place) { checkpointId } }"#,
        json!({"place": "110106018002"}),
    )?;
    let checkpoint_id = checkpoint["registerCheckpoint"]["checkpointId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let checkpoint_token = app.token("checkpoint", &checkpoint_id, None)?;

    let mut driver = Driver::start()?;

    // 1. The citizen signs in on a phone-sized screen and sees a green QR.
    let citizen = driver.browser("citizen", 390, 844).await?;
    citizen.sign_in(&base, &citizen_token).await?;
    citizen.wait_for("#qr[data-colour=green] svg", 60).await?;
    citizen
        .wait_for("#why .explain[data-reason=NO_RISK]", 10)
        .await?;
    citizen.wait_for("#countdown", 5).await?;
    citizen.screenshot("1-green").await?;
    let green_at = citizen.client.execute("return Date.now();", vec![]).await?;
    // A marker that a reload would wipe.
    citizen
        .client
        .execute("window.__stillTheSamePage = true; return true;", vec![])
        .await?;

    // 2. An official declares Huaxiang township high-risk in the portal.
    let official = driver.browser("official", 1280, 1000).await?;
    official.sign_in(&base, &official_token).await?;
    official.wait_for("#bars .bar", 60).await?;
    official.wait_for("#chart .uplot", 10).await?;
    // The chart starts from the server's hourly history (the registrations
    // above are in it), not from when the page opened.
    official
        .wait_for("#chart[data-history]:not([data-history='0'])", 10)
        .await?;
    official.fill("#risk-area", HUAXIANG).await?;
    official.click("#risk-declare").await?;
    official
        .wait_for(
            &format!("#risk-list li[data-area='{HUAXIANG}'][data-level=high]"),
            20,
        )
        .await?;
    official.screenshot("2-declared").await?;

    // 3. The citizen's page turns yellow by itself, without a reload.
    citizen.wait_for("#qr[data-colour=yellow] svg", 60).await?;
    citizen
        .wait_for("#why .explain[data-reason=RISK_AREA_DWELL]", 10)
        .await?;
    let same_page = citizen
        .client
        .execute("return window.__stillTheSamePage === true;", vec![])
        .await?;
    assert_eq!(same_page, json!(true), "the citizen page was reloaded");
    citizen.screenshot("3-yellow").await?;
    let code_text = citizen
        .client
        .execute(
            "return document.getElementById('code-text').textContent;",
            vec![],
        )
        .await?;
    let code_text = code_text.as_str().unwrap_or_default().to_string();
    assert!(code_text.starts_with("HC1:"), "{code_text}");

    // The official's counts moved with the subscription: the citizen lives
    // in Chaoyang (110105).
    official
        .wait_for(
            "#bars .bar[data-county='110105'][data-yellow='1'][data-green='0']",
            20,
        )
        .await?;
    official.screenshot("4-chart").await?;

    // 4. The checkpoint scans that code: denied, and why, in large type.
    let checkpoint = driver.browser("checkpoint", 1024, 900).await?;
    checkpoint.sign_in(&base, &checkpoint_token).await?;
    checkpoint.wait_for("#place-qr svg", 60).await?;
    // The guard uploads a picture of the citizen's screen: jsQR reads it.
    let picture = citizen.element_screenshot("#qr", "qr-picture").await?;
    let upload = checkpoint.wait_for("#scan-upload", 10).await?;
    upload.send_keys(&picture.display().to_string()).await?;
    let verdict = checkpoint
        .wait_for("#verdict .verdict[data-admitted=false]", 20)
        .await?;
    let said = verdict.text().await?;
    assert!(said.contains("DENIED"), "{said}");
    checkpoint.screenshot("5-denied").await?;

    // 5. The auditor looks the person up and sees the explanation.
    let auditor = driver.browser("auditor", 1280, 1000).await?;
    auditor.sign_in(&base, &auditor_token).await?;
    auditor.fill("#audit-person", &person).await?;
    auditor.click("#audit-go").await?;
    let explanation = auditor
        .wait_for(
            "#audit-explanation .explain[data-reason=RISK_AREA_DWELL][data-colour=yellow]",
            30,
        )
        .await?;
    let said = explanation.text().await?;
    assert!(said.contains("4 hours"), "{said}");
    assert!(
        said.contains("110106"),
        "the evidence names the county: {said}"
    );
    auditor.wait_for("#chain-head", 10).await?;
    auditor.screenshot("6-explanation").await?;
    // As of the moment the citizen first saw green: green, no risk.
    auditor
        .client
        .execute(
            r#"const at = new Date(arguments[0]);
               const local = new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
               document.getElementById("asof").value = local;
               document.getElementById("asof-form").requestSubmit();
               return true;"#,
            vec![green_at],
        )
        .await?;
    auditor
        .wait_for(
            "#asof-result .explain[data-colour=green][data-reason=NO_RISK]",
            10,
        )
        .await?;
    auditor
        .client
        .execute(
            "document.getElementById('asof-result').scrollIntoView(); return true;",
            vec![],
        )
        .await?;
    auditor.screenshot("7-as-of").await?;
    // The checkpoint's stream: the denied scan is in its log.
    auditor.fill("#audit-checkpoint", &checkpoint_id).await?;
    auditor
        .click("#audit-checkpoint-form button[type=submit]")
        .await?;
    let row = auditor.text("#checkpoint-scans tbody tr").await?;
    assert!(row.contains("COLOUR_NOT_ADMITTED"), "{row}");
    auditor.screenshot("8-checkpoint-stream").await?;
    // The risk area's own stream, event by event as the log holds it; a
    // person's stream is not open there (it is read by person, recorded).
    auditor
        .fill("#audit-stream", &format!("riskarea-{HUAXIANG}"))
        .await?;
    auditor.click("#audit-stream-go").await?;
    auditor
        .wait_for("#stream-events tr[data-type^='RiskAreaDeclared']", 20)
        .await?;
    auditor.screenshot("9-risk-area-stream").await?;
    auditor
        .fill("#audit-stream", &format!("person-{person}"))
        .await?;
    auditor.click("#audit-stream-go").await?;
    let refused = auditor
        .wait_for("#audit-stream-form .error", 20)
        .await?
        .text()
        .await?;
    assert!(refused.contains("not open here"), "{refused}");

    // 6. The citizen appeals; the official corrects the colour to green and
    //    the citizen's page follows live.
    citizen
        .fill("#appeal-reason", "I only drove through Fengtai.")
        .await?;
    citizen.click("#appeal-form button[type=submit]").await?;
    citizen
        .wait_for("#appeals li[data-status=open]", 60)
        .await?;
    official.click("#appeals-refresh").await?;
    let card = "#appeals-list [data-appeal]";
    official.wait_for(card, 60).await?;
    official
        .fill(
            &format!("{card} input"),
            "Telco dwell was a transit; checked with the operator.",
        )
        .await?;
    official.screenshot("6-appeal").await?;
    official
        .click(&format!("{card} button:not(.secondary)"))
        .await?;
    official.wait_for("#appeals-list p.muted", 60).await?;
    citizen.wait_for("#qr[data-colour=green] svg", 60).await?;
    citizen
        .wait_for("#appeals li[data-status=overridden]", 60)
        .await?;
    let why = citizen
        .text("#why .explain[data-reason=OFFICIAL_OVERRIDE]")
        .await?;
    assert!(why.contains("Telco dwell was a transit"), "{why}");
    citizen.screenshot("8-corrected").await?;

    // The citizen sees that the auditor read their data.
    citizen.client.refresh().await?;
    citizen
        .wait_for("#access li[data-role=auditor]", 60)
        .await?;
    // After a reload the replayed history is not news.
    citizen.wait_for("#qr[data-colour=green] svg", 60).await?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let notice = citizen.text("#citizen-notice").await?;
    assert!(notice.is_empty(), "stale change notice: {notice}");
    citizen
        .client
        .execute(
            "document.getElementById('access').scrollIntoView(); return true;",
            vec![],
        )
        .await?;
    citizen.screenshot("9-access-log").await?;
    citizen.full_screenshot("10-whole-page").await?;
    official.full_screenshot("7-whole-page").await?;

    for browser in [citizen, official, checkpoint, auditor] {
        browser.finish().await?;
    }
    Ok(())
}

/// 王芳 with a Beijing resident ID (the standard's worked example).
const REGISTER_RESIDENT: &str = r#"mutation($residence: String!) {
  registerPerson(input: {homeRegion: "11", residence: $residence, idKind: "resident_id",
                         idNumber: "11010519491231002X", name: "王芳", phone: "13800138000"}) { colour } }"#;

const REGISTER_CHECKPOINT: &str = r#"mutation($name: String!) {
  registerCheckpoint(name: $name, place: "110106018002") { checkpointId } }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_of_a_code_from_before_the_holder_turned_red_is_denied_and_shows_the_masked_name(
) -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let person = uuid::Uuid::now_v7().to_string();
    let citizen_token = app.token("citizen", &person, None)?;
    let official_token = app.token("health_official", "official-beijing", Some("11"))?;
    let registered = app.data(
        &citizen_token,
        REGISTER_RESIDENT,
        json!({"residence": CHAOYANG_COMMUNITY}),
    )?;
    assert_eq!(registered["registerPerson"]["colour"], "green");
    let mut checkpoint_tokens = Vec::new();
    for name in ["新发地市场 Xinfadi market", "北京南站 Beijing South"] {
        let done = app.data(&official_token, REGISTER_CHECKPOINT, json!({"name": name}))?;
        let id = done["registerCheckpoint"]["checkpointId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        checkpoint_tokens.push(app.token("checkpoint", &id, None)?);
    }
    let [market_token, station_token] = &checkpoint_tokens[..] else {
        anyhow::bail!("two checkpoints");
    };

    let mut driver = Driver::start()?;
    // The citizen's green code, as a picture (a screenshot passed around).
    let citizen = driver.browser("superseded-citizen", 390, 844).await?;
    citizen.sign_in(&base, &citizen_token).await?;
    citizen.wait_for("#qr[data-colour=green] svg", 60).await?;
    let picture = citizen
        .element_screenshot("#qr", "superseded-1-green-code")
        .await?;
    let code_text = citizen
        .client
        .execute(
            "return document.getElementById('code-text').textContent;",
            vec![],
        )
        .await?;
    let code_text = code_text.as_str().unwrap_or_default().to_string();
    assert!(code_text.starts_with("HC1:"), "{code_text}");

    // At the market the holder measures 38.6 °C: denied, and red at once.
    let fever = app.data(
        market_token,
        "mutation($c: String!) { scanCode(code: $c, temperature: 38.6) { admitted reason } }",
        json!({"c": code_text}),
    )?;
    assert_eq!(fever["scanCode"]["reason"], "FEVER", "{fever}");

    // At the station a guard is shown the picture of the old green code.
    let station = driver.browser("superseded-station", 1024, 900).await?;
    station.sign_in(&base, station_token).await?;
    station.wait_for("#place-qr svg", 60).await?;
    let upload = station.wait_for("#scan-upload", 10).await?;
    upload.send_keys(&picture.display().to_string()).await?;
    let verdict = station
        .wait_for(
            "#verdict .verdict[data-admitted=false][data-reason=CODE_SUPERSEDED]",
            20,
        )
        .await?;
    let said = verdict.text().await?;
    assert!(said.contains("DENIED"), "{said}");
    assert!(said.contains("void"), "CODE_SUPERSEDED in words: {said}");
    assert!(said.contains("王*"), "the masked name: {said}");
    assert!(said.contains("110***********002X"), "the masked ID: {said}");
    assert!(!said.contains("王芳"), "never the full name: {said}");
    station.wait_for("#verdict .pill.red", 5).await?;
    station.wait_for("#verdict-issued", 5).await?;
    station
        .wait_for("#verdict-source[data-source=upload]", 5)
        .await?;
    station.screenshot("superseded-2-denied").await?;

    // Pasted as text, the same code is denied the same way.
    station.fill("#scan-code", &code_text).await?;
    station.click("#scan-go").await?;
    station
        .wait_for(
            "#verdict .verdict[data-reason=CODE_SUPERSEDED] #verdict-source[data-source=paste]",
            20,
        )
        .await?;
    station.screenshot("superseded-3-pasted").await?;

    for browser in [citizen, station] {
        browser.finish().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_forged_token_says_so_and_offers_to_sign_in_again() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let person = uuid::Uuid::now_v7().to_string();
    let citizen_token = app.token("citizen", &person, None)?;
    app.data(
        &citizen_token,
        REGISTER,
        json!({"residence": CHAOYANG_COMMUNITY}),
    )?;
    let mut driver = Driver::start()?;
    let browser = driver.browser("expiry", 390, 844).await?;
    browser.sign_in(&base, &citizen_token).await?;
    browser.wait_for("#qr[data-colour=green] svg", 60).await?;

    // The same token with its expiry in the past.
    browser
        .client
        .execute(
            r#"const [h, p, s] = sessionStorage.getItem("tongban.token").split(".");
               const claims = JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/")));
               claims.exp = 1000;
               const b64 = btoa(JSON.stringify(claims)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
               sessionStorage.setItem("tongban.token", [h, b64, s].join("."));
               location.reload();
               return true;"#,
            vec![],
        )
        .await?;
    let again = browser.wait_for("#banner #signin-again", 20).await?;
    let said = browser.text("#banner").await?;
    assert!(said.contains("expired"), "{said}");
    browser.screenshot("expired").await?;
    again.click().await?;
    browser.wait_for("#token", 10).await?;

    // A forged token is refused with the server's reason (typed and sent
    // with the Enter key alone).
    browser.fill("#token", "not-a-token\u{E007}").await?;
    let error = browser.wait_for("#signin-status .error", 20).await?;
    let said = error.text().await?;
    assert!(said.contains("not valid"), "{said}");
    browser.screenshot("forged").await?;
    // Chromium logs the 401 answer as a failed resource load: that is the
    // expected outcome here; anything else is a script error.
    let errors = browser.console_errors().await?;
    assert!(
        errors.iter().all(|e| e.contains("401")),
        "JavaScript console errors: {errors:?}"
    );
    let _ = browser.client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_development_mode_the_demo_roles_sign_in_with_one_click() -> anyhow::Result<()> {
    let app = spawn_demo(200)?;
    let base = app.url("");
    let mut driver = Driver::start()?;
    let browser = driver.browser("demo", 1280, 900).await?;
    browser.goto(&format!("{base}/#/signin")).await?;
    browser
        .wait_for("#demo-roles button[data-role=auditor]", 20)
        .await?;
    browser.screenshot("roles").await?;

    // The exposed Huaxiang resident: a close contact of the market's case.
    browser
        .click("#demo-roles button[data-role=citizen]")
        .await?;
    browser.wait_for("#qr svg", 60).await?;
    browser.wait_for("#why .explain", 10).await?;
    browser.screenshot("citizen").await?;
    // The same page in Chinese.
    browser.click("#lang").await?;
    let title = browser.text("main h1").await?;
    assert_eq!(title, "我的健康码");
    browser.wait_for("#qr svg", 60).await?;
    browser.screenshot("citizen-zh").await?;
    browser.click("#lang").await?;

    browser.click("#signout").await?;
    browser
        .click("#demo-roles button[data-role=health_official]")
        .await?;
    browser.wait_for("#bars .bar", 60).await?;
    browser
        .wait_for("#risk-list li[data-area='110106018'][data-level=high]", 10)
        .await?;
    browser.screenshot("official").await?;
    // The same page on a phone.
    browser.client.set_window_size(390, 844).await?;
    browser.full_screenshot("official-phone").await?;

    browser.click("#signout").await?;
    browser
        .click("#demo-roles button[data-role=checkpoint]")
        .await?;
    browser.wait_for("#place-qr svg", 60).await?;
    browser.full_screenshot("checkpoint-phone").await?;
    browser.finish().await
}

/// `YYYY-MM-DDTHH:MM:SSZ`, `days` from now (the request's lapse time).
fn days_from_now(days: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + days * 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let (day, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_verifies_the_whole_hash_chain_and_sees_it_intact() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let person = uuid::Uuid::now_v7().to_string();
    let citizen_token = app.token("citizen", &person, None)?;
    let auditor_token = app.token("auditor", "auditor-1", None)?;
    app.data(
        &citizen_token,
        REGISTER,
        json!({"residence": CHAOYANG_COMMUNITY}),
    )?;

    // Only auditors and admins may verify the chain.
    let refused = app
        .data(&citizen_token, "{ verifyChain { intact } }", json!({}))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("FORBIDDEN"), "{refused}");
    let through_api = app.data(
        &auditor_token,
        "{ verifyChain { intact eventsChecked lastHash headHash nextFrom } }",
        json!({}),
    )?;
    let answer = &through_api["verifyChain"];
    assert_eq!(answer["intact"], true, "{answer}");
    assert_eq!(answer["lastHash"], answer["headHash"], "{answer}");
    assert!(answer["nextFrom"].is_null(), "{answer}");

    let mut driver = Driver::start()?;
    let auditor = driver.browser("chain", 1280, 900).await?;
    auditor.sign_in(&base, &auditor_token).await?;
    auditor.wait_for("#chain-head", 60).await?;
    auditor.click("#chain-verify").await?;
    let result = auditor
        .wait_for("#chain-result[data-intact=true]", 60)
        .await?;
    let said = result.text().await?;
    assert!(said.contains("intact"), "{said}");
    assert!(said.contains("equals the current head"), "{said}");
    auditor.screenshot("1-intact").await?;

    // The same in Chinese.
    auditor.click("#lang").await?;
    auditor.click("#chain-verify").await?;
    let said = auditor
        .text("#chain-result[data-intact=true] .plain")
        .await?;
    assert!(said.contains("哈希链完整"), "{said}");
    // Checking the head again: the old head still hashes the same.
    auditor.click("#chain-check").await?;
    auditor.wait_for("#chain-same.ok", 30).await?;
    auditor.screenshot("2-intact-zh").await?;
    auditor.click("#lang").await?;
    auditor.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_override_waits_for_a_second_official_who_approves_it_in_the_portal(
) -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let first_token = app.token("health_official", "official-wang", Some("11"))?;
    let second_token = app.token("health_official", "official-li", Some("11"))?;

    // Eleven residents: one more than a region may override in a day
    // without a second official.
    let mut persons = Vec::new();
    let mut citizen_tokens = Vec::new();
    for _ in 0..11 {
        let person = uuid::Uuid::now_v7().to_string();
        let token = app.token("citizen", &person, None)?;
        app.data(&token, REGISTER, json!({"residence": CHAOYANG_COMMUNITY}))?;
        persons.push(person);
        citizen_tokens.push(token);
    }
    let requested = app.data(
        &first_token,
        r#"mutation($p: [ID!]!, $exp: String!) {
             requestOverride(region: "11", persons: $p, colour: YELLOW,
                             legalBasis: "传染病防治法 第三十九条",
                             reason: "Close contacts at the Chaoyang office, from the telco list",
                             caseRef: "CASE-2026-0042", expiresAt: $exp) { id events } }"#,
        json!({"p": persons, "exp": days_from_now(7)}),
    )?;
    let id = requested["requestOverride"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let events = requested["requestOverride"]["events"].to_string();
    assert!(events.contains("OverrideAlertRaised"), "{events}");
    let item = format!("#overrides-list li[data-override='{id}']");

    let mut driver = Driver::start()?;
    // The official who asked sees it waiting, and cannot approve it.
    let first = driver.browser("override-requester", 1280, 1000).await?;
    first.sign_in(&base, &first_token).await?;
    first
        .wait_for(
            &format!("{item}[data-own=true] button.approve[disabled]"),
            60,
        )
        .await?;
    let said = first.text(&format!("{item} .why-not")).await?;
    assert!(said.contains("another official"), "{said}");
    first
        .client
        .execute(
            "document.getElementById('pending-overrides').scrollIntoView(); return true;",
            vec![],
        )
        .await?;
    first.screenshot("1-own-request").await?;

    // A second official sees who asked, what and why, and approves.
    let second = driver.browser("override-approver", 1280, 1000).await?;
    second.sign_in(&base, &second_token).await?;
    let card = second
        .wait_for(
            &format!("{item}[data-own=false][data-can-approve=true]"),
            60,
        )
        .await?;
    let said = card.text().await?;
    assert!(said.contains("Set 11 persons"), "{said}");
    assert!(said.contains("Chaoyang office"), "{said}");
    assert!(said.contains("CASE-2026-0042"), "{said}");
    second
        .client
        .execute(
            "document.getElementById('pending-overrides').scrollIntoView(); return true;",
            vec![],
        )
        .await?;
    second.screenshot("2-pending").await?;
    second.click(&format!("{item} button.approve")).await?;
    let done = second.text("#overrides-status .ok").await?;
    assert!(done.contains("11 persons"), "{done}");
    second.wait_for("#no-overrides", 30).await?;
    second.screenshot("3-approved").await?;

    // The override now applies: every resident is yellow by official
    // override (read once the read models reached the log's head).
    let admin = app.token("admin", "admin-1", None)?;
    let head = app.data(&admin, "{ logHead { position } }", json!({}))?;
    let head = head["logHead"]["position"].clone();
    for token in &citizen_tokens {
        let me = app.data(
            token,
            "query($pos: Int) { me(minPosition: $pos) { colour { colour reason } } }",
            json!({"pos": head}),
        )?;
        assert_eq!(me["me"]["colour"]["colour"], "yellow", "{me}");
        assert_eq!(me["me"]["colour"]["reason"], "OFFICIAL_OVERRIDE", "{me}");
    }
    // The requester's list empties too.
    first.click("#overrides-refresh").await?;
    first.wait_for("#no-overrides", 30).await?;
    first.finish().await?;
    second.finish().await
}

/// GraphiQL comes from the binary: on a machine without internet it loads,
/// fetches the schema and runs a query, with no console error (a script
/// refused by the page's Content-Security-Policy would be one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_loads_from_the_binary_and_runs_a_query() -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let mut driver = Driver::start()?;
    let browser = driver.browser("graphiql", 1280, 900).await?;
    browser
        .goto(&format!(
            "{base}/graphiql?query=%7B%20demoRoles%20%7B%20role%20%7D%20%7D"
        ))
        .await?;
    browser.wait_for(".graphiql-execute-button", 60).await?;
    browser.click(".graphiql-execute-button").await?;
    let mut answer = String::new();
    for _ in 0..100 {
        answer = browser.text(".result-window").await.unwrap_or_default();
        if answer.contains("demoRoles") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        answer.contains("\"data\"")
            && answer.contains("\"demoRoles\"")
            && !answer.contains("errors"),
        "the result pane says: {answer}"
    );
    browser.screenshot("graphiql").await?;
    browser.finish().await
}
