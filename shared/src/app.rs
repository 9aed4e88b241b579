//! Application state and the functions' routers. Each Lambda function serves one router; the
//! dev server merges them all. Both go through [`Function::app`], so there is one
//! implementation of every route.

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

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
    pub limits: crate::config::RateLimits,
    pub platform: http::Platform,
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
            limits: config.rate_limits,
            platform: http::Platform {
                service: "dev",
                cors_origins: config.cors_origins.clone(),
                metrics: config.metrics,
            },
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
    /// The web pages (`/`, `/i/{token}`, `/p/{id}`, `/assets/...`): static files only.
    Pages,
}

impl Function {
    pub const ALL: [Self; 5] = [
        Self::Auth,
        Self::Polls,
        Self::Votes,
        Self::Jobs,
        Self::Pages,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Polls => "polls",
            Self::Votes => "votes",
            Self::Jobs => "jobs",
            Self::Pages => "pages",
        }
    }

    /// Whether the function starts render jobs and so needs the bucket and the queue.
    pub fn runs_jobs(self) -> bool {
        self == Self::Jobs
    }

    /// Whether the function reaches storage at all (the pages are static).
    pub fn uses_storage(self) -> bool {
        self != Self::Pages
    }

    /// Whether the function mints tokens and so needs the private key.
    pub fn mints_tokens(self) -> bool {
        self == Self::Auth
    }

    /// The function's routes with their documentation, without the platform layers.
    pub fn routes(self, state: AppState) -> OpenApiRouter {
        match self {
            Self::Auth => http::auth::routes(state),
            Self::Polls => http::polls::routes(state),
            Self::Votes => http::votes::routes(state),
            Self::Jobs => http::jobs::routes(state),
            // Pages are not part of the API, so they add no paths to its document.
            Self::Pages => http::pages::routes(state).into(),
        }
    }

    /// The function's complete service, as Lambda runs it. Every function serves the whole
    /// API's document (`/v1/openapi.json`), so it does not matter which one API Gateway
    /// routes it to.
    pub fn app(self, state: AppState) -> Router {
        let (router, _) = self.routes(state.clone()).split_for_parts();
        let platform = http::Platform {
            service: self.name(),
            ..state.platform.clone()
        };
        http::platform(router, &platform, api_doc(&state))
    }
}

/// Every function's routes on one router, as the dev server serves them.
pub fn all_functions(state: &AppState) -> Router {
    let (router, _) = everything(state).split_for_parts();
    http::platform(router, &state.platform, api_doc(state))
}

fn everything(state: &AppState) -> OpenApiRouter {
    Function::ALL
        .into_iter()
        .fold(OpenApiRouter::new(), |router, f| {
            router.merge(f.routes(state.clone()))
        })
}

/// The OpenAPI document of the whole API, built from the same registrations as the routers.
pub fn api_doc(state: &AppState) -> utoipa::openapi::OpenApi {
    let (_, paths) = everything(state)
        .merge(http::platform_routes())
        .split_for_parts();
    let mut doc = http::openapi::base();
    doc.merge(paths);
    doc
}
