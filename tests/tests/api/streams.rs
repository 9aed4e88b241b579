//! The local Streams → Lambda poller against each engine's real stream (the embedded engine's
//! and moto's): the filter, the order, the tumbling window's properties, a failed invoke
//! delivered again, a batch item failure resumed from the failed record, and the saved
//! position that a restarted poller resumes from. Each scenario writes to a table of its own,
//! so the stack's own count function never sees these records.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{TimeWindowEvent, TimeWindowEventResponse};
use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;
use aws_sdk_dynamodb::types::AttributeValue;
use tally::dynamo::table::ensure_table;
use tally_dev::streams::{StreamOptions, StreamPoller, StreamTarget, local_streams_client};
use tally_tests::{TestApp, on_every_backend};

/// Long enough for moto on a busy machine; a drained stream answers in milliseconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the recording target does on its next invoke.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Fail the invocation (the function threw).
    Throw,
    /// Report the record at this index of the batch as the first failure.
    FailAt(usize),
}

/// A stand-in for the count function: records every event, answers `invokes` as its state,
/// and follows a script of failures.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<TimeWindowEvent>>,
    script: Mutex<VecDeque<Step>>,
}

impl Recorder {
    fn scripted(steps: &[Step]) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::default(),
            script: Mutex::new(steps.iter().copied().collect()),
        })
    }

    fn events(&self) -> Vec<TimeWindowEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The partition keys of each invoke's records, in order, leaving out final invokes.
    fn batches(&self) -> Vec<Vec<String>> {
        self.events()
            .iter()
            .filter(|e| !e.time_window_properties.is_final_invoke_for_window)
            .map(|e| e.dynamo_db_event.records.iter().map(pk).collect())
            .collect()
    }
}

fn pk(record: &aws_lambda_events::event::dynamodb::EventRecord) -> String {
    match record.change.keys.get("PK") {
        Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
        other => panic!("a record without a string PK: {other:?}"),
    }
}

#[async_trait]
impl StreamTarget for Recorder {
    async fn invoke(&self, event: TimeWindowEvent) -> Result<TimeWindowEventResponse, String> {
        let step = self
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let sequences: Vec<String> = event
            .dynamo_db_event
            .records
            .iter()
            .map(|r| r.change.sequence_number.clone().unwrap_or_default())
            .collect();
        let invokes = {
            let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            events.push(event);
            events.len()
        };
        let mut response = TimeWindowEventResponse::default();
        response.time_window_event_response_properties.state =
            HashMap::from([("invokes".to_owned(), invokes.to_string())]);
        match step {
            Some(Step::Throw) => Err("the handler threw".into()),
            Some(Step::FailAt(index)) => {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequences.get(index).cloned();
                response.batch_item_failures.push(failure);
                Ok(response)
            }
            None => Ok(response),
        }
    }
}

/// A table of the scenario's own on the app's engine, and a way to write to it.
struct Scratch {
    table: String,
    client: aws_sdk_dynamodb::Client,
    endpoint: String,
}

impl Scratch {
    async fn new(app: &TestApp) -> Self {
        let table = format!("streams-{}", uuid::Uuid::new_v4().simple());
        let client = app.store().client().clone();
        ensure_table(&client, &table)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            table,
            client,
            endpoint: app.stack.dynamo_endpoint.clone(),
        }
    }

    async fn put(&self, pk: &str, sk: &str, n: i64) {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", AttributeValue::S(pk.to_owned()))
            .item("SK", AttributeValue::S(sk.to_owned()))
            .item("n", AttributeValue::N(n.to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {pk}: {e:?}"));
    }

    async fn delete(&self, pk: &str, sk: &str) {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk.to_owned()))
            .key("SK", AttributeValue::S(sk.to_owned()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete {pk}: {e:?}"));
    }

    async fn poller(&self, target: Arc<Recorder>, options: StreamOptions) -> StreamPoller {
        StreamPoller::start(
            local_streams_client(&self.endpoint),
            &self.table,
            target,
            options,
        )
        .await
        .unwrap_or_else(|e| panic!("start the poller: {e}"))
    }
}

fn ballots(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("BALLOT#p1#u:{n:03}")).collect()
}

