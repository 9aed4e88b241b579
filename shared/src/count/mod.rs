//! The count function's work: a batch of DynamoDB stream records in, one conditional update
//! per poll out, so that every ballot the API stored is counted exactly once.
//!
//! Lambda delivers a stream shard's records in order, at least once: a batch can come again
//! (a retry after an error or a time-out, or after the function crashed between its update and
//! its reply), and a bisected or resumed batch can overlap one already counted. So each poll's
//! update also moves a checkpoint kept per (poll, stream shard) on the tally item, under the
//! condition that the stored checkpoint is below the batch's first record for that poll. When
//! it is not, the store says where it stands, the records at or below it are dropped (counted
//! before) and the rest are tried again. The shard id comes only with tumbling-window events
//! ([`TimeWindowEvent`]), which is why the mapping has a window; the window's state is not
//! used and the reply carries none.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lambda_events::event::dynamodb::{EventRecord, TimeWindowEvent, TimeWindowEventResponse};
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::clock::SharedClock;
use crate::domain::{PollId, Voter};
use crate::dynamo::{StreamBallot, stream_ballot};
use crate::live::LiveResults;
use crate::ports::{
    Added, Checkpoint, ResultsFeed, SequenceNumber, StoreError, TallyDelta, TallyStore,
};

/// Polls of one batch updated at once: a batch of a thousand ballots for as many polls should
/// not wait for a thousand round trips one after another, nor open a thousand connections.
const POLLS_AT_ONCE: usize = 16;

/// Why a batch was not (wholly) counted. Lambda then delivers it again, which is safe.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// The event carries no shard id: the mapping has no tumbling window, and without the
    /// shard no checkpoint can tell a redelivery from new records.
    #[error("the stream event has no shard id (the event source mapping needs a tumbling window)")]
    NoShard,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Ballots added to tallies now.
    pub ballots: u64,
    /// Ballot records found counted before (a redelivery or an overlap), not added again.
    pub already_counted: u64,
    /// One per poll and attempt: the store writes made.
    pub updates: u64,
}

/// The count function: the store, the clock, where new results are published for live
/// watchers (if anywhere), and the names of other shards' checkpoints found stale on a poll's
/// tally, pruned by that poll's next update.
#[derive(Debug)]
pub struct Counter {
    store: Arc<dyn TallyStore>,
    clock: SharedClock,
    feed: Arc<dyn ResultsFeed>,
    // A std mutex: held for a map operation only, never across an await.
    stale: Mutex<HashMap<PollId, Vec<String>>>,
}

