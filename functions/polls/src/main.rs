//! The polls Lambda function: create, list, read, change, close and delete polls.

use tally::http::polls::{PollsState, routes};
use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("polls")?;
    let store = env.aws().await.dynamo().await;
    let state = PollsState {
        polls: store.clone(),
        gate: env.gate(store)?,
    };
    run_http(&env, routes(state)).await
}
