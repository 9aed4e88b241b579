//! Cold start and size of each Lambda binary. The release binaries run under a minimal
//! stand-in for the Lambda Runtime API (an HTTP server on loopback serving one event from
//! `events/`), against the embedded DynamoDB engine; the time from spawning the process to
//! its first `GET /next` (initialisation done) and to its first posted response is measured.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tally::auth::{KeyMaterial, TokenIssuer};
use tally::domain::UserId;
use tokio::sync::{oneshot, watch};

use crate::report::{self, Section};
use crate::stack::Served;

/// How long one process may take to answer its first event.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// A Lambda function: its package, binary, the event it is given, and its memory size in
/// `template.yaml` (which the runtime is told; locally it limits nothing).
#[derive(Debug, Clone, Copy)]
pub struct Lambda {
    pub package: &'static str,
    pub binary: &'static str,
    pub event: &'static str,
    pub memory_mb: u32,
}

pub const FUNCTIONS: [Lambda; 6] = [
    Lambda {
        package: "tally-auth",
        binary: "auth",
        event: "auth-login.json",
        memory_mb: 1024,
    },
    Lambda {
        package: "tally-polls",
        binary: "polls",
        event: "polls-get.json",
        memory_mb: 256,
    },
    Lambda {
        package: "tally-votes",
        binary: "votes",
        event: "votes-cast.json",
        memory_mb: 512,
    },
    Lambda {
        package: "tally-jobs",
        binary: "jobs",
        event: "jobs-get.json",
        memory_mb: 512,
    },
    Lambda {
        package: "tally-pages",
        binary: "pages",
        event: "pages-guest.json",
        memory_mb: 128,
    },
    Lambda {
        package: "tally-render",
        binary: "render",
        event: "render-invites-chunk.json",
        memory_mb: 1769,
    },
];

/// The repository root (this crate lives in `infra/bench`).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the functions' release binaries (one cargo invocation, like the README's) and
/// returns the folder they are in.
pub fn build_release(build: bool) -> Result<PathBuf, String> {
    let root = repository();
    if build {
        let mut command = Command::new(cargo());
        command.current_dir(&root).args(["build", "--release"]);
        for f in FUNCTIONS {
            command.args(["-p", f.package]);
        }
        eprintln!(
            "tally-bench: cold-start: cargo build --release{} (the first build takes long)",
            FUNCTIONS
                .iter()
                .map(|f| format!(" -p {}", f.package))
                .collect::<String>()
        );
        let status = command
            .status()
            .map_err(|e| format!("run cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --release failed ({status})"));
        }
    }
    let metadata = Command::new(cargo())
        .current_dir(&root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("run cargo metadata: {e}"))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let target = metadata["target_directory"]
        .as_str()
        .ok_or("cargo metadata names no target directory")?;
    Ok(Path::new(target).join("release"))
}

/// Figures for one function.
#[derive(Debug, Clone)]
pub struct ColdResult {
    pub lambda: Lambda,
    pub bytes: u64,
    pub zipped_bytes: Option<u64>,
    pub runs: usize,
    pub init_ms: f64,
    pub answer_ms: f64,
    pub answer_min_ms: f64,
    pub answer_max_ms: f64,
    pub status: String,
}

