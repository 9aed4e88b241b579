//! Rate limits, counted in the store (so every Lambda instance sees the same count) in fixed
//! windows: per IP on the auth routes, per email on login (password guessing spread over many
//! addresses), per user on writes, per voter on ballots. Each limited request costs one extra
//! storage call. `TALLY_RATE_LIMITS=off` turns them all off.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::extract::{Caller, VoterCredential};
use super::facts::{RequestFacts, Window};
use super::gate::{Gate, Gated};
pub use crate::config::{RateLimits, Rule};
use crate::domain::UserId;
use crate::error::AppError;

/// Counts this request against `scope` under `rule`: 429 past the limit.
pub async fn enforce(
    gate: &Gate,
    facts: Option<&RequestFacts>,
    scope: &str,
    rule: Rule,
) -> Result<(), AppError> {
    if !gate.limits.enabled {
        return Ok(());
    }
    let now = gate.now().unix_timestamp();
    let window = i64::from(rule.window);
    let start = now - now.rem_euclid(window);
    let hits = gate.counter.hit(scope, start, window).await?;
    let reset = u64::try_from(start + window - now).unwrap_or(1).max(1);
    let remaining = u64::from(rule.limit).saturating_sub(hits);
    if let Some(facts) = facts {
        facts.set_window(Window {
            rule,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset,
        });
    }
    if hits > u64::from(rule.limit) {
        return Err(AppError::RateLimited { retry_after: reset });
    }
    Ok(())
}

fn facts_of(parts: &Parts) -> Option<RequestFacts> {
    parts.extensions.get::<RequestFacts>().cloned()
}

/// The client's address: API Gateway's `sourceIp` on AWS, the socket's peer locally. A
/// client-sent `X-Forwarded-For` is never trusted, or anyone could pick their own limit.
pub fn client_ip(parts: &Parts) -> String {
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
        parts
            .extensions
            .get::<lambda_http::request::RequestContext>()
        && let Some(ip) = &context.http.source_ip
    {
        return ip.clone();
    }
    parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// A request on an auth route, counted per client IP.
#[derive(Debug, Clone)]
pub struct AuthAttempt {
    pub facts: Option<RequestFacts>,
}

impl<S: Gated> FromRequestParts<S> for AuthAttempt {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = state.gate();
        let facts = facts_of(parts);
        enforce(
            gate,
            facts.as_ref(),
            &format!("ip#{}", client_ip(parts)),
            gate.limits.auth_ip,
        )
        .await?;
        Ok(Self { facts })
    }
}

impl AuthAttempt {
    /// Counts a login against the email it names, whoever tries it from wherever.
    pub async fn count_email(&self, gate: &Gate, email: &str) -> Result<(), AppError> {
        enforce(
            gate,
            self.facts.as_ref(),
            &format!("email#{email}"),
            gate.limits.login_email,
        )
        .await
    }
}

/// The signed-in user of a write, counted per user.
#[derive(Debug, Clone, Copy)]
pub struct Writer(pub UserId);

impl<S: Gated> FromRequestParts<S> for Writer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = state.gate();
        let Caller(user) = Caller::from_request_parts(parts, state).await?;
        enforce(
            gate,
            facts_of(parts).as_ref(),
            &format!("write#{user}"),
            gate.limits.writes,
        )
        .await?;
        Ok(Self(user))
    }
}

/// A voter, counted per user or per invite.
#[derive(Debug, Clone)]
pub struct CountedVoter(pub VoterCredential);

impl<S: Gated> FromRequestParts<S> for CountedVoter {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = state.gate();
        let credential = VoterCredential::from_request_parts(parts, state).await?;
        let scope = match &credential {
            VoterCredential::User(user) => format!("vote#u:{user}"),
            VoterCredential::Invite(token) => format!("vote#i:{}", token.hash()),
        };
        enforce(gate, facts_of(parts).as_ref(), &scope, gate.limits.votes).await?;
        Ok(Self(credential))
    }
}
