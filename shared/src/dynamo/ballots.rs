//! [`BallotStore`] for [`DynamoStore`]: a ballot is one conditional put of its own item (the
//! duplicate guard); the count function counts it later from the table's stream
//! (`tallies.rs`), so no ballot writes a counter. Results read the tally item.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::items::{BallotItem, PollItem, tally};
use super::keys::Key;
use super::ops::{NEW_ITEM, from_item, num, to_item};
use super::tallies::tally_of;
use crate::domain::{Ballot, Poll, PollId, Tally, Voter};
use crate::ports::{BallotStore, CastOutcome, StoreError, StoreResult};

/// The condition of [`BallotStore::lock_options`]: the tally is for the options the ballot was
/// checked against (or predates the revision attribute).
const SAME_OPTIONS: &str = "attribute_not_exists(#rev) OR #rev = :rev";

#[async_trait]
impl BallotStore for DynamoStore {
    async fn cast(&self, ballot: &Ballot) -> StoreResult<CastOutcome> {
        let put = self
            .put_item(to_item(&BallotItem::new(ballot))?)
            .condition_expression(NEW_ITEM);
        match self.put_unless_taken(put).await? {
            Ok(()) => Ok(CastOutcome::Recorded),
            // DynamoDB returns the ballot that beat ours (`ALL_OLD`), which is how a retry with
            // the same `Idempotency-Key` gets its first answer again; read it back otherwise.
            Err(old) => {
                let item: Option<BallotItem> = match old {
                    Some(old) => Some(from_item(old)?),
                    None => {
                        self.get(&Key::ballot(ballot.poll_id, &ballot.voter))
                            .await?
                    }
                };
                item.map(|i| CastOutcome::AlreadyVoted(i.into_ballot(ballot.voter.clone())))
                    .ok_or_else(|| StoreError::Internal("ballot vanished after a conflict".into()))
            }
        }
    }

    async fn lock_options(&self, poll: PollId, options_rev: u32) -> StoreResult<bool> {
        let update = self
            .update(&Key::Tally(poll))
            .update_expression("SET #locked = :true, #rev = if_not_exists(#rev, :rev)")
            .condition_expression(SAME_OPTIONS)
            .set_expression_attribute_names(Some(HashMap::from([
                ("#locked".to_owned(), tally::LOCKED.to_owned()),
                ("#rev".to_owned(), tally::OPTIONS_REV.to_owned()),
            ])))
            .set_expression_attribute_values(Some(HashMap::from([
                (":true".to_owned(), AttributeValue::Bool(true)),
                (":rev".to_owned(), num(options_rev)),
            ])));
        self.update_if(update).await
    }

    async fn ballot(&self, poll: PollId, voter: &Voter) -> StoreResult<Option<Ballot>> {
        let item: Option<BallotItem> = self.get(&Key::ballot(poll, voter)).await?;
        Ok(item.map(|i| i.into_ballot(voter.clone())))
    }

    async fn tally(&self, poll: PollId) -> StoreResult<Tally> {
        Ok(self
            .get_raw(&Key::Tally(poll))
            .await?
            .map(|item| tally_of(&item))
            .unwrap_or_default())
    }

    async fn poll_with_tally(&self, id: PollId) -> StoreResult<Option<(Poll, Tally)>> {
        let mut poll = None;
        let mut counts = Tally::default();
        for (key, item) in self.batch_get(&[Key::Poll(id), Key::Tally(id)]).await? {
            match key {
                Key::Poll(_) => poll = Some(from_item::<PollItem>(item)?.into_poll()),
                Key::Tally(_) => counts = tally_of(&item),
                _ => {}
            }
        }
        Ok(poll.map(|p| (p, counts)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{ballot_for, sample_poll, scripted};
    use super::*;
    use crate::domain::OptionId;

    #[tokio::test]
    async fn the_existing_ballot_comes_back_with_the_failed_condition() {
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
        let failed = format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed","Item":{item}}}"#
        );
        let (store, seen) = scripted(vec![(400, failed)]);
        match store.cast(&first).await {
            Ok(CastOutcome::AlreadyVoted(existing)) => {
                assert_eq!(existing.choices, vec![OptionId::for_index(1)]);
                assert_eq!(existing.idempotency_key.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.calls(), 1, "no read after the failed condition");
        let sent = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(sent[0].contains(NEW_ITEM), "{sent:?}");
        assert!(sent[0].contains("ALL_OLD"), "{sent:?}");
    }
}
