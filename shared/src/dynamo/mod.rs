//! The DynamoDB adapter: every port of [`crate::ports`] over one table, through the AWS SDK.
//! It runs unchanged against DynamoDB, the embedded engine of the dev server and tests, and
//! moto. Only this module and its children know attribute names and SDK types.

pub mod items;
mod jobs;
pub mod keys;
pub mod table;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use self::items::{
    BallotItem, CounterItem, EmailItem, PollItem, RefreshItem, UserItem, deadline_ms, unix_ms,
    zero_votes,
};
use self::keys::{COUNTER_SHARDS, GSI1, GSI1_PK, GSI1_SK, Key, PK, SK, owner_index};
use crate::domain::{Ballot, Email, FamilyId, Poll, PollId, PollStatus, Tally, User, UserId};
use crate::ports::{
    BallotStore, CastOutcome, Credentials, Page, PollCursor, PollStore, RefreshRecord,
    SessionStore, StoreError, StoreResult, UserStore,
};

/// How often a ballot's transaction is retried when DynamoDB cancels it for a conflict with
/// another transaction on the same counter shard. Each retry picks another shard.
const CONFLICT_RETRIES: u32 = 6;

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

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    async fn get<T: DeserializeOwned>(&self, key: &Key) -> StoreResult<Option<T>> {
        self.count();
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key.item_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.item.map(from_item).transpose()
    }

    /// Reads several items by key in one `BatchGetItem` (strongly consistent).
    pub(super) async fn batch_get(
        &self,
        keys: &[Key],
    ) -> StoreResult<Vec<HashMap<String, AttributeValue>>> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys.iter().map(Key::item_key).collect()))
            .consistent_read(true)
            .build()
            .map_err(internal)?;
        self.count();
        let out = self
            .client
            .batch_get_item()
            .request_items(&*self.table, request)
            .send()
            .await
            .map_err(sdk_error)?;
        if out.unprocessed_keys.as_ref().is_some_and(|u| !u.is_empty()) {
            // A few small items are far below BatchGetItem's limits, so DynamoDB answers
            // them in one go; leftovers come only from throttling, which callers may retry.
            return Err(StoreError::Unavailable("batch read was throttled".into()));
        }
        Ok(out
            .responses
            .unwrap_or_default()
            .remove(&*self.table)
            .unwrap_or_default())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), Transact> {
        self.count();
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(c) => Err(
                    Transact::Cancelled(c.cancellation_reasons.unwrap_or_default()),
                ),
                other => Err(Transact::Failed(service_error(&other))),
            },
            Err(other) => Err(Transact::Failed(sdk_error(other))),
        }
    }

    fn put(
        &self,
        item: HashMap<String, AttributeValue>,
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

    /// Sets the write-time guards of every counter shard to match `poll`, resetting the counts
    /// (under the condition that none was cast) when the options were replaced.
    fn counter_guard_updates(
        &self,
        poll: &Poll,
        options_changed: bool,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let mut values = HashMap::from([
            (
                ":open".to_owned(),
                AttributeValue::Bool(poll.status == PollStatus::Open),
            ),
            (":deadline".to_owned(), num(deadline_ms(poll))),
            (":rev".to_owned(), num(poll.options_rev)),
        ]);
        let mut expression =
            "SET #open = :open, deadline_ms = :deadline, options_rev = :rev".to_owned();
        let mut condition = "attribute_exists(PK)".to_owned();
        if options_changed {
            values.insert(":zeroes".into(), to_attr(&zero_votes(poll))?);
            values.insert(":zero".into(), num(0));
            expression.push_str(", votes = :zeroes");
            condition.push_str(" AND ballots = :zero");
        }
        (0..COUNTER_SHARDS)
            .map(|shard| {
                let update = Update::builder()
                    .table_name(&*self.table)
                    .set_key(Some(Key::Counter(poll.id, shard).item_key()))
                    .update_expression(&expression)
                    .condition_expression(&condition)
                    .expression_attribute_names("#open", "open")
                    .set_expression_attribute_values(Some(values.clone()))
                    .build()
                    .map_err(internal)?;
                Ok(TransactWriteItem::builder().update(update).build())
            })
            .collect()
    }

    /// The conditional replacement of a poll item: same version and owner as `previous`.
    fn poll_put_if_unchanged(
        &self,
        previous: &Poll,
        next: &Poll,
    ) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(to_item(&PollItem::new(next))?))
            .condition_expression("version = :version AND owner_id = :owner")
            .expression_attribute_values(":version", num(previous.version))
            .expression_attribute_values(":owner", AttributeValue::S(previous.owner_id.to_string()))
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// Outcome of a failed transaction: cancelled with per-item reasons, or failed outright.
enum Transact {
    Cancelled(Vec<CancellationReason>),
    Failed(StoreError),
}

