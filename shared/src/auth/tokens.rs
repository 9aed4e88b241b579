//! Access tokens: short-lived JWTs signed with Ed25519. The algorithm is pinned on both
//! sides: a token naming any other algorithm (`none`, `HS256`, ...) is refused before its
//! signature is looked at.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::KeyMaterial;
use crate::domain::UserId;

/// Clock-skew allowance when checking `exp`: small, since access tokens live minutes.
pub const LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

/// Mints access tokens. Only the auth function has one.
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn new(
        keys: &KeyMaterial,
        issuer: &str,
        audience: &str,
        ttl_seconds: i64,
    ) -> Result<Self, String> {
        let pem = keys
            .private_pem
            .as_deref()
            .ok_or("no private key configured")?;
        Ok(Self {
            key: EncodingKey::from_ed_pem(pem.as_bytes())
                .map_err(|e| format!("private key: {e}"))?,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_seconds,
        })
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// A signed token for `user`, issued at `now`.
    pub fn issue(&self, user: UserId, now: OffsetDateTime) -> Result<String, String> {
        let iat = now.unix_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: iat + self.ttl_seconds,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)
            .map_err(|e| e.to_string())
    }
}

/// Verifies access tokens with the public key.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(keys: &KeyMaterial, issuer: &str, audience: &str) -> Result<Self, String> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Ok(Self {
            key: DecodingKey::from_ed_pem(keys.public_pem.as_bytes())
                .map_err(|e| format!("public key: {e}"))?,
            validation,
        })
    }

    /// The user a token speaks for, or `None` for any token that is malformed, forged,
    /// expired, of another algorithm, or meant for another issuer or audience.
    pub fn verify(&self, token: &str) -> Option<UserId> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        data.claims.sub.parse().ok()
    }
}
