//! "My services" and the officials' queue in headless Chromium against the
//! real binary: a citizen finds the elderly-care subsidy, applies with an
//! invalid form (each violation shown next to its field), then a valid one;
//! a civil-affairs official of Fengtai finds it in the queue, opens it
//! saying why, accepts and approves it; the citizen, still on the page,
//! sees the approval and the inbox notification arrive live. Screenshots
//! go to `target/browser/`; any JavaScript console error fails the test.

use fantoccini::Locator;
use serde_json::{json, Value};
use tongban_browser_tests::{spawn_app, App, Browser, Driver};

/// Fengtai district: where the citizen applies and the official's region.
const FENGTAI: &str = "110106";

/// The elderly-care subsidy as the hub's standard catalogue defines it
/// (`tongban_cases::standard::elderly_care_subsidy`), published for Beijing.
fn elderly_care_subsidy() -> Value {
    json!({
        "code": "elderly-care-subsidy",
        "name": "Elderly-care subsidy",
        "department": "civil-affairs",
        "description": "Monthly subsidy for residents aged sixty or over who need care at home or in an institution.",
        "requiredDocuments": ["Resident ID", "Hukou booklet", "Care needs assessment"],
        "eligibleRegions": ["11"],
        "processingDays": 20,
        "formSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["age", "careLevel", "monthlyIncome", "bankAccount"],
            "additionalProperties": false,
            "properties": {
                "age": {"type": "integer", "minimum": 60, "maximum": 130},
                "careLevel": {"enum": ["self-care", "partial-care", "full-care"]},
                "monthlyIncome": {"type": "number", "minimum": 0},
                "livesAlone": {"type": "boolean"},
                "bankAccount": {"type": "string", "pattern": "^[0-9]{12,19}$"}
            }
        }
    })
}

fn publish(app: &App) -> anyhow::Result<()> {
    let admin = app.token("admin", "admin-1", None)?;
    app.data(
        &admin,
        r#"mutation($s: ServiceInput!) { publishService(service: $s) { position } }"#,
        json!({"s": elderly_care_subsidy()}),
    )?;
    Ok(())
}

