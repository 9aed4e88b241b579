//! Representations: the JSON the API sends. Field names are part of the public contract.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::{
    Ballot, OptionId, Poll, PollOption, PollStatus, ResultsVisibility, Tally, User, UserId,
    Visibility,
};

/// A JSON response that no cache may keep: anything keyed by a credential (tokens, the
/// caller's account, an invite), which a shared cache must never hand to someone else.
pub fn no_store<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.to_string(),
            created_at: user.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokensView {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PollView {
    pub id: String,
    /// Shown to the owner only: to anyone else a user id is a handle to nothing but the
    /// owner's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    pub question: String,
    pub options: Vec<PollOption>,
    pub status: PollStatus,
    pub visibility: Visibility,
    pub results: ResultsVisibility,
    pub max_choices: u8,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closes_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl PollView {
    /// The poll as `viewer` (`None` for a guest) sees it at `now` (a poll past its deadline
    /// reads as closed).
    pub fn new(poll: &Poll, viewer: Option<UserId>, now: OffsetDateTime) -> Self {
        Self {
            id: poll.id.to_string(),
            owner_id: viewer
                .filter(|v| poll.is_owned_by(*v))
                .map(|_| poll.owner_id.to_string()),
            question: poll.question.clone(),
            options: poll.options.clone(),
            status: poll.status_at(now),
            visibility: poll.visibility,
            results: poll.results,
            max_choices: poll.max_choices,
            closes_at: poll.closes_at,
            created_at: poll.created_at,
            updated_at: poll.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BallotView {
    pub poll_id: String,
    pub choices: Vec<OptionId>,
    #[serde(with = "time::serde::rfc3339")]
    pub voted_at: OffsetDateTime,
}

impl From<&Ballot> for BallotView {
    fn from(ballot: &Ballot) -> Self {
        Self {
            poll_id: ballot.poll_id.to_string(),
            choices: ballot.choices.clone(),
            voted_at: ballot.voted_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OptionResult {
    pub id: OptionId,
    pub text: String,
    pub votes: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultsView {
    pub poll_id: String,
    pub status: PollStatus,
    pub total: u64,
    pub options: Vec<OptionResult>,
    /// When these results were read.
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: OffsetDateTime,
    /// The `voted_at` of the newest ballot counted (null before the first): ballots cast up to
    /// about then are in the counts. Counting follows the ballots by about a second.
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_through: Option<OffsetDateTime>,
    /// When counting last added to these counts (null before the first ballot is counted).
    #[serde(with = "time::serde::rfc3339::option")]
    pub counted_at: Option<OffsetDateTime>,
}

impl ResultsView {
    pub fn new(poll: &Poll, tally: &Tally, now: OffsetDateTime) -> Self {
        Self {
            poll_id: poll.id.to_string(),
            status: poll.status_at(now),
            total: tally.ballots,
            options: poll
                .options
                .iter()
                .map(|o| OptionResult {
                    id: o.id.clone(),
                    text: o.text.clone(),
                    votes: tally.per_option.get(&o.id).copied().unwrap_or(0),
                })
                .collect(),
            as_of: now,
            counted_through: tally.counted_through,
            counted_at: tally.counted_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: crate::domain::JobKind,
    pub poll_id: String,
    pub status: crate::domain::JobStatus,
    pub total: u32,
    pub done: u32,
    pub failed: u32,
    /// 0.0 to 1.0; only grows, and reaches 1.0 when the file is ready.
    pub progress: f64,
    /// The stable link that redirects to the file (signed afresh on each use).
    pub download_url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl JobView {
    pub fn new(job: &crate::domain::Job, now: OffsetDateTime) -> Self {
        let downloadable = job.completed_at.is_some() && !job.is_expired(now);
        Self {
            id: job.id.to_string(),
            kind: job.kind,
            poll_id: job.poll_id.to_string(),
            status: job.status_at(now),
            total: job.total,
            done: job.done.min(job.total),
            failed: job.failed.min(job.total),
            progress: job.progress(),
            download_url: downloadable.then(|| format!("/v1/jobs/{}/download", job.id)),
            expires_at: job.expires_at(),
            error: job.error_at(now).map(str::to_owned),
            created_at: job.created_at,
        }
    }
}

/// A guest's view of their invite.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InviteView {
    pub guest_name: String,
    pub poll: PollView,
    /// Whether the invite has cast its ballot.
    pub used: bool,
    pub ballot: Option<BallotView>,
}

impl InviteView {
    pub fn new(
        invite: &crate::domain::Invite,
        poll: &Poll,
        ballot: Option<&Ballot>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            guest_name: invite.guest_name.clone(),
            poll: PollView::new(poll, None, now),
            used: ballot.is_some(),
            ballot: ballot.map(BallotView::from),
        }
    }
}