async fn the_filter_passes_new_ballots_only_in_order(app: TestApp) {
    let scratch = Scratch::new(&app).await;
    for (n, ballot) in ballots(1..=3).iter().enumerate() {
        scratch.put(ballot, "BALLOT", 1).await;
        // Items that are not ballots, and changes that are not inserts, between them.
        scratch.put(&format!("POLL#p{n}"), "POLL", 1).await;
        scratch.put(&format!("TALLY#p{n}"), "TALLY", 1).await;
    }
    scratch.put("BALLOT#p1#u:001", "BALLOT", 2).await;
    scratch.delete("BALLOT#p1#u:002", "BALLOT").await;
    for ballot in ballots(4..=5) {
        scratch.put(&ballot, "BALLOT", 1).await;
    }
    let recorder = Recorder::scripted(&[]);
    let poller = scratch
        .poller(recorder.clone(), StreamOptions::local())
        .await;
    poller
        .drained(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let delivered: Vec<String> = recorder.batches().concat();
    assert_eq!(
        delivered,
        ballots(1..=5),
        "new ballots, once each, in write order"
    );
    let progress = poller.progress();
    assert_eq!(progress.filtered, 8, "{progress:?}");
    assert_eq!(progress.failed_invokes, 0);
    for event in recorder.events() {
        let window = &event.time_window_properties;
        assert!(window.shard_id.as_deref().is_some_and(|s| !s.is_empty()));
        assert!(window.window.start < window.window.end);
        assert!(window.event_source_arn.is_some());
        for record in &event.dynamo_db_event.records {
            assert_eq!(record.event_name, "INSERT");
            assert!(record.change.new_image.get("n").is_some(), "NEW_IMAGE");
        }
    }
}

async fn a_failed_invoke_is_delivered_again_whole(app: TestApp) {
    let scratch = Scratch::new(&app).await;
    for ballot in ballots(1..=4) {
        scratch.put(&ballot, "BALLOT", 1).await;
    }
    let recorder = Recorder::scripted(&[Step::Throw]);
    let poller = scratch
        .poller(recorder.clone(), StreamOptions::local())
        .await;
    poller
        .drained(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let batches = recorder.batches();
    assert_eq!(
        batches,
        vec![ballots(1..=4), ballots(1..=4)],
        "the same batch twice"
    );
    // The failed invoke returned no state; the retry carries the window's state as it was.
    let events = recorder.events();
    assert_eq!(
        events[0].time_window_properties.state,
        events[1].time_window_properties.state
    );
    let progress = poller.progress();
    assert_eq!((progress.failed_invokes, progress.delivered), (1, 4));
}

async fn a_batch_item_failure_resumes_from_the_failed_record(app: TestApp) {
    let scratch = Scratch::new(&app).await;
    for ballot in ballots(1..=5) {
        scratch.put(&ballot, "BALLOT", 1).await;
    }
    let recorder = Recorder::scripted(&[Step::FailAt(2)]);
    let poller = scratch
        .poller(recorder.clone(), StreamOptions::local())
        .await;
    poller
        .drained(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(recorder.batches(), vec![ballots(1..=5), ballots(3..=5)]);
    let events = recorder.events();
    let state = |i: usize| {
        events[i]
            .time_window_properties
            .state
            .get("invokes")
            .cloned()
    };
    assert_eq!(
        state(1),
        Some("1".into()),
        "the state the first invoke returned"
    );
    assert_eq!(poller.progress().delivered, 5);
}

async fn a_restarted_poller_resumes_from_its_saved_position(app: TestApp) {
    let scratch = Scratch::new(&app).await;
    let positions = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = StreamOptions {
        positions: Some(positions.path().to_owned()),
        ..StreamOptions::local()
    };
    for ballot in ballots(1..=3) {
        scratch.put(&ballot, "BALLOT", 1).await;
    }
    let first = Recorder::scripted(&[]);
    let poller = scratch.poller(first.clone(), options.clone()).await;
    poller
        .drained(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(poller);
    assert_eq!(first.batches().concat(), ballots(1..=3));

    for ballot in ballots(4..=6) {
        scratch.put(&ballot, "BALLOT", 1).await;
    }
    let second = Recorder::scripted(&[]);
    let poller = scratch.poller(second.clone(), options).await;
    poller
        .drained(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        second.batches().concat(),
        ballots(4..=6),
        "only what came after"
    );
}

async fn a_passed_window_gets_a_final_invoke_with_its_state(app: TestApp) {
    let scratch = Scratch::new(&app).await;
    scratch.put("BALLOT#p1#u:001", "BALLOT", 1).await;
    let recorder = Recorder::scripted(&[]);
    let options = StreamOptions {
        tumbling_window: Duration::from_secs(1),
        ..StreamOptions::local()
    };
    let poller = scratch.poller(recorder.clone(), options).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let finals = loop {
        let events = recorder.events();
        let finals: Vec<TimeWindowEvent> = events
            .into_iter()
            .filter(|e| e.time_window_properties.is_final_invoke_for_window)
            .collect();
        if !finals.is_empty() {
            break finals;
        }
        assert!(tokio::time::Instant::now() < deadline, "no final invoke");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = &finals[0];
    assert!(last.dynamo_db_event.records.is_empty());
    assert_eq!(
        last.time_window_properties
            .state
            .get("invokes")
            .map(String::as_str),
        Some("1"),
        "the state of the window's one invoke"
    );
    drop(poller);
}

on_every_backend!(
    the_filter_passes_new_ballots_only_in_order,
    a_failed_invoke_is_delivered_again_whole,
    a_batch_item_failure_resumes_from_the_failed_record,
    a_restarted_poller_resumes_from_its_saved_position,
    a_passed_window_gets_a_final_invoke_with_its_state,
);
