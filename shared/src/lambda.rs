//! The generic runners the Lambda binaries call. A function's `main.rs` loads its [`Env`] once
//! per cold start, builds the state its own routes (or its event handler) need from it, and
//! hands them to [`run_http`], [`run_sqs`] or [`run_stream`]. Nothing here chooses a function at run time:
//! each binary names exactly the routes and ports it uses, so the linker keeps only those.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::dynamodb::{TimeWindowEvent, TimeWindowEventResponse};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{KeyMaterial, TokenIssuer};
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError, KeySource};
#[cfg(feature = "secrets-manager")]
use crate::domain::InviteKey;
use crate::dynamo::DynamoStore;
use crate::http::Platform;
use crate::http::gate::Gate;
use crate::ports::RateCounter;
use crate::s3::S3Blobs;
use crate::sqs::SqsQueue;

pub use lambda_runtime::Error;

/// What every function reads once at cold start: its name and the configuration.
#[derive(Debug)]
pub struct Env {
    pub name: &'static str,
    pub config: Config,
}

impl Env {
    /// Starts the JSON logs and reads the configuration.
    pub fn load(name: &'static str) -> Result<Self, Error> {
        init_logging(name);
        let config = Config::from_env()?;
        Ok(Self { name, config })
    }

    /// The AWS SDK's settings, for the functions that reach AWS (all but the pages).
    pub async fn aws(&self) -> Aws<'_> {
        Aws {
            env: self,
            sdk: aws_config().await,
        }
    }

    /// The caller check and rate limits, verifying tokens with the public key only.
    pub fn gate(&self, counter: Arc<dyn RateCounter>) -> Result<Gate, Error> {
        Ok(Gate::new(
            &self.config,
            &key_material(&self.config)?,
            counter,
            Arc::new(SystemClock),
        )?)
    }

    /// The token issuer, for the one function that signs tokens (its IAM alone can read the
    /// private key).
    pub fn issuer(&self) -> Result<TokenIssuer, Error> {
        let keys = key_material(&self.config)?;
        Ok(TokenIssuer::new(
            &keys,
            &self.config.issuer,
            &self.config.audience,
            self.config.access_token_ttl,
        )?)
    }

    /// The platform layers' settings, with this function's name on every log line.
    pub fn platform(&self) -> Platform {
        Platform::new(self.name, &self.config)
    }
}

/// The AWS clients of a function, built from one SDK configuration.
#[derive(Debug)]
pub struct Aws<'a> {
    env: &'a Env,
    sdk: aws_config::SdkConfig,
}

