//! Votes sustained: the same HTTP stack as the votes part, loaded without pause for minutes,
//! so that a rate that decays with time (a cache that grows with every request, a table that
//! gets slower as it fills) shows up as a difference between the first and the last minute.
//!
//! Every request is a first ballot. The voters are a pool of pre-minted tokens, and each poll
//! takes one ballot from every voter of the pool before the next poll takes over, so the
//! table keeps growing as it would on a busy day and no token is signed while the clock runs.
//! At the end every poll's ballot items (scanned from the engine), its 201 replies and its
//! results must agree, or the bench fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::report::{self, Section};
use crate::stack::{self, HttpClient, Served};

/// Options of each poll; a voter's choice is `OPTIONS[voter % 4]`.
const OPTIONS: [&str; 4] = ["o1", "o2", "o3", "o4"];
/// Voters in the pool: each poll takes this many ballots.
const POOL: usize = 60_000;
/// The rate the polls are provisioned for: enough polls are created up front for this many
/// ballots a second over the whole run (a faster run stops with an error, it is not cut).
const MAX_RATE: usize = 15_000;
/// The live progress line and the finest rows of the figures.
const INTERVAL: Duration = Duration::from_secs(10);
/// A request without a reply after this long counts as an error.
const REQUEST_LIMIT: Duration = Duration::from_secs(60);
/// How long the results may take to settle after the last ballot (counting may lag).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// What the sustained run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Sustained {
    pub clients: usize,
    pub duration: Duration,
    /// The engines' data on disk (a temporary folder), as the dev server keeps it, rather
    /// than in memory.
    pub on_disk: bool,
}

/// The figures of one stretch of the run (an interval or a minute).
#[derive(Debug, Clone)]
pub struct Stretch {
    /// Seconds since the start, from and to.
    pub from_s: u64,
    pub to_s: u64,
    pub ballots: u64,
    pub errors: u64,
    pub ballots_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The whole run's figures.
#[derive(Debug, Clone)]
pub struct SustainedResult {
    pub asked: Sustained,
    pub minutes: Vec<Stretch>,
    pub intervals: Vec<Stretch>,
    pub whole: Stretch,
    pub polls_used: usize,
    pub first_error: Option<String>,
    /// The last minute's rate over the first minute's.
    pub last_over_first: f64,
}

/// Replies completed in one interval.
struct Tick {
    ballots: u64,
    errors: u64,
    latencies: hdrhistogram::Histogram<u64>,
}

/// What every client writes into while the run goes on.
struct Shared {
    started: Instant,
    ticks: Mutex<Vec<Tick>>,
    first_error: Mutex<Option<String>>,
    /// Per poll and option, the 201 replies.
    accepted: Vec<[AtomicU64; 4]>,
    /// Per poll, requests that ended in an error (their ballot may or may not be stored).
    failed: Vec<AtomicU64>,
}

impl Shared {
    fn record(&self, elapsed: Duration, outcome: Result<(), String>) -> Result<(), String> {
        let at = self.started.elapsed();
        let index = usize::try_from(at.as_secs() / INTERVAL.as_secs()).unwrap_or(usize::MAX);
        let mut ticks = self.ticks.lock().unwrap_or_else(PoisonError::into_inner);
        while ticks.len() <= index {
            ticks.push(Tick {
                ballots: 0,
                errors: 0,
                latencies: report::histogram()?,
            });
        }
        let tick = &mut ticks[index];
        report::record(&mut tick.latencies, elapsed);
        match outcome {
            Ok(()) => tick.ballots += 1,
            Err(e) => {
                tick.errors += 1;
                drop(ticks);
                self.first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
            }
        }
        Ok(())
    }
}

/// Runs the sustained load on one dev-server stack and checks every poll at the end.
pub async fn run(asked: Sustained) -> Result<SustainedResult, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let (stack, _config, issuer) = if asked.on_disk {
        stack::start_stack_on_disk(scratch.path()).await?
    } else {
        stack::start_stack().await?
    };
    let served = Served::start(stack.app.clone()).await?;
    let base = served.base.clone();
    let client = stack::http_client();
    let (_, owner) = stack::mint(&issuer)?;

