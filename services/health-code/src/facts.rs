//! The facts regional rules see, computed purely from a person's evidence,
//! the risk areas in force and the time of evaluation. Evidence counts once
//! its business time is reached, within the small clock-skew tolerance that
//! commands accept.
//!
//! Counters of days use [`NEVER`] (9999) when there is nothing to count, so
//! that JsonLogic comparisons such as `{"<": [{"var": "days_since_close_contact"}, 14]}`
//! are false for people without such evidence. Each fact remembers which
//! evidence events determined it, so a colour change can cite its causes.

use serde::Serialize;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};
use tongban_kernel::{china_date, DivisionCode, EventId};

use crate::events::{Evidence, EvidenceMeta};
use crate::risk::RiskMap;
use crate::types::{RiskLevel, TestResult};

/// "Never happened" for day and hour counters.
pub const NEVER: i64 = 9999;

/// Minutes of dwell that count as a long stay (4 hours).
pub const LONG_DWELL_MINUTES: u32 = 240;

/// The facts a policy's rules can refer to with `{"var": "<name>"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    /// A confirmed diagnosis that has not been cleared.
    pub confirmed_case: bool,
    /// Days since the last positive nucleic-acid test or confirmation (not cleared since).
    pub days_since_positive: i64,
    /// Days since the last exposure as a close contact.
    pub days_since_close_contact: i64,
    /// Negative nucleic-acid tests sampled after the last exposure.
    pub negative_tests_since_contact: i64,
    /// Negative nucleic-acid tests sampled within 48 hours.
    pub negative_tests_48h: i64,
    /// Negative nucleic-acid tests sampled within 72 hours.
    pub negative_tests_72h: i64,
    /// A fever measured at a checkpoint within 14 days with no negative test sampled since.
    pub checkpoint_fever_pending_test: bool,
    /// The latest declaration (within 14 days) reports fever (≥ 37.3 °C) or symptoms.
    pub fever_or_symptoms_declared: bool,
    /// Hours since the latest declaration.
    pub hours_since_declaration: i64,
    /// Days since a venue visit (within 14 days) inside a medium- or high-risk area.
    pub risk_venue_visit_days: i64,
    /// Days since a venue visit (within 14 days) inside a high-risk area.
    pub high_risk_venue_visit_days: i64,
    /// Days since travel (within 14 days) to or from a county containing a medium- or high-risk area.
    pub risk_county_travel_days: i64,
    /// Days since travel (within 14 days) to or from a county containing a high-risk area.
    pub high_risk_county_travel_days: i64,
    /// Longest telco dwell (within 14 days) in a county containing a medium- or high-risk area, minutes.
    pub risk_county_dwell_minutes: i64,
    /// Days since a dwell of 4 hours or more (within 14 days) in such a county.
    pub risk_county_long_dwell_days: i64,
    /// Days of quarantine served since the last exposure (0 without one).
    pub quarantine_days_served: i64,
    /// The latest antibody test (within 14 days) has a positive IgM.
    pub igm_positive: bool,
}

/// The names of all facts, for checking policies.
pub const FACT_NAMES: [&str; 17] = [
    "confirmed_case",
    "days_since_positive",
    "days_since_close_contact",
    "negative_tests_since_contact",
    "negative_tests_48h",
    "negative_tests_72h",
    "checkpoint_fever_pending_test",
    "fever_or_symptoms_declared",
    "hours_since_declaration",
    "risk_venue_visit_days",
    "high_risk_venue_visit_days",
    "risk_county_travel_days",
    "high_risk_county_travel_days",
    "risk_county_dwell_minutes",
    "risk_county_long_dwell_days",
    "quarantine_days_served",
    "igm_positive",
];

/// Facts plus the evidence behind each.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedFacts {
    /// The facts.
    pub facts: Facts,
    /// Fact name -> ids of the evidence events that determined it.
    pub evidence: BTreeMap<&'static str, Vec<EventId>>,
}

fn days_between(earlier: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - earlier).whole_days()
}

/// Tracks the minimum of a day counter and the evidence achieving it.
struct MinDays {
    days: i64,
    ids: Vec<EventId>,
}

impl MinDays {
    fn new() -> Self {
        Self {
            days: NEVER,
            ids: Vec::new(),
        }
    }
    fn offer(&mut self, days: i64, id: EventId) {
        if days < self.days {
            self.days = days;
            self.ids.clear();
            self.ids.push(id);
        } else if days == self.days && days != NEVER && !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }
}

