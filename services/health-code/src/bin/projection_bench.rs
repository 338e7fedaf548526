//! `health-code-projection-bench`: how fast the health-code read models
//! catch up, how much memory that takes, and how far they lag under a
//! sustained write load. Prints one `name=value` line per figure.
//!
//! `cargo run --release -p tongban-health-code --bin health-code-projection-bench [-- --quick]`
//!
//! 1. Generates realistic health-code events (1,000,000; 100,000 with
//!    `--quick`) into an embedded event store in a scratch directory:
//!    Beijing residents registered in real communities of real counties,
//!    declarations, nucleic-acid tests, travel, telco dwell reports, venue
//!    visits, colour changes, codes, officials' reads, code calls, appeals,
//!    moves, checkpoint scans and risk areas, appended by 8 writers in
//!    batches of one stream each (`person-`, `checkpoint-`, `riskarea-`).
//! 2. Catch-up: every health-code projection (today the one `health_code`
//!    projection) from zero to the head, on an embedded read-model store,
//!    with the gateway's runner configuration; events per second against
//!    the 200,000 target, until the last batch is committed and fsynced;
//!    peak memory (VmHWM) before and after, and the peak of the catch-up
//!    alone (the high-water mark is reset first).
//! 3. Lag: the projection follows the log live while a writer appends
//!    5,000 events per second for 20 seconds (5 seconds with `--quick`):
//!    every append's delay until the read models include it (p50, p99,
//!    max in ms) and the events behind the head, sampled every 50 ms.
//!
//! Options: `--quick`, `--events N`, `--rate N`, `--seconds N`,
//! `--batch N` (events per projection batch), `--dir PATH` (keep the
//! stores there instead of a scratch directory that is removed).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;
use tongban_health_code::events::{
    ColourCause, Evidence, EvidenceMeta, EvidenceSource, HealthEvent,
};
use tongban_health_code::projections::{HealthCodeViews, VIEWS};
use tongban_health_code::types::{
    AdmissionPolicy, BizExt, Colour, RiskLevel, ScanDirection, Temperature, TestResult, TravelMode,
};
use tongban_health_code::vault::SealedPersonalData;
use tongban_kernel::{
    Actor, ActorId, CheckpointId, CorrelationId, DivisionCode, DivisionLevel, Divisions, EventId,
    EventMetadata, PersonId, Role,
};
use tongban_projection::{
    ApplyError, Changes, EmbeddedReadModels, Projection, ProjectionRunner, RunnerConfig,
};
use tongban_store::{
    EmbeddedStore, EventData, EventFilter, EventStore, ExpectedRevision, RecordedEvent, StreamName,
};
use uuid::Uuid;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Writers generating the history side by side.
const WRITERS: u64 = 8;
/// One resident per this many events.
const EVENTS_PER_PERSON: u64 = 12;
/// One checkpoint per this many events (at least 50).
const EVENTS_PER_CHECKPOINT: u64 = 1000;
/// Business time of the first event: the Xinfadi outbreak.
const START: OffsetDateTime = datetime!(2020-06-11 00:00 +8);

struct Args {
    quick: bool,
    events: u64,
    rate: u64,
    seconds: u64,
    batch: usize,
    dir: Option<PathBuf>,
}

fn usage() -> String {
    "usage: health-code-projection-bench [--quick] [--events N] [--rate N] [--seconds N] \
     [--batch N] [--dir PATH]"
        .into()
}

impl Args {
    fn parse() -> BenchResult<Self> {
        let mut args = std::env::args().skip(1);
        let mut quick = false;
        let mut events = None;
        let mut rate = 5000;
        let mut seconds = None;
        let mut batch = RunnerConfig::default().batch_size;
        let mut dir = None;
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| format!("{name} needs a value; {}", usage()))
            };
            match arg.as_str() {
                "--quick" => quick = true,
                "--events" => events = Some(value("--events")?.parse()?),
                "--rate" => rate = value("--rate")?.parse()?,
                "--seconds" => seconds = Some(value("--seconds")?.parse()?),
                "--batch" => batch = value("--batch")?.parse()?,
                "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
                "-h" | "--help" => {
                    println!("{}", usage());
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument `{other}`; {}", usage()).into()),
            }
        }
        Ok(Self {
            quick,
            events: events.unwrap_or(if quick { 100_000 } else { 1_000_000 }),
            rate: rate.max(1),
            seconds: seconds.unwrap_or(if quick { 5 } else { 20 }),
            batch: batch.max(1),
            dir,
        })
    }
}

fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
    let _ = std::io::stdout().flush();
}

/// A `/proc/self/status` figure in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds this process used so far (all threads, user and system;
/// clock ticks of 1/100 s). On a shared machine, events per CPU second
/// tell more than events per wall-clock second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resets the peak resident set size (Linux 4.0+), so VmHWM measures
/// what follows.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The scratch directory, removed when dropped (unless given with `--dir`).
struct Scratch {
    path: PathBuf,
    remove: bool,
}

impl Scratch {
    fn new(given: Option<PathBuf>) -> BenchResult<Self> {
        let (path, remove) = match given {
            Some(p) => (p, false),
            None => {
                let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
                let name = format!(
                    "health-code-projection-bench-{}-{nanos}",
                    std::process::id()
                );
                (std::env::temp_dir().join(name), true)
            }
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("failed to create the directory {}: {e}", path.display()))?;
        Ok(Self { path, remove })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Real places of Beijing the residents live in and travel between.
struct Places {
    communities: Vec<DivisionCode>,
    streets: Vec<DivisionCode>,
    counties: Vec<DivisionCode>,
    elsewhere: Vec<DivisionCode>,
}

impl Places {
    fn beijing(divisions: &Divisions) -> BenchResult<Self> {
        let beijing = DivisionCode::parse("11")?;
        let counties: Vec<DivisionCode> = divisions
            .children(&beijing)
            .iter()
            .flat_map(|city| divisions.children(city))
            .collect();
        let streets: Vec<DivisionCode> = counties
            .iter()
            .flat_map(|c| divisions.children(c))
            .collect();
        let communities: Vec<DivisionCode> =
            streets.iter().flat_map(|s| divisions.children(s)).collect();
        let elsewhere = ["310101", "130102", "420106", "440305", "510107"]
            .iter()
            .map(|c| divisions.parse_at(c, DivisionLevel::County))
            .collect::<Result<Vec<_>, _>>()?;
        if communities.is_empty() || counties.is_empty() {
            return Err("no Beijing communities in the division data".into());
        }
        Ok(Self {
            communities,
            streets,
            counties,
            elsewhere,
        })
    }
}

struct Resident {
    id: PersonId,
    residence: DivisionCode,
    /// Colour in Beijing (the home region), once decided.
    colour: Option<Colour>,
    /// Colour decided by Shanghai's policy (a visit), if any.
    visiting: Option<Colour>,
}

/// One writer's share of the history: its residents and checkpoints.
struct Generator {
    rng: StdRng,
    places: Arc<Places>,
    residents: Vec<Resident>,
    registered: usize,
    checkpoints: Vec<(CheckpointId, DivisionCode, bool)>,
    risk_areas: Vec<(DivisionCode, RiskLevel)>,
    at: OffsetDateTime,
    counts: BTreeMap<&'static str, u64>,
    beijing: DivisionCode,
    shanghai: DivisionCode,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

impl Generator {
    fn new(seed: u64, places: Arc<Places>, persons: u64, checkpoints: u64) -> BenchResult<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let residents = (0..persons)
            .map(|i| Resident {
                id: PersonId::from_u128(((seed as u128) << 64) | u128::from(i) | 1 << 127),
                residence: *pick(&mut rng, &places.communities),
                colour: None,
                visiting: None,
            })
            .collect();
        let checkpoints = (0..checkpoints)
            .map(|i| {
                (
                    CheckpointId::from_u128(((seed as u128) << 64) | u128::from(i) | 1 << 126),
                    *pick(&mut rng, &places.communities),
                    false,
                )
            })
            .collect();
        Ok(Self {
            rng,
            places,
            residents,
            registered: 0,
            checkpoints,
            risk_areas: Vec::new(),
            at: START,
            counts: BTreeMap::new(),
            beijing: DivisionCode::parse("11")?,
            shanghai: DivisionCode::parse("31")?,
        })
    }

    fn id(&mut self) -> u128 {
        self.rng.gen()
    }

    fn tick(&mut self) -> OffsetDateTime {
        self.at += Duration::milliseconds(self.rng.gen_range(500..3500));
        self.at
    }

    fn data(&mut self, actor: &Actor, events: &[HealthEvent]) -> BenchResult<Vec<EventData>> {
        let metadata = EventMetadata {
            correlation_id: CorrelationId::from_u128(self.id()),
            causation_id: None,
            actor: actor.clone(),
            region: Some(self.beijing),
            occurred_at: self.at,
        };
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            *self.counts.entry(e.type_name()).or_default() += 1;
            out.push(EventData::json(e.type_name(), e)?.with_metadata(&metadata)?);
        }
        Ok(out)
    }

    /// The next append: a stream and its events.
    fn next_append(&mut self) -> BenchResult<(StreamName, Vec<EventData>)> {
        let roll = self.rng.gen_range(0..1000);
        if roll < 2 {
            self.risk_append()
        } else if roll < 45 {
            self.scan_append()
        } else {
            self.person_append()
        }
    }

    fn official(&mut self) -> Actor {
        Actor::health_official(
            ActorId::from_u128(0xB1 + self.rng.gen_range(0..8)),
            self.beijing,
        )
    }

    fn risk_append(&mut self) -> BenchResult<(StreamName, Vec<EventData>)> {
        let official = self.official();
        let at = self.tick();
        let event = if self.risk_areas.is_empty() || self.rng.gen_bool(0.5) {
            let area = *pick(&mut self.rng, &self.places.streets);
            let level = *pick(&mut self.rng, &[RiskLevel::Medium, RiskLevel::High]);
            self.risk_areas.push((area, level));
            HealthEvent::RiskAreaDeclared {
                area,
                level,
                by: official.id,
                at,
            }
        } else {
            let i = self.rng.gen_range(0..self.risk_areas.len());
            let (area, from) = self.risk_areas[i];
            if self.rng.gen_bool(0.5) {
                self.risk_areas.swap_remove(i);
                HealthEvent::RiskAreaLifted {
                    area,
                    by: official.id,
                    at,
                }
            } else {
                let to = if from == RiskLevel::High {
                    RiskLevel::Medium
                } else {
                    RiskLevel::High
                };
                self.risk_areas[i].1 = to;
                HealthEvent::RiskLevelChanged {
                    area,
                    from,
                    to,
                    by: official.id,
                    at,
                }
            }
        };
        let stream = StreamName::parse(format!("riskarea-{}", area_of(&event)))?;
        Ok((stream, self.data(&official, &[event])?))
    }

    fn scan_append(&mut self) -> BenchResult<(StreamName, Vec<EventData>)> {
        let i = self.rng.gen_range(0..self.checkpoints.len());
        let (checkpoint_id, place, registered) = self.checkpoints[i];
        let official = self.official();
        let mut events = Vec::new();
        if !registered {
            self.checkpoints[i].2 = true;
            events.push(HealthEvent::CheckpointRegistered {
                checkpoint_id,
                name: format!("market {}", i + 1),
                place,
                admission: AdmissionPolicy::parse(
                    r#"{"admit":["green","yellow"],"yellow_needs_negative_test_within_hours":48}"#,
                )?,
                by: official.id,
                at: self.tick(),
            });
        }
        for _ in 0..self.rng.gen_range(10..40) {
            let colour = match self.rng.gen_range(0..100) {
                0..=91 => Colour::Green,
                92..=98 => Colour::Yellow,
                _ => Colour::Red,
            };
            let celsius = self.rng.gen_range(35.8..37.6);
            let fever = celsius >= Temperature::FEVER;
            let (admitted, reason) = match colour {
                Colour::Red => (false, "RED_CODE"),
                _ if fever => (false, "FEVER"),
                Colour::Yellow if self.rng.gen_bool(0.3) => (false, "YELLOW_WITHOUT_TEST"),
                _ => (true, "ADMITTED"),
            };
            events.push(HealthEvent::CodeScanned {
                checkpoint_id,
                scan_id: EventId::from_u128(self.id()),
                code_id: Uuid::from_u128(self.id()),
                direction: ScanDirection::GuardScansPerson,
                colour,
                admitted,
                reason: reason.into(),
                temperature: Some(Temperature::parse("temperature", celsius)?),
                checked_online: true,
                at: self.tick(),
            });
        }
        let device = Actor {
            id: ActorId::from_u128(checkpoint_id.uuid().as_u128()),
            role: Role::Checkpoint {
                checkpoint: checkpoint_id,
            },
        };
        let stream = StreamName::parse(format!("checkpoint-{checkpoint_id}"))?;
        Ok((stream, self.data(&device, &events)?))
    }

    fn person_append(&mut self) -> BenchResult<(StreamName, Vec<EventData>)> {
        // Early on most picks register someone new; later most are active.
        let i = self.rng.gen_range(0..self.residents.len());
        let i = if i >= self.registered {
            self.registered += 1;
            self.registered - 1
        } else {
            i
        };
        let person = self.residents[i].id;
        let citizen = Actor::citizen(ActorId::from_u128(person.uuid().as_u128()), person);
        let events = if self.residents[i].colour.is_none() {
            self.registration(i)?
        } else {
            let n = self.rng.gen_range(4..13);
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                self.activity(i, &mut events)?;
            }
            events
        };
        let stream = StreamName::parse(format!("person-{person}"))?;
        Ok((stream, self.data(&citizen, &events)?))
    }

