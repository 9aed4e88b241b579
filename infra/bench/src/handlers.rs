//! In-process handler cost: requests handed to each function's own router (`Functions::app`,
//! the service Lambda runs) without a socket, over the production DynamoDB adapter and the
//! embedded engine. Shared by the bench command (medians for the report) and the divan target
//! `benches/handlers.rs` (distributions, for spotting regressions in microseconds).

use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tally::auth::TokenIssuer;
use tally::domain::PollId;
use tally::ports::PollStore;
use tally_dev::Function;
use tally_dev::Stack;
use tower::ServiceExt;

use crate::report::{self, Section};
use crate::stack;

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// A running stack with one registered user and one poll, and each function's router.
/// Requests run on the fixture's own multi-threaded runtime, so the engine's tasks keep
/// running while a benchmark thread waits on a reply.
pub struct Fixture {
    pub stack: Stack,
    issuer: TokenIssuer,
    pub owner: String,
    pub poll: String,
    pub auth: Router,
    pub polls: Router,
    pub votes: Router,
    /// Declared last so that it is dropped last: the stack's tasks live on it.
    pub runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    pub fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (stack, _config, issuer) = runtime.block_on(stack::start_stack())?;
        let auth = stack.functions.app(Function::Auth);
        let polls = stack.functions.app(Function::Polls);
        let votes = stack.functions.app(Function::Votes);
        let (_, owner) = stack::mint(&issuer)?;
        let mut fixture = Self {
            stack,
            issuer,
            owner,
            poll: String::new(),
            auth,
            polls,
            votes,
            runtime,
        };
        let (status, _) = fixture.send(
            &fixture.auth,
            json_request(
                Method::POST,
                "/v1/auth/register",
                None,
                &json!({ "email": EMAIL, "password": PASSWORD }),
            )?,
        )?;
        expect(status, StatusCode::CREATED, "register")?;
        let (status, body) = fixture.send(
            &fixture.polls,
            json_request(
                Method::POST,
                "/v1/polls",
                Some(&fixture.owner),
                &json!({ "question": "Lunch?", "options": ["Pizza", "Soup", "Salad"] }),
            )?,
        )?;
        expect(status, StatusCode::CREATED, "create a poll")?;
        fixture.poll = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or("the created poll has no id")?;
        Ok(fixture)
    }

    /// A token for a new voter (a user who exists only in the token).
    pub fn voter(&self) -> Result<String, String> {
        Ok(stack::mint(&self.issuer)?.1)
    }

    pub fn vote_request(&self, voter: &str) -> Result<Request<Body>, String> {
        json_request(
            Method::POST,
            &format!("/v1/polls/{}/votes", self.poll),
            Some(voter),
            &json!({ "choices": ["o1"] }),
        )
    }

    pub fn results_request(&self) -> Result<Request<Body>, String> {
        empty_request(&format!("/v1/polls/{}/results", self.poll), &self.owner)
    }

    pub fn get_poll_request(&self) -> Result<Request<Body>, String> {
        empty_request(&format!("/v1/polls/{}", self.poll), &self.owner)
    }

    pub fn login_request(&self) -> Result<Request<Body>, String> {
        json_request(
            Method::POST,
            "/v1/auth/login",
            None,
            &json!({ "email": EMAIL, "password": PASSWORD }),
        )
    }

    /// Hands `request` to `router` and reads the whole response body.
    pub fn send(
        &self,
        router: &Router,
        request: Request<Body>,
    ) -> Result<(StatusCode, bytes::Bytes), String> {
        self.runtime.block_on(async {
            let response = router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|e| match e {});
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        })
    }

    /// One storage read on its own: the poll item, through the adapter and the SDK to the
    /// engine and back. Every handler here pays this at least once.
    pub fn read_poll(&self) -> Result<(), String> {
        let id = PollId::from_str(&self.poll).map_err(|e| e.to_string())?;
        self.runtime
            .block_on(self.stack.store.poll(id))
            .map_err(|e| e.to_string())?
            .map(|_| ())
            .ok_or_else(|| "the poll is gone".into())
    }

    /// Token verification on its own (EdDSA signature and claims).
    pub fn verify_token(&self, token: &str) -> Result<(), String> {
        self.stack
            .functions
            .polls
            .gate
            .verifier
            .verify(token)
            .map(|_| ())
            .ok_or_else(|| "the token did not verify".into())
    }
}

fn json_request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> Result<Request<Body>, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder
        .body(Body::from(body.to_string()))
        .map_err(|e| e.to_string())
}

fn empty_request(path: &str, token: &str) -> Result<Request<Body>, String> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .map_err(|e| e.to_string())
}

fn expect(status: StatusCode, expected: StatusCode, what: &str) -> Result<(), String> {
    if status == expected {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected}, got {status}"))
    }
}

/// What a case times.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Vote,
    Results,
    GetPoll,
    Login,
    StorageRead,
    VerifyToken,
}

/// One measured case: what to prepare (untimed) and what to time.
struct Case {
    kind: Kind,
    name: &'static str,
    route: &'static str,
    calls_per_run: usize,
    /// Storage calls the case makes, measured with `DynamoStore::calls`.
    storage_calls: Option<u64>,
}

/// The medians of one case.
#[derive(Debug, Clone)]
pub struct HandlerResult {
    pub name: &'static str,
    pub route: &'static str,
    pub storage_calls: Option<u64>,
    pub median_us: f64,
    pub p99_us: f64,
    pub samples: usize,
}

