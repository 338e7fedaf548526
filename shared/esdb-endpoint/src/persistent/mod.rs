//! Persistent subscriptions: groups of competing consumers on a stream or
//! `$all`, with round-robin or dispatch-to-single, retries, parking and
//! checkpoints. Settings, checkpoints and parked lists are kept in the
//! event store (as events in the hub's own `$tongban-psub-…` system
//! streams), so a restart resumes each group from its last checkpoint.

// Older clients still send the deprecated fields; they are honoured.
#![allow(deprecated)]

mod group;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tongban_store::{EventStore, StreamName};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::Auth;
use crate::convert;
use crate::error::EndpointError;
use crate::proto::persistent::{
    self as pb, persistent_subscriptions_server::PersistentSubscriptions, CreateReq, CreateResp,
    DeleteReq, DeleteResp, GetInfoReq, GetInfoResp, ListReq, ListResp, ReadReq, ReadResp,
    ReplayParkedReq, ReplayParkedResp, UpdateReq, UpdateResp,
};
use crate::proto::shared::{Empty, StreamIdentifier};
use crate::shutdown::Shutdown;
use group::{key, load_doc, save_doc, Group, NackAction, Settings, StoredFilter, Strategy};

const REGISTRY_STREAM: &str = "$tongban-psub-config"; // starts with group::STATE_STREAM_PREFIX

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    groups: Vec<Settings>,
}

pub(crate) struct PersistentService {
    store: Arc<dyn EventStore>,
    auth: Auth,
    shutdown: Shutdown,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

fn registry_stream() -> Result<StreamName, Status> {
    StreamName::parse(REGISTRY_STREAM).map_err(convert::status_of)
}

fn source_of(id: Option<&StreamIdentifier>, all: bool) -> Result<String, Status> {
    if all {
        return Ok("$all".into());
    }
    Ok(convert::stream_name(id)?.as_str().to_string())
}

fn not_found(source: &str, group: &str) -> Status {
    Status::not_found(format!(
        "persistent subscription '{group}' on '{source}' does not exist"
    ))
}

/// Settings common to Create and Update (distinct generated types).
struct RawSettings {
    max_retry_count: i32,
    min_checkpoint_count: i32,
    max_subscriber_count: i32,
    strategy: Strategy,
    message_timeout_ms: u64,
    checkpoint_after_ms: u64,
}

fn ms_of_ticks(ticks: i64) -> u64 {
    u64::try_from(ticks / 10_000).unwrap_or(0)
}

fn strategy_of(name: &str, named: i32) -> Strategy {
    match name {
        "DispatchToSingle" => Strategy::DispatchToSingle,
        "RoundRobin" | "Pinned" | "PinnedByCorrelation" => Strategy::RoundRobin,
        _ if named == 0 => Strategy::DispatchToSingle,
        _ => Strategy::RoundRobin,
    }
}

fn raw_create(s: &pb::create_req::Settings) -> RawSettings {
    use pb::create_req::settings::{CheckpointAfter as C, MessageTimeout as M};
    RawSettings {
        max_retry_count: s.max_retry_count,
        min_checkpoint_count: s.min_checkpoint_count,
        max_subscriber_count: s.max_subscriber_count,
        strategy: strategy_of(&s.consumer_strategy, s.named_consumer_strategy),
        message_timeout_ms: match s.message_timeout {
            Some(M::MessageTimeoutMs(ms)) => u64::try_from(ms).unwrap_or(0),
            Some(M::MessageTimeoutTicks(t)) => ms_of_ticks(t),
            None => 0,
        },
        checkpoint_after_ms: match s.checkpoint_after {
            Some(C::CheckpointAfterMs(ms)) => u64::try_from(ms).unwrap_or(0),
            Some(C::CheckpointAfterTicks(t)) => ms_of_ticks(t),
            None => 0,
        },
    }
}

fn raw_update(s: &pb::update_req::Settings) -> RawSettings {
    use pb::update_req::settings::{CheckpointAfter as C, MessageTimeout as M};
    RawSettings {
        max_retry_count: s.max_retry_count,
        min_checkpoint_count: s.min_checkpoint_count,
        max_subscriber_count: s.max_subscriber_count,
        strategy: strategy_of("", s.named_consumer_strategy),
        message_timeout_ms: match s.message_timeout {
            Some(M::MessageTimeoutMs(ms)) => u64::try_from(ms).unwrap_or(0),
            Some(M::MessageTimeoutTicks(t)) => ms_of_ticks(t),
            None => 0,
        },
        checkpoint_after_ms: match s.checkpoint_after {
            Some(C::CheckpointAfterMs(ms)) => u64::try_from(ms).unwrap_or(0),
            Some(C::CheckpointAfterTicks(t)) => ms_of_ticks(t),
            None => 0,
        },
    }
}

fn settings(
    source: String,
    group: String,
    start_after: Option<u64>,
    from_end: bool,
    raw: RawSettings,
    filter: Option<StoredFilter>,
) -> Settings {
    Settings {
        source,
        group,
        start_after,
        from_end,
        max_retry_count: if raw.max_retry_count > 0 {
            raw.max_retry_count
        } else {
            10
        },
        strategy: raw.strategy,
        message_timeout_ms: if raw.message_timeout_ms > 0 {
            raw.message_timeout_ms
        } else {
            30_000
        },
        checkpoint_after_ms: if raw.checkpoint_after_ms > 0 {
            raw.checkpoint_after_ms
        } else {
            2_000
        },
        min_checkpoint_count: u64::try_from(raw.min_checkpoint_count)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(10),
        max_subscriber_count: raw.max_subscriber_count,
        filter,
    }
}

impl PersistentService {
    /// Loads every group from the store and starts it.
    pub async fn start(
        store: Arc<dyn EventStore>,
        auth: Auth,
        shutdown: Shutdown,
    ) -> Result<Self, EndpointError> {
        let registry_name = StreamName::parse(REGISTRY_STREAM).map_err(EndpointError::Store)?;
        let registry: Registry = load_doc(store.as_ref(), &registry_name)
            .await?
            .unwrap_or_default();
        let mut groups = HashMap::new();
        for s in registry.groups {
            let group = Group::start(store.clone(), s, shutdown.clone()).await?;
            groups.insert(group.settings.key(), group);
        }
        Ok(Self {
            store,
            auth,
            shutdown,
            groups: Mutex::new(groups),
        })
    }

