//! [`InviteStore`] for [`DynamoStore`]: the reads a guest's routes make of an invite.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::items::unix_ms;
use super::items::{BallotItem, InviteItem, PollItem};
use super::keys::Key;
use super::ops::{from_item, num, updating};
use crate::domain::{Ballot, Invite, InviteHash, Poll, PollId, Voter};
use crate::ports::{InviteStore, StoreResult};

#[async_trait]
impl InviteStore for DynamoStore {
    async fn poll_and_invite(
        &self,
        poll: PollId,
        token_hash: &InviteHash,
    ) -> StoreResult<(Option<Poll>, Option<Invite>)> {
        let keys = [Key::Poll(poll), Key::Invite(token_hash.to_string())];
        let (mut found_poll, mut found_invite) = (None, None);
        for (key, item) in self.batch_get(&keys).await? {
            match key {
                Key::Poll(_) => found_poll = Some(from_item::<PollItem>(item)?.into_poll()),
                Key::Invite(_) => {
                    found_invite =
                        Some(from_item::<InviteItem>(item)?.into_invite(token_hash.clone()));
                }
                _ => {}
            }
        }
        Ok((found_poll, found_invite))
    }

    async fn invite(&self, token_hash: &InviteHash) -> StoreResult<Option<Invite>> {
        let item: Option<InviteItem> = self.get(&Key::Invite(token_hash.to_string())).await?;
        Ok(item.map(|i| i.into_invite(token_hash.clone())))
    }

    async fn poll_and_ballot(
        &self,
        poll: PollId,
        voter: &Voter,
    ) -> StoreResult<(Option<Poll>, Option<Ballot>)> {
        let keys = [Key::Poll(poll), Key::ballot(poll, voter)];
        let (mut found_poll, mut found_ballot) = (None, None);
        for (key, item) in self.batch_get(&keys).await? {
            match key {
                Key::Poll(_) => found_poll = Some(from_item::<PollItem>(item)?.into_poll()),
                Key::Ballot(..) => {
                    found_ballot = Some(from_item::<BallotItem>(item)?.into_ballot(voter.clone()));
                }
                _ => {}
            }
        }
        Ok((found_poll, found_ballot))
    }

    async fn mark_opened(&self, invite: &Invite, now: time::OffsetDateTime) -> StoreResult<()> {
        let card = self
            .update_in_transaction(&Key::Invite(invite.token_hash.to_string()))
            .update_expression("SET opened = :true")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":true", AttributeValue::Bool(true));
        let Some(guest) = &invite.guest else {
            // An invite from before guest lists has no guest to count.
            return self.mark_card_opened(invite).await;
        };
        let first = self
            .update_in_transaction(&Key::Guest(invite.poll_id, guest.clone()))
            .update_expression("SET opened_ms = :now")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(opened_ms)")
            .expression_attribute_values(":now", num(unix_ms(now)));
        let count = self
            .update_in_transaction(&Key::GuestList(invite.poll_id))
            .update_expression("ADD opened :one")
            .expression_attribute_values(":one", num(1));
        let items = vec![updating(card)?, updating(first)?, updating(count)?];
        match self
            .transact_through_conflicts(|| Ok(items.clone()))
            .await?
        {
            Ok(()) => Ok(()),
            // The guest opened another card of theirs before (or is gone): only this card is
            // marked, so that reading it again records nothing.
            Err(c) if c.condition_failed(1) && !c.condition_failed(0) => {
                self.mark_card_opened(invite).await
            }
            // The card itself is gone (its poll was deleted): nothing to record.
            Err(c) if c.condition_failed(0) => Ok(()),
            Err(c) => Err(c.unavailable("open invite")),
        }
    }
}

impl DynamoStore {
    /// Marks only the card opened (one `UpdateItem`); a card that is gone stays gone.
    async fn mark_card_opened(&self, invite: &Invite) -> StoreResult<()> {
        let update = self
            .update(&Key::Invite(invite.token_hash.to_string()))
            .update_expression("SET opened = :true")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":true", AttributeValue::Bool(true));
        self.update_if(update).await.map(|_| ())
    }
}
