//! Ports: the small traits through which handlers reach storage. Each method is one storage
//! round trip unless its doc says otherwise, so a handler's call budget can be read off the
//! handler. Implementations: [`crate::dynamo::DynamoStore`] (production, dev server, tests).

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{
    Ballot, Card, Email, FamilyId, Guest, GuestCounts, GuestId, Invite, InviteHash, Job, JobId,
    NewGuest, Poll, PollId, Tally, User, UserId, Voter,
};

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
pub trait UserStore: Send + Sync + std::fmt::Debug {
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
    /// When the family's first token was issued (its login). A logout-all revokes every
    /// family that started before it.
    pub family_started: OffsetDateTime,
}

#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    async fn put_refresh(&self, record: &RefreshRecord) -> StoreResult<()>;
    async fn refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Marks `old` used and stores `new`, atomically, provided `old` was unused, its family
    /// not revoked and the user's sessions not all revoked since the family started;
    /// `ConditionFailed` otherwise. Safe against two concurrent rotations: at most one wins.
    async fn rotate(&self, old_hash: &str, new: &RefreshRecord) -> StoreResult<()>;
    /// Revokes every token of the family (used when a spent token is presented again). The
    /// revocation is kept until `keep_until`, which must be after the family's last token
    /// expires: once it is gone, an unspent token of the family would rotate again.
    async fn revoke_family(&self, family: FamilyId, keep_until: OffsetDateTime) -> StoreResult<()>;
    /// Revokes every family of `user` that started before `before` (a logout-all), kept until
    /// `keep_until` like a family's revocation. A later call moves `before` forward.
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        before: OffsetDateTime,
        keep_until: OffsetDateTime,
    ) -> StoreResult<()>;
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

/// A creating request's `Idempotency-Key` (hashed) and the fingerprint of its body.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub key_hash: String,
    pub fingerprint: String,
    /// How long a retry with the same key finds the same poll.
    pub until: OffsetDateTime,
}

/// Whether a poll request made a new poll or found the one the same key made earlier.
#[derive(Debug, Clone)]
pub enum PollCreated {
    New,
    /// The key made this poll earlier, from a body with this fingerprint.
    Existing {
        poll: PollId,
        fingerprint: String,
    },
}

#[async_trait]
pub trait PollStore: Send + Sync + std::fmt::Debug {
    /// Stores a new poll with its (empty) tally (one transaction); with `request`, in the same
    /// transaction the key's claim, unless an unexpired claim of the same owner and key
    /// stands: then nothing is written and that claim's poll is returned.
    async fn create_poll(
        &self,
        poll: &Poll,
        request: Option<&CreateRequest>,
        now: OffsetDateTime,
    ) -> StoreResult<PollCreated>;
    async fn poll(&self, id: PollId) -> StoreResult<Option<Poll>>;
    /// A page of the owner's polls, newest first: one query.
    async fn polls_by_owner(
        &self,
        owner: UserId,
        limit: u16,
        after: Option<&PollCursor>,
    ) -> StoreResult<Page<Poll>>;
    /// Replaces `previous` by `next` if the stored poll still has `previous.version` and owner:
    /// one conditional put that no ballot contends with. When `options_changed`, one
    /// transaction with the tally instead, which holds only while no votes instance has taken
    /// a ballot on the poll ([`BallotStore::lock_options`]; `HasBallots` otherwise).
    async fn update_poll(
        &self,
        previous: &Poll,
        next: &Poll,
        options_changed: bool,
    ) -> StoreResult<()>;
    /// Deletes the poll and its tally if it still has `previous.version` and owner.
    async fn delete_poll(&self, previous: &Poll) -> StoreResult<()>;
}

/// What happened to a ballot.
#[derive(Debug, Clone)]
pub enum CastOutcome {
    /// Recorded; the count function counts it from the table's stream.
    Recorded,
    /// This voter already has a ballot in this poll: here it is.
    AlreadyVoted(Ballot),
}

