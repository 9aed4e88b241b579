//! DynamoDB Streams → Lambda, played locally: [`StreamPoller`] reads the table's stream over
//! the DynamoDB Streams protocol (`ListStreams`, `DescribeStream`, `GetShardIterator`,
//! `GetRecords`), from the embedded engine or from an emulator (moto in the cross-check), and
//! hands the count function's handler the `TimeWindowEvent`s that Lambda's event source mapping
//! would, with the same semantics:
//!
//! - **filter criteria**: the template's JSON pattern ([`BALLOT_FILTER`]) is matched against each
//!   record as Lambda sees it; a record that does not match is dropped and never delivered;
//! - **batching**: up to `batch_size` records, waiting at most `batching_window` for a batch to
//!   fill once its first record is in;
//! - **order**: one reader per shard, one batch in flight per shard (`ParallelizationFactor` 1);
//! - **tumbling window**: every event carries `shardId`, `window`, the `state` the last invoke of
//!   that window returned, and, once the window has passed, a final invoke with
//!   `isFinalInvokeForWindow` and no records;
//! - **retries**: a batch whose invoke fails is delivered again, whole, after a backoff; a
//!   response naming `batchItemFailures` makes the poller resume from the lowest failed sequence
//!   number (the records before it count as processed); an identifier that names no record of
//!   the batch fails the whole batch, as on Lambda;
//! - **at-least-once**: the position advances only after an invoke succeeded, so a crash
//!   redelivers the batch in flight (the count function dedupes by sequence number).
//!
//! On disk (the dev server) the position of each shard is a file under `<data>/streams/`,
//! written, synced and renamed into place after each successful delivery, so a process killed
//! with `kill -9` resumes where it stood, redelivering at most the batch that was in flight.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{TimeWindowEvent, TimeWindowEventResponse};
use aws_sdk_dynamodbstreams::config::timeout::TimeoutConfig;
use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Region, StalledStreamProtectionConfig};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::LOCAL_REGION;

/// The event filter of the count function's event source mapping: new ballot items only. The
/// template's `FilterCriteria` must carry the same pattern, so that the local poller drops
/// exactly what Lambda would.
pub const BALLOT_FILTER: &str =
    r#"{"eventName":["INSERT"],"dynamodb":{"Keys":{"PK":{"S":[{"prefix":"BALLOT#"}]}}}}"#;

/// What the poller invokes with each batch: the count function's handler on AWS's terms. An
/// `Err` is a failed invocation (the function threw or timed out): the whole batch comes back.
#[async_trait]
pub trait StreamTarget: Send + Sync + 'static {
    async fn invoke(&self, event: TimeWindowEvent) -> Result<TimeWindowEventResponse, String>;
}

/// A target made of an async closure, for tests and for wiring a handler without a new type.
pub struct FnTarget<F>(pub F);

impl<F> std::fmt::Debug for FnTarget<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnTarget")
    }
}

#[async_trait]
impl<F, Fut> StreamTarget for FnTarget<F>
where
    F: Fn(TimeWindowEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TimeWindowEventResponse, String>> + Send,
{
    async fn invoke(&self, event: TimeWindowEvent) -> Result<TimeWindowEventResponse, String> {
        (self.0)(event).await
    }
}

/// How the event source mapping behaves. [`StreamOptions::local`] is tuned for the dev server's
/// lag (a ballot counted within a few tens of milliseconds); AWS polls each shard about four
/// times a second and waits the configured batching window on top.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Records per invoke at most (`BatchSize`).
    pub batch_size: usize,
    /// How long a batch may wait to fill once it has a record (`MaximumBatchingWindowInSeconds`).
    pub batching_window: Duration,
    /// The pause after a round in which no shard had anything new (an idle stream); a busy
    /// stream is read again after [`BUSY_PAUSE`].
    pub poll_interval: Duration,
    /// The tumbling window's length (`TumblingWindowInSeconds`).
    pub tumbling_window: Duration,
    /// The first pause before a failed batch is delivered again; it doubles up to 5 s.
    pub retry_backoff: Duration,
    /// Retries of one batch before it is given up to the on-failure destination
    /// (`MaximumRetryAttempts`); `None` retries until it succeeds, as Lambda does by default
    /// until the records expire.
    pub max_retries: Option<u32>,
    /// The filter pattern (`FilterCriteria`), or `None` to deliver every record.
    pub filter: Option<String>,
    /// Where positions are kept across restarts (`<data>/streams`), or `None` (in memory).
    pub positions: Option<PathBuf>,
}

