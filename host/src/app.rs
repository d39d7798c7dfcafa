//! [`App`]: a set of loaded functions and the HTTP route table in front of them.

use std::collections::BTreeMap;

use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::error::LoadError;
use crate::function::Function;
use crate::host::default_routes;
use crate::http_invoke::{error_response, text_response, HttpResponse};
use crate::queue::dispatcher::QueueService;
use crate::router::{Route, Router};
use crate::world::World;

/// Functions loaded from a folder (or added one by one) plus their routes.
///
/// Each function sits in a slot that [`App::replace`] can swap (`wasmfn serve --watch`): an
/// invocation takes a clone of the function it started with, so in-flight work finishes on the
/// old code while new work gets the new one.
#[derive(Default)]
pub struct App {
    functions: BTreeMap<String, RwLock<Function>>,
    routes: Vec<Route>,
    router: Router,
    errors: Vec<LoadError>,
    /// The app's queues, when the manifest declares any.
    pub(crate) queues: Option<Arc<QueueService>>,
    /// Problems with queue and schedule bindings (queues still accept messages).
    pub(crate) queue_errors: Vec<String>,
    /// The app's schedules, when the manifest declares any.
    pub(crate) scheduler: Option<Arc<crate::scheduler::Scheduler>>,
    /// The app's change feed, when the manifest declares streams.
    pub(crate) streams: Option<Arc<crate::stream_feed::StreamFeed>>,
    pub(crate) stores: Option<Arc<crate::stores::StoreRegistry>>,
    /// The app's workflows, when the manifest declares any.
    pub(crate) workflows: Option<Arc<crate::workflow::Workflows>>,
    /// The app's event bus and topics, when the manifest declares rules or topics.
    pub(crate) events: Option<Arc<crate::eventbus::EventBus>>,
}

impl App {
    /// An empty app.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a loaded function; HTTP functions get `routes`, or `/<name>` and `/<name>/*`.
    pub fn add(
        &mut self,
        function: Function,
        routes: Option<Vec<String>>,
    ) -> Result<(), LoadError> {
        let name = function.name().to_string();
        if self.functions.contains_key(&name) {
            return Err(LoadError {
                path: function.source().to_path_buf(),
                function: name.clone(),
                message: format!("a function named `{name}` is already loaded"),
            });
        }
        if function.world() == World::Http {
            let routes = match routes {
                Some(patterns) => patterns
                    .into_iter()
                    .map(|pattern| Route {
                        pattern,
                        function: name.clone(),
                    })
                    .collect(),
                None => default_routes(&name),
            };
            // Check every route before adding any, so a conflict leaves no half-routed function.
            let mut trial = std::mem::take(&mut self.router);
            let mut conflict = None;
            for r in &routes {
                if let Err(e) = trial.add(r) {
                    conflict = Some(e);
                    break;
                }
            }
            if let Some(message) = conflict {
                self.router = Router::default();
                for r in &self.routes {
                    self.router.add(r).expect("existing routes do not conflict");
                }
                return Err(LoadError {
                    path: function.source().to_path_buf(),
                    function: name,
                    message,
                });
            }
            self.router = trial;
            self.routes.extend(routes);
        }
        self.functions.insert(name, RwLock::new(function));
        Ok(())
    }

    /// Swap in a new build of a loaded function (same name, same world; its routes and trigger
    /// bindings stay). Returns the function it replaced.
    pub fn replace(&self, function: Function) -> Result<Function, String> {
        let slot = self
            .functions
            .get(function.name())
            .ok_or_else(|| format!("no function `{}` is loaded", function.name()))?;
        let mut current = slot.write().unwrap_or_else(|e| e.into_inner());
        if current.world() != function.world() {
            return Err(format!(
                "`{}` now implements world `{}` instead of `{}`; restart `wasmfn serve` to change its world",
                function.name(),
                function.world(),
                current.world()
            ));
        }
        Ok(std::mem::replace(&mut *current, function))
    }

    pub(crate) fn add_loaded(
        &mut self,
        loaded: Result<Function, LoadError>,
        routes: Option<Vec<String>>,
    ) {
        match loaded.and_then(|f| self.add(f, routes)) {
            Ok(()) => {}
            Err(e) => self.record_error(e),
        }
    }

