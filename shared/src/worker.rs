//! The render function's work, independent of how messages arrive: on AWS the SQS event
//! source hands batches to [`Worker::handle`]; locally the dev server's in-process queue hands
//! it the very same `SqsEvent` payloads.
//!
//! Every step is safe to repeat (SQS delivers at least once): tokens derive from the job's
//! secret and the guest's index, object keys are fixed by the job and index, a chunk is counted
//! by a conditional write that succeeds once, and the final ZIP is built under a lease that one
//! worker holds at a time.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{StreamExt, TryStreamExt, stream};
use time::Duration;
use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::domain::job::invite_token_hash;
use crate::domain::{Invite, Job, JobId, JobKind, QrFormat};
use crate::ports::{BlobStore, RenderMessage, Store, StoreError};
use crate::render;

/// How long one worker may hold the right to build a job's final file before another may take
/// over (a worker that died mid-ZIP leaves its claim behind).
const FINISH_LEASE: Duration = Duration::minutes(5);
/// Objects fetched and uploaded at once.
const PARALLEL_IO: usize = 16;
/// ZIP upload part size: S3's minimum is 5 MiB; memory holds about two parts.
const PART_SIZE: usize = 8 * 1024 * 1024;

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
}

impl WorkError {
    /// What the job's owner reads when the job fails: no internal detail.
    fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "A work item of this job could not be read.",
            Self::Store(_) => "Storage kept failing while the files were generated.",
            Self::Render(_) => "A card could not be rendered.",
        }
    }
}

