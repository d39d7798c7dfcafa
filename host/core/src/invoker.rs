//! How triggers and orchestration reach functions: through [`Invoker`], which the composition
//! root's app implements, never through the app itself. A trigger looks a function up by name
//! and calls the invocation method of its world (`invoke_queue`, `invoke_schedule`, ...).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::function::Function;

/// The functions of an app, by name.
pub trait Invoker: Send + Sync + 'static {
    /// The function `name` as it is now (a reload may replace it later; an invocation keeps
    /// the one it started with).
    fn function(&self, name: &str) -> Option<Function>;

    /// Why `name` failed to load, if it did (for messages about triggers bound to it).
    fn load_error(&self, name: &str) -> Option<String>;
}

/// Something that runs in the background of a served app: queue consumers, timers, the
/// workflow executor.
pub trait Service: Send + Sync + 'static {
    /// Start; the tasks stop when `shutdown` turns true, finishing what they hold.
    fn start(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>>;
}
