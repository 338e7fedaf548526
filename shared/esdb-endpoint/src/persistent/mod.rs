//! Persistent subscriptions (placeholder while the Streams service lands).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tongban_store::EventStore;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Auth;
use crate::error::EndpointError;
use crate::proto::persistent::{
    persistent_subscriptions_server::PersistentSubscriptions, CreateReq, CreateResp, DeleteReq,
    DeleteResp, GetInfoReq, GetInfoResp, ListReq, ListResp, ReadReq, ReadResp, ReplayParkedReq,
    ReplayParkedResp, UpdateReq, UpdateResp,
};
use crate::proto::shared::Empty;
use crate::shutdown::Shutdown;

pub(crate) struct PersistentService {}

impl PersistentService {
    pub async fn start(
        _store: Arc<dyn EventStore>,
        _auth: Auth,
        _shutdown: Shutdown,
    ) -> Result<Self, EndpointError> {
        Ok(Self {})
    }
}

#[tonic::async_trait]
impl PersistentSubscriptions for PersistentService {
    async fn create(&self, _: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        Err(Status::unimplemented("later"))
    }
    async fn update(&self, _: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        Err(Status::unimplemented("later"))
    }
    async fn delete(&self, _: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        Err(Status::unimplemented("later"))
    }
    type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;
    async fn read(
        &self,
        _: Request<Streaming<ReadReq>>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        Err(Status::unimplemented("later"))
    }
    async fn get_info(&self, _: Request<GetInfoReq>) -> Result<Response<GetInfoResp>, Status> {
        Err(Status::unimplemented("later"))
    }
    async fn replay_parked(
        &self,
        _: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        Err(Status::unimplemented("later"))
    }
    async fn list(&self, _: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        Err(Status::unimplemented("later"))
    }
    async fn restart_subsystem(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("later"))
    }
}
