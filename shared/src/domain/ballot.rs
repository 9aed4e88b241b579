//! Ballots: one per (poll, voter), whatever the number of requests.

use std::fmt;

use time::OffsetDateTime;

pub use super::poll::Choices;
use super::{GuestId, InviteHash, OptionId, PollId, UserId};

/// Who casts a ballot: a signed-in user, or a guest's invite (by the hash of its token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Voter {
    User(UserId),
    /// An invite made before polls had guest lists: one ballot per card.
    Invite(InviteHash),
    /// A guest of the poll's list, whichever of their cards they vote with.
    Guest(GuestId),
}

impl fmt::Display for Voter {
    /// The stable text form used inside storage keys: `u:<user id>`, `i:<token hash>` or
    /// `g:<guest id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "u:{id}"),
            Self::Invite(hash) => write!(f, "i:{hash}"),
            Self::Guest(guest) => write!(f, "g:{guest}"),
        }
    }
}

impl Voter {
    /// Reads back the text form of [`fmt::Display`]; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, id) = text.split_once(':')?;
        match kind {
            "u" => id.parse().ok().map(Self::User),
            "i" if !id.is_empty() => Some(Self::Invite(InviteHash::from_stored(id))),
            "g" => GuestId::parse(id).map(Self::Guest),
            _ => None,
        }
    }
}

/// A ballot as recorded. `idempotency_key` is what the first request carried, so a retry
/// with the same key can be answered with this very ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    pub poll_id: PollId,
    pub voter: Voter,
    pub choices: Vec<OptionId>,
    pub voted_at: OffsetDateTime,
    pub idempotency_key: Option<String>,
}
