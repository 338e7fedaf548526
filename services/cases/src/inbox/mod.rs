//! The inbox: a per-person (and per-enterprise) notification projection
//! with unread counts and mark-as-read.
//!
//! - Sources: the health-code domain's `ColourChanged`, `AppealUpheld` and
//!   `ColourOverridden` (an appeal granted) events, and every status change
//!   of an application (to its applicant).
//! - Mark-as-read is a command like any other: [`InboxService`] appends
//!   `NotificationsRead.v1` to the recipient's `inbox-<recipient>` stream and
//!   the projection folds it, so the read model stays a pure function of
//!   the log.
//! - Live updates: each notification is also published to the projection's
//!   feed (kind `inbox.notification`, data class `inbox`, payload with the
//!   recipient), which the gateway's subscription filters by recipient.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tongban_health_code::events::HealthEvent;
use tongban_health_code::types::OverrideAnswers;
use tongban_kernel::Clock;
use tongban_projection::read_model::key::leading;
use tongban_projection::{
    ApplyError, ChangeDraft, Changes, KeyRange, Projection, ReadModels, Table,
};
use tongban_store::{
    EventData, EventFilter, EventStore, ExpectedRevision, RecordedEvent, StreamName,
};

use crate::case::Status;
use crate::error::CaseError;
use crate::events::CaseEvent;
use crate::types::{Applicant, Principal};

/// The projection's name (its read-model namespace and feed).
pub const INBOX: &str = "inbox";

/// Health-code event types the inbox reads.
const HEALTH_TYPES: [&str; 3] = ["ColourChanged.v1", "AppealUpheld.v1", "ColourOverridden.v1"];

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The inbox's own facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InboxEvent {
    /// The recipient read notifications.
    #[serde(rename = "NotificationsRead.v1")]
    NotificationsRead {
        /// Recipient key (`person-<id>` or `enterprise-<id>`).
        recipient: String,
        /// The notifications read; empty means every one up to `up_to`.
        ids: Vec<u64>,
        /// With `ids` empty: everything up to this notification id.
        up_to: Option<u64>,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A health-code colour changed.
    ColourChanged,
    /// An appeal was decided.
    AppealOutcome,
    /// An application's status changed.
    ApplicationStatus,
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id: the log position of the event that caused it (ordered).
    pub id: u64,
    /// What it is about.
    pub kind: NotificationKind,
    /// One line.
    pub title: String,
    /// Details.
    pub body: String,
    /// The application, for application notifications.
    pub case_id: Option<String>,
    /// Read yet?
    pub read: bool,
    /// When (RFC 3339).
    pub at: String,
}

/// The projection.
#[derive(Clone)]
pub struct InboxViews {
    /// (recipient, id) -> notification.
    pub notifications: Table<(String, u64), Notification>,
    /// recipient -> ids of unread notifications.
    pub unread: Table<String, BTreeSet<u64>>,
    /// case id -> applicant key (to address later case events).
    pub case_owners: Table<String, String>,
}

impl Default for InboxViews {
    fn default() -> Self {
        Self {
            notifications: Table::new("notifications"),
            unread: Table::new("unread"),
            case_owners: Table::new("case_owners"),
        }
    }
}

fn person_key(person: &tongban_kernel::PersonId) -> String {
    Applicant::Person(*person).key()
}

fn status_title(status: Status, service: &str) -> String {
    format!("Your application for {service} is {status}")
}

/// A notification before it has an id.
struct Draft {
    kind: NotificationKind,
    title: String,
    body: String,
    case_id: Option<String>,
    at: OffsetDateTime,
}

