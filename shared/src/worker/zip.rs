//! The invites job's last step: the ZIP, assembled from the chunks' segments (one object per
//! 100 cards, written as the cards were made, with their CRC-32s), plus `manifest.csv` and the
//! central directory, streamed into a multipart upload. Nothing is rendered or hashed again,
//! and the builder reads one object per chunk rather than one per card; memory holds a few
//! segments and a few parts, whatever the number of guests.
//!
//! The ZIP is written here rather than with a ZIP library because its entries come from
//! segments made elsewhere: every entry is stored (PNGs are compressed already), named in
//! UTF-8 (general-purpose flag bit 11) and timed twice, in DOS time and in the extended
//! timestamp field (0x5455, Unix seconds, UTC), which unzip tools prefer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use time::OffsetDateTime;

use super::names::{FileNames, MANIFEST, ManifestRow, manifest_csv};
use super::segment::Segment;
use super::{WorkError, Worker};
use crate::domain::{Job, JobId};
use crate::objects::ObjectKey;
use crate::ports::{BlobStore, StoreError, StoreResult, Upload};

/// Upload part size, exactly (S3's minimum, except for the last part): the part being
/// filled and those uploading are most of the step's memory, and 336 MB of cards make 65
/// parts, far below S3's 10,000.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Segments fetched ahead of the one being written, and parts uploading at once. Each
/// segment in hand is about 3.5 MB and each part 5 MiB, so these bound the step's memory
/// (about 25 MB); more of either made no faster ZIP on two cores, only a bigger process.
const FETCH_AHEAD: usize = 2;
const UPLOADS_AT_ONCE: usize = 2;
/// How often the builder records its progress on the job (one small write each time).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl Worker {
    /// Assembles the job's ZIP from its segments into `zip`, recording its progress on the
    /// job as it goes.
    pub(super) async fn build_zip(&self, job: &Job, zip: &ObjectKey) -> Result<(), WorkError> {
        let upload = self
            .blobs
            .start_upload(&zip.to_string(), zip.content_type())
            .await?;
        let store = self.store.clone();
        let id = job.id;
        let result = assemble(
            &self.blobs,
            &upload,
            id,
            job.chunks_total,
            self.clock.now(),
            move |bundled| {
                let store = store.clone();
                async move { store.record_bundled(id, bundled).await.map(|_| ()) }
            },
        )
        .await;
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

/// Streams the segments of chunks `0..chunks` into the upload as one ZIP, fetching ahead
/// and uploading several parts at once; calls `progress` with the cards bundled so far at
/// most every [`PROGRESS_EVERY`]. Returns the parts for `finish_upload`. The first failure
/// stops everything: uploads still running are cancelled when their set is dropped.
async fn assemble<P>(
    blobs: &Arc<dyn BlobStore>,
    upload: &Upload,
    job: JobId,
    chunks: u32,
    now: OffsetDateTime,
    progress: impl Fn(u32) -> P,
) -> Result<Vec<(i32, String)>, WorkError>
where
    // A plain closure returning a future rather than an async closure: the future must be
    // `Send` for every caller's lifetime, which the worker's spawned tasks need.
    P: Future<Output = StoreResult<()>> + Send,
{
    let mut segments = stream::iter(0..chunks)
        .map(|chunk| {
            let blobs = blobs.clone();
            let key = ObjectKey::Segment { job, chunk }.to_string();
            // A task of its own, so that fetching goes on while this loop waits for an upload.
            tokio::spawn(async move { blobs.get(&key).await })
        })
        .buffered(FETCH_AHEAD);
    let mut uploads = tokio::task::JoinSet::new();
    let mut parts = Vec::new();
    let mut number = 0;
    let mut zip = ZipBuilder::default();
    // The first segment's cards are reported at once, later ones every PROGRESS_EVERY.
    let mut reported: Option<Instant> = None;
    loop {
        let next = segments.next().await;
        let last = next.is_none();
        match next {
            Some(fetched) => {
                let bytes = fetched.map_err(|e| WorkError::Render(e.to_string()))??;
                let segment = Segment::parse(bytes).map_err(|e| {
                    WorkError::Store(StoreError::Internal(format!("a damaged segment: {e}")))
                })?;
                zip.add_segment(&segment).map_err(WorkError::Render)?;
            }
            None => zip.finish(now).map_err(WorkError::Render)?,
        }
        while let Some(part) = zip.take_part(last) {
            if uploads.len() >= UPLOADS_AT_ONCE
                && let Some(done) = uploads.join_next().await
            {
                parts.push(uploaded(done)?);
            }
            number += 1;
            let (blobs, upload, n) = (blobs.clone(), upload.clone(), number);
            uploads.spawn(async move { blobs.upload_part(&upload, n, part).await.map(|e| (n, e)) });
        }
        if last {
            break;
        }
        if reported.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            progress(zip.cards).await?;
            reported = Some(Instant::now());
        }
    }
    while let Some(done) = uploads.join_next().await {
        parts.push(uploaded(done)?);
    }
    parts.sort_unstable_by_key(|(n, _)| *n);
    Ok(parts)
}

