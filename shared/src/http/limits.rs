//! Rate limits, counted in the store (so every Lambda instance sees the same count) in fixed
//! windows: per IP on each auth route (register, login and refresh each with its own budget),
//! per user on writes, per voter on ballots (and per client
//! address on guests' attempts, whatever the token). Each limited request costs one extra
//! storage call. Failed logins per email and client back off instead (a growing wait after
//! each failure, one read per login and one write per failure). `TALLY_RATE_LIMITS=off` turns them all off.

use std::marker::PhantomData;
use std::net::IpAddr;

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

/// The client as the per-email login limit sees it: an IPv4 address, or an IPv6 address's /64
/// (one subscriber usually holds a whole /64, so counting single IPv6 addresses would let one
/// attacker rotate through billions of them).
pub fn client_prefix(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(|| ip.to_owned(), |v4| v4.to_string()),
        _ => ip.to_owned(),
    }
}

/// Which auth route a request is on: each has its own per-IP budget, so a crowd signing up
/// from one venue's address does not use up the logins and refreshes of everyone there.
pub trait AuthRoute: Send + Sync {
    const SCOPE: &'static str;
    fn rule(limits: &RateLimits) -> Rule;
}

#[derive(Debug, Clone, Copy)]
pub struct Register;
#[derive(Debug, Clone, Copy)]
pub struct Login;
/// Refresh and logout: both spend or end a refresh token.
#[derive(Debug, Clone, Copy)]
pub struct Refresh;

impl AuthRoute for Register {
    const SCOPE: &'static str = "register";
    fn rule(limits: &RateLimits) -> Rule {
        limits.register_ip
    }
}

impl AuthRoute for Login {
    const SCOPE: &'static str = "login";
    fn rule(limits: &RateLimits) -> Rule {
        limits.login_ip
    }
}

impl AuthRoute for Refresh {
    const SCOPE: &'static str = "refresh";
    fn rule(limits: &RateLimits) -> Rule {
        limits.refresh_ip
    }
}

/// A request on an auth route `R`, counted per client IP against that route's budget.
#[derive(Debug, Clone)]
pub struct AuthAttempt<R> {
    pub facts: Option<RequestFacts>,
    pub client: String,
    route: PhantomData<R>,
}

impl<S: Gated, R: AuthRoute> FromRequestParts<S> for AuthAttempt<R> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = state.gate();
        let facts = facts_of(parts);
        let client = client_ip(parts);
        enforce(
            gate,
            facts.as_ref(),
            &format!("{}-ip#{client}", R::SCOPE),
            R::rule(&gate.limits),
        )
        .await?;
        Ok(Self {
            facts,
            client,
            route: PhantomData,
        })
    }
}

impl AuthAttempt<Login> {
    /// The backoff of logins on `email` from this client: refused (429 with the wait left as
    /// `Retry-After`) while the wait after its last failure runs, else a [`LoginBackoff`] that
    /// the handler reports the password check to. Per email and client, so one client's
    /// guesses slow that client and never keep the owner out elsewhere; a backoff rather
    /// than a window, so a burst of failures never locks anyone out for good. One read.
    pub async fn backoff(&self, gate: &Gate, email: &str) -> Result<LoginBackoff, AppError> {
        let scope = format!("login#{email}#{}", client_prefix(&self.client));
        if !gate.limits.enabled {
            return Ok(LoginBackoff { scope, failures: 0 });
        }
        let failures = gate.counter.failures(&scope).await?;
        let rule = gate.limits.login_backoff;
        let free_at = failures
            .last
            .saturating_add(i64::try_from(rule.wait(failures.count)).unwrap_or(i64::MAX));
        let now = gate.now().unix_timestamp();
        if now < free_at {
            return Err(AppError::RateLimited {
                retry_after: u64::try_from(free_at - now).unwrap_or(1).max(1),
            });
        }
        Ok(LoginBackoff {
            scope,
            failures: failures.count,
        })
    }
}

/// A login's place in its backoff, to be told how the password check went.
#[derive(Debug)]
pub struct LoginBackoff {
    scope: String,
    failures: u64,
}

impl LoginBackoff {
    /// Failures are kept a day after the last one, so a client that stops guessing starts
    /// afresh the next day.
    const KEEP: i64 = 86_400;

    /// A wrong password: one more failure, which lengthens the next wait. One call.
    pub async fn failed(self, gate: &Gate) -> Result<(), AppError> {
        if gate.limits.enabled {
            let now = gate.now().unix_timestamp();
            gate.counter.fail(&self.scope, now, Self::KEEP).await?;
        }
        Ok(())
    }

    /// The right password: the failures are forgotten (one call, only if there were any).
    pub async fn succeeded(self, gate: &Gate) -> Result<(), AppError> {
        if gate.limits.enabled && self.failures > 0 {
            gate.counter.forgive(&self.scope).await?;
        }
        Ok(())
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

/// A voter, counted per user, or per client address for a guest. A guest's invite is not yet
/// checked when the limit is counted, so counting per token would let anyone make a new
/// counter item (a storage write) per random token; per address, random tokens share one.
/// (An invite can vote once anyway, so guests need no per-invite budget.)
#[derive(Debug, Clone)]
pub struct CountedVoter(pub VoterCredential);

impl<S: Gated> FromRequestParts<S> for CountedVoter {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let gate = state.gate();
        let credential = VoterCredential::from_request_parts(parts, state).await?;
        let (scope, rule) = match &credential {
            VoterCredential::User(user) => (format!("vote#u:{user}"), gate.limits.votes),
            VoterCredential::Invite(_) => (
                format!("vote#ip:{}", client_prefix(&client_ip(parts))),
                gate.limits.guest_ip,
            ),
        };
        enforce(gate, facts_of(parts).as_ref(), &scope, rule).await?;
        Ok(Self(credential))
    }
}
