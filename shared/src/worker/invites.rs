//! An invites job's chunk: its guests' invites and cards, counted once.

use futures::{TryStreamExt, stream};

use super::{PARALLEL_IO, WorkError, Worker};
use crate::domain::{Invite, InviteToken, Job};
use crate::objects::ObjectKey;
use crate::ports::RenderMessage;
use crate::render;

impl Worker {
    /// Renders a chunk of invite cards, stores its invites and cards, and counts it once.
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
        let planned: Vec<(u32, String, InviteToken)> = message
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
            // What every card of the job shares is set once per chunk.
            let layout = render::CardLayout::new(&question, None);
            to_render
                .iter()
                .map(|(_, name, token)| {
                    let url = format!("{base}/i/{token}");
                    layout
                        .png(&render::CardText {
                            guest_name: name,
                            url: &url,
                            short_url: None,
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
                token_hash: token.hash(),
                poll_id: job.poll_id,
                job_id: job.id,
                index: *index,
                guest_name: name.clone(),
            })
            .collect();
        self.store.put_invites(&invites).await?;
        stream::iter(planned.iter().zip(cards).map(Ok::<_, WorkError>))
            .try_for_each_concurrent(PARALLEL_IO, |((index, name, _), png)| async move {
                let key = ObjectKey::card(job.id, *index, name);
                self.blobs
                    .put(&key.to_string(), png, key.content_type())
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
}