impl StreamOptions {
    /// The dev server's settings: the ballot filter, batches of up to 1,000 as in the template,
    /// a 10 ms batching window and a 20 ms idle poll, so that the 201 → counted lag stays far
    /// below the 250 ms target while an idle server costs 50 cheap engine reads a second
    /// (about 7 % of a core in a debug build at a 10 ms poll, measured, hence not less).
    pub fn local() -> Self {
        Self {
            batch_size: 1000,
            batching_window: Duration::from_millis(10),
            poll_interval: Duration::from_millis(20),
            tumbling_window: Duration::from_secs(60),
            retry_backoff: Duration::from_millis(50),
            max_retries: None,
            filter: Some(BALLOT_FILTER.to_owned()),
            positions: None,
        }
    }
}

/// A DynamoDB Streams SDK client for a local endpoint (embedded engine or emulator).
pub fn local_streams_client(endpoint: &str) -> aws_sdk_dynamodbstreams::Client {
    // The same reasoning as the DynamoDB client's: a local engine under a thousand racing
    // clients may take seconds to accept or to answer, which is no failure of the stream.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(30))
        .build();
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .timeout_config(timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(crate::local_credentials())
        .build();
    aws_sdk_dynamodbstreams::Client::from_conf(config)
}

/// What the poller has done so far, for tests and the bench (which wait on it instead of
/// sleeping) and for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Poll rounds in which every shard was read and had nothing left to deliver.
    pub idle_rounds: u64,
    /// Records handed to the target and acknowledged (a redelivered record counts again).
    pub delivered: u64,
    /// Records dropped by the filter.
    pub filtered: u64,
    /// Invokes that failed (an error, or a batch item failure).
    pub failed_invokes: u64,
    /// Batches given up after `max_retries` (the on-failure destination's messages).
    pub abandoned: Vec<String>,
}

/// Reads one table's stream and invokes the target until dropped.
#[derive(Debug)]
pub struct StreamPoller {
    task: JoinHandle<()>,
    progress: watch::Receiver<StreamProgress>,
}

impl Drop for StreamPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamPoller {
    /// Finds the table's latest stream and starts reading it from the saved positions (or from
    /// the oldest record, `TRIM_HORIZON`, where none is saved).
    pub async fn start(
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
        target: Arc<dyn StreamTarget>,
        options: StreamOptions,
    ) -> Result<Self, String> {
        let filter = match &options.filter {
            Some(raw) => Some(
                serde_json::from_str::<Value>(raw)
                    .map_err(|e| format!("the stream filter is not JSON: {e}"))?,
            ),
            None => None,
        };
        let arn = latest_stream_arn(&client, table).await?;
        let positions = match &options.positions {
            Some(dir) => Some(Positions::open(dir)?),
            None => None,
        };
        let (progress_tx, progress) = watch::channel(StreamProgress::default());
        let mut reader = Reader {
            client,
            arn,
            target,
            options,
            filter,
            positions,
            shards: Vec::new(),
            progress: progress_tx,
            last_describe: None,
        };
        reader.describe().await?;
        let task = tokio::spawn(async move { reader.run().await });
        Ok(Self { task, progress })
    }

    /// A snapshot of what the poller has done.
    pub fn progress(&self) -> StreamProgress {
        self.progress.borrow().clone()
    }

