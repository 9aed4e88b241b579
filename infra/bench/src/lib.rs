//! Tally's benchmarks, behind the `tally-bench` command (`src/main.rs`): votes under load
//! through the dev server's HTTP stack, live results to 1,000 watchers, in-process handler
//! cost, rendering, and the Lambda
//! binaries' cold start and size. Each part starts what it needs itself, on loopback only,
//! and every loop is bounded in count and time.
//!
//! None of this is a test: timing never decides whether the test suite passes. The votes
//! benchmark does fail when ballots or counts are not exact, because then its figures would
//! describe a broken system.

pub mod coldstart;
pub mod handlers;
pub mod live;
pub mod machine;
pub mod render;
pub mod report;
pub mod stack;
pub mod sustained;
pub mod votes;