fn uploaded(
    joined: Result<StoreResult<(i32, String)>, tokio::task::JoinError>,
) -> Result<(i32, String), WorkError> {
    Ok(joined.map_err(|e| WorkError::Render(e.to_string()))??)
}

/// The ZIP's bytes as they are made: entries are appended to `out` (handed off part by part),
/// while the central directory, which comes last, grows in memory (about 100 bytes a card).
#[derive(Debug, Default)]
struct ZipBuilder {
    /// The part being filled, never full: a full one moves to `full`.
    out: Vec<u8>,
    full: std::collections::VecDeque<Vec<u8>>,
    /// Bytes written so far, handed off or not: the next entry's offset.
    offset: u64,
    central: Vec<u8>,
    entries: u32,
    cards: u32,
    names: FileNames,
    rows: Vec<ManifestRow>,
    started: bool,
}

impl ZipBuilder {
    fn add_segment(&mut self, segment: &Segment) -> Result<(), String> {
        if !self.started {
            // No guest's file may take the manifest's name.
            self.names.reserve(MANIFEST);
            self.started = true;
        }
        for (card, png) in segment.iter() {
            let file = self.names.next(&card.name, "png");
            let made = OffsetDateTime::from_unix_timestamp(card.made_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            self.entry(&file, png, card.crc32, made)?;
            self.cards += 1;
            self.rows.push(ManifestRow {
                name: card.name.clone(),
                reference: card.index + 1,
                email: card.email.clone(),
                invite_url: card.url.clone(),
                file,
            });
        }
        Ok(())
    }

    /// Appends the manifest, the central directory and its end record.
    fn finish(&mut self, now: OffsetDateTime) -> Result<(), String> {
        let manifest = manifest_csv(&self.rows);
        self.entry(MANIFEST, &manifest, crc32fast::hash(&manifest), now)?;
        let central_offset = small(self.offset)?;
        let central_size = u32::try_from(self.central.len()).map_err(|e| e.to_string())?;
        let entries = u16::try_from(self.entries).map_err(|_| "more than 65,535 entries")?;
        let central = std::mem::take(&mut self.central);
        self.write(&central);
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&[0; 4]); // this disk, the central directory's disk
        end.extend_from_slice(&entries.to_le_bytes());
        end.extend_from_slice(&entries.to_le_bytes());
        end.extend_from_slice(&central_size.to_le_bytes());
        end.extend_from_slice(&central_offset.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes()); // no comment
        self.write(&end);
        Ok(())
    }

    /// One stored entry: its local header and data now, its central record for later.
    fn entry(
        &mut self,
        name: &str,
        data: &[u8],
        crc: u32,
        modified: OffsetDateTime,
    ) -> Result<(), String> {
        let offset = small(self.offset)?;
        let size = u32::try_from(data.len()).map_err(|e| e.to_string())?;
        let name_len = u16::try_from(name.len()).map_err(|e| e.to_string())?;
        let (dos_time, dos_date) = dos(modified);
        let unix = u32::try_from(modified.unix_timestamp().max(0)).unwrap_or(u32::MAX);
        // Extended timestamp: tag, length 5, flags (bit 0: modification time), the time.
        let mut extra = Vec::with_capacity(9);
        extra.extend_from_slice(&0x5455u16.to_le_bytes());
        extra.extend_from_slice(&5u16.to_le_bytes());
        extra.push(1);
        extra.extend_from_slice(&unix.to_le_bytes());
        let extra_len = u16::try_from(extra.len()).map_err(|e| e.to_string())?;
        // The fields the local header and the central record share, from "version needed".
        let mut common = Vec::with_capacity(26);
        common.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        common.extend_from_slice(&UTF8_NAMES.to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // stored
        common.extend_from_slice(&dos_time.to_le_bytes());
        common.extend_from_slice(&dos_date.to_le_bytes());
        common.extend_from_slice(&crc.to_le_bytes());
        common.extend_from_slice(&size.to_le_bytes()); // compressed
        common.extend_from_slice(&size.to_le_bytes()); // uncompressed
        common.extend_from_slice(&name_len.to_le_bytes());
        common.extend_from_slice(&extra_len.to_le_bytes());

        let mut local = Vec::with_capacity(30 + name.len() + extra.len());
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&common);
        local.extend_from_slice(name.as_bytes());
        local.extend_from_slice(&extra);
        self.write(&local);
        self.write(data);

        let central = &mut self.central;
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        // Made by: Unix (3), spec 3.0, so that the permissions below are read.
        central.extend_from_slice(&0x031Eu16.to_le_bytes());
        central.extend_from_slice(&common);
        central.extend_from_slice(&0u16.to_le_bytes()); // no comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes()); // a file, rw-r--r--
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&extra);
        self.entries += 1;
        Ok(())
    }

    /// Appends `bytes`, cut into parts of exactly [`PART_SIZE`], each allocated once at that
    /// size.
    fn write(&mut self, mut bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.out.capacity() == 0 {
                self.out.reserve_exact(PART_SIZE);
            }
            let room = PART_SIZE.saturating_sub(self.out.len());
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.out.extend_from_slice(now);
            bytes = later;
            if self.out.len() >= PART_SIZE {
                self.full.push_back(std::mem::take(&mut self.out));
            }
        }
    }

    /// The next full part; after the last bytes (`last`), whatever is left as the last part.
    fn take_part(&mut self, last: bool) -> Option<Vec<u8>> {
        self.full
            .pop_front()
            .or_else(|| (last && !self.out.is_empty()).then(|| std::mem::take(&mut self.out)))
    }
}