impl DynamoStore {
    /// Runs a transaction, trying it again (with backoff) while DynamoDB cancels it only
    /// because another transaction held one of its items. The owner's writes that touch every
    /// counter shard need this: on a poll taking votes, some ballot is almost always in flight
    /// on one of the shards. A cancellation for any other reason (a failed condition) is
    /// returned at once; conflicts that outlast the retries are too, for the caller to map.
    async fn transact_through_conflicts(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), Transact> {
        let mut attempt = 0;
        loop {
            match self.transact(items.clone()).await {
                Err(Transact::Cancelled(reasons))
                    if attempt < CONFLICT_RETRIES
                        && any_conflict(&reasons)
                        && !reasons
                            .iter()
                            .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    attempt += 1;
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// A transaction cancelled for a reason other than a failed condition: busy storage
/// (conflicts that outlasted the retries, throttling) is worth a retry by the client; anything
/// else (a validation error) is a bug on this side.
fn cancelled(what: &str, reasons: &[CancellationReason]) -> StoreError {
    let busy = reasons.iter().any(|r| {
        matches!(
            r.code(),
            Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
        )
    });
    if busy {
        StoreError::Unavailable(format!("{what} cancelled: {reasons:?}"))
    } else {
        StoreError::Internal(format!("{what} cancelled: {reasons:?}"))
    }
}

fn reason_code(reasons: &[CancellationReason], index: usize) -> &str {
    reasons.get(index).and_then(|r| r.code()).unwrap_or("None")
}

fn any_conflict(reasons: &[CancellationReason]) -> bool {
    reasons
        .iter()
        .any(|r| r.code() == Some("TransactionConflict"))
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn create_user(&self, user: &User, password_hash: &str) -> StoreResult<()> {
        let email_key = Key::Email(user.email.as_str().to_owned());
        let marker = EmailItem {
            pk: email_key.pk(),
            sk: email_key.sk().into(),
            user_id: user.id,
            password_hash: password_hash.to_owned(),
        };
        let items = vec![
            self.put(to_item(&marker)?, Some("attribute_not_exists(PK)"))?,
            self.put(
                to_item(&UserItem::new(user))?,
                Some("attribute_not_exists(PK)"),
            )?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(Transact::Cancelled(r)) if reason_code(&r, 0) == "ConditionalCheckFailed" => {
                Err(StoreError::EmailTaken)
            }
            Err(Transact::Cancelled(r)) if any_conflict(&r) => Err(StoreError::Unavailable(
                "registration conflicted with a concurrent one".into(),
            )),
            Err(Transact::Cancelled(r)) => {
                Err(StoreError::Internal(format!("register cancelled: {r:?}")))
            }
            Err(Transact::Failed(e)) => Err(e),
        }
    }

    async fn credentials(&self, email: &Email) -> StoreResult<Option<Credentials>> {
        let item: Option<EmailItem> = self.get(&Key::Email(email.as_str().to_owned())).await?;
        Ok(item.map(|i| Credentials {
            user_id: i.user_id,
            password_hash: i.password_hash,
        }))
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let item: Option<UserItem> = self.get(&Key::User(id)).await?;
        item.map(|i| {
            Ok(User {
                id: i.id,
                email: Email::parse(&i.email).map_err(|e| StoreError::Internal(e.into()))?,
                created_at: i.created_at,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn put_refresh(&self, record: &RefreshRecord) -> StoreResult<()> {
        self.count();
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(to_item(&RefreshItem::new(record))?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        let item: Option<RefreshItem> = self.get(&Key::Refresh(token_hash.to_owned())).await?;
        Ok(item.map(|i| i.into_record(token_hash.to_owned())))
    }

    async fn rotate(&self, old_hash: &str, new: &RefreshRecord) -> StoreResult<()> {
        let spend = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::Refresh(old_hash.to_owned()).item_key()))
            .update_expression("SET used = :true")
            .condition_expression("used = :false")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .build()
            .map_err(internal)?;
        let family_alive = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::Family(new.family).item_key()))
            .condition_expression("attribute_not_exists(revoked)")
            .build()
            .map_err(internal)?;
        let items = vec![
            TransactWriteItem::builder().update(spend).build(),
            TransactWriteItem::builder()
                .condition_check(family_alive)
                .build(),
            self.put(
                to_item(&RefreshItem::new(new))?,
                Some("attribute_not_exists(PK)"),
            )?,
        ];
        // Any cancellation means the token was spent (by a concurrent rotation too) or its
        // family revoked: either way this rotation must not happen.
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(Transact::Cancelled(_)) => Err(StoreError::ConditionFailed),
            Err(Transact::Failed(e)) => Err(e),
        }
    }

    async fn revoke_family(&self, family: FamilyId, keep_until: OffsetDateTime) -> StoreResult<()> {
        self.count();
        // Swept by TTL after `keep_until`, when no token of the family can be alive.
        let keep_until = keep_until.unix_timestamp();
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::Family(family).item_key()))
            .update_expression("SET revoked = :true, #ttl = :ttl")
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":ttl", num(keep_until))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl PollStore for DynamoStore {
    async fn create_poll(&self, poll: &Poll) -> StoreResult<()> {
        let mut items = vec![self.put(
            to_item(&PollItem::new(poll))?,
            Some("attribute_not_exists(PK)"),
        )?];
        for shard in 0..COUNTER_SHARDS {
            items.push(self.put(to_item(&CounterItem::new(poll, shard))?, None)?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(()),
            Err(Transact::Cancelled(r)) => Err(StoreError::Internal(format!(
                "create poll cancelled: {r:?}"
            ))),
            Err(Transact::Failed(e)) => Err(e),
        }
    }

    async fn poll(&self, id: PollId) -> StoreResult<Option<Poll>> {
        let item: Option<PollItem> = self.get(&Key::Poll(id)).await?;
        Ok(item.map(PollItem::into_poll))
    }

    async fn polls_by_owner(
        &self,
        owner: UserId,
        limit: u16,
        after: Option<&PollCursor>,
    ) -> StoreResult<Page<Poll>> {
        let (owner_pk, _) = owner_index(owner, 0, PollId::new());
        let start = after.map(|c| {
            let (gsi_pk, gsi_sk) = owner_index(owner, c.created_ms, c.id);
            let key = Key::Poll(c.id);
            HashMap::from([
                (GSI1_PK.to_owned(), AttributeValue::S(gsi_pk)),
                (GSI1_SK.to_owned(), AttributeValue::S(gsi_sk)),
                (PK.to_owned(), AttributeValue::S(key.pk())),
                (SK.to_owned(), AttributeValue::S(key.sk().into())),
            ])
        });
        self.count();
        // One more than asked: whether it arrives tells if there is a next page, so the last
        // page says so without an extra empty round trip.
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner_pk))
            .scan_index_forward(false)
            .limit(i32::from(limit) + 1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut polls = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| from_item::<PollItem>(i).map(PollItem::into_poll))
            .collect::<StoreResult<Vec<_>>>()?;
        let next = if polls.len() > usize::from(limit) {
            polls.truncate(usize::from(limit));
            polls.last().map(|p| PollCursor {
                created_ms: unix_ms(p.created_at),
                id: p.id,
            })
        } else {
            None
        };
        Ok(Page { items: polls, next })
    }

    async fn update_poll(
        &self,
        previous: &Poll,
        next: &Poll,
        options_changed: bool,
    ) -> StoreResult<()> {
        let guards_changed = options_changed
            || previous.status != next.status
            || previous.closes_at != next.closes_at;
        let mut items = vec![self.poll_put_if_unchanged(previous, next)?];
        if guards_changed {
            items.extend(self.counter_guard_updates(next, options_changed)?);
        }
        match self.transact_through_conflicts(items).await {
            Ok(()) => Ok(()),
            Err(Transact::Cancelled(r)) if reason_code(&r, 0) == "ConditionalCheckFailed" => {
                Err(StoreError::ConditionFailed)
            }
            Err(Transact::Cancelled(r))
                if options_changed
                    && r.iter()
                        .skip(1)
                        .any(|x| x.code() == Some("ConditionalCheckFailed")) =>
            {
                Err(StoreError::HasBallots)
            }
            Err(Transact::Cancelled(r)) => Err(cancelled("poll update", &r)),
            Err(Transact::Failed(e)) => Err(e),
        }
    }

    async fn delete_poll(&self, previous: &Poll) -> StoreResult<()> {
        let poll = Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::Poll(previous.id).item_key()))
            .condition_expression("version = :version AND owner_id = :owner")
            .expression_attribute_values(":version", num(previous.version))
            .expression_attribute_values(":owner", AttributeValue::S(previous.owner_id.to_string()))
            .build()
            .map_err(internal)?;
        let mut items = vec![TransactWriteItem::builder().delete(poll).build()];
        for shard in 0..COUNTER_SHARDS {
            let counter = Delete::builder()
                .table_name(&*self.table)
                .set_key(Some(Key::Counter(previous.id, shard).item_key()))
                .build()
                .map_err(internal)?;
            items.push(TransactWriteItem::builder().delete(counter).build());
        }
        // Ballots stay behind: they are keyed by (poll, voter) and unreachable once the poll
        // is gone, and deleting thousands here would break the fixed call budget.
        match self.transact_through_conflicts(items).await {
            Ok(()) => Ok(()),
            Err(Transact::Cancelled(r)) if reason_code(&r, 0) == "ConditionalCheckFailed" => {
                Err(StoreError::ConditionFailed)
            }
            Err(Transact::Cancelled(r)) => Err(cancelled("poll deletion", &r)),
            Err(Transact::Failed(e)) => Err(e),
        }
    }
}

#[async_trait]
impl BallotStore for DynamoStore {
    async fn cast(
        &self,
        poll: &Poll,
        ballot: &Ballot,
        now: OffsetDateTime,
    ) -> StoreResult<CastOutcome> {
        let record = self.put(
            to_item(&BallotItem::new(ballot))?,
            Some("attribute_not_exists(PK)"),
        )?;
        let mut names = HashMap::from([("#open".to_owned(), "open".to_owned())]);
        let values = HashMap::from([
            (":one".to_owned(), num(1)),
            (":true".to_owned(), AttributeValue::Bool(true)),
            (":now".to_owned(), num(unix_ms(now))),
            (":rev".to_owned(), num(poll.options_rev)),
        ]);
        let mut expression = "SET ballots = ballots + :one".to_owned();
        for (i, choice) in ballot.choices.iter().enumerate() {
            names.insert(format!("#c{i}"), choice.to_string());
            expression.push_str(&format!(", votes.#c{i} = votes.#c{i} + :one"));
        }
        let guard =
            "attribute_exists(PK) AND #open = :true AND options_rev = :rev AND deadline_ms > :now";

        let mut shard = random_shard();
        let mut attempt = 0;
        loop {
            let count = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(Key::Counter(poll.id, shard).item_key()))
                .update_expression(&expression)
                .condition_expression(guard)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(internal)?;
            let items = vec![
                record.clone(),
                TransactWriteItem::builder().update(count).build(),
            ];
            let reasons = match self.transact(items).await {
                Ok(()) => return Ok(CastOutcome::Recorded),
                Err(Transact::Failed(e)) => return Err(e),
                Err(Transact::Cancelled(reasons)) => reasons,
            };
            if reason_code(&reasons, 0) == "ConditionalCheckFailed" {
                return self
                    .existing_ballot(&reasons[0], ballot)
                    .await
                    .map(CastOutcome::AlreadyVoted);
            }
            if reason_code(&reasons, 1) == "ConditionalCheckFailed" {
                let counter = reasons[1]
                    .item()
                    .cloned()
                    .map(from_item::<CounterItem>)
                    .transpose()?;
                return Ok(match counter {
                    Some(c) if !c.open || c.deadline_ms <= unix_ms(now) => CastOutcome::PollClosed,
                    _ => CastOutcome::PollChanged,
                });
            }
            if !any_conflict(&reasons) || attempt >= CONFLICT_RETRIES {
                return Err(StoreError::Unavailable(format!(
                    "ballot transaction cancelled: {reasons:?}"
                )));
            }
            attempt += 1;
            shard = random_shard();
            tokio::time::sleep(conflict_backoff(attempt)).await;
        }
    }

