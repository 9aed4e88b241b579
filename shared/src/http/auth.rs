//! The auth function: register, login, refresh, logout (one session or all), and `GET /v1/me`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, Caller, NoIdempotencyKey};
use super::gate::{Gate, gated};
use super::limits::{AuthAttempt, Login, Refresh, Register};
use super::openapi::{AuthErrors, BodyErrors, CommonErrors};
use super::views::{TokensView, UserView, no_store};
use crate::auth::{TokenIssuer, password, refresh};
use crate::config::REFRESH_TOKEN_TTL_MAX;
use crate::domain::{Email, FamilyId, FieldErrors, Password, User, UserId};
use crate::error::ProblemDoc;
use crate::error::{ApiResult, AppError};
use crate::ports::{RefreshRecord, SessionStore, UserStore};

/// What the auth function holds: accounts, sessions, and the only signing key.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub issuer: Arc<TokenIssuer>,
    /// Refresh-token lifetime in seconds.
    pub refresh_token_ttl: i64,
    pub gate: Gate,
}
gated!(AuthState);

impl AuthState {
    /// The state over one store that keeps both accounts and sessions.
    pub fn new<S: UserStore + SessionStore + 'static>(
        store: Arc<S>,
        issuer: TokenIssuer,
        refresh_token_ttl: i64,
        gate: Gate,
    ) -> Self {
        Self {
            users: store.clone(),
            sessions: store,
            issuer: Arc::new(issuer),
            refresh_token_ttl,
            gate,
        }
    }
}

pub fn routes(state: AuthState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh_tokens))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(me))
        .with_state(state)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct horse battery"}))]
struct Credentials {
    /// Trimmed and lower-cased; at most 254 characters.
    #[schema(format = Email, max_length = 254, example = "ann@example.com")]
    email: String,
    /// 8 to 128 characters (Unicode scalar values) to register; at login only the upper bound
    /// applies.
    #[schema(min_length = 8, max_length = 128, example = "correct horse battery")]
    password: String,
}

/// Creates an account. The email is normalised (trimmed, lower-cased) and must be unused.
#[utoipa::path(post, path = "/v1/auth/register", operation_id = "registerUser", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "The new user", body = UserView),
        (status = 409, description = "The email is registered already (`email-taken`)", body = ProblemDoc, content_type = "application/problem+json"),
        BodyErrors, CommonErrors))]
async fn register(
    State(state): State<AuthState>,
    _attempt: AuthAttempt<Register>,
    _: NoIdempotencyKey,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&body.email));
    let password = errors.check("password", Password::new_for_signup(body.password));
    errors.into_result()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(AppError::internal("validated fields missing"));
    };
    let hash = blocking(move || password::hash(&password)).await?;
    let user = User {
        id: UserId::new(),
        email,
        created_at: state.gate.now(),
    };
    state.users.create_user(&user, &hash).await?;
    Ok(no_store(StatusCode::CREATED, &UserView::from(&user)))
}

/// Signs in: an access token and a refresh token. An unknown email and a wrong password get the
/// same 401. Failures on one email back off per client address (an IPv6 /64): after five,
/// each next try waits twice as long (1 s up to 15 min, `Retry-After` says how long), so one
/// client's guesses slow that client down and never lock the owner out elsewhere.
#[utoipa::path(post, path = "/v1/auth/login", operation_id = "login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Tokens", body = TokensView),
        (status = 401, description = "Wrong email or password (`invalid-credentials`)", body = ProblemDoc, content_type = "application/problem+json"),
        BodyErrors, CommonErrors))]
