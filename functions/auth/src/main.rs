//! The auth Lambda function: accounts and sessions. It alone holds the signing key.

use tally::http::auth::{AuthState, routes};
use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("auth")?;
    let store = env.aws().await.dynamo().await;
    let ttl = env.config.refresh_token_ttl;
    let state = AuthState::new(store.clone(), env.issuer()?, ttl, env.gate(store)?);
    run_http(&env, routes(state)).await
}
