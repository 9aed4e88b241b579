//! Polls and their rules: limits on what a poll may hold, when it is closed, who sees what.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{FieldErrors, OptionId, PollId, UserId};

pub const QUESTION_MAX_CHARS: usize = 300;
pub const OPTION_MAX_CHARS: usize = 120;
/// The organiser's event name, printed above the question on invite cards. A card's event
/// line holds about 40 characters; longer names are accepted up to this limit and cut with
/// an ellipsis on the card, so a name that fits a sheet's header is never refused.
pub const EVENT_NAME_MAX_CHARS: usize = 100;
pub const OPTIONS_MIN: usize = 2;
pub const OPTIONS_MAX: usize = 20;

/// Who may vote: anyone signed in, or only holders of an invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Public,
    Invite,
}

/// When non-owners may read the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultsVisibility {
    #[default]
    Always,
    AfterClose,
}

/// `closed` is either the owner's decision or the deadline having passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PollStatus {
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PollOption {
    pub id: OptionId,
    pub text: String,
}

/// A poll as stored. `version` grows on every write and is the ETag; `options_rev` grows only
/// when the option list is replaced, and every ballot is checked against it at write time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub id: PollId,
    pub owner_id: UserId,
    pub question: String,
    /// The organiser's event name (a wedding, a team offsite), printed on the poll's invite
    /// cards above the question; `None` when not set.
    pub event_name: Option<String>,
    pub options: Vec<PollOption>,
    /// What the owner decided; the deadline is applied on top by [`Poll::status_at`].
    pub status: PollStatus,
    pub visibility: Visibility,
    pub results: ResultsVisibility,
    pub max_choices: u8,
    pub closes_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub version: u64,
    pub options_rev: u32,
}

impl Poll {
    /// The status a reader sees at `now`: closed by the owner, or past the deadline.
    pub fn status_at(&self, now: OffsetDateTime) -> PollStatus {
        match (self.status, self.closes_at) {
            (PollStatus::Closed, _) => PollStatus::Closed,
            (PollStatus::Open, Some(deadline)) if deadline <= now => PollStatus::Closed,
            (PollStatus::Open, _) => PollStatus::Open,
        }
    }

    pub fn is_owned_by(&self, user: UserId) -> bool {
        self.owner_id == user
    }

    /// Public polls are visible to every signed-in user; invite-only polls to their owner
    /// (guests reach them through their invite, not through this rule).
    pub fn is_visible_to(&self, user: UserId) -> bool {
        self.visibility == Visibility::Public || self.is_owned_by(user)
    }

    pub fn results_visible_to(&self, user: UserId, now: OffsetDateTime) -> bool {
        self.is_owned_by(user)
            || self.results == ResultsVisibility::Always
            || self.status_at(now) == PollStatus::Closed
    }

    /// Whether the poll's guests (voters with an invite) may see its results at `now`: under
    /// the same rule as users who do not own it.
    pub fn results_visible_to_guests(&self, now: OffsetDateTime) -> bool {
        self.results == ResultsVisibility::Always || self.status_at(now) == PollStatus::Closed
    }

    /// The entity tag of this version: strong, opaque to clients.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }

    /// Checks a ballot's choices against this poll: at least one, at most `max_choices`, no
    /// repeats, each an option of the poll.
    pub fn parse_choices(&self, raw: &[String]) -> Result<Choices, FieldErrors> {
        let mut errors = FieldErrors::new();
        if raw.is_empty() {
            errors.add("choices", "must name at least one option");
        }
        if raw.len() > usize::from(self.max_choices) {
            errors.add(
                "choices",
                format!(
                    "at most {} choice(s) allowed in this poll",
                    self.max_choices
                ),
            );
        }
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(raw.len());
        for choice in raw {
            match self.options.iter().find(|o| o.id.as_str() == choice) {
                Some(option) if seen.insert(option.id.clone()) => ids.push(option.id.clone()),
                Some(_) => errors.add("choices", format!("{choice} is chosen twice")),
                None => errors.add(
                    "choices",
                    format!("{} is not an option of this poll", truncate(choice, 24)),
                ),
            }
        }
        errors.into_result().map(|()| Choices(ids))
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The choices of one ballot, validated against the poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices(pub(crate) Vec<OptionId>);

impl Choices {
    pub fn ids(&self) -> &[OptionId] {
        &self.0
    }
}

/// The counts of a poll: ballots in total and votes per option, as far as counting (from the
/// table's stream) has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub ballots: u64,
    /// How many of the ballots guests of the poll's list cast; `None` for a poll whose
    /// tally was made before guests' ballots were counted (the figure would be short).
    pub guest_ballots: Option<u64>,
    pub per_option: BTreeMap<OptionId, u64>,
    /// The `voted_at` of the newest ballot counted; `None` before the first.
    pub counted_through: Option<OffsetDateTime>,
    /// When the count function last added to these counts; `None` before the first.
    pub counted_at: Option<OffsetDateTime>,
}

/// A validated request to create a poll.
#[derive(Debug, Clone)]
pub struct NewPoll {
    pub question: String,
    /// Set after [`NewPoll::parse`] from [`parse_event_name`]: most callers have none.
    pub event_name: Option<String>,
    pub options: Vec<String>,
    pub closes_at: Option<OffsetDateTime>,
    pub visibility: Visibility,
    pub results: ResultsVisibility,
    pub max_choices: u8,
}

impl NewPoll {
    /// Validates every field and reports all failures at once.
    pub fn parse(
        question: &str,
        options: Vec<String>,
        closes_at: Option<OffsetDateTime>,
        visibility: Option<Visibility>,
        results: Option<ResultsVisibility>,
        max_choices: Option<u32>,
        now: OffsetDateTime,
    ) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let question = errors.check("question", parse_question(question));
        let options = errors.check("options", parse_options(options));
        let closes_at = errors.check("closes_at", parse_closes_at(closes_at, now));
        let option_count = options.as_ref().map_or(OPTIONS_MAX, Vec::len);
        let max_choices = errors.check(
            "max_choices",
            parse_max_choices(max_choices.unwrap_or(1), option_count),
        );
        errors.into_result()?;
        match (question, options, closes_at, max_choices) {
            (Some(question), Some(options), Some(closes_at), Some(max_choices)) => Ok(Self {
                question,
                event_name: None,
                options,
                closes_at,
                visibility: visibility.unwrap_or_default(),
                results: results.unwrap_or_default(),
                max_choices,
            }),
            _ => Err(FieldErrors::single("body", "is invalid")),
        }
    }

