//! The runner every Lambda binary calls: configuration and clients are built once per cold
//! start, then the function's router is handed to the Lambda runtime.

use std::sync::Arc;

use crate::app::{AppState, Function};
use crate::auth::KeyMaterial;
use crate::clock::SystemClock;
use crate::config::{Config, KeySource};
use crate::dynamo::DynamoStore;

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
    init_logging(function);
    let config = Config::from_env()?;
    let sdk = aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    store.warm_up().await;
    let keys = key_material(&config, function)?;
    let state = AppState::new(&config, Arc::new(store), Arc::new(SystemClock), &keys)?;
    lambda_http::run(function.app(state)).await
}

/// JSON logs, one object per line, with the function's name on every line.
pub fn init_logging(function: Function) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .try_init();
    tracing::info!(function = function.name(), "cold start");
}