    fn meta(&mut self, source: EvidenceSource) -> EvidenceMeta {
        EvidenceMeta {
            id: EventId::from_u128(self.id()),
            source,
            occurred_at: self.tick(),
            recorded_by: ActorId::from_u128(0x1AB),
        }
    }

    fn registration(&mut self, i: usize) -> BenchResult<Vec<HealthEvent>> {
        let r = &self.residents[i];
        let (person_id, residence) = (r.id, r.residence);
        let county = residence.county().unwrap_or(residence);
        let mut events = vec![HealthEvent::PersonRegistered {
            person_id,
            home_region: self.beijing,
            residence,
            id_document_kind: "resident_id".into(),
            personal: SealedPersonalData {
                alg: "ChaCha20-Poly1305".into(),
                nonce: format!("{:024x}", self.rng.gen::<u128>() >> 32),
                ciphertext: format!("{:064x}{:064x}", self.id(), self.id()),
            },
            at: self.tick(),
        }];
        let meta = self.meta(EvidenceSource::SelfDeclaration);
        let evidence = meta.id;
        events.push(HealthEvent::EvidenceRecorded {
            person_id,
            meta,
            evidence: Evidence::HealthDeclared {
                symptoms: Vec::new(),
                temperature: Temperature::parse("temperature", 36.5)?,
                declared_travel: vec![county],
            },
            ext: None,
        });
        events.push(self.colour_change(i, self.beijing, Colour::Green, evidence));
        events.push(self.code(i));
        Ok(events)
    }

