//! [`PollStore`] for [`DynamoStore`]: a poll item, its tally (created and deleted with it in one
//! transaction) and the owner index that lists an owner's polls. The owner's writes are plain
//! writes to the poll item, which no ballot touches; only an option change also conditions on
//! the tally, which the first ballot locks.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::items::{PollItem, PollRequestItem, TallyItem, tally, unix_ms};
use super::keys::{GSI1, Key, owner_index, owner_index_start, prefix_of};
use super::ops::{NEW_ITEM, deleting, from_item, internal, num, to_item, updating};
use super::{DynamoStore, Touch};
use crate::domain::{Poll, PollId, UserId};
use time::OffsetDateTime;

use crate::ports::{
    CreateRequest, Page, PollCreated, PollCursor, PollStore, StoreError, StoreResult,
};

/// The condition of the owner's writes to a poll: the version they read, and still theirs.
const UNCHANGED: &str = "version = :version AND owner_id = :owner";

/// The condition on the tally of an option change: no votes instance has taken a ballot.
const UNLOCKED: &str = "attribute_not_exists(#locked)";

impl DynamoStore {
    /// The conditional replacement of a poll item: same version and owner as `previous`.
    fn poll_put_if_unchanged(
        &self,
        previous: &Poll,
        next: &Poll,
    ) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(to_item(&PollItem::new(next))?))
            .condition_expression(UNCHANGED)
            .set_expression_attribute_values(Some(unchanged_values(previous)))
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The tally's side of an option change: the new revision, only while unlocked.
    fn tally_options_update(&self, next: &Poll) -> StoreResult<TransactWriteItem> {
        updating(
            self.update_in_transaction(&Key::Tally(next.id))
                .update_expression("SET #rev = :rev")
                .condition_expression(UNLOCKED)
                .expression_attribute_names("#rev", tally::OPTIONS_REV)
                .expression_attribute_names("#locked", tally::LOCKED)
                .expression_attribute_values(":rev", num(next.options_rev)),
        )
    }
}

/// The values of [`UNCHANGED`] for the poll as the owner read it.
fn unchanged_values(previous: &Poll) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (":version".to_owned(), num(previous.version)),
        (
            ":owner".to_owned(),
            AttributeValue::S(previous.owner_id.to_string()),
        ),
    ])
}

#[async_trait]
impl PollStore for DynamoStore {
    async fn create_poll(
        &self,
        poll: &Poll,
        request: Option<&CreateRequest>,
        now: OffsetDateTime,
    ) -> StoreResult<PollCreated> {
        let mut items = Vec::new();
        if let Some(request) = request {
            let key = Key::PollRequest(poll.owner_id, request.key_hash.clone());
            let expires_at = request.until.unix_timestamp();
            let claim = PollRequestItem {
                pk: key.pk(),
                sk: key.sk().into(),
                poll_id: poll.id,
                fingerprint: request.fingerprint.clone(),
                expires_at,
                ttl: expires_at,
            };
            // A stale claim (TTL deletion lags up to 48 h) may be overwritten, so the
            // condition reads its expiry instead of relying on its absence.
            let mut put = self.put(
                to_item(&claim)?,
                Some(&format!("{NEW_ITEM} OR expires_at <= :now")),
            )?;
            if let Some(put) = put.put.as_mut() {
                put.expression_attribute_values = Some(HashMap::from([(
                    ":now".to_owned(),
                    num(now.unix_timestamp()),
                )]));
            }
            items.push(put);
        }
        items.push(self.put_new(&PollItem::new(poll))?);
        items.push(self.put(to_item(&TallyItem::new(poll))?, None)?);
        // Two requests with one key at once meet on the claim: the loser's transaction is
        // cancelled for the conflict and, tried again, finds the winner's claim.
        match self
            .transact_through_conflicts(|| Ok(items.clone()))
            .await?
        {
            Ok(()) => Ok(PollCreated::New),
            Err(c) if request.is_some() && c.condition_failed(0) => c
                .old_item::<PollRequestItem>(0)?
                .map(|e| PollCreated::Existing {
                    poll: e.poll_id,
                    fingerprint: e.fingerprint,
                })
                .ok_or_else(|| StoreError::Internal("poll request claim without its item".into())),
            Err(c) => Err(c.into_error("create poll")),
        }
    }

    async fn poll(&self, id: PollId) -> StoreResult<Option<Poll>> {
        let item: Option<PollItem> = self.get(&Key::Poll(id)).await?;
        Ok(item.map(PollItem::into_poll))
    }

