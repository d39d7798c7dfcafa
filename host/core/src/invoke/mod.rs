//! Invoking a loaded function of each world: [`http`] through `wasi:http/incoming-handler`
//! (0.2) or `wasi:http/handler` (0.3, served by the pool in `http_p3`),
//! [`events`] for the queue, stream, schedule and task worlds.

pub mod events;
pub mod http;
pub(crate) mod http_p3;
mod queue_http;
mod ready_body;