impl InboxViews {
    async fn notify(
        &self,
        changes: &mut Changes<'_>,
        recorded: &RecordedEvent,
        recipient: String,
        draft: Draft,
    ) -> Result<(), ApplyError> {
        let note = Notification {
            id: recorded.position.0,
            kind: draft.kind,
            title: draft.title,
            body: draft.body,
            case_id: draft.case_id,
            read: false,
            at: rfc3339(draft.at),
        };
        changes.put(&self.notifications, &(recipient.clone(), note.id), &note)?;
        changes
            .update(&self.unread, &recipient, BTreeSet::new, |ids| {
                ids.insert(note.id);
            })
            .await?;
        #[derive(Serialize)]
        struct Live<'a> {
            recipient: &'a str,
            notification: &'a Notification,
        }
        let draft = ChangeDraft::new(
            "inbox.notification",
            "inbox",
            None,
            &Live {
                recipient: &recipient,
                notification: &note,
            },
        )?;
        changes.publish(recorded, draft)?;
        Ok(())
    }

    async fn apply_health(
        &self,
        recorded: &RecordedEvent,
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let event: HealthEvent = recorded.json().map_err(|e| ApplyError::at(recorded, e))?;
        match event {
            HealthEvent::ColourChanged {
                person_id,
                region,
                colour,
                previous,
                reason,
                at,
                ..
            } => {
                let colour = format!("{colour:?}").to_lowercase();
                let title = format!("Your health code in {region} is now {colour}");
                let body = match previous {
                    Some(p) => format!(
                        "It was {}. Reason: {reason}.",
                        format!("{p:?}").to_lowercase()
                    ),
                    None => format!("Reason: {reason}."),
                };
                self.notify(
                    changes,
                    recorded,
                    person_key(&person_id),
                    Draft {
                        kind: NotificationKind::ColourChanged,
                        title,
                        body,
                        case_id: None,
                        at,
                    },
                )
                .await
            }
            HealthEvent::AppealUpheld {
                person_id,
                reason,
                at,
                ..
            } => {
                self.notify(
                    changes,
                    recorded,
                    person_key(&person_id),
                    Draft {
                        kind: NotificationKind::AppealOutcome,
                        title: "Your appeal was reviewed: the colour stands".into(),
                        body: format!("Reason: {reason}."),
                        case_id: None,
                        at,
                    },
                )
                .await
            }
            HealthEvent::ColourOverridden {
                person_id,
                colour,
                answers: OverrideAnswers::Appeal(_),
                reason,
                at,
                ..
            } => {
                let colour = format!("{colour:?}").to_lowercase();
                self.notify(
                    changes,
                    recorded,
                    person_key(&person_id),
                    Draft {
                        kind: NotificationKind::AppealOutcome,
                        title: format!("Your appeal was granted: your code is now {colour}"),
                        body: format!("Reason: {reason}."),
                        case_id: None,
                        at,
                    },
                )
                .await
            }
            _ => Ok(()),
        }
    }

    async fn apply_case(
        &self,
        recorded: &RecordedEvent,
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let event: CaseEvent = recorded.json().map_err(|e| ApplyError::at(recorded, e))?;
        let key = event.case_id().to_string();
        if let CaseEvent::ApplicationSubmitted {
            applicant,
            service,
            at,
            ..
        } = &event
        {
            changes.put(&self.case_owners, &key, &applicant.key())?;
            return self
                .notify(
                    changes,
                    recorded,
                    applicant.key(),
                    Draft {
                        kind: NotificationKind::ApplicationStatus,
                        title: status_title(Status::Submitted, service.as_str()),
                        body: "We will tell you when an official has looked at it.".into(),
                        case_id: Some(key),
                        at: *at,
                    },
                )
                .await;
        }
        let Some(owner) = changes.get(&self.case_owners, &key).await? else {
            return Ok(());
        };
        let (title, body, at) = match event {
            CaseEvent::ApplicationAccepted { at, .. } => (
                "Your application is under review".to_owned(),
                String::new(),
                at,
            ),
            CaseEvent::MoreInformationRequested { requested, at, .. } => (
                "Your application needs more information".to_owned(),
                requested,
                at,
            ),
            CaseEvent::ApplicationApproved { reasons, at, .. } => (
                "Your application was approved".to_owned(),
                reasons.join("; "),
                at,
            ),
            CaseEvent::ApplicationRejected { reasons, at, .. } => (
                "Your application was rejected".to_owned(),
                reasons.join("; "),
                at,
            ),
            CaseEvent::ResidenceChangeApplied { to, at, .. } => (
                "Your residence community has been updated".to_owned(),
                format!("Your health code now shows community {to}."),
                at,
            ),
            CaseEvent::ResidenceChangeFailed { reason, at, .. } => (
                "Your residence community could not be updated".to_owned(),
                reason,
                at,
            ),
            _ => return Ok(()),
        };
        self.notify(
            changes,
            recorded,
            owner,
            Draft {
                kind: NotificationKind::ApplicationStatus,
                title,
                body,
                case_id: Some(key),
                at,
            },
        )
        .await
    }

    async fn apply_read(
        &self,
        recorded: &RecordedEvent,
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        let InboxEvent::NotificationsRead {
            recipient,
            ids,
            up_to,
            ..
        } = recorded.json().map_err(|e| ApplyError::at(recorded, e))?;
        let unread = changes
            .get(&self.unread, &recipient)
            .await?
            .unwrap_or_default();
        let targets: Vec<u64> = if ids.is_empty() {
            unread
                .iter()
                .copied()
                .filter(|id| up_to.is_none_or(|u| *id <= u))
                .collect()
        } else {
            ids.into_iter().filter(|id| unread.contains(id)).collect()
        };
        for id in &targets {
            let key = (recipient.clone(), *id);
            if let Some(mut note) = changes.get(&self.notifications, &key).await? {
                note.read = true;
                changes.put(&self.notifications, &key, &note)?;
            }
        }
        changes
            .update(&self.unread, &recipient, BTreeSet::new, |set| {
                for id in &targets {
                    set.remove(id);
                }
            })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Projection for InboxViews {
    fn name(&self) -> &str {
        INBOX
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> EventFilter {
        let mut types: Vec<&str> = HEALTH_TYPES.to_vec();
        types.extend(crate::events::TYPE_NAMES);
        types.push("NotificationsRead.v1");
        EventFilter::event_types(types)
    }

    async fn apply(
        &self,
        events: &[RecordedEvent],
        changes: &mut Changes<'_>,
    ) -> Result<(), ApplyError> {
        for recorded in events {
            let category = recorded.stream.category();
            if category == "person" && HEALTH_TYPES.contains(&recorded.event_type.as_str()) {
                self.apply_health(recorded, changes).await?;
            } else if category == crate::handler::CATEGORY {
                self.apply_case(recorded, changes).await?;
            } else if category == "inbox" && recorded.event_type == "NotificationsRead.v1" {
                self.apply_read(recorded, changes).await?;
            }
        }
        Ok(())
    }
}

fn recipient_of(principal: &Principal) -> Result<String, CaseError> {
    principal.as_applicant().map(|a| a.key()).ok_or_else(|| {
        CaseError::Forbidden(format!(
            "a {} has no inbox; persons and enterprises do",
            principal.capacity()
        ))
    })
}

/// Queries on the inbox: a principal sees only their own.
#[derive(Clone)]
pub struct InboxQueries {
    models: ReadModels,
    views: InboxViews,
}

impl InboxQueries {
    /// Queries over the projection's read models.
    pub fn new(models: ReadModels) -> Self {
        Self {
            models,
            views: InboxViews::default(),
        }
    }

    /// The principal's notifications, newest first.
    pub async fn notifications(
        &self,
        principal: &Principal,
    ) -> Result<Vec<Notification>, CaseError> {
        let recipient = recipient_of(principal)?;
        let mut rows: Vec<Notification> = self
            .models
            .scan_all(
                &self.views.notifications,
                &KeyRange::prefix(leading(&recipient)),
            )
            .await?
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// How many notifications the principal has not read.
    pub async fn unread_count(&self, principal: &Principal) -> Result<u64, CaseError> {
        let recipient = recipient_of(principal)?;
        Ok(self
            .models
            .get(&self.views.unread, &recipient)
            .await?
            .map_or(0, |ids| ids.len() as u64))
    }
}

/// Mark-as-read: appends the inbox's own events.
pub struct InboxService<S: EventStore> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
}

impl<S: EventStore> InboxService<S> {
    /// Over `store`.
    pub fn new(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Marks the principal's notifications `ids` as read (all of them up to
    /// `up_to` when `ids` is empty; everything when both are empty/`None`).
    pub async fn mark_read(
        &self,
        principal: &Principal,
        ids: Vec<u64>,
        up_to: Option<u64>,
    ) -> Result<(), CaseError> {
        let recipient = recipient_of(principal)?;
        let stream = StreamName::parse(format!("inbox-{recipient}"))
            .map_err(|e| CaseError::Store(e.to_string()))?;
        let event = InboxEvent::NotificationsRead {
            recipient,
            ids,
            up_to,
            at: self.clock.now(),
        };
        let data = EventData::json("NotificationsRead.v1", &event)
            .map_err(|e| CaseError::Store(e.to_string()))?;
        self.store
            .append(&stream, ExpectedRevision::Any, vec![data])
            .await
            .map_err(|e| CaseError::Store(e.to_string()))?;
        Ok(())
    }
}
