//! Extractors that fail with [`AppError`], so that even a malformed request is answered in
//! problem+json: the JSON body, query strings, path ids, the caller's identity and the
//! conditional and idempotency headers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::gate::Gated;
use super::{BODY_LIMIT, BodyLimit};
use crate::domain::{InviteToken, UserId};
use crate::error::AppError;

/// A JSON body. Wrong media type → 415, over the limit → 413, not the expected JSON → 400.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| {
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(AppError::UnsupportedMediaType);
        }
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(BODY_LIMIT, |l| l.0);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge(limit)
                } else {
                    AppError::Malformed("the request body could not be read".into())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| AppError::Malformed(format!("the body is not the expected JSON: {e}")))
    }
}

/// Query parameters; unusable ones → 400 naming the problem.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| AppError::BadParameter(e.body_text()))
    }
}

/// The signed-in user, from `Authorization: Bearer <access token>`; 401 otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub UserId);

/// The longest Authorization value looked at; real tokens are a few hundred bytes.
const MAX_CREDENTIALS: usize = 4096;

impl<S: Gated> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (scheme, token) = authorization(parts)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AppError::Unauthorized);
        }
        let user = state
            .gate()
            .verifier
            .verify(token)
            .ok_or(AppError::Unauthorized)?;
        if let Some(facts) = parts.extensions.get::<super::facts::RequestFacts>() {
            facts.set_user(user.to_string());
        }
        Ok(Caller(user))
    }
}

/// The scheme and credentials of the `Authorization` header; 401 when absent or malformed.
fn authorization(parts: &Parts) -> Result<(&str, &str), AppError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_CREDENTIALS)
        .ok_or(AppError::Unauthorized)?;
    let (scheme, token) = value.split_once(' ').ok_or(AppError::Unauthorized)?;
    Ok((scheme, token.trim()))
}

/// Who is voting: a signed-in user (`Authorization: Bearer <access token>`) or a guest
/// (`Authorization: Invite <invite token>`). The invite is checked against the poll later.
#[derive(Debug, Clone)]
pub enum VoterCredential {
    User(UserId),
    Invite(InviteToken),
}

impl<S: Gated> FromRequestParts<S> for VoterCredential {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (scheme, token) = authorization(parts)?;
        if scheme.eq_ignore_ascii_case("invite") {
            return if is_token_shaped(token) {
                Ok(Self::Invite(InviteToken::new(token)))
            } else {
                Err(AppError::Unauthorized)
            };
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(|c| Self::User(c.0))
    }
}

/// Invite tokens are 43 base64url characters; anything far from that shape is refused
/// before any storage call.
pub fn is_token_shaped(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let text = value
            .to_str()
            .ok()
            .filter(|v| (1..=255).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()));
        text.map(|t| Self(Some(t.to_owned()))).ok_or_else(|| {
            AppError::BadParameter(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            )
        })
    }
}

/// A creating route that cannot honour `Idempotency-Key` refuses it with 400, rather than
/// ignoring it and letting the client believe a retry is safe.
#[derive(Debug, Clone, Copy)]
pub struct NoIdempotencyKey;

impl<S: Send + Sync> FromRequestParts<S> for NoIdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key("idempotency-key") {
            return Err(AppError::BadParameter(
                "Idempotency-Key is not supported on this route: a retry cannot be told from a new request here".into(),
            ));
        }
        Ok(Self)
    }
}

/// An `If-Match` header, checked against a resource's current ETag.
#[derive(Debug, Clone)]
pub struct IfMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(Self(None)),
            Some(v) => v
                .to_str()
                .map(|s| Self(Some(s.to_owned())))
                .map_err(|_| AppError::BadParameter("If-Match is not valid text".into())),
        }
    }
}

impl IfMatch {
    /// Whether the request may proceed on a resource whose ETag is `current`: no header,
    /// `*`, or a list naming `current` (strong comparison, as RFC 9110 requires for If-Match).
    pub fn allows(&self, current: &str) -> bool {
        match &self.0 {
            None => true,
            Some(header) => header
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag == current),
        }
    }

    pub fn is_present(&self) -> bool {
        self.0.is_some()
    }
}

/// A page size from the query (`limit`): `default` when absent, else a whole number from 1 to
/// `max`, or 400 naming the range.
pub fn page_limit(raw: Option<&str>, default: u16, max: u16) -> Result<u16, AppError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                AppError::BadParameter(format!("limit must be a whole number from 1 to {max}"))
            }),
    }
}

/// A resource id from the path. Ids that cannot exist answer 404, like unknown ones.
pub fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, AppError> {
    raw.parse().map_err(|_| AppError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::IfMatch;

    #[test]
    fn if_match_uses_strong_comparison() {
        let etag = "\"v3\"";
        assert!(IfMatch(None).allows(etag));
        assert!(IfMatch(Some("*".into())).allows(etag));
        assert!(IfMatch(Some("\"v2\", \"v3\"".into())).allows(etag));
        assert!(!IfMatch(Some("W/\"v3\"".into())).allows(etag));
        assert!(!IfMatch(Some("\"v2\"".into())).allows(etag));
    }
}
