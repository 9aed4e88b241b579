//! A deleted poll's personal data removed: its guests (names, emails, references), their
//! ballots and the list's counts are deleted, and each of their cards is replaced by a
//! tombstone that names only the poll (so that it keeps answering 410) and that the table's
//! TTL removes after [`CARD_TOMBSTONE`]. Nothing of the guests stays behind.

use super::{WorkError, Worker};
use crate::domain::Voter;
use crate::ports::{Doomed, PurgeMessage};

/// Guests read per page: each page is one query, then its cards and ballots (a guest has
/// `generation + 1` cards, usually one) and the guests themselves in `BatchWriteItem`s of 25.
const GUESTS_PER_PAGE: u16 = 100;

/// Records of other voters read per page: each names up to a batch's voters (1,000).
const RECORDS_PER_PAGE: u16 = 4;

/// How long a deleted poll's card keeps answering 410 `poll-deleted` (from a tombstone that
/// holds nothing of its guest) before the table's TTL removes it and it answers 404 like any
/// unknown card: long enough for the guests holding printed cards to learn what happened.
const CARD_TOMBSTONE: time::Duration = time::Duration::days(30);

/// What became of a purge message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purged {
    /// The poll's guests, cards and guests' ballots are gone (also when they were gone before:
    /// a redelivery).
    Done,
    /// The poll still exists: the deletion that sent the message has not happened yet, or
    /// failed (a stale `If-Match` that lost a race). Nothing was removed.
    PollExists,
}

impl Worker {
    /// Removes the deleted poll's guests page by page, then its other voters' ballots. Each
    /// page's cards (buried) and ballots go before the guests (the guest item is what leads to
    /// them), the list's counts after the guests, and each voters' record after its ballots,
    /// so a purge cut short anywhere leaves what is needed to finish it, and a redelivered
    /// message continues from what is left. Every write is to a fixed key: repeating one
    /// removes nothing more.
    pub(super) async fn purge(&self, message: &PurgeMessage) -> Result<Purged, WorkError> {
        let poll = message.purge;
        if self.store.poll(poll).await?.is_some() {
            return Ok(Purged::PollExists);
        }
        let until = self.clock.now() + CARD_TOMBSTONE;
        let mut guests_removed = 0_usize;
        loop {
            let page = self.store.guests_left(poll, GUESTS_PER_PAGE).await?;
            if page.is_empty() {
                break;
            }
            let mut leads = Vec::new();
            for guest in &page {
                leads.push(Doomed::Ballot(poll, Voter::Guest(guest.id.clone())));
                // Every card the guest was ever issued: reissues kept the old ones (revoked),
                // so that they answer 410 rather than 404.
                leads.extend((0..=guest.generation).map(|generation| Doomed::Invite {
                    hash: self.invite_key.token(poll, &guest.id, generation).hash(),
                    poll,
                    until,
                }));
            }
            self.store.remove(&leads).await?;
            let guests: Vec<Doomed> = page
                .iter()
                .map(|g| Doomed::Guest(poll, g.id.clone()))
                .collect();
            self.store.remove(&guests).await?;
            guests_removed += page.len();
        }
        self.store.remove(&[Doomed::GuestList(poll)]).await?;
        // The other voters' ballots, found from the count function's records of them; each
        // record goes once its ballots have.
        let mut ballots_removed = 0_usize;
        loop {
            let records = self
                .store
                .voter_records_left(poll, RECORDS_PER_PAGE)
                .await?;
            if records.is_empty() {
                break;
            }
            for record in records {
                let ballots: Vec<Doomed> = record
                    .voters
                    .iter()
                    .map(|v| Doomed::Ballot(poll, v.clone()))
                    .collect();
                self.store.remove(&ballots).await?;
                self.store
                    .remove(&[Doomed::VoterRecord(poll, record.id)])
                    .await?;
                ballots_removed += ballots.len();
            }
        }
        tracing::info!(poll_id = %poll, guests_removed, ballots_removed, "deleted poll's guests and ballots purged");
        Ok(Purged::Done)
    }
}

/// The purge message a render-queue body holds, if it is one.
pub(super) fn purge_of(body: &str) -> Option<PurgeMessage> {
    serde_json::from_str(body).ok()
}
