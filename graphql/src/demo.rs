//! The demo: Beijing from the real division codes, persons spread over its
//! districts' communities, checkpoints, and a Xinfadi-style outbreak in
//! Fengtai's Huaxiang township (110106018) unfolding over simulated days:
//! market visits, confirmed cases, risk areas, close contacts, mass testing.
//! The node's clock is held at each simulated day while it seeds, then
//! follows real time again.

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};
use tongban_health_code::checkpoint::CheckpointCommand;
use tongban_health_code::events::{Evidence, EvidenceMeta, EvidenceSource};
use tongban_health_code::person::PersonCommand;
use tongban_health_code::resident_id::{IdentityDocument, ResidentId};
use tongban_health_code::risk::RiskAreaCommand;
use tongban_health_code::types::{RiskLevel, ScanDirection, TestResult};
use tongban_health_code::vault::PersonalData;
use tongban_kernel::{Actor, ActorId, CheckpointId, DivisionCode, EventId, PersonId, Role};

use crate::auth::Claims;
use crate::node::{Node, NodeClock};

/// Fengtai district.
pub const FENGTAI: &str = "110106";
/// Huaxiang township, where the Xinfadi market is.
pub const HUAXIANG: &str = "110106018";

/// The demo's enterprise (its id in the hub), which applies for a
/// work-resumption permit from the portal.
pub const DEMO_ENTERPRISE: &str = "0190f1e2-0000-7000-8000-00000000e001";

/// Where the demo records its roles (labels and claims, no tokens) for the
/// portal's sign-in page in development mode (`demoRoles`).
pub fn roles_path(data: &std::path::Path) -> std::path::PathBuf {
    data.join("demo-roles.json")
}

/// What the demo created, for the ready-made tokens.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// A Huaxiang resident who visited the market.
    pub exposed_citizen: PersonId,
    /// A resident elsewhere.
    pub other_citizen: PersonId,
    /// The market's checkpoint.
    pub market: CheckpointId,
    /// Persons registered.
    pub persons: usize,
}

fn claims(role: &str, sub: String) -> Claims {
    Claims {
        sub,
        role: role.into(),
        region: None,
        sub_regions: Vec::new(),
        name: None,
        exp: 0,
        iat: 0,
    }
}

impl Seeded {
    /// One set of claims per role.
    pub fn roles(&self) -> Vec<(&'static str, Claims)> {
        let mut bj = claims("health_official", "official-beijing".into());
        bj.region = Some("11".into());
        let mut ft = claims("health_official", "official-fengtai".into());
        ft.region = Some(FENGTAI.into());
        let mut lab = claims("lab", "lab-fengtai-cdc".into());
        lab.name = Some("Fengtai CDC laboratory".into());
        let mut dept = claims("department", "dept-transport".into());
        dept.name = Some("Beijing Municipal Commission of Transport".into());
        let mut civil = claims("department", "official-civil-affairs-fengtai".into());
        civil.name = Some("civil-affairs".into());
        civil.region = Some(FENGTAI.into());
        let mut commerce = claims("department", "official-commerce-fengtai".into());
        commerce.name = Some("commerce".into());
        commerce.region = Some(FENGTAI.into());
        vec![
            (
                "citizen (Huaxiang, exposed)",
                claims("citizen", self.exposed_citizen.to_string()),
            ),
            (
                "citizen (elsewhere)",
                claims("citizen", self.other_citizen.to_string()),
            ),
            (
                "checkpoint (Xinfadi market)",
                claims("checkpoint", self.market.to_string()),
            ),
            ("lab", lab),
            ("health_official (Beijing)", bj),
            ("health_official (Fengtai)", ft),
            ("department", dept),
            ("department official (civil affairs, Fengtai)", civil),
            ("department official (commerce, Fengtai)", commerce),
            (
                "enterprise (work-resumption applicant)",
                claims("enterprise", DEMO_ENTERPRISE.into()),
            ),
            ("auditor", claims("auditor", "auditor-1".into())),
            ("admin", claims("admin", "admin-1".into())),
        ]
    }
}

const SURNAMES: [&str; 16] = [
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林",
];
const GIVEN: [&str; 16] = [
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "霞",
];

