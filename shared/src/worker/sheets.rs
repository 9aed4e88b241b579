//! The last step of an invites job that asked for print sheets: one PDF of every card, nine a
//! page, drawn from the names and URLs the chunks' segments recorded (the chunks made no PNGs
//! for it). The whole document is drawn here, by one worker under the job's lease, because a
//! PDF's pages share one set of subset fonts and one cross-reference table: drawing pages in
//! chunks would mean merging PDFs, which no small, well-kept crate does without re-encoding.
//! A 10,000-guest job is 1,112 pages; the segments' headers it reads are about 200 bytes a
//! card, and the document is held in memory until it is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::segment::Segment;
use super::{WorkError, Worker};
use crate::domain::{Job, SheetPaper};
use crate::objects::ObjectKey;
use crate::ports::StoreError;
use crate::render;

/// How often the builder records how many cards it has drawn (one small write each time).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl Worker {
    /// Draws the job's print sheets on `paper` and stores them as `file`, recording its
    /// progress (cards drawn) on the job as it goes.
    pub(super) async fn build_sheets(
        &self,
        job: &Job,
        paper: SheetPaper,
        file: &ObjectKey,
    ) -> Result<(), WorkError> {
        let Some(poll) = self.store.poll(job.poll_id).await? else {
            return Err(WorkError::Render("the poll was deleted".into()));
        };
        let mut cards = Vec::with_capacity(usize::try_from(job.total).unwrap_or(0));
        for chunk in 0..job.chunks_total {
            let key = ObjectKey::Segment { job: job.id, chunk };
            let segment = Segment::parse(self.blobs.get(&key.to_string()).await?).map_err(|e| {
                WorkError::Store(StoreError::Internal(format!("a damaged segment: {e}")))
            })?;
            cards.extend(segment.cards);
        }
        let drawn = Arc::new(AtomicU32::new(0));
        let counter = drawn.clone();
        let paper = match paper {
            SheetPaper::A4 => render::Paper::A4,
            SheetPaper::Letter => render::Paper::Letter,
        };
        // Drawing is CPU work: off the async threads, while this task reports its progress.
        let mut drawing = tokio::task::spawn_blocking(move || {
            let layout = render::CardLayout::new(&poll.question, poll.event_name.as_deref());
            let texts: Vec<render::CardText<'_>> = cards
                .iter()
                .map(|c| render::CardText {
                    guest_name: &c.name,
                    url: &c.url,
                    short_url: None,
                })
                .collect();
            render::pdf_sheets_with_progress(&texts, paper, &layout, &|n| {
                counter.store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
            })
        });
        let pdf = loop {
            tokio::select! {
                done = &mut drawing => break done,
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    self.store.record_bundled(job.id, drawn.load(Ordering::Relaxed)).await?;
                }
            }
        };
        let pdf = pdf
            .map_err(|e| WorkError::Render(e.to_string()))?
            .map_err(|e| WorkError::Render(e.to_string()))?;
        self.blobs
            .put(&file.to_string(), pdf, file.content_type())
            .await?;
        Ok(())
    }
}