    fn colour_change(
        &mut self,
        i: usize,
        region: DivisionCode,
        colour: Colour,
        evidence: EventId,
    ) -> HealthEvent {
        let at = self.tick();
        let r = &mut self.residents[i];
        let slot = if region == self.beijing {
            &mut r.colour
        } else {
            &mut r.visiting
        };
        let previous = slot.replace(colour);
        let (rule_id, reason) = match colour {
            Colour::Green => ("default", "NO_RISK"),
            Colour::Yellow => ("risk-area-travel", "RISK_AREA_TRAVEL"),
            Colour::Red => ("close-contact", "CLOSE_CONTACT"),
        };
        HealthEvent::ColourChanged {
            person_id: r.id,
            region,
            colour,
            previous,
            policy_id: format!("{region}-2020"),
            policy_version: 3,
            rule_id: rule_id.into(),
            reason: reason.into(),
            evidence: vec![evidence],
            cause: if previous.is_none() {
                ColourCause::FirstEvaluation
            } else {
                ColourCause::Evidence { evidence }
            },
            at,
        }
    }

    fn code(&mut self, i: usize) -> HealthEvent {
        let issued_at = self.tick();
        let r = &self.residents[i];
        HealthEvent::CodeGenerated {
            person_id: r.id,
            code_id: Uuid::from_u128(self.rng.gen()),
            region: self.beijing,
            colour: r.colour.unwrap_or(Colour::Green),
            issued_at,
            expires_at: issued_at + Duration::days(1),
            ext: None,
        }
    }