    async fn save_registry(&self, groups: &HashMap<String, Arc<Group>>) -> Result<(), Status> {
        let mut list: Vec<Settings> = groups.values().map(|g| g.settings.clone()).collect();
        list.sort_by_key(Settings::key);
        save_doc(
            self.store.as_ref(),
            &registry_stream()?,
            &Registry { groups: list },
        )
        .await
        .map_err(convert::status_of)
    }

    async fn group(&self, source: &str, group: &str) -> Result<Arc<Group>, Status> {
        self.groups
            .lock()
            .await
            .get(&key(source, group))
            .cloned()
            .ok_or_else(|| not_found(source, group))
    }

    async fn install(&self, settings: Settings, replace: bool) -> Result<(), Status> {
        let mut groups = self.groups.lock().await;
        let k = settings.key();
        match groups.get(&k) {
            Some(_) if !replace => {
                return Err(Status::already_exists(format!(
                    "persistent subscription '{}' on '{}' already exists",
                    settings.group, settings.source
                )))
            }
            None if replace => return Err(not_found(&settings.source, &settings.group)),
            Some(old) => old.stop(),
            None => {}
        }
        let group = Group::start(self.store.clone(), settings, self.shutdown.clone())
            .await
            .map_err(convert::status_of)?;
        groups.insert(k, group);
        self.save_registry(&groups).await
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

#[tonic::async_trait]
impl PersistentSubscriptions for PersistentService {
    #[tracing::instrument(name = "esdb.psub.create", skip_all)]
    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("create options are required"))?;
        let raw = raw_create(&o.settings.clone().unwrap_or_default());
        use pb::create_req::{all_options, options::StreamOption, stream_options};
        let (source, start_after, from_end, filter) = match o.stream_option {
            Some(StreamOption::All(a)) => {
                let (start, end) = match a.all_option {
                    Some(all_options::AllOption::Position(p)) => (Some(p.commit_position), false),
                    Some(all_options::AllOption::End(_)) => (None, true),
                    _ => (None, false),
                };
                let filter = match a.filter_option {
                    Some(all_options::FilterOption::Filter(f)) => {
                        let (on_stream, e) = match f.filter {
                            Some(all_options::filter_options::Filter::StreamIdentifier(e)) => {
                                (true, e)
                            }
                            Some(all_options::filter_options::Filter::EventType(e)) => (false, e),
                            None => (false, Default::default()),
                        };
                        Some(StoredFilter {
                            on_stream,
                            regex: e.regex,
                            prefixes: e.prefix,
                        })
                    }
                    _ => None,
                };
                ("$all".to_string(), start, end, filter)
            }
            Some(StreamOption::Stream(s)) => {
                let source = source_of(s.stream_identifier.as_ref(), false)?;
                let (start, end) = match s.revision_option {
                    Some(stream_options::RevisionOption::Revision(0)) => (None, false),
                    Some(stream_options::RevisionOption::Revision(n)) => (Some(n - 1), false),
                    Some(stream_options::RevisionOption::End(_)) => (None, true),
                    _ => (None, false),
                };
                (source, start, end, None)
            }
            None => {
                let source = source_of(o.stream_identifier.as_ref(), false)?;
                (source, None, false, None)
            }
        };
        self.auth.ensure_can_read(&caller, &source)?;
        let s = settings(source, o.group_name, start_after, from_end, raw, filter);
        tracing::info!(group = %s.key(), strategy = s.strategy.name(), "persistent subscription created");
        self.install(s, false).await?;
        Ok(Response::new(CreateResp {}))
    }