    pub(crate) fn record_error(&mut self, error: LoadError) {
        tracing::error!("{error}");
        self.errors.push(error);
    }

    /// A function by name (a cheap clone: it stays usable even if replaced meanwhile).
    pub fn function(&self, name: &str) -> Option<Function> {
        self.functions.get(name).map(current)
    }

    /// All loaded functions, by name.
    pub fn functions(&self) -> impl Iterator<Item = Function> + '_ {
        self.functions.values().map(current)
    }

    /// The HTTP route table, in the order routes were added.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Functions that failed to load, with the reason and the fix.
    pub fn load_errors(&self) -> &[LoadError] {
        &self.errors
    }

    /// Discard warm instances idle past their timeout, across all functions (the server calls
    /// this every second). Returns how many were discarded.
    pub fn evict_idle(&self) -> usize {
        self.functions().map(|f| f.evict_idle()).sum()
    }

    /// Fill every function's warm pool up to its `prewarm` count; returns how many instances
    /// were created. `serve` calls it at start and then every second, replacing instances
    /// retired after `max-uses` or a trap.
    pub async fn prewarm(&self) -> usize {
        let mut created = 0;
        for f in self.functions().collect::<Vec<_>>() {
            match f.prewarm().await {
                Ok(n) => created += n,
                Err(e) => tracing::warn!(function = f.name(), "pre-warming failed: {e}"),
            }
        }
        created
    }

    /// The app's queues, when the manifest declares any.
    pub fn queues(&self) -> Option<&Arc<QueueService>> {
        self.queues.as_ref()
    }

    /// The app's schedules, when the manifest declares any.
    pub fn scheduler(&self) -> Option<&Arc<crate::scheduler::Scheduler>> {
        self.scheduler.as_ref()
    }

    /// The app's change feed, when the manifest declares streams.
    pub fn streams(&self) -> Option<&Arc<crate::stream_feed::StreamFeed>> {
        self.streams.as_ref()
    }

    /// The app's open stores (key-value, SQL, blob), by binding name.
    pub fn stores(&self) -> Option<&Arc<crate::stores::StoreRegistry>> {
        self.stores.as_ref()
    }

    /// The app's workflows, when the manifest declares any.
    pub fn workflows(&self) -> Option<&Arc<crate::workflow::Workflows>> {
        self.workflows.as_ref()
    }

    /// The app's event bus and topics, when the manifest declares rules or topics.
    pub fn events(&self) -> Option<&Arc<crate::eventbus::EventBus>> {
        self.events.as_ref()
    }

    /// Problems found at load with trigger bindings (queues, schedules, streams) and stores.
    pub fn queue_errors(&self) -> &[String] {
        &self.queue_errors
    }

    /// The HTTP function serving `path`.
    pub fn route(&self, path: &str) -> Option<Function> {
        self.router
            .find(path)
            .and_then(|name| self.functions.get(name))
            .map(current)
    }

    /// Route and handle one HTTP request; errors become HTTP error responses.
    pub async fn handle<B>(&self, request: http::Request<B>) -> HttpResponse
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if request.uri().path().starts_with(crate::control_api::PREFIX) {
            return crate::control_api::handle(self, request).await;
        }
        let Some(function) = self.route(request.uri().path()) else {
            return self.not_found(request.uri().path());
        };
        match function.handle_http(request).await {
            Ok(response) => response,
            Err(e) => error_response(&e),
        }
    }

    fn not_found(&self, path: &str) -> HttpResponse {
        let mut text = format!("no function is routed at `{path}`.");
        if self.routes.is_empty() {
            text.push_str(" No HTTP functions are loaded.");
        } else {
            text.push_str(" Routes:");
            for r in &self.routes {
                text.push_str(&format!("\n  {} -> {}", r.pattern, r.function));
            }
        }
        text_response(http::StatusCode::NOT_FOUND, text)
    }
}

/// The function in a slot now.
fn current(slot: &RwLock<Function>) -> Function {
    slot.read().unwrap_or_else(|e| e.into_inner()).clone()
}
