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
use aws_sdk_dynamodb::config::{BehaviorVersion, Region, StalledStreamProtectionConfig};
use axum::Router;
pub mod count;
pub mod counting;
pub mod functions;
pub mod live;
pub mod queue;
pub mod s3;
pub mod sqs;
pub mod streams;
pub mod watcher;

pub use counting::{BlobCalls, BlobCounts, CountingBlobs};
pub use functions::{Function, Functions};
pub use live::{LiveHub, LiveLimits};
pub use queue::{LocalDeadLetters, LocalQueue, QueueOptions};
pub use s3::LocalS3;
pub use sqs::SqsPoller;
pub use streams::{StreamOptions, StreamPoller, StreamTarget};
use tally::auth::KeyMaterial;
use tally::clock::SharedClock;
use tally::config::Config;
use tally::domain::InviteKey;
use tally::dynamo::DynamoStore;
use tally::dynamo::table::ensure_table;
use tally::live::LiveKey;
use tally::ports::{BlobStore, DeadLetters, RenderQueue};
use tally::s3::S3Blobs;
use tally::sqs::SqsQueue;
use tally::worker::Worker;
use tokio::sync::oneshot;

/// The dummy credentials local engines accept. Not a secret: they open nothing on AWS.
pub const LOCAL_ACCESS_KEY: &str = "tally-local";
pub const LOCAL_SECRET_KEY: &str = "tally-local-secret";
pub const LOCAL_REGION: &str = "us-east-1";

/// The credentials every local SDK client signs with (DynamoDB, S3, SQS).
pub fn local_credentials() -> Credentials {
    Credentials::new(
        LOCAL_ACCESS_KEY,
        LOCAL_SECRET_KEY,
        None,
        None,
        "tally-local",
    )
}

/// A DynamoDB SDK client for a local endpoint (embedded engine or emulator).
pub fn local_dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    // A local engine facing a thousand simultaneous connections (the race tests) may leave some
    // in its accept backlog for seconds; the SDK's default 3.1 s connect timeout would turn
    // that wait into a failed request, which says nothing about Tally. For the same reason the
    // stalled-stream guard is off: moto answers DynamoDB requests one at a time, so behind a
    // thousand racing ballots on a busy machine a response may not start for more than the
    // guard's five seconds, and a 503 then would be moto's queue, not Tally's.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(30))
        .build();
    let config = aws_sdk_dynamodb::Config::builder()
        .timeout_config(timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(local_credentials())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Gives the engine's stream records an index on their sequence number as a number.
///
/// With the table's stream on, the engine numbers each write's stream record with
/// `SELECT MAX(CAST(sequence_number AS INTEGER)) FROM _stream_records WHERE table_name = ?`,
/// which without an index on that expression reads every record the stream keeps (24 hours
/// of them): every write got slower as the stream grew, and under sustained load the rate
/// decayed minute by minute. With this index SQLite reads one entry. It is created once
/// through a second connection of this process, before the engine serves any request (SQLite's
/// own locking orders the two connections; the engine's queries do not change, SQLite picks
/// the index for them), and `IF NOT EXISTS` makes it a no-op on every later start. An
/// in-memory engine is a named database in SQLite's shared cache, which `path` (its URI)
/// reaches in the same way.
fn index_stream_sequence(path: &str) -> Result<(), String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| format!("open {path}: {e}"))?;
    // The second index serves the per-shard reads (`GetRecords` after a sequence number, a
    // shard's first and last number): with only the first, SQLite walks every record of
    // the table through it and fetches each row to test its shard.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS tally_stream_sequence \
         ON _stream_records (table_name, CAST(sequence_number AS INTEGER)); \
         CREATE INDEX IF NOT EXISTS tally_stream_shard_sequence \
         ON _stream_records (table_name, shard_id, CAST(sequence_number AS INTEGER))",
    )
    .map_err(|e| format!("index the stream records of {path}: {e}"))
}