    #[tracing::instrument(name = "esdb.psub.update", skip_all)]
    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("update options are required"))?;
        let raw = raw_update(&o.settings.unwrap_or_default());
        use pb::update_req::options::StreamOption;
        let source = match &o.stream_option {
            Some(StreamOption::All(_)) => "$all".to_string(),
            Some(StreamOption::Stream(s)) => source_of(s.stream_identifier.as_ref(), false)?,
            None => source_of(o.stream_identifier.as_ref(), false)?,
        };
        self.auth.ensure_can_read(&caller, &source)?;
        let old = self.group(&source, &o.group_name).await?;
        let mut s = settings(
            source,
            o.group_name,
            old.settings.start_after,
            old.settings.from_end,
            raw,
            old.settings.filter.clone(),
        );
        if o.settings.is_some_and(|x| x.named_consumer_strategy == 0)
            && old.settings.strategy == Strategy::RoundRobin
        {
            // Update has no strategy string; keep the stored one unless named.
            s.strategy = Strategy::DispatchToSingle;
        }
        old.save_checkpoint().await;
        self.install(s, true).await?;
        Ok(Response::new(UpdateResp {}))
    }

    #[tracing::instrument(name = "esdb.psub.delete", skip_all)]
    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("delete options are required"))?;
        use pb::delete_req::options::StreamOption;
        let source = match &o.stream_option {
            Some(StreamOption::All(_)) => "$all".to_string(),
            Some(StreamOption::StreamIdentifier(id)) => source_of(Some(id), false)?,
            None => return Err(Status::invalid_argument("delete needs a stream or $all")),
        };
        let mut groups = self.groups.lock().await;
        let group = groups
            .remove(&key(&source, &o.group_name))
            .ok_or_else(|| not_found(&source, &o.group_name))?;
        group.stop();
        self.save_registry(&groups).await?;
        Ok(Response::new(DeleteResp {}))
    }

    type ReadStream = ReadStream;

    #[tracing::instrument(name = "esdb.psub.read", skip_all)]
    async fn read(
        &self,
        request: Request<Streaming<ReadReq>>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let mut incoming = request.into_inner();
        let options = match incoming.message().await? {
            Some(ReadReq {
                content: Some(pb::read_req::Content::Options(o)),
            }) => o,
            _ => return Err(Status::invalid_argument("a read starts with its options")),
        };
        use pb::read_req::options::{uuid_option, StreamOption};
        let source = match &options.stream_option {
            Some(StreamOption::All(_)) => "$all".to_string(),
            Some(StreamOption::StreamIdentifier(id)) => source_of(Some(id), false)?,
            None => return Err(Status::invalid_argument("read needs a stream or $all")),
        };
        self.auth.ensure_can_read(&caller, &source)?;
        let group = self.group(&source, &options.group_name).await?;
        let structured = !matches!(
            options.uuid_option.and_then(|u| u.content),
            Some(uuid_option::Content::String(_))
        );
        let capacity = usize::try_from(options.buffer_size).unwrap_or(10).max(1);
        let (tx, rx) = mpsc::channel(capacity + 16);
        let confirmation = ReadResp {
            content: Some(pb::read_resp::Content::SubscriptionConfirmation(
                pb::read_resp::SubscriptionConfirmation {
                    subscription_id: group.settings.key(),
                },
            )),
        };
        tx.send(Ok(confirmation))
            .await
            .map_err(|_| Status::cancelled("the client went away"))?;
        let consumer = group.connect(tx.clone(), capacity, structured).await?;
        let mut shutdown = self.shutdown.clone();
        let span =
            tracing::info_span!("esdb.psub.consumer", group = %group.settings.key(), consumer);
        tokio::spawn(
            async move {
                loop {
                    let message = tokio::select! {
                        _ = shutdown.wait() => {
                            let _ = tx.send(Err(Status::unavailable("the server is shutting down"))).await;
                            break;
                        }
                        m = incoming.next() => m,
                    };
                    let Some(Ok(message)) = message else { break };
                    match message.content {
                        Some(pb::read_req::Content::Ack(ack)) => {
                            let ids = ids_of(&ack.ids);
                            group.ack(&ids).await;
                        }
                        Some(pb::read_req::Content::Nack(nack)) => {
                            use pb::read_req::nack::Action;
                            let action = match Action::try_from(nack.action) {
                                Ok(Action::Park) => NackAction::Park,
                                Ok(Action::Skip) => NackAction::Skip,
                                _ => NackAction::Retry,
                            };
                            tracing::debug!(reason = %nack.reason, ?action, "nack");
                            group.nack(&ids_of(&nack.ids), action).await;
                        }
                        _ => {}
                    }
                }
                group.disconnect(consumer).await;
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_info(
        &self,
        request: Request<GetInfoReq>,
    ) -> Result<Response<GetInfoResp>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("options are required"))?;
        use pb::get_info_req::options::StreamOption;
        let source = match &o.stream_option {
            Some(StreamOption::All(_)) => "$all".to_string(),
            Some(StreamOption::StreamIdentifier(id)) => source_of(Some(id), false)?,
            None => return Err(Status::invalid_argument("get info needs a stream or $all")),
        };
        let group = self.group(&source, &o.group_name).await?;
        Ok(Response::new(GetInfoResp {
            subscription_info: Some(group.info().await),
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("options are required"))?;
        use pb::replay_parked_req::options::{StopAtOption, StreamOption};
        let source = match &o.stream_option {
            Some(StreamOption::All(_)) => "$all".to_string(),
            Some(StreamOption::StreamIdentifier(id)) => source_of(Some(id), false)?,
            None => return Err(Status::invalid_argument("replay needs a stream or $all")),
        };
        let stop_at = match o.stop_at_option {
            Some(StopAtOption::StopAt(n)) => usize::try_from(n).ok(),
            _ => None,
        };
        let group = self.group(&source, &o.group_name).await?;
        group
            .replay_parked(stop_at)
            .await
            .map_err(convert::status_of)?;
        Ok(Response::new(ReplayParkedResp {}))
    }

    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        let o = request.into_inner().options.unwrap_or_default();
        use pb::list_req::{options::ListOption, stream_option::StreamOption};
        let only: Option<String> = match o.list_option {
            Some(ListOption::ListForStream(s)) => match s.stream_option {
                Some(StreamOption::All(_)) => Some("$all".into()),
                Some(StreamOption::Stream(id)) => Some(source_of(Some(&id), false)?),
                None => None,
            },
            _ => None,
        };
        let groups: Vec<Arc<Group>> = self.groups.lock().await.values().cloned().collect();
        let mut subscriptions = Vec::new();
        for g in groups {
            if only.as_ref().is_none_or(|s| *s == g.settings.source) {
                subscriptions.push(g.info().await);
            }
        }
        subscriptions.sort_by(|a, b| {
            (&a.event_source, &a.group_name).cmp(&(&b.event_source, &b.group_name))
        });
        if only.is_some() && subscriptions.is_empty() {
            return Err(Status::not_found(
                "no persistent subscriptions on that stream",
            ));
        }
        Ok(Response::new(ListResp { subscriptions }))
    }

    async fn restart_subsystem(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let _caller = self.auth.caller(request.metadata())?;
        Ok(Response::new(Empty {}))
    }
}

fn ids_of(ids: &[crate::proto::shared::Uuid]) -> Vec<uuid::Uuid> {
    ids.iter()
        .filter_map(|id| convert::uuid_from_proto(Some(id)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_strategy_name_wins_over_the_deprecated_enum() {
        assert_eq!(strategy_of("RoundRobin", 0), Strategy::RoundRobin);
        assert_eq!(
            strategy_of("DispatchToSingle", 1),
            Strategy::DispatchToSingle
        );
        assert_eq!(strategy_of("", 0), Strategy::DispatchToSingle);
    }
}
