//! [`BallotStore`] for [`DynamoStore`]: a ballot is one transaction of its own item (the
//! duplicate guard) and one counter shard (the count, under the poll's write-time guards);
//! results add up the shards.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use super::DynamoStore;
use super::items::{BallotItem, CounterItem, PollItem, unix_ms};
use super::keys::{COUNTER_SHARDS, Key};
use super::ops::{Cancellation, from_item, num, updating};
use crate::domain::{Ballot, Poll, PollId, Tally};
use crate::ports::{BallotStore, CastOutcome, StoreError, StoreResult};

/// The condition on the counter shard a ballot counts on: the copies of the poll's guards
/// say it is still open, with the options the ballot was checked against, at the vote's time.
const STILL_OPEN: &str =
    "attribute_exists(PK) AND #open = :true AND options_rev = :rev AND deadline_ms > :now";

#[async_trait]
impl BallotStore for DynamoStore {
    async fn cast(
        &self,
        poll: &Poll,
        ballot: &Ballot,
        now: OffsetDateTime,
    ) -> StoreResult<CastOutcome> {
        let record = self.put_new(&BallotItem::new(ballot))?;
        let mut names = HashMap::from([("#open".to_owned(), "open".to_owned())]);
        let values = HashMap::from([
            (":one".to_owned(), num(1)),
            (":true".to_owned(), AttributeValue::Bool(true)),
            (":now".to_owned(), num(unix_ms(now))),
            (":rev".to_owned(), num(poll.options_rev)),
        ]);
        let mut expression = "SET ballots = ballots + :one".to_owned();
        for (i, choice) in ballot.choices.iter().enumerate() {
            names.insert(format!("#c{i}"), choice.to_string());
            expression.push_str(&format!(", votes.#c{i} = votes.#c{i} + :one"));
        }
        // Every try counts on a random shard, so a retry after a conflict most likely meets
        // no other ballot there.
        let on_a_shard = || {
            let count = self
                .update_in_transaction(&Key::Counter(poll.id, random_shard()))
                .update_expression(&expression)
                .condition_expression(STILL_OPEN)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            Ok(vec![record.clone(), updating(count)?])
        };
        match self.transact_through_conflicts(on_a_shard).await? {
            Ok(()) => Ok(CastOutcome::Recorded),
            Err(c) if c.condition_failed(0) => self
                .existing_ballot(&c, ballot)
                .await
                .map(CastOutcome::AlreadyVoted),
            Err(c) if c.condition_failed(1) => Ok(match c.old_item::<CounterItem>(1)? {
                Some(c) if !c.open || c.deadline_ms <= unix_ms(now) => CastOutcome::PollClosed,
                _ => CastOutcome::PollChanged,
            }),
            Err(c) => Err(c.unavailable("ballot transaction")),
        }
    }

    async fn poll_with_tally(&self, id: PollId) -> StoreResult<Option<(Poll, Tally)>> {
        let mut keys = vec![Key::Poll(id)];
        keys.extend((0..COUNTER_SHARDS).map(|n| Key::Counter(id, n)));
        let mut poll = None;
        let mut tally = Tally::default();
        for (key, item) in self.batch_get(&keys).await? {
            match key {
                Key::Poll(_) => poll = Some(from_item::<PollItem>(item)?.into_poll()),
                Key::Counter(..) => {
                    let counter: CounterItem = from_item(item)?;
                    tally.ballots += counter.ballots;
                    for (option, votes) in counter.votes {
                        if let Ok(id) = option.parse() {
                            *tally.per_option.entry(id).or_insert(0) += votes;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(poll.map(|p| (p, tally)))
    }
}

impl DynamoStore {
    /// The ballot that beat ours, from the cancellation when the store returned it there
    /// (DynamoDB does, with `ReturnValuesOnConditionCheckFailure`), else read back.
    async fn existing_ballot(&self, c: &Cancellation, ours: &Ballot) -> StoreResult<Ballot> {
        let item: Option<BallotItem> = match c.old_item(0)? {
            Some(item) => Some(item),
            None => self.get(&Key::ballot(ours.poll_id, &ours.voter)).await?,
        };
        item.map(|i| i.into_ballot(ours.voter.clone()))
            .ok_or_else(|| StoreError::Internal("ballot vanished after a conflict".into()))
    }
}

fn random_shard() -> u8 {
    u8::try_from(getrandom::u32().unwrap_or(0) % u32::from(COUNTER_SHARDS)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::ops::{NEW_ITEM, Reason};
    use super::super::scripted::{
        always_busy, assert_gave_up, ballot_for, busy_twice, cancelled_with, sample_poll, scripted,
    };
    use super::*;
    use crate::domain::OptionId;

    /// A new voter's ballot on a sample poll, cast on `store`.
    async fn cast_a_ballot(store: &DynamoStore) -> StoreResult<CastOutcome> {
        let poll = sample_poll();
        store
            .cast(&poll, &ballot_for(&poll), OffsetDateTime::now_utc())
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflicting_ballot_is_retried_and_recorded_once() {
        let (store, seen) = busy_twice();
        let outcome = cast_a_ballot(&store).await;
        assert!(matches!(outcome, Ok(CastOutcome::Recorded)), "{outcome:?}");
        let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|r| r.contains(NEW_ITEM)));
        assert_eq!(store.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn endless_conflicts_give_up_as_unavailable() {
        let (store, seen) = always_busy();
        assert_gave_up(cast_a_ballot(&store).await, &seen);
    }

    #[tokio::test(start_paused = true)]
    async fn the_existing_ballot_comes_back_with_the_cancellation() {
        let poll = sample_poll();
        let first = ballot_for(&poll);
        let key = Key::ballot(poll.id, &first.voter);
        let item = format!(
            r#"{{"PK":{{"S":"{pk}"}},"SK":{{"S":"{sk}"}},"poll_id":{{"S":"{poll}"}},"voter":{{"S":"{voter}"}},"choices":{{"L":[{{"S":"o2"}}]}},"voted_at":{{"S":"2026-01-01T00:00:00Z"}},"idempotency_key":{{"S":"k1"}}}}"#,
            pk = key.pk(),
            sk = key.sk(),
            poll = poll.id,
            voter = first.voter,
        );
        let (store, _) = scripted(vec![cancelled_with(&[
            (Reason::ConditionalCheckFailed, Some(&item)),
            (Reason::None, None),
        ])]);
        match store.cast(&poll, &first, OffsetDateTime::now_utc()).await {
            Ok(CastOutcome::AlreadyVoted(existing)) => {
                assert_eq!(existing.choices, vec![OptionId::for_index(1)]);
                assert_eq!(existing.idempotency_key.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.calls(), 1, "no read after the cancellation");
    }

    #[test]
    fn shards_stay_in_range() {
        assert!((0..1000).all(|_| random_shard() < COUNTER_SHARDS));
    }
}