/// The shortest pause between two TTL sweeps of the embedded engine.
const SWEEP_EVERY: Duration = Duration::from_secs(15 * 60);
/// A pause after a TTL sweep lasts at least this many times the sweep.
const SWEEP_SHARE: u32 = 20;

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
                let db = dynoxide::Database::new(path).map_err(|e| format!("open {path}: {e}"))?;
                // The engine opens its file in WAL mode with SQLite's defaults: `synchronous =
                // FULL`, which syncs the log to the disk on every commit (a few milliseconds
                // each here, under the engine's one lock, so the disk capped every write), and
                // a page cache of 2 MB read through `pread`, so once the table outgrew it every
                // request read its B-tree pages from the kernel again and the rate sank as the
                // table grew. The engine's bulk-loading settings are its public way to a 64 MB
                // cache, memory-mapped reads and `synchronous = OFF`: a commit is handed to the
                // kernel and never waited for. A process killed with `kill -9` loses nothing
                // committed (the kernel still writes what it was given), which is what the dev
                // server must survive; a power cut or an OS crash may leave the file damaged,
                // and the cure is to delete the data folder. Data in a dev server can afford
                // that; the bench measures the dev server with these settings.
                db.enable_bulk_loading()
                    .map_err(|e| format!("set the engine's cache on {path}: {e}"))?;
                index_stream_sequence(path)?;
                db
            }
            None => {
                // A named in-memory database in SQLite's shared cache rather than a private
                // `:memory:` one, so that a second connection of this process can reach it
                // and give it the same index as a file: without it every write of a stack in
                // memory (the tests', the bench's) read every stream record kept so far, and
                // a 10,000-guest job spent nine tenths of its time in those reads. The name is
                // unique per engine; the database lives as long as the engine's connection.
                let uri = format!(
                    "file:tally-{}?mode=memory&cache=shared",
                    uuid::Uuid::new_v4().simple()
                );
                let db = dynoxide::Database::new(&uri).map_err(|e| format!("open {uri}: {e}"))?;
                index_stream_sequence(&uri)?;
                db
            }
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
        // A sweep reads and parses every item of the table (not only those with a TTL), so
        // its cost grows with the table: at a fixed minute, a table that fills with ballots
        // under sustained load spends an ever larger share of the engine's time sweeping,
        // and requests queue behind its pages. So the pause after a sweep is at least
        // `SWEEP_SHARE` times as long as the sweep took: it never takes more than about
        // 1/`SWEEP_SHARE` of the engine, whatever the table holds. Even so a sweep of a big
        // table slows the requests beside it by about a third while it runs (20 s of a table
        // of 1.5 million items, measured under the sustained bench), so sweeps come at most
        // every `SWEEP_EVERY`: the first at start, on what the last run left, then a quarter
        // of an hour apart. Expired rate windows and tombstones wait that long, as they may
        // on DynamoDB for days.
        let swept = db.clone();
        let sweeper = tokio::spawn(async move {
            loop {
                let db = swept.clone();
                let started = std::time::Instant::now();
                let _ = tokio::task::spawn_blocking(move || db.sweep_ttl()).await;
                let pause = SWEEP_EVERY.max(started.elapsed() * SWEEP_SHARE);
                tokio::time::sleep(pause).await;
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
    /// Engine files (`dynamodb.sqlite`, `s3/`) and keys under this folder; survives restarts.
    Dir(PathBuf),
    /// Everything in memory or a temporary folder, keys generated afresh (tests).
    Memory,
    /// An AWS emulator someone else runs (moto: DynamoDB and S3 on one port); keys from the
    /// configuration, as with `Dir`.
    Endpoint(String),
}

/// A function that wraps the render worker's file store (tests inject faults with it).
pub type BlobWrapper = Arc<dyn Fn(Arc<dyn BlobStore>) -> Arc<dyn BlobStore> + Send + Sync>;

/// How to assemble a [`Stack`] beyond its storage.
#[derive(Clone)]
pub struct StackOptions {
    pub dynamo_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    pub clock: SharedClock,
    pub queue: QueueOptions,
    /// The count function's event source mapping (its positions folder is set by
    /// [`Stack::start`] for on-disk storage), or `None` for a stack whose ballots are counted
    /// by hand (the count function's own tests hand it the deliveries they test).
    pub stream: Option<StreamOptions>,
    pub wrap_worker_blobs: Option<BlobWrapper>,
}

impl std::fmt::Debug for StackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackOptions")
            .field("dynamo_addr", &self.dynamo_addr)
            .field("s3_addr", &self.s3_addr)
            .finish_non_exhaustive()
    }
}

impl StackOptions {
    /// Free loopback ports, the given clock, SQS-like queue defaults shortened for local use.
    pub fn local(clock: SharedClock) -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            dynamo_addr: any,
            s3_addr: any,
            clock,
            queue: QueueOptions {
                visibility_timeout: Duration::from_millis(200),
                max_receives: 5,
                concurrency: 2,
            },
            stream: Some(StreamOptions::local()),
            wrap_worker_blobs: None,
        }
    }
}

