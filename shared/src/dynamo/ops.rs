//! The operations every port of the adapter is built from: reads by key, batch reads that
//! answer with typed keys, transactions (with their retries and typed cancellation reasons),
//! updates, conversions between items and `serde` values, and the mapping of SDK errors to
//! [`StoreError`]. The port modules hold only what is particular to their items.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::builders::{DeleteBuilder, UpdateBuilder};
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{self, Key};
use super::{DynamoStore, Touch};
use crate::ports::{StoreError, StoreResult};

/// An item as the SDK carries it: attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

/// How often a transaction is retried when DynamoDB cancels it for a conflict with another
/// transaction on one of its items (a ballot's counter shard, a job's counters).
pub(super) const CONFLICT_RETRIES: u32 = 6;

/// `BatchWriteItem` takes at most 25 requests.
const BATCH_WRITE: usize = 25;
/// Rounds of retrying items DynamoDB left unprocessed (throttling) before giving up.
const UNPROCESSED_RETRIES: u32 = 8;

/// The condition of a write that creates its item: nothing may stand under its key yet.
pub(super) const NEW_ITEM: &str = "attribute_not_exists(PK)";

impl DynamoStore {
    /// Sends one request (the SDK's `send()`, which does nothing until awaited): counts it,
    /// for the call budgets the tests hold routes to, records what it `touches` (see
    /// [`touching`]), for the IAM grants the tests compare, and maps its error to
    /// [`StoreError`].
    pub(super) async fn send<T, E, R>(
        &self,
        touches: Vec<Touch>,
        request: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> StoreResult<T>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        self.count(touches);
        request.await.map_err(sdk_error)
    }

    /// Reads one item by key (strongly consistent).
    pub(super) async fn get<T: DeserializeOwned>(&self, key: &Key) -> StoreResult<Option<T>> {
        self.get_raw(key).await?.map(from_item).transpose()
    }

