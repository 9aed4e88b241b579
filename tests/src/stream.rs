//! DynamoDB stream events made from the ballots a table holds, for driving the count function
//! (`tally::count::Counter`) directly: the records are real ballot items read back from the
//! engine, in the wire shape Lambda hands the function (`TimeWindowEvent`). The dev server's
//! own Streams poller plays Lambda for the running stack; these helpers let a test choose the
//! batches itself (replays, overlaps, redeliveries).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use aws_lambda_events::event::dynamodb::{EventRecord, StreamRecord, TimeWindowEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use tally::dynamo::DynamoStore;

/// The shard id the harness's batches carry unless a test names another.
pub const TEST_SHARD: &str = "shardId-00000000000000000000-test";

/// Every ballot item of the table (a paginated scan), in no particular order.
pub async fn ballot_items(store: &DynamoStore) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .filter_expression("begins_with(PK, :ballot)")
            .expression_attribute_values(":ballot", AttributeValue::S("BALLOT#".into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap_or_else(|e| panic!("scan ballots: {e:?}"));
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// The stream record of `item`'s insertion, with sequence number `sequence`.
pub fn insert_record(item: &HashMap<String, AttributeValue>, sequence: u64) -> EventRecord {
    let keys: HashMap<String, AttributeValue> = ["PK", "SK"]
        .iter()
        .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let mut change = StreamRecord::default();
    change.keys = serde_dynamo::Item::from(keys);
    change.new_image = serde_dynamo::Item::from(item.clone());
    change.sequence_number = Some(sequence.to_string());
    change.size_bytes = 100;
    let mut record = EventRecord::default();
    record.event_name = "INSERT".into();
    record.event_id = format!("test-{sequence}");
    record.event_source = Some("aws:dynamodb".into());
    record.aws_region = "us-east-1".into();
    record.change = change;
    record
}

/// A tumbling-window invocation of `shard` carrying `records`.
pub fn window_event(shard: &str, records: Vec<EventRecord>) -> TimeWindowEvent {
    let mut event = TimeWindowEvent::default();
    event.dynamo_db_event.records = records;
    event.time_window_properties.shard_id = Some(shard.to_owned());
    event
}

/// A stand-in stream over one table: each call to [`BallotStream::next_batch`] gives the
/// ballots not given before, in one batch of one shard, with sequence numbers that only grow,
/// as a shard of DynamoDB Streams would.
#[derive(Debug, Default)]
pub struct BallotStream {
    state: Mutex<(HashSet<String>, u64)>,
}

impl BallotStream {
    /// The ballots written since the last batch, as the stream's next batch (maybe empty).
    pub async fn next_batch(&self, store: &DynamoStore) -> Vec<EventRecord> {
        let items = ballot_items(store).await;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (seen, sequence) = &mut *state;
        let mut records = Vec::new();
        for item in items {
            let Some(AttributeValue::S(pk)) = item.get("PK") else {
                continue;
            };
            if seen.insert(pk.clone()) {
                *sequence += 1;
                records.push(insert_record(&item, *sequence));
            }
        }
        records
    }
}