    /// Waits until every record written before this call has been delivered and acknowledged:
    /// two full idle rounds after the call, so the second began after the call and found
    /// nothing left. Fails after `limit` (a stalled shard, a failing target) rather than
    /// passing by luck.
    pub async fn drained(&self, limit: Duration) -> Result<(), String> {
        let mut rx = self.progress.clone();
        let start = rx.borrow().idle_rounds;
        let waited = tokio::time::timeout(limit, async {
            loop {
                if rx.borrow_and_update().idle_rounds >= start + 2 {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err("the stream poller stopped".to_owned());
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the stream was not drained within {limit:?}: {:?}",
                self.progress()
            )),
        }
    }
}

/// The stream of `table`, as `ListStreams` names it (the newest when there are several).
async fn latest_stream_arn(
    client: &aws_sdk_dynamodbstreams::Client,
    table: &str,
) -> Result<String, String> {
    let listed = client
        .list_streams()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            format!(
                "list the streams of {table}: {}",
                aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
            )
        })?;
    listed
        .streams
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.table_name.as_deref().is_none_or(|t| t == table))
        .filter_map(|s| s.stream_arn)
        .max_by(|a, b| stream_label(a).cmp(stream_label(b)))
        .ok_or_else(|| format!("the table {table} has no stream (is StreamSpecification on?)"))
}

