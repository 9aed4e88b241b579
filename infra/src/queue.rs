//! The in-process stand-in for SQS → Lambda: messages sent to it are delivered to the render
//! function's handler ([`Worker::handle`]) as real `SqsEvent` payloads, in batches of up to
//! ten, with SQS's semantics: a message reported as failed comes back after the visibility
//! timeout with its `ApproximateReceiveCount` raised, and after `max_receives` deliveries it
//! moves to the dead-letter queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use tally::ports::{RenderMessage, RenderQueue, StoreError, StoreResult};
use tally::worker::Worker;
use tokio::sync::{Semaphore, mpsc};

/// SQS → Lambda delivers at most ten messages per batch.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
struct Envelope {
    id: String,
    body: String,
    receives: u32,
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
    dead: Arc<Mutex<Vec<String>>>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue").finish_non_exhaustive()
    }
}

impl LocalQueue {
    /// Starts delivering to `worker`; the delivery loop ends when every sender is dropped.
    pub fn start(worker: Worker, options: QueueOptions) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
        let dead = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let queue = Self {
            tx: tx.clone(),
            dead: dead.clone(),
            in_flight: in_flight.clone(),
        };
        let redeliver = tx.downgrade();
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
                let (worker, dead, redeliver, in_flight) = (
                    worker.clone(),
                    dead.clone(),
                    redeliver.clone(),
                    in_flight.clone(),
                );
                tokio::spawn(async move {
                    let _slot = slot;
                    for envelope in &mut batch {
                        envelope.receives += 1;
                    }
                    let response = worker.handle(event_of(&batch)).await;
                    let failed: Vec<&str> = response
                        .batch_item_failures
                        .iter()
                        .map(|f| f.item_identifier.as_str())
                        .collect();
                    for envelope in batch {
                        if !failed.contains(&envelope.id.as_str()) {
                            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        } else if envelope.receives >= options.max_receives {
                            tracing::warn!(message_id = %envelope.id, "moved to the dead-letter queue");
                            dead.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(envelope.body);
                            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        } else if let Some(tx) = redeliver.upgrade() {
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

    /// Bodies of the messages that went to the dead-letter queue.
    pub fn dead_letters(&self) -> Vec<String> {
        self.dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Messages sent and not yet processed or dead-lettered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Enqueues a raw body, as any SQS client could (for poison-message tests).
    pub fn send_raw(&self, body: String) -> StoreResult<()> {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.tx
            .send(Envelope {
                id: uuid::Uuid::new_v4().to_string(),
                body,
                receives: 0,
            })
            .map_err(|_| StoreError::Unavailable("the local queue has stopped".into()))
    }
}

#[async_trait]
impl RenderQueue for LocalQueue {
    async fn send(&self, messages: &[RenderMessage]) -> StoreResult<()> {
        for message in messages {
            self.send_raw(
                serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?,
            )?;
        }
        Ok(())
    }
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
