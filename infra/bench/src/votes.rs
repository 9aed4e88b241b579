//! Votes under load: many concurrent HTTP clients on one hot poll, through the dev server's
//! real HTTP stack (`axum::serve` on loopback, every router, the production DynamoDB adapter
//! over the embedded engine). Every run ends with an exactness check that fails the bench.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::Request;
use axum::middleware::Next;
use bytes::Bytes;
use http::{Method, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::report::{self, Section};
use crate::stack::{self, HttpClient, Served};

/// Options of the poll; first ballots cycle through them.
const OPTIONS: [&str; 4] = ["o1", "o2", "o3", "o4"];
/// A request without a reply after this long counts as an error.
const REQUEST_LIMIT: Duration = Duration::from_secs(60);
/// A run that takes longer than this is stopped (the rest of its requests are not sent).
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// How long counting may take to catch up after the last reply before the bench fails.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// How often the lag watcher reads the results during a run: the lag's resolution.
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// The workload of one level.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub clients: usize,
    pub requests: usize,
}

/// One request of the workload: a voter's ballot, and whether it is that voter's first
/// request or a later attempt with another choice.
#[derive(Debug, Clone)]
struct Work {
    voter: usize,
    choice: &'static str,
    duplicate: bool,
}

/// What came back for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Cast,
    AlreadyVoted,
    Error,
}

/// One run's figures.
#[derive(Debug)]
struct Run {
    elapsed: Duration,
    sent: usize,
    cast: usize,
    refused: usize,
    /// Second attempts that got the 201 because they overtook their voter's first request.
    overtaken: usize,
    errors: usize,
    client: hdrhistogram::Histogram<u64>,
    server: hdrhistogram::Histogram<u64>,
    /// 201 → counted, per accepted ballot.
    lag: hdrhistogram::Histogram<u64>,
    first_error: Option<String>,
}

/// The medians over runs of one level.
#[derive(Debug, Clone)]
pub struct LevelResult {
    pub level: Level,
    pub runs: usize,
    pub requests_per_s: f64,
    pub ballots_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_p50_ms: f64,
    pub server_p99_ms: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub errors: usize,
    pub first_error: Option<String>,
    pub ballots: usize,
    pub duplicates: usize,
    /// The median over runs.
    pub overtaken: f64,
}

/// Runs every level `runs` times on one dev-server stack, a fresh poll per run; with
/// `on_disk`, the stack keeps its data in a temporary folder as the dev server does.
pub async fn run(levels: &[Level], runs: usize, on_disk: bool) -> Result<Vec<LevelResult>, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let (stack, _config, issuer) = if on_disk {
        stack::start_stack_on_disk(scratch.path()).await?
    } else {
        stack::start_stack().await?
    };
    // Server-side time per request (from the router receiving it to the response head), so
    // that the report can tell time spent in Tally from time spent queueing for a socket or
    // a core.
    let server_times = Arc::new(Mutex::new(report::histogram()?));
    let timed = server_times.clone();
    let app = stack.app.clone().layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let timed = timed.clone();
            async move {
                let started = Instant::now();
                let response = next.run(req).await;
                report::record(
                    &mut timed.lock().unwrap_or_else(PoisonError::into_inner),
                    started.elapsed(),
                );
                response
            }
        },
    ));
    let served = Served::start(app).await?;
    let (_, owner) = stack::mint(&issuer)?;
    let mut results = Vec::new();
    for level in levels {
        let mut done = Vec::new();
        for run in 0..runs {
            eprintln!(
                "tally-bench: votes: {} clients, {} requests, run {}/{runs}",
                level.clients,
                level.requests,
                run + 1
            );
            server_times
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reset();
            let mut figures = one_run(&stack, &served.base, &issuer, &owner, *level).await?;
            figures.server = server_times
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            done.push(figures);
        }
        results.push(summarise(*level, &done));
    }
    served.stop().await;
    stack.shutdown().await;
    Ok(results)
}