    fn activity(&mut self, i: usize, events: &mut Vec<HealthEvent>) -> BenchResult<()> {
        let person_id = self.residents[i].id;
        let residence = self.residents[i].residence;
        let county = residence.county().unwrap_or(residence);
        let roll = self.rng.gen_range(0..1000);
        let evidence = |meta: EvidenceMeta, evidence: Evidence| HealthEvent::EvidenceRecorded {
            person_id,
            meta,
            evidence,
            ext: None,
        };
        let event = match roll {
            0..=279 => {
                let meta = self.meta(EvidenceSource::Lab);
                let result = if self.rng.gen_bool(0.001) {
                    TestResult::Positive
                } else {
                    TestResult::Negative
                };
                evidence(
                    meta.clone(),
                    Evidence::NucleicAcidTested {
                        sampled_at: meta.occurred_at - Duration::hours(6),
                        result,
                        lab: "Beijing CDC lab".into(),
                    },
                )
            }
            280..=299 => {
                let meta = self.meta(EvidenceSource::Lab);
                evidence(
                    meta.clone(),
                    Evidence::AntibodyTested {
                        sampled_at: meta.occurred_at - Duration::hours(6),
                        igm: TestResult::Negative,
                        igg: TestResult::Negative,
                        lab: "Beijing CDC lab".into(),
                    },
                )
            }
            300..=399 => {
                let meta = self.meta(EvidenceSource::Rail);
                let to_county = if self.rng.gen_bool(0.7) {
                    *pick(&mut self.rng, &self.places.counties)
                } else {
                    *pick(&mut self.rng, &self.places.elsewhere)
                };
                let mode = *pick(
                    &mut self.rng,
                    &[TravelMode::Rail, TravelMode::Air, TravelMode::Road],
                );
                evidence(
                    meta.clone(),
                    Evidence::TravelRecorded {
                        mode,
                        from_county: county,
                        to_county,
                        date: meta.occurred_at.date(),
                    },
                )
            }
            400..=459 => {
                let meta = self.meta(EvidenceSource::Telco);
                let county = *pick(&mut self.rng, &self.places.counties);
                let minutes = self.rng.gen_range(30..600);
                evidence(meta, Evidence::DwellReported { county, minutes })
            }
            460..=509 => {
                let meta = self.meta(EvidenceSource::SelfDeclaration);
                let visited = *pick(&mut self.rng, &self.places.counties);
                evidence(
                    meta,
                    Evidence::HealthDeclared {
                        symptoms: Vec::new(),
                        temperature: Temperature::parse("temperature", 36.6)?,
                        declared_travel: vec![county, visited],
                    },
                )
            }
            510..=579 => {
                let meta = self.meta(EvidenceSource::Checkpoint);
                let (checkpoint, place, _) = *pick(&mut self.rng, &self.checkpoints);
                evidence(meta, Evidence::VenueVisited { checkpoint, place })
            }
            580..=609 => {
                let meta = self.meta(EvidenceSource::Checkpoint);
                let (checkpoint, place, _) = *pick(&mut self.rng, &self.checkpoints);
                let temperature = Temperature::parse("temperature", 36.4)?;
                evidence(
                    meta,
                    Evidence::TemperatureMeasured {
                        checkpoint,
                        place,
                        temperature,
                    },
                )
            }
            610..=759 => {
                let (region, current) = if self.rng.gen_bool(0.05) {
                    (self.shanghai, self.residents[i].visiting)
                } else {
                    (self.beijing, self.residents[i].colour)
                };
                let colour = match (current, self.rng.gen_range(0..10)) {
                    (Some(Colour::Green) | None, 0..=7) => Colour::Yellow,
                    (Some(Colour::Green) | None, _) => Colour::Red,
                    (Some(Colour::Yellow), 0..=7) => Colour::Green,
                    (Some(Colour::Yellow), _) => Colour::Red,
                    (Some(Colour::Red), 0..=4) => Colour::Green,
                    (Some(Colour::Red), _) => Colour::Yellow,
                };
                let because = EventId::from_u128(self.id());
                self.colour_change(i, region, colour, because)
            }
            760..=879 => self.code(i),
            880..=909 => {
                let official = self.official();
                HealthEvent::HealthInfoQueried {
                    person_id,
                    by: official.id,
                    role: "health_official".into(),
                    purpose: "epidemiological investigation".into(),
                    at: self.tick(),
                    ext: Some(BizExt::parse(
                        json!({ "fields": ["colour", "travelHistory", "code"] }),
                    )?),
                }
            }
            910..=979 => HealthEvent::CodeCallRequested {
                person_id,
                requester: "beijing-subway".into(),
                purpose: "entry".into(),
                granted: true,
                at: self.tick(),
                ext: None,
            },
            980..=994 => {
                let to = *pick(&mut self.rng, &self.places.communities);
                let from = std::mem::replace(&mut self.residents[i].residence, to);
                HealthEvent::ResidenceChanged {
                    person_id,
                    from,
                    to,
                    at: self.tick(),
                }
            }
            _ => HealthEvent::AppealFiled {
                appeal_id: Uuid::from_u128(self.id()),
                person_id,
                region: self.beijing,
                colour: self.residents[i].colour.unwrap_or(Colour::Green),
                reason: "I was not in the risk area that day".into(),
                at: self.tick(),
                ext: None,
            },
        };
        events.push(event);
        Ok(())
    }
}

