//! Colour counts per province, city and county with their hourly series:
//! the projection (event by event, in batches and rebuilt from zero give
//! the same read model) and `colourCountHistory` through the schema
//! (authorisation, windows, carried-forward hours).

use crate::support;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_graphql::{EmptyMutation, EmptySubscription, Request, Schema, Variables};
use bytes::Bytes;
use serde_json::{json, Value};
use support::*;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tongban_health_code::events::{ColourCause, Evidence, EvidenceMeta, EvidenceSource};
use tongban_health_code::graphql::{HealthCodeApi, HealthCodeQuery, Keyring, SharedStore};
use tongban_health_code::handler::HealthCodeService;
use tongban_health_code::overrides::OverrideConfig;
use tongban_health_code::projections::{
    ColourCounts, HealthCodeViews, HourRow, RegionTotals, Tables, VIEWS,
};
use tongban_health_code::types::{Colour, TestResult};
use tongban_health_code::vault::RedbKeyVault;
use tongban_health_code::HealthEvent;
use tongban_kernel::{Actor, ActorId, Clock, Divisions, EventId, FixedClock, Role};
use tongban_projection::replay::apply_batch;
use tongban_projection::{
    Checkpoint, EmbeddedReadModels, KeyRange, MemoryReadModels, Projection, ProjectionRunner,
    ReadModels, RunnerConfig,
};
use tongban_store::{
    ChainHash, EmbeddedStore, EventData, EventStore, ExpectedRevision, Position, RecordedEvent,
    StreamName,
};
use uuid::Uuid;

const FENGTAI_COMMUNITY: &str = HUAXIANG_COMMUNITY;
const ALICE: tongban_kernel::PersonId = tongban_kernel::PersonId::from_u128(0xA1);
const BOB: tongban_kernel::PersonId = tongban_kernel::PersonId::from_u128(0xB0B);
const CAROL: tongban_kernel::PersonId = tongban_kernel::PersonId::from_u128(0xCA);

fn registered(person: tongban_kernel::PersonId, home: &str, residence: &str) -> HealthEvent {
    HealthEvent::PersonRegistered {
        person_id: person,
        home_region: code(home),
        residence: code(residence),
        id_document_kind: "passport".into(),
        personal: sealed(),
        at: T0,
    }
}

fn turned(
    person: tongban_kernel::PersonId,
    region: &str,
    colour: Colour,
    previous: Option<Colour>,
) -> HealthEvent {
    HealthEvent::ColourChanged {
        person_id: person,
        region: code(region),
        colour,
        previous,
        policy_id: "baseline".into(),
        policy_version: 1,
        rule_id: "default".into(),
        reason: "TEST".into(),
        evidence: Vec::new(),
        cause: ColourCause::Reevaluation,
        at: T0,
    }
}

fn moved(person: tongban_kernel::PersonId, from: &str, to: &str) -> HealthEvent {
    HealthEvent::ResidenceChanged {
        person_id: person,
        from: code(from),
        to: code(to),
        at: T0,
    }
}

fn tested(person: tongban_kernel::PersonId) -> HealthEvent {
    HealthEvent::EvidenceRecorded {
        person_id: person,
        meta: EvidenceMeta {
            id: EventId::from_u128(0x7E57),
            source: EvidenceSource::Lab,
            occurred_at: T0,
            recorded_by: ActorId::from_u128(0x1AB),
        },
        evidence: Evidence::NucleicAcidTested {
            sampled_at: T0,
            result: TestResult::Negative,
            lab: "lab".into(),
        },
        ext: None,
    }
}

