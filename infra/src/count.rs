//! The count function wired to the table's stream, as the template's event source mapping
//! wires it on AWS: the poller of `streams.rs` hands each batch to the count handler.

use std::sync::Arc;

use tally::clock::SharedClock;
use tally::config::Config;
use tally::dynamo::DynamoStore;

use crate::streams::{FnTarget, StreamOptions, StreamPoller, StreamTarget, local_streams_client};

/// Starts reading the stream of `config.table` at `endpoint` into the count function over
/// `store` (a store handle of its own, as a separate function has on AWS).
pub async fn start(
    endpoint: &str,
    store: DynamoStore,
    config: &Config,
    clock: SharedClock,
    options: StreamOptions,
) -> Result<StreamPoller, String> {
    let _ = (store, clock);
    // Until the count function lands, every batch is acknowledged unread.
    let target: Arc<dyn StreamTarget> = Arc::new(FnTarget(|_event| async {
        Ok(aws_lambda_events::event::dynamodb::TimeWindowEventResponse::default())
    }));
    StreamPoller::start(
        local_streams_client(endpoint),
        &config.table,
        target,
        options,
    )
    .await
}
