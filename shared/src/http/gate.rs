//! What every API function's extractors need, and nothing else: the token verifier (who is
//! calling), the rate counter with its rules (how often), and the clock. Each function's state
//! holds one [`Gate`] beside the ports its own routes use, and implements [`Gated`] so that the
//! extractors ([`super::extract::Caller`], [`super::limits::Writer`], ...) work on any of them.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::auth::TokenVerifier;
use crate::clock::SharedClock;
use crate::config::RateLimits;
use crate::ports::RateCounter;

/// The caller check and rate limits of one function. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    pub verifier: Arc<TokenVerifier>,
    pub counter: Arc<dyn RateCounter>,
    pub limits: RateLimits,
    pub clock: SharedClock,
}

impl Gate {
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

/// A function's state that carries a [`Gate`]: what the extractors are generic over.
pub trait Gated: Send + Sync {
    fn gate(&self) -> &Gate;
}

/// Implements [`Gated`] for a state struct with a `gate` field.
macro_rules! gated {
    ($state:ty) => {
        impl $crate::http::gate::Gated for $state {
            fn gate(&self) -> &$crate::http::gate::Gate {
                &self.gate
            }
        }
    };
}
pub(crate) use gated;

impl Gate {
    /// The gate of a function configured by `config`, verifying tokens with `keys` (only the
    /// public key is used) and counting requests in `counter`.
    pub fn new(
        config: &crate::config::Config,
        keys: &crate::auth::KeyMaterial,
        counter: Arc<dyn RateCounter>,
        clock: SharedClock,
    ) -> Result<Self, String> {
        Ok(Self {
            verifier: Arc::new(TokenVerifier::new(
                &keys.public_only(),
                &config.issuer,
                &config.audience,
            )?),
            counter,
            limits: config.rate_limits,
            clock,
        })
    }
}
