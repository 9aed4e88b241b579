//! [`GuestStore`] for [`DynamoStore`]: a poll's guest list under one partition key
//! (`GUEST#<poll>`), each guest's cards under their token hashes (`INVITE#<hash>`), and the
//! list's counts on one item of the list's partition.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::items::{GuestItem, GuestListItem, InviteItem, unix_ms};
use super::keys::{Key, PK, SK, prefix_of};
use super::ops::{NEW_ITEM, from_item, internal, num, updating};
use super::{DynamoStore, Touch};
use crate::domain::{Guest, GuestCounts, GuestId, Invite, InviteHash, PollId, Voter};
use crate::ports::{
    AddOutcome, GUESTS_PER_READ, GUESTS_PER_WRITE, GuestStore, GuestToAdd, GuestsAdded, StoreError,
    StoreResult,
};

/// How many times a batch of guests is written again after some of it turned out to be on the
/// list already: once is enough unless concurrent requests keep adding the same guests.
const ADD_ROUNDS: usize = 4;

#[async_trait]
impl GuestStore for DynamoStore {
    async fn add_guests(
        &self,
        poll: PollId,
        guests: &[GuestToAdd],
        now: OffsetDateTime,
        cap: u64,
    ) -> StoreResult<AddOutcome> {
        let mut done = GuestsAdded::default();
        for batch in guests.chunks(GUESTS_PER_WRITE) {
            let mut pending: Vec<&GuestToAdd> = batch.iter().collect();
            let mut rounds = 0;
            while !pending.is_empty() {
                rounds += 1;
                if rounds > ADD_ROUNDS {
                    return Err(StoreError::Unavailable(
                        "guests kept changing while they were added".into(),
                    ));
                }
                let outcome = self
                    .transact_through_conflicts(|| self.add_items(poll, &pending, now, cap))
                    .await?;
                let c = match outcome {
                    Ok(()) => {
                        done.added
                            .extend(pending.iter().map(|g| g.guest.id.clone()));
                        break;
                    }
                    Err(c) => c,
                };
                // Item 0 is the list's counter: its condition is the cap.
                if c.condition_failed(0) {
                    return Ok(AddOutcome::OverCap { so_far: done });
                }
                let failed: HashSet<usize> = c.failed_conditions().collect();
                if failed.is_empty() {
                    return Err(c.unavailable("add guests"));
                }
                // Items 1 + 2i and 2 + 2i are guest i and its first card: either standing
                // means the guest is on the list already (its card is written with it).
                let (there, rest): (Vec<_>, Vec<_>) =
                    pending.iter().enumerate().partition(|(i, _)| {
                        failed.contains(&(1 + 2 * i)) || failed.contains(&(2 + 2 * i))
                    });
                done.existing
                    .extend(there.into_iter().map(|(_, g)| g.guest.id.clone()));
                pending = rest.into_iter().map(|(_, g)| *g).collect();
            }
        }
        Ok(AddOutcome::Done(done))
    }

    async fn guests_page(
        &self,
        poll: PollId,
        after: Option<&GuestId>,
        limit: u16,
    ) -> StoreResult<(Vec<Guest>, Option<GuestId>)> {
        let start = after.map(|g| Key::Guest(poll, g.clone()).item_key());
        // One more than asked: whether it arrives tells if there is a next page.
        let (items, _) = self
            .query_guests(poll, start, Some(i32::from(limit) + 1))
            .await?;
        let mut guests = items;
        let next = if guests.len() > usize::from(limit) {
            guests.truncate(usize::from(limit));
            guests.last().map(|g| g.id.clone())
        } else {
            None
        };
        Ok((guests, next))
    }

    async fn guest_status(
        &self,
        poll: PollId,
        guests: &[GuestId],
    ) -> StoreResult<(GuestCounts, HashSet<GuestId>)> {
        if guests.len() > GUESTS_PER_READ {
            return Err(StoreError::Internal(format!(
                "{} guests' ballots in one read",
                guests.len()
            )));
        }
        let mut keys = vec![Key::GuestList(poll)];
        keys.extend(
            guests
                .iter()
                .map(|g| Key::ballot(poll, &Voter::Guest(g.clone()))),
        );
        let mut counts = GuestCounts::default();
        let mut voted = HashSet::new();
        for (key, item) in self.batch_get(&keys).await? {
            match key {
                Key::GuestList(_) => counts = from_item::<GuestListItem>(item)?.into_counts(),
                Key::Ballot(_, voter) => {
                    if let Some(guest) = voter.strip_prefix("g:").and_then(GuestId::parse) {
                        voted.insert(guest);
                    }
                }
                _ => {}
            }
        }
        Ok((counts, voted))
    }

