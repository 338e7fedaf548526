//! Health-code benchmark: prints `name=value` lines.
//!
//! `cargo run --release -p tongban-health-code --bin health-code-bench [-- --quick]`
//!
//! - policy evaluations per second for a person with 50 evidence events
//!   (facts computed from the evidence, then the JsonLogic baseline), and the
//!   same decision written natively in Rust as a peer, with the ratio;
//! - code token signs and verifies per second (COSE_Sign1, Ed25519);
//! - scans decided per second without I/O (verify + admission + event);
//! - the time to load the real division codes;
//! - `reevaluate_persons_per_s`: persons re-evaluated per second by the
//!   re-evaluation process manager after a risk-area declaration that
//!   touches every one of them (embedded store on disk; 2,000 persons with
//!   `--quick`, 20,000 otherwise; `--persons N` to choose).

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tongban_health_code::checkpoint::{self, CheckpointCommand, CheckpointState};
use tongban_health_code::events::{Evidence, EvidenceMeta, EvidenceSource, HealthEvent};
use tongban_health_code::facts::{self, Facts};
use tongban_health_code::policy::{national_baseline, PolicyBook};
use tongban_health_code::risk::RiskMap;
use tongban_health_code::token::{sign_code, verify_code, CodeClaims, KeyDirectory, RegionKey};
use tongban_health_code::types::{
    AdmissionPolicy, Colour, RiskLevel, ScanDirection, Temperature, TestResult, TravelMode,
};
use tongban_health_code::DecisionContext;
use tongban_kernel::{Actor, ActorId, CheckpointId, DivisionCode, Divisions, EventId, Role};
use uuid::Uuid;

const NOW: OffsetDateTime = datetime!(2020-06-13 12:00 UTC);

fn code(s: &str) -> Result<DivisionCode, Box<dyn std::error::Error>> {
    Ok(DivisionCode::parse(s)?)
}