fn area_of(event: &HealthEvent) -> String {
    match event {
        HealthEvent::RiskAreaDeclared { area, .. }
        | HealthEvent::RiskLevelChanged { area, .. }
        | HealthEvent::RiskAreaLifted { area, .. } => area.to_string(),
        _ => "unknown".into(),
    }
}

/// Writes about `count` events with [`WRITERS`] writers side by side;
/// returns the generators (to go on writing) and the mix written.
async fn generate(
    store: &EmbeddedStore,
    places: &Arc<Places>,
    count: u64,
) -> BenchResult<(Vec<Generator>, BTreeMap<&'static str, u64>)> {
    let per_writer = count.div_ceil(WRITERS);
    let persons = (per_writer / EVENTS_PER_PERSON).max(10);
    let checkpoints = (per_writer / EVENTS_PER_CHECKPOINT).max(50 / WRITERS);
    let mut tasks = JoinSet::new();
    for w in 0..WRITERS {
        let mut generator = Generator::new(w + 1, places.clone(), persons, checkpoints)?;
        let store = store.clone();
        tasks.spawn(async move {
            let mut written = 0u64;
            while written < per_writer {
                let (stream, events) = generator.next_append()?;
                written += events.len() as u64;
                store.append(&stream, ExpectedRevision::Any, events).await?;
            }
            BenchResult::Ok(generator)
        });
    }
    let mut generators = Vec::new();
    let mut mix = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let generator = done??;
        for (kind, n) in &generator.counts {
            *mix.entry(*kind).or_default() += n;
        }
        generators.push(generator);
    }
    Ok((generators, mix))
}

