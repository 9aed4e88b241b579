//! The pages Lambda function: the web pages and the API's documentation, static files only
//! (no storage, no keys, no AWS client).

use tally::lambda::{Env, Error, run_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::load("pages")?;
    let routes = tally::http::pages::routes(&env.config.live_realtime_url);
    run_http(&env, routes).await
}
