//! The votes Lambda function: ballots, results, and a guest's view of their invite.

use tally::http::votes::{LiveDesk, VotesState, routes};
use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("votes")?;
    let aws = env.aws().await;
    let live = LiveDesk::new(aws.live_key().await?, &env.config);
    let store = aws.dynamo().await;
    let state = VotesState::new(store.clone(), live, env.gate(store)?);
    run_http(&env, routes(state)).await
}
