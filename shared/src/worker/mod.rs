//! The render function's work, independent of how messages arrive: on AWS the SQS event
//! source hands batches to [`Worker::handle`]; locally the dev server's in-process queue hands
//! it the very same `SqsEvent` payloads.
//!
//! This module is the batch plumbing (the deadline, partial failures, the dead-letter
//! hand-off) and the job's last step; each kind's work is in its own module: [`invites`] (a
//! chunk of cards, stored as one [`segment`]), [`single`] (a QR code or a chart), [`zip`]
//! (the invites' ZIP, assembled from the segments, with the file names and manifest of
//! [`names`]) and [`sheets`] (the invites' print sheets, a PDF drawn from the segments).
//!
//! Every step is safe to repeat (SQS delivers at least once): tokens derive from the invite
//! key, the guest and their generation, object keys are fixed by the job and chunk, a chunk is
//! counted by a conditional write that succeeds once, and the final ZIP is built under a lease
//! that one worker holds at a time.

mod invites;
pub mod names;
mod purge;
mod segment;
mod sheets;
mod single;
mod zip;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use time::Duration;

use crate::clock::SharedClock;
use crate::domain::{InviteKey, Job, JobId, JobKind};
use crate::objects::ObjectKey;
use crate::ports::{
    BallotStore, BlobStore, DeadLetters, JobStore, PollStore, PurgeStore, RenderMessage, StoreError,
};

/// How long one worker's right to build a job's final file lasts unless renewed. The builder
/// renews it every [`LEASE_RENEWAL`] while it works, so a live builder never loses it however
/// long the ZIP takes, and a builder that died (a killed process, a timed-out invocation)
/// leaves a claim that lapses within seconds rather than minutes.
const FINISH_LEASE: Duration = Duration::seconds(20);
const LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a worker that finds the claim taken waits for the job to complete or the claim to
/// lapse, and how often it looks. Waiting here, rather than handing the message back, matters
/// when the holder died: the message may be on its last delivery, and a message that gives up
/// while a dead worker's claim lingers would leave the job unfinished until its deadline.
const CLAIM_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a message could not be processed. Every failure is reported back to SQS, which
/// redelivers the message; on its last allowed delivery the job is marked failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the message is not a render message: {0}")]
    Malformed(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("rendering: {0}")]
    Render(String),
    /// A purge message arrived before its poll's deletion was written: it is delivered again.
    #[error("the poll to purge still exists")]
    PollStillExists,
}

impl WorkError {
    /// What the job's owner reads when the job fails: no internal detail.
    fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "A work item of this job could not be read.",
            Self::Store(_) => "Storage kept failing while the files were generated.",
            Self::Render(_) => "A card could not be rendered.",
            // Only purge messages fail so, and they belong to no job.
            Self::PollStillExists => "The work was not ready to run.",
        }
    }
}

/// What the render function reaches in the table: jobs, polls with their counts (for
/// charts), and a deleted poll's guests, cards and ballots (to remove them). Never users,
/// sessions or rate windows.
pub trait RenderStore: JobStore + PollStore + BallotStore + PurgeStore {}
impl<T: JobStore + PollStore + BallotStore + PurgeStore> RenderStore for T {}

#[derive(Debug, Clone)]
pub struct Worker {
    pub store: Arc<dyn RenderStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Where an unreadable message goes on its first delivery.
    pub dead_letters: Arc<dyn DeadLetters>,
    pub clock: SharedClock,
    /// The origin guests open: invite cards encode `<base>/i/<token>`.
    pub public_base_url: String,
    /// The key guests' tokens are derived from (never in the table).
    pub invite_key: InviteKey,
    /// Deliveries after which a failing message is given up (the queue's `maxReceiveCount`).
    pub max_receives: u32,
    /// Whether to print CloudWatch Embedded Metric Format lines (render time, job progress).
    pub metrics: bool,
}