/// Times each case in `runs` runs (after a warm-up), sequentially, one request at a time.
pub fn run(runs: usize) -> Result<Vec<HandlerResult>, String> {
    let fixture = Fixture::start()?;
    let cases = [
        Case {
            kind: Kind::Vote,
            name: "vote (first ballot)",
            route: "POST /v1/polls/{id}/votes",
            calls_per_run: 200,
            // The conditional put alone: the poll comes from the instance's cache (read once
            // a second), the options lock is taken once, and the bench runs without rate
            // limits (with them, the voter's rate window adds one).
            storage_calls: Some(1),
        },
        Case {
            kind: Kind::Results,
            name: "results",
            route: "GET /v1/polls/{id}/results",
            calls_per_run: 300,
            storage_calls: Some(1),
        },
        Case {
            kind: Kind::GetPoll,
            name: "get poll",
            route: "GET /v1/polls/{id}",
            calls_per_run: 300,
            storage_calls: Some(1),
        },
        Case {
            kind: Kind::Login,
            name: "login",
            route: "POST /v1/auth/login",
            calls_per_run: 10,
            storage_calls: Some(2),
        },
        Case {
            kind: Kind::StorageRead,
            name: "  of which: one storage read",
            route: "GetItem (poll), adapter → SDK → engine",
            calls_per_run: 300,
            storage_calls: Some(1),
        },
        Case {
            kind: Kind::VerifyToken,
            name: "  of which: verify a token",
            route: "EdDSA JWT check",
            calls_per_run: 1_000,
            storage_calls: Some(0),
        },
    ];
    let mut results = Vec::new();
    for case in cases {
        eprintln!("tally-bench: handlers: {}", case.name);
        let mut samples = Vec::new();
        let mut run_medians = Vec::new();
        // The first run warms connections and caches and is not counted.
        for run in 0..=runs {
            let mut times = Vec::with_capacity(case.calls_per_run);
            let calls_before = fixture.stack.store.calls();
            let started = Instant::now();
            for _ in 0..case.calls_per_run {
                times.push(one_call(&fixture, case.kind, case.name)?);
            }
            let made = fixture.stack.store.calls() - calls_before;
            let expected = case.storage_calls.unwrap_or(0) * case.calls_per_run as u64;
            // The warm-up run also fills the caches (the poll, the options lock): only the
            // warm runs must match, and the votes function's poll cache may read the poll
            // again once per second of the run.
            let refreshes = started.elapsed().as_secs() + 1;
            let matches = (expected..=expected + refreshes).contains(&made);
            if run > 0 && case.storage_calls.is_some() && !matches {
                return Err(format!(
                    "{}: {made} storage calls for {} requests, expected {expected}",
                    case.name, case.calls_per_run
                ));
            }
            if run > 0 {
                run_medians.push(report::median(&times));
                samples.extend(times);
            }
        }
        samples.sort_by(f64::total_cmp);
        let p99_index = ((samples.len() as f64) * 0.99).ceil() as usize;
        results.push(HandlerResult {
            name: case.name,
            route: case.route,
            storage_calls: case.storage_calls,
            median_us: report::median(&run_medians),
            p99_us: samples
                .get(p99_index.saturating_sub(1))
                .copied()
                .unwrap_or(0.0),
            samples: samples.len(),
        });
    }
    let Fixture { stack, runtime, .. } = fixture;
    runtime.block_on(stack.shutdown());
    Ok(results)
}

/// Prepares one request of `case` (untimed), times the call, and checks its status.
fn one_call(fixture: &Fixture, kind: Kind, case: &str) -> Result<f64, String> {
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let timed = |router: &Router, request: Request<Body>, want: StatusCode| {
        let started = Instant::now();
        let (status, body) = fixture.send(router, request)?;
        let elapsed = started.elapsed();
        if status != want {
            return Err(format!(
                "{case}: expected {want}, got {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(micros(elapsed))
    };
    match kind {
        Kind::Vote => {
            let request = fixture.vote_request(&fixture.voter()?)?;
            timed(&fixture.votes, request, StatusCode::CREATED)
        }
        Kind::Results => timed(&fixture.votes, fixture.results_request()?, StatusCode::OK),
        Kind::GetPoll => timed(&fixture.polls, fixture.get_poll_request()?, StatusCode::OK),
        Kind::Login => timed(&fixture.auth, fixture.login_request()?, StatusCode::OK),
        Kind::StorageRead => {
            let started = Instant::now();
            fixture.read_poll()?;
            Ok(micros(started.elapsed()))
        }
        Kind::VerifyToken => {
            let token = fixture.voter()?;
            let started = Instant::now();
            fixture.verify_token(&token)?;
            Ok(micros(started.elapsed()))
        }
    }
}

/// The report's section for these results.
pub fn section(results: &[HandlerResult], runs: usize) -> Section {
    let mut section = Section::new(
        "Handlers in process (no socket)",
        &[
            "handler",
            "route",
            "storage calls",
            "median µs",
            "p99 µs",
            "samples",
        ],
    );
    section.note(format!(
        "Each request is handed to its function's own router (`Functions::app`, what Lambda \
         runs) with `tower::ServiceExt::oneshot`, one at a time, over the production DynamoDB \
         adapter and the embedded engine on loopback; the storage calls are counted on every \
         run and must match. Median of {runs} runs' medians (after a warm-up run); p99 over all \
         samples. The two indented rows time parts of those handlers on their own. For \
         distributions and regressions run the divan target: \
         `cargo bench -p tally-bench --bench handlers`."
    ));
    for r in results {
        section.row(vec![
            r.name.trim().replace("of which:", "↳").to_string(),
            format!("`{}`", r.route),
            r.storage_calls.map_or("-".into(), |n| n.to_string()),
            report::us(r.median_us),
            report::us(r.p99_us),
            report::grouped(r.samples as f64),
        ]);
    }
    section
}