/// A history over three hours (recorded at `hour(n)`): Alice (Fengtai)
/// and Bob (Dongcheng) live in Beijing, Carol in Huangpu, Shanghai.
fn history() -> Vec<(i64, HealthEvent)> {
    use Colour::*;
    vec![
        (0, registered(ALICE, BEIJING, FENGTAI_COMMUNITY)),
        (0, registered(BOB, BEIJING, DONGCHENG_COMMUNITY)),
        (0, registered(CAROL, SHANGHAI, HUANGPU_COMMUNITY)),
        (0, turned(ALICE, BEIJING, Green, None)),
        (0, turned(BOB, BEIJING, Green, None)),
        (0, turned(CAROL, SHANGHAI, Green, None)),
        (0, tested(ALICE)),
        // Shanghai's colour for Alice does not count in Beijing's counts.
        (1, turned(ALICE, SHANGHAI, Yellow, None)),
        (1, turned(ALICE, BEIJING, Yellow, Some(Green))),
        (1, turned(ALICE, BEIJING, Red, Some(Yellow))),
        // Bob moves within Beijing: Dongcheng to Fengtai, same city.
        (3, moved(BOB, DONGCHENG_COMMUNITY, FENGTAI_COMMUNITY)),
        (3, turned(CAROL, SHANGHAI, Red, Some(Green))),
    ]
}

/// The start of the test history's hour `n` (China Standard Time).
fn hour(n: i64) -> OffsetDateTime {
    datetime!(2020-06-13 10:00 +8) + Duration::hours(n)
}

fn recorded(n: u64, at: OffsetDateTime, event: &HealthEvent, typed: bool) -> RecordedEvent {
    let stream = match event {
        HealthEvent::PersonRegistered { person_id, .. }
        | HealthEvent::ColourChanged { person_id, .. }
        | HealthEvent::ResidenceChanged { person_id, .. }
        | HealthEvent::EvidenceRecorded { person_id, .. } => format!("person-{person_id}"),
        _ => "person-other".into(),
    };
    RecordedEvent {
        stream: StreamName::parse(stream).unwrap(),
        revision: n,
        position: Position(n),
        id: Uuid::from_u128(u128::from(n) + 1),
        // Untyped events are told apart by their data alone.
        event_type: if typed {
            event.type_name().into()
        } else {
            "Untyped".into()
        },
        data: Bytes::from(serde_json::to_vec(event).unwrap()),
        metadata: Bytes::from_static(b"{}"),
        recorded_at: at + Duration::seconds(n as i64),
        hash: ChainHash::GENESIS,
    }
}

fn recorded_history(typed: bool) -> Vec<RecordedEvent> {
    history()
        .iter()
        .enumerate()
        .map(|(n, (h, e))| recorded(n as u64, hour(*h), e, typed))
        .collect()
}

/// Applies `events` to a fresh read model, `batch` events per commit.
async fn project(events: &[RecordedEvent], batch: usize) -> ReadModels {
    let views = HealthCodeViews::default();
    let models = ReadModels::new(Arc::new(MemoryReadModels::new()), VIEWS);
    let mut checkpoint = Checkpoint::empty(views.version());
    for chunk in events.chunks(batch) {
        let to = chunk.last().unwrap().position;
        apply_batch(&views, &models, &mut checkpoint, chunk, to)
            .await
            .unwrap();
    }
    models
}

type Snapshot = (
    Vec<(String, ColourCounts)>,
    Vec<(String, RegionTotals)>,
    Vec<((String, i64), HourRow)>,
    Vec<(String, tongban_health_code::projections::PersonView)>,
);

async fn snapshot(models: &ReadModels) -> Snapshot {
    let t = Tables::default();
    let all = KeyRange::all();
    (
        models.scan_all(&t.colour_counts, &all).await.unwrap(),
        models.scan_all(&t.colour_totals, &all).await.unwrap(),
        models.scan_all(&t.colour_history, &all).await.unwrap(),
        models.scan_all(&t.persons, &all).await.unwrap(),
    )
}

fn counts(green: u64, yellow: u64, red: u64) -> ColourCounts {
    ColourCounts { green, yellow, red }
}

fn index(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(3600)
}

