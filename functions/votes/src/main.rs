//! The votes Lambda function: ballots, results, and a guest's view of their invite.

use tally::http::votes::{VotesState, routes};
use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("votes")?;
    let store = env.aws().await.dynamo().await;
    let state = VotesState::new(store.clone(), env.gate(store)?);
    run_http(&env, routes(state)).await
}