impl Worker {
    /// Processes a batch and reports each failed message, never failing the whole batch
    /// (`ReportBatchItemFailures`).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_within(event, None).await
    }

    /// [`Worker::handle`] under Lambda's deadline for this invocation. Once half of the time
    /// left at the start has gone, the messages not begun yet are handed back unprocessed (as
    /// failures, so SQS delivers them again) rather than started: the message that finishes a
    /// job builds its ZIP, which may take most of an invocation, and one that starts too late
    /// is cut off by the timeout with nothing to show. A message on its last delivery is
    /// always processed, since handing it back would only move it to the dead-letter queue.
    pub async fn handle_within(
        &self,
        event: SqsEvent,
        deadline: Option<std::time::SystemTime>,
    ) -> SqsBatchResponse {
        let started = std::time::SystemTime::now();
        let stop_starting = deadline.map(|d| {
            let left = d.duration_since(started).unwrap_or_default();
            started + left / 2
        });
        let mut response = SqsBatchResponse::default();
        for (n, record) in event.records.into_iter().enumerate() {
            let id = record.message_id.clone().unwrap_or_default();
            let receives: u32 = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let late = stop_starting.is_some_and(|t| std::time::SystemTime::now() >= t);
            if n > 0 && late && receives < self.max_receives {
                tracing::info!(message_id = %id, "handed back unstarted: the invocation is half over");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
                continue;
            }
            let outcome = self.process(&record, receives).await;
            if let Err(WorkError::Malformed(why)) = &outcome {
                // No delivery can make an unreadable body readable, so it goes to the
                // dead-letter queue now rather than after `max_receives` visibility timeouts;
                // once it is stored there it counts as processed and SQS deletes it. If the
                // dead-letter queue cannot take it, it fails as any message does and the
                // queue's redrive policy moves it later.
                let body = record.body.as_deref().unwrap_or_default();
                match self.dead_letters.dead_letter(body).await {
                    Ok(()) => {
                        tracing::error!(message_id = %id, error = %why, "unreadable render message moved to the dead-letter queue");
                        // A body that still names its job leaves that job one chunk short
                        // for good: its owner learns so now, not at the job's deadline.
                        if let Some(job) = job_of(&record)
                            && let Err(fail) = self
                                .store
                                .fail_job(job, WorkError::Malformed(String::new()).reason())
                                .await
                        {
                            tracing::error!(job_id = %job, error = %fail, "could not mark the job failed");
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(message_id = %id, error = %e, "could not dead-letter an unreadable message");
                    }
                }
            }
            if let Err(e) = outcome {
                tracing::error!(message_id = %id, receives, error = %e, "render message failed");
                // The queue moves the message to the dead-letter queue after this delivery;
                // the owner must learn why their job will not finish.
                if receives >= self.max_receives
                    && let Some(job) = job_of(&record)
                    && let Err(fail) = self.store.fail_job(job, e.reason()).await
                {
                    tracing::error!(job_id = %job, error = %fail, "could not mark the job failed");
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    async fn process(&self, record: &SqsMessage, receives: u32) -> Result<(), WorkError> {
        let body = record.body.as_deref().unwrap_or_default();
        if let Some(purge) = purge::purge_of(body) {
            let span = tracing::info_span!("purge", poll_id = %purge.purge, request_id = purge.request_id.as_deref().unwrap_or("-"));
            let _guard = span.enter();
            return match self.purge(&purge).await? {
                purge::Purged::Done => Ok(()),
                // The delete route sends the message just before it deletes the poll, so the
                // first delivery may come first; by the next one (a visibility timeout later)
                // the deletion has been written or has failed for good, and a poll that is
                // still there was not deleted: its data stays.
                purge::Purged::PollExists if receives < 2 => Err(WorkError::PollStillExists),
                purge::Purged::PollExists => {
                    tracing::info!("the poll was not deleted after all; nothing purged");
                    Ok(())
                }
            };
        }
        let message: RenderMessage =
            serde_json::from_str(body).map_err(|e| WorkError::Malformed(e.to_string()))?;
        let span = tracing::info_span!("render", job_id = %message.job_id, chunk = message.chunk, request_id = message.request_id.as_deref().unwrap_or("-"));
        let _guard = span.enter();
        let Some(job) = self.store.job(message.job_id).await? else {
            tracing::warn!("job no longer exists; dropping its message");
            return Ok(());
        };
        if job.completed_at.is_some() || job.error.is_some() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match job.kind {
            JobKind::Invites => self.invite_chunk(&job, &message).await?,
            JobKind::Qr => self.qr(&job).await?,
            JobKind::Chart => self.chart(&job).await?,
        }
        let progress = self.finish_if_complete(job.id).await?;
        if self.metrics {
            let cards = u32::try_from(message.guests.len())
                .unwrap_or(u32::MAX)
                .max(1);
            let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            crate::metrics::render(
                &job.kind.to_string(),
                message.request_id.as_deref().unwrap_or("-"),
                &job.id.to_string(),
                elapsed,
                cards,
                progress.map_or(0, |j| j.done),
                job.total,
            );
        }
        Ok(())
    }

    /// Once every chunk is counted, one worker (the one holding the lease) produces the final
    /// file and completes the job. A worker that finds the lease held waits until the job is
    /// complete or the lease lapses (its holder died) and then builds the file itself. Returns
    /// the job as read after this message's work, for the progress metric.
    async fn finish_if_complete(&self, id: JobId) -> Result<Option<Job>, WorkError> {
        let waited = std::time::Instant::now();
        let job = loop {
            let Some(job) = self.store.job(id).await? else {
                return Ok(None);
            };
            if job.chunks_done < job.chunks_total
                || job.completed_at.is_some()
                || job.error.is_some()
            {
                return Ok(Some(job));
            }
            let now = self.clock.now();
            if self.store.claim_finish(id, now, now + FINISH_LEASE).await? {
                break job;
            }
            if waited.elapsed() >= CLAIM_PATIENCE {
                // The holder kept renewing its claim all along: it is alive and will finish.
                return Ok(Some(job));
            }
            tokio::time::sleep(CLAIM_POLL).await;
        };
        let key = ObjectKey::file_of(&job);
        match job.kind {
            JobKind::Invites => {
                let build = async {
                    match job.sheets {
                        Some(paper) => self.build_sheets(&job, paper, &key).await,
                        None => self.build_zip(&job, &key).await,
                    }
                };
                if let Err(e) = self.holding_lease(id, build).await {
                    // Give the claim back so that this message's redelivery can try again
                    // at once rather than wait out the lease.
                    self.store.release_finish(id).await?;
                    return Err(e);
                }
            }
            // The one file was stored with the job's one chunk.
            JobKind::Qr | JobKind::Chart => {}
        }
        self.store
            .complete_job(id, &key.to_string(), self.clock.now())
            .await?;
        tracing::info!(object_key = %key, "job complete");
        Ok(Some(job))
    }

    /// Runs `work` while renewing this worker's claim on the job's final file. A renewal that
    /// fails (the job failed meanwhile, or storage is down) stops the work.
    async fn holding_lease(
        &self,
        id: JobId,
        work: impl Future<Output = Result<(), WorkError>>,
    ) -> Result<(), WorkError> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                () = tokio::time::sleep(LEASE_RENEWAL) => {
                    let until = self.clock.now() + FINISH_LEASE;
                    if !self.store.renew_finish(id, until).await? {
                        return Err(WorkError::Store(StoreError::ConditionFailed));
                    }
                }
            }
        }
    }
}

/// The job a message names, read without trusting the rest of it.
fn job_of(record: &SqsMessage) -> Option<JobId> {
    let body: serde_json::Value = serde_json::from_str(record.body.as_deref()?).ok()?;
    body.get("job_id")?.as_str()?.parse().ok()
}
