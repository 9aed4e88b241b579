//! The pages Lambda function. Everything but start-up lives in the `tally` library.
//!
//! Unlike the API functions this one does not call `tally::lambda::run`, which warms up the
//! DynamoDB connection at cold start: the pages are static files, the function's role grants
//! no AWS permission at all, and that call would fail on every cold start. The state is built
//! the same way (the routers take it), but nothing here ever reaches storage.

use std::sync::Arc;

use tally::Function;
use tally::clock::SystemClock;
use tally::config::Config;
use tally::dynamo::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let function = Function::Pages;
    tally::lambda::init_logging(function.name());
    let config = Config::from_env()?;
    let sdk = tally::lambda::aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    let keys = tally::lambda::key_material(&config, function)?;
    let state = tally::AppState::new(&config, Arc::new(store), Arc::new(SystemClock), &keys)?;
    lambda_http::run(function.app(state)).await
}
