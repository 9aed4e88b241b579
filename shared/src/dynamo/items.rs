//! Stored item shapes, converted with `serde_dynamo`. Attribute names live here and in
//! `keys.rs` only; the rest of the crate sees domain types.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::keys::{Key, owner_index, poll_jobs_index};
use crate::domain::{
    Ballot, Guest, GuestCounts, GuestId, Invite, InviteHash, NewGuest, OptionId, Poll, PollId,
    PollOption, PollStatus, ResultsVisibility, User, UserId, Visibility, Voter,
};
use crate::ports::RefreshRecord;

#[derive(Debug, Serialize, Deserialize)]
pub struct UserItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub id: UserId,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl UserItem {
    pub fn new(user: &User) -> Self {
        let key = Key::User(user.id);
        Self {
            pk: key.pk(),
            sk: key.sk().into(),
            id: user.id,
            email: user.email.as_str().into(),
            created_at: user.created_at,
        }
    }
}

/// The email marker. Holding the hash here makes login one read.
#[derive(Debug, Serialize, Deserialize)]
pub struct EmailItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub user_id: UserId,
    pub password_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub user_id: UserId,
    pub family: crate::domain::FamilyId,
    pub expires_at: i64,
    pub used: bool,
    /// Milliseconds; absent on tokens issued before logout-all existed, which read as 0 and
    /// so are revoked by the first logout-all.
    #[serde(default)]
    pub family_started_ms: i64,
    pub ttl: i64,
}

impl RefreshItem {
    pub fn new(record: &RefreshRecord) -> Self {
        let key = Key::Refresh(record.token_hash.clone());
        let expires_at = record.expires_at.unix_timestamp();
        Self {
            pk: key.pk(),
            sk: key.sk().into(),
            user_id: record.user_id,
            family: record.family,
            expires_at,
            used: record.used,
            family_started_ms: unix_ms(record.family_started),
            // A spent token is kept a day past its expiry, so reuse is still detected then.
            ttl: expires_at + 86_400,
        }
    }

