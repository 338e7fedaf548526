//! ServerFeatures (what this endpoint supports, so clients pick the right
//! calls) and Gossip (a one-node cluster whose only member is the alive
//! leader, so `esdb+discover://` connection strings work).

use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::uuid_to_proto;
use crate::proto::gossip::{
    gossip_server::Gossip, member_info::VNodeState, ClusterInfo, EndPoint, MemberInfo,
};
use crate::proto::server_features::{
    server_features_server::ServerFeatures, SupportedMethod, SupportedMethods,
};
use crate::proto::shared::Empty;

/// The EventStoreDB version whose client protocol this endpoint speaks.
pub const PROTOCOL_VERSION: &str = "24.10.0";

pub(crate) struct FeaturesService {
    pub persistent: bool,
}

fn method(service: &str, name: &str, features: &[&str]) -> SupportedMethod {
    SupportedMethod {
        method_name: name.to_string(),
        service_name: service.to_string(),
        features: features.iter().map(|f| f.to_string()).collect(),
    }
}

#[tonic::async_trait]
impl ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        const STREAMS: &str = "event_store.client.streams.streams";
        const PERSISTENT: &str =
            "event_store.client.persistent_subscriptions.persistentsubscriptions";
        let mut methods = vec![
            method(STREAMS, "read", &["position", "events"]),
            method(STREAMS, "append", &[]),
            method(STREAMS, "batchappend", &[]),
            method(STREAMS, "delete", &[]),
            method(STREAMS, "tombstone", &[]),
            method("event_store.client.gossip.gossip", "read", &[]),
            method(
                "event_store.client.server_features.serverfeatures",
                "getsupportedmethods",
                &[],
            ),
        ];
        if self.persistent {
            methods.extend([
                method(PERSISTENT, "create", &["stream", "all"]),
                method(PERSISTENT, "update", &["stream", "all"]),
                method(PERSISTENT, "delete", &["stream", "all"]),
                method(PERSISTENT, "read", &["stream", "all"]),
                method(PERSISTENT, "getinfo", &["stream", "all"]),
                method(PERSISTENT, "replayparked", &["stream", "all"]),
                method(PERSISTENT, "list", &["stream", "all"]),
                method(PERSISTENT, "restartsubsystem", &[]),
            ]);
        }
        Ok(Response::new(SupportedMethods {
            methods,
            event_store_server_version: PROTOCOL_VERSION.to_string(),
        }))
    }
}

pub(crate) struct GossipService {
    pub instance: Uuid,
    pub host: String,
    pub port: u16,
}

#[tonic::async_trait]
impl Gossip for GossipService {
    async fn read(&self, _request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros() * 10).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(uuid_to_proto(self.instance, true)),
                time_stamp: now,
                state: VNodeState::Leader as i32,
                is_alive: true,
                http_end_point: Some(EndPoint {
                    address: self.host.clone(),
                    port: u32::from(self.port),
                }),
            }],
        }))
    }
}
