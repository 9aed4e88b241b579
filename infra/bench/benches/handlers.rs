//! Handler cost in microseconds, with divan's distributions: each request is handed to its
//! function's own router without a socket, over the production DynamoDB adapter and the
//! embedded engine (`tally_bench::handlers::Fixture`, which the bench command uses too).
//!
//! ```text
//! cargo bench -p tally-bench --bench handlers
//! ```

use std::sync::LazyLock;

use divan::Bencher;
use tally_bench::handlers::Fixture;

/// One stack for every benchmark: starting the engines per benchmark would dominate.
static FIXTURE: LazyLock<Fixture> =
    LazyLock::new(|| Fixture::start().unwrap_or_else(|e| panic!("start the fixture: {e}")));

fn main() {
    divan::main();
}

/// A first ballot by a new voter (the token is minted outside the timing).
#[divan::bench]
fn vote(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher
        .with_inputs(|| {
            let voter = f.voter().unwrap_or_else(|e| panic!("{e}"));
            f.vote_request(&voter).unwrap_or_else(|e| panic!("{e}"))
        })
        .bench_local_values(|request| f.send(&f.votes, request));
}

#[divan::bench]
fn results(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher
        .with_inputs(|| f.results_request().unwrap_or_else(|e| panic!("{e}")))
        .bench_local_values(|request| f.send(&f.votes, request));
}

#[divan::bench]
fn get_poll(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher
        .with_inputs(|| f.get_poll_request().unwrap_or_else(|e| panic!("{e}")))
        .bench_local_values(|request| f.send(&f.polls, request));
}

/// Dominated by Argon2id, on purpose: a password check is meant to be slow.
#[divan::bench(sample_count = 20)]
fn login(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher
        .with_inputs(|| f.login_request().unwrap_or_else(|e| panic!("{e}")))
        .bench_local_values(|request| f.send(&f.auth, request));
}

/// One storage read on its own, for telling the adapter's cost from the handler's.
#[divan::bench]
fn storage_read(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher.bench_local(|| f.read_poll());
}

#[divan::bench]
fn verify_token(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher
        .with_inputs(|| f.voter().unwrap_or_else(|e| panic!("{e}")))
        .bench_local_refs(|token| f.verify_token(token));
}
