//! Live results under load: 1,000 watchers of one poll on the dev server's WebSocket while
//! ballots arrive through the API. Reports the publish rate (after the hub's one-a-second
//! pace), the delay from a ballot's 201 to each watcher seeing a count that includes it (p50,
//! p99, max over every watcher and ballot), and the memory each watcher costs (client and
//! server side both, since both run in this process).
//!
//! At the end every watcher must have seen exactly the settled counts, or the bench fails.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use tally_dev::watcher::Watcher;

use crate::machine;
use crate::report::Section;
use crate::stack::{self, Served};

/// What the live part is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub watchers: usize,
    pub ballots: usize,
    /// Ballots a second, sent one after another at this pace.
    pub rate: usize,
}

#[derive(Debug, Clone)]
pub struct LiveResult {
    pub asked: Asked,
    pub publishes: u64,
    pub seconds: f64,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub kib_per_watcher: f64,
    pub connect_s: f64,
}

pub async fn run(asked: Asked) -> Result<LiveResult, String> {
    let (stack, _config, issuer) = stack::start_stack().await?;
    let served = Served::start(stack.app.clone()).await?;
    let client = stack::http_client();
    let (_, owner) = stack::mint(&issuer)?;
    let poll = stack::create_poll(
        &client,
        &served.base,
        &owner,
        &json!({ "question": "Live?", "options": ["Yes", "No"] }),
    )
    .await?;
    let host = served.base.trim_start_matches("http://").to_owned();
    let url = format!("ws://{host}{}", tally_dev::live::PATH);

    // Every watcher gets a pass of its own and subscribes, as a page would.
    let (before_kib, _) = machine::rss_kib();
    let connecting = Instant::now();
    let mut watchers = Vec::with_capacity(asked.watchers);
    for _ in 0..asked.watchers {
        let pass = stack::send(
            &client,
            stack::request(
                Method::POST,
                &format!("{}/v1/polls/{poll}/live", served.base),
                Some(&owner),
                None,
            )?,
            Duration::from_secs(30),
        )
        .await?
        .expect(200, "a live pass")?
        .json();
        let token = pass["pass"].as_str().unwrap_or_default();
        let channel = pass["channel"].as_str().unwrap_or_default();
        let mut watcher = Watcher::connect(&url, &host, token).await?;
        let reply = watcher.subscribe("results", channel, &host, token).await;
        if reply["type"] != "subscribe_success" {
            return Err(format!("subscribe: {reply}"));
        }
        watchers.push(watcher);
    }
    let connect_s = connecting.elapsed().as_secs_f64();
    let (after_kib, _) = machine::rss_kib();
    let kib_per_watcher = after_kib.saturating_sub(before_kib) as f64 / asked.watchers as f64;

    // Each watcher notes when it first saw each total.
    let started = Instant::now();
    let publishes_before = stack.live.stats().publishes.load(Ordering::Relaxed);
    let deliveries_before = stack.live.stats().deliveries.load(Ordering::Relaxed);
    let expected = asked.ballots as u64;
    let tasks: Vec<_> = watchers
        .into_iter()
        .map(|mut watcher| {
            tokio::spawn(async move {
                let mut seen: Vec<(u64, Instant)> = Vec::new();
                let mut last = None;
                while seen.last().map(|(t, _)| *t) != Some(expected) {
                    match watcher.next_results(Duration::from_secs(60)).await {
                        Ok(results) => {
                            seen.push((results.total, Instant::now()));
                            last = Some(results);
                        }
                        Err(e) => return Err(format!("a watcher stopped hearing: {e}")),
                    }
                }
                Ok((seen, last))
            })
        })
        .collect();

    // Ballots, one after another at the asked pace: the 201 time of each.
    let voters: Vec<String> = (0..asked.ballots)
        .map(|_| stack::mint(&issuer).map(|(_, t)| t))
        .collect::<Result<_, _>>()?;
    let pause = Duration::from_secs_f64(1.0 / asked.rate.max(1) as f64);
    let mut accepted_at = Vec::with_capacity(asked.ballots);
    for (i, voter) in voters.iter().enumerate() {
        let choice = if i % 3 == 0 { "o2" } else { "o1" };
        stack::send(
            &client,
            stack::request(
                Method::POST,
                &format!("{}/v1/polls/{poll}/votes", served.base),
                Some(voter),
                Some(&json!({ "choices": [choice] })),
            )?,
            Duration::from_secs(30),
        )
        .await?
        .expect(201, "a ballot")?;
        accepted_at.push(Instant::now());
        tokio::time::sleep(pause).await;
    }
    stack.settle(Duration::from_secs(60)).await?;
    let o2 = (0..asked.ballots).filter(|i| i % 3 == 0).count() as u64;

    let mut delays = hdrhistogram::Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for task in tasks {
        let (seen, last) = task.await.map_err(|e| e.to_string())??;
        let last = last.ok_or("a watcher saw nothing")?;
        if last.votes.get("o2").copied().unwrap_or(0) != o2 || last.total != expected {
            return Err(format!("a watcher's last counts are wrong: {last:?}"));
        }
        // Ballot i (1-based total i) is seen at the first time a total >= i arrived.
        let mut next = 0;
        for (i, accepted) in accepted_at.iter().enumerate() {
            while next < seen.len() && seen[next].0 < (i as u64 + 1) {
                next += 1;
            }
            let Some((_, at)) = seen.get(next) else {
                return Err(format!("ballot {} never reached a watcher", i + 1));
            };
            let delay = at.saturating_duration_since(*accepted).as_micros() as u64;
            delays.record(delay.max(1)).map_err(|e| e.to_string())?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = stack.live.stats();
    Ok(LiveResult {
        asked,
        publishes: stats.publishes.load(Ordering::Relaxed) - publishes_before,
        seconds,
        deliveries: stats.deliveries.load(Ordering::Relaxed) - deliveries_before,
        p50_ms: delays.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: delays.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: delays.max() as f64 / 1000.0,
        kib_per_watcher,
        connect_s,
    })
}

pub fn section(result: &LiveResult) -> Section {
    let mut section = Section::new(
        "Live results: watchers of one poll on the dev server's WebSocket",
        &[
            "watchers",
            "ballots (per s)",
            "publishes (per s)",
            "deliveries",
            "ballot → watcher p50",
            "p99",
            "max",
            "memory per watcher",
            "connect all",
        ],
    );
    section.row(vec![
        result.asked.watchers.to_string(),
        format!("{} ({})", result.asked.ballots, result.asked.rate),
        format!(
            "{} ({:.2})",
            result.publishes,
            result.publishes as f64 / result.seconds.max(f64::EPSILON)
        ),
        result.deliveries.to_string(),
        format!("{:.0} ms", result.p50_ms),
        format!("{:.0} ms", result.p99_ms),
        format!("{:.0} ms", result.max_ms),
        format!("{:.0} KiB", result.kib_per_watcher),
        format!("{:.1} s", result.connect_s),
    ]);
    section.note(
        "Publishes are paced to one a second per poll (the newest counts always go out at the \
         end of the second), so a ballot waits up to a second plus counting (milliseconds) \
         before its watchers see it: the p50 is about half the pace. Memory per watcher is \
         both ends of the socket, as both run in the bench's process; on AWS the server end is \
         AppSync's. Every watcher's last counts equal the settled results, or the bench fails.",
    );
    section
}