/// Three voters' first ballots, then a second attempt by the first of them, and so on: a
/// quarter of the requests are duplicates, sent a few requests after the first so that at
/// high concurrency many of them race their voter's first ballot.
fn workload(requests: usize) -> (Vec<Work>, usize) {
    let mut work = Vec::with_capacity(requests);
    let mut voters = 0;
    while work.len() < requests {
        let group = voters;
        for _ in 0..3 {
            if work.len() == requests {
                break;
            }
            work.push(Work {
                voter: voters,
                choice: OPTIONS[voters % OPTIONS.len()],
                duplicate: false,
            });
            voters += 1;
        }
        if work.len() < requests {
            work.push(Work {
                voter: group,
                choice: OPTIONS[(group + 1) % OPTIONS.len()],
                duplicate: true,
            });
        }
    }
    (work, voters)
}

async fn one_run(
    stack: &tally_dev::Stack,
    base: &str,
    issuer: &tally::auth::TokenIssuer,
    owner: &str,
    level: Level,
) -> Result<Run, String> {
    let client = stack::http_client();
    let poll = stack::create_poll(
        &client,
        base,
        owner,
        &json!({
            "question": "Which is the hot option?",
            "options": ["North", "East", "South", "West"],
        }),
    )
    .await?;
    let (work, voters) = workload(level.requests);
    // Tokens are minted before the clock starts: signing is the client's cost, not Tally's.
    let mut users = Vec::with_capacity(voters);
    let mut tokens = Vec::with_capacity(voters);
    for _ in 0..voters {
        let (user, token) = stack::mint(issuer)?;
        users.push(user);
        tokens.push(Arc::<str>::from(format!("Bearer {token}")));
    }
    let url: Arc<str> = Arc::from(format!("{base}/v1/polls/{poll}/votes"));
    let work = Arc::new(work);
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let watcher = Watcher::start(client.clone(), base, owner, &poll);
    let started = Instant::now();
    let deadline = started + RUN_LIMIT;
    let mut clients = Vec::with_capacity(level.clients);
    for _ in 0..level.clients {
        let (client, url, work, tokens, next) = (
            client.clone(),
            url.clone(),
            work.clone(),
            tokens.clone(),
            next.clone(),
        );
        clients.push(tokio::spawn(async move {
            client_loop(&client, &url, &work, &tokens, &next, deadline).await
        }));
    }
    let mut outcomes = vec![None; work.len()];
    let mut histogram = report::histogram()?;
    let mut first_error = None;
    let mut accepted_at = Vec::new();
    for handle in clients {
        let (seen, latencies, error) = handle.await.map_err(|e| e.to_string())??;
        for (index, outcome, at) in seen {
            outcomes[index] = Some(outcome);
            if outcome == Outcome::Cast {
                accepted_at.push(at);
            }
        }
        histogram.add(&latencies).map_err(|e| e.to_string())?;
        if first_error.is_none() {
            first_error = error;
        }
    }
    let elapsed = started.elapsed();
    let sent = outcomes.iter().filter(|o| o.is_some()).count();
    if sent < work.len() {
        return Err(format!(
            "votes: the run passed its {RUN_LIMIT:?} limit after {sent} of {} requests",
            work.len()
        ));
    }
    let count = |wanted: Outcome| outcomes.iter().filter(|o| **o == Some(wanted)).count();
    let (cast, refused, errors) = (
        count(Outcome::Cast),
        count(Outcome::AlreadyVoted),
        count(Outcome::Error),
    );
    let overtaken = work
        .iter()
        .zip(&outcomes)
        .filter(|(w, o)| w.duplicate && **o == Some(Outcome::Cast))
        .count();
    // Counting runs behind the 201s: wait for the stream to drain (never a fixed sleep),
    // then for the watcher to have seen the last count, before checking and measuring.
    stack.settle(SETTLE_LIMIT).await?;
    let seen = watcher.stop_at(cast as u64, SETTLE_LIMIT).await?;
    let lag = lags(&mut accepted_at, &seen)?;
    check_exact(stack, &client, base, owner, &poll, &work, &outcomes, &users).await?;
    Ok(Run {
        elapsed,
        sent,
        cast,
        refused,
        overtaken,
        errors,
        client: histogram,
        server: report::histogram()?,
        lag,
        first_error,
    })
}

