//! [`PurgeStore`] for [`DynamoStore`]: a deleted poll's guests, cards and guests' ballots,
//! found from its guest list and removed with `BatchWriteItem`: guests and ballots deleted,
//! cards replaced by tombstones that the table's TTL removes later.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use super::items::{InviteItem, VotersItem};
use super::keys::{Key, PK, prefix_of};
use super::ops::{from_item, internal, to_item};
use super::{DynamoStore, Touch};
use crate::domain::{Guest, PollId, Voter};
use crate::ports::{Doomed, PURGE_PER_WRITE, PurgeStore, StoreError, StoreResult, VoterRecord};

/// How many times a batch's unprocessed deletes are sent again before the purge gives up (and
/// its message is delivered again later): DynamoDB leaves deletes unprocessed only when it
/// throttles, so a few tries with backoff are enough unless the table is overloaded.
const UNPROCESSED_ROUNDS: u32 = 5;

#[async_trait]
impl PurgeStore for DynamoStore {
    async fn guests_left(&self, poll: PollId, limit: u16) -> StoreResult<Vec<Guest>> {
        // Always the list's first page: the previous page's guests were deleted, so what is
        // left starts where the last page ended, and a redelivered message starts over from
        // whatever a cut-short purge left behind.
        let (guests, _) = self
            .query_guests(poll, None, Some(i32::from(limit)))
            .await?;
        Ok(guests)
    }

    async fn voter_records_left(&self, poll: PollId, limit: u16) -> StoreResult<Vec<VoterRecord>> {
        let pk = Key::Voters(poll, String::new()).pk();
        // A query names its partition key in a value, not in a key map: recorded by hand.
        let touches = vec![Touch::new("Query", "Query", prefix_of(&pk), None)];
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .consistent_read(true)
            .limit(i32::from(limit));
        let out = self.send(touches, query.send()).await?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let id = match Key::of_item(&item) {
                    Some(Key::Voters(_, id)) => id,
                    _ => return Err(internal("a voter record with another key")),
                };
                let record: VotersItem = from_item(item)?;
                let voters = record
                    .voters
                    .iter()
                    .map(|v| Voter::parse(v).ok_or_else(|| internal("a voter record's voter")))
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(VoterRecord { id, voters })
            })
            .collect()
    }

    async fn remove(&self, items: &[Doomed]) -> StoreResult<()> {
        for batch in items.chunks(PURGE_PER_WRITE) {
            let mut requests = batch
                .iter()
                .map(request_of)
                .collect::<StoreResult<Vec<_>>>()?;
            let mut round = 0;
            while !requests.is_empty() {
                round += 1;
                if round > UNPROCESSED_ROUNDS {
                    return Err(StoreError::Unavailable(
                        "deletes kept coming back unprocessed".into(),
                    ));
                }
                if round > 1 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << round)).await;
                }
                let touches = requests
                    .iter()
                    .filter_map(|r| match (r.delete_request(), r.put_request()) {
                        (Some(d), _) => d.key().get(PK),
                        (_, Some(p)) => p.item().get(PK),
                        _ => None,
                    })
                    .map(|pk| match pk {
                        AttributeValue::S(pk) => prefix_of(pk),
                        _ => "",
                    })
                    .map(|prefix| Touch::new("BatchWriteItem", "BatchWriteItem", prefix, None))
                    .collect();
                let write = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(HashMap::from([(self.table.to_string(), requests)])));
                let out = self.send(touches, write.send()).await?;
                requests = out
                    .unprocessed_items
                    .unwrap_or_default()
                    .remove(&*self.table)
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

/// The write that removes one item: a delete, or for a card the put of its tombstone.
fn request_of(doomed: &Doomed) -> StoreResult<WriteRequest> {
    let key = match doomed {
        Doomed::Ballot(poll, voter) => Key::ballot(*poll, voter),
        Doomed::Invite { hash, poll, until } => {
            let put = PutRequest::builder()
                .set_item(Some(to_item(&InviteItem::tombstone(hash, *poll, *until))?))
                .build()
                .map_err(internal)?;
            return Ok(WriteRequest::builder().put_request(put).build());
        }
        Doomed::Guest(poll, guest) => Key::Guest(*poll, guest.clone()),
        Doomed::GuestList(poll) => Key::GuestList(*poll),
        Doomed::VoterRecord(poll, id) => Key::Voters(*poll, id.clone()),
    };
    let delete = DeleteRequest::builder()
        .set_key(Some(key.item_key()))
        .build()
        .map_err(internal)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}
