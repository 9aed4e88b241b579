//! Ports: the small traits through which handlers reach storage. Each method is one storage
//! round trip unless its doc says otherwise, so a handler's call budget can be read off the
//! handler. Implementations: [`crate::dynamo::DynamoStore`] (production, dev server, tests).

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{Ballot, Email, FamilyId, Poll, PollId, Tally, User, UserId};

/// Why a storage call failed. Conditions that are part of the domain (a taken email, a stale
/// version) have their own variants so that handlers never inspect SDK errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The email is already registered.
    #[error("email already registered")]
    EmailTaken,
    /// A conditional write found the item changed (stale version, other owner) or gone.
    #[error("the item changed or does not exist")]
    ConditionFailed,
    /// Options cannot change: at least one ballot exists.
    #[error("the poll already has ballots")]
    HasBallots,
    /// The store is throttling or unreachable; the request may succeed later.
    #[error("storage temporarily unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a misconfiguration. The text goes to the log only.
    #[error("storage error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the store keeps for login: the user's id and password hash, found by email.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: UserId,
    pub password_hash: String,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user and claims its email in one transaction; `EmailTaken` if claimed.
    async fn create_user(&self, user: &User, password_hash: &str) -> StoreResult<()>;
    async fn credentials(&self, email: &Email) -> StoreResult<Option<Credentials>>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
}

/// A stored refresh token (only its hash is stored; the token itself is shown once).
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub user_id: UserId,
    pub family: FamilyId,
    pub expires_at: OffsetDateTime,
    pub used: bool,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put_refresh(&self, record: &RefreshRecord) -> StoreResult<()>;
    async fn refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Marks `old` used and stores `new`, atomically, provided `old` was unused and its family
    /// not revoked; `ConditionFailed` otherwise. Safe against two concurrent rotations: one wins.
    async fn rotate(&self, old_hash: &str, new: &RefreshRecord) -> StoreResult<()>;
    /// Revokes every token of the family (used when a spent token is presented again).
    async fn revoke_family(&self, family: FamilyId) -> StoreResult<()>;
}

/// One page of a list, with the opaque position of the next page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PollCursor>,
}

/// Where a page of "my polls" stops: the last poll's creation time and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PollCursor {
    pub created_ms: i64,
    pub id: PollId,
}

#[async_trait]
pub trait PollStore: Send + Sync {
    /// Stores a new poll with its counters (one transaction).
    async fn create_poll(&self, poll: &Poll) -> StoreResult<()>;
    async fn poll(&self, id: PollId) -> StoreResult<Option<Poll>>;
    /// A page of the owner's polls, newest first: one query.
    async fn polls_by_owner(
        &self,
        owner: UserId,
        limit: u16,
        after: Option<&PollCursor>,
    ) -> StoreResult<Page<Poll>>;
    /// Replaces `previous` by `next` (one transaction) if the stored poll still has
    /// `previous.version` and owner; when `options_changed`, only while no ballot exists
    /// (`HasBallots`). The write-time ballot guards follow the poll's status and deadline.
    async fn update_poll(
        &self,
        previous: &Poll,
        next: &Poll,
        options_changed: bool,
    ) -> StoreResult<()>;
    /// Deletes the poll and its counters if it still has `previous.version` and owner.
    async fn delete_poll(&self, previous: &Poll) -> StoreResult<()>;
}

/// What happened to a ballot.
#[derive(Debug, Clone)]
pub enum CastOutcome {
    /// Recorded and counted.
    Recorded,
    /// This voter already has a ballot in this poll: here it is.
    AlreadyVoted(Ballot),
    /// The poll closed (by its owner or its deadline) before the write.
    PollClosed,
    /// The poll was deleted, or its options replaced, between the read and the write.
    PollChanged,
}

#[async_trait]
pub trait BallotStore: Send + Sync {
    /// Records the ballot and counts it, in one transaction that holds only if this voter has
    /// no ballot yet and the poll is still open with the option list the ballot was checked
    /// against (`poll.options_rev`) at `now`. Never read-then-write.
    async fn cast(
        &self,
        poll: &Poll,
        ballot: &Ballot,
        now: OffsetDateTime,
    ) -> StoreResult<CastOutcome>;
    /// The poll and its exact counts: one read, whatever the number of ballots.
    async fn poll_with_tally(&self, id: PollId) -> StoreResult<Option<(Poll, Tally)>>;
}

/// Every port, for state that needs them all.
pub trait Store: UserStore + SessionStore + PollStore + BallotStore {}
impl<T: UserStore + SessionStore + PollStore + BallotStore> Store for T {}
