//! The one error type of the HTTP API and its single mapping to problem+json (RFC 9457).
//!
//! Use [`AppError`] in handlers. Storage code returns [`StoreError`], which converts here, so
//! the decision of which status a failure deserves is made in this file only. Internal text is
//! logged with the request id and never sent: the client sees a stable `type` and a `detail`
//! written for it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::FieldErrors;
use crate::ports::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every error a client can get. Each variant's doc names the status it answers with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the body is not the JSON the route expects.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 400: a query parameter or cursor is unusable.
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// 422: fields failed validation; `errors` lists them.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 401: no credentials, or credentials that do not verify.
    #[error("unauthorized")]
    Unauthorized,
    /// 401: login failed. One answer for unknown email and wrong password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 401: the refresh token is unknown, expired, spent or revoked.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// 403: signed in, but not allowed to do this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 404: no such resource, or one the caller may not know about.
    #[error("not found")]
    NotFound,
    /// 409: the email is registered already.
    #[error("email taken")]
    EmailTaken,
    /// 409: this voter has a ballot in this poll.
    #[error("already voted")]
    AlreadyVoted,
    /// 409: the poll is closed.
    #[error("poll closed")]
    PollClosed,
    /// 409: the options cannot change once a ballot exists.
    #[error("options frozen")]
    OptionsFrozen,
    /// 409: the resource changed while the request was being handled; retrying may work.
    #[error("conflict")]
    Conflict,
    /// 409: the job's file is not ready yet.
    #[error("job not ready")]
    JobNotReady,
    /// 409: the job failed, so its file will never be ready; the job's reason, for people.
    #[error("job failed")]
    JobFailed(String),
    /// 410: the file's 24 hours are over.
    #[error("gone")]
    Gone,
    /// 410: the invite card was revoked or replaced by a reissued one.
    #[error("invite revoked")]
    InviteRevoked,
    /// 410: the invite's poll was deleted.
    #[error("poll deleted")]
    PollDeleted,
    /// 409: the poll's guest list would go over its cap.
    #[error("guest list full")]
    GuestListFull { cap: u64 },
    /// 412: `If-Match` does not name the current version.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 413: the body is over the limit (bytes).
    #[error("payload too large")]
    PayloadTooLarge(usize),
    /// 415: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: an `Idempotency-Key` was reused for a different request.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// 429: too many requests in this window; retry after the given seconds.
    #[error("rate limited")]
    RateLimited { retry_after: u64 },
    /// 429: the user's render quota for the day is used up; retry after the given seconds
    /// (the next UTC midnight).
    #[error("render quota exceeded")]
    RenderQuota { limit: u64, retry_after: u64 },
    /// 429: the caller already has `limit` render jobs queued or running.
    #[error("too many jobs in flight")]
    JobsInFlight { limit: u32 },
    /// 503: the store is throttling; try again.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or misconfiguration. The text is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }

    /// The status, the stable problem type slug, the title, and the client-facing detail.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use StatusCode as S;
        match self {
            Self::Malformed(d) => (
                S::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                d.clone(),
            ),
            Self::BadParameter(d) => (S::BAD_REQUEST, "bad-parameter", "Bad parameter", d.clone()),
            Self::Validation(_) => (
                S::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "Validation failed",
                "One or more fields are invalid; see `errors`.".into(),
            ),
            Self::Unauthorized => (
                S::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "A valid access token is required.".into(),
            ),
            Self::InvalidCredentials => (
                S::UNAUTHORIZED,
                "invalid-credentials",
                "Invalid credentials",
                "The email or password is not correct.".into(),
            ),
            Self::InvalidRefreshToken => (
                S::UNAUTHORIZED,
                "invalid-refresh-token",
                "Invalid refresh token",
                "The refresh token is unknown, expired or already used; sign in again.".into(),
            ),
            Self::Forbidden(d) => (S::FORBIDDEN, "forbidden", "Forbidden", (*d).into()),
            Self::NotFound => (
                S::NOT_FOUND,
                "not-found",
                "Not found",
                "No such resource.".into(),
            ),
            Self::EmailTaken => (
                S::CONFLICT,
                "email-taken",
                "Email already registered",
                "An account with this email exists.".into(),
            ),
            Self::AlreadyVoted => (
                S::CONFLICT,
                "already-voted",
                "Already voted",
                "This voter has already cast a ballot in this poll.".into(),
            ),
            Self::PollClosed => (
                S::CONFLICT,
                "poll-closed",
                "Poll closed",
                "The poll is closed to new ballots and changes.".into(),
            ),
            Self::OptionsFrozen => (
                S::CONFLICT,
                "options-frozen",
                "Options frozen",
                "The options cannot change once a ballot has been cast.".into(),
            ),
            Self::Conflict => (
                S::CONFLICT,
                "conflict",
                "Conflict",
                "The resource changed while the request was handled; read it and try again.".into(),
            ),
            Self::JobNotReady => (
                S::CONFLICT,
                "job-not-ready",
                "Job not ready",
                "The job has not finished; poll it until its status is done.".into(),
            ),
            Self::JobFailed(reason) => (
                S::CONFLICT,
                "job-failed",
                "Job failed",
                format!(
                    "The job failed, so it has no file: {reason} Start the job again to retry."
                ),
            ),
            Self::Gone => (
                S::GONE,
                "gone",
                "Gone",
                "The file was available for 24 hours after the job finished; run the job again."
                    .into(),
            ),
            Self::InviteRevoked => (
                S::GONE,
                "invite-revoked",
                "Invite revoked",
                "This invite card was withdrawn by the poll's organiser; ask them for a new one."
                    .into(),
            ),
            Self::PollDeleted => (
                S::GONE,
                "poll-deleted",
                "Poll deleted",
                "The poll this invite was for has been deleted.".into(),
            ),
            Self::GuestListFull { cap } => (
                S::CONFLICT,
                "guest-list-full",
                "Guest list full",
                format!(
                    "A poll has at most {cap} guests; the guests before this request's \
                     overflow were added (see the list)."
                ),
            ),
            Self::PreconditionFailed => (
                S::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
                "If-Match does not match the current ETag; read the resource again.".into(),
            ),
            Self::PayloadTooLarge(limit) => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                format!("The request body is over the limit of {limit} bytes."),
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "Send the body as application/json.".into(),
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "This Idempotency-Key was used for a different request.".into(),
            ),
            Self::RateLimited { retry_after } => (
                S::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!("This limit resets in {retry_after} seconds; see Retry-After."),
            ),
            Self::RenderQuota { limit, retry_after } => (
                S::TOO_MANY_REQUESTS,
                "render-quota",
                "Render quota used up",
                format!(
                    "Your jobs may render {limit} guests (a QR code or a chart counts as one) a \
                     day, and this job would go over it; it starts again at midnight UTC, in \
                     {retry_after} seconds (see Retry-After)."
                ),
            ),
            Self::JobsInFlight { limit } => (
                S::TOO_MANY_REQUESTS,
                "jobs-in-flight",
                "Too many jobs in flight",
                format!(
                    "You already have {limit} jobs queued or running, the most at once; start \
                     this one when one of them has finished (GET /v1/jobs/{{id}} tells). A job \
                     that neither finishes nor fails gives its place back two hours after it \
                     started."
                ),
            ),
            Self::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "Storage is busy; retry shortly.".into(),
            ),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "Something went wrong on our side; quote the request id if you report it.".into(),
            ),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::EmailTaken => Self::EmailTaken,
            StoreError::ConditionFailed => Self::Conflict,
            StoreError::HasBallots => Self::OptionsFrozen,
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<FieldErrors> for AppError {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

/// An RFC 9457 problem document. `request_id` and `instance` are filled in by the request
/// middleware ([`crate::http::platform`]), which is the one place that knows them: an error
/// response carries its `Problem` in the response's extensions and no body, and the middleware
/// writes the complete document once ([`Problem::complete`]).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<FieldErrors>,
}