#[async_trait]
pub trait BallotStore: Send + Sync + std::fmt::Debug {
    /// Records the ballot: one conditional put that holds only if this voter has no ballot in
    /// the poll yet (never read-then-write). The poll's rules are the caller's to check, against
    /// a cached poll; every ballot stored is counted.
    async fn cast(&self, ballot: &Ballot) -> StoreResult<CastOutcome>;
    /// Freezes the poll's options at `options_rev` before its first ballot: `true` when the
    /// tally holds that revision (and now refuses option changes), `false` when the options
    /// changed since the caller read the poll. Idempotent; a votes instance calls it once per
    /// poll and revision, so an option change and a first ballot never both succeed.
    async fn lock_options(&self, poll: PollId, options_rev: u32) -> StoreResult<bool>;
    /// This voter's ballot in the poll, if any (for a replay once the poll has closed).
    async fn ballot(&self, poll: PollId, voter: &Voter) -> StoreResult<Option<Ballot>>;
    /// The poll's counts as far as the count function got: one read.
    async fn tally(&self, poll: PollId) -> StoreResult<Tally>;
    /// The poll and its counts, in one read (a chart job needs both).
    async fn poll_with_tally(&self, id: PollId) -> StoreResult<Option<(Poll, Tally)>>;
}

/// A stream sequence number, zero-padded so that two of them compare as strings the way
/// they compare as numbers (DynamoDB's are decimal strings of up to 40 digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Width of the padded form: the longest sequence number DynamoDB Streams issues.
    pub const WIDTH: usize = 40;

    /// Parses a stream record's sequence number: decimal digits only, at most 40.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok =
            !raw.is_empty() && raw.len() <= Self::WIDTH && raw.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| Self(format!("{raw:0>width$}", width = Self::WIDTH)))
    }

    /// The padded form, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where counting stands for one poll on one stream shard: the last sequence number counted,
/// the newest `voted_at` among the ballots counted there, and when that count was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub last: SequenceNumber,
    pub newest_vote: OffsetDateTime,
    pub written: OffsetDateTime,
}

/// What one batch adds to a poll's tally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TallyDelta {
    pub ballots: u64,
    /// Of them, ballots of guests of the poll's list.
    pub guest_ballots: u64,
    pub per_option: std::collections::BTreeMap<crate::domain::OptionId, u64>,
}

/// The outcome of [`TallyStore::add`].
#[derive(Debug, Clone)]
pub enum Added {
    /// Counted; these other shards' checkpoints (as they stood) are too old to guard anything
    /// (`dynamo::CHECKPOINT_LIFETIME`) and may be pruned by the next write. `tally` is the
    /// poll's tally as this update left it (the item as it stood, which the write returns,
    /// plus what it added), so the count function can publish it without reading it back.
    Counted { stale: Vec<String>, tally: Tally },
    /// Not counted: the poll's checkpoint for this shard was already at or past the batch's
    /// first record (a redelivery or an overlapping batch). Here is where it stands.
    Behind(SequenceNumber),
}

/// The count function's side of the tally (`dynamo/tallies.rs`).
#[async_trait]
pub trait TallyStore: Send + Sync + std::fmt::Debug {
    /// Adds `delta` to the poll's tally and sets the checkpoint of `shard` to `at`, in one
    /// conditional update that holds only while the stored checkpoint of that shard is absent
    /// or below `first` (the batch's first record for this poll), so a batch counts once.
    /// Removes the checkpoints of the shards in `prune` in the same write.
    async fn add(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        at: &Checkpoint,
        delta: &TallyDelta,
        prune: &[String],
    ) -> StoreResult<Added>;
    /// Records who cast a batch's ballots in the poll (its voters other than guests, whom the
    /// guest list finds), so that the poll's deletion can find their ballots, which are keyed
    /// by voter. Keyed by the shard and the batch's first record: a redelivered batch writes
    /// the same record again. One `PutItem` per [`VOTERS_PER_RECORD`] voters.
    async fn record_voters(
        &self,
        poll: PollId,
        shard: &str,
        first: &SequenceNumber,
        voters: &[Voter],
    ) -> StoreResult<()>;
}

