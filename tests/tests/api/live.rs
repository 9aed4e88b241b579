//! Live results: a watcher subscribes over the WebSocket (the AppSync Events protocol the
//! pages speak), ballots arrive through the API, the count function publishes, and the watcher
//! sees exactly the settled counts. Who may watch follows the poll's `results` rule.

use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::future::join_all;
use serde_json::{Value, json};
use tally::clock::SystemClock;
use tally::domain::{PollId, Tally};
use tally::live::{LiveResults, Paced};
use tally::ports::ResultsFeed;
use tally_dev::Storage;
use tally_dev::watcher::Watcher;
use tally_tests::{Served, TestApp};

/// How long a published change may take to reach a watcher: the publish pace is one second,
/// counting follows ballots by milliseconds; the rest is margin for a loaded debug build.
const PATIENCE: Duration = Duration::from_secs(20);

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A pass for `authorization`'s caller, connected and subscribed to `poll`'s channel.
async fn watch(app: &TestApp, served: &Served, authorization: &str, poll: &str) -> Watcher {
    let pass = app.live_pass(authorization, poll).await.expect(200);
    let (channel, token) = (
        pass.body["channel"].as_str().unwrap_or_default(),
        pass.body["pass"].as_str().unwrap_or_default(),
    );
    let mut watcher = Watcher::connect(&served.live_url(), &served.host(), token)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let reply = watcher
        .subscribe("results", channel, &served.host(), token)
        .await;
    assert_eq!(reply["type"], "subscribe_success", "{reply}");
    watcher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_receives_the_exact_settled_counts() {
    let app = TestApp::start().await;
    let served = app.serve().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let pass = app.live_pass(&bearer(&owner), &poll).await.expect(200);
    assert_eq!(pass.body["channel"], format!("/results/{poll}"));
    assert_eq!(pass.body["protocol"], "aws-appsync-event-ws");
    assert_eq!(
        pass.header("cache-control"),
        Some("no-store"),
        "a pass is a credential"
    );
    let mut watcher = watch(&app, &served, &bearer(&owner), &poll).await;
    // A guest of the audience watches too, with a pass of their own.
    let voter = app.mint_token();
    let mut audience = watch(&app, &served, &bearer(&voter), &poll).await;

    // 40 voters at once: 25 for Pizza, 15 for Soup.
    let voters: Vec<String> = (0..40).map(|_| app.mint_token()).collect();
    let ballots = voters.iter().enumerate().map(|(i, token)| {
        let choice = if i < 25 { "o1" } else { "o2" };
        let app = &app;
        let poll = poll.clone();
        async move { app.vote(token, &poll, &[choice]).await.status }
    });
    let statuses = join_all(ballots).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 201), "{statuses:?}");
    let settled = app.settled_results(&owner, &poll).await.expect(200);
    for watcher in [&mut watcher, &mut audience] {
        let seen = watcher
            .results_with_total(40, PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("no live results with 40 ballots: {e}"));
        assert_eq!(seen.total, 40);
        assert_eq!(
            (seen.votes.get("o1"), seen.votes.get("o2")),
            (Some(&25), Some(&15))
        );
        assert_eq!(seen.poll_id, poll);
        assert_eq!(
            settled.body["options"][0]["votes"], 25,
            "the settled read agrees"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_after_close_are_pushed_to_no_one_but_the_owner_until_the_close() {
    let app = TestApp::start().await;
    let served = app.serve().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app
        .create_poll(&owner, json!({ "question": "Secret ballot?", "options": ["a", "b"], "results": "after_close" }))
        .await
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let voter = app.mint_token();
    app.live_pass(&bearer(&voter), &poll)
        .await
        .expect_problem(403, "forbidden");
    // A pass to a poll of the voter's own does not open this one's channel.
    let own = app.lunch_poll(&voter).await;
    let own_pass = app.live_pass(&bearer(&voter), &own).await.expect(200);
    let own_token = own_pass.body["pass"].as_str().unwrap_or_default();
    let mut sneak = Watcher::connect(&served.live_url(), &served.host(), own_token)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let refused = sneak
        .subscribe(
            "sneak",
            &format!("/results/{poll}"),
            &served.host(),
            own_token,
        )
        .await;
    assert_eq!(refused["type"], "subscribe_error", "{refused}");
    assert_eq!(refused["errors"][0]["errorType"], "UnauthorizedException");

    let mut owner_watch = watch(&app, &served, &bearer(&owner), &poll).await;
    app.vote(&voter, &poll, &["o2"]).await.expect(201);
    let seen = owner_watch
        .results_with_total(1, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("the owner sees results at any time: {e}"));
    assert_eq!(seen.votes.get("o2"), Some(&1));
    // The sneak's connection got nothing for this poll.
    let nothing = sneak.next_results(Duration::from_millis(1500)).await;
    assert!(nothing.is_err(), "{nothing:?}");

    app.post(&format!("/v1/polls/{poll}/close"))
        .bearer(&owner)
        .send()
        .await
        .expect(200);
    app.live_pass(&bearer(&voter), &poll).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_ended_and_missing_passes_open_nothing() {
    let app = TestApp::start().await;
    let served = app.serve().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    // No credential, and a guest card of another poll, get no pass.
    app.post(&format!("/v1/polls/{poll}/live"))
        .send()
        .await
        .expect_problem(401, "unauthorized");
    let refused = Watcher::connect(&served.live_url(), &served.host(), "tl1.forged.0.AAAA").await;
    assert_eq!(refused.err().as_deref(), Some("HTTP 401 Unauthorized"));
    let pass = app.live_pass(&bearer(&owner), &poll).await.expect(200);
    let token = pass.body["pass"].as_str().unwrap_or_default().to_owned();
    // The pass names its poll and its end under the key: change either and it is refused.
    let forged = token.replacen(&poll, &uuid::Uuid::new_v4().to_string(), 1);
    let refused = Watcher::connect(&served.live_url(), &served.host(), &forged).await;
    assert_eq!(refused.err().as_deref(), Some("HTTP 401 Unauthorized"));
    let mut watcher = Watcher::connect(&served.live_url(), &served.host(), &token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Ten minutes later the same pass opens nothing, on a live connection or a new one.
    app.clock.advance(time::Duration::minutes(10));
    let late = watcher
        .subscribe("late", &format!("/results/{poll}"), &served.host(), &token)
        .await;
    assert_eq!(late["type"], "subscribe_error", "{late}");
    let refused = Watcher::connect(&served.live_url(), &served.host(), &token).await;
    assert_eq!(refused.err().as_deref(), Some("HTTP 401 Unauthorized"));
    // Watchers never publish.
    let fresh = app.live_pass(&bearer(&owner), &poll).await.expect(200);
    let fresh_token = fresh.body["pass"].as_str().unwrap_or_default();
    let mut publisher = Watcher::connect(&served.live_url(), &served.host(), fresh_token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = publisher
        .send(json!({ "type": "publish", "id": "p", "channel": format!("/results/{poll}"), "events": ["{}"] }))
        .await;
    assert!(sent.is_ok());
    let answer = publisher
        .next_message(Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer["type"], "publish_error", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_holds_a_bounded_number_of_subscriptions_and_a_stalled_one_holds_up_no_one() {
    let app = TestApp::start().await;
    let served = app.serve().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let pass = app.live_pass(&bearer(&owner), &poll).await.expect(200);
    let (channel, token) = (
        pass.body["channel"].as_str().unwrap_or_default().to_owned(),
        pass.body["pass"].as_str().unwrap_or_default().to_owned(),
    );
    let mut greedy = Watcher::connect(&served.live_url(), &served.host(), &token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answers: Vec<Value> = Vec::new();
    for i in 0..21 {
        answers.push(
            greedy
                .subscribe(&format!("s{i}"), &channel, &served.host(), &token)
                .await,
        );
    }
    assert!(
        answers[..20]
            .iter()
            .all(|a| a["type"] == "subscribe_success")
    );
    assert_eq!(
        answers[20]["errors"][0]["errorType"],
        "MaxSubscriptionsReachedException"
    );
    // `greedy` now never reads again: twenty subscriptions' data pile up behind it. Ballots
    // still count, and another watcher still sees every one.
    let mut attentive = watch(&app, &served, &bearer(&owner), &poll).await;
    for round in 1..=3u64 {
        let voters: Vec<String> = (0..10).map(|_| app.mint_token()).collect();
        for voter in &voters {
            app.vote(voter, &poll, &["o1"]).await.expect(201);
        }
        app.settle().await;
        let seen = attentive
            .results_with_total(round * 10, PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(seen.total, round * 10);
    }
    drop(greedy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_reconnects_after_the_dev_server_restarts() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().to_str().unwrap_or_default().to_owned();
    let vars = [
        ("TALLY_DATA_DIR", path.as_str()),
        ("TALLY_RATE_LIMIT_VOTES", "100/60"),
    ];
    let storage = || Storage::Dir(dir.path().to_owned());
    let first = TestApp::start_with(&vars, storage()).await;
    let served = first.serve().await;
    let owner = first.sign_up("owner@example.com").await.access_token;
    let poll = first.lunch_poll(&owner).await;
    let mut watcher = watch(&first, &served, &bearer(&owner), &poll).await;
    first
        .vote(&first.mint_token(), &poll, &["o1"])
        .await
        .expect(201);
    watcher
        .results_with_total(1, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("before the restart: {e}"));
    drop(served);
    first.stack.shutdown().await;
    // The old connection is gone with the server.
    let gone = watcher.next_results(Duration::from_secs(3)).await;
    assert!(gone.is_err(), "{gone:?}");

    let second = TestApp::start_with(&vars, storage()).await;
    let served = second.serve().await;
    // A new pass (the live key is kept in the data folder, like the signing key), a new
    // connection, and the next ballot arrives with the count from before the restart.
    let mut watcher = watch(&second, &served, &bearer(&owner), &poll).await;
    second
        .vote(&second.mint_token(), &poll, &["o2"])
        .await
        .expect(201);
    let seen = watcher
        .results_with_total(2, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("after the restart: {e}"));
    assert_eq!(
        (seen.votes.get("o1"), seen.votes.get("o2")),
        (Some(&1), Some(&1))
    );
}

/// A feed that records what reaches it, and when.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<(u64, Instant)>>);

#[async_trait::async_trait]
impl ResultsFeed for Recorded {
    async fn publish(&self, results: &LiveResults) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((results.total, Instant::now()));
        Ok(())
    }
}

/// On AWS one count function instance runs per stream shard, and a hot poll's ballots are on
/// every shard: the lease on the poll's tally item holds them all to one publish a second,
/// and the newest counts still go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_shards_publish_one_poll_at_most_once_a_second_and_the_newest_counts_go_out() {
    let app = TestApp::start().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll: PollId = app
        .lunch_poll(&owner)
        .await
        .parse()
        .unwrap_or_else(|_| panic!("a poll id"));
    let recorded = Arc::new(Recorded::default());
    let paced = Arc::new(Paced::new(
        recorded.clone(),
        Arc::new(app.store().clone()),
        Arc::new(SystemClock),
    ));
    // Shard i publishes the totals i + 1, i + 5, … every 100 ms, up to 100 in all.
    let shards = (0..4u64).map(|shard| {
        let paced = paced.clone();
        async move {
            for round in 0..25u64 {
                let tally = Tally {
                    ballots: round * 4 + shard + 1,
                    ..Tally::default()
                };
                paced
                    .publish(&LiveResults::new(poll, &tally))
                    .await
                    .unwrap_or_else(|e| panic!("shard {shard}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    join_all(shards).await;
    let seen = recorded
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let totals: Vec<u64> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        totals.last(),
        Some(&100),
        "the newest counts went out: {totals:?}"
    );
    assert!(totals.windows(2).all(|w| w[0] < w[1]), "{totals:?}");
    // The claims are a second apart at least; what reaches the feed is each claim plus the
    // time until its publish runs, which a loaded machine varies by some milliseconds.
    for pair in seen.windows(2) {
        let apart = pair[1].1 - pair[0].1;
        assert!(
            apart >= Duration::from_millis(900),
            "{apart:?} apart: {totals:?}"
        );
    }
    let span = seen[seen.len() - 1].1 - seen[0].1;
    assert!(
        (seen.len() as f64) <= span.as_secs_f64() + 1.0,
        "{} publishes in {span:?}: {totals:?}",
        seen.len()
    );
    assert!(seen.len() >= 2, "{totals:?}");
}
