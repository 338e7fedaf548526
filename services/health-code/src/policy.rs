//! Regional policies as data: JsonLogic rules (evaluated with datalogic-rs,
//! as the EU DCC's business rules are with CertLogic) mapping a person's
//! [`Facts`](crate::facts::Facts) to a colour with a reason code.
//!
//! A policy is a list of rules, each `{id, colour, reason, when}`; the most
//! severe rule whose `when` holds wins (ties go to the first listed); if none
//! holds the colour is green with reason `NO_RISK`. A region (province or
//! city) publishes versions of its policy as events; a city without a policy
//! falls back to its province's, and a region without one to the
//! [`national_baseline`].

use datalogic_rs::{Engine, Logic};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use time::OffsetDateTime;
use tongban_kernel::{Actor, DivisionCode, DivisionLevel, EventId};

use crate::error::HealthCodeError;
use crate::events::HealthEvent;
use crate::facts::{EvaluatedFacts, FACT_NAMES};
use crate::types::Colour;

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable id, cited by colour changes (e.g. `red.close_contact`).
    pub id: String,
    /// The colour the rule imposes (yellow or red).
    pub colour: Colour,
    /// The reason code shown to the person (e.g. `CLOSE_CONTACT`).
    pub reason: String,
    /// A JsonLogic expression over the facts.
    pub when: serde_json::Value,
}

/// A policy document as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The rules.
    pub rules: Vec<RuleSpec>,
    /// If set, a code is generated only with a declaration at most this many hours old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration_max_age_hours: Option<u32>,
    /// How long a generated code token is valid, in minutes.
    #[serde(default = "default_code_validity")]
    pub code_validity_minutes: u32,
}

fn default_code_validity() -> u32 {
    10
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::new)
}

/// A compiled rule.
#[derive(Debug)]
struct CompiledRule {
    spec: RuleSpec,
    logic: Logic,
    facts_used: Vec<&'static str>,
}

/// A policy ready to evaluate.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// The publishing region (`None` for the national baseline).
    pub region: Option<DivisionCode>,
    /// The policy id.
    pub id: String,
    /// The version.
    pub version: u32,
    /// The document.
    pub document: PolicyDocument,
    /// Effective from.
    pub effective_at: OffsetDateTime,
    rules: Vec<CompiledRule>,
}

/// The result of evaluating a policy for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The colour.
    pub colour: Colour,
    /// The rule that fired (`default` for none).
    pub rule_id: String,
    /// The reason code.
    pub reason: String,
    /// Evidence behind the facts the rule used, sorted.
    pub evidence: Vec<EventId>,
    /// The policy id.
    pub policy_id: String,
    /// The policy version.
    pub policy_version: u32,
}

fn collect_vars(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "var" {
                    match v {
                        serde_json::Value::String(s) => {
                            out.insert(s.clone());
                        }
                        serde_json::Value::Array(a) => {
                            if let Some(serde_json::Value::String(s)) = a.first() {
                                out.insert(s.clone());
                            }
                        }
                        _ => {}
                    }
                } else {
                    collect_vars(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_vars(v, out)),
        _ => {}
    }
}

