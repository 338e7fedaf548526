//! Unmodified official EventStoreDB clients against the endpoint: the Rust
//! client over TLS with users (a self-signed certificate trusted through
//! `tlsCaFile`, anonymous callers and wrong passwords refused), and clients
//! in other languages. The README's test command (`infra/scripts/test.sh`)
//! installs the latter when missing; a missing client fails the test,
//! saying how to install it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{Client, EventData, ReadAllOptions, ReadStreamOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tongban_esdb_endpoint::proto::streams::{DeleteReq, DeleteResp};
use tongban_esdb_endpoint::{
    Endpoint, EndpointConfig, EndpointError, EndpointHandle, Missing, TlsFiles, User,
};
use tongban_store::{EmbeddedStore, EventStore};

fn python_client_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import esdbclient"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_appends_reads_subscribes_and_gets_a_conflict() {
    assert!(
        python_client_installed(),
        "the official Python client is not installed: python3 -m pip install esdbclient==1.1.7 \
         (infra/scripts/test.sh does this when it is missing)"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("a store"));
    let config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    let endpoint = Endpoint::bind(store, config)
        .await
        .expect("the endpoint binds")
        .spawn();
    let uri = endpoint
        .connection_string()
        .replace("tls=false", "Tls=false");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/official_python_client.py"
    );
    let run = tokio::process::Command::new("python3")
        .args([script, &uri])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within 60 s")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("OK"),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, as PEM files.
struct SelfSigned {
    _dir: tempfile::TempDir,
    certificate: PathBuf,
    private_key: PathBuf,
}

fn self_signed() -> SelfSigned {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("a self-signed certificate");
    let certificate = dir.path().join("esdb.crt");
    let private_key = dir.path().join("esdb.key");
    std::fs::write(&certificate, generated.cert.pem()).expect("the certificate is written");
    std::fs::write(&private_key, generated.key_pair.serialize_pem()).expect("the key is written");
    SelfSigned {
        _dir: dir,
        certificate,
        private_key,
    }
}

/// An endpoint on a fresh store with `ops` (administrator) and `reader`.
async fn start(tls: Option<&SelfSigned>) -> (EndpointHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("a store"));
    let mut config = EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_user(User::new("ops", "changeit", true))
        .with_user(User::new("reader", "read-only", false));
    if let Some(tls) = tls {
        config = config.with_tls(TlsFiles {
            certificate: tls.certificate.clone(),
            private_key: tls.private_key.clone(),
        });
    }
    let endpoint = Endpoint::bind(store, config)
        .await
        .expect("the endpoint binds")
        .spawn();
    (endpoint, dir)
}

/// The official Rust client over TLS, trusting `ca`, as `credentials`.
fn tls_client(endpoint: &EndpointHandle, credentials: Option<(&str, &str)>, ca: &Path) -> Client {
    let user = credentials
        .map(|(name, password)| format!("{name}:{password}@"))
        .unwrap_or_default();
    let url = format!(
        "esdb://{user}{}?tls=true&tlsCaFile={}",
        endpoint.local_addr(),
        ca.display()
    );
    Client::new(url.parse().expect("a valid connection string")).expect("a client")
}

fn event(n: u64) -> EventData {
    EventData::json("OrderPlaced", &serde_json::json!({ "n": n })).expect("json")
}

async fn append(client: &Client, stream: &str) -> Result<(), eventstore::Error> {
    let options = eventstore::AppendToStreamOptions::default();
    let appended = client.append_to_stream(stream, &options, event(1));
    tokio::time::timeout(Duration::from_secs(30), appended)
        .await
        .expect("an answer within 30 s")
        .map(|_| ())
}

