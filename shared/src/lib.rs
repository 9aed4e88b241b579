//! Tally's library: everything the Lambda functions and the dev server share.
//!
//! # Layout
//! - [`domain`]: ids, emails, polls, ballots and their rules. Knows no HTTP and no AWS.
//! - [`ports`]: the storage traits handlers call, with their failure modes.
//! - [`dynamo`]: the DynamoDB adapter (the only code that knows keys and attribute names).
//! - [`s3`], [`sqs`]: the S3 and SQS adapters (generated files, the render queue).
//! - [`worker`]: the render function's work: chunks of invite cards, QR codes, charts, the ZIP.
//! - [`count`]: the count function: stream records of new ballots summed into each poll's tally,
//!   exactly once.
//! - [`jobs`]: a job request made into its job and render messages; [`objects`]: every S3 key.
//! - [`auth`]: Argon2id passwords, EdDSA access tokens, refresh tokens, key material.
//! - [`http`]: routers and handlers of each function, extractors, platform layers.
//! - [`error`]: the one error type and its mapping to problem+json.
//! - [`render`]: invite cards, share QR codes (PNG, SVG) and results charts; pure functions.
//! - [`lambda`]: the generic runners each binary calls (`run_http`, `run_sqs`, `run_stream`).
//! - [`config`], [`clock`]: typed configuration read once; time as a port.
//! - [`metrics`]: CloudWatch Embedded Metric Format lines (no API calls).

pub mod auth;
pub mod clock;
pub mod config;
pub mod count;
pub mod domain;
pub mod dynamo;
pub mod error;
pub mod http;
pub mod jobs;
pub mod lambda;
pub mod live;
pub mod metrics;
pub mod objects;
pub mod ports;
pub mod render;
pub mod s3;
pub mod sqs;
pub mod worker;