/// Voters per record of [`TallyStore::record_voters`]: about 40 KB, a tenth of an item's
/// limit.
pub const VOTERS_PER_RECORD: usize = 1_000;

/// Where a page of a poll's jobs stops: the last job's creation time and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobCursor {
    pub created_ms: i64,
    pub id: JobId,
}

/// The outcome of [`PublishLease::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Publish now: this claim holds the poll's publishing for the next pace.
    Granted,
    /// A publish of this total or a larger one was claimed already: nothing to do.
    Superseded,
    /// Another claim holds publishing until then (with a smaller total): try again then.
    HeldUntil(OffsetDateTime),
}

/// The count functions' shared lease on publishing a poll's live results, on the poll's tally
/// item (`dynamo/tallies.rs`): one conditional update per claim.
#[async_trait]
pub trait PublishLease: Send + Sync + std::fmt::Debug {
    /// Claims the publishing of `total` for `poll` at `now`: granted only when no claim was
    /// made in the last `pace` and no claim ever was for `total` or more.
    async fn claim(
        &self,
        poll: PollId,
        total: u64,
        now: OffsetDateTime,
        pace: time::Duration,
    ) -> StoreResult<Lease>;
}

/// Where the count function publishes a poll's new results for live watchers
/// (`live::appsync` on AWS, the dev server's hub locally). A publish that fails is logged and
/// dropped: watchers catch up with the next one, or fall back to reading the results, and the
/// count itself never waits on a watcher.
#[async_trait]
pub trait ResultsFeed: Send + Sync + std::fmt::Debug {
    async fn publish(&self, results: &crate::domain::LiveResults) -> Result<(), String>;
}

/// Whether a job request made a new job or found the one the same request made earlier.
#[derive(Debug, Clone)]
pub enum JobCreated {
    New,
    Existing(JobId),
    /// Not stored: the owner already has `limit` jobs in flight (these, queued or running).
    Full(Vec<JobId>),
}

#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Stores the job unless a job with the same request fingerprint was created within the
    /// last 24 hours (one transaction); then returns that job's id. `replacing` names a job
    /// that the fingerprint may still point at and that must not block this one (it failed),
    /// so a retry after a failure makes a new job, while a concurrent retry finds the job that
    /// won. A new job takes one of its owner's `in_flight` slots in the same transaction, or
    /// is not stored at all ([`JobCreated::Full`]); a slot is freed when the job completes or
    /// fails ([`Self::complete_job`], [`Self::fail_job`]) and lapses by itself at the job's
    /// deadline. One more transaction when the owner is at the limit with lapsed slots.
    async fn create_job(
        &self,
        job: &Job,
        fingerprint: &str,
        now: OffsetDateTime,
        replacing: Option<JobId>,
        in_flight: u32,
    ) -> StoreResult<JobCreated>;
    async fn job(&self, id: JobId) -> StoreResult<Option<Job>>;
    /// A page of the poll's jobs, newest first, after `after`: one query of the poll-jobs
    /// index (eventually consistent: a job started a moment ago may be missing for that
    /// moment). The next page's start, when there is one.
    async fn jobs_of_poll(
        &self,
        poll: PollId,
        limit: u16,
        after: Option<&JobCursor>,
    ) -> StoreResult<(Vec<Job>, Option<JobCursor>)>;
    /// Counts chunk `chunk` of the job once, with its done and failed units: `true` when
    /// counted now, `false` when it had been counted before (a redelivery).
    async fn record_chunk(
        &self,
        job: JobId,
        chunk: u32,
        done: u32,
        failed: u32,
    ) -> StoreResult<bool>;
    /// Claims the right to build the job's final file until `until`: `false` while another
    /// worker holds an unexpired claim or the job is complete.
    async fn claim_finish(
        &self,
        job: JobId,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Extends the claim to `until` while its holder works: `false` once the job has ended
    /// (completed or failed) or the claim was given up.
    async fn renew_finish(&self, job: JobId, until: OffsetDateTime) -> StoreResult<bool>;
    /// Records that the claim's holder has bundled `bundled` files into the final file, for
    /// the job's progress. The figure only grows: a builder that starts over after another
    /// died leaves it where it was until it passes it. `false` when nothing was written (the
    /// figure was as high already, or the job has ended).
    async fn record_bundled(&self, job: JobId, bundled: u32) -> StoreResult<bool>;
    /// Gives the claim up (the builder failed), so that a redelivery may build at once.
    async fn release_finish(&self, job: JobId) -> StoreResult<()>;
    /// Marks the job done with its file and frees its in-flight slot (two calls).
    async fn complete_job(
        &self,
        job: JobId,
        object_key: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Marks the job failed with a reason its owner can read, unless it completed first:
    /// `true` when the failure was recorded. Frees its in-flight slot (one more call then).
    async fn fail_job(&self, job: JobId, reason: &str) -> StoreResult<bool>;
}

/// A guest's side of the invites: what the votes function reads for a guest's ballot and page.
#[async_trait]
pub trait InviteStore: Send + Sync + std::fmt::Debug {
    /// The poll and the invite, in one read (for a guest's ballot).
    async fn poll_and_invite(
        &self,
        poll: PollId,
        token_hash: &InviteHash,
    ) -> StoreResult<(Option<Poll>, Option<Invite>)>;
    async fn invite(&self, token_hash: &InviteHash) -> StoreResult<Option<Invite>>;
    /// The poll and this voter's ballot, in one read (for a guest's page).
    async fn poll_and_ballot(
        &self,
        poll: PollId,
        voter: &Voter,
    ) -> StoreResult<(Option<Poll>, Option<Ballot>)>;
    /// Records that the guest read this invite (its first read only: callers check
    /// [`Invite::opened`]): the invite, the guest's first opening and the list's count, in one
    /// transaction; one more call when the guest had opened another card of theirs before.
    async fn mark_opened(&self, invite: &Invite, now: OffsetDateTime) -> StoreResult<()>;
}

/// What adding guests to a list did: each guest given is either added or was there already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestsAdded {
    pub added: Vec<GuestId>,
    pub existing: Vec<GuestId>,
}