#[tokio::test]
async fn colour_changes_count_in_the_province_city_and_county_of_residence_hour_by_hour() {
    // Given the history, recorded over hours 0, 1 and 3
    let models = project(&recorded_history(true), 1000).await;
    let (county_counts, totals, rows, _) = snapshot(&models).await;
    let totals: std::collections::BTreeMap<_, _> = totals.into_iter().collect();
    // Then Beijing, its city and Fengtai count Alice red and Bob green
    assert_eq!(totals["11"].counts, counts(1, 0, 1));
    assert_eq!(totals["1101"].counts, counts(1, 0, 1));
    assert_eq!(totals["110106"].counts, counts(1, 0, 1));
    // Dongcheng lost Bob
    assert_eq!(totals["110101"].counts, counts(0, 0, 0));
    // Shanghai counts Carol only (Alice's Shanghai colour is not her home's)
    assert_eq!(totals["31"].counts, counts(0, 0, 1));
    assert_eq!(totals["310101"].counts, counts(0, 0, 1));
    // The current per-county counts agree with the county totals
    for (county, n) in &county_counts {
        assert_eq!(totals[county].counts, *n, "county {county}");
    }
    // And the rows: Beijing changed in hours 0 and 1, not in hour 3 (Bob's
    // move stays inside the city); Fengtai and Dongcheng changed in hour 3
    let hours = |region: &str| -> Vec<(i64, ColourCounts, ColourCounts)> {
        rows.iter()
            .filter(|((r, _), _)| r == region)
            .map(|((_, h), row)| (*h - index(hour(0)), row.before, row.after))
            .collect()
    };
    assert_eq!(
        hours("11"),
        vec![
            (0, counts(0, 0, 0), counts(2, 0, 0)),
            (1, counts(2, 0, 0), counts(1, 0, 1)),
        ]
    );
    assert_eq!(hours("1101"), hours("11"));
    assert_eq!(
        hours("110106"),
        vec![
            (0, counts(0, 0, 0), counts(1, 0, 0)),
            (1, counts(1, 0, 0), counts(0, 0, 1)),
            (3, counts(0, 0, 1), counts(1, 0, 1)),
        ]
    );
    assert_eq!(
        hours("110101"),
        vec![
            (0, counts(0, 0, 0), counts(1, 0, 0)),
            (3, counts(1, 0, 0), counts(0, 0, 0)),
        ]
    );
}

#[tokio::test]
async fn applying_event_by_event_in_batches_or_all_at_once_gives_the_same_read_model() {
    let events = recorded_history(true);
    let all_at_once = snapshot(&project(&events, 1000).await).await;
    for batch in [1, 2, 5] {
        assert_eq!(
            snapshot(&project(&events, batch).await).await,
            all_at_once,
            "batches of {batch}"
        );
    }
}

#[tokio::test]
async fn events_skipped_by_their_type_would_have_changed_nothing_if_decoded() {
    // Given the same history, once with event types and once without (so
    // every event is decoded and matched)
    let typed = snapshot(&project(&recorded_history(true), 4).await).await;
    let untyped = snapshot(&project(&recorded_history(false), 4).await).await;
    // Then both give the same read model
    assert_eq!(typed, untyped);
}

fn data(event: &HealthEvent) -> EventData {
    EventData::json(event.type_name(), event).unwrap()
}

fn stream_of(event: &HealthEvent) -> StreamName {
    recorded(0, T0, event, true).stream
}

async fn snapshot_of(runner: &ProjectionRunner) -> Snapshot {
    snapshot(&runner.read_models(VIEWS).unwrap()).await
}

#[tokio::test]
async fn a_rebuild_from_zero_equals_the_read_model_built_live_event_by_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let events: Arc<dyn EventStore> = store.clone();
    // Given the projection following the log live, one append at a time
    let live = ProjectionRunner::new(
        events.clone(),
        Arc::new(EmbeddedReadModels::open(dir.path().join("live")).unwrap()),
        RunnerConfig::default(),
    );
    live.start(Arc::new(HealthCodeViews::default())).unwrap();
    for (_, event) in history() {
        let done = store
            .append(
                &stream_of(&event),
                ExpectedRevision::Any,
                vec![data(&event)],
            )
            .await
            .unwrap();
        live.wait_for(VIEWS, done.position, StdDuration::from_secs(30))
            .await
            .unwrap();
    }
    let incremental = snapshot_of(&live).await;
    assert!(!incremental.2.is_empty(), "the series has rows");
    // When the read model is rebuilt from zero, in batches and in one go
    for batch in [3, 2000] {
        let rebuilt = ProjectionRunner::new(
            events.clone(),
            Arc::new(
                EmbeddedReadModels::open(dir.path().join(format!("rebuilt-{batch}"))).unwrap(),
            ),
            RunnerConfig {
                batch_size: batch,
                ..RunnerConfig::default()
            },
        );
        rebuilt.start(Arc::new(HealthCodeViews::default())).unwrap();
        rebuilt
            .wait_for_head(StdDuration::from_secs(30))
            .await
            .unwrap();
        // Then it equals the one built event by event
        assert_eq!(
            snapshot_of(&rebuilt).await,
            incremental,
            "batches of {batch}"
        );
        rebuilt.shutdown().await;
    }
    live.shutdown().await;
}

