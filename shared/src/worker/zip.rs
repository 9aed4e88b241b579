//! The invites job's last step: every card streamed into one ZIP, uploaded in parts, so that
//! memory holds a few cards and about two parts whatever the number of guests.

use std::sync::Arc;

use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use super::{PARALLEL_IO, WorkError, Worker};
use crate::domain::Job;
use crate::objects::ObjectKey;
use crate::ports::{BlobStore, StoreError, Upload};

/// ZIP upload part size: S3's minimum is 5 MiB; memory holds about two parts.
const PART_SIZE: usize = 8 * 1024 * 1024;

impl Worker {
    /// Streams every card of the job into one ZIP, uploaded in parts: memory holds a few
    /// cards and about two parts, whatever the number of guests.
    pub(super) async fn build_zip(&self, job: &Job, zip: &ObjectKey) -> Result<(), WorkError> {
        let cards = self
            .blobs
            .list(&ObjectKey::cards_of(job.id))
            .await?
            .iter()
            .map(|key| {
                ObjectKey::parse(key).ok_or_else(|| {
                    WorkError::Store(StoreError::Internal(format!("not a card's key: {key}")))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upload = self
            .blobs
            .start_upload(&zip.to_string(), zip.content_type())
            .await?;
        let result = stream_zip(&self.blobs, &upload, cards).await;
        match result {
            Ok(parts) => {
                self.blobs.finish_upload(&upload, parts).await?;
                Ok(())
            }
            Err(e) => {
                let _ = self.blobs.abort_upload(&upload).await;
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
    upload: &Upload,
    cards: Vec<ObjectKey>,
) -> Result<Vec<(i32, String)>, WorkError> {
    let (card_tx, mut card_rx) = mpsc::channel::<(String, Vec<u8>)>(PARALLEL_IO * 2);
    let (part_tx, mut part_rx) = mpsc::channel::<Vec<u8>>(1);
    // The ZIP writer is synchronous: it runs on a blocking thread, fed cards through one
    // channel and handing finished parts back through another.
    let zipper = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use std::io::Write;
        let options = ::zip::write::SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Stored);
        let mut zip = ::zip::ZipWriter::new_stream(PartWriter {
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
                    let bytes = blobs.get(&card.to_string()).await?;
                    Ok::<_, StoreError>((card.file_name(), bytes))
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
            match blobs.upload_part(upload, number, part).await {
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
    use crate::domain::JobId;
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
        async fn start_upload(&self, key: &str, _: &str) -> StoreResult<Upload> {
            Ok(upload(key))
        }
        async fn upload_part(&self, _: &Upload, n: i32, bytes: Vec<u8>) -> StoreResult<String> {
            if n >= self.fail_from {
                return Err(StoreError::Unavailable("part upload failed".into()));
            }
            self.uploaded.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut sizes) = self.sizes.lock() {
                sizes.push(bytes.len());
            }
            Ok(format!("etag-{n}"))
        }
        async fn finish_upload(&self, _: &Upload, _: Vec<(i32, String)>) -> StoreResult<()> {
            Ok(())
        }
        async fn abort_upload(&self, _: &Upload) -> StoreResult<()> {
            Ok(())
        }
        async fn presign_get(&self, _: &str, _: std::time::Duration) -> StoreResult<String> {
            Ok(String::new())
        }
    }

    fn upload(key: &str) -> Upload {
        Upload {
            key: key.to_owned(),
            id: "upload".into(),
        }
    }

    fn cards(n: usize) -> Vec<ObjectKey> {
        let job = JobId::new();
        (0..n)
            .map(|i| ObjectKey::card(job, u32::try_from(i).unwrap_or(u32::MAX), "guest"))
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
            stream_zip(&blobs, &upload("invites.zip"), cards(20)),
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
        let parts = stream_zip(&blobs, &upload("invites.zip"), cards(20))
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
}
