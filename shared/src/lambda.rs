//! The runner every Lambda binary calls: configuration and clients are built once per cold
//! start, then the function's router is handed to the Lambda runtime.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

use crate::app::{AppState, Function};
use crate::auth::KeyMaterial;
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError, KeySource};
use crate::dynamo::DynamoStore;
use crate::s3::S3Blobs;
use crate::sqs::SqsQueue;
use crate::worker::Worker;

/// Builds the AWS SDK configuration from the environment. `AWS_ENDPOINT_URL` (and the
/// service-specific `AWS_ENDPOINT_URL_DYNAMODB`) point it at a local engine or emulator.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The key material a function holds: the private key only where it mints tokens.
pub fn key_material(config: &Config, function: Function) -> Result<KeyMaterial, String> {
    let keys = match &config.keys {
        KeySource::Pem { private, public } => KeyMaterial {
            private_pem: private.clone(),
            public_pem: public.clone(),
        },
        KeySource::DataDir(dir) => KeyMaterial::load_or_generate(dir)?,
    };
    Ok(if function.mints_tokens() {
        keys
    } else {
        keys.public_only()
    })
}

/// Runs `function` on the Lambda runtime until the sandbox is shut down.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    init_logging(function.name());
    let config = Config::from_env()?;
    let sdk = aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    // The pages function serves static files and has no AWS permission: nothing to warm up.
    if function.uses_storage() {
        store.warm_up().await;
    }
    let keys = key_material(&config, function)?;
    let mut state = AppState::new(&config, Arc::new(store), Arc::new(SystemClock), &keys)?;
    if function.runs_jobs() {
        let url = config.render_queue_url.clone().ok_or(ConfigError {
            var: "TALLY_RENDER_QUEUE_URL",
            reason: "is required by the jobs function".into(),
        })?;
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
        state = state.with_jobs(Arc::new(s3_blobs(&sdk, &config)), Arc::new(queue));
    }
    lambda_http::run(function.app(state)).await
}

/// The S3 adapter for the configured bucket (path-style addressing for local engines).
pub fn s3_blobs(sdk: &aws_config::SdkConfig, config: &Config) -> S3Blobs {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(config.s3_path_style)
        .build();
    S3Blobs::new(aws_sdk_s3::Client::from_conf(s3), config.bucket.clone())
}

/// Runs the render function: SQS batches in, partial batch failures out.
pub async fn run_render() -> Result<(), lambda_runtime::Error> {
    init_logging("render");
    let config = Config::from_env()?;
    let sdk = aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    store.warm_up().await;
    let worker = Worker {
        store: Arc::new(store),
        blobs: Arc::new(s3_blobs(&sdk, &config)),
        clock: Arc::new(SystemClock),
        public_base_url: config.public_base_url.clone(),
        max_receives: config.render_max_receives,
        metrics: config.metrics,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        // Lambda's deadline for this invocation, in milliseconds since the epoch.
        let deadline =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        async move {
            Ok::<_, std::convert::Infallible>(
                worker.handle_within(event.payload, Some(deadline)).await,
            )
        }
    }))
    .await
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
