//! Job creation, written once: a request (the poll and what to make of it) becomes the
//! [`Job`] to store, the fingerprint the same request is recognised by, and the
//! [`RenderMessage`]s that carry its work to the render function. The jobs route, the
//! benchmarks and the tests all start their jobs here, so they cannot drift apart.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::job::{CHUNK_SIZE, request_fingerprint};
use crate::domain::{Card, Job, JobId, JobKind, OptionId, Poll, QrFormat, SheetPaper, Tally};
use crate::ports::RenderMessage;

/// What a job is asked to make.
#[derive(Debug, Clone, Copy)]
pub enum JobRequest<'a> {
    /// A card for each guest's live token (the guests read from the poll's list), then their
    /// ZIP. The same cards make the same tokens in any job, so a lost ZIP can be rebuilt.
    Invites(&'a [Card]),
    /// The same cards as print sheets on this paper: one PDF instead of the ZIP.
    Sheets(&'a [Card], SheetPaper),
    /// The poll's share QR code.
    Qr(QrFormat),
    /// A chart of the poll's counts as read with the request.
    Chart(&'a Tally),
}

impl JobRequest<'_> {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Invites(_) | Self::Sheets(..) => JobKind::Invites,
            Self::Qr(_) => JobKind::Qr,
            Self::Chart(_) => JobKind::Chart,
        }
    }
}

/// Why a job could not be planned: a failure of the server, not of the request.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("more guests than a job counts: {0}")]
    TooMany(usize),
}

/// A job ready to be stored and its work ready to be queued.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub job: Job,
    /// The request's fingerprint (owner, poll, kind and inputs): the same request within 24
    /// hours finds this job instead of making another.
    pub fingerprint: String,
    /// The job's chunks, in order: `CHUNK_SIZE` guests each, or one message for one file.
    pub messages: Vec<RenderMessage>,
}

impl JobPlan {
    /// The job `request` makes for `poll`'s owner at `now`, in chunks of [`CHUNK_SIZE`]
    /// guests. `request_id` is the API request's, carried so that one id finds the job's
    /// whole story in the logs.
    pub fn new(
        poll: &Poll,
        request: JobRequest<'_>,
        now: OffsetDateTime,
        request_id: Option<String>,
    ) -> Result<Self, PlanError> {
        Self::chunked(poll, request, CHUNK_SIZE, now, request_id)
    }

    /// [`JobPlan::new`] with `chunk_size` guests a message (at least one), for tests that need
    /// several chunks of few guests.
    pub fn chunked(
        poll: &Poll,
        request: JobRequest<'_>,
        chunk_size: usize,
        now: OffsetDateTime,
        request_id: Option<String>,
    ) -> Result<Self, PlanError> {
        let kind = request.kind();
        let sheets = match request {
            JobRequest::Sheets(_, paper) => Some(paper),
            JobRequest::Invites(_) | JobRequest::Qr(_) | JobRequest::Chart(_) => None,
        };
        let (total, format, fingerprint) = match request {
            JobRequest::Invites(guests) | JobRequest::Sheets(guests, _) => (
                guests.len(),
                None,
                request_fingerprint(
                    poll.owner_id,
                    poll.id,
                    kind,
                    &CardInputs::new(poll, guests, sheets),
                ),
            ),
            JobRequest::Qr(format) => (
                1,
                Some(format),
                request_fingerprint(poll.owner_id, poll.id, kind, &FileInputs::qr(format)),
            ),
            JobRequest::Chart(tally) => (
                1,
                None,
                request_fingerprint(
                    poll.owner_id,
                    poll.id,
                    kind,
                    &FileInputs::chart(poll, tally),
                ),
            ),
        };
        let chunk_size = chunk_size.max(1);
        let chunks: Vec<(u32, &[Card])> = match request {
            JobRequest::Invites(guests) | JobRequest::Sheets(guests, _) => guests
                .chunks(chunk_size)
                .enumerate()
                .map(|(i, chunk)| Ok((count(i * chunk_size)?, chunk)))
                .collect::<Result<_, PlanError>>()?,
            // One file is one chunk, with no guests.
            JobRequest::Qr(_) | JobRequest::Chart(_) => vec![(0, &[][..])],
        };
        let job = Job {
            id: JobId::new(),
            kind,
            poll_id: poll.id,
            owner_id: poll.owner_id,
            format,
            sheets,
            total: count(total)?,
            done: 0,
            failed: 0,
            chunks_total: count(chunks.len())?,
            chunks_done: 0,
            bundled: 0,
            created_at: now,
            completed_at: None,
            object_key: None,
            error: None,
        };
        let messages = chunks
            .into_iter()
            .enumerate()
            .map(|(chunk, (start, guests))| {
                Ok(RenderMessage {
                    job_id: job.id,
                    chunk: count(chunk)?,
                    start,
                    guests: guests.to_vec(),
                    request_id: request_id.clone(),
                })
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(Self {
            job,
            fingerprint,
            messages,
        })
    }
}

fn count(n: usize) -> Result<u32, PlanError> {
    u32::try_from(n).map_err(|_| PlanError::TooMany(n))
}

/// What an invites job's file depends on: its guests' cards, the text every card shares (the
/// worker reads it from the poll, so a renamed event or reworded question makes new cards
/// rather than finding yesterday's), and the file's form.
#[derive(Serialize)]
struct CardInputs<'a> {
    guests: &'a [Card],
    question: &'a str,
    event_name: Option<&'a str>,
    sheets: Option<SheetPaper>,
}

impl<'a> CardInputs<'a> {
    fn new(poll: &'a Poll, guests: &'a [Card], sheets: Option<SheetPaper>) -> Self {
        Self {
            guests,
            question: &poll.question,
            event_name: poll.event_name.as_deref(),
            sheets,
        }
    }
}

/// What a single file depends on besides the poll: a QR code's format; a chart's poll text
/// (its version) and the counts at the time of the request.
#[derive(Serialize)]
struct FileInputs<'a> {
    format: Option<QrFormat>,
    version: Option<u64>,
    ballots: Option<u64>,
    votes: Option<&'a BTreeMap<OptionId, u64>>,
}