impl Aws<'_> {
    /// The DynamoDB adapter, with its first connection opened so that the first request does
    /// not pay for the TLS handshake.
    pub async fn dynamo(&self) -> Arc<DynamoStore> {
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            self.env.config.table.clone(),
        );
        store.warm_up().await;
        Arc::new(store)
    }

    /// The S3 adapter for the configured bucket.
    pub fn blobs(&self) -> S3Blobs {
        s3_blobs(&self.sdk, &self.env.config)
    }

    /// The render queue the jobs function (render work) and the polls function (a deleted
    /// poll's purge) send to.
    pub fn render_queue(&self) -> Result<SqsQueue, Error> {
        let url = self
            .env
            .config
            .render_queue_url
            .clone()
            .ok_or(ConfigError {
                var: "TALLY_RENDER_QUEUE_URL",
                reason: format!("is required by the {} function", self.env.name),
            })?;
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&self.sdk), url))
    }

    /// The token issuer of the auth function, the one function that signs tokens: with the
    /// private key read from Secrets Manager once, at cold start, when
    /// `TALLY_JWT_PRIVATE_KEY_SECRET` names the secret (on AWS), else from the configured
    /// keys (locally). Only this function's role may read the secret.
    #[cfg(feature = "secrets-manager")]
    pub async fn signing_issuer(&self) -> Result<TokenIssuer, Error> {
        let config = &self.env.config;
        let Some(secret) = &config.private_key_secret else {
            return self.env.issuer();
        };
        let private = self.read_secret(secret, "the signing key's PEM").await?;
        let public = key_material(config)?.public_pem;
        let keys = KeyMaterial {
            private_pem: Some(private),
            public_pem: public,
        };
        Ok(TokenIssuer::new(
            &keys,
            &config.issuer,
            &config.audience,
            config.access_token_ttl,
        )?)
    }

    /// The key guests' invite tokens are derived from, for the jobs and render functions:
    /// read from Secrets Manager once, at cold start, when `TALLY_INVITE_KEY_SECRET` names the
    /// secret (required on Lambda), else `TALLY_INVITE_KEY`, else loaded from (or generated
    /// into) the data folder.
    #[cfg(feature = "secrets-manager")]
    pub async fn invite_key(&self) -> Result<InviteKey, Error> {
        let config = &self.env.config;
        let text = self
            .key_text(
                config.invite_key_secret.as_deref(),
                config.invite_key.as_deref(),
                "TALLY_INVITE_KEY_SECRET",
                "the invite key",
            )
            .await?;
        Ok(match text {
            Some(text) => InviteKey::from_text(&text)?,
            None => InviteKey::load_or_generate(&config.data_dir)?,
        })
    }

    /// The key live-results passes are signed with, for the votes function and the live
    /// authorizer: as [`Self::invite_key`], from `TALLY_LIVE_KEY_SECRET` or `TALLY_LIVE_KEY`.
    #[cfg(feature = "secrets-manager")]
    pub async fn live_key(&self) -> Result<crate::live::LiveKey, Error> {
        let config = &self.env.config;
        let text = self
            .key_text(
                config.live_key_secret.as_deref(),
                config.live_key.as_deref(),
                "TALLY_LIVE_KEY_SECRET",
                "the live key",
            )
            .await?;
        Ok(match text {
            Some(text) => crate::live::LiveKey::from_text(&text)?,
            None => crate::live::LiveKey::load_or_generate(&config.data_dir)?,
        })
    }

    /// A key's text: from the secret `secret` names, else given as `text`; `None` means the
    /// data folder's key, which is refused on Lambda (`secret_var` is then required).
    #[cfg(feature = "secrets-manager")]
    async fn key_text(
        &self,
        secret: Option<&str>,
        text: Option<&str>,
        secret_var: &'static str,
        what: &str,
    ) -> Result<Option<String>, Error> {
        let Some(secret) = secret else {
            if let Some(text) = text {
                return Ok(Some(text.to_owned()));
            }
            if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
                return Err(ConfigError {
                    var: secret_var,
                    reason: format!("is required by the {} function on Lambda", self.env.name),
                }
                .into());
            }
            return Ok(None);
        };
        Ok(Some(self.read_secret(secret, what).await?))
    }

    /// The `SecretString` of the Secrets Manager secret `secret` (`what` it holds, for errors).
    #[cfg(feature = "secrets-manager")]
    async fn read_secret(&self, secret: &str, what: &str) -> Result<String, Error> {
        let out = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "read {what} from secret {secret}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(out
            .secret_string
            .ok_or_else(|| format!("the secret {secret} has no SecretString ({what})"))?)
    }

    /// Where the count function publishes live results: the AppSync Events API named by
    /// `TALLY_LIVE_PUBLISH_URL`, required on Lambda.
    #[cfg(feature = "appsync")]
    pub fn live_feed(&self) -> Result<crate::live::appsync::AppSyncFeed, Error> {
        let url = self
            .env
            .config
            .live_publish_url
            .as_deref()
            .ok_or(ConfigError {
                var: "TALLY_LIVE_PUBLISH_URL",
                reason: format!("is required by the {} function", self.env.name),
            })?;
        Ok(crate::live::appsync::AppSyncFeed::new(&self.sdk, url)?)
    }

    /// The dead-letter queue the render function moves unreadable messages to.
    pub fn dead_letters(&self) -> Result<SqsQueue, Error> {
        let url = self
            .env
            .config
            .dead_letter_queue_url
            .clone()
            .ok_or(ConfigError {
                var: "TALLY_DEAD_LETTER_QUEUE_URL",
                reason: format!("is required by the {} function", self.env.name),
            })?;
        Ok(SqsQueue::new(aws_sdk_sqs::Client::new(&self.sdk), url))
    }
}

