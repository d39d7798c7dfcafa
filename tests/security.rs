//! Security: one test per boundary the host promises to hold (see SECURITY.md), each through
//! the real binary. Hostile clients and guests written by other teams are the threat model.

mod common;

#[path = "security/admin.rs"]
mod admin;
#[path = "security/errors.rs"]
mod errors;
#[path = "security/grants.rs"]
mod grants;
#[path = "security/host_calls.rs"]
mod host_calls;
#[path = "security/inputs.rs"]
mod inputs;
#[path = "security/isolation.rs"]
mod isolation;
#[path = "security/local_files.rs"]
mod local_files;
#[path = "security/memory.rs"]
mod memory;
#[path = "security/outbound.rs"]
mod outbound;
#[path = "security/tls.rs"]
mod tls;