impl<'a> FileInputs<'a> {
    fn qr(format: QrFormat) -> Self {
        Self {
            format: Some(format),
            version: None,
            ballots: None,
            votes: None,
        }
    }

    fn chart(poll: &Poll, tally: &'a Tally) -> Self {
        Self {
            format: None,
            version: Some(poll.version),
            ballots: Some(tally.ballots),
            votes: Some(&tally.per_option),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guests(n: usize) -> Vec<Card> {
        (0..n)
            .map(|i| Card {
                guest: crate::domain::GuestId::from_stored(format!("guest-{i:016}")),
                generation: 0,
                name: format!("Guest {i}"),
                email: None,
            })
            .collect()
    }

    fn plan(poll: &Poll, request: JobRequest<'_>) -> JobPlan {
        JobPlan::new(poll, request, poll.created_at, Some("req".into()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn invites_are_cut_into_chunks_that_cover_every_guest_once() {
        let poll = crate::domain::poll::tests::poll(OffsetDateTime::now_utc());
        let guests = guests(250);
        let plan = plan(&poll, JobRequest::Invites(&guests));
        let job = &plan.job;
        assert_eq!(
            (
                job.kind,
                job.total,
                job.chunks_total,
                job.owner_id,
                job.poll_id
            ),
            (JobKind::Invites, 250, 3, poll.owner_id, poll.id)
        );
        let shape: Vec<_> = plan
            .messages
            .iter()
            .map(|m| (m.job_id, m.chunk, m.start, m.guests.len()))
            .collect();
        assert_eq!(
            shape,
            [
                (job.id, 0, 0, 100),
                (job.id, 1, 100, 100),
                (job.id, 2, 200, 50)
            ]
        );
        let sent: Vec<Card> = plan
            .messages
            .iter()
            .flat_map(|m| m.guests.clone())
            .collect();
        assert_eq!(sent, guests);
        assert!(
            plan.messages
                .iter()
                .all(|m| m.request_id.as_deref() == Some("req"))
        );

        let small = JobPlan::chunked(
            &poll,
            JobRequest::Invites(&guests[..3]),
            1,
            poll.created_at,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let starts: Vec<_> = small.messages.iter().map(|m| (m.chunk, m.start)).collect();
        assert_eq!(starts, [(0, 0), (1, 1), (2, 2)]);
        assert_eq!(small.job.chunks_total, 3);
    }

    #[test]
    fn a_single_file_is_one_chunk_without_guests() {
        let poll = crate::domain::poll::tests::poll(OffsetDateTime::now_utc());
        let tally = Tally::default();
        for (request, format) in [
            (JobRequest::Qr(QrFormat::Svg), Some(QrFormat::Svg)),
            (JobRequest::Chart(&tally), None),
        ] {
            let plan = plan(&poll, request);
            assert_eq!(
                (
                    plan.job.kind,
                    plan.job.format,
                    plan.job.total,
                    plan.job.chunks_total
                ),
                (request.kind(), format, 1, 1)
            );
            assert_eq!(plan.messages.len(), 1);
            assert_eq!((plan.messages[0].chunk, plan.messages[0].start), (0, 0));
            assert!(plan.messages[0].guests.is_empty());
        }
    }

    /// The same request has the same fingerprint (and a new job id); any change in what the
    /// file depends on makes another, a reissued guest's card included.
    #[test]
    fn the_fingerprint_follows_the_request() {
        let poll = crate::domain::poll::tests::poll(OffsetDateTime::now_utc());
        let ten = guests(10);
        let tally = Tally::default();
        let voted = Tally {
            ballots: 1,
            ..Tally::default()
        };
        let renamed = Poll {
            event_name: Some("Gala".into()),
            ..poll.clone()
        };
        let a = plan(&poll, JobRequest::Invites(&ten));
        let b = plan(&poll, JobRequest::Invites(&ten));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.job.id, b.job.id);
        let mut reissued = ten.clone();
        reissued[3].generation = 1;
        let others = [
            plan(&poll, JobRequest::Invites(&reissued)).fingerprint,
            plan(&poll, JobRequest::Invites(&ten[..9])).fingerprint,
            plan(&poll, JobRequest::Sheets(&ten, SheetPaper::A4)).fingerprint,
            plan(&poll, JobRequest::Sheets(&ten, SheetPaper::Letter)).fingerprint,
            plan(&renamed, JobRequest::Invites(&ten)).fingerprint,
            plan(&poll, JobRequest::Qr(QrFormat::Png)).fingerprint,
            plan(&poll, JobRequest::Qr(QrFormat::Svg)).fingerprint,
            plan(&poll, JobRequest::Chart(&tally)).fingerprint,
            plan(&poll, JobRequest::Chart(&voted)).fingerprint,
        ];
        let mut all: Vec<&String> = others.iter().collect();
        all.push(&a.fingerprint);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10, "{all:?}");
    }
}
