//! Every HTTP function as the dev server plays it: each function's own state, built over the
//! same local store, and each function's own routes, merged on one router. The Lambda binaries
//! build the same states in their `main.rs`; the routes are the same functions, so there is one
//! implementation of every route.

use std::sync::Arc;

use axum::Router;
use tally::auth::{KeyMaterial, TokenIssuer};
use tally::clock::SharedClock;
use tally::config::Config;
use tally::domain::InviteKey;
use tally::dynamo::DynamoStore;
use tally::http::auth::AuthState;
use tally::http::cache::PollCache;
use tally::http::gate::Gate;
use tally::http::jobs::JobsState;
use tally::http::polls::PollsState;
use tally::http::votes::{LiveDesk, VotesState};
use tally::http::{self, Platform};
use tally::live::LiveKey;
use tally::ports::{BlobStore, RenderQueue};
use utoipa_axum::router::OpenApiRouter;

/// The Lambda functions behind the HTTP API, for tests and tools that address one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Auth,
    Polls,
    Votes,
    Jobs,
    /// The web pages and the API's documentation: static files only.
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

    /// The binary's name, as `template.yaml` and the logs know it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Polls => "polls",
            Self::Votes => "votes",
            Self::Jobs => "jobs",
            Self::Pages => "pages",
        }
    }
}

/// Each HTTP function's state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Functions {
    pub auth: AuthState,
    pub polls: PollsState,
    pub votes: VotesState,
    pub jobs: JobsState,
    pub platform: Platform,
    /// Where pages may open the live-results WebSocket (their `connect-src`).
    pub live_realtime_url: String,
}

/// The keys the functions hold between them: the token key pair (only auth signs), the invite
/// key (jobs), the live key (votes).
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    pub jwt: &'a KeyMaterial,
    pub invite: &'a InviteKey,
    pub live: &'a LiveKey,
}

impl Functions {
    /// Every function's state over one store, as one machine plays them all.
    pub fn new(
        config: &Config,
        store: Arc<DynamoStore>,
        blobs: Arc<dyn BlobStore>,
        queue: Arc<dyn RenderQueue>,
        clock: SharedClock,
        keys: Keys<'_>,
    ) -> Result<Self, String> {
        let Keys {
            jwt: keys,
            invite: invite_key,
            live: live_key,
        } = keys;
        let gate = Gate::new(config, keys, store.clone(), clock.clone())?;
        // One cache of polls for the polls and votes functions: the owner's writes go through
        // it and forget what they change, so in one process a close is seen at once (on
        // Lambda, each votes instance's cache is its own and a close reaches it within
        // `POLL_CACHE_TTL`).
        let polls = PollCache::new(store.clone(), clock);
        let issuer = TokenIssuer::new(
            keys,
            &config.issuer,
            &config.audience,
            config.access_token_ttl,
        )?;
        Ok(Self {
            auth: AuthState::new(
                store.clone(),
                issuer,
                config.refresh_token_ttl,
                gate.clone(),
            ),
            polls: PollsState {
                polls: Arc::new(polls.clone()),
                queue: queue.clone(),
                gate: gate.clone(),
            },
            votes: VotesState::with_polls(
                polls,
                store.clone(),
                LiveDesk::new(live_key.clone(), config),
                gate.clone(),
            ),
            jobs: JobsState::new(
                store,
                invite_key.clone(),
                blobs,
                queue,
                gate,
                config.render_guests_per_day,
                config.render_jobs_in_flight,
            ),
            platform: Platform::new("dev", config),
            live_realtime_url: config.live_realtime_url.clone(),
        })
    }

    /// One function's routes, exactly what its binary serves.
    pub fn routes(&self, function: Function) -> OpenApiRouter {
        match function {
            Function::Auth => http::auth::routes(self.auth.clone()),
            Function::Polls => http::polls::routes(self.polls.clone()),
            Function::Votes => http::votes::routes(self.votes.clone()),
            Function::Jobs => http::jobs::routes(self.jobs.clone()),
            Function::Pages => http::pages::routes(&self.live_realtime_url),
        }
    }

    /// One function's complete service, as Lambda runs it (platform layers included).
    pub fn app(&self, function: Function) -> Router {
        let platform = Platform {
            service: function.name(),
            ..self.platform.clone()
        };
        http::platform(self.routes(function), &platform)
    }

    /// Every function's routes on one router, with their documentation: what the OpenAPI
    /// document is generated from.
    pub fn all_routes(&self) -> OpenApiRouter {
        Function::ALL
            .into_iter()
            .fold(OpenApiRouter::new(), |router, f| {
                router.merge(self.routes(f))
            })
            .merge(http::platform_routes())
    }

    /// Every function on one service, as the dev server serves them.
    pub fn all(&self) -> Router {
        let routes = Function::ALL
            .into_iter()
            .fold(OpenApiRouter::new(), |router, f| {
                router.merge(self.routes(f))
            });
        http::platform(routes, &self.platform)
    }
}
