//! The render Lambda function (SQS-triggered). Everything but start-up lives in the `tally`
//! library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tally::lambda::run_render().await
}
