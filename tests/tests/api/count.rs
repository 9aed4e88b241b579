//! The count function, exactly once: ballots cast through the API, read back from the engine
//! as the stream records Lambda would deliver, and handed to `Counter::handle` as replays,
//! overlaps, crash-redeliveries and concurrent shards. The results must count each ballot
//! once, whatever the deliveries.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::EventRecord;
use serde_json::json;
use tally::clock::SharedClock;
use tally::count::Counter;
use tally::domain::{PollId, Voter};
use tally::ports::{
    Added, Checkpoint, SequenceNumber, StoreError, StoreResult, TallyDelta, TallyStore,
};
use tally_tests::TestApp;
use tally_tests::stream::{BallotStream, TEST_SHARD, window_event};

/// A poll with `n` ballots cast through the API (choices alternate o1, o2), the owner's token,
/// and the ballots' stream records in write order.
async fn poll_with_ballots(app: &TestApp, n: usize) -> (String, String, Vec<EventRecord>) {
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    for i in 0..n {
        let choice = if i % 2 == 0 { "o1" } else { "o2" };
        app.vote(&app.mint_token(), &poll, &[choice])
            .await
            .expect(201);
    }
    let records = BallotStream::default().next_batch(app.store()).await;
    assert_eq!(records.len(), n);
    (owner, poll, records)
}

/// The results' total and per-option votes, after counting.
async fn counts(app: &TestApp, owner: &str, poll: &str) -> (u64, Vec<u64>) {
    let results = app.results(owner, poll).await.expect(200);
    let per_option = results.body["options"]
        .as_array()
        .map(|o| o.iter().filter_map(|o| o["votes"].as_u64()).collect())
        .unwrap_or_default();
    (
        results.body["total"].as_u64().unwrap_or(u64::MAX),
        per_option,
    )
}

