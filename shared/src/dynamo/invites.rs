//! [`InviteStore`] for [`DynamoStore`]: the reads a guest's routes make of an invite.

use async_trait::async_trait;

use super::DynamoStore;
use super::items::{BallotItem, InviteItem, PollItem};
use super::keys::Key;
use super::ops::from_item;
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
}
