//! Jobs of one file: the poll's share QR code and its results chart, each counted as one
//! chunk.

use super::{WorkError, Worker};
use crate::domain::{Job, QrFormat};
use crate::objects::ObjectKey;
use crate::render;

impl Worker {
    /// The share QR code, as PNG or SVG, encoding the poll's public page.
    pub(super) async fn qr(&self, job: &Job) -> Result<(), WorkError> {
        let url = format!(
            "{}/p/{}",
            self.public_base_url.trim_end_matches('/'),
            job.poll_id
        );
        let key = ObjectKey::file_of(job);
        let bytes = match job.format.unwrap_or(QrFormat::Png) {
            QrFormat::Png => render::qr_png(&url).map_err(|e| WorkError::Render(e.to_string()))?,
            QrFormat::Svg => render::qr_svg(&url)
                .map_err(|e| WorkError::Render(e.to_string()))?
                .into_bytes(),
        };
        self.store_single_file(job, &key, bytes).await
    }

    /// A bar chart of the poll's counts as they are now.
    pub(super) async fn chart(&self, job: &Job) -> Result<(), WorkError> {
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
        self.store_single_file(job, &ObjectKey::file_of(job), png)
            .await
    }

    /// Stores the job's one file and counts it as the job's one chunk.
    async fn store_single_file(
        &self,
        job: &Job,
        key: &ObjectKey,
        bytes: Vec<u8>,
    ) -> Result<(), WorkError> {
        self.blobs
            .put(&key.to_string(), bytes, key.content_type())
            .await?;
        self.store.record_chunk(job.id, 0, 1, 0).await?;
        Ok(())
    }
}
