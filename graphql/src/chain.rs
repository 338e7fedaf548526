//! `verifyChain`: an auditor recomputes the log's hash chain through the
//! API, beside `logHead`.
//!
//! Verifying reads and hashes every event, so one call covers at most
//! [`MAX_EVENTS`] events; the answer says where the next call starts
//! (`nextFrom`) and the portal pages through the log showing progress. Each
//! page is anchored on the stored hash of the event before it, so pages
//! checked one after another check the whole chain. The chain is not
//! personal data: a verification is logged (target `audit`), not recorded in
//! anyone's access log, like the other log reads (`logHead`).

use std::sync::Arc;

use async_graphql::{Context, Object, Result, SimpleObject};
use tongban_health_code::graphql::{
    api::{coded, forbidden},
    caller,
};
use tongban_kernel::Role;
use tongban_store::{EventStore, Position, PositionRange, StoreError};

/// The most events one `verifyChain` call recomputes.
pub const MAX_EVENTS: u64 = 50_000;

/// The hash-chain queries.
#[derive(Default)]
pub struct ChainQuery;

/// What one `verifyChain` call found.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct ChainVerification {
    /// The first position checked.
    pub from: u64,
    /// The last position this call covered (`None` for an empty log).
    pub to: Option<u64>,
    /// Events whose links were recomputed.
    pub events_checked: u64,
    /// Whether every link checked matches (`false`: see `brokenAt`).
    pub intact: bool,
    /// The first position whose stored hash or event is wrong.
    pub broken_at: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
    /// The recomputed hash of the last event checked (hex); at the head it
    /// equals `headHash`.
    pub last_hash: Option<String>,
    /// Where the next call starts to continue towards `until`; `None` once
    /// the range is done or the chain is broken.
    pub next_from: Option<u64>,
    /// The end of the whole range asked for (the head when `to` is omitted).
    pub until: Option<u64>,
    /// The log head's position when the call started.
    pub head_position: Option<u64>,
    /// The log head's hash (hex).
    pub head_hash: Option<String>,
    /// The most events one call checks.
    pub max_events: u64,
}

#[Object]
impl ChainQuery {
    /// Recomputes the log's hash chain from `from` (default 0) to `to`
    /// (default: the head), at most `MAX_EVENTS` (50 000) events per call;
    /// continue with `from: nextFrom` (auditor, admin). A broken link is an
    /// answer (`intact: false`, `brokenAt`, `problem`), not an error.
    async fn verify_chain(
        &self,
        ctx: &Context<'_>,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<ChainVerification> {
        let actor = caller(ctx)?;
        if !matches!(actor.role, Role::Auditor | Role::Admin) {
            return Err(forbidden(actor, "verifyChain", "auditor, admin"));
        }
        let store = ctx.data::<Arc<dyn EventStore>>()?;
        let head = store
            .head()
            .await
            .map_err(|e| coded(e.code(), e.to_string()))?;
        let from = from.unwrap_or(0);
        let answer = verify(store.as_ref(), head, from, to).await?;
        tracing::info!(
            target: "audit",
            actor = %actor.id,
            role = actor.role_name(),
            from,
            to = ?answer.to,
            events = answer.events_checked,
            intact = answer.intact,
            broken_at = ?answer.broken_at,
            "hash chain verified"
        );
        Ok(answer)
    }
}

/// One bounded step of verification over `from..=to` (clamped to `head`).
pub async fn verify(
    store: &dyn EventStore,
    head: Option<tongban_store::Head>,
    from: u64,
    to: Option<u64>,
) -> Result<ChainVerification> {
    let mut answer = ChainVerification {
        from,
        to: None,
        events_checked: 0,
        intact: true,
        broken_at: None,
        problem: None,
        last_hash: None,
        next_from: None,
        until: None,
        head_position: head.map(|h| h.position.0),
        head_hash: head.map(|h| h.hash.to_hex()),
        max_events: MAX_EVENTS,
    };
    let Some(head) = head else {
        return Ok(answer);
    };
    let until = to.map_or(head.position.0, |t| t.min(head.position.0));
    if from > until {
        return Err(coded(
            "INVALID_INPUT",
            format!("invalid `from`: {from} is after the end of the range ({until})"),
        ));
    }
    let end = until.min(from.saturating_add(MAX_EVENTS - 1));
    answer.until = Some(until);
    answer.to = Some(end);
    match store
        .verify_chain(PositionRange::between(Position(from), Position(end)))
        .await
    {
        Ok(report) => {
            answer.events_checked = report.events_checked;
            answer.last_hash = report.last_hash.map(|h| h.to_hex());
            answer.next_from = (end < until).then_some(end + 1);
        }
        Err(StoreError::Corruption { position, reason }) => {
            answer.intact = false;
            answer.broken_at = Some(position.0);
            answer.problem = Some(reason);
            answer.events_checked = position.0.saturating_sub(from);
        }
        Err(e) => return Err(coded(e.code(), e.to_string())),
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongban_store::{EmbeddedStore, EventData, ExpectedRevision, StreamName};

    async fn store_with(events: usize) -> anyhow::Result<(tempfile::TempDir, Arc<dyn EventStore>)> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path().join("log"))?);
        let stream = StreamName::parse("audit-test")?;
        for i in 0..events {
            let data = EventData::json("Noted.v1", &serde_json::json!({ "i": i }))?;
            store
                .append(&stream, ExpectedRevision::Any, vec![data])
                .await?;
        }
        Ok((dir, store))
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_intact_up_to_its_head() -> anyhow::Result<()> {
        let (_dir, store) = store_with(5).await?;
        let head = store.head().await?;
        let answer = verify(store.as_ref(), head, 0, None)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        assert!(answer.intact);
        assert_eq!(answer.events_checked, 5);
        assert_eq!(answer.next_from, None);
        assert_eq!(answer.last_hash, answer.head_hash);
        Ok(())
    }

    #[tokio::test]
    async fn a_range_is_clamped_to_the_head_and_one_past_it_is_refused() -> anyhow::Result<()> {
        let (_dir, store) = store_with(3).await?;
        let head = store.head().await?;
        let answer = verify(store.as_ref(), head, 1, Some(99))
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        assert_eq!((answer.to, answer.events_checked), (Some(2), 2));
        assert!(verify(store.as_ref(), head, 7, None).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_log_is_intact_with_nothing_checked() -> anyhow::Result<()> {
        let (_dir, store) = store_with(0).await?;
        let answer = verify(store.as_ref(), None, 0, None)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        assert!(answer.intact);
        assert_eq!((answer.to, answer.events_checked), (None, 0));
        Ok(())
    }
}
