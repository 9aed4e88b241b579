//! End-to-end scenarios through the public HTTP API: the real routers, the production
//! DynamoDB adapter, and a real DynamoDB-compatible engine on loopback. One binary, one
//! module per area.

mod auth;
mod budget;
mod cards;
mod closing;
mod count;
mod crash;
mod events;
mod guests;
mod iam;
mod jobs;
mod limits;
mod live;
mod logs;
mod openapi;
mod polls;
mod problems;
mod races;
mod render;
mod restart;
mod streams;
mod tokens;
mod votes;
