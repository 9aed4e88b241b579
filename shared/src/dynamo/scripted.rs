//! A store whose HTTP client answers from a script, for the unit tests of the port modules.
//! The local engine serialises requests and never reports `TransactionConflict`; DynamoDB
//! does, so the adapter's handling of it is checked against DynamoDB's wire format here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_credential_types::Credentials;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region, retry::RetryConfig};
use aws_smithy_http_client::test_util::infallible_client_fn;
use time::OffsetDateTime;

use super::DynamoStore;
use super::ops::{CONFLICT_RETRIES, Reason};
use crate::domain::{Ballot, NewPoll, OptionId, Poll, PollId, UserId, Voter};
use crate::ports::{StoreError, StoreResult};

/// The requests' bodies, in the order they were sent.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// A store answering each request with the next `(status, body)` of `responses` (a 500 once
/// they run out), and the log of what it was sent.
pub fn scripted(responses: Vec<(u16, String)>) -> (DynamoStore, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(VecDeque::from(responses)));
    let log = seen.clone();
    let http = infallible_client_fn(move |request| {
        let body = request
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned());
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(body.unwrap_or_default());
        let (status, body) = script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
            .unwrap_or((500, "{}".into()));
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .body(body)
            .unwrap_or_default()
    });
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("k", "s", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(http)
        .build();
    (DynamoStore::new(Client::from_conf(config), "tally"), seen)
}

/// A `TransactionCanceledException` with these reasons, one per item of the transaction,
/// each with the item that stood there when given.
pub fn cancelled_with(reasons: &[(Reason, Option<&str>)]) -> (u16, String) {
    let reasons: Vec<String> = reasons
        .iter()
        .map(|(reason, item)| match item {
            Some(item) => format!(r#"{{"Code":"{}","Item":{item}}}"#, reason.code()),
            None => format!(r#"{{"Code":"{}"}}"#, reason.code()),
        })
        .collect();
    (
        400,
        format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{}]}}"#,
            reasons.join(",")
        ),
    )
}

/// A `TransactionCanceledException` with these reasons, one per item of the transaction.
pub fn cancelled(reasons: &[Reason]) -> (u16, String) {
    let reasons: Vec<_> = reasons.iter().map(|r| (r.clone(), None)).collect();
    cancelled_with(&reasons)
}

/// A transaction whose second item another transaction held.
pub fn conflict() -> (u16, String) {
    cancelled(&[Reason::None, Reason::TransactionConflict])
}

/// A store on which the next write meets two conflicts, then goes through.
pub fn busy_twice() -> (DynamoStore, Seen) {
    scripted(vec![conflict(), conflict(), (200, "{}".into())])
}

/// A store on which every write meets a conflict.
pub fn always_busy() -> (DynamoStore, Seen) {
    scripted((0..=CONFLICT_RETRIES).map(|_| conflict()).collect())
}

/// How many requests the store was sent.
pub fn sent(seen: &Seen) -> usize {
    seen.lock().map(|s| s.len()).unwrap_or_default()
}

/// Asserts that a write tried once and then `CONFLICT_RETRIES` times more, and gave up as
/// unavailable (a 503 with `Retry-After`).
pub fn assert_gave_up<T: std::fmt::Debug>(outcome: StoreResult<T>, seen: &Seen) {
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    assert_eq!(sent(seen), 1 + CONFLICT_RETRIES as usize);
}

pub fn ballot_for(poll: &Poll) -> Ballot {
    Ballot {
        poll_id: poll.id,
        voter: Voter::User(UserId::new()),
        choices: vec![OptionId::for_index(0)],
        voted_at: OffsetDateTime::now_utc(),
        idempotency_key: None,
    }
}

pub fn sample_poll() -> Poll {
    let now = OffsetDateTime::now_utc();
    NewPoll::parse(
        "q",
        vec!["a".into(), "b".into()],
        None,
        None,
        None,
        None,
        now,
    )
    .map(|p| p.into_poll(PollId::new(), UserId::new(), now))
    .unwrap_or_else(|e| panic!("{e:?}"))
}