    async fn polls_by_owner(
        &self,
        owner: UserId,
        limit: u16,
        after: Option<&PollCursor>,
    ) -> StoreResult<Page<Poll>> {
        let (owner_pk, _) = owner_index(owner, 0, PollId::new());
        // A query names its partition key in a value, not in a key map: recorded by hand.
        let touches = vec![Touch::new(
            "Query",
            "Query",
            prefix_of(&owner_pk),
            Some(GSI1),
        )];
        let start = after.map(|c| owner_index_start(owner, c.created_ms, c.id));
        // One more than asked: whether it arrives tells if there is a next page, so the last
        // page says so without an extra empty round trip.
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner_pk))
            .scan_index_forward(false)
            .limit(i32::from(limit) + 1)
            .set_exclusive_start_key(start);
        let out = self.send(touches, query.send()).await?;
        let mut polls = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| from_item::<PollItem>(i).map(PollItem::into_poll))
            .collect::<StoreResult<Vec<_>>>()?;
        let next = if polls.len() > usize::from(limit) {
            polls.truncate(usize::from(limit));
            polls.last().map(|p| PollCursor {
                created_ms: unix_ms(p.created_at),
                id: p.id,
            })
        } else {
            None
        };
        Ok(Page { items: polls, next })
    }

    async fn update_poll(
        &self,
        previous: &Poll,
        next: &Poll,
        options_changed: bool,
    ) -> StoreResult<()> {
        if !options_changed {
            // Close, deadline, text: one put of the poll item, which no ballot writes, so the
            // owner never waits for (or fails against) ballots.
            let put = self
                .put_item(to_item(&PollItem::new(next))?)
                .condition_expression(UNCHANGED)
                .set_expression_attribute_values(Some(unchanged_values(previous)));
            return match self.put_unless_taken(put).await? {
                Ok(()) => Ok(()),
                Err(_) => Err(StoreError::ConditionFailed),
            };
        }
        let items = vec![
            self.poll_put_if_unchanged(previous, next)?,
            self.tally_options_update(next)?,
        ];
        // The tally is also written by the count function, whose update may meet this
        // transaction: that conflict is retried, a failed condition is not.
        match self
            .transact_through_conflicts(|| Ok(items.clone()))
            .await?
        {
            Ok(()) => Ok(()),
            Err(c) if c.condition_failed(0) => Err(StoreError::ConditionFailed),
            Err(c) if c.condition_failed(1) => Err(StoreError::HasBallots),
            Err(c) => Err(c.into_error("poll update")),
        }
    }

    async fn delete_poll(&self, previous: &Poll) -> StoreResult<()> {
        let poll = self
            .delete_in_transaction(&Key::Poll(previous.id))
            .condition_expression(UNCHANGED)
            .set_expression_attribute_values(Some(unchanged_values(previous)));
        let items = vec![
            deleting(poll)?,
            deleting(self.delete_in_transaction(&Key::Tally(previous.id)))?,
        ];
        // Ballots stay behind: they are keyed by (poll, voter) and unreachable once the poll
        // is gone, and deleting thousands here would break the fixed call budget.
        match self
            .transact_through_conflicts(|| Ok(items.clone()))
            .await?
        {
            Ok(()) => Ok(()),
            Err(c) if c.condition_failed(0) => Err(StoreError::ConditionFailed),
            Err(c) => Err(c.into_error("poll deletion")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::Reason;
    use super::super::scripted::{
        always_busy, assert_gave_up, busy_twice, cancelled, sample_poll, scripted, sent,
    };
    use super::*;

    /// Closing a poll is one plain put of the poll item: no transaction, nothing a ballot
    /// writes, so no conflict to retry.
    #[tokio::test]
    async fn closing_a_poll_is_one_put_of_the_poll_item() {
        let (store, seen) = scripted(vec![(200, "{}".into())]);
        let poll = sample_poll();
        let mut closed = poll.clone();
        closed.status = crate::domain::PollStatus::Closed;
        closed.version += 1;
        let outcome = store.update_poll(&poll, &closed, false).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(sent(&seen), 1);
        let body = seen.lock().map(|s| s[0].clone()).unwrap_or_default();
        assert!(
            !body.contains("TransactItems") && body.contains("POLL#"),
            "{body}"
        );
    }

    /// The options change while the count function writes the tally: the transaction's
    /// conflict is retried.
    #[tokio::test(start_paused = true)]
    async fn an_option_change_gets_through_conflicts_with_counting() {
        let (store, seen) = busy_twice();
        let poll = sample_poll();
        let mut next = poll.clone();
        next.options_rev += 1;
        next.version += 1;
        let outcome = store.update_poll(&poll, &next, true).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(sent(&seen), 3);
    }

    /// The tally's condition (locked by a ballot) fails: the options are frozen.
    #[tokio::test]
    async fn an_option_change_after_a_ballot_is_refused() {
        let (store, _) = scripted(vec![cancelled(&[
            Reason::None,
            Reason::ConditionalCheckFailed,
        ])]);
        let poll = sample_poll();
        let mut next = poll.clone();
        next.options_rev += 1;
        let outcome = store.update_poll(&poll, &next, true).await;
        assert!(
            matches!(outcome, Err(StoreError::HasBallots)),
            "{outcome:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn endless_conflicts_on_a_deletion_give_up_as_unavailable() {
        let (store, seen) = always_busy();
        assert_gave_up(store.delete_poll(&sample_poll()).await, &seen);
    }

    /// A deletion whose transaction DynamoDB cancels once with these reasons: its outcome and
    /// how many requests it sent.
    async fn deletion_cancelled(reasons: &[Reason]) -> (StoreResult<()>, usize) {
        let (store, seen) = scripted(vec![cancelled(reasons)]);
        let outcome = store.delete_poll(&sample_poll()).await;
        (outcome, sent(&seen))
    }

    /// Throttling is busy storage (503, retry), not a bug on this side (500).
    #[tokio::test(start_paused = true)]
    async fn a_throttled_deletion_is_unavailable() {
        let (outcome, _) = deletion_cancelled(&[Reason::None, Reason::ThrottlingError]).await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    /// A stale version is a failed condition whatever else conflicted: no retry can fix it.
    #[tokio::test(start_paused = true)]
    async fn a_stale_version_is_not_retried() {
        let (outcome, sent) =
            deletion_cancelled(&[Reason::ConditionalCheckFailed, Reason::TransactionConflict])
                .await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{outcome:?}"
        );
        assert_eq!(sent, 1);
    }
}
