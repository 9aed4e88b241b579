//! The test harness: a [`TestApp`] is the whole API (every function's router, the production
//! DynamoDB adapter) over a real local engine, called without a socket, with one helper per
//! thing a client does. Scenarios in `tests/api/` are written against these helpers, so that
//! adding a case is a few lines.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally::auth::{KeyMaterial, TokenIssuer};
use tally::clock::ManualClock;
use tally::config::Config;
use tally::count::Counter;
use tally::domain::UserId;
use tally::dynamo::DynamoStore;
pub use tally_dev::Storage;
pub use tally_dev::{BlobWrapper, Stack, StackOptions};
use tower::ServiceExt;

pub mod stream;

/// The DynamoDB engine under a test: the embedded one, or moto (a second implementation of the
/// wire protocol) when `TALLY_MOTO=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Moto,
}

/// The moto server shared by every test of this process, started on first use. It exits when
/// this process does (it watches its stdin, which only this process holds).
struct Moto {
    endpoint: String,
    _stdin: std::process::ChildStdin,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

fn moto_endpoint() -> Result<String, String> {
    let moto = MOTO.get_or_init(|| {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/moto/serve.py");
        let python = std::env::var("TALLY_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = std::process::Command::new(&python)
            .arg(&script)
            .arg("--exit-with-stdin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {python} {}: {e}", script.display()))?;
        let stdout = child.stdout.take().ok_or("moto has no stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| format!("read moto's address: {e}"))?;
        let endpoint = line
            .trim()
            .strip_prefix("ready ")
            .ok_or_else(|| {
                format!("moto did not start (is `pip install 'moto[server]'` done?): {line:?}")
            })?
            .to_owned();
        let stdin = child.stdin.take().ok_or("moto has no stdin")?;
        Ok(Moto {
            endpoint,
            _stdin: stdin,
        })
    });
    moto.as_ref()
        .map(|m| m.endpoint.clone())
        .map_err(Clone::clone)
}

/// Whether the moto cross-check is switched on (CI sets `TALLY_MOTO=1`).
pub fn moto_enabled() -> bool {
    std::env::var("TALLY_MOTO").is_ok_and(|v| v == "1")
}

/// Says, past the test harness's output capture, that a test did not run.
pub fn announce_skip(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test} on moto: set TALLY_MOTO=1 (after `pip install 'moto[server]'`) to cross-check on a second DynamoDB implementation"
    );
}

/// How long counting may take to catch up before a test fails: generous, for moto and a debug
/// build under the races on two cores; a settled stream answers within milliseconds.
pub const SETTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// A running API over an in-memory engine, with a clock tests can move.
#[derive(Debug)]
pub struct TestApp {
    pub stack: Stack,
    pub clock: ManualClock,
    pub config: Config,
    /// A count function over the app's store and clock, for tests that hand it deliveries
    /// themselves (on an app from [`TestApp::start_counting_by_hand`], whose stack does not
    /// also count from its stream).
    pub counter: Counter,
}

/// A response, with the body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `type` of a problem document.
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// Asserts the status, printing the whole reply when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected reply: {self:#?}");
        self
    }

    /// Asserts a problem+json reply of this status and type slug, complete with request id.
    #[track_caller]
    pub fn expect_problem(self, status: u16, slug: &str) -> Self {
        let reply = self.expect(status);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{reply:#?}"
        );
        assert_eq!(
            reply.problem_type(),
            format!("/problems/{slug}"),
            "{reply:#?}"
        );
        assert_eq!(reply.body["status"], json!(status), "{reply:#?}");
        for member in ["title", "detail", "request_id", "instance"] {
            assert!(
                reply.body[member].is_string(),
                "problem without {member}: {reply:#?}"
            );
        }
        assert_eq!(
            reply.body["request_id"].as_str(),
            reply.header("x-request-id")
        );
        reply
    }
}