fn stream_label(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// One shard being read.
#[derive(Debug)]
struct Shard {
    id: String,
    /// The next `GetRecords` iterator; `None` until opened (or after it became invalid).
    iterator: Option<String>,
    /// The last record examined and acknowledged (delivered or filtered out).
    position: Option<String>,
    /// Records fetched and matched but not yet acknowledged, in order.
    pending: VecDeque<Value>,
    /// When the first pending record was fetched (the batching window runs from it).
    pending_since: Option<Instant>,
    /// The position to record once `pending` is acknowledged (the last fetched record).
    fetched_to: Option<String>,
    /// The shard ended (no next iterator) and everything in it was delivered.
    closed: bool,
    window: Window,
    /// Consecutive failed invokes of the current batch.
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Window {
    start_s: u64,
    state: HashMap<String, String>,
    /// Whether this window had an invoke, and so owes a final one.
    invoked: bool,
}

struct Reader {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    target: Arc<dyn StreamTarget>,
    options: StreamOptions,
    filter: Option<Value>,
    positions: Option<Positions>,
    shards: Vec<Shard>,
    progress: watch::Sender<StreamProgress>,
    last_describe: Option<Instant>,
}

/// The pause between rounds while records are arriving or waiting for their batching window:
/// short, so that a batch leaves as soon as its window closes, but a pause all the same, so that
/// the poller does not take the engine (which runs one request at a time) from the ballots.
pub const BUSY_PAUSE: Duration = Duration::from_millis(2);

/// How often the shard list is read again, to find the children of a split shard.
const DESCRIBE_EVERY: Duration = Duration::from_secs(5);

impl Reader {
    async fn run(&mut self) {
        loop {
            if self
                .last_describe
                .is_none_or(|at| at.elapsed() >= DESCRIBE_EVERY)
                && let Err(e) = self.describe().await
            {
                tracing::warn!(error = %e, "describe the stream failed");
            }
            let mut idle = true;
            for index in 0..self.shards.len() {
                if !self.step(index).await {
                    idle = false;
                }
            }
            if idle {
                self.progress.send_modify(|p| p.idle_rounds += 1);
                tokio::time::sleep(self.options.poll_interval).await;
            } else {
                tokio::time::sleep(BUSY_PAUSE).await;
            }
        }
    }

    /// Adds the shards the stream has and the reader does not know yet.
    async fn describe(&mut self) -> Result<(), String> {
        self.last_describe = Some(Instant::now());
        let mut start: Option<String> = None;
        loop {
            let described = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "describe {}: {}",
                        self.arn,
                        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                    )
                })?;
            let Some(description) = described.stream_description else {
                return Ok(());
            };
            for shard in description.shards.unwrap_or_default() {
                let Some(id) = shard.shard_id else { continue };
                if self.shards.iter().any(|s| s.id == id) {
                    continue;
                }
                let position = match &self.positions {
                    Some(p) => p.load(&id)?,
                    None => None,
                };
                self.shards.push(Shard {
                    id,
                    iterator: None,
                    position,
                    pending: VecDeque::new(),
                    pending_since: None,
                    fetched_to: None,
                    closed: false,
                    window: Window::default(),
                    failures: 0,
                    retry_at: None,
                });
            }
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => return Ok(()),
            }
        }
    }

    /// Reads and delivers what one shard has; answers whether it was idle (nothing new,
    /// nothing pending, nothing to retry).
    async fn step(&mut self, index: usize) -> bool {
        let now = Instant::now();
        let shard = &self.shards[index];
        if shard.closed {
            return true;
        }
        if shard.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let mut fetched_any = false;
        let mut open = true;
        // While a batch waits for its window to close, the shard is not read again until it
        // has: the read at the close gathers everything that arrived meanwhile, as Lambda's
        // poller hands over what its reads gathered once the window has passed. Reading
        // every pause instead cost the engine (one request at a time) hundreds of reads a
        // second under load, each returning a handful of records.
        let gathering = shard
            .pending_since
            .is_some_and(|since| now.duration_since(since) < self.options.batching_window);
        if shard.pending.len() < self.options.batch_size && !gathering {
            match self.fetch(index).await {
                Ok((any, still_open)) => {
                    fetched_any = any;
                    open = still_open;
                }
                Err(e) => {
                    tracing::warn!(shard = %self.shards[index].id, error = %e, "GetRecords failed");
                    self.shards[index].iterator = None;
                    return false;
                }
            }
        }
        self.close_window_if_over(index).await;
        let shard = &self.shards[index];
        if shard.pending.is_empty() {
            // Nothing matched: the filtered records are acknowledged without an invoke.
            let shard = &mut self.shards[index];
            if shard.fetched_to.is_some() {
                shard.position = shard.fetched_to.take();
            }
            if !open && shard.pending.is_empty() {
                shard.closed = true;
            }
            return !fetched_any;
        }
        let full = shard.pending.len() >= self.options.batch_size;
        let waited = shard
            .pending_since
            .is_some_and(|since| since.elapsed() >= self.options.batching_window);
        if full || waited || !open || shard.retry_at.is_some() {
            self.deliver(index).await;
        }
        false
    }

    /// One `GetRecords` call: appends the matching records to the shard's pending batch.
    /// Answers whether it returned any record, and whether the shard is still open.
    async fn fetch(&mut self, index: usize) -> Result<(bool, bool), String> {
        if self.shards[index].iterator.is_none() {
            let shard = &self.shards[index];
            let request = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.arn)
                .shard_id(&shard.id);
            // Resume after the last fetched record when a batch is pending (its records are
            // held here), else after the last acknowledged one.
            let after = shard.fetched_to.clone().or_else(|| shard.position.clone());
            let request = match after {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence),
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let iterator = request
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "GetShardIterator: {}",
                        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                    )
                })?
                .shard_iterator
                .ok_or("GetShardIterator answered no iterator")?;
            self.shards[index].iterator = Some(iterator);
        }
        let room = self.options.batch_size - self.shards[index].pending.len();
        let limit = i32::try_from(room.clamp(1, 1000)).unwrap_or(1000);
        let iterator = self.shards[index].iterator.clone().unwrap_or_default();
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetRecords: {}",
                    aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                )
            })?;
        let records = out.records.unwrap_or_default();
        let open = out.next_shard_iterator.is_some();
        let shard_id = self.shards[index].id.clone();
        let (mut matched, mut dropped) = (0u64, 0u64);
        for record in &records {
            let lambda = lambda_record(record, &self.arn);
            let sequence = record
                .dynamodb
                .as_ref()
                .and_then(|d| d.sequence_number.clone());
            let shard = &mut self.shards[index];
            if self.filter.as_ref().is_none_or(|f| matches(f, &lambda)) {
                if shard.pending.is_empty() {
                    shard.pending_since = Some(Instant::now());
                }
                shard.pending.push_back(lambda);
                matched += 1;
            } else {
                dropped += 1;
            }
            if let Some(sequence) = sequence {
                shard.fetched_to = Some(sequence);
            }
        }
        if dropped > 0 {
            self.progress.send_modify(|p| p.filtered += dropped);
            tracing::trace!(shard = %shard_id, dropped, matched, "stream records filtered");
        }
        self.shards[index].iterator = out.next_shard_iterator;
        Ok((!records.is_empty(), open))
    }

    /// Invokes the target with the pending batch and acknowledges what it processed.
    async fn deliver(&mut self, index: usize) {
        let batch: Vec<Value> = {
            let shard = &self.shards[index];
            shard
                .pending
                .iter()
                .take(self.options.batch_size)
                .cloned()
                .collect()
        };
        let event = self.event(index, &batch, false);
        let outcome = match event {
            Ok(event) => self.target.invoke(event).await,
            Err(e) => Err(e),
        };
        let failed_from = match &outcome {
            Err(e) => {
                tracing::warn!(shard = %self.shards[index].id, error = %e, "the stream target failed; the batch comes back");
                Some(0)
            }
            Ok(response) => first_failure(&batch, response),
        };
        let shard = &mut self.shards[index];
        if let Ok(response) = &outcome {
            shard.window.state = response.time_window_event_response_properties.state.clone();
            shard.window.invoked = true;
        }
        let done = failed_from.unwrap_or(batch.len());
        for _ in 0..done {
            shard.pending.pop_front();
        }
        let delivered = u64::try_from(done).unwrap_or(u64::MAX);
        // The position to keep: past the whole fetched range when the batch is all done and
        // nothing else is pending, else the last acknowledged record.
        let acknowledged = if shard.pending.is_empty() {
            shard.fetched_to.take()
        } else if done > 0 {
            sequence_of(&batch[done - 1])
        } else {
            None
        };
        if let Some(position) = acknowledged {
            shard.position = Some(position);
        }
        if failed_from.is_some() {
            shard.failures += 1;
            let exponent = shard.failures.saturating_sub(1).min(10);
            let backoff =
                (self.options.retry_backoff * 2u32.pow(exponent)).min(Duration::from_secs(5));
            shard.retry_at = Some(Instant::now() + backoff);
            let give_up = self
                .options
                .max_retries
                .is_some_and(|max| shard.failures > max);
            self.progress.send_modify(|p| {
                p.failed_invokes += 1;
                p.delivered += delivered;
            });
            if give_up {
                self.abandon(index);
            }
        } else {
            shard.failures = 0;
            shard.retry_at = None;
            shard.pending_since = (!shard.pending.is_empty()).then(Instant::now);
            self.progress.send_modify(|p| p.delivered += delivered);
        }
        self.save(index);
    }

    /// Gives the pending batch up to the on-failure destination (the progress's `abandoned`
    /// list, with its sequence range) and moves past it.
    fn abandon(&mut self, index: usize) {
        let shard = &mut self.shards[index];
        let batch: Vec<Value> = shard
            .pending
            .drain(..shard.pending.len().min(self.options.batch_size))
            .collect();
        let first = batch.first().and_then(sequence_of).unwrap_or_default();
        let last = batch.last().and_then(sequence_of).unwrap_or_default();
        tracing::error!(shard = %shard.id, first, last, "a stream batch was given up after its retries");
        shard.position = if shard.pending.is_empty() {
            shard.fetched_to.take().or(Some(last.clone()))
        } else {
            Some(last.clone())
        };
        shard.failures = 0;
        shard.retry_at = None;
        let note = json!({ "shardId": shard.id, "startSequenceNumber": first, "endSequenceNumber": last, "records": batch.len() }).to_string();
        self.progress.send_modify(|p| p.abandoned.push(note));
    }

    /// Sends the final invoke of a window that has passed, with its state and no records.
    async fn close_window_if_over(&mut self, index: usize) {
        let now_s = unix_now_s();
        let length = self.options.tumbling_window.as_secs().max(1);
        let current = now_s - now_s % length;
        let shard = &self.shards[index];
        if shard.window.start_s == current {
            return;
        }
        if shard.window.invoked && shard.window.start_s < current {
            match self.event(index, &[], true) {
                Ok(event) => {
                    if let Err(e) = self.target.invoke(event).await {
                        tracing::warn!(shard = %self.shards[index].id, error = %e, "the final invoke of a window failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "build a window's final event"),
            }
        }
        let shard = &mut self.shards[index];
        shard.window = Window {
            start_s: current,
            state: HashMap::new(),
            invoked: false,
        };
    }

    /// The event Lambda would send: records, and the tumbling window's properties.
    fn event(
        &self,
        index: usize,
        records: &[Value],
        last: bool,
    ) -> Result<TimeWindowEvent, String> {
        let shard = &self.shards[index];
        let length = self.options.tumbling_window.as_secs().max(1);
        let start = if shard.window.start_s == 0 {
            let now = unix_now_s();
            now - now % length
        } else {
            shard.window.start_s
        };
        let event = json!({
            "Records": records,
            "window": { "start": rfc3339(start)?, "end": rfc3339(start + length)? },
            "state": shard.window.state,
            "shardId": shard.id,
            "eventSourceARN": self.arn,
            "isFinalInvokeForWindow": last,
            "isWindowTerminatedEarly": false,
        });
        serde_json::from_value(event).map_err(|e| format!("the stream event does not parse: {e}"))
    }

    fn save(&self, index: usize) {
        let shard = &self.shards[index];
        if let (Some(positions), Some(position)) = (&self.positions, &shard.position)
            && let Err(e) = positions.store(&shard.id, position)
        {
            // The delivery succeeded; a position not saved means a redelivery after a crash,
            // which the count function dedupes, so the poller goes on.
            tracing::error!(shard = %shard.id, error = %e, "save the stream position");
        }
    }
}

/// The index of the first record to deliver again, when the response reports failures; `None`
/// when the batch succeeded. An identifier that is empty or names no record of the batch fails
/// it whole, as Lambda treats it.
fn first_failure(batch: &[Value], response: &TimeWindowEventResponse) -> Option<usize> {
    let mut first: Option<usize> = None;
    for failure in &response.batch_item_failures {
        let found = failure
            .item_identifier
            .as_deref()
            .filter(|id| !id.is_empty())
            .and_then(|id| {
                batch
                    .iter()
                    .position(|r| sequence_of(r).as_deref() == Some(id))
            });
        let at = found.unwrap_or(0);
        first = Some(first.map_or(at, |f| f.min(at)));
    }
    first
}

fn sequence_of(record: &Value) -> Option<String> {
    record["dynamodb"]["SequenceNumber"]
        .as_str()
        .map(str::to_owned)
}

/// A stream record as Lambda's DynamoDB event carries it (the wire shape, so the filter sees
/// what Lambda's filter sees and the handler parses what it would on AWS).
fn lambda_record(record: &Record, arn: &str) -> Value {
    let mut change = serde_json::Map::new();
    if let Some(d) = &record.dynamodb {
        if let Some(at) = d.approximate_creation_date_time {
            change.insert(
                "ApproximateCreationDateTime".into(),
                json!(at.as_secs_f64().floor()),
            );
        }
        for (name, image) in [
            ("Keys", &d.keys),
            ("NewImage", &d.new_image),
            ("OldImage", &d.old_image),
        ] {
            if let Some(image) = image {
                let item: serde_dynamo::Item = image.clone().into();
                change.insert(
                    name.into(),
                    serde_json::to_value(item).unwrap_or(Value::Null),
                );
            }
        }
        if let Some(sequence) = &d.sequence_number {
            change.insert("SequenceNumber".into(), json!(sequence));
        }
        change.insert("SizeBytes".into(), json!(d.size_bytes.unwrap_or(0)));
        if let Some(view) = &d.stream_view_type {
            change.insert("StreamViewType".into(), json!(view.as_str()));
        }
    }
    json!({
        "awsRegion": record.aws_region.clone().unwrap_or_else(|| LOCAL_REGION.to_owned()),
        "dynamodb": change,
        "eventID": record.event_id.clone().unwrap_or_default(),
        "eventName": record.event_name.as_ref().map(|n| n.as_str().to_owned()).unwrap_or_default(),
        "eventSource": record.event_source.clone().unwrap_or_else(|| "aws:dynamodb".to_owned()),
        "eventVersion": record.event_version.clone().unwrap_or_else(|| "1.1".to_owned()),
        "eventSourceARN": arn,
    })
}

/// Whether `value` matches an event filter pattern, for the subset Lambda filters use here: an
/// object pattern matches when each of its keys matches the value's field; an array lists
/// alternatives, each a literal (string, number, boolean, null) or `{"prefix": "…"}`,
/// `{"exists": bool}`, or `{"anything-but": [...]}`.
pub fn matches(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(name, inner)| {
            let field = value.get(name);
            match inner {
                Value::Array(alternatives) => alternatives.iter().any(|a| leaf(a, field)),
                Value::Object(_) => field.is_some_and(|f| matches(inner, f)),
                // A bare literal is not a valid pattern on AWS; it matches nothing here.
                _ => false,
            }
        }),
        _ => false,
    }
}