/// Runs `f` repeatedly for about `budget` and returns operations per second.
fn rate(budget: StdDuration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn evidence_50() -> Result<Vec<(EvidenceMeta, Evidence)>, Box<dyn std::error::Error>> {
    let places = [
        code("110106018002")?,
        code("110101001001")?,
        code("310101002001")?,
    ];
    let counties = [code("110106")?, code("110101")?, code("130102")?];
    let mut out = Vec::with_capacity(50);
    for i in 0..50i64 {
        let at = NOW - Duration::hours(i * 7);
        let e = match i % 6 {
            0 => Evidence::VenueVisited {
                checkpoint: CheckpointId::from_u128(1),
                place: places[(i as usize) % 3],
            },
            1 => Evidence::DwellReported {
                county: counties[(i as usize) % 3],
                minutes: 30 + (i as u32) * 7,
            },
            2 => Evidence::TravelRecorded {
                mode: TravelMode::Rail,
                from_county: counties[0],
                to_county: counties[(i as usize) % 3],
                date: at.date(),
            },
            3 => Evidence::NucleicAcidTested {
                sampled_at: at,
                result: TestResult::Negative,
                lab: "lab".into(),
            },
            4 => Evidence::HealthDeclared {
                symptoms: vec![],
                temperature: Temperature::parse("t", 36.5)?,
                declared_travel: vec![counties[1]],
            },
            _ => Evidence::TemperatureMeasured {
                checkpoint: CheckpointId::from_u128(1),
                place: places[0],
                temperature: Temperature::parse("t", 36.4)?,
            },
        };
        let meta = EvidenceMeta {
            id: EventId::from_u128(i as u128 + 1),
            source: EvidenceSource::Checkpoint,
            occurred_at: at,
            recorded_by: ActorId::from_u128(1),
        };
        out.push((meta, e));
    }
    Ok(out)
}

/// The baseline written by hand: the peer the JsonLogic evaluation is compared with.
fn native_baseline(f: &Facts) -> (Colour, &'static str) {
    if f.confirmed_case || f.days_since_positive < 14 {
        (Colour::Red, "CONFIRMED_OR_POSITIVE")
    } else if f.days_since_close_contact < 14
        || (f.days_since_close_contact < 28 && f.negative_tests_since_contact < 2)
    {
        (Colour::Red, "CLOSE_CONTACT")
    } else if f.checkpoint_fever_pending_test {
        (Colour::Red, "FEVER_PENDING_TEST")
    } else if f.risk_venue_visit_days < 14 {
        (Colour::Yellow, "RISK_AREA_VENUE_VISIT")
    } else if f.risk_county_travel_days < 7 {
        (Colour::Yellow, "RISK_AREA_TRAVEL")
    } else if f.risk_county_long_dwell_days < 7 {
        (Colour::Yellow, "RISK_AREA_DWELL")
    } else if f.fever_or_symptoms_declared {
        (Colour::Yellow, "DECLARED_FEVER_OR_SYMPTOMS")
    } else {
        (Colour::Green, "NO_RISK")
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = if quick {
        StdDuration::from_millis(300)
    } else {
        StdDuration::from_secs(2)
    };
    println!("mode={}", if quick { "quick" } else { "full" });

    let start = Instant::now();
    let divisions = Divisions::load_default()?;
    println!(
        "division_load_ms={:.1}",
        start.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "division_heap_mb={:.1}",
        divisions.heap_bytes() as f64 / 1_048_576.0
    );

    // Policy evaluation.
    let evidence = evidence_50()?;
    let mut risk = RiskMap::new();
    risk.apply(&HealthEvent::RiskAreaDeclared {
        area: code("130102")?,
        level: RiskLevel::Medium,
        by: ActorId::from_u128(1),
        at: NOW - Duration::days(20),
    });
    let policy = national_baseline();
    let decision = policy.evaluate(&facts::compute(&evidence, &risk, NOW));
    println!(
        "policy_eval_colour={} policy_eval_reason={}",
        decision.colour, decision.reason
    );
    let jsonlogic = rate(budget, || {
        black_box(policy.evaluate(&facts::compute(black_box(&evidence), &risk, NOW)));
    });
    let native = rate(budget, || {
        black_box(native_baseline(
            &facts::compute(black_box(&evidence), &risk, NOW).facts,
        ));
    });
    let computed = facts::compute(&evidence, &risk, NOW);
    let rules_only = rate(budget, || {
        black_box(policy.evaluate(black_box(&computed)));
    });
    println!("policy_evals_per_sec_50_evidence={jsonlogic:.0}");
    println!("native_evals_per_sec_50_evidence={native:.0}");
    println!("policy_vs_native_ratio={:.2}", jsonlogic / native);
    println!("policy_rules_only_evals_per_sec={rules_only:.0}");

    // Tokens.
    let region = code("11")?;
    let key = RegionKey::from_seed(region, [7; 32]);
    let mut directory = KeyDirectory::new();
    directory.publish(key.published());
    let claims = CodeClaims {
        code_id: Uuid::from_u128(42),
        colour: Colour::Green,
        region,
        issued_at: NOW,
        expires_at: NOW + Duration::minutes(10),
        negative_test_at: Some(NOW - Duration::hours(20)),
    };
    let token = sign_code(&key, &claims)?;
    println!("token_bytes={}", token.len());
    let signs = rate(budget, || {
        black_box(sign_code(&key, black_box(&claims)).ok());
    });
    let verifies = rate(budget, || {
        black_box(verify_code(&directory, black_box(&token), NOW + Duration::minutes(1)).ok());
    });
    println!("token_signs_per_sec={signs:.0}");
    println!("token_verifies_per_sec={verifies:.0}");

    // Scans decided without I/O, on the signed colour (no holder given).
    let checkpoint_id = CheckpointId::from_u128(0xAA);
    let state = CheckpointState::default().evolve(&HealthEvent::CheckpointRegistered {
        checkpoint_id,
        name: "market".into(),
        place: code("110106018002")?,
        admission: AdmissionPolicy::parse(
            r#"{"admit":["green","yellow"],"yellow_needs_negative_test_within_hours":48}"#,
        )?,
        by: ActorId::from_u128(1),
        at: NOW - Duration::days(10),
    });
    let actor = Actor {
        id: ActorId::from_u128(2),
        role: Role::Checkpoint {
            checkpoint: checkpoint_id,
        },
    };
    let policies = PolicyBook::new();
    let ctx = DecisionContext {
        now: NOW + Duration::minutes(1),
        divisions: &divisions,
        policies: &policies,
        risk: &risk,
        actor: &actor,
    };
    let command = CheckpointCommand::Scan {
        scan_id: EventId::from_u128(9),
        direction: ScanDirection::GuardScansPerson,
        code_token: token.clone(),
        place_token: None,
        temperature: Some(Temperature::parse("t", 36.6)?),
    };
    let scans = rate(budget, || {
        black_box(checkpoint::decide(&state, black_box(&command), &ctx, &directory, None).ok());
    });
    println!("scans_decided_per_sec={scans:.0}");

    let persons = std::env::args()
        .skip_while(|a| a != "--persons")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 20_000 });
    let runtime = tokio::runtime::Runtime::new()?;
    let (per_s, changes) = runtime.block_on(reevaluation(persons))?;
    println!("reevaluate_persons={persons}");
    println!("reevaluate_log_positions_appended={changes}");
    println!("reevaluate_persons_per_s={per_s:.0}");
    Ok(())
}