/// The problem document as clients receive it (the schema in the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(title = "Problem")]
pub struct ProblemDoc {
    /// A stable URI per kind of error, e.g. `/problems/already-voted`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// The `x-request-id` of the request; quote it when reporting a problem.
    pub request_id: String,
    /// Field name → messages, on validation failures only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Vec<String>>>)]
    pub errors: Option<FieldErrors>,
}

/// The URI of a problem type. Relative, resolved against the API's origin; stable per kind.
pub fn problem_type(slug: &str) -> String {
    format!("/problems/{slug}")
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: String) -> Self {
        Self {
            kind: problem_type(slug),
            title: title.into(),
            status: status.as_u16(),
            detail,
            errors: None,
        }
    }

    /// The response for this problem: its status and media type, and the problem itself in
    /// the extensions, for the platform layer to complete and write.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = status.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.extensions_mut().insert(self);
        response
    }

    /// The document as the client receives it.
    pub fn complete(self, request_id: &str, instance: &str) -> ProblemDoc {
        ProblemDoc {
            kind: self.kind,
            title: self.title,
            status: self.status,
            detail: self.detail,
            instance: instance.to_owned(),
            request_id: request_id.to_owned(),
            errors: self.errors,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, slug, title, detail) = self.parts();
        match &self {
            Self::Internal(e) => tracing::error!(error = %e, "internal error"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "storage unavailable"),
            _ => {}
        }
        let retry_after = match &self {
            Self::RateLimited { retry_after } | Self::RenderQuota { retry_after, .. } => {
                Some(*retry_after)
            }
            // Busy storage (throttling, conflicts that outlasted the retries) clears within
            // moments: a second is enough for a client to back off without waiting long.
            Self::Unavailable(_) => Some(1),
            _ => None,
        };
        let mut problem = Problem::new(status, slug, title, detail);
        if let Self::Validation(errors) = self {
            problem.errors = Some(errors);
        }
        let mut response = problem.into_response_with(status);
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that meets busy storage is told how long to wait, like a rate-limited one.
    #[test]
    fn busy_storage_is_a_503_with_retry_after() {
        let response = AppError::from(StoreError::Unavailable("throttled".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/problem+json"))
        );
    }
}