    pub fn into_poll(self, id: PollId, owner_id: UserId, now: OffsetDateTime) -> Poll {
        Poll {
            id,
            owner_id,
            question: self.question,
            event_name: self.event_name,
            options: numbered(self.options),
            status: PollStatus::Open,
            visibility: self.visibility,
            results: self.results,
            max_choices: self.max_choices,
            closes_at: self.closes_at,
            created_at: now,
            updated_at: now,
            version: 1,
            options_rev: 1,
        }
    }
}

fn numbered(texts: Vec<String>) -> Vec<PollOption> {
    texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| PollOption {
            id: OptionId::for_index(i),
            text,
        })
        .collect()
}

/// A validated partial update. `closes_at: Some(None)` removes the deadline.
#[derive(Debug, Clone, Default)]
pub struct PollPatch {
    pub question: Option<String>,
    /// `Some(None)` removes the event name; a value is already checked by
    /// [`parse_event_name`].
    pub event_name: Option<Option<String>>,
    pub options: Option<Vec<String>>,
    pub closes_at: Option<Option<OffsetDateTime>>,
    pub visibility: Option<Visibility>,
    pub results: Option<ResultsVisibility>,
    pub max_choices: Option<u32>,
}

/// What applying a patch changed, which decides which stored items the write must touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchEffect {
    pub options_changed: bool,
}

impl PollPatch {
    /// Applies the patch to `poll` as of `now`, validating the result as a whole (for example
    /// `max_choices` against the new option count).
    pub fn apply(
        self,
        poll: &Poll,
        now: OffsetDateTime,
    ) -> Result<(Poll, PatchEffect), FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut next = poll.clone();
        if let Some(question) = self.question
            && let Some(q) = errors.check("question", parse_question(&question))
        {
            next.question = q;
        }
        if let Some(event_name) = self.event_name {
            next.event_name = event_name;
        }
        let mut options_changed = false;
        if let Some(options) = self.options
            && let Some(texts) = errors.check("options", parse_options(options))
        {
            let unchanged = texts.len() == poll.options.len()
                && texts.iter().zip(&poll.options).all(|(t, o)| *t == o.text);
            if !unchanged {
                next.options = numbered(texts);
                next.options_rev = poll.options_rev + 1;
                options_changed = true;
            }
        }
        if let Some(closes_at) = self.closes_at
            && let Some(c) = errors.check("closes_at", parse_closes_at(closes_at, now))
        {
            next.closes_at = c;
        }
        if let Some(visibility) = self.visibility {
            next.visibility = visibility;
        }
        if let Some(results) = self.results {
            next.results = results;
        }
        let max = self.max_choices.unwrap_or(u32::from(next.max_choices));
        if let Some(m) = errors.check("max_choices", parse_max_choices(max, next.options.len())) {
            next.max_choices = m;
        }
        errors.into_result()?;
        next.version = poll.version + 1;
        next.updated_at = now;
        Ok((next, PatchEffect { options_changed }))
    }
}

fn parse_question(raw: &str) -> Result<String, String> {
    let q = raw.trim();
    if q.is_empty() {
        return Err("is required".into());
    }
    if q.chars().count() > QUESTION_MAX_CHARS {
        return Err(format!("must be at most {QUESTION_MAX_CHARS} characters"));
    }
    Ok(q.to_owned())
}

