//! Render jobs (invite cards, share QR codes, result charts) and guest invites.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::{GuestId, JobId, PollId, UserId, Voter};

/// How long a finished file can be downloaded, and how long the same request answers with
/// the same job.
pub const FILE_LIFETIME: Duration = Duration::hours(24);
/// Guests per queue message: one message renders this many cards, well under SQS's 256 KiB.
pub const CHUNK_SIZE: usize = 100;
pub const GUESTS_MAX: usize = 10_000;
pub const GUEST_NAME_MAX_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Invites,
    Qr,
    Chart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QrFormat {
    Png,
    Svg,
}

/// The paper of an invites job's print sheets: a job with one makes a PDF (nine cards a page,
/// cut marks) instead of the ZIP of PNG cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SheetPaper {
    /// 210 × 297 mm.
    A4,
    /// US Letter, 8.5 × 11 in.
    Letter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// Where a job is. An invites job renders its cards (`rendering`), then bundles them into one
/// ZIP (`bundling`), then is `done`; a QR code or chart goes from `rendering` to `done`. A
/// failed job keeps the stage it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStage {
    Rendering,
    Bundling,
    Done,
}

/// The share of an invites job's progress bar given to rendering; bundling has the rest.
/// Chosen from the measured 10,000-guest job on the dev server (README, "Rendering"), so that
/// the bar moves at about the same pace through both stages and a time-left estimate made in
/// one stage roughly holds for the whole job.
pub const RENDER_SHARE: f64 = 0.75;

/// A job as stored. Progress counters only grow: each chunk adds its counts exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub poll_id: PollId,
    pub owner_id: UserId,
    pub format: Option<QrFormat>,
    /// For an invites job: print sheets on this paper (a PDF) rather than a ZIP of PNGs.
    pub sheets: Option<SheetPaper>,
    /// Units of work (guests, or 1 for a QR code or chart).
    pub total: u32,
    pub done: u32,
    pub failed: u32,
    pub chunks_total: u32,
    pub chunks_done: u32,
    /// Files the builder of the final file has bundled so far (an invites job's ZIP); only
    /// grows, also when a builder that died is replaced by one that starts over.
    pub bundled: u32,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub object_key: Option<String>,
    pub error: Option<String>,
}

/// How long a job may run before it counts as failed although no worker said so. A render
/// message is delivered at most five times, 12 minutes apart (the queue's visibility timeout),
/// so work not done within an hour never will be: a worker that died on the last delivery (a
/// timeout, running out of memory) cannot mark the job failed, and without this deadline the
/// job would show `running` forever and block its own retry. Twice that hour leaves room for
/// a backlog in the queue.
pub const JOB_DEADLINE: Duration = Duration::hours(2);

/// The reason an overdue job gives.
pub const OVERDUE: &str = "The job did not finish in time; start it again.";

impl Job {
    /// Why the job failed, as of `now`: the reason a worker recorded, or that it is overdue.
    pub fn error_at(&self, now: OffsetDateTime) -> Option<&str> {
        match &self.error {
            Some(reason) => Some(reason),
            None if self.completed_at.is_none() && now >= self.created_at + JOB_DEADLINE => {
                Some(OVERDUE)
            }
            None => None,
        }
    }

    pub fn status_at(&self, now: OffsetDateTime) -> JobStatus {
        if self.error_at(now).is_some() {
            JobStatus::Failed
        } else if self.completed_at.is_some() {
            JobStatus::Done
        } else if self.chunks_done > 0 || self.done > 0 {
            JobStatus::Running
        } else {
            JobStatus::Queued
        }
    }

    /// The stage the job has reached (see [`JobStage`]).
    pub fn stage(&self) -> JobStage {
        if self.completed_at.is_some() {
            return JobStage::Done;
        }
        match self.kind {
            JobKind::Invites if self.chunks_done >= self.chunks_total => JobStage::Bundling,
            JobKind::Invites | JobKind::Qr | JobKind::Chart => JobStage::Rendering,
        }
    }

    /// The files the bundling stage puts into the final file: an invites job's cards; none
    /// for a QR code or chart, which are one file each.
    pub fn bundle_total(&self) -> u32 {
        match self.kind {
            JobKind::Invites => self.done,
            JobKind::Qr | JobKind::Chart => 0,
        }
    }

    /// Finished work as a fraction of the whole job, 0.0 to 1.0: never past 1.0, only
    /// growing, and 1.0 only once the file is ready. An invites job's rendering fills
    /// [`RENDER_SHARE`] of it and its bundling the rest, so the bar keeps moving while the
    /// ZIP is built instead of waiting just short of the end.
    pub fn progress(&self) -> f64 {
        if self.completed_at.is_some() {
            return 1.0;
        }
        if self.total == 0 {
            return 0.0;
        }
        let rendered = f64::from(self.done.saturating_add(self.failed).min(self.total))
            / f64::from(self.total);
        let fraction = match self.kind {
            JobKind::Invites => {
                let bundle = self.bundle_total();
                let bundled = if bundle == 0 {
                    0.0
                } else {
                    f64::from(self.bundled.min(bundle)) / f64::from(bundle)
                };
                RENDER_SHARE * rendered + (1.0 - RENDER_SHARE) * bundled
            }
            JobKind::Qr | JobKind::Chart => rendered,
        };
        // Storing the file and completing the job are still ahead until `completed_at`.
        fraction.min(0.99)
    }

    /// When the file stops being downloadable.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.completed_at.map(|t| t + FILE_LIFETIME)
    }

    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at().is_some_and(|t| now >= t)
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A guest's invite token: printed on their card (in the invite URL) and presented when they
/// vote, never stored. Its `Debug` hides it, so that it cannot slip into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteToken(String);