/// Serves `routes` (with the platform layers) on the Lambda runtime until the sandbox is shut
/// down.
pub async fn run_http(env: &Env, routes: OpenApiRouter) -> Result<(), Error> {
    lambda_http::run(crate::http::platform(routes, &env.platform())).await
}

/// Hands each SQS batch to `handler` with the invocation's deadline, and reports its partial
/// batch failures to the event source mapping.
pub async fn run_sqs<H, F>(handler: H) -> Result<(), Error>
where
    H: Fn(SqsEvent, SystemTime) -> F,
    F: Future<Output = SqsBatchResponse>,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // Lambda's deadline for this invocation, in milliseconds since the epoch.
        let deadline = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        Ok::<_, std::convert::Infallible>(handler(event.payload, deadline).await)
    }))
    .await
}

/// Runs a DynamoDB stream consumer (the count function): each invocation's tumbling-window
/// event goes to `handler`, whose error fails the invocation so that Lambda delivers the
/// batch again (with the mapping's retry, bisect and on-failure settings).
pub async fn run_stream<H, F, E>(handler: H) -> Result<(), Error>
where
    H: Fn(TimeWindowEvent) -> F,
    F: Future<Output = Result<TimeWindowEventResponse, E>>,
    E: std::fmt::Display,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<TimeWindowEvent>| async move {
            handler(event.payload).await.map_err(|e| {
                tracing::error!(error = %e, "stream batch failed");
                Error::from(e.to_string())
            })
        },
    ))
    .await
}

/// Runs the AppSync Events authorizer (the live function): each subscribe or connect request
/// is answered by [`crate::live::authorizer::authorize`] under `key`, at the time of asking.
pub async fn run_authorizer(key: crate::live::LiveKey) -> Result<(), Error> {
    let key = &key;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<crate::live::authorizer::AuthorizerRequest>| async move {
            let answer = crate::live::authorizer::authorize(
                key,
                &event.payload,
                time::OffsetDateTime::now_utc(),
            );
            tracing::info!(
                operation = %event.payload.request_context.operation,
                authorized = answer.is_authorized,
                "live authorization"
            );
            Ok::<_, Error>(answer)
        },
    ))
    .await
}

/// Builds the AWS SDK configuration from the environment. `AWS_ENDPOINT_URL` (and the
/// service-specific `AWS_ENDPOINT_URL_DYNAMODB`) point it at a local engine or emulator.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The configured key material: PEM keys from the environment on Lambda, a key pair in the
/// data folder locally. Callers that only verify take [`KeyMaterial::public_only`].
pub fn key_material(config: &Config) -> Result<KeyMaterial, String> {
    match &config.keys {
        KeySource::Pem { private, public } => Ok(KeyMaterial {
            private_pem: private.clone(),
            public_pem: public.clone(),
        }),
        KeySource::DataDir(dir) => KeyMaterial::load_or_generate(dir),
    }
}

/// The S3 adapter for the configured bucket (path-style addressing for local engines).
pub fn s3_blobs(sdk: &aws_config::SdkConfig, config: &Config) -> S3Blobs {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(config.s3_path_style)
        .build();
    S3Blobs::new(aws_sdk_s3::Client::from_conf(s3), config.bucket.clone())
}

/// JSON logs, one object per line, with the function's name on every line.
pub fn init_logging(function: &'static str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .try_init();
    tracing::info!(function, "cold start");
}
