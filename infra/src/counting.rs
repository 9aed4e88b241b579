//! [`CountingBlobs`]: a [`BlobStore`] that counts every call it passes on, so that tests and
//! the bench can say how many S3 requests of each kind a job made. The stack wraps the render
//! worker's store in one, below any wrapper a test adds, so the counts are the requests that
//! reached the S3 engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tally::ports::{BlobStore, StoreResult, Upload};

/// Calls by kind, since the stack started.
#[derive(Debug, Default)]
pub struct BlobCalls {
    pub put: AtomicU64,
    pub get: AtomicU64,
    pub list: AtomicU64,
    pub start_upload: AtomicU64,
    pub upload_part: AtomicU64,
    pub finish_upload: AtomicU64,
    pub abort_upload: AtomicU64,
}

/// A copy of the counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCounts {
    pub put: u64,
    pub get: u64,
    pub list: u64,
    pub start_upload: u64,
    pub upload_part: u64,
    pub finish_upload: u64,
    pub abort_upload: u64,
}

impl BlobCounts {
    /// Requests S3 bills as writes (PUT, COPY, POST, LIST): objects, the multipart upload's
    /// start, parts and completion, and listings.
    pub fn writes(&self) -> u64 {
        self.put + self.start_upload + self.upload_part + self.finish_upload + self.list
    }

    /// Requests S3 bills as reads (GET).
    pub fn reads(&self) -> u64 {
        self.get
    }

    /// The calls made since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            put: self.put - earlier.put,
            get: self.get - earlier.get,
            list: self.list - earlier.list,
            start_upload: self.start_upload - earlier.start_upload,
            upload_part: self.upload_part - earlier.upload_part,
            finish_upload: self.finish_upload - earlier.finish_upload,
            abort_upload: self.abort_upload - earlier.abort_upload,
        }
    }
}

impl BlobCalls {
    pub fn snapshot(&self) -> BlobCounts {
        let n = |c: &AtomicU64| c.load(Ordering::SeqCst);
        BlobCounts {
            put: n(&self.put),
            get: n(&self.get),
            list: n(&self.list),
            start_upload: n(&self.start_upload),
            upload_part: n(&self.upload_part),
            finish_upload: n(&self.finish_upload),
            abort_upload: n(&self.abort_upload),
        }
    }
}

#[derive(Debug)]
pub struct CountingBlobs {
    inner: Arc<dyn BlobStore>,
    calls: Arc<BlobCalls>,
}

impl CountingBlobs {
    pub fn new(inner: Arc<dyn BlobStore>, calls: Arc<BlobCalls>) -> Self {
        Self { inner, calls }
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

#[async_trait]
impl BlobStore for CountingBlobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> StoreResult<()> {
        count(&self.calls.put);
        self.inner.put(key, bytes, content_type).await
    }
    async fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        count(&self.calls.get);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        count(&self.calls.list);
        self.inner.list(prefix).await
    }
    async fn start_upload(&self, key: &str, content_type: &str) -> StoreResult<Upload> {
        count(&self.calls.start_upload);
        self.inner.start_upload(key, content_type).await
    }
    async fn upload_part(&self, upload: &Upload, n: i32, bytes: Vec<u8>) -> StoreResult<String> {
        count(&self.calls.upload_part);
        self.inner.upload_part(upload, n, bytes).await
    }
    async fn finish_upload(&self, upload: &Upload, parts: Vec<(i32, String)>) -> StoreResult<()> {
        count(&self.calls.finish_upload);
        self.inner.finish_upload(upload, parts).await
    }
    async fn abort_upload(&self, upload: &Upload) -> StoreResult<()> {
        count(&self.calls.abort_upload);
        self.inner.abort_upload(upload).await
    }
    async fn presign_get(&self, key: &str, valid_for: Duration) -> StoreResult<String> {
        // Signing is local: no request, nothing to count.
        self.inner.presign_get(key, valid_for).await
    }
}