    pub fn into_record(self, token_hash: String) -> RefreshRecord {
        RefreshRecord {
            token_hash,
            user_id: self.user_id,
            family: self.family,
            expires_at: OffsetDateTime::from_unix_timestamp(self.expires_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            used: self.used,
            family_started: from_unix_ms(self.family_started_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PollItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    #[serde(rename = "GSI1PK")]
    pub gsi1_pk: String,
    #[serde(rename = "GSI1SK")]
    pub gsi1_sk: String,
    pub id: PollId,
    pub owner_id: UserId,
    pub question: String,
    /// Absent on polls stored before event names existed, and when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    pub options: Vec<PollOption>,
    pub status: PollStatus,
    pub visibility: Visibility,
    pub results: ResultsVisibility,
    pub max_choices: u8,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub closes_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub version: u64,
    pub options_rev: u32,
}

pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the epoch (the epoch itself if out of range).
pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl PollItem {
    pub fn new(poll: &Poll) -> Self {
        let key = Key::Poll(poll.id);
        let (gsi1_pk, gsi1_sk) = owner_index(poll.owner_id, unix_ms(poll.created_at), poll.id);
        Self {
            pk: key.pk(),
            sk: key.sk().into(),
            gsi1_pk,
            gsi1_sk,
            id: poll.id,
            owner_id: poll.owner_id,
            question: poll.question.clone(),
            event_name: poll.event_name.clone(),
            options: poll.options.clone(),
            status: poll.status,
            visibility: poll.visibility,
            results: poll.results,
            max_choices: poll.max_choices,
            closes_at: poll.closes_at,
            created_at: poll.created_at,
            updated_at: poll.updated_at,
            version: poll.version,
            options_rev: poll.options_rev,
        }
    }

    pub fn into_poll(self) -> Poll {
        Poll {
            id: self.id,
            owner_id: self.owner_id,
            question: self.question,
            event_name: self.event_name,
            options: self.options,
            status: self.status,
            visibility: self.visibility,
            results: self.results,
            max_choices: self.max_choices,
            closes_at: self.closes_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
            options_rev: self.options_rev,
        }
    }
}

/// A poll's counts, as the count function keeps them: created with the poll (holding its
/// `options_rev`), then grown by `ADD` from the table's stream. Besides these fields the item
/// holds one number per option ([`vote_attribute`]) and one checkpoint per stream shard
/// ([`checkpoint_attribute`]), attributes of their own because `ADD` creates a missing top-level
/// number but cannot create a path inside a map.
#[derive(Debug, Serialize, Deserialize)]
pub struct TallyItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    /// The option list the counts are for; changes only while `locked` is unset.
    pub options_rev: u32,
    pub ballots: u64,
    /// Ballots of guests of the poll's list, counted beside `ballots` by the count function.
    pub guest_ballots: u64,
    /// Present (`true`) on a tally made since guests' ballots are counted, so from the poll's
    /// first ballot: then `guest_ballots` is exact. An older poll's tally lacks it.
    pub guests_counted: bool,
}

impl TallyItem {
    pub fn new(poll: &Poll) -> Self {
        let key = Key::Tally(poll.id);
        Self {
            pk: key.pk(),
            sk: key.sk().into(),
            options_rev: poll.options_rev,
            ballots: 0,
            guest_ballots: 0,
            guests_counted: true,
        }
    }
}

/// The tally's attributes that are not in [`TallyItem`].
pub mod tally {
    /// The number of ballots counted.
    pub const BALLOTS: &str = "ballots";
    /// The number of those cast by guests of the poll's list (voters `g:<guest>`).
    pub const GUEST_BALLOTS: &str = "guest_ballots";
    /// Whether `GUEST_BALLOTS` has been counted since the poll's first ballot.
    pub const GUESTS_COUNTED: &str = "guests_counted";
    pub const OPTIONS_REV: &str = "options_rev";
    /// Set (to `true`) by the first ballot a votes instance accepts: from then on the options
    /// cannot change (see `BallotStore::lock_options`).
    pub const LOCKED: &str = "locked";
    /// When the poll's live results were last claimed for publishing (Unix ms), and the
    /// `total` claimed then: the count functions' shared lease on publishing
    /// (`PublishLease`), so a poll is published at most once a second however many stream
    /// shards carry its ballots.
    pub const LIVE_AT: &str = "live_at";
    pub const LIVE_TOTAL: &str = "live_total";
    const VOTE: &str = "v#";
    const CHECKPOINT: &str = "cp#";

    /// The attribute counting the votes for one option.
    pub fn vote_attribute(option: &str) -> String {
        format!("{VOTE}{option}")
    }

    /// The option a vote attribute counts, if it is one.
    pub fn option_of(attribute: &str) -> Option<&str> {
        attribute.strip_prefix(VOTE)
    }

    /// The attribute holding the checkpoint of one stream shard.
    pub fn checkpoint_attribute(shard: &str) -> String {
        format!("{CHECKPOINT}{shard}")
    }

    /// The shard a checkpoint attribute belongs to, if it is one.
    pub fn shard_of(attribute: &str) -> Option<&str> {
        attribute.strip_prefix(CHECKPOINT)
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BallotItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub poll_id: PollId,
    pub voter: String,
    pub choices: Vec<OptionId>,
    #[serde(with = "time::serde::rfc3339")]
    pub voted_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl BallotItem {
    pub fn new(ballot: &Ballot) -> Self {
        let key = Key::ballot(ballot.poll_id, &ballot.voter);
        Self {
            pk: key.pk(),
            sk: key.sk().into(),
            poll_id: ballot.poll_id,
            voter: ballot.voter.to_string(),
            choices: ballot.choices.clone(),
            voted_at: ballot.voted_at,
            idempotency_key: ballot.idempotency_key.clone(),
        }
    }

    pub fn into_ballot(self, voter: Voter) -> Ballot {
        Ballot {
            poll_id: self.poll_id,
            voter,
            choices: self.choices,
            voted_at: self.voted_at,
            idempotency_key: self.idempotency_key,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JobItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    /// The poll-jobs index (`keys::poll_jobs_index`); absent on jobs stored before it, which
    /// the poll's job list does not show.
    #[serde(rename = "GSI1PK", default, skip_serializing_if = "Option::is_none")]
    pub gsi1_pk: Option<String>,
    #[serde(rename = "GSI1SK", default, skip_serializing_if = "Option::is_none")]
    pub gsi1_sk: Option<String>,
    pub id: crate::domain::JobId,
    pub kind: crate::domain::JobKind,
    pub poll_id: PollId,
    pub owner_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::domain::QrFormat>,
    /// Only on an invites job that makes print sheets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheets: Option<crate::domain::job::SheetPaper>,
    pub total: u32,
    pub done: u32,
    pub failed: u32,
    pub chunks_total: u32,
    pub chunks_done: u32,
    /// Written by the ZIP's builder as it goes (absent on jobs stored before it existed).
    #[serde(default)]
    pub bundled: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub completed_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Kept a month: long after its file expires, the job still answers 410 for it.
    pub ttl: i64,
}

/// Jobs outlive their files by this much, so a late download answers 410, not 404.
const JOB_RETENTION_SECONDS: i64 = 30 * 86_400;

impl JobItem {
    pub fn new(job: &crate::domain::Job) -> Self {
        let key = Key::Job(job.id);
        let (gsi1_pk, gsi1_sk) = poll_jobs_index(job.poll_id, unix_ms(job.created_at), job.id);
        Self {
            pk: key.pk(),
            sk: key.sk().into(),
            gsi1_pk: Some(gsi1_pk),
            gsi1_sk: Some(gsi1_sk),
            id: job.id,
            kind: job.kind,
            poll_id: job.poll_id,
            owner_id: job.owner_id,
            format: job.format,
            sheets: job.sheets,
            total: job.total,
            done: job.done,
            failed: job.failed,
            chunks_total: job.chunks_total,
            chunks_done: job.chunks_done,
            bundled: job.bundled,
            created_at: job.created_at,
            completed_at: job.completed_at,
            object_key: job.object_key.clone(),
            error: job.error.clone(),
            ttl: job.created_at.unix_timestamp() + JOB_RETENTION_SECONDS,
        }
    }

    pub fn into_job(self) -> crate::domain::Job {
        crate::domain::Job {
            id: self.id,
            kind: self.kind,
            poll_id: self.poll_id,
            owner_id: self.owner_id,
            format: self.format,
            sheets: self.sheets,
            total: self.total,
            done: self.done,
            failed: self.failed,
            chunks_total: self.chunks_total,
            chunks_done: self.chunks_done,
            bundled: self.bundled,
            created_at: self.created_at,
            completed_at: self.completed_at,
            object_key: self.object_key,
            error: self.error,
        }
    }
}

/// The job a request fingerprint made, valid until `expires_at` (epoch seconds).
#[derive(Debug, Serialize, Deserialize)]
pub struct JobRequestItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub job_id: crate::domain::JobId,
    pub expires_at: i64,
    pub ttl: i64,
}

/// The poll a creating request (its `Idempotency-Key`) made, with the fingerprint of the
/// request's body, valid until `expires_at` (epoch seconds).
#[derive(Debug, Serialize, Deserialize)]
pub struct PollRequestItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub poll_id: PollId,
    pub fingerprint: String,
    pub expires_at: i64,
    pub ttl: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JobChunkItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub ttl: i64,
}

/// One card of a guest, under its token's hash. Invites that jobs made before guest lists
/// carry `job_id` and `index` instead of `guest_id` and are read as they were.
#[derive(Debug, Serialize, Deserialize)]
pub struct InviteItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub poll_id: PollId,
    pub guest_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_id: Option<GuestId>,
    #[serde(default)]
    pub generation: u32,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub opened: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<crate::domain::JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Only on a deleted poll's card (a tombstone): when the table's TTL removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

impl InviteItem {
    pub fn new(invite: &Invite) -> Self {
        let key = Key::Invite(invite.token_hash.to_string());
        Self {
            pk: key.pk(),
            sk: key.sk().into_owned(),
            poll_id: invite.poll_id,
            guest_name: invite.guest_name.clone(),
            guest_id: invite.guest.clone(),
            generation: invite.generation,
            revoked: invite.revoked,
            opened: invite.opened,
            job_id: None,
            index: None,
            ttl: None,
        }
    }

    /// What stands of a deleted poll's card once its guest is purged: the poll it belonged
    /// to and nothing of its guest (no name, no guest id), until `until`. Read, it is a card
    /// of a poll that does not exist, which answers 410 `poll-deleted`.
    pub fn tombstone(token_hash: &InviteHash, poll: PollId, until: OffsetDateTime) -> Self {
        let key = Key::Invite(token_hash.to_string());
        Self {
            pk: key.pk(),
            sk: key.sk().into_owned(),
            poll_id: poll,
            guest_name: String::new(),
            guest_id: None,
            generation: 0,
            // Not revoked: the guest page checks revocation before the poll, and the card's
            // truth is that its poll was deleted.
            revoked: false,
            // Opened, so that no read tries to count an opening on a list that is gone.
            opened: true,
            job_id: None,
            index: None,
            ttl: Some(until.unix_timestamp()),
        }
    }

    pub fn into_invite(self, token_hash: InviteHash) -> Invite {
        Invite {
            token_hash,
            poll_id: self.poll_id,
            guest_name: self.guest_name,
            guest: self.guest_id,
            generation: self.generation,
            revoked: self.revoked,
            opened: self.opened,
        }
    }
}

/// A record of one counted batch's voters in a poll, other than its guests (`Key::Voters`).
#[derive(Debug, Serialize, Deserialize)]
pub struct VotersItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    /// The voters' text forms (`u:<user>`, `i:<hash>`), as in their ballots' keys.
    pub voters: Vec<String>,
}

/// A guest of a poll's list.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuestItem {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub id: GuestId,
    pub poll_id: PollId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub generation: u32,
    pub revoked: bool,
    /// Epoch milliseconds of the first read of an invite of theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_ms: Option<i64>,
    pub added_ms: i64,
}

impl GuestItem {
    pub fn new(poll: PollId, guest: &NewGuest, now: OffsetDateTime) -> Self {
        let key = Key::Guest(poll, guest.id.clone());
        Self {
            pk: key.pk(),
            sk: key.sk().into_owned(),
            id: guest.id.clone(),
            poll_id: poll,
            name: guest.name.clone(),
            email: guest.email.clone(),
            reference: guest.reference.clone(),
            generation: 0,
            revoked: false,
            opened_ms: None,
            added_ms: unix_ms(now),
        }
    }

    pub fn into_guest(self) -> Guest {
        Guest {
            id: self.id,
            poll_id: self.poll_id,
            name: self.name,
            email: self.email,
            reference: self.reference,
            generation: self.generation,
            revoked: self.revoked,
            opened_at: self.opened_ms.map(from_unix_ms),
            added_at: from_unix_ms(self.added_ms),
        }
    }
}

/// A poll's guest-list counts. Written only by `ADD` and `SET`, so it needs no creation.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GuestListItem {
    #[serde(default)]
    pub guests: u64,
    #[serde(default)]
    pub opened: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cards_ms: Option<i64>,
}

impl GuestListItem {
    pub fn into_counts(self) -> GuestCounts {
        GuestCounts {
            guests: self.guests,
            opened: self.opened,
            last_cards_at: self.last_cards_ms.map(from_unix_ms),
        }
    }
}

/// Failed attempts against a scope (`RATE#<scope>` / `BACKOFF`); a forgiven item keeps only
/// its key and expiry, which reads as no failures.
#[derive(Debug, Deserialize)]
pub struct BackoffItem {
    #[serde(default)]
    pub failures: u64,
    #[serde(default)]
    pub last_failure: i64,
}