impl CompiledPolicy {
    /// Checks and compiles a document: unique rule ids, upper-case reason
    /// codes, yellow or red colours, JsonLogic that compiles and refers only
    /// to known facts.
    pub fn compile(
        region: Option<DivisionCode>,
        id: &str,
        version: u32,
        document: PolicyDocument,
        effective_at: OffsetDateTime,
    ) -> Result<Self, HealthCodeError> {
        let invalid =
            |field: String, message: String| HealthCodeError::PolicyInvalid { field, message };
        if id.trim().is_empty() {
            return Err(invalid("policy_id".into(), "must not be empty".into()));
        }
        if document.code_validity_minutes == 0 || document.code_validity_minutes > 24 * 60 {
            return Err(invalid(
                "code_validity_minutes".into(),
                "must be 1 to 1440".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut rules = Vec::with_capacity(document.rules.len());
        for (i, spec) in document.rules.iter().enumerate() {
            let field = |name: &str| format!("rules[{i}].{name}");
            if spec.id.trim().is_empty() || !seen.insert(spec.id.clone()) {
                return Err(invalid(
                    field("id"),
                    format!("`{}` is empty or repeated", spec.id),
                ));
            }
            if spec.reason.is_empty()
                || !spec
                    .reason
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(invalid(
                    field("reason"),
                    "must be an UPPER_SNAKE_CASE reason code".into(),
                ));
            }
            if spec.colour == Colour::Green {
                return Err(invalid(
                    field("colour"),
                    "rules impose yellow or red; green is the default".into(),
                ));
            }
            let mut vars = BTreeSet::new();
            collect_vars(&spec.when, &mut vars);
            let mut facts_used = Vec::new();
            for var in vars {
                match FACT_NAMES.iter().find(|f| **f == var) {
                    Some(name) => facts_used.push(*name),
                    None => {
                        return Err(invalid(field("when"), format!("unknown fact `{var}`")));
                    }
                }
            }
            let logic = engine()
                .compile(&spec.when)
                .map_err(|e| invalid(field("when"), format!("not valid JsonLogic: {e}")))?;
            rules.push(CompiledRule {
                spec: spec.clone(),
                logic,
                facts_used,
            });
        }
        Ok(Self {
            region,
            id: id.to_owned(),
            version,
            document,
            effective_at,
            rules,
        })
    }

    /// Evaluates the policy on facts. Deterministic: same facts, same decision.
    pub fn evaluate(&self, facts: &EvaluatedFacts) -> Decision {
        let data = serde_json::to_value(&facts.facts).unwrap_or(serde_json::Value::Null);
        let mut session = engine().session();
        let mut best: Option<&CompiledRule> = None;
        for rule in &self.rules {
            if best.is_some_and(|b| b.spec.colour >= rule.spec.colour) {
                continue;
            }
            let fired = match session.eval_borrowed(&rule.logic, &data) {
                Ok(value) => engine().truthy(value),
                // A rule that fails at run time does not fire; publishing checked it compiles.
                Err(_) => false,
            };
            session.reset();
            if fired {
                best = Some(rule);
            }
        }
        match best {
            Some(rule) => {
                let mut evidence: Vec<EventId> = rule
                    .facts_used
                    .iter()
                    .flat_map(|f| facts.evidence.get(f).into_iter().flatten().copied())
                    .collect();
                evidence.sort();
                evidence.dedup();
                Decision {
                    colour: rule.spec.colour,
                    rule_id: rule.spec.id.clone(),
                    reason: rule.spec.reason.clone(),
                    evidence,
                    policy_id: self.id.clone(),
                    policy_version: self.version,
                }
            }
            None => Decision {
                colour: Colour::Green,
                rule_id: "default".into(),
                reason: "NO_RISK".into(),
                evidence: Vec::new(),
                policy_id: self.id.clone(),
                policy_version: self.version,
            },
        }
    }
}

fn rule(id: &str, colour: Colour, reason: &str, when: serde_json::Value) -> RuleSpec {
    RuleSpec {
        id: id.into(),
        colour,
        reason: reason.into(),
        when,
    }
}

/// The national baseline document.
///
/// Red for 14 days for a confirmed case or positive test, a close contact
/// (and until two negative tests after exposure, at most 28 days), or a fever
/// at a checkpoint pending a test; yellow for a venue visit in a medium- or
/// high-risk area within 14 days, for travel to or a 4-hour dwell in a county
/// containing one within 7 days, or for fever or symptoms declared.
pub fn baseline_document() -> PolicyDocument {
    PolicyDocument {
        rules: vec![
            rule(
                "red.confirmed",
                Colour::Red,
                "CONFIRMED_OR_POSITIVE",
                json!({"or": [{"var": "confirmed_case"}, {"<": [{"var": "days_since_positive"}, 14]}]}),
            ),
            rule(
                "red.close_contact",
                Colour::Red,
                "CLOSE_CONTACT",
                json!({"or": [
                    {"<": [{"var": "days_since_close_contact"}, 14]},
                    {"and": [
                        {"<": [{"var": "days_since_close_contact"}, 28]},
                        {"<": [{"var": "negative_tests_since_contact"}, 2]}
                    ]}
                ]}),
            ),
            rule(
                "red.checkpoint_fever",
                Colour::Red,
                "FEVER_PENDING_TEST",
                json!({"var": "checkpoint_fever_pending_test"}),
            ),
            rule(
                "yellow.risk_venue",
                Colour::Yellow,
                "RISK_AREA_VENUE_VISIT",
                json!({"<": [{"var": "risk_venue_visit_days"}, 14]}),
            ),
            rule(
                "yellow.risk_travel",
                Colour::Yellow,
                "RISK_AREA_TRAVEL",
                json!({"<": [{"var": "risk_county_travel_days"}, 7]}),
            ),
            rule(
                "yellow.risk_dwell",
                Colour::Yellow,
                "RISK_AREA_DWELL",
                json!({"<": [{"var": "risk_county_long_dwell_days"}, 7]}),
            ),
            rule(
                "yellow.declared_symptoms",
                Colour::Yellow,
                "DECLARED_FEVER_OR_SYMPTOMS",
                json!({"var": "fever_or_symptoms_declared"}),
            ),
        ],
        declaration_max_age_hours: None,
        code_validity_minutes: 10,
    }
}

/// The national baseline, compiled.
pub fn national_baseline() -> Arc<CompiledPolicy> {
    static BASELINE: OnceLock<Arc<CompiledPolicy>> = OnceLock::new();
    BASELINE
        .get_or_init(|| {
            match CompiledPolicy::compile(
                None,
                "national-baseline",
                1,
                baseline_document(),
                OffsetDateTime::UNIX_EPOCH,
            ) {
                Ok(p) => Arc::new(p),
                // The baseline is a constant checked by tests; an empty policy is the safe fallback.
                Err(_) => Arc::new(CompiledPolicy {
                    region: None,
                    id: "national-baseline".into(),
                    version: 1,
                    document: PolicyDocument {
                        rules: vec![],
                        declaration_max_age_hours: None,
                        code_validity_minutes: 10,
                    },
                    effective_at: OffsetDateTime::UNIX_EPOCH,
                    rules: vec![],
                }),
            }
        })
        .clone()
}

/// All published policies (a fold of `PolicyPublished` events).
#[derive(Debug, Clone, Default)]
pub struct PolicyBook {
    by_region: BTreeMap<DivisionCode, Vec<Arc<CompiledPolicy>>>,
}

impl PolicyBook {
    /// An empty book (everyone falls back to the baseline).
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event. Documents in the log were checked when published;
    /// one that no longer compiles is skipped.
    pub fn apply(&mut self, event: &HealthEvent) {
        if let HealthEvent::PolicyPublished {
            region,
            policy_id,
            version,
            document,
            at,
            ..
        } = event
        {
            if let Ok(p) =
                CompiledPolicy::compile(Some(*region), policy_id, *version, document.clone(), *at)
            {
                let versions = self.by_region.entry(*region).or_default();
                versions.push(Arc::new(p));
                versions.sort_by_key(|p| (p.effective_at, p.version));
            }
        }
    }

    /// The latest version a region published, if any.
    pub fn latest_version(&self, region: &DivisionCode) -> u32 {
        self.by_region
            .get(region)
            .and_then(|v| v.iter().map(|p| p.version).max())
            .unwrap_or(0)
    }

    /// The policy in force for `region` at `at`: the region's own, else its
    /// province's, else the national baseline.
    pub fn resolve(&self, region: &DivisionCode, at: OffsetDateTime) -> Arc<CompiledPolicy> {
        let own = |r: &DivisionCode| {
            self.by_region.get(r).and_then(|versions| {
                versions
                    .iter()
                    .rev()
                    .find(|p| p.effective_at <= at)
                    .cloned()
            })
        };
        own(region)
            .or_else(|| {
                region
                    .ancestor_at(DivisionLevel::Province)
                    .filter(|p| p != region)
                    .and_then(|p| own(&p))
            })
            .unwrap_or_else(national_baseline)
    }
}

/// Command: a region publishes a new version of its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishPolicy {
    /// The region (province or city).
    pub region: DivisionCode,
    /// The policy id.
    pub policy_id: String,
    /// The document.
    pub document: PolicyDocument,
}

/// Decides a publication: the actor must be a health official of the region,
/// the region a province or city, and the document must compile. The version
/// is one more than the latest published.
pub fn decide_publish(
    book: &PolicyBook,
    command: &PublishPolicy,
    actor: &Actor,
    now: OffsetDateTime,
) -> Result<Vec<HealthEvent>, HealthCodeError> {
    if !matches!(
        command.region.level(),
        DivisionLevel::Province | DivisionLevel::City
    ) {
        return Err(HealthCodeError::InvalidInput {
            field: "region",
            rule: "policies are published by a province or a city".into(),
        });
    }
    if !actor.has_health_authority_over(&command.region) {
        return Err(HealthCodeError::Forbidden(format!(
            "only a health official of {} may publish its policy",
            command.region
        )));
    }
    let version = book.latest_version(&command.region) + 1;
    CompiledPolicy::compile(
        Some(command.region),
        &command.policy_id,
        version,
        command.document.clone(),
        now,
    )?;
    Ok(vec![HealthEvent::PolicyPublished {
        region: command.region,
        policy_id: command.policy_id.clone(),
        version,
        document: command.document.clone(),
        by: actor.id,
        at: now,
    }])
}
