//! Domain types and rules. Nothing here knows about HTTP, DynamoDB or the AWS SDK: values are
//! parsed once at the edge into these types, and the rules (who may vote, when a poll is closed)
//! are plain functions over them.

pub mod ballot;
pub mod guest;
pub mod ids;
pub mod job;
pub mod live;
pub mod poll;
pub mod secret;
pub mod user;
pub mod validation;

pub use ballot::{Ballot, Choices, Voter};
pub use guest::{Card, Guest, GuestCounts, GuestId, GuestInput, GuestStatus, InviteKey, NewGuest};
pub use ids::{FamilyId, JobId, OptionId, PollId, UserId};
pub use job::{
    Invite, InviteHash, InviteToken, Job, JobKind, JobStage, JobStatus, QrFormat, SheetPaper,
};
pub use live::LiveResults;
pub use poll::{
    NewPoll, Poll, PollOption, PollPatch, PollStatus, ResultsVisibility, Tally, Visibility,
    parse_event_name,
};
pub use user::{Email, Password, User};
pub use validation::FieldErrors;