    async fn guests(&self, poll: PollId, ids: &[GuestId]) -> StoreResult<Vec<Guest>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let keys: Vec<Key> = chunk.iter().map(|g| Key::Guest(poll, g.clone())).collect();
            for (key, item) in self.batch_get(&keys).await? {
                if let Key::Guest(..) = key {
                    found.push(from_item::<GuestItem>(item)?.into_guest());
                }
            }
        }
        Ok(found)
    }

    async fn all_guests(&self, poll: PollId) -> StoreResult<Vec<Guest>> {
        let mut guests = Vec::new();
        let mut start = None;
        loop {
            let (page, next) = self.query_guests(poll, start, None).await?;
            guests.extend(page);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(guests),
            }
        }
    }

    async fn revoke(
        &self,
        guest: &Guest,
        live: &InviteHash,
        next: Option<&InviteHash>,
    ) -> StoreResult<bool> {
        let key = Key::Guest(guest.poll_id, guest.id.clone());
        let mut update = self
            .update_in_transaction(&key)
            .condition_expression("generation = :g AND revoked = :revoked")
            .expression_attribute_values(":g", num(guest.generation))
            .expression_attribute_values(":revoked", AttributeValue::Bool(guest.revoked));
        update = match next {
            Some(_) => update
                .update_expression("SET generation = :next, revoked = :false")
                .expression_attribute_values(":next", num(guest.generation + 1))
                .expression_attribute_values(":false", AttributeValue::Bool(false)),
            None => update
                .update_expression("SET revoked = :true")
                .expression_attribute_values(":true", AttributeValue::Bool(true)),
        };
        // The old card is kept, marked, so that it answers 410 rather than 404: its holder
        // learns the card was withdrawn, not that they mistyped it.
        let kill = self
            .update_in_transaction(&Key::Invite(live.to_string()))
            .update_expression("SET revoked = :true")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":true", AttributeValue::Bool(true));
        let mut items = vec![updating(update)?, updating(kill)?];
        if let Some(hash) = next {
            let invite = Invite {
                token_hash: hash.clone(),
                poll_id: guest.poll_id,
                guest_name: guest.name.clone(),
                guest: Some(guest.id.clone()),
                generation: guest.generation + 1,
                revoked: false,
                // A guest who opened a card before has opened: the new card does not count
                // them a second time.
                opened: guest.opened_at.is_some(),
            };
            items.push(self.put_new(&InviteItem::new(&invite))?);
        }
        match self
            .transact_through_conflicts(|| Ok(items.clone()))
            .await?
        {
            Ok(()) => Ok(true),
            Err(c) if c.failed_conditions().next().is_some() => Ok(false),
            Err(c) => Err(c.unavailable("revoke a guest's card")),
        }
    }

    async fn mark_cards(&self, poll: PollId, at: OffsetDateTime) -> StoreResult<()> {
        let update = self
            .update(&Key::GuestList(poll))
            .update_expression("SET last_cards_ms = :at")
            .expression_attribute_values(":at", num(unix_ms(at)));
        self.send_update(update).await.map(|_| ())
    }
}

impl DynamoStore {
    /// One transaction adding `guests`: the list's counter first (`ADD`, under the cap), then
    /// each guest and its first card, both only where nothing stands yet.
    fn add_items(
        &self,
        poll: PollId,
        guests: &[&GuestToAdd],
        now: OffsetDateTime,
        cap: u64,
    ) -> StoreResult<Vec<aws_sdk_dynamodb::types::TransactWriteItem>> {
        let n = u64::try_from(guests.len()).map_err(internal)?;
        // Nothing may be added over the cap at all: a batch larger than the cap itself would
        // make the room below negative.
        if n > cap {
            return Err(StoreError::Internal("a batch larger than the cap".into()));
        }
        let counter = self
            .update_in_transaction(&Key::GuestList(poll))
            .update_expression("ADD guests :n")
            .condition_expression("attribute_not_exists(guests) OR guests <= :room")
            .expression_attribute_values(":n", num(n))
            .expression_attribute_values(":room", num(cap.saturating_sub(n)));
        let mut items = vec![updating(counter)?];
        for g in guests {
            items.push(self.put_new(&GuestItem::new(poll, &g.guest, now))?);
            let invite = Invite {
                token_hash: g.invite.clone(),
                poll_id: poll,
                guest_name: g.guest.name.clone(),
                guest: Some(g.guest.id.clone()),
                generation: 0,
                revoked: false,
                opened: false,
            };
            items.push(self.put(
                super::ops::to_item(&InviteItem::new(&invite))?,
                Some(NEW_ITEM),
            )?);
        }
        Ok(items)
    }

    /// One query of the list's guests (strongly consistent, in id order) from `start`: the
    /// guests and where the next query starts, if the page was cut short.
    pub(super) async fn query_guests(
        &self,
        poll: PollId,
        start: Option<std::collections::HashMap<String, AttributeValue>>,
        limit: Option<i32>,
    ) -> StoreResult<(
        Vec<Guest>,
        Option<std::collections::HashMap<String, AttributeValue>>,
    )> {
        let pk = Key::GuestList(poll).pk();
        // A query names its partition key in a value, not in a key map: recorded by hand.
        let touches = vec![Touch::new("Query", "Query", prefix_of(&pk), None)];
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :guest)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":guest", AttributeValue::S("G#".into()))
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(start);
        let out = self.send(touches, query.send()).await?;
        let guests = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| from_item::<GuestItem>(i).map(GuestItem::into_guest))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((guests, out.last_evaluated_key))
    }
}
