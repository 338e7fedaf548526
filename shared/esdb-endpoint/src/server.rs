//! Binding, TLS and the gRPC server that puts the services together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tongban_store::EventStore;
use tonic::transport::Server;

use crate::auth::Auth;
use crate::cluster::{FeaturesService, GossipService};
use crate::config::{EndpointConfig, Protection};
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
    tls: Option<TlsAcceptor>,
}

impl Endpoint {
    /// Checks the configuration ([`EndpointConfig::protection`]: no
    /// non-loopback address without users and TLS), loads the TLS
    /// certificate and key, and binds the address.
    pub async fn bind(
        store: Arc<dyn EventStore>,
        config: EndpointConfig,
    ) -> Result<Self, EndpointError> {
        let protection = config.protection()?;
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
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
        warn_about(protection, addr, &config);
        Ok(Self {
            listener,
            addr,
            store,
            config,
            tls,
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
        let auth = Auth::new(&self.config.users);
        let persistent =
            PersistentService::start(self.store.clone(), auth.clone(), stop.clone()).await?;
        let mut builder = Server::builder();
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
        tracing::info!(
            tls = self.tls.is_some(),
            users = self.config.users.len(),
            "serving the EventStoreDB client protocol"
        );
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        match self.tls {
            Some(acceptor) => {
                let (incoming, accept_loop) = crate::tls::incoming(self.listener, acceptor);
                let served = router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await;
                accept_loop.abort();
                served.map_err(EndpointError::Serve)
            }
            None => {
                // No Nagle: small gRPC frames must not wait for delayed ACKs.
                let incoming =
                    tonic::transport::server::TcpIncoming::from_listener(self.listener, true, None)
                        .map_err(|e| EndpointError::Bind {
                            addr: self.addr,
                            source: std::io::Error::other(e.to_string()),
                        })?;
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
                    .map_err(EndpointError::Serve)
            }
        }
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

/// Says loudly what an endpoint that is not [`Protection::Secured`] lacks.
fn warn_about(protection: Protection, addr: SocketAddr, config: &EndpointConfig) {
    match protection {
        Protection::Secured => {
            if !config.users.iter().any(|u| u.admin) {
                tracing::warn!(
                    %addr,
                    "no EventStoreDB endpoint user is an administrator: nobody can read `$all`, \
                     which the esdb backend of a gateway needs"
                );
            }
        }
        Protection::LoopbackOnly { missing } => tracing::warn!(
            %addr,
            %missing,
            "the EventStoreDB endpoint is NOT SECURED; it listens on loopback only, so only \
             processes on this machine can connect"
        ),
        Protection::InsecureRemote { missing } => tracing::error!(
            %addr,
            %missing,
            "the EventStoreDB endpoint is NOT SECURED AND REACHABLE FROM THE NETWORK because \
             insecure remote serving was explicitly allowed; anything that can connect to {addr} \
             can do what this allows"
        ),
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