/// Computes the facts at `now` from evidence (only evidence whose business
/// time is not after `now` counts) and the risk areas in force at `now`.
pub fn compute(
    evidence: &[(EvidenceMeta, Evidence)],
    risk: &RiskMap,
    now: OffsetDateTime,
) -> EvaluatedFacts {
    let window = Duration::days(14);
    let horizon = now + crate::context::FUTURE_TOLERANCE;
    let mut ev: Vec<&(EvidenceMeta, Evidence)> = evidence
        .iter()
        .filter(|(m, _)| m.occurred_at <= horizon)
        .collect();
    ev.sort_by_key(|(m, _)| m.occurred_at);
    let mut out: BTreeMap<&'static str, Vec<EventId>> = BTreeMap::new();

    // Diagnoses and positives, since the last clearance.
    let last_cleared = ev
        .iter()
        .filter(|(_, e)| matches!(e, Evidence::DiagnosisCleared { .. }))
        .map(|(m, _)| m.occurred_at)
        .max();
    let after_clear = |t: OffsetDateTime| last_cleared.is_none_or(|c| t > c);
    let mut confirmed = Vec::new();
    let mut positive = MinDays::new();
    for (m, e) in &ev {
        match e {
            Evidence::DiagnosisConfirmed { .. } if after_clear(m.occurred_at) => {
                confirmed.push(m.id);
                positive.offer(days_between(m.occurred_at, now), m.id);
            }
            Evidence::NucleicAcidTested {
                sampled_at,
                result: TestResult::Positive,
                ..
            } if after_clear(*sampled_at) && *sampled_at <= now => {
                positive.offer(days_between(*sampled_at, now), m.id);
            }
            _ => {}
        }
    }
    let confirmed_case = !confirmed.is_empty();
    out.insert("confirmed_case", confirmed);
    out.insert("days_since_positive", positive.ids.clone());

    // Close contact.
    let contact = ev
        .iter()
        .filter_map(|(m, e)| match e {
            Evidence::CloseContactIdentified { exposure_date, .. } => Some((m.id, *exposure_date)),
            _ => None,
        })
        .max_by_key(|(_, d)| *d);
    let days_since_close_contact =
        contact.map_or(NEVER, |(_, d)| (china_date(now) - d).whole_days().max(0));
    out.insert(
        "days_since_close_contact",
        contact.map(|(id, _)| id).into_iter().collect(),
    );
    out.insert(
        "quarantine_days_served",
        contact.map(|(id, _)| id).into_iter().collect(),
    );

    // Negative tests.
    let negatives: Vec<(EventId, OffsetDateTime)> = ev
        .iter()
        .filter_map(|(m, e)| match e {
            Evidence::NucleicAcidTested {
                sampled_at,
                result: TestResult::Negative,
                ..
            } if *sampled_at <= now => Some((m.id, *sampled_at)),
            _ => None,
        })
        .collect();
    let since_contact: Vec<EventId> = match contact {
        Some((_, date)) => negatives
            .iter()
            .filter(|(_, t)| china_date(*t) > date)
            .map(|(id, _)| *id)
            .collect(),
        None => Vec::new(),
    };
    let within = |hours: i64| -> Vec<EventId> {
        negatives
            .iter()
            .filter(|(_, t)| now - *t <= Duration::hours(hours))
            .map(|(id, _)| *id)
            .collect()
    };
    let (n48, n72) = (within(48), within(72));
    let counts = (since_contact.len(), n48.len(), n72.len());
    out.insert("negative_tests_since_contact", since_contact);
    out.insert("negative_tests_48h", n48);
    out.insert("negative_tests_72h", n72);

    // Fever at a checkpoint pending a test.
    let fever = ev
        .iter()
        .filter(|(m, e)| {
            matches!(e, Evidence::TemperatureMeasured { temperature, .. } if temperature.is_fever())
                && now - m.occurred_at < window
        })
        .map(|(m, _)| (m.id, m.occurred_at))
        .next_back();
    let pending = fever.filter(|(_, at)| !negatives.iter().any(|(_, t)| t > at));
    out.insert(
        "checkpoint_fever_pending_test",
        pending.map(|(id, _)| id).into_iter().collect(),
    );

    // Latest declaration.
    let declaration = ev
        .iter()
        .filter_map(|(m, e)| match e {
            Evidence::HealthDeclared {
                symptoms,
                temperature,
                ..
            } => Some((m, !symptoms.is_empty() || temperature.is_fever())),
            _ => None,
        })
        .next_back();
    let hours_since_declaration = declaration.map_or(NEVER, |(m, _)| {
        (now - m.occurred_at).whole_hours().min(NEVER)
    });
    let declared_fever = declaration.is_some_and(|(m, f)| f && now - m.occurred_at < window);
    out.insert(
        "hours_since_declaration",
        declaration.map(|(m, _)| m.id).into_iter().collect(),
    );
    out.insert(
        "fever_or_symptoms_declared",
        declaration
            .filter(|_| declared_fever)
            .map(|(m, _)| m.id)
            .into_iter()
            .collect(),
    );

    // Venues, travel and dwell against the risk areas in force now.
    let mut venue = MinDays::new();
    let mut venue_high = MinDays::new();
    let mut travel = MinDays::new();
    let mut travel_high = MinDays::new();
    let mut long_dwell = MinDays::new();
    let mut dwell_minutes = 0i64;
    let mut dwell_ids = Vec::new();
    let mut offer_county = |county: Option<DivisionCode>, days: i64, id: EventId| {
        let Some(county) = county else { return };
        if !(0..14).contains(&days) {
            return;
        }
        match risk.level_in_county(&county, now) {
            Some(RiskLevel::High) => {
                travel.offer(days, id);
                travel_high.offer(days, id);
            }
            Some(RiskLevel::Medium) => travel.offer(days, id),
            _ => {}
        }
    };
    for (m, e) in &ev {
        let days = days_between(m.occurred_at, now);
        match e {
            Evidence::VenueVisited { place, .. } => {
                if (0..14).contains(&days) {
                    match risk.level_containing(place, now) {
                        Some(RiskLevel::High) => {
                            venue.offer(days, m.id);
                            venue_high.offer(days, m.id);
                        }
                        Some(RiskLevel::Medium) => venue.offer(days, m.id),
                        _ => {}
                    }
                }
                offer_county(place.county(), days, m.id);
            }
            Evidence::TravelRecorded {
                from_county,
                to_county,
                date,
                ..
            } => {
                let days = (china_date(now) - *date).whole_days();
                offer_county(Some(*from_county), days, m.id);
                offer_county(Some(*to_county), days, m.id);
            }
            Evidence::HealthDeclared {
                declared_travel, ..
            } => {
                for county in declared_travel {
                    offer_county(county.county(), days, m.id);
                }
            }
            Evidence::DwellReported { county, minutes }
                if (0..14).contains(&days)
                    && risk
                        .level_in_county(county, now)
                        .is_some_and(|l| l >= RiskLevel::Medium) =>
            {
                dwell_minutes = dwell_minutes.max(i64::from(*minutes));
                dwell_ids.push(m.id);
                if *minutes >= LONG_DWELL_MINUTES {
                    long_dwell.offer(days, m.id);
                }
            }
            _ => {}
        }
    }
    out.insert("risk_venue_visit_days", venue.ids);
    out.insert("high_risk_venue_visit_days", venue_high.ids);
    out.insert("risk_county_travel_days", travel.ids);
    out.insert("high_risk_county_travel_days", travel_high.ids);
    out.insert("risk_county_dwell_minutes", dwell_ids);
    out.insert("risk_county_long_dwell_days", long_dwell.ids);

    // Antibodies.
    let antibody = ev
        .iter()
        .filter_map(|(m, e)| match e {
            Evidence::AntibodyTested {
                sampled_at, igm, ..
            } if now - *sampled_at < window => Some((m.id, *igm == TestResult::Positive)),
            _ => None,
        })
        .next_back();
    out.insert(
        "igm_positive",
        antibody
            .filter(|(_, p)| *p)
            .map(|(id, _)| id)
            .into_iter()
            .collect(),
    );

    let facts = Facts {
        confirmed_case,
        days_since_positive: positive.days,
        days_since_close_contact,
        negative_tests_since_contact: counts.0 as i64,
        negative_tests_48h: counts.1 as i64,
        negative_tests_72h: counts.2 as i64,
        checkpoint_fever_pending_test: pending.is_some(),
        fever_or_symptoms_declared: declared_fever,
        hours_since_declaration,
        risk_venue_visit_days: venue.days,
        high_risk_venue_visit_days: venue_high.days,
        risk_county_travel_days: travel.days,
        high_risk_county_travel_days: travel_high.days,
        risk_county_dwell_minutes: dwell_minutes,
        risk_county_long_dwell_days: long_dwell.days,
        quarantine_days_served: if days_since_close_contact == NEVER {
            0
        } else {
            days_since_close_contact
        },
        igm_positive: antibody.is_some_and(|(_, p)| p),
    };
    EvaluatedFacts {
        facts,
        evidence: out,
    }
}