/// The whole system over local engines: what the dev server serves and what tests call. The
/// in-process queue runs the render worker, as SQS runs the render function on AWS.
#[derive(Debug)]
pub struct Stack {
    pub app: Router,
    pub functions: Functions,
    pub store: DynamoStore,
    pub blobs: S3Blobs,
    pub queue: LocalQueue,
    pub worker: Worker,
    /// The render worker's S3 requests, by kind.
    pub worker_blob_calls: Arc<BlobCalls>,
    pub keys: KeyMaterial,
    /// The DynamoDB (and DynamoDB Streams) endpoint the stack talks to.
    pub dynamo_endpoint: String,
    /// The key guests' invite tokens are derived from (the jobs and render functions'), in the
    /// data folder on disk, generated afresh in memory.
    pub invite_key: InviteKey,
    /// The key live-results passes are signed with (the votes function's and the
    /// authorizer's), kept like the invite key.
    pub live_key: LiveKey,
    /// Live results: the count function publishes here, and watchers subscribe over the
    /// WebSocket on the API's origin.
    pub live: LiveHub,
    /// The embedded engines, unless the stack uses an external endpoint.
    pub dynamo: Option<LocalDynamo>,
    pub s3: Option<LocalS3>,
    /// On an emulator endpoint, jobs are queued through the production SQS adapter to a queue
    /// there, and this poller plays Lambda's event source mapping; `queue` then stays idle.
    pub sqs: Option<SqsPoller>,
    /// That queue's URL, for functions run elsewhere (`TALLY_RENDER_QUEUE_URL`).
    pub sqs_url: Option<String>,
    /// The table's stream → the count function, as the event source mapping runs it on AWS
    /// (unless the options turned it off).
    pub streams: Option<StreamPoller>,
    /// The temporary folder of an in-memory stack's S3 engine, removed on drop.
    _scratch: Option<tempfile::TempDir>,
}