fn resident_id(rng: &mut StdRng, county: &DivisionCode) -> anyhow::Result<ResidentId> {
    let year = rng.gen_range(1940..2015);
    let month = rng.gen_range(1..=12);
    let day = rng.gen_range(1..=28);
    let seq = rng.gen_range(0..1000);
    let first17 = format!("{county}{year:04}{month:02}{day:02}{seq:03}");
    let check = ResidentId::check_character(&first17).ok_or_else(|| anyhow!("bad id {first17}"))?;
    ResidentId::parse(&format!("{first17}{check}")).map_err(|e| anyhow!("{e}"))
}

/// Seeds the city. `persons` is how many residents to register.
pub async fn seed(node: &Node, clock: &Arc<NodeClock>, persons: usize) -> anyhow::Result<Seeded> {
    let api = node.health_code.clone();
    let service = api.service.clone();
    let divisions = api.divisions.clone();
    let code = |s: &str| DivisionCode::parse(s).map_err(|e| anyhow!("{e}"));
    let beijing = code("11")?;
    let fengtai = code(FENGTAI)?;
    let huaxiang = code(HUAXIANG)?;
    let official = Actor {
        id: ActorId::from_u128(0x0b11),
        role: Role::HealthOfficial {
            region: beijing,
            sub_regions: Vec::new(),
        },
    };
    let lab = Actor {
        id: ActorId::from_u128(0x1ab),
        role: Role::Lab {
            name: "Fengtai CDC laboratory".into(),
        },
    };
    let start = OffsetDateTime::now_utc() - Duration::days(14);
    let day = |n: i64| start + Duration::days(n) + Duration::hours(9);
    clock.hold(day(0));
    api.ensure_key_for(beijing)?;

    // Every community of Beijing, by district; Huaxiang's apart.
    let mut communities = Vec::new();
    for city in divisions.children(&beijing) {
        for county in divisions.children(&city) {
            for street in divisions.children(&county) {
                communities.extend(divisions.children(&street));
            }
        }
    }
    let huaxiang_communities: Vec<DivisionCode> =
        divisions.children(&huaxiang).into_iter().collect();
    if communities.is_empty() || huaxiang_communities.is_empty() {
        return Err(anyhow!(
            "the division data has no communities for Beijing or Huaxiang"
        ));
    }
    println!(
        "Seeding Beijing: {} communities, {} of them in Huaxiang ({})",
        communities.len(),
        huaxiang_communities.len(),
        divisions.name(&huaxiang).unwrap_or(HUAXIANG)
    );

    // Persons: one in twenty lives in Huaxiang.
    let bar = ProgressBar::new(persons as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("persons");
    let mut rng = StdRng::seed_from_u64(20200611);
    let mut plan = Vec::with_capacity(persons);
    for i in 0..persons {
        let residence = if i % 20 == 0 {
            huaxiang_communities[rng.gen_range(0..huaxiang_communities.len())]
        } else {
            communities[rng.gen_range(0..communities.len())]
        };
        let county = residence.county().unwrap_or(fengtai);
        let id = resident_id(&mut rng, &county)?;
        let name = format!(
            "{}{}",
            SURNAMES[rng.gen_range(0..SURNAMES.len())],
            GIVEN[rng.gen_range(0..GIVEN.len())]
        );
        let phone = format!("13{:09}", rng.gen_range(0..1_000_000_000u64));
        let personal = PersonalData::new(IdentityDocument::ResidentId(id), &name, &phone)
            .map_err(|e| anyhow!("{e}"))?;
        plan.push((
            PersonId::from_u128(0x7000_0000_0000 + i as u128),
            residence,
            personal,
        ));
    }
    let huaxiang_people: Vec<PersonId> = plan
        .iter()
        .filter(|(_, r, _)| huaxiang.contains(r))
        .map(|(p, _, _)| *p)
        .collect();
    let other = plan
        .iter()
        .find(|(_, r, _)| !fengtai.contains(r))
        .map(|(p, _, _)| *p)
        .unwrap_or(PersonId::from_u128(0x7000_0000_0001));
    let mut results =
        futures::stream::iter(plan.into_iter().map(|(person, residence, personal)| {
            let service = service.clone();
            let official = official.clone();
            async move {
                let outcome = service
                    .register_person(&official, person, beijing, residence, &personal)
                    .await;
                match outcome {
                    Ok(_)
                    | Err(tongban_health_code::HealthCodeError::PersonAlreadyRegistered(_)) => {
                        Ok(())
                    }
                    Err(e) => Err(anyhow!("registering {person}: {e}")),
                }
            }
        }))
        .buffer_unordered(128);
    while let Some(r) = results.next().await {
        r?;
        bar.inc(1);
    }
    bar.finish();

    // Checkpoints: the market in Huaxiang and one per district.
    let market = CheckpointId::from_u128(0xc0de_0001);
    let mut checkpoints = vec![(
        market,
        "新发地市场 Xinfadi market".to_string(),
        huaxiang_communities[0],
    )];
    for (i, city) in divisions.children(&beijing).iter().enumerate() {
        for (j, county) in divisions.children(city).iter().enumerate() {
            if let Some(street) = divisions.children(county).first() {
                let name = format!(
                    "{} 政务服务中心",
                    divisions.name(county).unwrap_or("district")
                );
                checkpoints.push((
                    CheckpointId::from_u128(0xc0de_1000 + (i * 100 + j) as u128),
                    name,
                    *street,
                ));
            }
        }
    }
    for (id, name, place) in &checkpoints {
        let command = CheckpointCommand::Register {
            checkpoint_id: *id,
            name: name.clone(),
            place: *place,
            admission: r#"{"admit":["green"]}"#.into(),
        };
        match service.checkpoint(&official, *id, command).await {
            Ok(_) | Err(tongban_health_code::HealthCodeError::CheckpointAlreadyRegistered(_)) => {}
            Err(e) => return Err(anyhow!("registering checkpoint {name}: {e}")),
        }
    }
    println!("Registered {} checkpoints", checkpoints.len());

    // Day 0-2: Huaxiang residents shop at the market (scans are venue visits).
    let market_actor = Actor {
        id: ActorId::from_uuid(market.uuid()),
        role: Role::Checkpoint { checkpoint: market },
    };
    let visitors: Vec<PersonId> = huaxiang_people.iter().take(400).copied().collect();
    let bar = ProgressBar::new(visitors.len() as u64);
    bar.set_message("market");
    for (i, person) in visitors.iter().enumerate() {
        clock.hold(day((i % 3) as i64) + Duration::minutes(i as i64));
        let citizen = Actor::citizen(ActorId::from_uuid(person.uuid()), *person);
        let issued = service
            .generate_code(&citizen, *person, beijing)
            .await
            .map_err(|e| anyhow!("code for {person}: {e}"))?;
        let scan = CheckpointCommand::Scan {
            scan_id: EventId::new(),
            direction: ScanDirection::GuardScansPerson,
            code_token: issued.token,
            place_token: None,
            temperature: None,
        };
        service
            .checkpoint(&market_actor, market, scan)
            .await
            .map_err(|e| anyhow!("scan at the market: {e}"))?;
        bar.inc(1);
    }
    bar.finish();

    // Day 3: two confirmed cases; Huaxiang high risk, Fengtai medium.
    clock.hold(day(3));
    for (n, person) in visitors.iter().take(2).enumerate() {
        let meta = EvidenceMeta {
            id: EventId::from_u128(0xca5e_0000 + n as u128),
            source: EvidenceSource::Hospital,
            occurred_at: day(3),
            recorded_by: official.id,
        };
        let evidence = Evidence::DiagnosisConfirmed {
            case_ref: format!("BJ-XFD-{:03}", n + 1),
        };
        service
            .person(
                &official,
                *person,
                PersonCommand::RecordEvidence {
                    meta,
                    evidence,
                    ext: None,
                },
            )
            .await
            .map_err(|e| anyhow!("case {n}: {e}"))?;
    }
    for (area, level) in [(huaxiang, RiskLevel::High), (fengtai, RiskLevel::Medium)] {
        service
            .risk_area(&official, RiskAreaCommand::Declare { area, level })
            .await
            .map_err(|e| anyhow!("risk area {area}: {e}"))?;
    }
    println!("Day 3: two confirmed cases; Huaxiang high risk, Fengtai medium risk");

    // Day 4: the market's visitors are close contacts.
    clock.hold(day(4));
    let exposure = day(1).date();
    for (i, person) in visitors.iter().enumerate().skip(2) {
        let meta = EvidenceMeta {
            id: EventId::from_u128(0xc105_0000 + i as u128),
            source: EvidenceSource::ContactTracing,
            occurred_at: day(4),
            recorded_by: official.id,
        };
        let evidence = Evidence::CloseContactIdentified {
            case_ref: "BJ-XFD-001".into(),
            exposure_date: exposure,
        };
        service
            .person(
                &official,
                *person,
                PersonCommand::RecordEvidence {
                    meta,
                    evidence,
                    ext: None,
                },
            )
            .await
            .map_err(|e| anyhow!("close contact: {e}"))?;
    }
    println!(
        "Day 4: {} close contacts traced",
        visitors.len().saturating_sub(2)
    );

    // Days 5-10: mass testing of Huaxiang; a few positives.
    let tested: Vec<PersonId> = huaxiang_people.iter().take(2000).copied().collect();
    let bar = ProgressBar::new(tested.len() as u64);
    bar.set_message("testing");
    for (i, person) in tested.iter().enumerate() {
        let at = day(5 + (i % 6) as i64);
        clock.hold(at);
        let result = if i % 397 == 5 {
            TestResult::Positive
        } else {
            TestResult::Negative
        };
        let meta = EvidenceMeta {
            id: EventId::from_u128(0x7e57_0000 + i as u128),
            source: EvidenceSource::Lab,
            occurred_at: at,
            recorded_by: lab.id,
        };
        let evidence = Evidence::NucleicAcidTested {
            sampled_at: at - Duration::hours(6),
            result,
            lab: "Fengtai CDC laboratory".into(),
        };
        service
            .person(
                &lab,
                *person,
                PersonCommand::RecordEvidence {
                    meta,
                    evidence,
                    ext: None,
                },
            )
            .await
            .map_err(|e| anyhow!("test: {e}"))?;
        bar.inc(1);
    }
    bar.finish();

    // Day 12: Fengtai back to low risk; Huaxiang stays high.
    clock.hold(day(12));
    service
        .risk_area(
            &official,
            RiskAreaCommand::Declare {
                area: fengtai,
                level: RiskLevel::Low,
            },
        )
        .await
        .map_err(|e| anyhow!("risk area: {e}"))?;
    clock.release();
    for person in visitors.iter().chain(tested.iter()) {
        service
            .person(&official, *person, PersonCommand::Reevaluate)
            .await
            .map_err(|e| anyhow!("re-evaluation: {e}"))?;
    }
    publish_services(node, beijing).await?;
    node.runner
        .wait_for_head(std::time::Duration::from_secs(600))
        .await
        .context("the read models did not catch up")?;
    println!("Day 12: Fengtai lowered to low risk; colours re-evaluated; read models caught up");
    let seeded = Seeded {
        exposed_citizen: visitors.get(3).copied().unwrap_or(other),
        other_citizen: other,
        market,
        persons,
    };
    let path = roles_path(&node.config.data);
    let roles = serde_json::to_vec_pretty(&seeded.roles()).context("encoding the demo roles")?;
    tongban_store::private_fs::write_atomic(&path, &roles)
        .with_context(|| format!("failed to write the demo roles to {}", path.display()))?;
    Ok(seeded)
}

/// Publishes the three government services beside the health code
/// (work-resumption permit, elderly-care subsidy, change of residence
/// community) for the whole city, as the platform's admin. Already
/// published (a second demo on the same data) is fine.
async fn publish_services(node: &Node, city: DivisionCode) -> anyhow::Result<()> {
    use tongban_cases::standard;
    let admin = Actor {
        id: ActorId::from_u128(0xad),
        role: Role::Admin,
    };
    let regions = [city];
    for definition in [
        standard::work_resumption_permit(&regions),
        standard::elderly_care_subsidy(&regions),
        standard::residence_community_change(&regions),
    ] {
        let definition = definition.map_err(|e| anyhow!("service definition: {e}"))?;
        let code = definition.code.clone();
        match node
            .catalog
            .commands
            .execute(
                &admin,
                tongban_catalog::CatalogCommand::PublishService(definition),
            )
            .await
        {
            Ok(_) | Err(tongban_catalog::CatalogError::AlreadyPublished(_)) => {}
            Err(e) => return Err(anyhow!("publishing {code}: {e}")),
        }
    }
    println!(
        "Catalogue: work-resumption permit, elderly-care subsidy and residence change published"
    );
    Ok(())
}