/// Reads the poll's results through the API every few milliseconds during a run and keeps,
/// each time the total grew, the results' own `counted_at` (when the count function last
/// added to them): so when the k-th ballot was counted, by the server's clock, whatever the
/// reading itself waited for in a saturated server's queue. Several updates between two
/// readings show as the last of them, so the figure errs late, never early.
struct Watcher {
    stop: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<Result<Vec<(SystemTime, u64)>, String>>,
}

impl Watcher {
    fn start(client: HttpClient, base: &str, owner: &str, poll: &str) -> Self {
        let url = format!("{base}/v1/polls/{poll}/results");
        let owner = owner.to_owned();
        let (stop, mut until) = tokio::sync::watch::channel(u64::MAX);
        let task = tokio::spawn(async move {
            let mut seen: Vec<(SystemTime, u64)> = Vec::new();
            loop {
                let reply = stack::send(
                    &client,
                    stack::request(Method::GET, &url, Some(&owner), None)?,
                    REQUEST_LIMIT,
                )
                .await?
                .expect(200, "read the results while voting")?;
                let body = reply.json();
                let total = body["total"].as_u64().unwrap_or(0);
                if seen.last().is_none_or(|(_, last)| total > *last)
                    && let Some(at) = body["counted_at"].as_str()
                {
                    let at = time::OffsetDateTime::parse(
                        at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|e| format!("counted_at {at}: {e}"))?;
                    seen.push((SystemTime::from(at), total));
                }
                if total >= *until.borrow_and_update() {
                    return Ok(seen);
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        });
        Self { stop, task }
    }

    /// Stops once the total reaches `total` and answers what was seen.
    async fn stop_at(self, total: u64, limit: Duration) -> Result<Vec<(SystemTime, u64)>, String> {
        let _ = self.stop.send(total);
        tokio::time::timeout(limit, self.task)
            .await
            .map_err(|_| format!("votes: the results did not reach {total} within {limit:?}"))?
            .map_err(|e| e.to_string())?
    }
}

/// The 201 → counted lag of each accepted ballot: the k-th 201 (in the order the replies
/// came) against the first reading whose total reached k. Counting does not keep the replies'
/// order exactly, so this pairs by rank, which is what a client reading results sees. Both
/// clocks are this machine's wall clock (the bench's stack runs the system clock); a ballot
/// counted before its reply arrived counts as no lag.
fn lags(
    accepted_at: &mut [SystemTime],
    seen: &[(SystemTime, u64)],
) -> Result<hdrhistogram::Histogram<u64>, String> {
    accepted_at.sort_unstable();
    let mut lag = report::histogram()?;
    let mut reading = 0;
    for (k, at) in accepted_at.iter().enumerate() {
        let k = k as u64 + 1;
        while reading < seen.len() && seen[reading].1 < k {
            reading += 1;
        }
        let Some((counted, _)) = seen.get(reading) else {
            return Err(format!("votes: ballot {k} was never seen counted"));
        };
        report::record(&mut lag, counted.duration_since(*at).unwrap_or_default());
    }
    Ok(lag)
}

type ClientResult = (
    Vec<(usize, Outcome, SystemTime)>,
    hdrhistogram::Histogram<u64>,
    Option<String>,
);

/// One client: takes the next request of the workload until none is left (or the run's time
/// is up), sends it, waits for the whole reply, and classifies it.
async fn client_loop(
    client: &HttpClient,
    url: &str,
    work: &[Work],
    tokens: &[Arc<str>],
    next: &AtomicUsize,
    deadline: Instant,
) -> Result<ClientResult, String> {
    let mut seen = Vec::new();
    let mut latencies = report::histogram()?;
    let mut first_error = None;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = work.get(index) else {
            break;
        };
        if Instant::now() > deadline {
            break;
        }
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::AUTHORIZATION, &*tokens[item.voter])
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(format!(
                r#"{{"choices":["{}"]}}"#,
                item.choice
            ))))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let reply = tokio::time::timeout(REQUEST_LIMIT, async {
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await;
        report::record(&mut latencies, started.elapsed());
        let outcome = match reply {
            Ok(Ok((status, _))) if status.as_u16() == 201 => Outcome::Cast,
            Ok(Ok((status, body)))
                if status.as_u16() == 409
                    && serde_json::from_slice::<serde_json::Value>(&body)
                        .is_ok_and(|p| p["type"] == "/problems/already-voted") =>
            {
                Outcome::AlreadyVoted
            }
            Ok(Ok((status, body))) => {
                first_error
                    .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&body)));
                Outcome::Error
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
                Outcome::Error
            }
            Err(_) => {
                first_error.get_or_insert_with(|| format!("no reply in {REQUEST_LIMIT:?}"));
                Outcome::Error
            }
        };
        seen.push((index, outcome, SystemTime::now()));
    }
    Ok((seen, latencies, first_error))
}