    /// Reads one item by key (strongly consistent), as the SDK carries it: for items whose
    /// attribute names are data (a tally's options and shards).
    pub(super) async fn get_raw(&self, key: &Key) -> StoreResult<Option<Item>> {
        let get = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key.item_key()))
            .consistent_read(true);
        let touches = touching("GetItem", "GetItem", get.get_key());
        let out = self.send(touches, get.send()).await?;
        Ok(out.item)
    }

    /// Reads several items by key in one `BatchGetItem` (strongly consistent), each with its
    /// key read back, so that callers tell the items apart by [`Key`] variant. Items that do
    /// not exist are simply absent.
    pub(super) async fn batch_get(&self, keys: &[Key]) -> StoreResult<Vec<(Key, Item)>> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys.iter().map(Key::item_key).collect()))
            .consistent_read(true)
            .build()
            .map_err(internal)?;
        let read = self
            .client
            .batch_get_item()
            .request_items(&*self.table, request);
        let touches = touching(
            "BatchGetItem",
            "BatchGetItem",
            read.get_request_items()
                .iter()
                .flat_map(HashMap::values)
                .flat_map(|r| r.keys()),
        );
        let out = self.send(touches, read.send()).await?;
        if out.unprocessed_keys.as_ref().is_some_and(|u| !u.is_empty()) {
            // A few small items are far below BatchGetItem's limits, so DynamoDB answers
            // them in one go; leftovers come only from throttling, which callers may retry.
            return Err(StoreError::Unavailable("batch read was throttled".into()));
        }
        out.responses
            .unwrap_or_default()
            .remove(&*self.table)
            .unwrap_or_default()
            .into_iter()
            .map(|item| match Key::of_item(&item) {
                Some(key) => Ok((key, item)),
                None => Err(StoreError::Internal(
                    "batch read returned an item without a known key".into(),
                )),
            })
            .collect()
    }

    /// Writes the items (unconditionally, replacing what stands under their keys) with one
    /// `BatchWriteItem` per 25, sending again, with backoff, what DynamoDB left unprocessed.
    pub(super) async fn batch_put(&self, items: Vec<Item>) -> StoreResult<()> {
        for batch in items.chunks(BATCH_WRITE) {
            let mut requests = batch
                .iter()
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map_err(internal)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let mut round = 0;
            while !requests.is_empty() {
                if round > UNPROCESSED_RETRIES {
                    return Err(StoreError::Unavailable(
                        "batch writes stayed unprocessed".into(),
                    ));
                }
                if round > 0 {
                    tokio::time::sleep(conflict_backoff(round)).await;
                }
                let touches = touching(
                    "BatchWriteItem",
                    "BatchWriteItem",
                    requests
                        .iter()
                        .filter_map(|r| r.put_request().map(PutRequest::item)),
                );
                let write = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.table, requests);
                let out = self.send(touches, write.send()).await?;
                requests = out
                    .unprocessed_items
                    .unwrap_or_default()
                    .remove(&*self.table)
                    .unwrap_or_default();
                round += 1;
            }
        }
        Ok(())
    }

    /// Runs one `TransactWriteItems`. The outer error is a failed request; the inner one a
    /// transaction that DynamoDB cancelled, with the reason of each of its items.
    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> StoreResult<Result<(), Cancellation>> {
        self.count(items.iter().flat_map(transaction_touches));
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(c) => Ok(Err(
                    Cancellation::from_sdk(c.cancellation_reasons.unwrap_or_default()),
                )),
                other => Err(service_error(&other)),
            },
            Err(other) => Err(sdk_error(other)),
        }
    }

    /// Runs a transaction, building it again and retrying (with backoff) while DynamoDB
    /// cancels it only because another transaction held one of its items. On a poll taking
    /// votes some ballot is almost always in flight on one of the counter shards, and render
    /// instances meet on a job's counters, so these writes need it; `build` may pick other
    /// items for the next try (a ballot picks another shard). A cancellation for any other
    /// reason (a failed condition) is returned at once; conflicts that outlast the retries
    /// are too, for the caller to map.
    pub(super) async fn transact_through_conflicts(
        &self,
        mut build: impl FnMut() -> StoreResult<Vec<TransactWriteItem>> + Send,
    ) -> StoreResult<Result<(), Cancellation>> {
        let mut attempt = 0;
        loop {
            match self.transact(build()?).await? {
                Err(c) if attempt < CONFLICT_RETRIES && c.only_conflicts() => {
                    attempt += 1;
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                }
                other => return Ok(other),
            }
        }
    }

    /// A transaction's `Put` of `item` under `condition`. When the condition fails, DynamoDB
    /// returns the item that stands there ([`Cancellation::old_item`]).
    pub(super) fn put(
        &self,
        item: Item,
        condition: Option<&str>,
    ) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A transaction's `Put` that creates `value`'s item, failing if its key is taken.
    pub(super) fn put_new<T: Serialize>(&self, value: &T) -> StoreResult<TransactWriteItem> {
        self.put(to_item(value)?, Some(NEW_ITEM))
    }

    /// A transaction's `Update` of the item under `key`, to be completed by the caller.
    pub(super) fn update_in_transaction(&self, key: &Key) -> UpdateBuilder {
        aws_sdk_dynamodb::types::Update::builder()
            .table_name(&*self.table)
            .set_key(Some(key.item_key()))
    }

    /// A transaction's `Delete` of the item under `key`, to be completed by the caller.
    pub(super) fn delete_in_transaction(&self, key: &Key) -> DeleteBuilder {
        aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(key.item_key()))
    }

    /// An `UpdateItem` request for the item under `key`, to be completed by the caller and
    /// sent with [`Self::send_update`] or [`Self::update_if`].
    pub(super) fn update(&self, key: &Key) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key.item_key()))
    }

    /// Sends an `UpdateItem` (one call); a failed condition is [`StoreError::ConditionFailed`].
    pub(super) async fn send_update(
        &self,
        update: UpdateItemFluentBuilder,
    ) -> StoreResult<UpdateItemOutput> {
        let touches = touching("UpdateItem", "UpdateItem", update.get_key());
        self.send(touches, update.send()).await
    }

    /// Sends a conditional `UpdateItem`: `false` when its condition did not hold.
    pub(super) async fn update_if(&self, update: UpdateItemFluentBuilder) -> StoreResult<bool> {
        match self.send_update(update).await {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl DynamoStore {
    /// A `PutItem` of `item`, to be completed by the caller (its condition) and sent with
    /// [`Self::put_unless_taken`]; a failed condition returns the item that stands there.
    pub(super) fn put_item(&self, item: Item) -> PutItemFluentBuilder {
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// Sends a conditional `PutItem` (one call): `Err(old)` when its condition failed, with
    /// the item that stood under the key when the store returned it.
    pub(super) async fn put_unless_taken(
        &self,
        put: PutItemFluentBuilder,
    ) -> StoreResult<Result<(), Option<Item>>> {
        let item = put.get_item().clone().unwrap_or_default();
        self.count(touching("PutItem", "PutItem", [&item]));
        match put.send().await {
            Ok(_) => Ok(Ok(())),
            Err(SdkError::ServiceError(s)) => match s.into_err() {
                PutItemError::ConditionalCheckFailedException(e) => Ok(Err(e.item)),
                other => Err(service_error(&other)),
            },
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Sends a conditional `UpdateItem` (one call) that asks for the item as it stood when its
    /// condition fails: `Err(old)` then (`None` when no item stood there).
    pub(super) async fn update_unless(
        &self,
        update: UpdateItemFluentBuilder,
    ) -> StoreResult<Result<UpdateItemOutput, Option<Item>>> {
        let update = update
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        self.count(touching("UpdateItem", "UpdateItem", update.get_key()));
        match update.send().await {
            Ok(out) => Ok(Ok(out)),
            Err(SdkError::ServiceError(s)) => match s.into_err() {
                UpdateItemError::ConditionalCheckFailedException(e) => Ok(Err(e.item)),
                other => Err(service_error(&other)),
            },
            Err(e) => Err(sdk_error(e)),
        }
    }
}

/// What a request touches: `action` on the items under these keys (or whole items, whose key
/// attributes are among the others), as [`Touch`]es, one per partition-key prefix.
pub(super) fn touching<'a>(
    operation: &'static str,
    action: &'static str,
    keys: impl IntoIterator<Item = &'a Item>,
) -> Vec<Touch> {
    keys.into_iter()
        .map(|key| match key.get(keys::PK) {
            Some(AttributeValue::S(pk)) => keys::prefix_of(pk),
            _ => "",
        })
        .map(|prefix| Touch::new(operation, action, prefix, None))
        .collect()
}

/// What one item of a transaction touches: each kind is authorized as its own action.
fn transaction_touches(item: &TransactWriteItem) -> Vec<Touch> {
    const OP: &str = "TransactWriteItems";
    let mut touches = Vec::new();
    if let Some(put) = item.put() {
        touches.extend(touching(OP, "PutItem", [put.item()]));
    }
    if let Some(update) = item.update() {
        touches.extend(touching(OP, "UpdateItem", [update.key()]));
    }
    if let Some(delete) = item.delete() {
        touches.extend(touching(OP, "DeleteItem", [delete.key()]));
    }
    if let Some(check) = item.condition_check() {
        touches.extend(touching(OP, "ConditionCheckItem", [check.key()]));
    }
    touches
}

/// A transaction item built from an `Update`.
pub(super) fn updating(update: UpdateBuilder) -> StoreResult<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .update(update.build().map_err(internal)?)
        .build())
}

/// A transaction item built from a `Delete`.
pub(super) fn deleting(delete: DeleteBuilder) -> StoreResult<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .delete(delete.build().map_err(internal)?)
        .build())
}

