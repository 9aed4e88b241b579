//! An invites job's chunk: its guests' cards, stored as one segment of the ZIP and counted
//! once. The invites themselves were stored when the guests were added (or reissued); a card
//! carries the guest's live token, derived again here from the invite key, so any job renders
//! the same card for the same guest and generation. A job of print sheets stores the same
//! segment without the PNGs: its PDF is drawn at the end, from the names and URLs.

use super::segment::{Segment, SegmentCard};
use super::{WorkError, Worker};
use crate::domain::{InviteToken, Job};
use crate::objects::ObjectKey;
use crate::ports::RenderMessage;
use crate::render;

impl Worker {
    /// Renders a chunk of invite cards, stores its segment (every card of the chunk in one
    /// object), and counts it once. A redelivered chunk makes the same tokens and cards and
    /// writes the same segment again.
    pub(super) async fn invite_chunk(
        &self,
        job: &Job,
        message: &RenderMessage,
    ) -> Result<(), WorkError> {
        let Some(poll) = self.store.poll(job.poll_id).await? else {
            self.store.fail_job(job.id, "The poll was deleted.").await?;
            return Ok(());
        };
        let base = self.public_base_url.trim_end_matches('/').to_owned();
        let planned: Vec<(u32, InviteToken)> = message
            .guests
            .iter()
            .enumerate()
            .map(|(i, card)| {
                let index = message.start + u32::try_from(i).unwrap_or(u32::MAX);
                let token = self
                    .invite_key
                    .token(job.poll_id, &card.guest, card.generation);
                (index, token)
            })
            .collect();
        let question = poll.question.clone();
        let event_name = poll.event_name.clone();
        let sheets = job.sheets.is_some();
        let guests = message.guests.clone();
        let made_at = self.clock.now().unix_timestamp();
        // Rendering and hashing are CPU work: off the async threads, one chunk at a time.
        let segment = tokio::task::spawn_blocking(move || {
            // What every card of the job shares is set once per chunk.
            let layout = render::CardLayout::new(&question, event_name.as_deref());
            let mut cards = Vec::with_capacity(guests.len());
            let mut pngs = Vec::with_capacity(guests.len());
            for (guest, (index, token)) in guests.iter().zip(&planned) {
                let url = format!("{base}/i/{token}");
                let text = render::CardText {
                    guest_name: &guest.name,
                    url: &url,
                    short_url: None,
                };
                // Print sheets are drawn as vectors when the job finishes, from the names and
                // URLs this segment records; a PNG would be made only to be thrown away. The
                // URL is still checked here, so that a card that cannot be made fails its
                // chunk (and is retried) as a PNG card would.
                let png = if sheets {
                    render::check_card_url(&url)
                        .map(|()| Vec::new())
                        .map_err(|e| WorkError::Render(e.to_string()))?
                } else {
                    layout
                        .png(&text)
                        .map_err(|e| WorkError::Render(e.to_string()))?
                };
                cards.push(SegmentCard {
                    index: *index,
                    name: guest.name.clone(),
                    email: guest.email.clone(),
                    url,
                    crc32: crc32fast::hash(&png),
                    size: u32::try_from(png.len()).map_err(|e| WorkError::Render(e.to_string()))?,
                    made_at,
                });
                pngs.push(png);
            }
            Segment::encode(&cards, &pngs).map_err(WorkError::Render)
        })
        .await
        .map_err(|e| WorkError::Render(e.to_string()))??;

        let key = ObjectKey::Segment {
            job: job.id,
            chunk: message.chunk,
        };
        self.blobs
            .put(&key.to_string(), segment, key.content_type())
            .await?;
        let done = u32::try_from(message.guests.len()).unwrap_or(u32::MAX);
        if !self
            .store
            .record_chunk(job.id, message.chunk, done, 0)
            .await?
        {
            tracing::info!("chunk was counted before (redelivery)");
        }
        Ok(())
    }
}