impl InviteToken {
    /// A token as a guest presented it (its shape is checked at the edge, where it arrives).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token's storage key: its SHA-256, base64url.
    pub fn hash(&self) -> InviteHash {
        InviteHash(base64_url(&Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteToken(..)")
    }
}

impl fmt::Display for InviteToken {
    /// The token itself, for the invite URL on a card.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of an invite token (base64url): how storage, ballots and rate limits know an
/// invite without holding the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InviteHash(String);

impl InviteHash {
    /// A hash read back from storage, where it was written from [`InviteToken::hash`].
    pub fn from_stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InviteHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An invite: one ballot in one poll for one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub token_hash: InviteHash,
    pub poll_id: PollId,
    pub guest_name: String,
    /// The guest it belongs to; `None` for an invite made by a job before polls had guest
    /// lists, which votes as its token (one ballot per card).
    pub guest: Option<GuestId>,
    /// The guest's generation this card is (see [`super::guest::Guest::generation`]).
    pub generation: u32,
    /// Revoked (or replaced by a reissue): the card answers 410 and cannot vote.
    pub revoked: bool,
    /// The guest read this invite before (so reading it again records nothing).
    pub opened: bool,
}

impl Invite {
    /// Who votes with this invite: the guest, whichever of their cards they hold, so that a
    /// reissued card cannot cast a second ballot; an invite without a guest votes as itself.
    pub fn voter(&self) -> Voter {
        match &self.guest {
            Some(guest) => Voter::Guest(guest.clone()),
            None => Voter::Invite(self.token_hash.clone()),
        }
    }
}

/// A fingerprint of a job request (owner, poll, kind and inputs), so that the same request
/// within 24 hours finds the job it made.
pub fn request_fingerprint(
    owner: UserId,
    poll: PollId,
    kind: JobKind,
    inputs: &impl Serialize,
) -> String {
    let mut hash = Sha256::new();
    hash.update(owner.to_string());
    hash.update(poll.to_string());
    hash.update(serde_json::to_vec(&kind).unwrap_or_default());
    hash.update(serde_json::to_vec(inputs).unwrap_or_default());
    base64_url(&hash.finalize())
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invites => "invites",
            Self::Qr => "qr",
            Self::Chart => "chart",
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An invites job of 250 guests in 3 chunks, not started; other modules' tests use it too.
    pub(crate) fn job() -> Job {
        Job {
            id: JobId::new(),
            kind: JobKind::Invites,
            poll_id: PollId::new(),
            owner_id: UserId::new(),
            format: None,
            sheets: None,
            total: 250,
            done: 0,
            failed: 0,
            chunks_total: 3,
            chunks_done: 0,
            bundled: 0,
            created_at: OffsetDateTime::now_utc(),
            completed_at: None,
            object_key: None,
            error: None,
        }
    }

    #[test]
    fn progress_grows_to_one_only_when_done() {
        let mut j = job();
        let now = j.created_at;
        assert_eq!((j.status_at(now), j.progress()), (JobStatus::Queued, 0.0));
        assert_eq!(j.stage(), JobStage::Rendering);
        j.done = 100;
        j.chunks_done = 1;
        let partly = j.progress();
        assert!(partly > 0.0 && partly < RENDER_SHARE, "{partly}");
        j.done = 250;
        j.chunks_done = 3;
        assert_eq!(j.status_at(now), JobStatus::Running);
        // Every card made: the bar stands at the rendering share, and bundling moves it on.
        assert_eq!(j.stage(), JobStage::Bundling);
        assert_eq!(j.bundle_total(), 250);
        assert!(
            (j.progress() - RENDER_SHARE).abs() < 1e-9,
            "{}",
            j.progress()
        );
        j.bundled = 125;
        let half = j.progress();
        assert!(half > RENDER_SHARE && half < 1.0, "{half}");
        j.bundled = 250;
        assert!(j.progress() > half && j.progress() < 1.0);
        j.done = 999;
        j.bundled = 9999;
        assert!(j.progress() <= 1.0);
        j.completed_at = Some(OffsetDateTime::now_utc());
        assert_eq!((j.status_at(now), j.progress()), (JobStatus::Done, 1.0));
        assert_eq!(j.stage(), JobStage::Done);
        assert!(!j.is_expired(OffsetDateTime::now_utc()));
        assert!(j.is_expired(OffsetDateTime::now_utc() + Duration::hours(25)));
    }

    /// A QR code or chart is one file: no bundling stage between rendering and done.
    #[test]
    fn single_files_skip_bundling() {
        let mut j = Job {
            kind: JobKind::Qr,
            total: 1,
            chunks_total: 1,
            ..job()
        };
        j.done = 1;
        j.chunks_done = 1;
        assert_eq!((j.stage(), j.bundle_total()), (JobStage::Rendering, 0));
        assert!(j.progress() < 1.0);
        j.completed_at = Some(j.created_at);
        assert_eq!((j.stage(), j.progress()), (JobStage::Done, 1.0));
    }

    /// A job no worker finished or failed is failed once overdue; a finished one stays done
    /// and a recorded reason wins.
    #[test]
    fn an_overdue_job_has_failed() {
        let mut j = job();
        let late = j.created_at + JOB_DEADLINE;
        j.chunks_done = 3;
        let almost = late - Duration::seconds(1);
        assert_eq!(j.status_at(almost), JobStatus::Running);
        assert_eq!(
            (j.status_at(late), j.error_at(late)),
            (JobStatus::Failed, Some(OVERDUE))
        );
        j.error = Some("Storage kept failing.".into());
        assert_eq!(j.error_at(late), Some("Storage kept failing."));
        j.error = None;
        j.completed_at = Some(late);
        assert_eq!(
            (j.status_at(late), j.error_at(late)),
            (JobStatus::Done, None)
        );
    }
}