/// Reads all of `stream` (or `$all`), or the client's error.
async fn read(client: &Client, stream: &str) -> Result<usize, eventstore::Error> {
    let reading = async {
        let mut events = if stream == "$all" {
            client.read_all(&ReadAllOptions::default()).await?
        } else {
            client
                .read_stream(stream, &ReadStreamOptions::default())
                .await?
        };
        let mut count = 0;
        while events.next().await?.is_some() {
            count += 1;
        }
        Ok(count)
    };
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("an answer within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_self_signed_certificate_in_tls_ca_file_users_append_and_read() {
    let tls = self_signed();
    let (endpoint, _dir) = start(Some(&tls)).await;
    assert!(endpoint.connection_string().contains("tls=true"));
    let ops = tls_client(&endpoint, Some(("ops", "changeit")), &tls.certificate);
    append(&ops, "orders-1")
        .await
        .expect("the administrator appends");
    assert_eq!(read(&ops, "orders-1").await.expect("read"), 1);
    assert!(
        read(&ops, "$all")
            .await
            .expect("the administrator reads $all")
            >= 1
    );

    let reader = tls_client(&endpoint, Some(("reader", "read-only")), &tls.certificate);
    append(&reader, "orders-2").await.expect("a user appends");
    assert_eq!(read(&reader, "orders-1").await.expect("read"), 1);
    let denied = read(&reader, "$all").await;
    assert!(
        matches!(denied, Err(eventstore::Error::AccessDenied)),
        "a non-administrator reads no system stream: {denied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_and_wrong_passwords_are_refused_over_tls() {
    let tls = self_signed();
    let (endpoint, _dir) = start(Some(&tls)).await;
    for credentials in [None, Some(("ops", "wrong")), Some(("nobody", "changeit"))] {
        let client = tls_client(&endpoint, credentials, &tls.certificate);
        let appended = append(&client, "orders-1").await;
        assert!(
            matches!(appended, Err(eventstore::Error::AccessDenied)),
            "{credentials:?} appends: {appended:?}"
        );
        let read = read(&client, "orders-1").await;
        assert!(
            matches!(read, Err(eventstore::Error::AccessDenied)),
            "{credentials:?} reads: {read:?}"
        );
    }
    let ops = tls_client(&endpoint, Some(("ops", "changeit")), &tls.certificate);
    assert!(
        matches!(
            read(&ops, "orders-1").await,
            Err(eventstore::Error::ResourceNotFound)
        ),
        "nothing was appended by the refused callers"
    );
}

/// Calls Streams.Delete with an empty request as `credentials`: the
/// credentials are checked before the request is.
async fn delete_status(endpoint: &EndpointHandle, credentials: Option<&str>) -> tonic::Status {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", endpoint.local_addr()))
            .expect("a uri")
            .connect()
            .await
            .expect("connected");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(DeleteReq::default());
    if let Some(credentials) = credentials {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.metadata_mut().insert(
            "authorization",
            format!("Basic {token}").parse().expect("ascii"),
        );
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/event_store.client.streams.Streams/Delete",
    );
    let codec = tonic::codec::ProstCodec::<DeleteReq, DeleteResp>::default();
    grpc.unary(request, path, codec)
        .await
        .expect_err("an empty delete request fails")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_users_configured_anonymous_and_wrong_passwords_get_unauthenticated() {
    // Users without TLS are allowed on loopback only: plain HTTP/2 lets the
    // test see the exact gRPC status.
    let (endpoint, _dir) = start(None).await;
    for credentials in [
        None,
        Some("ops:wrong"),
        Some("ops:changeit "),
        Some("nobody:x"),
    ] {
        let status = delete_status(&endpoint, credentials).await;
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{credentials:?}: {status:?}"
        );
    }
    let status = delete_status(&endpoint, Some("ops:changeit")).await;
    assert_ne!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_handshake_succeeds_with_the_certificate_as_root_and_fails_without() {
    let tls = self_signed();
    let (endpoint, _dir) = start(Some(&tls)).await;
    let addr = endpoint.local_addr();
    let handshake = |root: PathBuf| async move {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&root).expect("the certificate");
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(certificate.expect("a PEM certificate"))
                .expect("a root certificate");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("a TCP connection");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let stream = connector.connect(name, tcp).await?;
        Ok::<_, std::io::Error>(stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
    };
    let alpn = handshake(tls.certificate.clone())
        .await
        .expect("a client trusting the self-signed certificate completes the handshake");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "gRPC needs HTTP/2");
    let stranger = self_signed();
    assert!(
        handshake(stranger.certificate.clone()).await.is_err(),
        "a client trusting another certificate refuses the endpoint"
    );
}

#[tokio::test]
async fn binding_every_interface_without_users_and_tls_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("a store"));
    let open = EndpointConfig::listening_on(SocketAddr::from(([0, 0, 0, 0], 0)));
    match Endpoint::bind(store.clone(), open).await {
        Err(EndpointError::Insecure { missing, .. }) => assert_eq!(missing, Missing::UsersAndTls),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(endpoint) => panic!("served openly on {}", endpoint.local_addr()),
    }
}