/// A projection that reads what `health_code` reads and does nothing.
struct Noop;

#[async_trait::async_trait]
impl Projection for Noop {
    fn name(&self) -> &str {
        "noop"
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> EventFilter {
        HealthCodeViews::default().filter()
    }

    async fn apply(
        &self,
        _events: &[RecordedEvent],
        _changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        Ok(())
    }
}

fn runner_config(batch: usize) -> RunnerConfig {
    RunnerConfig {
        batch_size: batch,
        ..RunnerConfig::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn percentile_u64(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Appends `rate` events per second for `seconds` (paced every 10 ms, one
/// resident's stream per append) while the projection follows, and
/// measures each append's delay from its commit until the read models
/// include it.
async fn sustained_load(
    store: &EmbeddedStore,
    runner: &Arc<ProjectionRunner>,
    mut generators: Vec<Generator>,
    rate: u64,
    seconds: u64,
) -> BenchResult<()> {
    let load_started = Instant::now();
    let until = load_started + StdDuration::from_secs(seconds);
    let mut tick = tokio::time::interval(StdDuration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut waits: JoinSet<BenchResult<f64>> = JoinSet::new();
    let mut appends: JoinSet<BenchResult<(tongban_store::Position, Instant)>> = JoinSet::new();
    let mut written = 0u64;
    let mut behind = Vec::new();
    let mut next_sample = Instant::now();
    let mut g = 0usize;
    let mut ticks = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        ticks += 1;
        // Each append is one resident's events (4 to 12); appends go out
        // until the events written catch up with the rate.
        let target = rate * ticks / 100;
        while written < target {
            let n = generators.len();
            let generator = &mut generators[g % n];
            g += 1;
            let (stream, events) = generator.person_append()?;
            written += events.len() as u64;
            let store = store.clone();
            appends.spawn(async move {
                let done = store.append(&stream, ExpectedRevision::Any, events).await?;
                Ok((done.position, Instant::now()))
            });
        }
        while let Some(done) = appends.try_join_next() {
            let (position, appended) = done??;
            let runner = runner.clone();
            waits.spawn(async move {
                runner
                    .wait_for(VIEWS, position, StdDuration::from_secs(120))
                    .await?;
                Ok(appended.elapsed().as_secs_f64() * 1000.0)
            });
        }
        if Instant::now() >= next_sample {
            next_sample += StdDuration::from_millis(50);
            behind.push(runner.status(VIEWS).await?.events_behind);
        }
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    while let Some(done) = appends.join_next().await {
        let (position, appended) = done??;
        let runner = runner.clone();
        waits.spawn(async move {
            runner
                .wait_for(VIEWS, position, StdDuration::from_secs(120))
                .await?;
            Ok(appended.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut lags = Vec::new();
    while let Some(done) = waits.join_next().await {
        lags.push(done??);
    }
    lags.sort_by(f64::total_cmp);
    behind.sort_unstable();
    line("load_seconds", format!("{load_seconds:.1}"));
    line("load_events", written);
    line(
        "load_events_per_second",
        format!("{:.0}", written as f64 / load_seconds),
    );
    line("load_appends", lags.len());
    line("lag_ms_p50", format!("{:.1}", percentile(&lags, 0.5)));
    line("lag_ms_p99", format!("{:.1}", percentile(&lags, 0.99)));
    line(
        "lag_ms_max",
        format!("{:.1}", lags.last().copied().unwrap_or(0.0)),
    );
    line("lag_events_p50", percentile_u64(&behind, 0.5));
    line("lag_events_p99", percentile_u64(&behind, 0.99));
    line("lag_events_max", behind.last().copied().unwrap_or(0));
    Ok(())
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let args = Args::parse()?;
    let scratch = Scratch::new(args.dir.clone())?;
    let dir = scratch.path().to_path_buf();
    line("mode", if args.quick { "quick" } else { "full" });
    line(
        "cpus",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        line(
            "loadavg_at_start",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(","),
        );
    }

    let divisions =
        Divisions::load_default().map_err(|e| format!("failed to load the division codes: {e}"))?;
    let places = Arc::new(Places::beijing(&divisions)?);
    drop(divisions);
    line("beijing_counties", places.counties.len());
    line("beijing_communities", places.communities.len());

    let store = EmbeddedStore::open(dir.join("events"))
        .map_err(|e| format!("failed to open the event store in {}: {e}", dir.display()))?;
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let started = Instant::now();
    let (generators, mix) = generate(&store, &places, args.events).await?;
    let generated = started.elapsed();
    let head = events.head().await?.map_or(0, |h| h.position.0 + 1);
    line("events", head);
    line(
        "mix",
        mix.iter()
            .map(|(k, n)| format!("{}:{n}", k.trim_end_matches(".v1")))
            .collect::<Vec<_>>()
            .join(","),
    );
    line(
        "generate_seconds",
        format!("{:.1}", generated.as_secs_f64()),
    );
    line(
        "generate_events_per_second",
        format!("{:.0}", head as f64 / generated.as_secs_f64()),
    );

    // The ceiling: the same catch-up with a projection that does nothing
    // (reading the log, the runner, empty commits).
    let noop_dir = dir.join("noop");
    let noop = ProjectionRunner::new(
        events.clone(),
        Arc::new(EmbeddedReadModels::open(&noop_dir)?),
        runner_config(args.batch),
    );
    let started = Instant::now();
    noop.start(Arc::new(Noop))?;
    noop.wait_for_head(StdDuration::from_secs(3600)).await?;
    let took = started.elapsed().as_secs_f64();
    noop.shutdown().await;
    line(
        "read_only_events_per_second",
        format!("{:.0}", head as f64 / took),
    );

    // Catch-up of every health-code projection from zero.
    let before = status_kib("VmHWM").unwrap_or(0);
    let rss_before = status_kib("VmRSS").unwrap_or(0);
    let reset = reset_peak_rss();
    let models = Arc::new(EmbeddedReadModels::open(dir.join("projections"))?);
    let runner = Arc::new(ProjectionRunner::new(
        events.clone(),
        models,
        runner_config(args.batch),
    ));
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    runner.start(Arc::new(HealthCodeViews::default()))?;
    runner.wait_for_head(StdDuration::from_secs(3600)).await?;
    let took = started.elapsed().as_secs_f64();
    let catchup_peak = status_kib("VmHWM").unwrap_or(0);
    line("projections", runner.names()?.join(","));
    line("batch_size", args.batch);
    line("catchup_seconds", format!("{took:.2}"));
    line(
        "catchup_events_per_second",
        format!("{:.0}", head as f64 / took),
    );
    line("catchup_target_events_per_second", 200_000);
    if let (Some(a), Some(b)) = (cpu_started, cpu_seconds()) {
        line("catchup_cpu_seconds", format!("{:.2}", b - a));
        line(
            "catchup_events_per_cpu_second",
            format!("{:.0}", head as f64 / (b - a).max(0.01)),
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        line(
            "loadavg_after_catchup",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    line("peak_rss_kib_before_catchup", before);
    line("rss_kib_before_catchup", rss_before);
    if reset {
        line("peak_rss_kib_during_catchup", catchup_peak);
    }
    line(
        "peak_rss_kib_after_catchup",
        status_kib("VmHWM").unwrap_or(0).max(before),
    );
    line("rss_kib_after_catchup", status_kib("VmRSS").unwrap_or(0));

    // Lag under a sustained write load, the projection following live.
    sustained_load(&store, &runner, generators, args.rate, args.seconds).await?;
    line(
        "peak_rss_kib_at_end",
        status_kib("VmHWM").unwrap_or(0).max(before),
    );

    if let Ok(runner) = Arc::try_unwrap(runner) {
        runner.shutdown().await;
    }
    // `close` waits for every clone of the store to be dropped.
    drop(events);
    store.close().await;
    Ok(())
}