/// Measures every function `runs` times (after one unmeasured start that loads the binary
/// into the page cache).
pub async fn run(runs: usize, build: bool) -> Result<Vec<ColdResult>, String> {
    let dir = tokio::task::spawn_blocking(move || build_release(build))
        .await
        .map_err(|e| e.to_string())??;
    let dynamo = tally_dev::LocalDynamo::start(None, ([127, 0, 0, 1], 0).into()).await?;
    let client = tally_dev::local_dynamodb_client(&dynamo.endpoint);
    let keys = KeyMaterial::generate()?;
    // A live token replaces the events' placeholder, so each function does its real work
    // (verify the token, read storage) rather than stop at a 401.
    let token = TokenIssuer::new(&keys, "tally", "tally-api", 3_600)?
        .issue(UserId::new(), time::OffsetDateTime::now_utc())?;
    let scratch = tempfile_dir()?;
    let mut results = Vec::new();
    for lambda in FUNCTIONS {
        let binary = dir.join(lambda.binary);
        let bytes = std::fs::metadata(&binary)
            .map_err(|e| {
                format!(
                    "{}: {e} (build it: cargo build --release -p {})",
                    binary.display(),
                    lambda.package
                )
            })?
            .len();
        let zipped_bytes = zipped_size(&binary, &scratch.join(lambda.binary))?;
        let event = std::fs::read_to_string(repository().join("events").join(lambda.event))
            .map_err(|e| format!("events/{}: {e}", lambda.event))?
            .replace("REPLACE_WITH_ACCESS_TOKEN", &token);
        let env = environment(lambda, &dynamo.endpoint, &keys);
        let (mut inits, mut answers) = (Vec::new(), Vec::new());
        let mut statuses: Vec<String> = Vec::new();
        for run in 0..=runs {
            eprintln!(
                "tally-bench: cold-start: {} run {run}/{runs}{}",
                lambda.binary,
                if run == 0 { " (warm-up)" } else { "" }
            );
            // A fresh table per start: every start finds what a new deployment finds, and no
            // start is answered by the rate limit that earlier starts' requests used up.
            let table = format!("tally-{}-{run}", lambda.binary);
            tally::dynamo::table::ensure_table(&client, &table).await?;
            let start = start_once(&binary, &env, &table, &event).await?;
            if run > 0 {
                inits.push(start.init);
                answers.push(start.answer);
            }
            if !statuses.contains(&start.status) {
                statuses.push(start.status);
            }
        }
        let answers_ms: Vec<f64> = answers.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        results.push(ColdResult {
            lambda,
            bytes,
            zipped_bytes,
            runs,
            init_ms: report::median_ms(&inits),
            answer_ms: report::median(&answers_ms),
            answer_min_ms: answers_ms.iter().copied().fold(f64::INFINITY, f64::min),
            answer_max_ms: answers_ms.iter().copied().fold(0.0, f64::max),
            status: statuses.join(", "),
        });
    }
    dynamo.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(results)
}

/// A fresh scratch folder for the zipped binaries.
fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("tally-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The size of the deployment package Lambda receives: a ZIP holding the binary as
/// `bootstrap`, deflated (the `zip` command's default level). `None` without a `zip` command.
fn zipped_size(binary: &Path, scratch: &Path) -> Result<Option<u64>, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let bootstrap = scratch.join("bootstrap");
    std::fs::copy(binary, &bootstrap).map_err(|e| format!("copy {}: {e}", binary.display()))?;
    let archive = scratch.join("function.zip");
    let _ = std::fs::remove_file(&archive);
    let zipped = Command::new("zip")
        .current_dir(scratch)
        .args(["-q", "-X", "function.zip", "bootstrap"])
        .status();
    match zipped {
        Ok(status) if status.success() => Ok(Some(
            std::fs::metadata(&archive)
                .map_err(|e| e.to_string())?
                .len(),
        )),
        Ok(status) => Err(format!("zip failed ({status})")),
        Err(_) => Ok(None),
    }
}