impl Counter {
    /// A counter over `store` that publishes each poll's results to `feed` after every batch
    /// that changed them: one publish per poll per batch, so the event source mapping's
    /// batching window (1 s on AWS) paces the publishes of each shard.
    pub fn new(store: Arc<dyn TallyStore>, clock: SharedClock, feed: Arc<dyn ResultsFeed>) -> Self {
        Self {
            store,
            clock,
            feed,
            stale: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one tumbling-window invocation's records and replies with an empty window
    /// state. An error fails the whole batch, for Lambda to deliver again.
    pub async fn handle(
        &self,
        event: TimeWindowEvent,
    ) -> Result<TimeWindowEventResponse, CountError> {
        let shard = event
            .time_window_properties
            .shard_id
            .clone()
            .ok_or(CountError::NoShard)?;
        let counted = self.count(&shard, &event.dynamo_db_event.records).await?;
        tracing::info!(
            shard,
            records = event.dynamo_db_event.records.len(),
            counted = counted.ballots,
            already_counted = counted.already_counted,
            updates = counted.updates,
            "batch counted"
        );
        Ok(TimeWindowEventResponse::default())
    }

    /// Counts the new ballots among `records` (one shard's, in stream order): one update per
    /// poll, and one more per poll whose checkpoint shows part of the batch counted before.
    pub async fn count(&self, shard: &str, records: &[EventRecord]) -> Result<Counted, CountError> {
        let mut ballots = Vec::new();
        for record in records {
            if let Some(ballot) = stream_ballot(record)? {
                ballots.push(ballot);
            }
        }
        let now = self.clock.now();
        futures::stream::iter(by_poll(ballots))
            .map(|(poll, ballots)| self.count_poll(shard, poll, ballots, now))
            .buffer_unordered(POLLS_AT_ONCE)
            .try_fold(Counted::default(), |total, c| async move {
                Ok(Counted {
                    ballots: total.ballots + c.ballots,
                    already_counted: total.already_counted + c.already_counted,
                    updates: total.updates + c.updates,
                })
            })
            .await
    }

    /// One poll's ballots of the batch, in stream order.
    async fn count_poll(
        &self,
        shard: &str,
        poll: PollId,
        ballots: Vec<StreamBallot>,
        now: OffsetDateTime,
    ) -> Result<Counted, CountError> {
        let mut counted = Counted::default();
        // Who voted, other than guests, before the counts: if the update then fails, the
        // batch comes again and writes the same record.
        let voters: Vec<Voter> = ballots
            .iter()
            .filter(|b| !b.by_guest())
            .map(|b| b.voter.clone())
            .collect();
        if let Some(first) = ballots.first()
            && !voters.is_empty()
        {
            self.store
                .record_voters(poll, shard, &first.sequence, &voters)
                .await?;
        }
        let mut rest = ballots.as_slice();
        // Each refusal names a checkpoint at or past the first remaining record, so every
        // round drops at least one record and the loop ends.
        while let Some((delta, first, at)) = sum(rest, now) {
            let prune = self.take_stale(poll);
            counted.updates += 1;
            let added = self
                .store
                .add(poll, shard, &first, &at, &delta, &prune)
                .await;
            match added {
                Ok(Added::Counted { stale, tally }) => {
                    self.put_stale(poll, stale);
                    counted.ballots += delta.ballots;
                    self.publish(poll, tally).await;
                    return Ok(counted);
                }
                Ok(Added::Behind(stored)) => {
                    self.put_stale(poll, prune);
                    let done = rest.partition_point(|b| b.sequence <= stored);
                    counted.already_counted += done as u64;
                    rest = &rest[done..];
                }
                Err(e) => {
                    self.put_stale(poll, prune);
                    return Err(e.into());
                }
            }
        }
        Ok(counted)
    }

    /// Publishes the poll's new results. A failed publish does not fail
    /// the batch: the ballots are counted, and a redelivery would count nothing new anyway.
    async fn publish(&self, poll: PollId, tally: crate::domain::Tally) {
        let results = LiveResults::new(poll, &tally);
        if let Err(e) = self.feed.publish(&results).await {
            tracing::warn!(%poll, error = %e, "live results not published");
        }
    }

    fn take_stale(&self, poll: PollId) -> Vec<String> {
        self.stale
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&poll)
            .unwrap_or_default()
    }

    fn put_stale(&self, poll: PollId, shards: Vec<String>) {
        if !shards.is_empty() {
            self.stale
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(poll, shards);
        }
    }
}

/// The ballots grouped by poll, each group in stream (sequence) order.
pub fn by_poll(ballots: Vec<StreamBallot>) -> BTreeMap<PollId, Vec<StreamBallot>> {
    let mut polls: BTreeMap<PollId, Vec<StreamBallot>> = BTreeMap::new();
    for ballot in ballots {
        polls.entry(ballot.poll).or_default().push(ballot);
    }
    for group in polls.values_mut() {
        group.sort_by(|a, b| a.sequence.cmp(&b.sequence));
    }
    polls
}

/// What a poll's records (in order) add up to, their first sequence number, and the
/// checkpoint they leave, written `now`; `None` when there are none.
pub fn sum(
    ballots: &[StreamBallot],
    now: OffsetDateTime,
) -> Option<(TallyDelta, SequenceNumber, Checkpoint)> {
    let first = ballots.first()?.sequence.clone();
    let last = ballots.last()?.sequence.clone();
    let mut delta = TallyDelta::default();
    let mut newest_vote = OffsetDateTime::UNIX_EPOCH;
    for ballot in ballots {
        delta.ballots += 1;
        delta.guest_ballots += u64::from(ballot.by_guest());
        for choice in &ballot.choices {
            *delta.per_option.entry(choice.clone()).or_insert(0) += 1;
        }
        newest_vote = newest_vote.max(ballot.voted_at);
    }
    let at = Checkpoint {
        last,
        newest_vote,
        written: now,
    };
    Some((delta, first, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OptionId;

    fn ballot(poll: PollId, seq: &str, choice: usize) -> StreamBallot {
        StreamBallot {
            poll,
            choices: vec![OptionId::for_index(choice)],
            voted_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seq.len() as i64),
            sequence: SequenceNumber::parse(seq).unwrap_or_else(|| panic!("{seq}")),
            voter: Voter::User(crate::domain::UserId::new()),
        }
    }

    #[test]
    fn records_group_by_poll_in_sequence_order_and_add_up() {
        let (a, b) = (PollId::new(), PollId::new());
        let groups = by_poll(vec![
            ballot(a, "300", 0),
            ballot(b, "200", 1),
            ballot(a, "99", 1),
            ballot(a, "1000", 0),
        ]);
        let seqs: Vec<&str> = groups[&a].iter().map(|b| b.sequence.as_str()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let now = OffsetDateTime::now_utc();
        let (delta, first, at) = sum(&groups[&a], now).unwrap_or_else(|| panic!());
        assert_eq!(delta.ballots, 3);
        assert_eq!(delta.per_option[&OptionId::for_index(0)], 2);
        assert_eq!(delta.per_option[&OptionId::for_index(1)], 1);
        assert_eq!(
            first,
            SequenceNumber::parse("99").unwrap_or_else(|| panic!())
        );
        assert_eq!(
            at.last,
            SequenceNumber::parse("1000").unwrap_or_else(|| panic!())
        );
        assert_eq!(at.written, now);
        assert!(sum(&[], now).is_none());
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        let n = |s| SequenceNumber::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert!(n("9") < n("10"));
        assert!(n("4000000000000000000000001") > n("399999999999999999999999"));
        assert!(SequenceNumber::parse("12a").is_none());
        assert!(SequenceNumber::parse("").is_none());
        assert!(SequenceNumber::parse(&"1".repeat(41)).is_none());
    }
}