/// General-purpose flag bit 11: the entry's name is UTF-8.
const UTF8_NAMES: u16 = 1 << 11;

/// An offset or size in the 32 bits a ZIP without ZIP64 records has: 4 GiB, forty times
/// what 10,000 cards take.
fn small(n: u64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| "the ZIP would pass 4 GiB".to_owned())
}

/// MS-DOS time and date (2-second resolution, 1980 to 2107), in UTC.
fn dos(t: OffsetDateTime) -> (u16, u16) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = u16::try_from(t.year().clamp(1980, 2107) - 1980).unwrap_or(0);
    let time =
        (u16::from(t.hour()) << 11) | (u16::from(t.minute()) << 5) | u16::from(t.second() / 2);
    let date = (year << 9) | (u16::from(u8::from(t.month())) << 5) | u16::from(t.day());
    (time, date)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::super::segment::SegmentCard;
    use super::*;

    /// Segments of `cards` cards of `card_size` bytes each, and an upload that fails from
    /// part `fail_from` on; the parts are kept.
    #[derive(Debug)]
    struct Parts {
        cards: u32,
        card_size: usize,
        fail_from: i32,
        uploaded: AtomicUsize,
        parts: Mutex<Vec<(i32, Vec<u8>)>>,
    }

    impl Parts {
        fn new(cards: u32, card_size: usize, fail_from: i32) -> Self {
            Self {
                cards,
                card_size,
                fail_from,
                uploaded: AtomicUsize::new(0),
                parts: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl BlobStore for Parts {
        async fn put(&self, _: &str, _: Vec<u8>, _: &str) -> StoreResult<()> {
            Ok(())
        }
        async fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
            let Some(ObjectKey::Segment { chunk, .. }) = ObjectKey::parse(key) else {
                return Err(StoreError::Internal(format!("not a segment: {key}")));
            };
            let (cards, pngs): (Vec<_>, Vec<_>) = (0..self.cards)
                .map(|i| {
                    let index = chunk * self.cards + i;
                    let png = vec![u8::try_from(index % 251).unwrap_or(0); self.card_size];
                    let card = SegmentCard {
                        index,
                        name: if index.is_multiple_of(2) {
                            "李雷".into()
                        } else {
                            format!("Guest {index}")
                        },
                        email: Some(format!("g{index}@example.com")),
                        url: format!("http://t/i/{index}"),
                        crc32: crc32fast::hash(&png),
                        size: u32::try_from(png.len()).unwrap_or(0),
                        made_at: 1_764_590_400, // 2025-12-01 12:00:00 UTC
                    };
                    (card, png)
                })
                .unzip();
            Segment::encode(&cards, &pngs).map_err(StoreError::Internal)
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
            if let Ok(mut parts) = self.parts.lock() {
                parts.push((n, bytes));
            }
            Ok(format!("etag-{n}"))
        }
        async fn finish_upload(&self, _: &Upload, _: Vec<(i32, String)>) -> StoreResult<()> {
            Ok(())
        }
        async fn abort_upload(&self, _: &Upload) -> StoreResult<()> {
            Ok(())
        }
        async fn presign_get(&self, _: &str, _: Duration) -> StoreResult<String> {
            Ok(String::new())
        }
    }

    fn upload(key: &str) -> Upload {
        Upload {
            key: key.to_owned(),
            id: "upload".into(),
        }
    }

    async fn run(store: &Arc<Parts>, chunks: u32) -> Result<Vec<(i32, String)>, WorkError> {
        let blobs: Arc<dyn BlobStore> = store.clone();
        let now = OffsetDateTime::from_unix_timestamp(1_764_594_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assemble(
            &blobs,
            &upload("invites.zip"),
            JobId::new(),
            chunks,
            now,
            |_| async { Ok(()) },
        )
        .await
    }

    /// A part's upload fails: the ZIP stops with that error instead of waiting forever for
    /// an uploader that is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_part_upload_stops_the_zip_with_its_error() {
        let store = Arc::new(Parts::new(4, 1024 * 1024, 2));
        let outcome = tokio::time::timeout(Duration::from_secs(30), run(&store, 10))
            .await
            .unwrap_or_else(|_| panic!("the ZIP hung after a failed part upload"));
        match outcome {
            Err(WorkError::Store(StoreError::Unavailable(e))) => assert!(e.contains("part upload")),
            other => panic!("expected the upload's error, got {other:?}"),
        }
    }

    /// 10 segments of 4 one-MiB cards: parts numbered from 1, every one but the last exactly
    /// S3's minimum of 5 MiB (the parts in hand are the step's memory), and joined they are a ZIP that a ZIP library reads back: every card with
    /// its bytes, unique names (the duplicate `李雷` numbered), UTF-8 flags, the cards' times
    /// and the manifest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_parts_make_a_zip_of_every_card_and_the_manifest() {
        let store = Arc::new(Parts::new(4, 1024 * 1024, i32::MAX));
        let parts = run(&store, 10).await.unwrap_or_else(|e| panic!("{e}"));
        let numbers: Vec<i32> = parts.iter().map(|(n, _)| *n).collect();
        let count = i32::try_from(numbers.len()).unwrap_or(0);
        assert!(count > 2, "{numbers:?}");
        assert_eq!(numbers, (1..=count).collect::<Vec<_>>());
        let mut uploaded = store.parts.lock().map(|p| p.clone()).unwrap_or_default();
        uploaded.sort_by_key(|(n, _)| *n);
        let sizes: Vec<usize> = uploaded.iter().map(|(_, b)| b.len()).collect();
        assert!(
            sizes[..sizes.len() - 1]
                .iter()
                .all(|&n| n == 5 * 1024 * 1024),
            "{sizes:?}"
        );
        assert!(sizes.last().is_some_and(|&n| n > 0 && n <= 5 * 1024 * 1024));
        let zip: Vec<u8> = uploaded.into_iter().flat_map(|(_, b)| b).collect();

        let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(&zip))
            .unwrap_or_else(|e| panic!("not a ZIP: {e}"));
        assert_eq!(archive.len(), 41);
        let mut names = Vec::new();
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).unwrap_or_else(|e| panic!("{e}"));
            let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
            let start = usize::try_from(entry.header_start()).unwrap_or(0);
            let flags = u16::from_le_bytes([zip[start + 6], zip[start + 7]]);
            assert_eq!(flags & UTF8_NAMES, UTF8_NAMES, "{name}: UTF-8 flag");
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let stamp = entry.extra_data_fields().find_map(|f| match f {
                ::zip::extra_fields::ExtraField::ExtendedTimestamp(t) => t.mod_time(),
                _ => None,
            });
            if i < 40 {
                assert_eq!(bytes.len(), 1024 * 1024);
                assert_eq!(bytes[0], u8::try_from(i % 251).unwrap_or(0));
                assert_eq!(stamp, Some(1_764_590_400), "{name}");
                let dos = entry.last_modified().unwrap_or_default();
                assert_eq!(
                    (dos.year(), dos.month(), dos.day(), dos.hour()),
                    (2025, 12, 1, 12)
                );
            } else {
                assert_eq!(name, MANIFEST);
                assert_eq!(stamp, Some(1_764_594_000));
                let text = String::from_utf8(bytes).unwrap_or_default();
                assert_eq!(text.lines().count(), 41, "a header and one line a card");
                assert!(
                    text.contains(",1,g0@example.com,http://t/i/0,李雷.png\r\n"),
                    "{text}"
                );
                assert!(
                    text.contains(",3,g2@example.com,http://t/i/2,李雷 (2).png\r\n"),
                    "{text}"
                );
            }
            names.push(name);
        }
        assert_eq!(
            &names[..4],
            ["李雷.png", "Guest 1.png", "李雷 (2).png", "Guest 3.png"]
        );
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn dos_times_are_utc_with_two_second_steps() {
        let t = OffsetDateTime::from_unix_timestamp(1_764_590_401)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let (time, date) = dos(t);
        assert_eq!((time >> 11, (time >> 5) & 63, (time & 31) * 2), (12, 0, 0));
        assert_eq!(
            (1980 + (date >> 9), (date >> 5) & 15, date & 31),
            (2025, 12, 1)
        );
    }
}