    async fn poll_with_tally(&self, id: PollId) -> StoreResult<Option<(Poll, Tally)>> {
        let mut keys = vec![Key::Poll(id)];
        keys.extend((0..COUNTER_SHARDS).map(|n| Key::Counter(id, n)));
        let items = self.batch_get(&keys).await?;
        let mut poll = None;
        let mut tally = Tally::default();
        for item in items {
            match item.get(SK) {
                Some(AttributeValue::S(sk)) if sk == "POLL" => {
                    poll = Some(from_item::<PollItem>(item)?.into_poll());
                }
                _ => {
                    let counter: CounterItem = from_item(item)?;
                    tally.ballots += counter.ballots;
                    for (option, votes) in counter.votes {
                        if let Ok(id) = option.parse() {
                            *tally.per_option.entry(id).or_insert(0) += votes;
                        }
                    }
                }
            }
        }
        Ok(poll.map(|p| (p, tally)))
    }
}

impl DynamoStore {
    /// The ballot that beat ours, from the cancellation reason when the store returned it
    /// (DynamoDB does, with `ReturnValuesOnConditionCheckFailure`), else read back.
    async fn existing_ballot(
        &self,
        reason: &CancellationReason,
        ours: &Ballot,
    ) -> StoreResult<Ballot> {
        let item: Option<BallotItem> = match reason.item() {
            Some(item) => Some(from_item(item.clone())?),
            None => self.get(&Key::ballot(ours.poll_id, &ours.voter)).await?,
        };
        item.map(|i| i.into_ballot(ours.voter.clone()))
            .ok_or_else(|| StoreError::Internal("ballot vanished after a conflict".into()))
    }
}

