//! Who may connect and subscribe: the rule of the AppSync Events API's Lambda authorizer
//! (`functions/live`), which the dev server's WebSocket applies to the same messages.
//!
//! Connecting needs a valid pass; subscribing needs a valid pass for exactly the channel of
//! its poll; publishing is never allowed this way (only the count function publishes, signed
//! with its IAM role). A yes is cached by AppSync for at most the pass's remaining life, so a
//! cached answer never outlives the pass.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{LiveKey, channel};

/// The longest an answer is cached (AppSync allows up to an hour).
const MAX_TTL_SECONDS: i64 = 300;

/// What AppSync asks the authorizer (`AWS_LAMBDA` authorization of an Events API).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerRequest {
    #[serde(default)]
    pub authorization_token: String,
    pub request_context: RequestContext,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// `EVENT_CONNECT`, `EVENT_SUBSCRIBE` or `EVENT_PUBLISH`.
    pub operation: String,
    /// The channel subscribed or published to (absent on connect).
    #[serde(default)]
    pub channel: Option<String>,
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    pub is_authorized: bool,
    /// Seconds AppSync may reuse the answer for the same token (0: ask every time).
    pub ttl_override: i64,
}

impl AuthorizerResponse {
    const NO: Self = Self {
        is_authorized: false,
        ttl_override: 0,
    };
}

/// The one rule, for AWS and the dev server alike.
pub fn authorize(
    key: &LiveKey,
    request: &AuthorizerRequest,
    now: OffsetDateTime,
) -> AuthorizerResponse {
    let Some(pass) = key.check(request.authorization_token.trim(), now) else {
        return AuthorizerResponse::NO;
    };
    let allowed = match request.request_context.operation.as_str() {
        "EVENT_CONNECT" => true,
        "EVENT_SUBSCRIBE" => {
            request.request_context.channel.as_deref() == Some(&channel(pass.poll))
        }
        _ => false,
    };
    if !allowed {
        return AuthorizerResponse::NO;
    }
    AuthorizerResponse {
        is_authorized: true,
        ttl_override: (pass.expires_at - now)
            .whole_seconds()
            .clamp(0, MAX_TTL_SECONDS),
    }
}
