//! The in-process stand-in for SQS → Lambda: messages sent to it are delivered to the render
//! function's handler ([`Worker::handle`]) as real `SqsEvent` payloads, in batches of up to
//! ten, with SQS's semantics: a message reported as failed comes back after the visibility
//! timeout with its `ApproximateReceiveCount` raised, and after `max_receives` deliveries it
//! moves to the dead-letter queue.
//!
//! The dev server's queue is durable ([`LocalQueue::open`]): every message is a file in the data
//! folder from the moment `send` returns until the worker has processed it (or it is
//! dead-lettered), so a job survives the process being killed. In-memory stacks (tests) use
//! [`LocalQueue::start`], which keeps messages in a channel only.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::{Value, json};
use tally::ports::{
    DeadLetters, PurgeMessage, RenderMessage, RenderQueue, StoreError, StoreResult,
};
use tally::worker::Worker;
use tokio::sync::{Semaphore, mpsc};

/// SQS → Lambda delivers at most ten messages per batch.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
struct Envelope {
    /// The file's name in the spool (empty in memory): sortable, so that a restart delivers
    /// messages roughly in the order they were sent.
    name: String,
    id: String,
    body: String,
    receives: u32,
    /// When a failed message may be delivered again (Unix ms), so that a restart does not cut
    /// a visibility timeout short; 0 means at once.
    visible_at_ms: u64,
}

impl Envelope {
    fn new(body: String) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let sent = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Self {
            name: format!("{sent:020}-{id}.json"),
            id,
            body,
            receives: 0,
            visible_at_ms: 0,
        }
    }
}

/// How the local queue behaves.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    /// How long a failed message stays invisible before it is delivered again.
    pub visibility_timeout: Duration,
    /// Deliveries before a failing message moves to the dead-letter queue.
    pub max_receives: u32,
    /// Batches handled at once (Lambda would run that many instances).
    pub concurrency: usize,
}

/// The sending side, which the jobs routes use as their [`RenderQueue`]. Cheap to clone.
#[derive(Clone)]
pub struct LocalQueue {
    tx: mpsc::UnboundedSender<Envelope>,
    dead: LocalDeadLetters,
    in_flight: Arc<AtomicUsize>,
    spool: Option<Arc<Spool>>,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("spool", &self.spool.as_ref().map(|s| s.messages.clone()))
            .finish_non_exhaustive()
    }
}

impl LocalQueue {
    /// Starts delivering to `worker` from memory only: messages are lost with the process.
    /// The delivery loop ends when every sender is dropped. `dead` is this queue's dead-letter
    /// queue (the worker's `dead_letters` too, for unreadable messages).
    pub fn start(worker: Worker, options: QueueOptions, dead: LocalDeadLetters) -> Self {
        Self::run(worker, options, None, Vec::new(), dead)
    }

    /// Starts delivering to `worker` from a spool folder at `dir`, created if missing: the
    /// messages a previous process left there (sent, not yet processed) are delivered again,
    /// with their receive counts, and its dead letters are kept. One process per folder, as
    /// with the engines' files.
    pub fn open(
        worker: Worker,
        options: QueueOptions,
        dir: &Path,
        dead: LocalDeadLetters,
    ) -> Result<Self, String> {
        let (spool, pending) =
            Spool::open(dir).map_err(|e| format!("the render queue in {}: {e}", dir.display()))?;
        if !pending.is_empty() {
            tracing::info!(
                messages = pending.len(),
                "render messages left by the last run are queued again"
            );
        }
        Ok(Self::run(
            worker,
            options,
            Some(Arc::new(spool)),
            pending,
            dead,
        ))
    }

