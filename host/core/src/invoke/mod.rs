//! Invoking a loaded function of each world: [`http`] through `wasi:http/incoming-handler`,
//! [`events`] for the queue, stream, schedule and task worlds.

pub mod events;
pub mod http;