fn counter(app: &TestApp, store: Arc<dyn TallyStore>) -> Counter {
    let clock: SharedClock = Arc::new(app.clock.clone());
    Counter::new(store, clock, Arc::new(tally::live::Unwatched))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_batch_delivered_twice_counts_once() {
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, records) = poll_with_ballots(&app, 25).await;
    let event = window_event(TEST_SHARD, records);
    let first = app.counter.handle(event.clone()).await;
    assert!(first.is_ok(), "{first:?}");
    let again = app
        .counter
        .count(TEST_SHARD, &event.dynamo_db_event.records)
        .await;
    let again = again.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((again.ballots, again.already_counted), (0, 25));
    assert_eq!(counts(&app, &owner, &poll).await, (25, vec![13, 12]));
    // A third time, by a new instance of the function (nothing remembered in memory).
    let fresh = counter(&app, Arc::new(app.store().clone()));
    assert!(fresh.handle(event).await.is_ok());
    assert_eq!(counts(&app, &owner, &poll).await, (25, vec![13, 12]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_count_each_ballot_once() {
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, records) = poll_with_ballots(&app, 30).await;
    // 0..20, then 10..30 (a resumed batch that starts inside the first), then 5..12 (wholly
    // inside), then everything: only the 10 new ballots of the second count.
    let batches = [0..20, 10..30, 5..12, 0..30];
    let mut counted = Vec::new();
    for range in batches {
        let done = app
            .counter
            .count(TEST_SHARD, &records[range])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        counted.push(done.ballots);
    }
    assert_eq!(counted, vec![20, 10, 0, 0]);
    assert_eq!(counts(&app, &owner, &poll).await, (30, vec![15, 15]));
}

/// A store that applies the update, then fails as a function would that crashed (or timed
/// out) after DynamoDB took its write but before Lambda got its reply.
#[derive(Debug)]
struct CrashAfterWrite(Arc<dyn TallyStore>);

#[async_trait]
impl TallyStore for CrashAfterWrite {
    async fn add(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        at: &Checkpoint,
        delta: &TallyDelta,
        prune: &[String],
    ) -> StoreResult<Added> {
        self.0.add(poll, shard, first, at, delta, prune).await?;
        Err(StoreError::Unavailable("the function died here".into()))
    }
    async fn record_voters(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        voters: &[Voter],
    ) -> StoreResult<()> {
        self.0.record_voters(poll, shard, first, voters).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_after_the_update_is_redelivered_and_counted_once() {
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, records) = poll_with_ballots(&app, 12).await;
    let event = window_event(TEST_SHARD, records.clone());
    let dying = counter(
        &app,
        Arc::new(CrashAfterWrite(Arc::new(app.store().clone()))),
    );
    assert!(
        dying.handle(event.clone()).await.is_err(),
        "the batch fails"
    );
    // Lambda delivers the batch again, to another instance, and a bisected half of it too.
    let next = counter(&app, Arc::new(app.store().clone()));
    assert!(next.handle(event).await.is_ok());
    assert!(next.count(TEST_SHARD, &records[6..]).await.is_ok());
    assert_eq!(counts(&app, &owner, &poll).await, (12, vec![6, 6]));
}

/// Several stream shards carry ballots of one poll (each ballot key hashes to its own
/// partition), and Lambda reads them in parallel, each redelivering now and then: the shards'
/// updates of the one tally run at once, and each shard's own checkpoint keeps its replays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_counting_one_poll_at_once_each_count_once() {
    const SHARDS: usize = 8;
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, records) = poll_with_ballots(&app, 160).await;
    // Shard k gets every SHARDS-th ballot, numbered in its own sequence space.
    let shards: Vec<Vec<EventRecord>> = (0..SHARDS)
        .map(|k| records.iter().skip(k).step_by(SHARDS).cloned().collect())
        .collect();
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for (k, shard) in shards.into_iter().enumerate() {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("shardId-{k:020}-test");
            let half = shard.len() / 2;
            // A batch, its redelivery, the next batch overlapping the first, all of it again.
            for range in [0..half, 0..half, half / 2..shard.len(), 0..shard.len()] {
                let event = window_event(&id, shard[range].to_vec());
                app.counter
                    .handle(event)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(counts(&app, &owner, &poll).await, (160, vec![80, 80]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_say_how_far_counting_has_got() {
    let app = TestApp::start_counting_by_hand().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let poll = app.lunch_poll(&owner).await;
    let before = app.results(&owner, &poll).await.expect(200);
    assert_eq!(before.body["counted_through"], json!(null));
    assert_eq!(before.body["counted_at"], json!(null));
    let ballot = app
        .vote(&app.mint_token(), &poll, &["o2"])
        .await
        .expect(201);
    // Accepted, not yet counted: the results say so.
    let lagging = app.results(&owner, &poll).await.expect(200);
    assert_eq!(lagging.body["total"], 0);
    assert_eq!(lagging.body["counted_through"], json!(null));
    // Counted by hand here, so that the lagging read above is certain to come first.
    let records = BallotStream::default().next_batch(app.store()).await;
    app.counter
        .handle(window_event(TEST_SHARD, records))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let settled = app.results(&owner, &poll).await.expect(200);
    assert_eq!(settled.body["total"], 1);
    // The checkpoint keeps milliseconds.
    let at = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    let behind = at(&ballot.body["voted_at"]) - at(&settled.body["counted_through"]);
    assert!(
        behind >= time::Duration::ZERO && behind < time::Duration::milliseconds(1),
        "{behind}"
    );
    assert!(settled.body["counted_at"].is_string(), "{:#}", settled.body);
}

/// A checkpoint not written for longer than a record can be delivered guards nothing: the
/// next update of the poll removes it, so a tally does not grow with every shard it ever saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_too_old_to_guard_anything_are_pruned() {
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, records) = poll_with_ballots(&app, 3).await;
    let old_shard = "shardId-00000000000000000001-old";
    app.counter
        .count(old_shard, &records[..1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.clock.advance(time::Duration::hours(25));
    app.counter
        .count(TEST_SHARD, &records[1..2])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let item = |app: &TestApp| {
        let store = app.store().clone();
        let poll = poll.clone();
        async move {
            let out = store
                .client()
                .get_item()
                .table_name(store.table())
                .key(
                    "PK",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("TALLY#{poll}")),
                )
                .key(
                    "SK",
                    aws_sdk_dynamodb::types::AttributeValue::S("TALLY".into()),
                )
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            out.item.unwrap_or_default()
        }
    };
    let shards = |item: &std::collections::HashMap<String, _>| {
        let mut s: Vec<String> = item
            .keys()
            .filter(|k| k.starts_with("cp#"))
            .cloned()
            .collect();
        s.sort();
        s
    };
    assert_eq!(
        shards(&item(&app).await).len(),
        2,
        "both until the next write"
    );
    app.counter
        .count(TEST_SHARD, &records[2..])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shards(&item(&app).await), vec![format!("cp#{TEST_SHARD}")]);
    assert_eq!(counts(&app, &owner, &poll).await.0, 3);
}

/// Records that are not new ballots (other items, modifications) are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_new_ballots_are_counted() {
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, mut records) = poll_with_ballots(&app, 4).await;
    records[0].event_name = "MODIFY".into();
    records[1].change.keys.insert(
        "PK".into(),
        serde_dynamo::AttributeValue::S(format!("POLL#{poll}")),
    );
    let done = app
        .counter
        .count(TEST_SHARD, &records)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.ballots, 2);
    assert_eq!(counts(&app, &owner, &poll).await.0, 2);
}

/// Without a shard id (a mapping with no tumbling window) nothing can be counted exactly once:
/// the batch fails loudly instead of counting blind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_without_a_shard_id_fails() {
    let app = TestApp::start_counting_by_hand().await;
    let (owner, poll, records) = poll_with_ballots(&app, 2).await;
    let mut event = window_event(TEST_SHARD, records);
    event.time_window_properties.shard_id = None;
    assert!(app.counter.handle(event).await.is_err());
    assert_eq!(counts(&app, &owner, &poll).await.0, 0);
}

/// However many ballots a batch holds, each poll in it costs one update and one record of who
/// voted (for the poll's deletion): a hot poll's tally takes a write per batch, not per ballot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_one_update_per_poll() {
    let app = TestApp::start_counting_by_hand().await;
    let owner = app.sign_up("owner@example.com").await.access_token;
    let polls = [
        app.lunch_poll(&owner).await,
        app.lunch_poll(&owner).await,
        app.lunch_poll(&owner).await,
    ];
    for i in 0..300 {
        app.vote(&app.mint_token(), &polls[i % 3], &["o1"])
            .await
            .expect(201);
    }
    let records = BallotStream::default().next_batch(app.store()).await;
    let store =
        tally::dynamo::DynamoStore::new(app.store().client().clone(), app.config.table.clone());
    let counted = counter(&app, Arc::new(store.clone()))
        .count(TEST_SHARD, &records)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((counted.ballots, counted.updates), (300, 3));
    assert_eq!(
        store.calls(),
        6,
        "per poll: its voters' record and its tally's update"
    );
    for poll in &polls {
        assert_eq!(counts(&app, &owner, poll).await, (100, vec![100, 0]));
    }
}
