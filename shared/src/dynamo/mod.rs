//! The DynamoDB adapter: every port of [`crate::ports`] over one table, through the AWS SDK.
//! It runs unchanged against DynamoDB, the embedded engine of the dev server and tests, and
//! moto. Only this module and its children know attribute names and SDK types.
//!
//! One module per port (`users`, `sessions`, `polls`, `ballots`, `jobs`, `limits`), all built
//! from the shared operations of `ops` (reads, transactions, retries, cancellation reasons,
//! SDK errors); `keys` spells every key and `items` every stored shape.

mod ballots;
mod invites;
pub mod items;
mod jobs;
pub mod keys;
mod limits;
mod ops;
mod polls;
#[cfg(test)]
mod scripted;
mod sessions;
pub mod table;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;

pub use self::ops::conflict_backoff;

/// The production store. Cheap to clone: the SDK client and the call counter are shared.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    calls: Arc<AtomicU64>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<Arc<str>>) -> Self {
        Self {
            client,
            table: table.into(),
            calls: Arc::new(AtomicU64::new(0)),
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

    /// Counts one request; every operation that sends one calls this first.
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}