// --- through the schema ---------------------------------------------------

struct Api {
    schema: Schema<HealthCodeQuery, EmptyMutation, EmptySubscription>,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let events: Arc<dyn EventStore> = store.clone();
    let runner = Arc::new(ProjectionRunner::new(
        events.clone(),
        Arc::new(EmbeddedReadModels::open(dir.path().join("projections")).unwrap()),
        RunnerConfig::default(),
    ));
    let views = HealthCodeViews::default();
    let tables = views.tables.clone();
    runner.start(Arc::new(views)).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(OffsetDateTime::now_utc()));
    let divisions = Arc::new(Divisions::load_default().unwrap());
    let vault = Arc::new(
        RedbKeyVault::open(
            dir.path().join("vault.redb"),
            std::sync::Arc::new(
                tongban_health_code::vault::LocalKek::from_text(&"42".repeat(32), "test").unwrap(),
            ),
        )
        .unwrap(),
    );
    let shared: SharedStore = events.clone();
    let service = Arc::new(HealthCodeService::new(
        Arc::new(shared),
        clock.clone(),
        divisions.clone(),
        vault.clone(),
        OverrideConfig::default(),
    ));
    let api = HealthCodeApi {
        service,
        store: events,
        runner: runner.clone(),
        keyring: Arc::new(Keyring::open(dir.path().join("keys")).unwrap()),
        vault,
        divisions,
        clock,
        read_wait: StdDuration::from_secs(30),
        tables,
    };
    let schema = Schema::build(HealthCodeQuery::default(), EmptyMutation, EmptySubscription)
        .data(Arc::new(api))
        .finish();
    Api {
        schema,
        store,
        _dir: dir,
    }
}

impl Api {
    /// Appends the history's events and returns the last position.
    async fn given(&self, events: Vec<HealthEvent>) -> u64 {
        let mut last = 0;
        for e in events {
            last = self
                .store
                .append(&stream_of(&e), ExpectedRevision::Any, vec![data(&e)])
                .await
                .unwrap()
                .position
                .0;
        }
        last
    }

    async fn history(&self, actor: &Actor, region: &str, vars: Value) -> Result<Value, String> {
        let query = r#"query($region: String!, $from: String, $to: String, $p: Int) {
            colourCountHistory(region: $region, from: $from, to: $to, minPosition: $p) {
                hour green yellow red changed
            }
        }"#;
        let mut vars = vars;
        vars["region"] = json!(region);
        let response = self
            .schema
            .execute(
                Request::new(query)
                    .variables(Variables::from_json(vars))
                    .data(actor.clone()),
            )
            .await;
        match response.errors.first() {
            Some(e) => Err(e
                .extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .map(|c| c.to_string())
                .unwrap_or_else(|| e.message.clone())),
            None => Ok(response.data.into_json().unwrap()["colourCountHistory"].clone()),
        }
    }
}