/// Why DynamoDB cancelled one item of a transaction: the `Code` of its cancellation reason,
/// spelled in [`Reason::code`] and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reason {
    /// Nothing was wrong with this item; another one cancelled the transaction.
    None,
    /// The item's condition expression did not hold.
    ConditionalCheckFailed,
    /// Another transaction was writing the item at the same time.
    TransactionConflict,
    /// DynamoDB throttled the request.
    ThrottlingError,
    /// The table's provisioned capacity was exceeded.
    ProvisionedThroughputExceeded,
    /// Anything else (a validation error, a too large item collection): a bug on this side.
    Other(String),
}

impl Reason {
    /// Every reason with a code of its own, for [`Reason::parse`].
    const NAMED: [Self; 5] = [
        Self::None,
        Self::ConditionalCheckFailed,
        Self::TransactionConflict,
        Self::ThrottlingError,
        Self::ProvisionedThroughputExceeded,
    ];

    /// The reason's code on the wire.
    pub(super) fn code(&self) -> &str {
        match self {
            Self::None => "None",
            Self::ConditionalCheckFailed => "ConditionalCheckFailed",
            Self::TransactionConflict => "TransactionConflict",
            Self::ThrottlingError => "ThrottlingError",
            Self::ProvisionedThroughputExceeded => "ProvisionedThroughputExceeded",
            Self::Other(code) => code,
        }
    }