impl Stack {
    /// Starts the engines, creates the table and bucket if needed, loads or makes the keys,
    /// and assembles every function's router on one service.
    pub async fn start(
        config: &Config,
        storage: Storage,
        options: StackOptions,
    ) -> Result<Self, String> {
        let mut scratch = None;
        let (dynamo, s3, keys) = match &storage {
            Storage::Dir(dir) => (
                Some(
                    LocalDynamo::start(Some(&dir.join("dynamodb.sqlite")), options.dynamo_addr)
                        .await?,
                ),
                Some(LocalS3::start(&dir.join("s3"), options.s3_addr).await?),
                tally::lambda::key_material(config)?,
            ),
            Storage::Memory => {
                let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
                let s3 = LocalS3::start(dir.path(), options.s3_addr).await?;
                scratch = Some(dir);
                (
                    Some(LocalDynamo::start(None, options.dynamo_addr).await?),
                    Some(s3),
                    KeyMaterial::generate()?,
                )
            }
            Storage::Endpoint(_) => (None, None, tally::lambda::key_material(config)?),
        };
        let invite_key = match &storage {
            Storage::Memory => InviteKey::generate()?,
            Storage::Dir(_) | Storage::Endpoint(_) => {
                InviteKey::load_or_generate(&config.data_dir)?
            }
        };
        let live_key = match (&storage, &config.live_key) {
            (Storage::Memory, _) => LiveKey::generate()?,
            (_, Some(text)) => LiveKey::from_text(text)?,
            _ => LiveKey::load_or_generate(&config.data_dir)?,
        };
        let live = LiveHub::new(
            live_key.clone(),
            options.clock.clone(),
            LiveLimits::default(),
        );
        let (dynamo_endpoint, s3_endpoint) = match (&storage, &dynamo, &s3) {
            (Storage::Endpoint(endpoint), ..) => (endpoint.clone(), endpoint.clone()),
            (_, Some(d), Some(s)) => (d.endpoint.clone(), s.endpoint.clone()),
            _ => return Err("no storage endpoint".into()),
        };
        let client = local_dynamodb_client(&dynamo_endpoint);
        ensure_table(&client, &config.table).await?;
        let s3_client = s3::local_s3_client(&s3_endpoint);
        s3::ensure_bucket(&s3_client, &config.bucket).await?;
        let store = DynamoStore::new(client, config.table.clone());
        let blobs = S3Blobs::new(s3_client, config.bucket.clone());
        // Counted next to the engine, so a test's own wrapper (which may fail a call on
        // purpose) sits above the count, and the count is what reached S3.
        let worker_blob_calls = Arc::new(BlobCalls::default());
        let counted: Arc<dyn BlobStore> = Arc::new(CountingBlobs::new(
            Arc::new(blobs.clone()),
            worker_blob_calls.clone(),
        ));
        let worker_blobs: Arc<dyn BlobStore> = match &options.wrap_worker_blobs {
            Some(wrap) => wrap(counted),
            None => counted,
        };
        // The local queue's dead-letter queue, on disk beside it when the queue is durable; on
        // an emulator the worker uses a dead-letter queue there instead, as on AWS.
        let local_dead = match &storage {
            Storage::Dir(dir) => LocalDeadLetters::open(&dir.join("queue"))?,
            _ => LocalDeadLetters::memory(),
        };
        let dead_letters: Arc<dyn DeadLetters> = match &storage {
            Storage::Endpoint(endpoint) => {
                let client = sqs::local_sqs_client(endpoint);
                let name = sqs::dead_letter_queue_name_for(&config.table);
                let url = sqs::ensure_queue(&client, &name).await?;
                Arc::new(SqsQueue::new(client, url))
            }
            _ => Arc::new(local_dead.clone()),
        };
        // The worker is another function on AWS: it gets its own store handle, so the API's
        // storage-call counts (which tests assert) never include the worker's background work.
        let worker = Worker {
            store: Arc::new(DynamoStore::new(
                store.client().clone(),
                config.table.clone(),
            )),
            blobs: worker_blobs,
            dead_letters,
            clock: options.clock.clone(),
            public_base_url: config.public_base_url.clone(),
            invite_key: invite_key.clone(),
            max_receives: options.queue.max_receives,
            metrics: config.metrics,
        };
        // On disk the queue keeps its messages beside the engines' files, so a job outlives
        // the process as it would outlive a render function on AWS.
        let queue = match &storage {
            Storage::Dir(dir) => LocalQueue::open(
                worker.clone(),
                options.queue,
                &dir.join("queue"),
                local_dead,
            )?,
            _ => LocalQueue::start(worker.clone(), options.queue, local_dead),
        };
        let (render_queue, sqs) = match &storage {
            Storage::Endpoint(endpoint) => {
                let client = sqs::local_sqs_client(endpoint);
                // The queue is named after the table: the dev server finds its queue (and the
                // work left in it) again after a restart, and each test, which has a table of
                // its own on the shared emulator, gets a queue of its own too.
                let name = sqs::queue_name_for(&config.table);
                let url = sqs::ensure_queue(&client, &name).await?;
                let poller =
                    SqsPoller::start(client.clone(), url.clone(), worker.clone(), options.queue);
                (
                    Arc::new(SqsQueue::new(client, url.clone())) as Arc<dyn RenderQueue>,
                    Some((poller, url)),
                )
            }
            _ => (Arc::new(queue.clone()) as Arc<dyn RenderQueue>, None),
        };
        let (sqs, sqs_url) = sqs.unzip();
        // Counting is another function on AWS too: its own store handle, and positions kept
        // beside the engine's file so a restart resumes where the last run stood.
        let streams = match options.stream.clone() {
            Some(mut stream_options) => {
                if let Storage::Dir(dir) = &storage {
                    stream_options.positions = Some(dir.join("streams"));
                }
                Some(
                    count::start(
                        &dynamo_endpoint,
                        DynamoStore::new(store.client().clone(), config.table.clone()),
                        config,
                        options.clock.clone(),
                        Arc::new(live.clone()),
                        stream_options,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let functions = Functions::new(
            config,
            Arc::new(store.clone()),
            Arc::new(blobs.clone()),
            render_queue,
            options.clock,
            functions::Keys {
                jwt: &keys,
                invite: &invite_key,
                live: &live_key,
            },
        )?;
        // The WebSocket is AppSync's on AWS, not a function's: it joins the router here only.
        let app = functions.all().merge(live.router());
        Ok(Self {
            app,
            functions,
            store,
            blobs,
            queue,
            worker,
            worker_blob_calls,
            keys,
            dynamo_endpoint,
            invite_key,
            live_key,
            live,
            dynamo,
            s3,
            sqs,
            sqs_url,
            streams,
            _scratch: scratch,
        })
    }

    /// Waits until every record on the table's stream written before the call is counted
    /// (tests and the bench read settled results this way, never after a fixed sleep).
    pub async fn settle(&self, limit: Duration) -> Result<(), String> {
        match &self.streams {
            Some(streams) => streams.drained(limit).await,
            None => Err("this stack does not count from its stream".into()),
        }
    }

    /// Stops the engines and waits for them to close their files.
    pub async fn shutdown(self) {
        let Self {
            app,
            functions,
            store,
            queue,
            worker,
            dynamo,
            s3,
            sqs,
            streams,
            ..
        } = self;
        drop((app, functions, store, queue, worker, sqs, streams));
        if let Some(dynamo) = dynamo {
            dynamo.shutdown().await;
        }
        if let Some(s3) = s3 {
            s3.shutdown().await;
        }
    }
}