    let seconds = usize::try_from(asked.duration.as_secs()).unwrap_or(usize::MAX);
    let poll_count = (MAX_RATE.saturating_mul(seconds)).div_ceil(POOL) + 1;
    eprintln!(
        "tally-bench: votes sustained: {} clients for {} s, {} polls of {POOL} voters ({})",
        asked.clients,
        seconds,
        poll_count,
        if asked.on_disk {
            "on disk"
        } else {
            "in memory"
        }
    );
    let mut polls = Vec::with_capacity(poll_count);
    for _ in 0..poll_count {
        let poll = stack::create_poll(
            &client,
            &base,
            &owner,
            &json!({
                "question": "Which is the hot option?",
                "options": ["North", "East", "South", "West"],
            }),
        )
        .await?;
        polls.push(Arc::<str>::from(format!("{base}/v1/polls/{poll}/votes")));
    }
    let poll_ids: Vec<String> = polls
        .iter()
        .map(|url| {
            url.trim_start_matches(&format!("{base}/v1/polls/"))
                .trim_end_matches("/votes")
                .to_owned()
        })
        .collect();
    // Tokens are minted before the clock starts: signing is the client's cost, not Tally's.
    let mut tokens = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        let (_, token) = stack::mint(&issuer)?;
        tokens.push(Arc::<str>::from(format!("Bearer {token}")));
    }
    let bodies: Vec<Bytes> = OPTIONS
        .iter()
        .map(|o| Bytes::from(format!(r#"{{"choices":["{o}"]}}"#)))
        .collect();

    let started = Instant::now();
    let shared = Arc::new(Shared {
        started,
        ticks: Mutex::new(Vec::new()),
        first_error: Mutex::new(None),
        accepted: (0..poll_count).map(|_| Default::default()).collect(),
        failed: (0..poll_count).map(|_| AtomicU64::new(0)).collect(),
    });
    let end = started + asked.duration;
    let next = Arc::new(AtomicUsize::new(0));
    let (polls, tokens, bodies) = (Arc::new(polls), Arc::new(tokens), Arc::new(bodies));
    let mut clients = Vec::with_capacity(asked.clients);
    for _ in 0..asked.clients {
        let (client, polls, tokens, bodies, next, shared) = (
            client.clone(),
            polls.clone(),
            tokens.clone(),
            bodies.clone(),
            next.clone(),
            shared.clone(),
        );
        clients.push(tokio::spawn(async move {
            client_loop(&client, &polls, &tokens, &bodies, &next, &shared, end).await
        }));
    }
    let progress = tokio::spawn(progress(shared.clone(), asked.duration));
    for handle in clients {
        handle.await.map_err(|e| e.to_string())??;
    }
    progress.abort();
    let elapsed = started.elapsed();
    let sent = next.load(Ordering::Relaxed).min(poll_count * POOL);
    let polls_used = sent.div_ceil(POOL).min(poll_count);
    eprintln!(
        "tally-bench: votes sustained: load done after {:.1} s; checking {polls_used} polls",
        elapsed.as_secs_f64()
    );
    check_exact(
        &stack,
        &client,
        &base,
        &owner,
        &poll_ids[..polls_used],
        &shared,
    )
    .await?;

    let mut ticks =
        std::mem::take(&mut *shared.ticks.lock().unwrap_or_else(PoisonError::into_inner));
    // Replies to requests sent just before the end arrive just after it, in an interval that
    // has begun but holds a few milliseconds of the run: they are counted in the last whole
    // one, rather than as a minute of their own with a rate computed over nothing.
    let intervals_run = (asked.duration.as_secs_f64() / INTERVAL.as_secs_f64()).ceil();
    while ticks.len() > 1 && ticks.len() as f64 > intervals_run.max(1.0) {
        if let Some(late) = ticks.pop()
            && let Some(last) = ticks.last_mut()
        {
            last.ballots += late.ballots;
            last.errors += late.errors;
            last.latencies
                .add(&late.latencies)
                .map_err(|e| e.to_string())?;
        }
    }
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let intervals = stretches(&ticks, 1, elapsed)?;
    let per_minute = usize::try_from(60 / INTERVAL.as_secs()).unwrap_or(6);
    let minutes = stretches(&ticks, per_minute, elapsed)?;
    let whole = stretches(&ticks, ticks.len().max(1), elapsed)?
        .into_iter()
        .next()
        .ok_or("no replies at all")?;
    // Only whole minutes compare fairly: a last minute cut short by the end of the run has
    // fewer seconds, not a lower rate, but its rate is computed over its own length anyway.
    let last_over_first = match (minutes.first(), minutes.last()) {
        (Some(first), Some(last)) if first.ballots_per_s > 0.0 => {
            last.ballots_per_s / first.ballots_per_s
        }
        _ => f64::NAN,
    };
    served.stop().await;
    stack.shutdown().await;
    Ok(SustainedResult {
        asked,
        minutes,
        intervals,
        whole,
        polls_used,
        first_error,
        last_over_first,
    })
}

/// One client: takes the next (poll, voter) until the time is up, sends the voter's first
/// ballot in that poll, waits for the whole reply and records it.
async fn client_loop(
    client: &HttpClient,
    polls: &[Arc<str>],
    tokens: &[Arc<str>],
    bodies: &[Bytes],
    next: &AtomicUsize,
    shared: &Shared,
    end: Instant,
) -> Result<(), String> {
    while Instant::now() < end {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let (poll, voter) = (index / POOL, index % POOL);
        let Some(url) = polls.get(poll) else {
            return Err(format!(
                "votes sustained: more than {MAX_RATE} ballots/s; the {} polls made for the run are used up",
                polls.len()
            ));
        };
        let option = voter % OPTIONS.len();
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(&**url)
            .header(header::AUTHORIZATION, &*tokens[voter])
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(bodies[option].clone()))
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
        let outcome = match reply {
            Ok(Ok((status, _))) if status.as_u16() == 201 => {
                shared.accepted[poll][option].fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Ok((status, body))) => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no reply in {REQUEST_LIMIT:?}")),
        };
        if outcome.is_err() {
            shared.failed[poll].fetch_add(1, Ordering::Relaxed);
        }
        shared.record(started.elapsed(), outcome)?;
    }
    Ok(())
}

/// Prints each finished interval's rate and p99 to stderr while the run goes on.
async fn progress(shared: Arc<Shared>, duration: Duration) {
    let mut printed = 0;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(shared.started) + INTERVAL + Duration::from_millis(200),
        INTERVAL,
    );
    loop {
        tick.tick().await;
        let ticks = shared.ticks.lock().unwrap_or_else(PoisonError::into_inner);
        let done = usize::try_from(shared.started.elapsed().as_secs() / INTERVAL.as_secs())
            .unwrap_or(0)
            .min(ticks.len());
        for (i, t) in ticks.iter().enumerate().take(done).skip(printed) {
            let from = i as u64 * INTERVAL.as_secs();
            eprintln!(
                "tally-bench: votes sustained: {from:>4}–{:<4} s of {}: {:>6} ballots/s, p50 {} ms, p99 {} ms, {} errors",
                from + INTERVAL.as_secs(),
                duration.as_secs(),
                report::grouped(t.ballots as f64 / INTERVAL.as_secs_f64()),
                report::ms(t.latencies.value_at_quantile(0.5) as f64 / 1e3),
                report::ms(t.latencies.value_at_quantile(0.99) as f64 / 1e3),
                t.errors
            );
        }
        printed = printed.max(done);
    }
}

