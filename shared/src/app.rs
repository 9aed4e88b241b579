//! Application state and the functions' routers. Each Lambda function serves one router; the
//! dev server merges them all. Both go through [`Function::app`], so there is one
//! implementation of every route.

use std::sync::Arc;

use axum::Router;

use crate::auth::{KeyMaterial, TokenIssuer, TokenVerifier};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::http;
use crate::ports::{BlobStore, RenderQueue, Store};

/// What handlers share: the store, the clock, and the token keys. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub verifier: Arc<TokenVerifier>,
    /// Present only in the function that mints tokens (auth) and the dev server.
    pub issuer: Option<Arc<TokenIssuer>>,
    pub refresh_token_ttl: i64,
    /// Generated files: present where a function reads or signs them (jobs).
    pub blobs: Option<Arc<dyn BlobStore>>,
    /// The render queue: present where a function starts jobs (jobs).
    pub queue: Option<Arc<dyn RenderQueue>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state from configuration. `keys` carries the private key only when this
    /// process may mint tokens.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        clock: SharedClock,
        keys: &KeyMaterial,
    ) -> Result<Self, String> {
        let verifier = TokenVerifier::new(keys, &config.issuer, &config.audience)?;
        let issuer = match keys.private_pem {
            Some(_) => Some(Arc::new(TokenIssuer::new(
                keys,
                &config.issuer,
                &config.audience,
                config.access_token_ttl,
            )?)),
            None => None,
        };
        Ok(Self {
            store,
            clock,
            verifier: Arc::new(verifier),
            issuer,
            refresh_token_ttl: config.refresh_token_ttl,
            blobs: None,
            queue: None,
        })
    }

    /// The same state with the file store and render queue a jobs function needs.
    pub fn with_jobs(mut self, blobs: Arc<dyn BlobStore>, queue: Arc<dyn RenderQueue>) -> Self {
        self.blobs = Some(blobs);
        self.queue = Some(queue);
        self
    }
}

/// The Lambda functions behind the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Auth,
    Polls,
    Votes,
    Jobs,
}

impl Function {
    pub const ALL: [Self; 4] = [Self::Auth, Self::Polls, Self::Votes, Self::Jobs];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Polls => "polls",
            Self::Votes => "votes",
            Self::Jobs => "jobs",
        }
    }

    /// Whether the function starts render jobs and so needs the bucket and the queue.
    pub fn runs_jobs(self) -> bool {
        self == Self::Jobs
    }

    /// Whether the function mints tokens and so needs the private key.
    pub fn mints_tokens(self) -> bool {
        self == Self::Auth
    }

    /// The function's routes, without the platform layers.
    pub fn routes(self, state: AppState) -> Router {
        match self {
            Self::Auth => http::auth::routes(state),
            Self::Polls => http::polls::routes(state),
            Self::Votes => http::votes::routes(state),
            Self::Jobs => http::jobs::routes(state),
        }
    }

    /// The function's complete service, as Lambda runs it.
    pub fn app(self, state: AppState) -> Router {
        http::platform(self.routes(state), self.name())
    }
}

/// Every function's routes on one router, as the dev server serves them.
pub fn all_functions(state: &AppState) -> Router {
    let merged = Function::ALL.into_iter().fold(Router::new(), |router, f| {
        router.merge(f.routes(state.clone()))
    });
    http::platform(merged, "dev")
}
