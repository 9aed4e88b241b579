//! The polls Lambda function: create, list, read, change, close and delete polls.

use std::sync::Arc;

use tally::http::polls::{PollsState, routes};
use tally::lambda::{Env, Error, run_http};
use tally::ports::PURGE_DELAY;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("polls")?;
    let aws = env.aws().await;
    let store = aws.dynamo().await;
    let state = PollsState {
        polls: store.clone(),
        // A deletion queues the removal of the poll's guests for the render function.
        queue: Arc::new(aws.render_queue()?.with_purge_delay(PURGE_DELAY)),
        gate: env.gate(store)?,
    };
    run_http(&env, routes(state)).await
}