/// Groups the intervals `size` at a time into stretches, each with its rate over its own
/// length (the last one may be shorter: the run ends where it ends).
fn stretches(ticks: &[Tick], size: usize, elapsed: Duration) -> Result<Vec<Stretch>, String> {
    let mut out = Vec::new();
    for (n, group) in ticks.chunks(size.max(1)).enumerate() {
        let from = n as u64 * size as u64 * INTERVAL.as_secs();
        let nominal_to = from + group.len() as u64 * INTERVAL.as_secs();
        let to_s = (elapsed.as_secs_f64()).min(nominal_to as f64);
        let length = (to_s - from as f64).max(0.001);
        let mut latencies = report::histogram()?;
        let (mut ballots, mut errors) = (0, 0);
        for t in group {
            latencies.add(&t.latencies).map_err(|e| e.to_string())?;
            ballots += t.ballots;
            errors += t.errors;
        }
        out.push(Stretch {
            from_s: from,
            to_s: to_s.round() as u64,
            ballots,
            errors,
            ballots_per_s: ballots as f64 / length,
            p50_ms: latencies.value_at_quantile(0.5) as f64 / 1e3,
            p99_ms: latencies.value_at_quantile(0.99) as f64 / 1e3,
            max_ms: latencies.max() as f64 / 1e3,
        });
    }
    Ok(out)
}

