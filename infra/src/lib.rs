//! Local infrastructure: the embedded DynamoDB-compatible engine served on loopback, SDK
//! clients pointed at it, and [`Stack`], the whole API assembled on top. The dev server
//! (`main.rs`) and the integration tests both start a `Stack`, so they run the production
//! adapter and the production routers.
//!
//! The engine (`dynoxide`) lives here and never in a Lambda binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use axum::Router;
use tally::AppState;
use tally::auth::KeyMaterial;
use tally::clock::SharedClock;
use tally::config::Config;
use tally::dynamo::DynamoStore;
use tally::dynamo::table::ensure_table;
use tokio::sync::oneshot;

/// The dummy credentials local engines accept. Not a secret: they open nothing on AWS.
pub const LOCAL_ACCESS_KEY: &str = "tally-local";
pub const LOCAL_SECRET_KEY: &str = "tally-local-secret";
pub const LOCAL_REGION: &str = "us-east-1";

/// A DynamoDB SDK client for a local endpoint (embedded engine or emulator).
pub fn local_dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    // A local engine facing a thousand simultaneous connections (the race tests) may leave some
    // in its accept backlog for seconds; the SDK's default 3.1 s connect timeout would turn
    // that wait into a failed request, which says nothing about Tally.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(30))
        .build();
    let config = aws_sdk_dynamodb::Config::builder()
        .timeout_config(timeouts)
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            LOCAL_ACCESS_KEY,
            LOCAL_SECRET_KEY,
            None,
            None,
            "tally-local",
        ))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The embedded DynamoDB engine, served over HTTP on loopback so that the SDK talks to it
/// exactly as it talks to AWS, and other processes (functions under `cargo lambda watch`)
/// can share it. One engine per data file: two processes on one SQLite file corrupt it.
pub struct LocalDynamo {
    pub endpoint: String,
    pub db: dynoxide::Database,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl LocalDynamo {
    /// Starts the engine on `addr` (port 0 picks a free one) over `file`, or in memory.
    pub async fn start(file: Option<&Path>, addr: SocketAddr) -> Result<Self, String> {
        let db = match file {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let path = path.to_str().ok_or("the data path is not valid UTF-8")?;
                dynoxide::Database::new(path).map_err(|e| format!("open {path}: {e}"))?
            }
            None => dynoxide::Database::memory().map_err(|e| e.to_string())?,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind the DynamoDB engine on {addr}: {e}"))?;
        let endpoint = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let served = db.clone();
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = dynoxide::server::serve_with_shutdown(listener, served, shutdown).await
            {
                tracing::error!(error = %e, "DynamoDB engine stopped");
            }
        });
        // The engine deletes expired items only when asked; DynamoDB does it in the
        // background (up to 48 h late), and no reader relies on it.
        let swept = db.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let db = swept.clone();
                let _ = tokio::task::spawn_blocking(move || db.sweep_ttl()).await;
            }
        });
        Ok(Self {
            endpoint,
            db,
            stop: Some(stop),
            server: Some(server),
            sweeper,
        })
    }

    /// Stops serving and waits until the engine has let go of its data file, so that another
    /// engine may open it (one engine per file).
    pub async fn shutdown(mut self) {
        self.sweeper.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl std::fmt::Debug for LocalDynamo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDynamo")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Where a [`Stack`] keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Engine file and keys under this folder; survives restarts.
    Dir(PathBuf),
    /// Everything in memory, keys generated afresh (tests).
    Memory,
    /// A DynamoDB-compatible engine someone else runs (an emulator such as moto, or another
    /// dev server's engine); keys from the configuration, as with `Dir`.
    Endpoint(String),
}

/// The whole API over a local engine: what the dev server serves and what tests call.
#[derive(Debug)]
pub struct Stack {
    pub app: Router,
    pub state: AppState,
    pub store: DynamoStore,
    pub keys: KeyMaterial,
    /// The embedded engine, unless the stack uses an external endpoint.
    pub dynamo: Option<LocalDynamo>,
}

impl Stack {
    /// Starts the engine (at `dynamo_addr`), creates the table if needed, loads or makes
    /// the keys, and assembles every function's router on one service.
    pub async fn start(
        config: &Config,
        storage: Storage,
        dynamo_addr: SocketAddr,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let (dynamo, keys) = match &storage {
            Storage::Dir(dir) => (
                Some(LocalDynamo::start(Some(&dir.join("dynamodb.sqlite")), dynamo_addr).await?),
                tally::lambda::key_material(config, tally::Function::Auth)?,
            ),
            Storage::Memory => (
                Some(LocalDynamo::start(None, dynamo_addr).await?),
                KeyMaterial::generate()?,
            ),
            Storage::Endpoint(_) => (
                None,
                tally::lambda::key_material(config, tally::Function::Auth)?,
            ),
        };
        let endpoint = match (&storage, &dynamo) {
            (Storage::Endpoint(endpoint), _) => endpoint.clone(),
            (_, Some(local)) => local.endpoint.clone(),
            (_, None) => return Err("no DynamoDB endpoint".into()),
        };
        let client = local_dynamodb_client(&endpoint);
        ensure_table(&client, &config.table).await?;
        let store = DynamoStore::new(client, config.table.clone());
        let state = AppState::new(config, Arc::new(store.clone()), clock, &keys)?;
        let app = tally::app::all_functions(&state);
        Ok(Self {
            app,
            state,
            store,
            keys,
            dynamo,
        })
    }

    /// Stops the engine and waits for it to close its file.
    pub async fn shutdown(self) {
        let Self {
            app,
            state,
            store,
            dynamo,
            ..
        } = self;
        drop((app, state, store));
        if let Some(dynamo) = dynamo {
            dynamo.shutdown().await;
        }
    }
}