    /// Reads a reason code; an item DynamoDB says nothing about was not the cause.
    fn parse(code: Option<&str>) -> Self {
        let Some(code) = code else {
            return Self::None;
        };
        Self::NAMED
            .into_iter()
            .find(|r| r.code() == code)
            .unwrap_or_else(|| Self::Other(code.to_owned()))
    }

    /// Busy storage: worth a retry by the client, unlike a validation error.
    fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::TransactionConflict | Self::ThrottlingError | Self::ProvisionedThroughputExceeded
        )
    }
}

/// What DynamoDB said about one item of a cancelled transaction.
struct ItemCancellation {
    reason: Reason,
    message: Option<String>,
    /// The item as it stood, returned with a failed condition when the write asked for it.
    item: Option<Item>,
}

/// A cancelled transaction: the reason of each of its items, in the order they were sent.
pub(super) struct Cancellation(Vec<ItemCancellation>);

impl Cancellation {
    fn from_sdk(reasons: Vec<CancellationReason>) -> Self {
        Self(
            reasons
                .into_iter()
                .map(|r| ItemCancellation {
                    reason: Reason::parse(r.code()),
                    message: r.message,
                    item: r.item,
                })
                .collect(),
        )
    }

    /// Whether the condition of the transaction's item `index` did not hold.
    pub(super) fn condition_failed(&self, index: usize) -> bool {
        self.0
            .get(index)
            .is_some_and(|c| c.reason == Reason::ConditionalCheckFailed)
    }

    /// The positions of the items whose condition did not hold.
    pub(super) fn failed_conditions(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.0.len()).filter(|&i| self.condition_failed(i))
    }

    /// Whether some item was cancelled for `reason`.
    pub(super) fn any(&self, reason: &Reason) -> bool {
        self.0.iter().any(|c| c.reason == *reason)
    }

    /// Conflicts and no failed condition: the same transaction may succeed when tried again.
    fn only_conflicts(&self) -> bool {
        self.any(&Reason::TransactionConflict) && self.failed_conditions().next().is_none()
    }

    /// The item that stood under item `index`'s key when its condition failed, when DynamoDB
    /// returned it (`ReturnValuesOnConditionCheckFailure`, asked for by [`DynamoStore::put`]).
    pub(super) fn old_item<T: DeserializeOwned>(&self, index: usize) -> StoreResult<Option<T>> {
        self.0
            .get(index)
            .and_then(|c| c.item.clone())
            .map(from_item)
            .transpose()
    }

    /// The error for a cancellation the caller has no domain meaning for: busy storage
    /// (conflicts that outlasted the retries, throttling) is worth a retry by the client;
    /// anything else is a bug on this side.
    pub(super) fn into_error(self, what: &str) -> StoreError {
        if self.0.iter().any(|c| c.reason.is_busy()) {
            self.unavailable(what)
        } else {
            StoreError::Internal(format!("{what} cancelled: {self:?}"))
        }
    }

    /// The error for a cancellation that only busy storage can explain at this point.
    pub(super) fn unavailable(self, what: &str) -> StoreError {
        StoreError::Unavailable(format!("{what} cancelled: {self:?}"))
    }
}