#[derive(Clone)]
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub clock: SharedClock,
    /// The origin guests open: invite cards encode `<base>/i/<token>`.
    pub public_base_url: String,
    /// Deliveries after which a failing message is given up (the queue's `maxReceiveCount`).
    pub max_receives: u32,
    /// Whether to print CloudWatch Embedded Metric Format lines (render time, job progress).
    pub metrics: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
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
            if let Err(e) = self.process(&record).await {
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

    async fn process(&self, record: &SqsMessage) -> Result<(), WorkError> {
        let body = record.body.as_deref().unwrap_or_default();
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
            JobKind::Qr | JobKind::Chart => self.single_file(&job).await?,
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

    /// Renders a chunk of invite cards, stores its invites and cards, and counts it once.
    async fn invite_chunk(&self, job: &Job, message: &RenderMessage) -> Result<(), WorkError> {
        let Some(poll) = self.store.poll(job.poll_id).await? else {
            self.store.fail_job(job.id, "The poll was deleted.").await?;
            return Ok(());
        };
        let base = self.public_base_url.trim_end_matches('/').to_owned();
        let planned: Vec<(u32, String, String)> = message
            .guests
            .iter()
            .enumerate()
            .map(|(i, guest)| {
                let index = message.start + u32::try_from(i).unwrap_or(u32::MAX);
                (index, guest.name.clone(), job.invite_token(index))
            })
            .collect();
        let question = poll.question.clone();
        let to_render = planned.clone();
        // Rendering is CPU work: off the async threads, one chunk at a time.
        let cards = tokio::task::spawn_blocking(move || {
            to_render
                .iter()
                .map(|(_, name, token)| {
                    let url = format!("{base}/i/{token}");
                    render::invite_card_png(&render::InviteCard {
                        question: &question,
                        guest_name: name,
                        url: &url,
                    })
                    .map_err(|e| WorkError::Render(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| WorkError::Render(e.to_string()))??;

        let invites: Vec<Invite> = planned
            .iter()
            .map(|(index, name, token)| Invite {
                token_hash: invite_token_hash(token),
                poll_id: job.poll_id,
                job_id: job.id,
                index: *index,
                guest_name: name.clone(),
            })
            .collect();
        self.store.put_invites(&invites).await?;
        stream::iter(planned.iter().zip(cards).map(Ok::<_, WorkError>))
            .try_for_each_concurrent(PARALLEL_IO, |((index, name, _), png)| async move {
                self.blobs
                    .put(&card_key(job.id, *index, name), png, "image/png")
                    .await?;
                Ok(())
            })
            .await?;
        let done = u32::try_from(planned.len()).unwrap_or(u32::MAX);
        if !self
            .store
            .record_chunk(job.id, message.chunk, done, 0)
            .await?
        {
            tracing::info!("chunk was counted before (redelivery)");
        }
        Ok(())
    }

    /// A share QR code or a results chart: one file, counted as one chunk.
    async fn single_file(&self, job: &Job) -> Result<(), WorkError> {
        let (bytes, key, content_type) = match job.kind {
            JobKind::Qr => {
                let url = format!(
                    "{}/p/{}",
                    self.public_base_url.trim_end_matches('/'),
                    job.poll_id
                );
                match job.format.unwrap_or(QrFormat::Png) {
                    QrFormat::Png => (
                        render::qr_png(&url).map_err(|e| WorkError::Render(e.to_string()))?,
                        format!("jobs/{}/qr.png", job.id),
                        "image/png",
                    ),
                    QrFormat::Svg => (
                        render::qr_svg(&url)
                            .map_err(|e| WorkError::Render(e.to_string()))?
                            .into_bytes(),
                        format!("jobs/{}/qr.svg", job.id),
                        "image/svg+xml",
                    ),
                }
            }
            _ => {
                let Some((poll, tally)) = self.store.poll_with_tally(job.poll_id).await? else {
                    self.store.fail_job(job.id, "The poll was deleted.").await?;
                    return Ok(());
                };
                let bars: Vec<render::Bar<'_>> = poll
                    .options
                    .iter()
                    .map(|o| render::Bar {
                        label: &o.text,
                        votes: tally.per_option.get(&o.id).copied().unwrap_or(0),
                    })
                    .collect();
                let png = render::results_chart_png(&poll.question, &bars)
                    .map_err(|e| WorkError::Render(e.to_string()))?;
                (png, format!("jobs/{}/chart.png", job.id), "image/png")
            }
        };
        self.blobs.put(&key, bytes, content_type).await?;
        self.store.record_chunk(job.id, 0, 1, 0).await?;
        Ok(())
    }

    /// Once every chunk is counted, one worker (the one holding the lease) produces the final
    /// file and completes the job; the others return at once. Returns the job as read after
    /// this message's work, for the progress metric.
    async fn finish_if_complete(&self, id: JobId) -> Result<Option<Job>, WorkError> {
        let Some(job) = self.store.job(id).await? else {
            return Ok(None);
        };
        if job.chunks_done < job.chunks_total || job.completed_at.is_some() || job.error.is_some() {
            return Ok(Some(job));
        }
        let now = self.clock.now();
        if !self.store.claim_finish(id, now, now + FINISH_LEASE).await? {
            return Ok(Some(job));
        }
        let key = match job.kind {
            JobKind::Invites => match self.build_zip(&job).await {
                Ok(key) => key,
                Err(e) => {
                    // Give the claim back so that this message's redelivery can try again
                    // at once rather than wait out the lease.
                    self.store.release_finish(id).await?;
                    return Err(e);
                }
            },
            JobKind::Qr => format!(
                "jobs/{}/qr.{}",
                job.id,
                if job.format == Some(QrFormat::Svg) {
                    "svg"
                } else {
                    "png"
                }
            ),
            JobKind::Chart => format!("jobs/{}/chart.png", job.id),
        };
        self.store.complete_job(id, &key, self.clock.now()).await?;
        tracing::info!(object_key = %key, "job complete");
        Ok(Some(job))
    }

    /// Streams every card of the job into one ZIP, uploaded in parts: memory holds a few
    /// cards and about two parts, whatever the number of guests.
    async fn build_zip(&self, job: &Job) -> Result<String, WorkError> {
        let key = format!("jobs/{}/invites.zip", job.id);
        let cards = self.blobs.list(&format!("jobs/{}/cards/", job.id)).await?;
        let upload = self.blobs.start_upload(&key, "application/zip").await?;
        let result = stream_zip(&self.blobs, &key, &upload, cards).await;
        match result {
            Ok(parts) => {
                self.blobs.finish_upload(&key, &upload, parts).await?;
                Ok(key)
            }
            Err(e) => {
                let _ = self.blobs.abort_upload(&key, &upload).await;
                Err(e)
            }
        }
    }
}

/// Fetches the cards, writes them into a ZIP stream and uploads it part by part, the three
/// running at once. If any of them stops, the others stop too (closed channels), so a failed
/// part upload is an error rather than a ZIP thread waiting for an uploader that is gone.
async fn stream_zip(
    blobs: &Arc<dyn BlobStore>,
    key: &str,
    upload: &str,
    cards: Vec<String>,
) -> Result<Vec<(i32, String)>, WorkError> {
    let (card_tx, mut card_rx) = mpsc::channel::<(String, Vec<u8>)>(PARALLEL_IO * 2);
    let (part_tx, mut part_rx) = mpsc::channel::<Vec<u8>>(1);
    // The ZIP writer is synchronous: it runs on a blocking thread, fed cards through one
    // channel and handing finished parts back through another.
    let zipper = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use std::io::Write;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut zip = zip::ZipWriter::new_stream(PartWriter {
            buffer: Vec::with_capacity(PART_SIZE),
            parts: part_tx,
        });
        while let Some((name, bytes)) = card_rx.blocking_recv() {
            zip.start_file(name, options).map_err(|e| e.to_string())?;
            zip.write_all(&bytes).map_err(|e| e.to_string())?;
        }
        let mut writer = zip.finish().map_err(|e| e.to_string())?.into_inner();
        writer.flush_last().map_err(|e| e.to_string())
    });
    let source = blobs.clone();
    let fetch = async move {
        let mut fetched = stream::iter(cards)
            .map(|card| {
                let blobs = source.clone();
                async move {
                    let bytes = blobs.get(&card).await?;
                    let name = card.rsplit('/').next().unwrap_or(&card).to_owned();
                    Ok::<_, StoreError>((name, bytes))
                }
            })
            .buffered(PARALLEL_IO);
        while let Some(card) = fetched.next().await {
            // A closed channel means the ZIP thread stopped; its own error tells why.
            if card_tx.send(card?).await.is_err() {
                break;
            }
        }
        Ok::<_, WorkError>(())
    };
    let upload_parts = async move {
        let mut parts = Vec::new();
        let mut number = 1;
        while let Some(part) = part_rx.recv().await {
            match blobs.upload_part(key, upload, number, part).await {
                Ok(etag) => parts.push((number, etag)),
                Err(e) => {
                    // Closing the channel fails the ZIP thread's next send, which stops it,
                    // and its dropped card receiver stops the fetch in turn.
                    part_rx.close();
                    return Err(WorkError::from(e));
                }
            }
            number += 1;
        }
        Ok::<_, WorkError>(parts)
    };
    let (fetched, parts, zipped) = tokio::join!(fetch, upload_parts, zipper);
    // The first failure in the pipeline is the cause; the others only saw a closed channel.
    let parts = parts?;
    fetched?;
    zipped
        .map_err(|e| WorkError::Render(e.to_string()))?
        .map_err(WorkError::Render)?;
    Ok(parts)
}

/// The job a message names, read without trusting the rest of it.
fn job_of(record: &SqsMessage) -> Option<JobId> {
    let body: serde_json::Value = serde_json::from_str(record.body.as_deref()?).ok()?;
    body.get("job_id")?.as_str()?.parse().ok()
}

/// Where guest `index`'s card lives: fixed by job and index (the name only makes it readable).
pub fn card_key(job: JobId, index: u32, name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "guest" } else { slug };
    format!("jobs/{job}/cards/{index:05}-{slug}.png")
}

/// A `Write` that cuts the ZIP stream into upload parts and hands them to the uploader.
struct PartWriter {
    buffer: Vec<u8>,
    parts: mpsc::Sender<Vec<u8>>,
}

impl PartWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_SIZE));
        self.parts
            .blocking_send(part)
            .map_err(|_| std::io::Error::other("the uploader stopped"))
    }

    /// Sends what is left as the last part (S3 allows the last part to be small).
    fn flush_last(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

impl std::io::Write for PartWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PART_SIZE {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::ports::StoreResult;

    /// Cards of 3 MiB each (so a few cards fill several parts) and an upload that fails from
    /// part `fail_from` on.
    #[derive(Debug, Default)]
    struct Parts {
        fail_from: i32,
        uploaded: AtomicUsize,
        sizes: std::sync::Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl BlobStore for Parts {
        async fn put(&self, _: &str, _: Vec<u8>, _: &str) -> StoreResult<()> {
            Ok(())
        }
        async fn get(&self, _: &str) -> StoreResult<Vec<u8>> {
            Ok(vec![7; 3 * 1024 * 1024])
        }
        async fn list(&self, _: &str) -> StoreResult<Vec<String>> {
            Ok(Vec::new())
        }
        async fn start_upload(&self, _: &str, _: &str) -> StoreResult<String> {
            Ok("upload".into())
        }
        async fn upload_part(
            &self,
            _: &str,
            _: &str,
            n: i32,
            bytes: Vec<u8>,
        ) -> StoreResult<String> {
            if n >= self.fail_from {
                return Err(StoreError::Unavailable("part upload failed".into()));
            }
            self.uploaded.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut sizes) = self.sizes.lock() {
                sizes.push(bytes.len());
            }
            Ok(format!("etag-{n}"))
        }
        async fn finish_upload(&self, _: &str, _: &str, _: Vec<(i32, String)>) -> StoreResult<()> {
            Ok(())
        }
        async fn abort_upload(&self, _: &str, _: &str) -> StoreResult<()> {
            Ok(())
        }
        async fn presign_get(&self, _: &str, _: std::time::Duration) -> StoreResult<String> {
            Ok(String::new())
        }
    }

    fn cards(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("jobs/j/cards/{i:05}-guest.png"))
            .collect()
    }

    /// 20 cards of 3 MiB make 8 parts; the first part's upload fails. The ZIP stream must
    /// stop with that error instead of waiting forever for an uploader that is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_part_upload_stops_the_zip_with_its_error() {
        let blobs: Arc<dyn BlobStore> = Arc::new(Parts {
            fail_from: 1,
            ..Parts::default()
        });
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream_zip(&blobs, "jobs/j/invites.zip", "upload", cards(20)),
        )
        .await
        .unwrap_or_else(|_| panic!("the ZIP stream hung after a failed part upload"));
        match outcome {
            Err(WorkError::Store(StoreError::Unavailable(e))) => {
                assert!(e.contains("part upload"));
            }
            other => panic!("expected the upload's error, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_part_is_uploaded_in_order() {
        let store = Arc::new(Parts {
            fail_from: i32::MAX,
            ..Parts::default()
        });
        let blobs: Arc<dyn BlobStore> = store.clone();
        let parts = stream_zip(&blobs, "jobs/j/invites.zip", "upload", cards(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // 60 MiB of cards and their headers: parts numbered from 1, every one but the last
        // at least S3's 5 MiB minimum, holding every byte.
        let numbers: Vec<i32> = parts.iter().map(|(n, _)| *n).collect();
        let count = i32::try_from(numbers.len()).unwrap_or(0);
        assert!(count > 2, "{numbers:?}");
        assert_eq!(numbers, (1..=count).collect::<Vec<_>>());
        assert_eq!(store.uploaded.load(Ordering::SeqCst), numbers.len());
        let sizes = store.sizes.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(
            sizes[..sizes.len() - 1]
                .iter()
                .all(|&n| n >= 5 * 1024 * 1024),
            "{sizes:?}"
        );
        assert!(sizes.iter().sum::<usize>() > 20 * 3 * 1024 * 1024);
    }

    #[test]
    fn card_keys_are_fixed_by_job_and_index() {
        let job = JobId::new();
        assert_eq!(
            card_key(job, 7, "Ann O'Neil"),
            format!("jobs/{job}/cards/00007-ann-o-neil.png")
        );
        assert_eq!(
            card_key(job, 7, "李"),
            format!("jobs/{job}/cards/00007-guest.png")
        );
    }
}
