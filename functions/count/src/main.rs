//! The count Lambda function (DynamoDB stream, tumbling window): adds each batch of new
//! ballots to their polls' tallies, exactly once.

use std::sync::Arc;

use tally::clock::SystemClock;
use tally::count::Counter;
use tally::lambda::{Env, Error, run_stream};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("count")?;
    let store = env.aws().await.dynamo().await;
    let counter = Counter::new(store, Arc::new(SystemClock));
    run_stream(|event| counter.handle(event)).await
}