/// A guest to add with the hash of its first token (generation 0), which only the caller can
/// compute (it holds the invite key).
#[derive(Debug, Clone)]
pub struct GuestToAdd {
    pub guest: NewGuest,
    pub invite: InviteHash,
}

/// How adding guests ended.
#[derive(Debug, Clone)]
pub enum AddOutcome {
    /// All of them are on the list now.
    Done(GuestsAdded),
    /// The list would go over `cap`: the guests named in `so_far` were added before the
    /// write that would have crossed it, and no other.
    OverCap { so_far: GuestsAdded },
}

/// A poll's guest list: the jobs function's side (the organiser adds, lists, revokes and
/// reissues, and renders cards for guests).
#[async_trait]
pub trait GuestStore: Send + Sync + std::fmt::Debug {
    /// Adds the guests not on `poll`'s list yet, each with its first invite, keeping the list
    /// at most `cap` long. One transaction per [`GUESTS_PER_WRITE`] guests (one more for a
    /// batch where some were there already, or raced in by a concurrent request).
    async fn add_guests(
        &self,
        poll: PollId,
        guests: &[GuestToAdd],
        now: OffsetDateTime,
        cap: u64,
    ) -> StoreResult<AddOutcome>;
    /// A page of the list in id order after `after`: one query. The next page's start, when
    /// there is one.
    async fn guests_page(
        &self,
        poll: PollId,
        after: Option<&GuestId>,
        limit: u16,
    ) -> StoreResult<(Vec<Guest>, Option<GuestId>)>;
    /// The list's counts and which of `guests` (at most [`GUESTS_PER_READ`]) have a ballot, in
    /// one read.
    async fn guest_status(
        &self,
        poll: PollId,
        guests: &[GuestId],
    ) -> StoreResult<(GuestCounts, std::collections::HashSet<GuestId>)>;
    /// The named guests that are on the list: one read per 100.
    async fn guests(&self, poll: PollId, ids: &[GuestId]) -> StoreResult<Vec<Guest>>;
    /// The whole list: one query per megabyte (about 4,000 guests).
    async fn all_guests(&self, poll: PollId) -> StoreResult<Vec<Guest>>;
    /// Kills the guest's live card (`live`), and with `next` issues the guest's next one
    /// (generation + 1) in the same transaction: `false` when the guest changed since it was
    /// read (a concurrent revoke or reissue), then nothing is written.
    async fn revoke(
        &self,
        guest: &Guest,
        live: &InviteHash,
        next: Option<&InviteHash>,
    ) -> StoreResult<bool>;
    /// Records the time of a card job for the list's "new guests" (one call).
    async fn mark_cards(&self, poll: PollId, at: OffsetDateTime) -> StoreResult<()>;
}