/// Lists the reasons and DynamoDB's messages, not the returned items: these may hold
/// secrets (a password hash, a job's token secret), and the text goes to the logs.
impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|c| (&c.reason, &c.message)))
            .finish()
    }
}

/// Exponential backoff with full jitter: 0..(10 ms × 2^attempt), capped at 320 ms.
pub fn conflict_backoff(attempt: u32) -> Duration {
    let ceiling = 10u64 << attempt.min(5);
    Duration::from_millis(u64::from(getrandom::u32().unwrap_or(0)) % ceiling.max(1))
}

pub(super) fn num(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub(super) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

pub(super) fn to_item<T: Serialize>(value: &T) -> StoreResult<Item> {
    serde_dynamo::to_item(value).map_err(internal)
}

pub(super) fn from_item<T: DeserializeOwned>(item: Item) -> StoreResult<T> {
    serde_dynamo::from_item(item).map_err(internal)
}

/// Error codes DynamoDB uses for "slow down": the SDK has already retried them.
const THROTTLING: [&str; 4] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
];

fn service_error(e: &impl ProvideErrorMetadata) -> StoreError {
    let code = e.code().unwrap_or("Unknown");
    if THROTTLING.contains(&code) {
        StoreError::Unavailable(code.to_owned())
    } else {
        StoreError::Internal(format!("{code}: {}", e.message().unwrap_or_default()))
    }
}

/// Maps a failed request to the port's error: a failed condition of a single-item write is
/// [`StoreError::ConditionFailed`], throttling and unreachable storage are
/// [`StoreError::Unavailable`], anything else is [`StoreError::Internal`].
fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.into_err();
            if err.code() == Some("ConditionalCheckFailedException") {
                StoreError::ConditionFailed
            } else {
                service_error(&err)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable(
            format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)),
        ),
        other => StoreError::Internal(format!(
            "{}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for attempt in 0..10 {
            let ceiling = Duration::from_millis(10 << attempt.min(5));
            assert!(conflict_backoff(attempt) < ceiling);
        }
    }

    fn reasons(codes: &[Option<&str>]) -> Cancellation {
        Cancellation::from_sdk(
            codes
                .iter()
                .map(|code| {
                    CancellationReason::builder()
                        .set_code(code.map(str::to_owned))
                        .build()
                })
                .collect(),
        )
    }

    #[test]
    fn every_named_reason_reads_back_from_its_code() {
        for reason in Reason::NAMED {
            assert_eq!(Reason::parse(Some(reason.code())), reason);
        }
        assert_eq!(
            Reason::parse(Some("ValidationError")),
            Reason::Other("ValidationError".into())
        );
        assert_eq!(Reason::parse(None), Reason::None);
    }

    #[test]
    fn a_cancellation_tells_which_item_failed_and_why() {
        let c = reasons(&[
            Some(Reason::None.code()),
            Some(Reason::ConditionalCheckFailed.code()),
            Some(Reason::TransactionConflict.code()),
            Some(Reason::ThrottlingError.code()),
            None,
        ]);
        assert!(!c.condition_failed(0));
        assert!(c.condition_failed(1));
        assert!(!c.condition_failed(9), "no item there");
        assert_eq!(c.failed_conditions().collect::<Vec<_>>(), vec![1]);
        assert!(c.any(&Reason::TransactionConflict) && c.any(&Reason::ThrottlingError));
        assert!(!c.only_conflicts(), "a failed condition is never retried");
        assert!(matches!(c.into_error("test"), StoreError::Unavailable(_)));
    }

    #[test]
    fn only_conflicts_are_retried() {
        let conflict = Some(Reason::TransactionConflict.code());
        assert!(reasons(&[None, conflict]).only_conflicts());
        assert!(!reasons(&[None, Some(Reason::ThrottlingError.code())]).only_conflicts());
    }

    #[test]
    fn a_validation_error_is_a_bug_on_this_side() {
        let c = reasons(&[Some("ValidationError")]);
        assert!(!c.only_conflicts());
        assert!(matches!(c.into_error("test"), StoreError::Internal(_)));
    }
}