/// The event name as stored: trimmed, and `None` when absent or blank, so that a form's empty
/// field means "no event name" rather than a card with an empty line reserved for nothing.
pub fn parse_event_name(raw: Option<&str>) -> Result<Option<String>, String> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > EVENT_NAME_MAX_CHARS {
        return Err(format!("must be at most {EVENT_NAME_MAX_CHARS} characters"));
    }
    Ok(Some(name.to_owned()))
}

fn parse_options(raw: Vec<String>) -> Result<Vec<String>, String> {
    if raw.len() < OPTIONS_MIN || raw.len() > OPTIONS_MAX {
        return Err(format!(
            "must hold between {OPTIONS_MIN} and {OPTIONS_MAX} options (got {})",
            raw.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, text) in raw.into_iter().enumerate() {
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(format!("option {} is empty", i + 1));
        }
        if text.chars().count() > OPTION_MAX_CHARS {
            return Err(format!(
                "option {} must be at most {OPTION_MAX_CHARS} characters",
                i + 1
            ));
        }
        if !seen.insert(text.to_lowercase()) {
            return Err(format!("option {} repeats an earlier option", i + 1));
        }
        out.push(text);
    }
    Ok(out)
}

fn parse_closes_at(
    closes_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, String> {
    match closes_at {
        Some(t) if t <= now => Err("must be in the future".into()),
        Some(t) if t.year() > 9999 => Err("is too far in the future".into()),
        other => Ok(other),
    }
}

fn parse_max_choices(max: u32, options: usize) -> Result<u8, String> {
    let options = u32::try_from(options).unwrap_or(u32::MAX);
    if max == 0 || max > options {
        return Err(format!(
            "must be between 1 and the number of options ({options})"
        ));
    }
    u8::try_from(max).map_err(|_| "is too large".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::Duration;

    /// A public poll of two options, created at `now`; other modules' tests use it too.
    pub(crate) fn poll(now: OffsetDateTime) -> Poll {
        NewPoll::parse(
            "Lunch?",
            vec!["Pizza".into(), "Soup".into()],
            None,
            None,
            None,
            None,
            now,
        )
        .map(|p| p.into_poll(PollId::new(), UserId::new(), now))
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let now = OffsetDateTime::now_utc();
        let errors = NewPoll::parse(
            " ",
            vec!["one".into()],
            Some(now - Duration::hours(1)),
            None,
            None,
            Some(0),
            now,
        )
        .err()
        .unwrap_or_default();
        let fields: Vec<_> = errors.fields().collect();
        assert_eq!(fields, ["closes_at", "max_choices", "options", "question"]);
    }

    #[test]
    fn deadline_closes_the_poll() {
        let now = OffsetDateTime::now_utc();
        let mut p = poll(now);
        p.closes_at = Some(now + Duration::minutes(5));
        assert_eq!(p.status_at(now), PollStatus::Open);
        assert_eq!(p.status_at(now + Duration::minutes(5)), PollStatus::Closed);
    }

    #[test]
    fn choices_are_checked_against_the_poll() {
        let p = poll(OffsetDateTime::now_utc());
        assert!(p.parse_choices(&["o1".into()]).is_ok());
        assert!(p.parse_choices(&[]).is_err());
        assert!(p.parse_choices(&["o3".into()]).is_err());
        assert!(p.parse_choices(&["o1".into(), "o2".into()]).is_err());
    }

    #[test]
    fn replacing_options_bumps_their_revision_but_rewording_the_question_does_not() {
        let now = OffsetDateTime::now_utc();
        let p = poll(now);
        let (q, effect) = PollPatch {
            question: Some("Dinner?".into()),
            ..Default::default()
        }
        .apply(&p, now)
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (q.options_rev, effect.options_changed, q.version),
            (1, false, 2)
        );
        let (o, effect) = PollPatch {
            options: Some(vec!["Pizza".into(), "Salad".into()]),
            ..Default::default()
        }
        .apply(&p, now)
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((o.options_rev, effect.options_changed), (2, true));
    }

    #[test]
    fn event_names_are_trimmed_blank_is_none_and_long_ones_are_refused() {
        assert_eq!(parse_event_name(None), Ok(None));
        assert_eq!(parse_event_name(Some("  \t ")), Ok(None));
        assert_eq!(
            parse_event_name(Some("  Acme offsite ")),
            Ok(Some("Acme offsite".to_owned()))
        );
        let longest = "é".repeat(EVENT_NAME_MAX_CHARS);
        assert_eq!(parse_event_name(Some(&longest)), Ok(Some(longest.clone())));
        assert!(parse_event_name(Some(&format!("{longest}x"))).is_err());
        let now = OffsetDateTime::now_utc();
        let p = poll(now);
        let patched = |event_name| {
            PollPatch {
                event_name,
                ..Default::default()
            }
            .apply(&p, now)
            .map(|(next, _)| next.event_name)
            .unwrap_or_else(|e| panic!("{e:?}"))
        };
        assert_eq!(patched(Some(Some("Gala".into()))), Some("Gala".into()));
        assert_eq!(patched(Some(None)), None);
    }
}