/// An item of a deleted poll that [`PurgeStore::remove`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doomed {
    /// A voter's ballot in the poll.
    Ballot(PollId, Voter),
    /// A card, by its token's hash: replaced by a tombstone that names only its poll, so that
    /// a printed card keeps answering 410 `poll-deleted` (not 404, as a mistyped one) until
    /// the table's TTL removes it at `until`.
    Invite {
        hash: InviteHash,
        poll: PollId,
        until: OffsetDateTime,
    },
    /// A guest of the poll's list (name, email, reference).
    Guest(PollId, GuestId),
    /// The list's counts.
    GuestList(PollId),
    /// A record of a batch's voters ([`VoterRecord::id`]).
    VoterRecord(PollId, String),
}

/// One record of [`TallyStore::record_voters`], as the purge reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterRecord {
    /// Which record (opaque): what [`Doomed::VoterRecord`] removes.
    pub id: String,
    pub voters: Vec<Voter>,
}

/// What the render worker removes once a poll is deleted: its guests, their cards and their
/// ballots. The worker finds them from the guest list, page by page, and removes each page's
/// cards and ballots before the guests that lead to them, so a purge cut short anywhere is
/// finished by the message's redelivery.
#[async_trait]
pub trait PurgeStore: Send + Sync + std::fmt::Debug {
    /// The first `limit` guests still on the poll's list: one query.
    async fn guests_left(&self, poll: PollId, limit: u16) -> StoreResult<Vec<Guest>>;
    /// The first `limit` records of the poll's other voters still there: one query.
    async fn voter_records_left(&self, poll: PollId, limit: u16) -> StoreResult<Vec<VoterRecord>>;
    /// Deletes the items, or puts their tombstones (those already gone or buried are no
    /// error): one `BatchWriteItem` per
    /// [`PURGE_PER_WRITE`] items, and one more for each batch DynamoDB left partly
    /// unprocessed (throttling).
    async fn remove(&self, items: &[Doomed]) -> StoreResult<()>;
}

/// Deletes per `BatchWriteItem` (DynamoDB's limit).
pub const PURGE_PER_WRITE: usize = 25;

/// Guests written per transaction: each is two items (the guest and its invite) and the
/// list's counter is one more, under DynamoDB's 100 items a transaction.
pub const GUESTS_PER_WRITE: usize = 49;
/// Guests whose ballots one status read looks up, besides the list's counts (100 keys a
/// `BatchGetItem`).
pub const GUESTS_PER_READ: usize = 99;

/// Fixed-window request counters, shared by every instance of every function.
#[async_trait]
pub trait RateCounter: Send + Sync + std::fmt::Debug {
    /// Counts one request against `scope` in the window starting at `window_start` (epoch
    /// seconds) and returns the window's count so far, this request included. One call.
    async fn hit(&self, scope: &str, window_start: i64, window_seconds: i64) -> StoreResult<u64>;

    /// Takes `amount` from a quota of `limit` per window for `scope`, only if it all fits:
    /// `Some(used)` (this amount included) when taken, `None` when it would go over, in which
    /// case nothing is taken. One conditional call, so concurrent takers never overshoot.
    async fn take(
        &self,
        scope: &str,
        window_start: i64,
        window_seconds: i64,
        amount: u64,
        limit: u64,
    ) -> StoreResult<Option<u64>>;

    /// The failures counted against `scope` and when the last one was. One read.
    async fn failures(&self, scope: &str) -> StoreResult<Failures>;