/// Registers `persons` who declared a trip to Fengtai, declares Huaxiang
/// (in Fengtai) high-risk and times the re-evaluation process manager.
async fn reevaluation(persons: usize) -> Result<(f64, usize), Box<dyn std::error::Error>> {
    use futures::StreamExt;
    use std::sync::Arc;
    use tongban_health_code::handler::HealthCodeService;
    use tongban_health_code::overrides::OverrideConfig;
    use tongban_health_code::person::PersonCommand;
    use tongban_health_code::reactions::{self, ReevaluationManager, WhereaboutsIndex};
    use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
    use tongban_health_code::risk::RiskAreaCommand;
    use tongban_health_code::vault::{LocalKek, PersonalData, RedbKeyVault};
    use tongban_kernel::{FixedClock, PersonId};
    use tongban_projection::{MemoryReadModels, ProjectionRunner, ReadModels, RunnerConfig};
    use tongban_store::{EmbeddedStore, EventStore};

    let dir = std::env::temp_dir().join(format!("tongban-reevaluate-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(EmbeddedStore::open(dir.join("store"))?);
    let kek = Arc::new(LocalKek::from_text(&"42".repeat(32), "bench")?);
    let vault = Arc::new(RedbKeyVault::open(dir.join("keys.redb"), kek)?);
    let service = Arc::new(HealthCodeService::new(
        store.clone(),
        Arc::new(FixedClock::new(NOW)),
        Arc::new(Divisions::load_default()?),
        vault,
        OverrideConfig::default(),
    ));
    let personal = PersonalData::new(
        IdentityDocument::ResidentId(ResidentId::parse("11010519491231002X")?),
        "张三",
        "13800000000",
    )?;
    let beijing = code("11")?;
    let dongcheng = code("110101001001")?;
    let fengtai = code("110106")?;
    let registered = futures::stream::iter(0..persons)
        .map(|n| {
            let service = service.clone();
            let personal = personal.clone();
            async move {
                let person = PersonId::from_u128(0x5000_0000 + n as u128);
                let citizen = Actor::citizen(ActorId::from_u128(0xC000_0000 + n as u128), person);
                service
                    .register_person(&citizen, person, beijing, dongcheng, &personal)
                    .await?;
                service
                    .person(
                        &citizen,
                        person,
                        PersonCommand::DeclareHealth {
                            evidence_id: EventId::from_u128(0xDE00_0000 + n as u128),
                            at: NOW - Duration::hours(1),
                            symptoms: vec![],
                            temperature: Temperature::parse("t", 36.5)?,
                            declared_travel: vec![fengtai],
                            ext: None,
                        },
                    )
                    .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for r in registered {
        r?;
    }
    let models = Arc::new(MemoryReadModels::new());
    let runner = ProjectionRunner::new(store.clone(), models.clone(), RunnerConfig::default());
    runner.start(Arc::new(WhereaboutsIndex))?;
    let progress = ReadModels::new(models, reactions::PROGRESS);
    runner.start(Arc::new(ReevaluationManager::new(
        service.clone(),
        runner.read_models(reactions::WHEREABOUTS)?,
        progress.clone(),
    )))?;
    if let Some(head) = store.head().await? {
        runner
            .wait_for(
                reactions::WHEREABOUTS,
                head.position,
                StdDuration::from_secs(600),
            )
            .await?;
    }
    let official = Actor::health_official(ActorId::from_u128(0xF1), fengtai);
    let started = Instant::now();
    let declared = service
        .risk_area_recorded(
            &official,
            RiskAreaCommand::Declare {
                area: code("110106018")?,
                level: RiskLevel::High,
            },
        )
        .await?;
    let at = declared
        .position
        .ok_or("the declaration appended nothing")?;
    runner
        .wait_for(reactions::REEVALUATION, at, StdDuration::from_secs(3600))
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rows = reactions::reevaluations(&progress).await?;
    let done = rows.first().map_or(0, |r| r.persons_done) as f64;
    let head = store.head().await?.map_or(0, |h| h.position.0);
    runner.shutdown().await;
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((done / elapsed, (head - at.0) as usize))
}