/// Exponential backoff with full jitter: 0..(10 ms × 2^attempt), capped at 320 ms.
pub fn conflict_backoff(attempt: u32) -> Duration {
    let ceiling = 10u64 << attempt.min(5);
    Duration::from_millis(u64::from(getrandom::u32().unwrap_or(0)) % ceiling.max(1))
}

fn random_shard() -> u8 {
    u8::try_from(getrandom::u32().unwrap_or(0) % u32::from(COUNTER_SHARDS)).unwrap_or(0)
}

fn num(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn to_item<T: Serialize>(value: &T) -> StoreResult<HashMap<String, AttributeValue>> {
    serde_dynamo::to_item(value).map_err(internal)
}

fn to_attr<T: Serialize>(value: &T) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(value).map_err(internal)
}

fn from_item<T: DeserializeOwned>(item: HashMap<String, AttributeValue>) -> StoreResult<T> {
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
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use aws_credential_types::Credentials;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region, retry::RetryConfig};
    use aws_smithy_http_client::test_util::infallible_client_fn;

    use super::*;
    use crate::domain::{JobId, NewPoll, OptionId, Voter};

    /// A store whose HTTP client answers from a script, recording each request body. The local
    /// engine serialises requests and never reports `TransactionConflict`; DynamoDB does, so
    /// the adapter's handling of it is checked against DynamoDB's wire format here.
    fn scripted(responses: Vec<(u16, String)>) -> (DynamoStore, Arc<Mutex<Vec<String>>>) {
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

    fn cancelled(reasons: &str) -> (u16, String) {
        (
            400,
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":{reasons}}}"#
            ),
        )
    }

    fn conflict() -> (u16, String) {
        cancelled(
            r#"[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]"#,
        )
    }

    fn ballot_for(poll: &Poll) -> Ballot {
        Ballot {
            poll_id: poll.id,
            voter: Voter::User(UserId::new()),
            choices: vec![OptionId::for_index(0)],
            voted_at: OffsetDateTime::now_utc(),
            idempotency_key: None,
        }
    }

    fn sample_poll() -> Poll {
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

    #[tokio::test(start_paused = true)]
    async fn a_conflicting_ballot_is_retried_and_recorded_once() {
        let (store, seen) = scripted(vec![conflict(), conflict(), (200, "{}".into())]);
        let poll = sample_poll();
        let outcome = store
            .cast(&poll, &ballot_for(&poll), OffsetDateTime::now_utc())
            .await;
        assert!(matches!(outcome, Ok(CastOutcome::Recorded)), "{outcome:?}");
        let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(requests.len(), 3);
        assert!(
            requests
                .iter()
                .all(|r| r.contains("attribute_not_exists(PK)"))
        );
        assert_eq!(store.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn endless_conflicts_give_up_as_unavailable() {
        let (store, seen) = scripted((0..10).map(|_| conflict()).collect());
        let poll = sample_poll();
        let outcome = store
            .cast(&poll, &ballot_for(&poll), OffsetDateTime::now_utc())
            .await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
        let sent = seen.lock().map(|s| s.len()).unwrap_or_default();
        assert_eq!(sent, 1 + CONFLICT_RETRIES as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn the_existing_ballot_comes_back_with_the_cancellation() {
        let poll = sample_poll();
        let first = ballot_for(&poll);
        let item = format!(
            r#"{{"PK":{{"S":"{pk}"}},"SK":{{"S":"BALLOT"}},"poll_id":{{"S":"{poll}"}},"voter":{{"S":"{voter}"}},"choices":{{"L":[{{"S":"o2"}}]}},"voted_at":{{"S":"2026-01-01T00:00:00Z"}},"idempotency_key":{{"S":"k1"}}}}"#,
            pk = Key::ballot(poll.id, &first.voter).pk(),
            poll = poll.id,
            voter = first.voter,
        );
        let (store, _) = scripted(vec![cancelled(&format!(
            r#"[{{"Code":"ConditionalCheckFailed","Item":{item}}},{{"Code":"None"}}]"#
        ))]);
        match store.cast(&poll, &first, OffsetDateTime::now_utc()).await {
            Ok(CastOutcome::AlreadyVoted(existing)) => {
                assert_eq!(existing.choices, vec![OptionId::for_index(1)]);
                assert_eq!(existing.idempotency_key.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.calls(), 1, "no read after the cancellation");
    }

    /// Closing a poll touches every counter shard, so on a poll taking votes it meets a
    /// ballot's transaction now and then: it is tried again rather than reported as a stale
    /// ETag (which re-reading could never fix).
    #[tokio::test(start_paused = true)]
    async fn closing_a_busy_poll_gets_through_conflicts() {
        let (store, seen) = scripted(vec![conflict(), conflict(), (200, "{}".into())]);
        let poll = sample_poll();
        let mut closed = poll.clone();
        closed.status = PollStatus::Closed;
        closed.version += 1;
        let outcome = store.update_poll(&poll, &closed, false).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(seen.lock().map(|s| s.len()).unwrap_or_default(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn endless_conflicts_on_a_deletion_give_up_as_unavailable() {
        let (store, seen) = scripted((0..10).map(|_| conflict()).collect());
        let outcome = store.delete_poll(&sample_poll()).await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
        let sent = seen.lock().map(|s| s.len()).unwrap_or_default();
        assert_eq!(sent, 1 + CONFLICT_RETRIES as usize);
    }

    /// Render instances counting chunks of the same job meet on the job item.
    #[tokio::test(start_paused = true)]
    async fn counting_a_chunk_gets_through_conflicts() {
        let (store, seen) = scripted(vec![conflict(), conflict(), (200, "{}".into())]);
        let counted = crate::ports::JobStore::record_chunk(&store, JobId::new(), 3, 100, 0).await;
        assert!(matches!(counted, Ok(true)), "{counted:?}");
        assert_eq!(seen.lock().map(|s| s.len()).unwrap_or_default(), 3);
    }

    /// Throttling is busy storage (503, retry), not a bug on this side (500).
    #[tokio::test(start_paused = true)]
    async fn a_throttled_deletion_is_unavailable() {
        let (store, _) = scripted(vec![cancelled(
            r#"[{"Code":"None"},{"Code":"ThrottlingError"}]"#,
        )]);
        let outcome = store.delete_poll(&sample_poll()).await;
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    /// A stale version is a failed condition whatever else conflicted: no retry can fix it.
    #[tokio::test(start_paused = true)]
    async fn a_stale_version_is_not_retried() {
        let (store, seen) = scripted(vec![cancelled(
            r#"[{"Code":"ConditionalCheckFailed"},{"Code":"TransactionConflict"}]"#,
        )]);
        let outcome = store.delete_poll(&sample_poll()).await;
        assert!(
            matches!(outcome, Err(StoreError::ConditionFailed)),
            "{outcome:?}"
        );
        assert_eq!(seen.lock().map(|s| s.len()).unwrap_or_default(), 1);
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for attempt in 0..10 {
            let ceiling = Duration::from_millis(10 << attempt.min(5));
            assert!(conflict_backoff(attempt) < ceiling);
        }
    }

    #[test]
    fn shards_stay_in_range() {
        assert!((0..1000).all(|_| random_shard() < COUNTER_SHARDS));
    }
}
