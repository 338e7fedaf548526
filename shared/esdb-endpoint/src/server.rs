//! Binding, TLS and the gRPC server that puts the services together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tongban_store::EventStore;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::Auth;
use crate::cluster::{FeaturesService, GossipService};
use crate::config::EndpointConfig;
use crate::error::EndpointError;
use crate::persistent::PersistentService;
use crate::proto::gossip::gossip_server::GossipServer;
use crate::proto::persistent::persistent_subscriptions_server::PersistentSubscriptionsServer;
use crate::proto::server_features::server_features_server::ServerFeaturesServer;
use crate::proto::streams::streams_server::StreamsServer;
use crate::shutdown::Shutdown;
use crate::streams::StreamsService;

/// Largest request or response message: one event of up to 16 MiB plus
/// its envelope.
const MAX_MESSAGE_BYTES: usize = 20 * 1024 * 1024;

/// Serves `store` over the EventStoreDB client protocol until `shutdown`
/// resolves.
pub async fn serve(
    store: Arc<dyn EventStore>,
    config: EndpointConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EndpointError> {
    Endpoint::bind(store, config).await?.serve(shutdown).await
}

/// A bound endpoint: learn its address (port 0 picks one), then serve.
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
    store: Arc<dyn EventStore>,
    config: EndpointConfig,
}

impl Endpoint {
    pub async fn bind(
        store: Arc<dyn EventStore>,
        config: EndpointConfig,
    ) -> Result<Self, EndpointError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EndpointError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EndpointError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Self {
            listener,
            addr,
            store,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection string an official client uses for this endpoint.
    pub fn connection_string(&self) -> String {
        connection_string(self.addr, self.config.tls.is_some())
    }

    #[tracing::instrument(name = "esdb.serve", skip_all, fields(addr = %self.addr))]
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), EndpointError> {
        let (stop_tx, stop) = Shutdown::new();
        let auth = Auth::new(self.config.users.clone());
        let persistent =
            PersistentService::start(self.store.clone(), auth.clone(), stop.clone()).await?;
        let mut builder = Server::builder();
        if let Some(tls) = &self.config.tls {
            let read = |what: &'static str, path: &std::path::Path| {
                std::fs::read(path).map_err(|source| EndpointError::TlsFile {
                    what,
                    path: path.to_path_buf(),
                    source,
                })
            };
            let cert = read("certificate", &tls.certificate)?;
            let key = read("private key", &tls.private_key)?;
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .map_err(EndpointError::Tls)?;
        }
        let host = self
            .config
            .advertise_host
            .clone()
            .unwrap_or_else(|| self.addr.ip().to_string());
        let streams = StreamsServer::new(StreamsService::new(
            self.store.clone(),
            auth.clone(),
            stop.clone(),
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let router = builder
            .add_service(streams)
            .add_service(
                PersistentSubscriptionsServer::new(persistent)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(ServerFeaturesServer::new(FeaturesService {
                persistent: true,
            }))
            .add_service(GossipServer::new(GossipService {
                instance: uuid::Uuid::new_v4(),
                host,
                port: self.addr.port(),
            }));
        tracing::info!("serving the EventStoreDB client protocol");
        // No Nagle: small gRPC frames must not wait for delayed ACKs.
        let incoming =
            tonic::transport::server::TcpIncoming::from_listener(self.listener, true, None)
                .map_err(|e| EndpointError::Bind {
                    addr: self.addr,
                    source: std::io::Error::other(e.to_string()),
                })?;
        router
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await
            .map_err(EndpointError::Serve)
    }

    /// Serves in a background task; dropping or stopping the handle shuts
    /// the endpoint down. Meant for tests and benchmarks.
    pub fn spawn(self) -> EndpointHandle {
        let addr = self.addr;
        let connection_string = self.connection_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async move {
            let _ = rx.await;
        }));
        EndpointHandle {
            addr,
            connection_string,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

fn connection_string(addr: SocketAddr, tls: bool) -> String {
    format!("esdb://{addr}?tls={tls}")
}

/// A running endpoint started with [`Endpoint::spawn`].
pub struct EndpointHandle {
    addr: SocketAddr,
    connection_string: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), EndpointError>>>,
}

impl EndpointHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `esdb://127.0.0.1:PORT?tls=false`.
    pub fn connection_string(&self) -> &str {
        &self.connection_string
    }

    /// Stops serving and waits until the server has let go of the store.
    pub async fn stop(mut self) -> Result<(), EndpointError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