fn leaf(alternative: &Value, field: Option<&Value>) -> bool {
    match alternative {
        Value::Object(op) => {
            if let Some(prefix) = op.get("prefix").and_then(Value::as_str) {
                field
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.starts_with(prefix))
            } else if let Some(exists) = op.get("exists").and_then(Value::as_bool) {
                field.is_some() == exists
            } else if let Some(Value::Array(not)) = op.get("anything-but") {
                field.is_some_and(|f| !not.contains(f))
            } else {
                false
            }
        }
        literal => field.is_some_and(|f| f == literal),
    }
}

fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn rfc3339(unix_s: u64) -> Result<String, String> {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_s).unwrap_or(0))
        .map_err(|e| e.to_string())?;
    at.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())
}

/// Each shard's position, one file per shard under the folder, replaced atomically.
#[derive(Debug)]
struct Positions {
    dir: PathBuf,
}

impl Positions {
    fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn file(&self, shard: &str) -> PathBuf {
        let safe: String = shard
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    fn load(&self, shard: &str) -> Result<Option<String>, String> {
        let path = self.file(shard);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(saved["sequenceNumber"].as_str().map(str::to_owned))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the position to a temporary file, syncs it, renames it over the old one and
    /// syncs the folder, so a crash leaves either the old position or the new one, whole.
    fn store(&self, shard: &str, sequence: &str) -> std::io::Result<()> {
        let path = self.file(shard);
        let temporary = path.with_extension("json.tmp");
        let body = json!({ "shardId": shard, "sequenceNumber": sequence }).to_string();
        {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(body.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ballot(pk: &str, event: &str) -> Value {
        json!({ "eventName": event, "dynamodb": { "Keys": { "PK": { "S": pk }, "SK": { "S": "BALLOT" } } } })
    }

    #[test]
    fn the_ballot_filter_takes_new_ballots_only() {
        let filter: Value = serde_json::from_str(BALLOT_FILTER).unwrap_or_default();
        assert!(matches(&filter, &ballot("BALLOT#p1#u:a", "INSERT")));
        assert!(!matches(&filter, &ballot("BALLOT#p1#u:a", "MODIFY")));
        assert!(!matches(&filter, &ballot("BALLOT#p1#u:a", "REMOVE")));
        assert!(!matches(&filter, &ballot("TALLY#p1", "INSERT")));
        assert!(!matches(&filter, &ballot("POLL#BALLOT#", "INSERT")));
        assert!(!matches(&filter, &json!({ "eventName": "INSERT" })));
    }

    #[test]
    fn a_failure_resumes_from_the_lowest_named_record_or_fails_the_batch() {
        let batch: Vec<Value> = (1..=4)
            .map(|n| json!({ "dynamodb": { "SequenceNumber": format!("{n:021}") } }))
            .collect();
        let mut response = TimeWindowEventResponse::default();
        assert_eq!(first_failure(&batch, &response), None);
        for id in [format!("{:021}", 3), format!("{:021}", 2)] {
            let mut failure =
                aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(id);
            response.batch_item_failures.push(failure);
        }
        assert_eq!(first_failure(&batch, &response), Some(1));
        let mut unknown = aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
        unknown.item_identifier = Some("nothing".into());
        response.batch_item_failures.push(unknown);
        assert_eq!(first_failure(&batch, &response), Some(0));
    }
}