/// Chooses an option of a `<select>` by its value.
async fn choose(browser: &Browser, css: &str, value: &str) -> anyhow::Result<()> {
    browser.wait_for(css, 10).await?;
    browser
        .client
        .find(Locator::Css(css))
        .await?
        .select_by_value(value)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_applies_for_the_elderly_care_subsidy_and_sees_the_officials_approval_live(
) -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    publish(&app)?;
    let person = uuid::Uuid::now_v7().to_string();
    let citizen_token = app.token("citizen", &person, None)?;
    // A department token's name defaults to its subject: civil affairs,
    // with authority over Fengtai.
    let official_token = app.token("department", "civil-affairs", Some(FENGTAI))?;

    let mut driver = Driver::start()?;

    // 1. The citizen, on a phone-sized screen, finds the subsidy.
    let citizen = driver.browser("services-citizen", 390, 844).await?;
    citizen.sign_in(&base, &citizen_token).await?;
    citizen.click("#nav-services").await?;
    citizen.fill("#svc-keyword", "elderly").await?;
    citizen.fill("#svc-region", FENGTAI).await?;
    citizen.click("#svc-search-go").await?;
    citizen
        .click(r#"#svc-results[data-keyword="elderly"] a.svc-open[data-service="elderly-care-subsidy"]"#)
        .await?;
    citizen.wait_for("#apply-form", 15).await?;
    citizen.screenshot("1-form").await?;

    // 2. An invalid form: too young, no care level, a bank account with
    // letters. Each violation is shown next to its field.
    citizen.fill("#apply-age", "59").await?;
    citizen.fill("#apply-monthlyIncome", "1800").await?;
    citizen.fill("#apply-bankAccount", "6222ab").await?;
    citizen.click("#apply-go").await?;
    citizen.wait_for("#form-summary", 15).await?;
    citizen
        .wait_for(r#"#apply-age-error[data-rule="minimum"]"#, 5)
        .await?;
    citizen
        .wait_for(r#"#apply-careLevel-error[data-rule="required"]"#, 5)
        .await?;
    citizen
        .wait_for(r#"#apply-bankAccount-error[data-rule="pattern"]"#, 5)
        .await?;
    citizen
        .wait_for(r#"#apply-age[aria-invalid="true"]"#, 5)
        .await?;
    citizen.full_screenshot("2-invalid").await?;

    // 3. Corrected, it is submitted.
    citizen.fill("#apply-age", "82").await?;
    choose(&citizen, "#apply-careLevel", "partial-care").await?;
    citizen
        .fill("#apply-bankAccount", "6222020200012345678")
        .await?;
    citizen.click("#apply-go").await?;
    citizen.wait_for("#apply-done", 15).await?;
    citizen
        .wait_for(r#"#app-status[data-status="submitted"]"#, 15)
        .await?;
    citizen
        .wait_for(r#"#my-apps li[data-status="submitted"]"#, 15)
        .await?;
    citizen.full_screenshot("3-submitted").await?;
    let mine = app.data(
        &citizen_token,
        "{ myApplications { id status } }",
        json!({}),
    )?;
    let id = mine["myApplications"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!id.is_empty(), "no application: {mine}");

    // 4. The official finds it in the queue, opens it saying why, accepts
    // and approves it with a reason.
    let official = driver.browser("services-official", 1280, 900).await?;
    official.sign_in(&base, &official_token).await?;
    official
        .click(&format!(
            r#"#queue-list tr[data-application="{id}"] a.queue-open"#
        ))
        .await?;
    official.click("#queue-open-go").await?;
    official.click("#case-accept").await?;
    official
        .wait_for(r#"#case-status[data-status="under_review"]"#, 15)
        .await?;
    official
        .fill(
            "#case-reasons",
            "Age and care level confirmed by the assessment",
        )
        .await?;
    official.click("#case-approve").await?;
    official
        .wait_for(r#"#case-status[data-status="approved"]"#, 15)
        .await?;
    official.full_screenshot("4-approved").await?;

    // 5. The citizen, still on the application's page, sees the approval
    // and the notification arrive without reloading.
    citizen
        .wait_for(r#"#app-status[data-status="approved"]"#, 30)
        .await?;
    citizen
        .wait_for(
            r#"#inbox-list li.unread[data-kind="application_status"]"#,
            30,
        )
        .await?;
    let unread = citizen.text("#inbox-unread").await?;
    assert_ne!(unread.trim(), "0", "the inbox shows no unread message");
    let history = citizen.text("#app-history").await?;
    assert!(
        history.contains("Age and care level confirmed"),
        "the reason is not shown: {history}"
    );
    citizen.full_screenshot("5-citizen-sees-approval").await?;

    // The application left the official's queue.
    official.goto(&format!("{base}/#/queue")).await?;
    official.wait_for("#queue-empty", 15).await?;

    citizen.finish().await?;
    official.finish().await?;
    Ok(())
}

/// The work-resumption permit as the standard catalogue defines it
/// (`tongban_cases::standard::work_resumption_permit`), for Beijing.
fn work_resumption_permit() -> Value {
    json!({
        "code": "work-resumption-permit",
        "name": "Enterprise work-resumption permit",
        "department": "commerce",
        "description": "An enterprise applies to resume work on site; the reviewing official sees the share of its registered employees holding a green health code.",
        "requiredDocuments": ["Business licence", "Epidemic prevention plan"],
        "eligibleRegions": ["11"],
        "processingDays": 5,
        "formSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["enterpriseName", "creditCode", "registeredEmployees", "siteAddress", "preventionMeasures"],
            "additionalProperties": false,
            "properties": {
                "enterpriseName": {"type": "string", "minLength": 2, "maxLength": 200},
                "creditCode": {"type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"},
                "registeredEmployees": {"type": "integer", "minimum": 1},
                "siteAddress": {"type": "string", "minLength": 4},
                "resumeOn": {"type": "string", "format": "date"},
                "preventionMeasures": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enterprise_applies_for_a_work_resumption_permit_and_supplements_what_the_official_asks_for(
) -> anyhow::Result<()> {
    let app = spawn_app()?;
    let base = app.url("");
    let admin = app.token("admin", "admin-1", None)?;
    app.data(
        &admin,
        r#"mutation($s: ServiceInput!) { publishService(service: $s) { position } }"#,
        json!({"s": work_resumption_permit()}),
    )?;
    let enterprise = uuid::Uuid::now_v7().to_string();
    let enterprise_token = app.token("enterprise", &enterprise, None)?;
    let official_token = app.token("department", "commerce", Some(FENGTAI))?;

    let mut driver = Driver::start()?;

    // 1. The enterprise's start page is "My services": it finds the permit
    // and applies.
    let firm = driver.browser("services-enterprise", 390, 844).await?;
    firm.sign_in(&base, &enterprise_token).await?;
    firm.fill("#svc-keyword", "work resumption").await?;
    firm.fill("#svc-region", FENGTAI).await?;
    firm.click("#svc-search-go").await?;
    firm.click(r#"#svc-results[data-keyword="work resumption"] a.svc-open[data-service="work-resumption-permit"]"#)
        .await?;
    firm.fill("#apply-enterpriseName", "Fengtai Precision Parts Co.")
        .await?;
    firm.fill("#apply-creditCode", "91110106MA01ABCD3X").await?;
    firm.fill("#apply-registeredEmployees", "120").await?;
    firm.fill("#apply-siteAddress", "1 Huaxiang Road").await?;
    firm.fill(
        "#apply-preventionMeasures",
        "temperature checks at the gate\nstaggered shifts",
    )
    .await?;
    firm.click("#apply-go").await?;
    firm.wait_for(r#"#app-status[data-status="submitted"]"#, 15)
        .await?;
    firm.full_screenshot("1-submitted").await?;

    // 2. The commerce official of Fengtai opens it, sees the workforce
    // section (counts only; no employment registry in this hub), and asks
    // for more information.
    let official = driver.browser("services-commerce", 1280, 900).await?;
    official.sign_in(&base, &official_token).await?;
    official.click("#queue-list a.queue-open").await?;
    official.click("#queue-open-go").await?;
    official.wait_for("#workforce", 15).await?;
    official
        .fill("#case-request", "The site's ventilation plan")
        .await?;
    official.click("#case-request-go").await?;
    official
        .wait_for(r#"#case-status[data-status="awaiting_information"]"#, 15)
        .await?;
    let workforce = official.text("#workforce").await?;
    assert!(
        workforce.contains("no employee is identified"),
        "{workforce}"
    );
    official.full_screenshot("2-requested").await?;

    // 3. The enterprise sees the request arrive and supplements.
    firm.wait_for(r#"#app-status[data-status="awaiting_information"]"#, 30)
        .await?;
    let asked = firm.text("#app-requested").await?;
    assert!(asked.contains("ventilation plan"), "{asked}");
    firm.fill("#supplement-siteAddress", "1 Huaxiang Road, building 3")
        .await?;
    firm.fill(
        "#supplement-note",
        "Ventilation plan attached to the site file",
    )
    .await?;
    firm.click("#supplement-go").await?;
    firm.wait_for(r#"#app-status[data-status="under_review"]"#, 15)
        .await?;
    firm.wait_for(r#"#my-apps li[data-status="under_review"]"#, 15)
        .await?;
    firm.full_screenshot("3-supplemented").await?;

    // 4. In Chinese, the same page names the service and its fields in Chinese.
    firm.click("#lang").await?;
    firm.wait_for(r#"#app-status[data-status="under_review"]"#, 15)
        .await?;
    let zh = firm.text("#application").await?;
    assert!(
        zh.contains("企业复工复产许可") && zh.contains("统一社会信用代码"),
        "{zh}"
    );
    firm.full_screenshot("4-zh").await?;

    firm.finish().await?;
    official.finish().await?;
    Ok(())
}