fn rfc(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn auditor() -> Actor {
    Actor {
        id: ActorId::from_u128(0xA0D),
        role: Role::Auditor,
    }
}

#[tokio::test]
async fn a_health_official_reads_the_hourly_counts_of_their_region_carried_forward_to_the_window_end(
) {
    use Colour::*;
    let api = api().await;
    // Given Alice and Bob registered in Fengtai, Alice turned red
    let p = api
        .given(vec![
            registered(ALICE, BEIJING, FENGTAI_COMMUNITY),
            registered(BOB, BEIJING, FENGTAI_COMMUNITY),
            turned(ALICE, BEIJING, Green, None),
            turned(BOB, BEIJING, Green, None),
            turned(ALICE, BEIJING, Red, Some(Green)),
        ])
        .await;
    // When Fengtai's official asks for the hours from one before now to two after
    let now = OffsetDateTime::now_utc();
    let vars = json!({
        "from": rfc(now - Duration::hours(1)),
        "to": rfc(now + Duration::hours(2)),
        "p": p,
    });
    let series = api
        .history(&fengtai_official(), FENGTAI, vars.clone())
        .await
        .unwrap();
    // Then there is one item per hour, in CST, and the last carries the
    // current counts forward
    let series = series.as_array().unwrap().clone();
    assert_eq!(series.len(), 4);
    assert!(series[0]["hour"]
        .as_str()
        .unwrap()
        .ends_with(":00:00+08:00"));
    let last = &series[3];
    assert_eq!(
        (&last["green"], &last["yellow"], &last["red"]),
        (&json!(1), &json!(0), &json!(1))
    );
    assert_eq!(last["changed"], json!(false));
    // The changes fall in the hour of their commit (two hours, should the
    // appends straddle one's end)
    let changed = series
        .iter()
        .filter(|h| h["changed"] == json!(true))
        .count();
    assert!((1..=2).contains(&changed), "{series:?}");
    assert_eq!(series[0]["changed"], json!(false));
    // And the same series for the city and the province, for Beijing's official
    for region in ["1101", BEIJING] {
        let wider = api
            .history(&beijing_official(), region, vars.clone())
            .await
            .unwrap();
        assert_eq!(wider.as_array().unwrap().clone(), series, "{region}");
    }
    // An auditor and a department may read it too
    assert!(api.history(&auditor(), FENGTAI, vars.clone()).await.is_ok());
    let department = Actor {
        id: ActorId::from_u128(0xDE),
        role: Role::Department {
            name: "transport".into(),
        },
    };
    assert!(api
        .history(&department, BEIJING, vars.clone())
        .await
        .is_ok());
}

#[tokio::test]
async fn only_officials_of_the_region_departments_auditors_and_admins_read_the_history() {
    let api = api().await;
    let vars = json!({});
    let forbidden = Err("\"FORBIDDEN\"".to_string());
    // Dongcheng's official may not read Fengtai; Fengtai's may not read all Beijing
    assert_eq!(
        api.history(&dongcheng_official(), FENGTAI, vars.clone())
            .await,
        forbidden
    );
    assert_eq!(
        api.history(&fengtai_official(), BEIJING, vars.clone())
            .await,
        forbidden
    );
    assert_eq!(
        api.history(&citizen(), FENGTAI, vars.clone()).await,
        forbidden
    );
    assert_eq!(api.history(&lab(), FENGTAI, vars.clone()).await, forbidden);
    // A Beijing official reads Fengtai; the default window is the last week
    let week = api
        .history(&beijing_official(), FENGTAI, vars.clone())
        .await
        .unwrap();
    assert_eq!(week.as_array().unwrap().len(), 24 * 7);
    assert!(week
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["green"] == json!(0) && h["changed"] == json!(false)));
}

#[tokio::test]
async fn bad_windows_and_regions_below_county_level_are_invalid_input() {
    let api = api().await;
    let invalid = Err("\"INVALID_INPUT\"".to_string());
    let official = beijing_official();
    // A street has no series
    assert_eq!(api.history(&official, HUAXIANG, json!({})).await, invalid);
    // `from` must be a time
    assert_eq!(
        api.history(&official, FENGTAI, json!({"from": "yesterday"}))
            .await,
        invalid
    );
    // and not after `to`
    assert_eq!(
        api.history(
            &official,
            FENGTAI,
            json!({"from": "2020-06-14T00:00:00+08:00", "to": "2020-06-13T00:00:00+08:00"})
        )
        .await,
        invalid
    );
    // A window spans at most 366 days
    assert_eq!(
        api.history(
            &official,
            FENGTAI,
            json!({"from": "2019-01-01T00:00:00+08:00", "to": "2020-06-13T00:00:00+08:00"})
        )
        .await,
        invalid
    );
    // An unknown code is invalid too
    assert!(api.history(&official, "119999", json!({})).await.is_err());
}