async fn login(
    State(state): State<AuthState>,
    attempt: AuthAttempt<Login>,
    _: NoIdempotencyKey,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Response> {
    let password = Password::for_login(body.password).ok_or(AppError::InvalidCredentials)?;
    // An unparseable email cannot be registered; it is treated like an unknown one, including
    // the time spent hashing, so the answer reveals nothing.
    let (credentials, backoff) = match Email::parse(&body.email) {
        Ok(email) => {
            let backoff = attempt.backoff(&state.gate, email.as_str()).await?;
            (state.users.credentials(&email).await?, Some(backoff))
        }
        Err(_) => (None, None),
    };
    let (user_id, phc) = match credentials {
        Some(c) => (Some(c.user_id), c.password_hash),
        None => (None, password::decoy_hash().to_owned()),
    };
    let verified = blocking(move || Ok(password::verify(&password, &phc))).await?;
    match user_id {
        Some(user) if verified => {
            if let Some(backoff) = backoff {
                backoff.succeeded(&state.gate).await?;
            }
            let now = state.gate.now();
            issue_tokens(&state, user, FamilyId::new(), now, None)
                .await
                .map(|tokens| no_store(StatusCode::OK, &tokens))
        }
        _ => {
            // An unknown email backs off like a known one, so the wait reveals nothing.
            if let Some(backoff) = backoff {
                backoff.failed(&state.gate).await?;
            }
            Err(AppError::InvalidCredentials)
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

/// Trades a refresh token for a new pair. The old token is spent; presenting a spent token
/// again, even concurrently with its first use, revokes its whole session family.
#[utoipa::path(post, path = "/v1/auth/refresh", operation_id = "refreshTokens", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 200, description = "A new pair", body = TokensView),
        (status = 401, description = "Unknown, expired, spent or revoked (`invalid-refresh-token`)", body = ProblemDoc, content_type = "application/problem+json"),
        BodyErrors, CommonErrors))]
async fn refresh_tokens(
    State(state): State<AuthState>,
    _attempt: AuthAttempt<Refresh>,
    _: NoIdempotencyKey,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<Response> {
    let hash = refresh::hash(&body.refresh_token);
    let record = state
        .sessions
        .refresh(&hash)
        .await?
        .ok_or(AppError::InvalidRefreshToken)?;
    if record.expires_at <= state.gate.now() {
        return Err(AppError::InvalidRefreshToken);
    }
    if record.used {
        // A spent token presented again means it was copied: end the whole session family,
        // so that whoever holds the newer tokens must sign in again too.
        tracing::warn!(user_id = %record.user_id, "refresh token reuse; revoking its family");
        revoke(&state, &record).await?;
        return Err(AppError::InvalidRefreshToken);
    }
    match issue_tokens(
        &state,
        record.user_id,
        record.family,
        record.family_started,
        Some(&hash),
    )
    .await
    {
        Ok(tokens) => Ok(no_store(StatusCode::OK, &tokens)),
        Err(AppError::InvalidRefreshToken) => {
            // The rotation's conditions failed after the read found the token unspent:
            // another request spent it at the same moment (the same token used twice, which
            // is reuse however close together), or the family or all the user's sessions
            // were revoked meanwhile. Revoking the family is right in every case, and is
            // what stops the concurrent winner's new tokens.
            tracing::warn!(user_id = %record.user_id, "refresh token raced; revoking its family");
            revoke(&state, &record).await?;
            Err(AppError::InvalidRefreshToken)
        }
        Err(other) => Err(other),
    }
}

/// When a revocation may be forgotten. No token of the family is issued after now, so none
/// outlives the longest lifetime the configuration allows (the current setting may have been
/// longer when some were issued); a day more covers clock skew between instances.
fn revocation_kept_until(state: &AuthState) -> OffsetDateTime {
    state.gate.now()
        + Duration::seconds(REFRESH_TOKEN_TTL_MAX.max(state.refresh_token_ttl))
        + Duration::days(1)
}

async fn revoke(state: &AuthState, record: &RefreshRecord) -> ApiResult<()> {
    state
        .sessions
        .revoke_family(record.family, revocation_kept_until(state))
        .await?;
    Ok(())
}

/// Signs out this session: the refresh token's whole family is revoked, so neither it nor any
/// token rotated from it works again. Access tokens already issued stay valid until they
/// expire (`expires_in`, 15 minutes by default). Signing out twice is not an error.
#[utoipa::path(post, path = "/v1/auth/logout", operation_id = "logout", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "No such refresh token, or one already expired (`invalid-refresh-token`)", body = ProblemDoc, content_type = "application/problem+json"),
        BodyErrors, CommonErrors))]
async fn logout(
    State(state): State<AuthState>,
    _attempt: AuthAttempt<Refresh>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<StatusCode> {
    let record = state
        .sessions
        .refresh(&refresh::hash(&body.refresh_token))
        .await?
        .ok_or(AppError::InvalidRefreshToken)?;
    if record.expires_at <= state.gate.now() {
        return Err(AppError::InvalidRefreshToken);
    }
    revoke(&state, &record).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs the caller out everywhere: every session family started until now is revoked (a
/// later login starts a new one). Access tokens already issued stay valid until they expire.
#[utoipa::path(post, path = "/v1/auth/logout-all", operation_id = "logoutAll", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller ended"),
        AuthErrors, CommonErrors))]
async fn logout_all(
    State(state): State<AuthState>,
    _attempt: AuthAttempt<Refresh>,
    Caller(user): Caller,
) -> ApiResult<StatusCode> {
    state
        .sessions
        .revoke_user_sessions(user, state.gate.now(), revocation_kept_until(&state))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mints an access token and a refresh token; with `rotating`, the old refresh token is spent
/// in the same transaction that stores the new one.
async fn issue_tokens(
    state: &AuthState,
    user: UserId,
    family: FamilyId,
    family_started: OffsetDateTime,
    rotating: Option<&str>,
) -> ApiResult<TokensView> {
    let issuer = &state.issuer;
    let now = state.gate.now();
    let access_token = issuer.issue(user, now).map_err(AppError::internal)?;
    let (refresh_token, token_hash) = refresh::generate().map_err(AppError::internal)?;
    let record = RefreshRecord {
        token_hash,
        user_id: user,
        family,
        expires_at: now + Duration::seconds(state.refresh_token_ttl),
        used: false,
        family_started,
    };
    match rotating {
        None => state.sessions.put_refresh(&record).await?,
        Some(old) => state
            .sessions
            .rotate(old, &record)
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::ConditionFailed => AppError::InvalidRefreshToken,
                other => other.into(),
            })?,
    }
    Ok(TokensView {
        access_token,
        token_type: "Bearer",
        expires_in: issuer.ttl_seconds(),
        refresh_token,
    })
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", operation_id = "getMe", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = UserView),
        (status = 404, description = "The account no longer exists", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors, CommonErrors))]
async fn me(State(state): State<AuthState>, Caller(user): Caller) -> ApiResult<Response> {
    let user = state.users.user(user).await?.ok_or(AppError::NotFound)?;
    Ok(no_store(StatusCode::OK, &UserView::from(&user)))
}

/// Runs CPU-heavy work (Argon2) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}