/// A request being built: `app.post("/v1/polls").bearer(&t).json(body).send().await`.
#[derive(Debug)]
pub struct Call<'a> {
    app: &'a Router,
    builder: http::request::Builder,
    body: Body,
}

impl Call<'_> {
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sends the request from `ip`, as the socket's peer address (what the local server and
    /// the per-client limits see).
    pub fn from(mut self, ip: &str) -> Self {
        let ip: std::net::IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        self.builder =
            self.builder
                .extension(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                    ip, 40_000,
                )));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.builder = self.builder.header("content-type", "application/json");
        self.body = Body::from(body.to_string());
        self
    }

    /// A raw body with the JSON content type (for malformed and oversize bodies).
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.builder = self.builder.header("content-type", "application/json");
        self.body = Body::from(body.into());
        self
    }

    pub async fn send(self) -> Reply {
        let request = self
            .builder
            .body(self.body)
            .unwrap_or_else(|e| panic!("request: {e}"));
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

/// A signed-in user: its id and tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// A fresh API over an empty in-memory engine, with default configuration except three: a
    /// voter may cast 100 ballots a minute, and one address 10,000 guest ballots, so that the
    /// races (one voter, 50 ballots at once) and the thousand guests (all from the test's one
    /// address) test the duplicate guard rather than the rate limits, and a user may have 100
    /// jobs in flight, so that scenarios starting many jobs test the jobs; the limits have
    /// tests of their own.
    pub async fn start() -> Self {
        Self::start_with(
            &[
                ("TALLY_RATE_LIMIT_VOTES", "100/60"),
                ("TALLY_RATE_LIMIT_GUEST_IP", "10000/60"),
                ("TALLY_RENDER_JOBS_IN_FLIGHT", "100"),
            ],
            Storage::Memory,
        )
        .await
    }

    /// As [`Self::start`], but the stack does not count from its stream: the count function's
    /// own tests hand `counter` the deliveries (replays, overlaps, crashes) they are about.
    pub async fn start_counting_by_hand() -> Self {
        let config = Config::from_lookup(|name| {
            [
                ("TALLY_RATE_LIMIT_VOTES", "100/60"),
                ("TALLY_RATE_LIMIT_GUEST_IP", "10000/60"),
                ("TALLY_RENDER_JOBS_IN_FLIGHT", "100"),
            ]
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let clock = ManualClock::new();
        let mut options = StackOptions::local(Arc::new(clock.clone()));
        options.stream = None;
        Self::start_full(config, Storage::Memory, options, clock).await
    }

    /// A fresh API on `backend`, or `None` (announced loudly) when that backend is switched
    /// off. On moto each app gets a table of its own on the shared server.
    pub async fn on(backend: Backend, test: &str) -> Option<Self> {
        match backend {
            Backend::Embedded => Some(Self::start().await),
            Backend::Moto if !moto_enabled() => {
                announce_skip(test);
                None
            }
            Backend::Moto => {
                let endpoint = moto_endpoint().unwrap_or_else(|e| panic!("TALLY_MOTO=1 but {e}"));
                let table = format!("tally-{}", uuid::Uuid::new_v4().simple());
                // Keys come through configuration, as on Lambda, so nothing is written to disk.
                let keys = KeyMaterial::generate().unwrap_or_else(|e| panic!("{e}"));
                let private = keys.private_pem.unwrap_or_default();
                let invite_key = tally::domain::InviteKey::generate()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .to_text();
                let live_key = tally::live::LiveKey::generate()
                    .unwrap_or_else(|e| panic!("{e}"))
                    .to_text();
                let vars = [
                    ("TALLY_INVITE_KEY", invite_key.as_str()),
                    ("TALLY_LIVE_KEY", live_key.as_str()),
                    ("TALLY_RATE_LIMIT_VOTES", "100/60"),
                    ("TALLY_RATE_LIMIT_GUEST_IP", "10000/60"),
                    ("TALLY_RENDER_JOBS_IN_FLIGHT", "100"),
                    ("TALLY_TABLE", table.as_str()),
                    ("TALLY_JWT_PUBLIC_KEY", keys.public_pem.as_str()),
                    ("TALLY_JWT_PRIVATE_KEY", private.as_str()),
                ];
                Some(Self::start_with(&vars, Storage::Endpoint(endpoint)).await)
            }
        }
    }

    /// An API configured by `vars` (as if they were environment variables) over `storage`.
    pub async fn start_with(vars: &[(&str, &str)], storage: Storage) -> Self {
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let clock = ManualClock::new();
        let options = StackOptions::local(Arc::new(clock.clone()));
        Self::start_full(config, storage, options, clock).await
    }

    /// An API on `storage` assembled with `options` (fault injection, queue timing).
    pub async fn start_full(
        config: Config,
        storage: Storage,
        options: StackOptions,
        clock: ManualClock,
    ) -> Self {
        // Logs go to the test's captured output, so a failing test shows the internal error
        // behind a 500 (which the client, rightly, never sees).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,dynoxide=error"))
            .try_init();
        let stack = Stack::start(&config, storage, options)
            .await
            .unwrap_or_else(|e| panic!("start the stack: {e}"));
        let counter = Counter::new(
            Arc::new(stack.store.clone()),
            Arc::new(clock.clone()),
            Arc::new(tally::live::Unwatched),
        );
        Self {
            stack,
            clock,
            config,
            counter,
        }
    }

    pub fn router(&self) -> &Router {
        &self.stack.app
    }

    pub fn store(&self) -> &DynamoStore {
        &self.stack.store
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: &self.stack.app,
            builder: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Registers `email` and signs in through the API.
    pub async fn sign_up(&self, email: &str) -> Session {
        let user = self
            .post("/v1/auth/register")
            .json(json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .expect(201);
        let tokens = self.login(email, PASSWORD).await.expect(200);
        Session {
            user_id: user.body["id"].as_str().unwrap_or_default().to_owned(),
            email: email.to_owned(),
            access_token: tokens.body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            refresh_token: tokens.body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post("/v1/auth/login")
            .json(json!({ "email": email, "password": password }))
            .send()
            .await
    }

    /// A valid access token for a user that exists only in the token, minted with the
    /// stack's own key: the votes function needs nothing else, and the races need hundreds
    /// of voters without hundreds of Argon2 hashes.
    pub fn mint_token(&self) -> String {
        self.issuer_with(
            &self.stack.keys,
            &self.config.issuer,
            &self.config.audience,
            900,
        )
        .issue(UserId::new(), self.now())
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn issuer_with(&self, keys: &KeyMaterial, iss: &str, aud: &str, ttl: i64) -> TokenIssuer {
        TokenIssuer::new(keys, iss, aud, ttl).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn now(&self) -> time::OffsetDateTime {
        tally::clock::Clock::now(&self.clock)
    }

    /// Creates a poll owned by `owner` from a JSON body and returns the reply (201 expected).
    pub async fn create_poll(&self, owner: &str, body: Value) -> Reply {
        self.post("/v1/polls")
            .bearer(owner)
            .json(body)
            .send()
            .await
            .expect(201)
    }

    /// A public two-option poll ("Pizza", "Soup") owned by `owner`; returns its id.
    pub async fn lunch_poll(&self, owner: &str) -> String {
        let reply = self
            .create_poll(
                owner,
                json!({ "question": "Lunch?", "options": ["Pizza", "Soup"] }),
            )
            .await;
        reply.body["id"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn vote(&self, token: &str, poll: &str, choices: &[&str]) -> Reply {
        self.post(&format!("/v1/polls/{poll}/votes"))
            .bearer(token)
            .json(json!({ "choices": choices }))
            .send()
            .await
    }

    pub async fn results(&self, token: &str, poll: &str) -> Reply {
        self.get(&format!("/v1/polls/{poll}/results"))
            .bearer(token)
            .send()
            .await
    }

    /// Serves the stack on a loopback port (with peer addresses, as the dev server does), for
    /// what needs a real socket: the live-results WebSocket. The server stops on drop.
    pub async fn serve(&self) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let app = self
            .stack
            .app
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Served { addr, task }
    }

    /// A pass to the poll's live results for the caller behind `authorization` (a full
    /// `Authorization` header value).
    pub async fn live_pass(&self, authorization: &str, poll: &str) -> Reply {
        self.post(&format!("/v1/polls/{poll}/live"))
            .header("authorization", authorization)
            .send()
            .await
    }

    /// Waits until every ballot accepted so far has been counted: the stack's stream poller
    /// has read the whole stream and the count function acknowledged it. Panics after
    /// [`SETTLE_PATIENCE`] (a stalled count is a failure, not something to wait out).
    pub async fn settle(&self) {
        self.stack
            .settle(SETTLE_PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("results did not settle: {e}"));
    }

    /// Every item of the table (a paginated scan), in no particular order.
    pub async fn all_items(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .store()
                .client()
                .scan()
                .table_name(self.store().table())
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan: {e:?}"));
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// The results once every ballot accepted before the call is counted ([`Self::settle`]).
    pub async fn settled_results(&self, token: &str, poll: &str) -> Reply {
        self.settle().await;
        self.results(token, poll).await
    }
}

/// Declares scenario functions `async fn name(app: TestApp)` as tests, once per backend:
/// `name::embedded` always runs, `name::moto` runs when `TALLY_MOTO=1` and says so loudly when not.
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn embedded() {
                    let app = $crate::TestApp::on($crate::Backend::Embedded, stringify!($scenario)).await;
                    if let Some(app) = app {
                        super::$scenario(app).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn moto() {
                    let app = $crate::TestApp::on($crate::Backend::Moto, stringify!($scenario)).await;
                    if let Some(app) = app {
                        super::$scenario(app).await;
                    }
                }
            }
        )+
    };
}

/// A plain HTTP GET over loopback (for presigned S3 URLs, which live outside the router).
pub async fn http_get(url: &str) -> (StatusCode, Vec<u8>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    let response = client
        .get(uri)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

/// The entries of a ZIP, in order: name and contents.
pub fn zip_entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .unwrap_or_else(|e| panic!("not a ZIP: {e}"));
    (0..archive.len())
        .map(|i| {
            let mut entry = archive
                .by_index(i)
                .unwrap_or_else(|e| panic!("entry {i}: {e}"));
            let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, bytes)
        })
        .collect()
}

/// One line of a ZIP's `manifest.csv`, as a CSV reader reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ManifestLine {
    pub name: String,
    pub reference: u32,
    pub email: String,
    pub invite_url: String,
    pub file: String,
}

/// The ZIP's `manifest.csv`, read with the `csv` crate: it must start with a UTF-8 byte order
/// mark and have exactly the documented columns.
pub fn manifest_of(zip: &[u8]) -> Vec<ManifestLine> {
    let (_, bytes) = zip_entries(zip)
        .into_iter()
        .find(|(name, _)| name == "manifest.csv")
        .unwrap_or_else(|| panic!("the ZIP has no manifest.csv"));
    let text = bytes
        .strip_prefix("\u{FEFF}".as_bytes())
        .unwrap_or_else(|| panic!("manifest.csv does not start with a byte order mark"));
    let mut reader = csv::Reader::from_reader(text);
    let headers = reader
        .headers()
        .unwrap_or_else(|e| panic!("manifest.csv: {e}"))
        .clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        ["name", "reference", "email", "invite_url", "file"]
    );
    reader
        .deserialize()
        .map(|line| line.unwrap_or_else(|e| panic!("manifest.csv: {e}")))
        .collect()
}

/// What a ZIP says about each entry besides its bytes: its name, its general-purpose flags
/// (read from the local header), its modification time from the extended timestamp field
/// (Unix seconds) and its DOS year.
pub fn zip_entry_facts(zip: &[u8]) -> Vec<(String, u16, Option<u32>, u16)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .unwrap_or_else(|e| panic!("not a ZIP: {e}"));
    (0..archive.len())
        .map(|i| {
            let entry = archive
                .by_index_raw(i)
                .unwrap_or_else(|e| panic!("entry {i}: {e}"));
            let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
            let start = usize::try_from(entry.header_start()).unwrap_or(usize::MAX);
            let flags = zip
                .get(start + 6..start + 8)
                .map_or(0, |f| u16::from_le_bytes([f[0], f[1]]));
            let stamp = entry.extra_data_fields().find_map(|f| match f {
                zip::ExtraField::ExtendedTimestamp(t) => t.mod_time(),
                _ => None,
            });
            let year = entry.last_modified().map_or(0, |t| t.year());
            (name, flags, stamp, year)
        })
        .collect()
}

/// The text a QR code in a PNG encodes.
pub fn decode_qr(png: &[u8]) -> Option<String> {
    let image = image::load_from_memory(png).ok()?.to_luma8();
    let (width, height) = image.dimensions();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        usize::try_from(width).ok()?,
        usize::try_from(height).ok()?,
        |x, y| {
            let (x, y) = (u32::try_from(x).unwrap_or(0), u32::try_from(y).unwrap_or(0));
            image.get_pixel(x, y).0[0]
        },
    );
    let grids = prepared.detect_grids();
    let (_, content) = grids.first()?.decode().ok()?;
    Some(content)
}

impl TestApp {
    /// Follows a job until it is done or failed, checking on every read that progress only
    /// grows and never passes the total. Gives up (panics) after `limit`.
    pub async fn wait_for_job(&self, token: &str, job: &str, limit: std::time::Duration) -> Reply {
        let started = std::time::Instant::now();
        let (mut last_done, mut last_progress) = (0, 0.0);
        loop {
            let reply = self
                .get(&format!("/v1/jobs/{job}"))
                .bearer(token)
                .send()
                .await
                .expect(200);
            let body = &reply.body;
            let (done, total) = (
                body["done"].as_u64().unwrap_or(0),
                body["total"].as_u64().unwrap_or(0),
            );
            let progress = body["progress"].as_f64().unwrap_or(-1.0);
            assert!(
                done >= last_done && progress >= last_progress,
                "progress went back: {body}"
            );
            assert!(
                done <= total && (0.0..=1.0).contains(&progress),
                "progress past the total: {body}"
            );
            (last_done, last_progress) = (done, progress);
            match body["status"].as_str() {
                Some("done" | "failed") => return reply,
                _ if started.elapsed() > limit => {
                    panic!("job {job} did not finish in {limit:?}: {body}")
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// Follows `GET /v1/jobs/{id}/download` to the file: the 302, then the presigned URL.
    pub async fn download(&self, token: &str, job: &str) -> Vec<u8> {
        let redirect = self
            .get(&format!("/v1/jobs/{job}/download"))
            .bearer(token)
            .send()
            .await
            .expect(302);
        let url = redirect.header("location").unwrap_or_default().to_owned();
        let (status, body) = http_get(&url).await;
        assert_eq!(status, StatusCode::OK, "GET {url}");
        body
    }
}

/// The SQS event type the render function receives, for tests that deliver by hand.
pub use aws_lambda_events::event::sqs::SqsEvent;

/// A stack served on a loopback port ([`TestApp::serve`]).
#[derive(Debug)]
pub struct Served {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// The live-results WebSocket's URL.
    pub fn live_url(&self) -> String {
        format!("ws://{}{}", self.addr, tally_dev::live::PATH)
    }

    /// The `host` a watcher names in its authorization.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}
