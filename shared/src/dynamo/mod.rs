//! The DynamoDB adapter: every port of [`crate::ports`] over one table, through the AWS SDK.
//! It runs unchanged against DynamoDB, the embedded engine of the dev server and tests, and
//! moto. Only this module and its children know attribute names and SDK types.
//!
//! One module per port (`users`, `sessions`, `polls`, `ballots`, `tallies`, `jobs`, `guests`,
//! `invites`, `limits`), all built
//! from the shared operations of `ops` (reads, transactions, retries, cancellation reasons,
//! SDK errors); `keys` spells every key and `items` every stored shape.

mod ballots;
mod guests;
mod invites;
pub mod items;
mod jobs;
pub mod keys;
mod limits;
mod ops;
mod polls;
mod purge;
#[cfg(test)]
mod scripted;
mod sessions;
pub mod table;
mod tallies;
mod users;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::Client;

pub use self::ops::conflict_backoff;
pub use self::tallies::{CHECKPOINT_LIFETIME, StreamBallot, stream_ballot};

/// The production store. Cheap to clone: the SDK client, the call counter and the record of
/// what was touched are shared.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    calls: Arc<AtomicU64>,
    touched: Arc<Mutex<BTreeSet<Touch>>>,
}

/// One kind of access a request made, as IAM authorizes it: the `dynamodb:` action (each item
/// of a transaction is authorized on its own, a `Put` as `PutItem`, a `ConditionCheck` as
/// `ConditionCheckItem`), the prefix of the partition key `dynamodb:LeadingKeys` sees (`POLL#`;
/// empty for a request that names no item, `DescribeTable`), and the index a query reads. The
/// store keeps each distinct one once, so the record stays a few dozen entries however long a
/// function runs; a test compares it with the grants of `template.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Touch {
    /// The API operation that carried it: `TransactWriteItems` for a transaction's items.
    pub operation: &'static str,
    /// The IAM action, without `dynamodb:`.
    pub action: &'static str,
    pub prefix: String,
    pub index: Option<String>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<Arc<str>>) -> Self {
        Self {
            client,
            table: table.into(),
            calls: Arc::new(AtomicU64::new(0)),
            touched: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Opens the first connection (DNS, TCP, TLS) during the cold start, so that the first
    /// request does not pay for it. A failure is only logged: the request path will report
    /// a real problem with the right status.
    pub async fn warm_up(&self) {
        // Not counted as a call (no route makes it), but recorded: it needs a grant too.
        self.record([Touch::new("DescribeTable", "DescribeTable", "", None)]);
        if let Err(e) = self
            .client
            .describe_table()
            .table_name(&*self.table)
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "DynamoDB warm-up failed");
        }
    }

    /// DynamoDB requests sent so far by this store and its clones. Tests read it to hold each
    /// route to its storage-call budget.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every distinct access this store and its clones made so far (see [`Touch`]). Tests
    /// compare it with the IAM grants of each function.
    pub fn touched(&self) -> BTreeSet<Touch> {
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts one request and records what it touches; every operation that sends one calls
    /// this first.
    fn count(&self, touches: impl IntoIterator<Item = Touch>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.record(touches);
    }

    fn record(&self, touches: impl IntoIterator<Item = Touch>) {
        let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
        touched.extend(touches);
    }
}

impl Touch {
    pub(super) fn new(
        operation: &'static str,
        action: &'static str,
        prefix: &str,
        index: Option<&str>,
    ) -> Self {
        Self {
            operation,
            action,
            prefix: prefix.to_owned(),
            index: index.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scripted::{sample_poll, scripted};
    use crate::ports::{PollStore, RateCounter};

    /// What a request touches is recorded before it is sent, whatever the answer: a
    /// transaction's items each as their own action, a plain request as its operation.
    #[tokio::test]
    async fn every_request_records_its_actions_and_key_prefixes() {
        let (store, _) = scripted(Vec::new());
        let _ = store.delete_poll(&sample_poll()).await;
        let _ = store.hit("votes#203.0.113.9", 60, 60).await;
        let touched: Vec<_> = store
            .clone()
            .touched()
            .into_iter()
            .map(|t| (t.operation, t.action, t.prefix, t.index))
            .collect();
        assert_eq!(
            touched,
            vec![
                ("TransactWriteItems", "DeleteItem", "POLL#".to_owned(), None),
                (
                    "TransactWriteItems",
                    "DeleteItem",
                    "TALLY#".to_owned(),
                    None
                ),
                ("UpdateItem", "UpdateItem", "RATE#".to_owned(), None),
            ]
        );
        assert_eq!(store.calls(), 2);
    }
}