    /// Counts one more failure against `scope` at `now` (epoch seconds), forgotten `keep`
    /// seconds later, and returns the failures so far, this one included. One call.
    async fn fail(&self, scope: &str, now: i64, keep: i64) -> StoreResult<u64>;

    /// Forgets the failures counted against `scope` (a success ends a backoff). One call.
    async fn forgive(&self, scope: &str) -> StoreResult<()>;
}

/// Failures counted against a scope: how many, and the last one's time (epoch seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: u64,
    pub last: i64,
}

/// A multipart upload under way: the object's key and the id the store gave the upload, which
/// every later step of the upload names together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    pub id: String,
}

/// Generated files (S3). Keys are deterministic, so a repeated write replaces the same object.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> StoreResult<()>;
    async fn get(&self, key: &str) -> StoreResult<Vec<u8>>;
    /// Keys under `prefix`, in key order (one call per 1,000 keys).
    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>>;
    /// A multipart upload, for files too large to hold in memory: parts of at least 5 MiB
    /// (except the last), numbered from 1.
    async fn start_upload(&self, key: &str, content_type: &str) -> StoreResult<Upload>;
    /// Uploads part `n`; returns its ETag, which [`BlobStore::finish_upload`] needs.
    async fn upload_part(&self, upload: &Upload, n: i32, bytes: Vec<u8>) -> StoreResult<String>;
    /// Joins the parts, given as (number, ETag), into the object.
    async fn finish_upload(&self, upload: &Upload, parts: Vec<(i32, String)>) -> StoreResult<()>;
    async fn abort_upload(&self, upload: &Upload) -> StoreResult<()>;
    /// A URL that downloads `key` for `valid_for`, signed now.
    async fn presign_get(&self, key: &str, valid_for: std::time::Duration) -> StoreResult<String>;
}

/// One unit of render work: a chunk of a job. Travels as an SQS message body (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderMessage {
    pub job_id: JobId,
    pub chunk: u32,
    /// Index of the chunk's first guest in the job.
    pub start: u32,
    /// The chunk's cards (an invites job); a message queued before guest lists, whose guests
    /// had no ids, fails to parse and is dead-lettered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guests: Vec<Card>,
    /// The API request that made the job, so one id finds the whole story in the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The removal of a deleted poll's guests, cards and guests' ballots: one message per poll on
/// the render queue, which the render worker tells from a chunk by its `purge` field. The
/// worker reads the poll first and acts only once it is gone, so a message sent for a
/// deletion that then failed removes nothing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeMessage {
    /// The deleted poll.
    pub purge: PollId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// How long the polls function has SQS hold a purge message on AWS before the render worker
/// gets it. A ballot may still be taken for up to a second after the deletion (a votes
/// instance's cached poll), and a ballot's voter is recorded (for the purge to find) when the
/// count function counts it, about a second later: a minute covers both with room, so the
/// purge finds what the poll's last moments wrote. The dev server and the tests deliver at
/// once, after settling what they counted.
pub const PURGE_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// The render queue (SQS).
#[async_trait]
pub trait RenderQueue: Send + Sync + std::fmt::Debug {
    /// Enqueues the messages (ten per `SendMessageBatch`); fails if any was not accepted.
    async fn send(&self, messages: &[RenderMessage]) -> StoreResult<()>;
    /// Enqueues the removal of a deleted poll's personal data (one `SendMessage`).
    async fn purge(&self, message: &PurgeMessage) -> StoreResult<()>;
}

/// Where the render worker puts a message it can never process (its body is not a render
/// message) at once, on its first delivery: SQS itself only moves a message after
/// `maxReceiveCount` failed deliveries, each a visibility timeout (12 minutes) apart, and no
/// redelivery can make an unreadable body readable.
#[async_trait]
pub trait DeadLetters: Send + Sync + std::fmt::Debug {
    /// Stores `body` in the dead-letter queue. Only once this succeeds may the message be
    /// reported processed (and so deleted from the render queue).
    async fn dead_letter(&self, body: &str) -> StoreResult<()>;
}
