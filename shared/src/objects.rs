//! The only place where an S3 object key is spelled. Every file the render worker writes lives
//! under `jobs/<job id>/`; each shape below is one variant, and [`ObjectKey::parse`] reads
//! them back. Keys are fixed by the job (and a card's index), so a repeated step writes the
//! same object again instead of a second one.

use std::fmt;

use crate::domain::{Job, JobId, JobKind, QrFormat};

/// The most characters of a guest's name kept in their card's key.
const SLUG_MAX_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKey {
    /// `jobs/<job>/cards/<index, 5 digits>-<slug>.png`: one guest's invite card. The index
    /// fixes the key; the slug (from the guest's name) only makes the ZIP's entries readable.
    Card {
        job: JobId,
        index: u32,
        slug: String,
    },
    /// `jobs/<job>/invites.zip`: every card of an invites job.
    Zip { job: JobId },
    /// `jobs/<job>/qr.png` or `jobs/<job>/qr.svg`: the poll's share QR code.
    Qr { job: JobId, format: QrFormat },
    /// `jobs/<job>/chart.png`: the poll's results chart.
    Chart { job: JobId },
}

impl ObjectKey {
    /// Guest `index`'s card, its slug made from `name`: lower-case ASCII letters and digits,
    /// anything else a dash, at most 40 characters, `guest` when nothing is left.
    pub fn card(job: JobId, index: u32, name: &str) -> Self {
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(SLUG_MAX_CHARS)
            .collect();
        let slug = slug.trim_matches('-');
        let slug = if slug.is_empty() { "guest" } else { slug };
        Self::Card {
            job,
            index,
            slug: slug.to_owned(),
        }
    }

    /// The file a finished job is downloaded as. Every kind is named here, so a new kind
    /// cannot complete without saying where its file is.
    pub fn file_of(job: &Job) -> Self {
        match job.kind {
            JobKind::Invites => Self::Zip { job: job.id },
            JobKind::Qr => Self::Qr {
                job: job.id,
                format: job.format.unwrap_or(QrFormat::Png),
            },
            JobKind::Chart => Self::Chart { job: job.id },
        }
    }

    /// The prefix under which a job's cards are listed, in index order (the index is
    /// zero-padded).
    pub fn cards_of(job: JobId) -> String {
        format!("jobs/{job}/cards/")
    }

    /// The object's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Card { .. } | Self::Chart { .. } => "image/png",
            Self::Zip { .. } => "application/zip",
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

    /// The last segment of the key: a card's entry name in the ZIP.
    pub fn file_name(&self) -> String {
        let key = self.to_string();
        key.rsplit('/').next().unwrap_or(&key).to_owned()
    }

    /// Reads a key back; `None` for anything that is not exactly one of the shapes above, so
    /// that `parse(key.to_string()) == Some(key)` and nothing else parses.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("jobs/")?;
        let (job, file) = rest.split_once('/')?;
        let job: JobId = job.parse().ok()?;
        let key = match file {
            "invites.zip" => Self::Zip { job },
            "qr.png" => Self::Qr {
                job,
                format: QrFormat::Png,
            },
            "qr.svg" => Self::Qr {
                job,
                format: QrFormat::Svg,
            },
            "chart.png" => Self::Chart { job },
            card => {
                let card = card.strip_prefix("cards/")?.strip_suffix(".png")?;
                let (index, slug) = card.split_once('-')?;
                Self::Card {
                    job,
                    index: index.parse().ok()?,
                    slug: slug.to_owned(),
                }
            }
        };
        // Only the canonical spelling parses: a job id in another notation, an index without
        // its zero padding or a slug the constructor would not make are someone else's keys.
        let canonical = match &key {
            Self::Card { slug, .. } => {
                *slug == slug.trim_matches('-')
                    && !slug.is_empty()
                    && slug.chars().count() <= SLUG_MAX_CHARS
                    && slug
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            }
            Self::Zip { .. } | Self::Qr { .. } | Self::Chart { .. } => true,
        };
        (canonical && key.to_string() == text).then_some(key)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Card { job, index, slug } => {
                write!(f, "{}{index:05}-{slug}.png", Self::cards_of(*job))
            }
            Self::Zip { job } => write!(f, "jobs/{job}/invites.zip"),
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
            ObjectKey::card(job, 7, "Ann O'Neil"),
            ObjectKey::card(job, 12_345, "李"),
            ObjectKey::Zip { job },
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
            assert_eq!(
                ObjectKey::parse(&key.to_string()),
                Some(key.clone()),
                "{key}"
            );
            assert!(
                key.to_string().starts_with(&format!("jobs/{job}/")),
                "{key}"
            );
        }
    }

    #[test]
    fn card_keys_are_fixed_by_job_and_index() {
        let job = JobId::new();
        assert_eq!(
            ObjectKey::card(job, 7, "Ann O'Neil").to_string(),
            format!("jobs/{job}/cards/00007-ann-o-neil.png")
        );
        assert_eq!(
            ObjectKey::card(job, 7, "李").to_string(),
            format!("jobs/{job}/cards/00007-guest.png")
        );
        let long = ObjectKey::card(job, 0, &"x".repeat(100)).to_string();
        assert!(
            long.ends_with(&format!("00000-{}.png", "x".repeat(40))),
            "{long}"
        );
        assert!(long.starts_with(&ObjectKey::cards_of(job)));
        assert_eq!(ObjectKey::card(job, 7, "Ann").file_name(), "00007-ann.png");
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
            format!("jobs/{job}/cards/7-ann.png"),
            format!("jobs/{job}/cards/00007-Ann.png"),
            format!("jobs/{job}/cards/00007-.png"),
            format!("jobs/{job}/cards/00007--ann.png"),
            format!("jobs/{job}/cards/00007-ann.svg"),
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
    }
}