/// Ballots and counts must be exact: every voter who got a 201 has exactly one ballot item,
/// nobody else has one, each voter got at most one 201, and the settled results (a different
/// path: counted from the stream) add up to the ballots and to the choices that were accepted.
#[expect(
    clippy::too_many_arguments,
    reason = "one check over everything a run produced"
)]
async fn check_exact(
    stack: &tally_dev::Stack,
    client: &HttpClient,
    base: &str,
    owner: &str,
    poll: &str,
    work: &[Work],
    outcomes: &[Option<Outcome>],
    users: &[tally::domain::UserId],
) -> Result<(), String> {
    let mut accepted: HashMap<usize, usize> = HashMap::new();
    let mut per_option: HashMap<&str, u64> = HashMap::new();
    for (item, outcome) in work.iter().zip(outcomes) {
        if *outcome == Some(Outcome::Cast) {
            *accepted.entry(item.voter).or_default() += 1;
            *per_option.entry(item.choice).or_default() += 1;
        }
    }
    let mut problems = Vec::new();
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    if !twice.is_empty() {
        problems.push(format!(
            "{} voters got more than one 201 (voter {:?})",
            twice.len(),
            twice.first()
        ));
    }
    let mut errors_by_voter = HashSet::new();
    for (item, outcome) in work.iter().zip(outcomes) {
        if *outcome == Some(Outcome::Error) {
            errors_by_voter.insert(item.voter);
        }
    }
    // Ballot items in the table, read straight from the engine (not through Tally).
    let stored = ballot_voters(stack, poll).await?;
    for (voter, user) in users.iter().enumerate() {
        let has_ballot = stored.contains(&format!("u:{user}"));
        let was_accepted = accepted.contains_key(&voter);
        // A request that errored may or may not have been cast; only the others are certain.
        if has_ballot != was_accepted && !errors_by_voter.contains(&voter) {
            problems.push(format!(
                "voter {voter}: ballot stored = {has_ballot}, 201 received = {was_accepted}"
            ));
            break;
        }
    }
    if stored.len() > users.len() {
        problems.push(format!(
            "{} ballot items for {} voters",
            stored.len(),
            users.len()
        ));
    }
    // The results, through the API.
    let reply = stack::send(
        client,
        stack::request(
            Method::GET,
            &format!("{base}/v1/polls/{poll}/results"),
            Some(owner),
            None,
        )?,
        REQUEST_LIMIT,
    )
    .await?
    .expect(200, "read the results")?;
    let results = reply.json();
    let total = results["total"].as_u64().unwrap_or(u64::MAX);
    if total != stored.len() as u64 {
        problems.push(format!(
            "results total {total} != {} ballot items",
            stored.len()
        ));
    }
    if errors_by_voter.is_empty() {
        let cast: u64 = per_option.values().sum();
        if total != cast {
            problems.push(format!("results total {total} != {cast} replies 201"));
        }
        for option in results["options"].as_array().into_iter().flatten() {
            let id = option["id"].as_str().unwrap_or_default();
            let votes = option["votes"].as_u64().unwrap_or(u64::MAX);
            let expected = per_option.get(id).copied().unwrap_or(0);
            if votes != expected {
                problems.push(format!(
                    "option {id}: results say {votes}, 201 replies say {expected}"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "VOTES ARE NOT EXACT on poll {poll}:\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// The voters (`u:<user>`) with a ballot item for `poll`, scanned from the engine.
async fn ballot_voters(stack: &tally_dev::Stack, poll: &str) -> Result<HashSet<String>, String> {
    let voters = stack::ballot_keys(stack, &format!("BALLOT#{poll}#")).await?;
    Ok(voters.into_iter().collect())
}

fn summarise(level: Level, runs: &[Run]) -> LevelResult {
    let per_run = |f: &dyn Fn(&Run) -> f64| report::median(&runs.iter().map(f).collect::<Vec<_>>());
    let ms = |micros: u64| micros as f64 / 1e3;
    LevelResult {
        level,
        runs: runs.len(),
        requests_per_s: per_run(&|r| r.sent as f64 / r.elapsed.as_secs_f64()),
        ballots_per_s: per_run(&|r| r.cast as f64 / r.elapsed.as_secs_f64()),
        p50_ms: per_run(&|r| ms(r.client.value_at_quantile(0.5))),
        p99_ms: per_run(&|r| ms(r.client.value_at_quantile(0.99))),
        max_ms: per_run(&|r| ms(r.client.max())),
        server_p50_ms: per_run(&|r| ms(r.server.value_at_quantile(0.5))),
        server_p99_ms: per_run(&|r| ms(r.server.value_at_quantile(0.99))),
        lag_p50_ms: per_run(&|r| ms(r.lag.value_at_quantile(0.5))),
        lag_p99_ms: per_run(&|r| ms(r.lag.value_at_quantile(0.99))),
        lag_max_ms: per_run(&|r| ms(r.lag.max())),
        errors: runs.iter().map(|r| r.errors).sum(),
        first_error: runs.iter().find_map(|r| r.first_error.clone()),
        ballots: runs.first().map_or(0, |r| r.cast),
        duplicates: runs.first().map_or(0, |r| r.refused),
        overtaken: per_run(&|r| r.overtaken as f64),
    }
}

/// The report's section for these results.
pub fn section(results: &[LevelResult]) -> Section {
    let mut section = Section::new(
        "Votes under load (HTTP, one hot poll)",
        &[
            "clients",
            "requests/run",
            "runs",
            "requests/s",
            "ballots/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server p50 / p99 ms",
            "201→counted p50 / p99 / max ms",
            "errors",
            "exact",
        ],
    );
    section.note(
        "Each run: a new 4-option poll on one dev-server stack (in-memory engines) served with \
         `axum::serve` on loopback; N concurrent clients (hyper-util pooled HTTP/1.1, one \
         connection per request in flight) take requests from a shared list: 3 voters' first \
         ballots, then a second attempt by the first of them with another choice (1 in 4 \
         requests is a duplicate that must get 409, often racing its voter's first ballot; when \
         it wins the race, the first ballot gets the 409 instead). \
         Latency is per request, send to last body byte; \"server\" is the router's own time \
         for the same requests. Figures are medians over runs; errors are summed over runs. \
         Counts come from the table's stream (the dev server's poller → the count function): \
         \"201→counted\" pairs the k-th 201 reply with the `counted_at` of the first results read \
         (every 5 ms, through the API, during the run) whose total reached k. After every run the stream is \
         drained, and the ballot items (scanned from the engine), the 201 replies and the \
         settled results must agree exactly, or the bench fails.",
    );
    for r in results {
        section.row(vec![
            report::grouped(r.level.clients as f64),
            report::grouped(r.level.requests as f64),
            r.runs.to_string(),
            report::grouped(r.requests_per_s),
            report::grouped(r.ballots_per_s),
            report::ms(r.p50_ms),
            report::ms(r.p99_ms),
            report::ms(r.max_ms),
            format!(
                "{} / {}",
                report::ms(r.server_p50_ms),
                report::ms(r.server_p99_ms)
            ),
            format!(
                "{} / {} / {}",
                report::ms(r.lag_p50_ms),
                report::ms(r.lag_p99_ms),
                report::ms(r.lag_max_ms)
            ),
            r.errors.to_string(),
            format!(
                "yes: {} ballots and {} refusals per run; {} second attempts won the race",
                report::grouped(r.ballots as f64),
                report::grouped(r.duplicates as f64),
                report::grouped(r.overtaken)
            ),
        ]);
    }
    if let Some(error) = results.iter().find_map(|r| r.first_error.as_ref()) {
        section.note(format!("First error seen: {error}"));
    }
    section
}