/// The environment Lambda gives the function, plus the `TALLY_*` configuration
/// `template.yaml` sets, pointed at the local engine.
fn environment(lambda: Lambda, endpoint: &str, keys: &KeyMaterial) -> Vec<(String, String)> {
    let name = format!("tally-{}", lambda.binary);
    let mut env = vec![
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            lambda.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]bench".into(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_REGION", tally_dev::LOCAL_REGION.into()),
        ("AWS_DEFAULT_REGION", tally_dev::LOCAL_REGION.into()),
        ("AWS_ACCESS_KEY_ID", tally_dev::LOCAL_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", tally_dev::LOCAL_SECRET_KEY.into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        // No instance metadata service here; the SDK must not wait for one.
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("TALLY_BUCKET", "tally-files".into()),
        ("TALLY_S3_PATH_STYLE", "on".into()),
        ("TALLY_PUBLIC_BASE_URL", "http://127.0.0.1:3000".into()),
        ("TALLY_JWT_PUBLIC_KEY", keys.public_pem.clone()),
    ];
    if lambda.binary == "auth" {
        env.push((
            "TALLY_JWT_PRIVATE_KEY",
            keys.private_pem.clone().unwrap_or_default(),
        ));
    }
    // On Lambda the keys come from Secrets Manager; here they are given, as for an emulator.
    if matches!(lambda.binary, "jobs" | "render") {
        env.push((
            "TALLY_INVITE_KEY",
            tally::domain::InviteKey::generate()
                .map(|k| k.to_text())
                .unwrap_or_default(),
        ));
    }
    if lambda.binary == "votes" {
        env.push((
            "TALLY_LIVE_KEY",
            tally::live::LiveKey::generate()
                .map(|k| k.to_text())
                .unwrap_or_default(),
        ));
    }
    // Jobs sends render work there and polls a deleted poll's purge.
    if lambda.binary == "jobs" || lambda.binary == "polls" {
        env.push((
            "TALLY_RENDER_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/tally-render".into(),
        ));
    }
    // The render function hands an unreadable message to the dead-letter queue itself; like
    // the render queue above, the URL is never called during a start.
    if lambda.binary == "render" {
        env.push((
            "TALLY_DEAD_LETTER_QUEUE_URL",
            "http://127.0.0.1:9/000000000000/tally-render-dlq".into(),
        ));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// One start's figures.
#[derive(Debug)]
struct Start {
    init: Duration,
    answer: Duration,
    status: String,
}

/// What the stand-in learned about the process.
#[derive(Debug)]
struct Answer {
    at: Instant,
    body: Bytes,
    error: bool,
}

/// The Runtime API stand-in's state for one process.
struct RuntimeApi {
    event: String,
    request_id: String,
    handed_out: AtomicBool,
    first_next: Mutex<Option<Instant>>,
    answered: Mutex<Option<oneshot::Sender<Answer>>>,
    stop: watch::Receiver<bool>,
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    if !api.handed_out.swap(true, Ordering::SeqCst) {
        *api.first_next
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30_000;
        let mut headers = HeaderMap::new();
        let pairs = [
            ("lambda-runtime-aws-request-id", api.request_id.clone()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:tally-bench".into(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
            ),
            ("content-type", "application/json".into()),
        ];
        for (name, value) in pairs {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
        return (StatusCode::OK, headers, api.event.clone()).into_response();
    }
    // The second `next` is the process waiting for more work: hold it until the bench is
    // done with this process (bounded, should the bench never say so).
    let mut stop = api.stop.clone();
    let _ = tokio::time::timeout(ANSWER_LIMIT, stop.wait_for(|s| *s)).await;
    StatusCode::GONE.into_response()
}

fn answered(api: &RuntimeApi, body: Bytes, error: bool) -> Response {
    let sender = api
        .answered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(sender) = sender {
        let _ = sender.send(Answer {
            at: Instant::now(),
            body,
            error,
        });
    }
    (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
}

async fn response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(_id): UrlPath<String>,
    body: Bytes,
) -> Response {
    answered(&api, body, false)
}

async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(_id): UrlPath<String>,
    body: Bytes,
) -> Response {
    answered(&api, body, true)
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: Bytes) -> Response {
    answered(&api, body, true)
}

/// Starts `binary` once under a fresh stand-in, waits for its first answer, and stops it.
async fn start_once(
    binary: &Path,
    env: &[(String, String)],
    table: &str,
    event: &str,
) -> Result<Start, String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (answer_tx, answer_rx) = oneshot::channel();
    let api = Arc::new(RuntimeApi {
        event: event.to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        handed_out: AtomicBool::new(false),
        first_next: Mutex::new(None),
        answered: Mutex::new(Some(answer_tx)),
        stop: stop_rx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api.clone());
    let served = Served::start(app).await?;
    let address = served.base.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", &address)
        .env("TALLY_TABLE", table)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", binary.display()))?;
    // Wait for the answer, but notice a process that exits without one at once. The answer's
    // time is taken by the stand-in when it arrives, so this polling does not blur it.
    let mut answer_rx = answer_rx;
    let answer = loop {
        tokio::select! {
            answer = &mut answer_rx => break answer.ok(),
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let exited = matches!(child.try_wait(), Ok(Some(_)));
                if exited || started.elapsed() > ANSWER_LIMIT {
                    break None;
                }
            }
        }
    };
    let logs = stop(child).await;
    let _ = stop_tx.send(true);
    served.stop().await;
    let Some(answer) = answer else {
        return Err(format!(
            "{} did not answer (it exited, or {ANSWER_LIMIT:?} passed); its output:\n{logs}",
            binary.display()
        ));
    };
    if answer.error {
        return Err(format!(
            "{} reported an error: {}\n{logs}",
            binary.display(),
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let init_at = api
        .first_next
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .ok_or("the process answered without asking for an event")?;
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let status = match body.get("statusCode") {
        Some(code) => code.to_string(),
        None => "SQS batch response".into(),
    };
    Ok(Start {
        init: init_at.duration_since(started),
        answer: answer.at.duration_since(started),
        status,
    })
}

/// Kills the function's process (which this bench started) and returns what it printed.
async fn stop(mut child: Child) -> String {
    let _ = child.kill();
    tokio::task::spawn_blocking(move || {
        child
            .wait_with_output()
            .map(|out| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default()
}

/// The report's section for these results.
pub fn section(results: &[ColdResult]) -> Section {
    let mut section = Section::new(
        "Lambda binaries: cold start and size (x86_64 release builds)",
        &[
            "function",
            "event",
            "answer",
            "start → ready (ms)",
            "start → first answer (ms)",
            "min–max (ms)",
            "binary",
            "zipped",
        ],
    );
    let runs = results.first().map_or(0, |r| r.runs);
    section.note(format!(
        "Each binary from `cargo build --release{}` (the bench runs it; fat LTO, one codegen \
         unit, symbols stripped by the release profile) is started {runs} times (after one \
         unmeasured start) with Lambda's environment under a stand-in for the Lambda Runtime API on loopback, \
         against the embedded DynamoDB engine. \"Ready\" is its first \
         `GET /2018-06-01/runtime/invocation/next` (configuration read, SDK clients built, the \
         first DynamoDB connection opened); \"first answer\" is its `POST .../response` for the \
         event (`events/`, with a live token). Medians. Not included: what AWS does before the \
         process starts (fetching and unpacking the package, starting the sandbox), and \
         TLS to real endpoints. \"Zipped\" is the deployment package: the binary as \
         `bootstrap` in a ZIP (`zip`, default deflate level). Lambda deploys arm64 builds \
         (`cargo lambda build --release --arm64`), whose sizes differ somewhat.",
        FUNCTIONS
            .iter()
            .map(|f| format!(" -p {}", f.package))
            .collect::<String>()
    ));
    let unmeasured = unmeasured_functions();
    if !unmeasured.is_empty() {
        section.note(format!(
            "Not measured (no event chosen for them in `coldstart::FUNCTIONS` yet): {}.",
            unmeasured.join(", ")
        ));
    }
    for r in results {
        section.row(vec![
            r.lambda.binary.to_owned(),
            format!("`{}`", r.lambda.event),
            r.status.clone(),
            report::ms(r.init_ms),
            report::ms(r.answer_ms),
            format!(
                "{}–{}",
                report::ms(r.answer_min_ms),
                report::ms(r.answer_max_ms)
            ),
            report::mib(r.bytes),
            r.zipped_bytes
                .map_or_else(|| "n/a (no `zip` command)".into(), report::mib),
        ]);
    }
    section
}

/// Function folders under `functions/` that the bench does not start, so that a new function
/// shows up in the report as missing rather than silently absent.
fn unmeasured_functions() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repository().join("functions")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !FUNCTIONS.iter().any(|f| f.binary == name))
        .collect();
    names.sort();
    names
}