/// Every poll's ballot items, 201 replies and results must agree: as many ballot items as
/// 201s (plus at most the requests that errored, which may or may not have been stored), and
/// once counting has caught up, results that add up to the ballot items, option by option
/// equal to the 201s when nothing errored.
async fn check_exact(
    stack: &tally_dev::Stack,
    client: &HttpClient,
    base: &str,
    owner: &str,
    polls: &[String],
    shared: &Shared,
) -> Result<(), String> {
    let stored = ballots_per_poll(stack).await?;
    let mut problems = Vec::new();
    for (index, poll) in polls.iter().enumerate() {
        let accepted: Vec<u64> = shared.accepted[index]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        let cast: u64 = accepted.iter().sum();
        let failed = shared.failed[index].load(Ordering::Relaxed);
        let items = stored.get(poll.as_str()).copied().unwrap_or(0);
        if items < cast || items > cast + failed {
            problems.push(format!(
                "poll {poll}: {items} ballot items, {cast} replies 201, {failed} errors"
            ));
            continue;
        }
        // Counting may trail the ballots: wait (bounded) for the results to catch up.
        let settle_by = Instant::now() + SETTLE_LIMIT;
        let results = loop {
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
            if results["total"].as_u64() == Some(items) || Instant::now() > settle_by {
                break results;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let total = results["total"].as_u64().unwrap_or(u64::MAX);
        if total != items {
            problems.push(format!(
                "poll {poll}: results total {total} != {items} ballot items (after {SETTLE_LIMIT:?})"
            ));
            continue;
        }
        if failed == 0 {
            for option in results["options"].as_array().into_iter().flatten() {
                let id = option["id"].as_str().unwrap_or_default();
                let votes = option["votes"].as_u64().unwrap_or(u64::MAX);
                let expected = OPTIONS
                    .iter()
                    .position(|o| *o == id)
                    .map_or(0, |i| accepted[i]);
                if votes != expected {
                    problems.push(format!(
                        "poll {poll}, option {id}: results say {votes}, 201 replies say {expected}"
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "VOTES ARE NOT EXACT:\n  {}",
            problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ))
    }
}

/// The number of ballot items per poll (`BALLOT#<poll>#<voter>`), from one scan of the
/// engine's table (not through Tally).
async fn ballots_per_poll(stack: &tally_dev::Stack) -> Result<HashMap<String, u64>, String> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for key in stack::ballot_keys(stack, "BALLOT#").await? {
        if let Some((poll, _voter)) = key.split_once('#') {
            *counts.entry(poll.to_owned()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// The report's section: one row per minute, the whole run, and the last minute against the
/// first.
pub fn section(result: &SustainedResult) -> Section {
    let mut section = Section::new(
        "Votes sustained (HTTP, first ballots without pause)",
        &[
            "minute",
            "ballots",
            "ballots/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
        ],
    );
    section.note(format!(
        "One dev-server stack ({}) served with `axum::serve` on loopback; {} concurrent clients \
         (hyper-util pooled HTTP/1.1) send first ballots without pause for {} s: a pool of \
         {POOL} pre-minted voters votes in one 4-option poll, then in the next ({} polls used), \
         so the table grows all along. Latency is per request, send to last body byte, \
         counted in the minute the reply ended. At the end every poll's ballot items (scanned \
         from the engine), 201 replies and settled results agreed exactly (the bench fails \
         otherwise).",
        if result.asked.on_disk {
            "engines on disk in a temporary folder, as the dev server keeps its data"
        } else {
            "in-memory engines"
        },
        result.asked.clients,
        result.asked.duration.as_secs(),
        result.polls_used,
    ));
    for m in &result.minutes {
        section.row(stretch_row(&format!("{}–{} s", m.from_s, m.to_s), m));
    }
    section.row(stretch_row("whole run", &result.whole));
    section.note(format!(
        "Last minute against the first: {:.2} of its rate.",
        result.last_over_first
    ));
    if let Some(error) = &result.first_error {
        section.note(format!("First error seen: {error}"));
    }
    section
}

fn stretch_row(label: &str, s: &Stretch) -> Vec<String> {
    vec![
        label.to_owned(),
        report::grouped(s.ballots as f64),
        report::grouped(s.ballots_per_s),
        report::ms(s.p50_ms),
        report::ms(s.p99_ms),
        report::ms(s.max_ms),
        s.errors.to_string(),
    ]
}
