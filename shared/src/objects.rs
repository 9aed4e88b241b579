//! The only place where an S3 object key is spelled. Every file the render worker writes lives
//! under `jobs/<job id>/`; each shape below is one variant, and [`ObjectKey::parse`] reads
//! them back. Keys are fixed by the job (and a chunk's number), so a repeated step writes the
//! same object again instead of a second one.

use std::fmt;

use crate::domain::{Job, JobId, JobKind, QrFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKey {
    /// `jobs/<job>/segments/<chunk, 5 digits>.seg`: one chunk's cards and what the ZIP needs
    /// to know about them (`worker::segment`). One object per chunk of 100 guests, rather
    /// than one per card: a tenth of a percent of the writes, and the ZIP's builder reads
    /// 100 objects for 10,000 cards.
    Segment { job: JobId, chunk: u32 },
    /// `jobs/<job>/invites.zip`: every card of an invites job, and its manifest.
    Zip { job: JobId },
    /// `jobs/<job>/invites.pdf`: every card of an invites job that asked for print sheets.
    Sheets { job: JobId },
    /// `jobs/<job>/qr.png` or `jobs/<job>/qr.svg`: the poll's share QR code.
    Qr { job: JobId, format: QrFormat },
    /// `jobs/<job>/chart.png`: the poll's results chart.
    Chart { job: JobId },
}

impl ObjectKey {
    /// The file a finished job is downloaded as. Every kind is named here, so a new kind
    /// cannot complete without saying where its file is.
    pub fn file_of(job: &Job) -> Self {
        match job.kind {
            JobKind::Invites if job.sheets.is_some() => Self::Sheets { job: job.id },
            JobKind::Invites => Self::Zip { job: job.id },
            JobKind::Qr => Self::Qr {
                job: job.id,
                format: job.format.unwrap_or(QrFormat::Png),
            },
            JobKind::Chart => Self::Chart { job: job.id },
        }
    }

    /// The object's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Segment { .. } => "application/octet-stream",
            Self::Chart { .. } => "image/png",
            Self::Zip { .. } => "application/zip",
            Self::Sheets { .. } => "application/pdf",
            Self::Qr {
                format: QrFormat::Png,
                ..
            } => "image/png",
            Self::Qr {
                format: QrFormat::Svg,
                ..
            } => "image/svg+xml",
        }
    }

    /// Reads a key back; `None` for anything that is not exactly one of the shapes above, so
    /// that `parse(key.to_string()) == Some(key)` and nothing else parses.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("jobs/")?;
        let (job, file) = rest.split_once('/')?;
        let job: JobId = job.parse().ok()?;
        let key = match file {
            "invites.zip" => Self::Zip { job },
            "invites.pdf" => Self::Sheets { job },
            "qr.png" => Self::Qr {
                job,
                format: QrFormat::Png,
            },
            "qr.svg" => Self::Qr {
                job,
                format: QrFormat::Svg,
            },
            "chart.png" => Self::Chart { job },
            segment => {
                let chunk = segment.strip_prefix("segments/")?.strip_suffix(".seg")?;
                if !chunk.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Self::Segment {
                    job,
                    chunk: chunk.parse().ok()?,
                }
            }
        };
        // Only the canonical spelling parses: a job id in another notation or a chunk number
        // without its zero padding are someone else's keys.
        (key.to_string() == text).then_some(key)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Segment { job, chunk } => write!(f, "jobs/{job}/segments/{chunk:05}.seg"),
            Self::Zip { job } => write!(f, "jobs/{job}/invites.zip"),
            Self::Sheets { job } => write!(f, "jobs/{job}/invites.pdf"),
            Self::Qr {
                job,
                format: QrFormat::Png,
            } => write!(f, "jobs/{job}/qr.png"),
            Self::Qr {
                job,
                format: QrFormat::Svg,
            } => write!(f, "jobs/{job}/qr.svg"),
            Self::Chart { job } => write!(f, "jobs/{job}/chart.png"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shape_round_trips() {
        let job = JobId::new();
        let keys = [
            ObjectKey::Segment { job, chunk: 7 },
            ObjectKey::Segment { job, chunk: 12_345 },
            ObjectKey::Zip { job },
            ObjectKey::Sheets { job },
            ObjectKey::Qr {
                job,
                format: QrFormat::Png,
            },
            ObjectKey::Qr {
                job,
                format: QrFormat::Svg,
            },
            ObjectKey::Chart { job },
        ];
        for key in keys {
            assert_eq!(ObjectKey::parse(&key.to_string()), Some(key), "{key}");
            assert!(
                key.to_string().starts_with(&format!("jobs/{job}/")),
                "{key}"
            );
        }
    }

    #[test]
    fn segment_keys_are_fixed_by_job_and_chunk() {
        let job = JobId::new();
        assert_eq!(
            ObjectKey::Segment { job, chunk: 7 }.to_string(),
            format!("jobs/{job}/segments/00007.seg")
        );
        assert_ne!(
            ObjectKey::Segment { job, chunk: 7 }.to_string(),
            ObjectKey::Segment { job, chunk: 8 }.to_string()
        );
    }

    #[test]
    fn foreign_keys_are_not_parsed() {
        let job = JobId::new();
        let simple = job.to_string().replace('-', "");
        for text in [
            String::new(),
            "jobs/late.zip".to_owned(),
            format!("jobs/{job}/other.png"),
            format!("jobs/{job}/qr.gif"),
            format!("jobs/{simple}/invites.zip"),
            format!("jobs/{job}/segments/7.seg"),
            format!("jobs/{job}/segments/+0007.seg"),
            format!("jobs/{job}/segments/00007.zip"),
            format!("jobs/{job}/cards/00007-ann.png"),
            format!("other/{job}/invites.zip"),
        ] {
            assert_eq!(ObjectKey::parse(&text), None, "{text}");
        }
    }

    #[test]
    fn each_kind_has_its_file() {
        let sample = crate::domain::job::tests::job();
        let job = sample.id;
        let of = |kind, format| {
            ObjectKey::file_of(&Job {
                kind,
                format,
                ..sample.clone()
            })
        };
        assert_eq!(of(JobKind::Invites, None), ObjectKey::Zip { job });
        assert_eq!(
            of(JobKind::Qr, None).content_type(),
            "image/png",
            "PNG unless asked otherwise"
        );
        assert_eq!(
            of(JobKind::Qr, Some(QrFormat::Svg)).to_string(),
            format!("jobs/{job}/qr.svg")
        );
        assert_eq!(of(JobKind::Chart, None), ObjectKey::Chart { job });
        assert_eq!(ObjectKey::Zip { job }.content_type(), "application/zip");
        let sheets = ObjectKey::file_of(&Job {
            sheets: Some(crate::domain::SheetPaper::Letter),
            ..sample.clone()
        });
        assert_eq!(sheets, ObjectKey::Sheets { job });
        assert_eq!(
            (sheets.to_string(), sheets.content_type()),
            (format!("jobs/{job}/invites.pdf"), "application/pdf")
        );
    }
}
