//! The dev server killed with `kill -9` while counting ballots (below) and in the middle of a render job, then started again on
//! the same data folder, once among the cards and once while the ZIP is being built: the job's
//! messages were on disk (the durable local queue) and a dead builder's claim lapses, so it
//! finishes, with every card exactly once. This runs the real `tally-dev` binary as a child
//! process, since only a real kill shows what survives one.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tally_tests::{PASSWORD, decode_qr, zip_entries};

const GUESTS: usize = 3000;
/// The origin printed on the cards: fixed, because each start of the server listens on a port
/// of its own, and cards rendered before and after the kill must agree.
const PUBLIC_BASE: &str = "http://guests.tally.test";
/// Liveness bounds, not timings: a debug build on a busy two-core machine is slow.
const BUILD_PATIENCE: Duration = Duration::from_secs(30 * 60);
const START_PATIENCE: Duration = Duration::from_secs(120);
const JOB_PATIENCE: Duration = Duration::from_secs(600);

/// Builds the dev server the way `tests/browser/run.mjs` does and returns its path as cargo
/// reports it (which honours `CARGO_TARGET_DIR` and any configured target folder). Cargo sets
/// `CARGO_BIN_EXE_*` only for a binary's own package, and a fresh `cargo test --workspace`
/// does not link this binary at all (its package has no integration tests), so asking cargo
/// is the one way that works from a clean build; when the binary is up to date it takes a
/// second.
fn build_dev_server() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo)
        .args([
            "build",
            "-p",
            "tally-dev",
            "--bin",
            "tally-dev",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run cargo build: {e}"));
    let stdout = build
        .stdout
        .take()
        .unwrap_or_else(|| panic!("cargo's stdout"));
    let reader = std::thread::spawn(move || {
        let mut executable = None;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["reason"] == "compiler-artifact"
                && message["target"]["name"] == "tally-dev"
                && let Some(path) = message["executable"].as_str()
            {
                executable = Some(PathBuf::from(path));
            }
        }
        executable
    });
    let started = Instant::now();
    loop {
        match build.try_wait() {
            Ok(Some(status)) => {
                assert!(
                    status.success(),
                    "cargo build -p tally-dev failed: {status}"
                );
                break;
            }
            Ok(None) if started.elapsed() > BUILD_PATIENCE => {
                let _ = build.kill();
                panic!("cargo build -p tally-dev took longer than {BUILD_PATIENCE:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => panic!("wait for cargo build: {e}"),
        }
    }
    reader
        .join()
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("cargo did not report the tally-dev binary"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

/// One run of the dev server over a data folder; killed when dropped, so that a failing
/// test leaves no process behind.
struct DevServer {
    child: Child,
    base: String,
    log: PathBuf,
}

impl DevServer {
    async fn start(binary: &Path, data: &Path, run: usize) -> Self {
        Self::start_with(binary, data, run, &[]).await
    }

    /// As [`Self::start`], with more environment variables (signing keys, say).
    async fn start_with(binary: &Path, data: &Path, run: usize, vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = data.join(format!("server-{run}.log"));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(binary);
        // Nothing from the test's own environment (an emulator endpoint, say) may change
        // which engines the server runs.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("TALLY_") || name.starts_with("AWS_") {
                command.env_remove(&*name);
            }
        }
        let child = command
            .envs([
                ("TALLY_LISTEN", listen.to_string().as_str()),
                ("TALLY_DYNAMODB_LISTEN", "127.0.0.1:0"),
                ("TALLY_S3_LISTEN", "127.0.0.1:0"),
                ("TALLY_DATA_DIR", data.join("tally").to_str().unwrap_or("")),
                ("TALLY_PUBLIC_BASE_URL", PUBLIC_BASE),
                ("TALLY_RATE_LIMITS", "off"),
                ("RUST_LOG", "warn"),
            ])
            .envs(vars.iter().copied())
            .current_dir(data)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut server = Self {
            child,
            base: format!("http://{listen}"),
            log,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the dev server exited ({status}):\n{}", server.log_text());
            }
            if let Ok((StatusCode::OK, _)) =
                call(Method::GET, &server.url("/v1/health"), None, None).await
            {
                return server;
            }
            assert!(
                started.elapsed() < START_PATIENCE,
                "the dev server did not answer /v1/health within {START_PATIENCE:?}:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown code runs, nothing is flushed by the server.
    fn kill(mut self) {
        self.child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        let status = self.child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One HTTP request to the child: status and body (JSON when it parses, else the raw bytes
/// under `"bytes"`), or the connection error. Redirects are not followed.
async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Reply), String> {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let bytes = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let request = request.body(Full::new(bytes)).map_err(|e| e.to_string())?;
    let response = client().request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((
        status,
        Reply {
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            bytes: body,
            location,
        },
    ))
}

struct Reply {
    json: Value,
    bytes: Vec<u8>,
    location: Option<String>,
}

async fn expect(
    status: StatusCode,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let (got, reply) = call(method.clone(), url, token, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert_eq!(got, status, "{method} {url}: {}", reply.json);
    reply
}

/// The message files the server's durable queue holds right now.
fn queued_files(data: &Path, folder: &str) -> usize {
    std::fs::read_dir(data.join("tally").join("queue").join(folder))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_kill_minus_nine_with_every_card_exactly_once() {
    let binary = tokio::task::spawn_blocking(build_dev_server)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    let first = DevServer::start(&binary, data.path(), 1).await;
    let account = json!({ "email": "owner@example.com", "password": PASSWORD });
    expect(
        StatusCode::CREATED,
        Method::POST,
        &first.url("/v1/auth/register"),
        None,
        Some(account.clone()),
    )
    .await;
    let login = expect(
        StatusCode::OK,
        Method::POST,
        &first.url("/v1/auth/login"),
        None,
        Some(account),
    )
    .await;
    let bearer = format!(
        "Bearer {}",
        login.json["access_token"].as_str().unwrap_or_default()
    );
    let poll = expect(
        StatusCode::CREATED,
        Method::POST,
        &first.url("/v1/polls"),
        Some(&bearer),
        Some(json!({ "question": "Which day suits you?", "options": ["Friday", "Saturday"], "visibility": "invite" })),
    )
    .await
    .json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let guests: Vec<Value> = (0..GUESTS)
        .map(|i| json!({ "name": format!("Guest {i}") }))
        .collect();
    let job = expect(
        StatusCode::ACCEPTED,
        Method::POST,
        &first.url(&format!("/v1/polls/{poll}/invites")),
        Some(&bearer),
        Some(json!({ "guests": guests })),
    )
    .await
    .json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let job_path = format!("/v1/jobs/{job}");

    // Kill it once some chunks are counted and others are not: the ZIP is not begun until the
    // last chunk is counted, so the kill lands in the middle of the cards.
    let started = Instant::now();
    let before = loop {
        let body = expect(
            StatusCode::OK,
            Method::GET,
            &first.url(&job_path),
            Some(&bearer),
            None,
        )
        .await
        .json;
        let done = body["done"].as_u64().unwrap_or(0);
        assert_ne!(
            body["status"], "done",
            "the job finished before the kill: {body}"
        );
        assert_ne!(body["status"], "failed", "{body}");
        if done >= 200 {
            break done;
        }
        assert!(
            started.elapsed() < JOB_PATIENCE,
            "the job made no progress: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();
    let left = queued_files(data.path(), "messages");
    assert!(
        left > 0,
        "after the kill at {before}/{GUESTS}, the unfinished messages are on disk"
    );

    // Kill it again once every card is counted but before the ZIP is stored: the worker that
    // began the ZIP dies holding the claim on it, and the next one must take over.
    let second = DevServer::start(&binary, data.path(), 2).await;
    let total = u64::try_from(GUESTS).unwrap_or(0);
    let started = Instant::now();
    let mut last = 0;
    loop {
        let body = expect(
            StatusCode::OK,
            Method::GET,
            &second.url(&job_path),
            Some(&bearer),
            None,
        )
        .await
        .json;
        let done = body["done"].as_u64().unwrap_or(0);
        assert!(done >= last, "progress went back: {body}");
        last = done;
        assert_eq!(
            body["status"], "running",
            "the job must still be bundling when all cards are counted: {body}"
        );
        if done == total {
            break;
        }
        assert!(
            started.elapsed() < JOB_PATIENCE,
            "the job did not finish its cards after the restart: {body}\n{}",
            second.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.kill();

    let third = DevServer::start(&binary, data.path(), 3).await;
    // The keys are in the data folder too: the token from before the kills still works.
    let started = Instant::now();
    let finished = loop {
        let body = expect(
            StatusCode::OK,
            Method::GET,
            &third.url(&job_path),
            Some(&bearer),
            None,
        )
        .await
        .json;
        match body["status"].as_str() {
            Some("done" | "failed") => break body,
            _ => {
                assert!(
                    started.elapsed() < JOB_PATIENCE,
                    "the job did not finish after the second restart: {body}\n{}",
                    third.log_text()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(
        (
            finished["done"].as_u64(),
            finished["total"].as_u64(),
            finished["failed"].as_u64(),
            finished["progress"].as_f64()
        ),
        (Some(total), Some(total), Some(0), Some(1.0)),
        "{finished}"
    );

    let redirect = expect(
        StatusCode::FOUND,
        Method::GET,
        &third.url(&format!("{job_path}/download")),
        Some(&bearer),
        None,
    )
    .await;
    let location = redirect.location.unwrap_or_default();
    let zip = expect(StatusCode::OK, Method::GET, &location, None, None)
        .await
        .bytes;
    let cards = zip_entries(&zip);
    // Exactly one card per guest: as many entries as guests, each guest's index once, and no
    // two cards alike (each carries its own invite).
    assert_eq!(cards.len(), GUESTS);
    let indexes: HashSet<usize> = cards
        .iter()
        .filter_map(|(name, _)| name.get(..5)?.parse().ok())
        .collect();
    assert_eq!(indexes, (0..GUESTS).collect::<HashSet<_>>());
    let distinct: HashSet<&[u8]> = cards.iter().map(|(_, png)| png.as_slice()).collect();
    assert_eq!(distinct.len(), GUESTS, "two cards are identical");

    // A sample of the cards, from both sides of the kill: each QR code is an invite that votes
    // exactly once.
    let mut tokens = HashSet::new();
    for (name, png) in cards.iter().step_by(60) {
        let url = decode_qr(png).unwrap_or_else(|| panic!("{name}: no readable QR code"));
        let token = url
            .strip_prefix(&format!("{PUBLIC_BASE}/i/"))
            .unwrap_or_else(|| panic!("{name}: {url} is not an invite URL"))
            .to_owned();
        let invite = format!("Invite {token}");
        let votes = third.url(&format!("/v1/polls/{poll}/votes"));
        let ballot = json!({ "choices": ["o1"] });
        expect(
            StatusCode::CREATED,
            Method::POST,
            &votes,
            Some(&invite),
            Some(ballot.clone()),
        )
        .await;
        let again = expect(
            StatusCode::CONFLICT,
            Method::POST,
            &votes,
            Some(&invite),
            Some(ballot),
        )
        .await;
        assert_eq!(again.json["type"], "/problems/already-voted");
        assert!(tokens.insert(token), "{name} repeats another card's invite");
    }
    let results = settled_results(&third, &bearer, &poll, 50).await;
    assert_eq!(results["total"].as_u64(), Some(50), "{results}");

    // Every message was processed and deleted; none was dead-lettered. The last file goes
    // just after the job reads as done, hence the short wait.
    let started = Instant::now();
    while queued_files(data.path(), "messages") > 0 && started.elapsed() < START_PATIENCE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queued_files(data.path(), "messages"), 0);
    assert_eq!(queued_files(data.path(), "dead"), 0);
    third.kill();
}

/// Polls a poll's results until their total reaches `expected` (counting runs behind the
/// 201s by the stream's lag) and returns them; fails after [`JOB_PATIENCE`]. Reaching the
/// number does not prove that no more will be counted: callers that need exactness vote a
/// sentinel ballot after the others and wait for it (see below).
async fn settled_results(server: &DevServer, bearer: &str, poll: &str, expected: u64) -> Value {
    let url = server.url(&format!("/v1/polls/{poll}/results"));
    let started = Instant::now();
    loop {
        let body = expect(StatusCode::OK, Method::GET, &url, Some(bearer), None)
            .await
            .json;
        let total = body["total"].as_u64().unwrap_or(0);
        assert!(total <= expected, "counted more than was accepted: {body}");
        if total == expected {
            return body;
        }
        assert!(
            started.elapsed() < JOB_PATIENCE,
            "results did not settle to {expected}: {body}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A ballot by voter `i` with its own `Idempotency-Key`, so that a request whose answer was
/// lost in the kill can be sent again and get the first answer (or be cast now).
async fn ballot(
    base: &str,
    poll: &str,
    token: &str,
    i: usize,
) -> Result<(StatusCode, Reply), String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/polls/{poll}/votes"))
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", format!("ballot-{i}"))
        .header("content-type", "application/json");
    let body = json!({ "choices": [CHOICES[i % CHOICES.len()]] }).to_string();
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client().request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((
        status,
        Reply {
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
            location: None,
        },
    ))
}

const CHOICES: [&str; 3] = ["o1", "o2", "o3"];

/// Ballots cast in waves at the dev server, which is killed with `kill -9` while the second
/// wave is being answered and counted, then started again on the same data folder. Requests
/// whose answers were lost are sent again with their `Idempotency-Key`, as a client would;
/// the results then settle to exactly the ballots answered 201, option by option: the stream
/// position saved on disk resumes counting where it stood, and the batch in flight at the
/// kill, delivered again, is not counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_survives_kill_minus_nine_and_loses_or_doubles_nothing() {
    const FIRST_WAVE: usize = 300;
    const SECOND_WAVE: usize = 600;
    const KILL_AFTER: usize = 150;
    let binary = tokio::task::spawn_blocking(build_dev_server)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The signing keys come through configuration, so the test can mint voters' tokens
    // (hundreds of voters without hundreds of Argon2 hashes).
    let keys = tally::auth::KeyMaterial::generate().unwrap_or_else(|e| panic!("{e}"));
    let private = keys.private_pem.clone().unwrap_or_default();
    let vars = [
        ("TALLY_JWT_PUBLIC_KEY", keys.public_pem.as_str()),
        ("TALLY_JWT_PRIVATE_KEY", private.as_str()),
    ];
    let config = tally::config::Config::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"));
    let issuer = tally::auth::TokenIssuer::new(&keys, &config.issuer, &config.audience, 3_600)
        .unwrap_or_else(|e| panic!("{e}"));
    let mint = || {
        issuer
            .issue(
                tally::domain::UserId::new(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let voters: Vec<String> = (0..=FIRST_WAVE + SECOND_WAVE).map(|_| mint()).collect();
    let owner = format!("Bearer {}", mint());

    let first = DevServer::start_with(&binary, data.path(), 1, &vars).await;
    let poll = expect(
        StatusCode::CREATED,
        Method::POST,
        &first.url("/v1/polls"),
        Some(&owner),
        Some(json!({ "question": "Which colour?", "options": ["Red", "Green", "Blue"] })),
    )
    .await
    .json["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // A wave of ballots, 32 at a time; each answer is kept per voter.
    let wave = |range: std::ops::Range<usize>, base: String, accepted: Arc<AtomicUsize>| {
        let (poll, voters) = (poll.clone(), voters.clone());
        tokio::spawn(async move {
            futures::stream::iter(range)
                .map(|i| {
                    let (base, poll, token, accepted) = (
                        base.clone(),
                        poll.clone(),
                        voters[i].clone(),
                        accepted.clone(),
                    );
                    async move {
                        let outcome = ballot(&base, &poll, &token, i).await;
                        if matches!(outcome, Ok((StatusCode::CREATED, _))) {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        (i, outcome.map(|(status, _)| status))
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await
        })
    };
    let counter = Arc::new(AtomicUsize::new(0));
    let before = wave(0..FIRST_WAVE, first.base.clone(), counter.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        before
            .iter()
            .all(|(_, s)| matches!(s, Ok(StatusCode::CREATED))),
        "the first wave is accepted whole"
    );

    let second_counter = Arc::new(AtomicUsize::new(0));
    let during = wave(
        FIRST_WAVE..FIRST_WAVE + SECOND_WAVE,
        first.base.clone(),
        second_counter.clone(),
    );
    let started = Instant::now();
    while second_counter.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(started.elapsed() < JOB_PATIENCE, "the second wave stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // How far counting had got just before the kill, for the failure message: if it had
    // caught up, the kill would prove less.
    let counted_before_kill = call(
        Method::GET,
        &first.url(&format!("/v1/polls/{poll}/results")),
        Some(&owner),
        None,
    )
    .await
    .map(|(_, r)| r.json["total"].as_u64().unwrap_or(0))
    .unwrap_or(0);
    first.kill();
    let during = during.await.unwrap_or_else(|e| panic!("{e}"));
    let positions = data.path().join("tally").join("streams");
    assert!(
        std::fs::read_dir(&positions).is_ok_and(|mut d| d.next().is_some()),
        "the stream position is on disk in {}",
        positions.display()
    );

    let second = DevServer::start_with(&binary, data.path(), 2, &vars).await;
    // A client whose request died with the server sends it again; every voter ends with a
    // 201 (the first answer replayed, or the ballot cast now), and no other answer is right.
    let mut lost = 0;
    for (i, status) in during {
        match status {
            Ok(StatusCode::CREATED) => {}
            Ok(other) => panic!("voter {i} was answered {other} before the kill"),
            Err(_) => {
                lost += 1;
                let (status, reply) = ballot(&second.base, &poll, &voters[i], i)
                    .await
                    .unwrap_or_else(|e| panic!("voter {i} again: {e}"));
                assert_eq!(
                    status,
                    StatusCode::CREATED,
                    "voter {i} again: {}",
                    reply.json
                );
            }
        }
    }
    // A sentinel ballot, cast after every other: once it is counted, everything before it on
    // the stream has been counted too, so the total then is final.
    let sentinel = FIRST_WAVE + SECOND_WAVE;
    let (status, _) = ballot(&second.base, &poll, &voters[sentinel], sentinel)
        .await
        .unwrap_or_else(|e| panic!("sentinel: {e}"));
    assert_eq!(status, StatusCode::CREATED);
    let accepted = FIRST_WAVE + SECOND_WAVE + 1;
    let results =
        settled_results(&second, &owner, &poll, u64::try_from(accepted).unwrap_or(0)).await;
    let expected = |k: usize| (0..accepted).filter(|i| i % CHOICES.len() == k).count();
    for k in 0..CHOICES.len() {
        assert_eq!(
            results["options"][k]["votes"].as_u64(),
            u64::try_from(expected(k)).ok(),
            "option {k} after the kill (counted {counted_before_kill} before it, {lost} answers lost): {results}"
        );
    }
    second.kill();
}