    fn run(
        worker: Worker,
        options: QueueOptions,
        spool: Option<Arc<Spool>>,
        pending: Vec<Envelope>,
        dead: LocalDeadLetters,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
        let in_flight = Arc::new(AtomicUsize::new(pending.len()));
        let queue = Self {
            tx: tx.clone(),
            dead: dead.clone(),
            in_flight: in_flight.clone(),
            spool: spool.clone(),
        };
        let redeliver = tx.downgrade();
        for envelope in pending {
            // A message received by the last process is visible again now (its receiver is
            // gone); one that was waiting out a failure waits for the rest of its timeout.
            let wait = Duration::from_millis(envelope.visible_at_ms.saturating_sub(now_ms()));
            let tx = tx.clone();
            tokio::spawn(async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let _ = tx.send(envelope);
            });
        }
        drop(tx);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (worker, dead, redeliver, in_flight, spool) = (
                    worker.clone(),
                    dead.clone(),
                    redeliver.clone(),
                    in_flight.clone(),
                    spool.clone(),
                );
                tokio::spawn(async move {
                    let _slot = slot;
                    for envelope in &mut batch {
                        envelope.receives += 1;
                        envelope.visible_at_ms = 0;
                    }
                    // The raised receive counts reach the disk before the worker runs, so a
                    // message that kills the process still reaches the dead-letter queue after
                    // `max_receives` restarts instead of coming back forever.
                    if let Some(spool) = &spool {
                        let (spool, saved) = (spool.clone(), batch.clone());
                        on_disk(move || spool.write_all(&saved)).await;
                    }
                    let response = worker.handle(event_of(&batch)).await;
                    let failed: Vec<&str> = response
                        .batch_item_failures
                        .iter()
                        .map(|f| f.item_identifier.as_str())
                        .collect();
                    let (mut processed, mut buried, mut retried) = (vec![], vec![], vec![]);
                    for mut envelope in batch {
                        if !failed.contains(&envelope.id.as_str()) {
                            processed.push(envelope);
                        } else if envelope.receives >= options.max_receives {
                            tracing::warn!(message_id = %envelope.id, "moved to the dead-letter queue");
                            buried.push(envelope);
                        } else {
                            envelope.visible_at_ms = now_ms().saturating_add(
                                u64::try_from(options.visibility_timeout.as_millis())
                                    .unwrap_or(u64::MAX),
                            );
                            retried.push(envelope);
                        }
                    }
                    if let Some(spool) = &spool {
                        let spool = spool.clone();
                        let (done, dead, waiting) =
                            (processed.clone(), buried.clone(), retried.clone());
                        on_disk(move || {
                            spool.remove_all(&done)?;
                            spool.bury_all(&dead)?;
                            spool.write_all(&waiting)
                        })
                        .await;
                    }
                    in_flight.fetch_sub(processed.len() + buried.len(), Ordering::SeqCst);
                    dead.remember(buried.into_iter().map(|e| e.body));
                    for envelope in retried {
                        if let Some(tx) = redeliver.upgrade() {
                            tokio::spawn(async move {
                                tokio::time::sleep(options.visibility_timeout).await;
                                let _ = tx.send(envelope);
                            });
                        }
                    }
                });
            }
        });
        queue
    }

    /// Bodies of the messages that went to the dead-letter queue (on a durable queue, those of
    /// earlier runs too).
    pub fn dead_letters(&self) -> Vec<String> {
        self.dead.bodies()
    }

    /// Messages sent and not yet processed or dead-lettered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Enqueues a raw body, as any SQS client could (for poison-message tests).
    pub fn send_raw(&self, body: String) -> StoreResult<()> {
        let envelopes = vec![Envelope::new(body)];
        if let Some(spool) = &self.spool {
            spool.write_all(&envelopes).map_err(spool_error)?;
        }
        self.enqueue(envelopes)
    }

    /// Hands envelopes already on disk (if durable) to the delivery loop.
    fn enqueue(&self, envelopes: Vec<Envelope>) -> StoreResult<()> {
        self.in_flight.fetch_add(envelopes.len(), Ordering::SeqCst);
        for envelope in envelopes {
            self.tx
                .send(envelope)
                .map_err(|_| StoreError::Unavailable("the local queue has stopped".into()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl RenderQueue for LocalQueue {
    async fn send(&self, messages: &[RenderMessage]) -> StoreResult<()> {
        let envelopes = messages
            .iter()
            .map(|message| serde_json::to_string(message).map(Envelope::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.store_and_enqueue(envelopes).await
    }

    async fn purge(&self, message: &PurgeMessage) -> StoreResult<()> {
        let body =
            serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.store_and_enqueue(vec![Envelope::new(body)]).await
    }
}

impl LocalQueue {
    /// As with `SendMessage` and `SendMessageBatch`, returns once the messages are stored:
    /// here, once every file is written and synced, so a crash right after the answer loses
    /// none.
    async fn store_and_enqueue(&self, envelopes: Vec<Envelope>) -> StoreResult<()> {
        if let Some(spool) = &self.spool {
            let (spool, saved) = (spool.clone(), envelopes.clone());
            tokio::task::spawn_blocking(move || spool.write_all(&saved))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?
                .map_err(spool_error)?;
        }
        self.enqueue(envelopes)
    }
}

/// The local queue's dead-letter queue: the bodies of the messages that went there, in memory,
/// and on a durable queue also one file each in the spool's `dead/` folder. The queue buries
/// messages that failed `max_receives` times; the worker puts unreadable ones here itself, on
/// their first delivery ([`DeadLetters`]), as the render function does with SQS on AWS.
#[derive(Debug, Clone, Default)]
pub struct LocalDeadLetters {
    bodies: Arc<Mutex<Vec<String>>>,
    folder: Option<PathBuf>,
}

impl LocalDeadLetters {
    /// A dead-letter queue in memory only.
    pub fn memory() -> Self {
        Self::default()
    }

    /// The dead-letter queue of the durable queue at `dir` (see [`LocalQueue::open`]), with
    /// the dead letters of earlier runs.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let folder = dir.join("dead");
        std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let spool = Spool {
            messages: dir.join("messages"),
            dead: folder.clone(),
        };
        let bodies = spool
            .read_folder(&folder)
            .map_err(|e| format!("{}: {e}", folder.display()))?
            .into_iter()
            .map(|e| e.body)
            .collect();
        Ok(Self {
            bodies: Arc::new(Mutex::new(bodies)),
            folder: Some(folder),
        })
    }

    fn remember(&self, bodies: impl IntoIterator<Item = String>) {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(bodies);
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl DeadLetters for LocalDeadLetters {
    async fn dead_letter(&self, body: &str) -> StoreResult<()> {
        if let Some(folder) = &self.folder {
            let mut envelope = Envelope::new(body.to_owned());
            envelope.receives = 1;
            let folder = folder.clone();
            // Written as the spool writes messages (whole file, synced, renamed), straight
            // into `dead/`.
            tokio::task::spawn_blocking(move || {
                let spool = Spool {
                    messages: folder.clone(),
                    dead: folder,
                };
                spool.write_all(std::slice::from_ref(&envelope))
            })
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(spool_error)?;
        }
        self.remember([body.to_owned()]);
        Ok(())
    }
}

fn spool_error(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("the local queue cannot store a message: {e}"))
}

/// Runs spool I/O off the async threads. A failure is logged, not returned: the delivery goes
/// on from memory, and the worst a stale file can cause after a restart is one more delivery,
/// which every step of the worker tolerates.
async fn on_disk(work: impl FnOnce() -> std::io::Result<()> + Send + 'static) {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the local queue could not update its files"),
        Err(e) => tracing::warn!(error = %e, "the local queue's file task failed"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The queue's files: `messages/` holds one JSON file per message not yet processed, `dead/`
/// the dead-lettered ones. Every change is a whole file written beside its target, synced,
/// then renamed over it, so a crash leaves either the old file or the new one, never a torn
/// one; the folder is synced after renames so that they outlast a power cut too.
#[derive(Debug)]
struct Spool {
    messages: PathBuf,
    dead: PathBuf,
}

impl Spool {
    /// Opens (or creates) the spool, returning the pending messages in send order (the dead
    /// letters are read by [`LocalDeadLetters::open`]).
    fn open(dir: &Path) -> std::io::Result<(Self, Vec<Envelope>)> {
        let spool = Self {
            messages: dir.join("messages"),
            dead: dir.join("dead"),
        };
        std::fs::create_dir_all(&spool.messages)?;
        std::fs::create_dir_all(&spool.dead)?;
        let pending = spool.read_folder(&spool.messages)?;
        Ok((spool, pending))
    }

    /// Reads every message file in `folder`, sorted by name; removes the temporary files of
    /// writes a crash interrupted (their targets still hold the previous version).
    fn read_folder(&self, folder: &Path) -> std::io::Result<Vec<Envelope>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                std::fs::remove_file(entry.path())?;
            } else if name.ends_with(".json") {
                names.push(name);
            }
        }
        names.sort();
        let mut envelopes = Vec::with_capacity(names.len());
        for name in names {
            let path = folder.join(&name);
            let text = std::fs::read_to_string(&path)?;
            match decode(&name, &text) {
                Some(envelope) => envelopes.push(envelope),
                None => {
                    // Only this module writes here, whole files at a time; a file it cannot
                    // read was put there by hand, and is set aside rather than delivered.
                    tracing::warn!(file = %path.display(), "unreadable queue file set aside");
                    std::fs::rename(&path, path.with_extension("unreadable"))?;
                }
            }
        }
        Ok(envelopes)
    }

    /// Writes (or rewrites) each message's file atomically, then syncs the folder once.
    fn write_all(&self, envelopes: &[Envelope]) -> std::io::Result<()> {
        if envelopes.is_empty() {
            return Ok(());
        }
        for envelope in envelopes {
            let target = self.messages.join(&envelope.name);
            let temporary = self.messages.join(format!("{}.tmp", envelope.name));
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(encode(envelope).as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &target)?;
        }
        sync_folder(&self.messages)
    }

    /// Deletes processed messages. Not synced: a deletion lost to a power cut means one more
    /// delivery, which the worker tolerates.
    fn remove_all(&self, envelopes: &[Envelope]) -> std::io::Result<()> {
        for envelope in envelopes {
            match std::fs::remove_file(self.messages.join(&envelope.name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Moves messages to the dead-letter folder, with their final receive counts.
    fn bury_all(&self, envelopes: &[Envelope]) -> std::io::Result<()> {
        if envelopes.is_empty() {
            return Ok(());
        }
        // The final count first, in place; then one rename moves it, so the message is always
        // in exactly one of the two folders.
        self.write_all(envelopes)?;
        for envelope in envelopes {
            std::fs::rename(
                self.messages.join(&envelope.name),
                self.dead.join(&envelope.name),
            )?;
        }
        sync_folder(&self.dead)?;
        sync_folder(&self.messages)
    }
}

fn sync_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

fn encode(envelope: &Envelope) -> String {
    json!({
        "id": envelope.id,
        "body": envelope.body,
        "receives": envelope.receives,
        "visible_at_ms": envelope.visible_at_ms,
    })
    .to_string()
}

fn decode(name: &str, text: &str) -> Option<Envelope> {
    let value: Value = serde_json::from_str(text).ok()?;
    Some(Envelope {
        name: name.to_owned(),
        id: value["id"].as_str()?.to_owned(),
        body: value["body"].as_str()?.to_owned(),
        receives: u32::try_from(value["receives"].as_u64()?).ok()?,
        visible_at_ms: value["visible_at_ms"].as_u64().unwrap_or(0),
    })
}

/// The SQS event Lambda would receive for this batch.
fn event_of(batch: &[Envelope]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = batch
        .iter()
        .map(|envelope| {
            let mut message = SqsMessage::default();
            message.message_id = Some(envelope.id.clone());
            message.receipt_handle = Some(format!("local-{}-{}", envelope.id, envelope.receives));
            message.body = Some(envelope.body.clone());
            message.attributes = HashMap::from([
                (
                    "ApproximateReceiveCount".to_owned(),
                    envelope.receives.to_string(),
                ),
                ("SenderId".to_owned(), "tally-local".to_owned()),
            ]);
            message.event_source = Some("aws:sqs".into());
            message.event_source_arn =
                Some("arn:aws:sqs:us-east-1:000000000000:tally-render".into());
            message.aws_region = Some("us-east-1".into());
            message
        })
        .collect();
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_in(dir: &Path) -> (Spool, Vec<Envelope>, Vec<String>) {
        let (spool, pending) = Spool::open(dir).unwrap_or_else(|e| panic!("open the spool: {e}"));
        let dead = LocalDeadLetters::open(dir)
            .unwrap_or_else(|e| panic!("open the dead letters: {e}"))
            .bodies();
        (spool, pending, dead)
    }

    /// An unreadable message the worker dead-letters itself is on disk with the buried ones,
    /// so it too outlives the process.
    #[tokio::test]
    async fn a_message_dead_lettered_by_the_worker_stays_dead_across_restarts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, ..) = spool_in(dir.path());
        let mut poison = Envelope::new("poison".into());
        spool
            .write_all(std::slice::from_ref(&poison))
            .unwrap_or_else(|e| panic!("{e}"));
        poison.receives = 5;
        spool
            .bury_all(std::slice::from_ref(&poison))
            .unwrap_or_else(|e| panic!("{e}"));
        let dead = LocalDeadLetters::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        dead.dead_letter("not json")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dead.bodies(), ["poison", "not json"]);

        let (_, pending, mut dead) = spool_in(dir.path());
        assert!(pending.is_empty());
        dead.sort();
        assert_eq!(dead, ["not json", "poison"]);
    }

    #[test]
    fn messages_and_their_receive_counts_outlive_the_process() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, pending, dead) = spool_in(dir.path());
        assert!(pending.is_empty() && dead.is_empty());
        let mut first = Envelope::new("first".into());
        let second = Envelope::new("second".into());
        let third = Envelope::new("third".into());
        spool
            .write_all(&[first.clone(), second.clone(), third.clone()])
            .unwrap_or_else(|e| panic!("{e}"));
        first.receives = 2;
        first.visible_at_ms = 1234;
        spool
            .write_all(std::slice::from_ref(&first))
            .unwrap_or_else(|e| panic!("{e}"));
        spool
            .remove_all(std::slice::from_ref(&second))
            .unwrap_or_else(|e| panic!("{e}"));
        // A write that a crash cut short leaves a temporary file and the previous version.
        std::fs::write(dir.path().join("messages").join("x.json.tmp"), "{\"id\":")
            .unwrap_or_else(|e| panic!("{e}"));

        let (_, pending, _) = spool_in(dir.path());
        let seen: Vec<_> = pending
            .iter()
            .map(|e| (e.id.as_str(), e.body.as_str(), e.receives, e.visible_at_ms))
            .collect();
        assert_eq!(
            seen,
            [
                (first.id.as_str(), "first", 2, 1234),
                (third.id.as_str(), "third", 0, 0)
            ]
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("messages"))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(left.len(), 2, "the temporary file is gone: {left:?}");
    }

    #[test]
    fn dead_letters_stay_dead_across_restarts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, ..) = spool_in(dir.path());
        let mut poison = Envelope::new("poison".into());
        let fine = Envelope::new("fine".into());
        spool
            .write_all(&[poison.clone(), fine.clone()])
            .unwrap_or_else(|e| panic!("{e}"));
        poison.receives = 5;
        spool
            .bury_all(std::slice::from_ref(&poison))
            .unwrap_or_else(|e| panic!("{e}"));

        let (_, pending, dead) = spool_in(dir.path());
        assert_eq!(
            pending.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["fine"]
        );
        assert_eq!(dead, ["poison"]);
    }

    #[test]
    fn a_file_put_there_by_hand_is_set_aside_not_delivered() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, ..) = spool_in(dir.path());
        std::fs::write(spool.messages.join("0-manual.json"), "not json")
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, pending, _) = spool_in(dir.path());
        assert!(pending.is_empty());
        assert!(spool.messages.join("0-manual.unreadable").exists());
    }
}
