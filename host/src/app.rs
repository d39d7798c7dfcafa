//! [`App`]: a set of loaded functions, the HTTP route table in front of them, the app's
//! configured capabilities, and the services of its triggers and orchestration.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmfn_host_core::services::Services;
use wasmfn_host_core::{
    error_response, opaque_error_response, text_response, AppCapability, Function, HttpResponse,
    Invoker, LoadError, Service, World,
};

use crate::load::default_routes;
use crate::router::{Route, Router};

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
    /// Problems with trigger bindings and stores found at load (the app serves on).
    pub(crate) queue_errors: Vec<String>,
    /// Late-bound services its capabilities reach (queues, the event bus...).
    pub(crate) services: Arc<Services>,
    /// Its capabilities, configured for it.
    pub(crate) capabilities: Vec<Box<dyn AppCapability>>,
    /// What runs in the background once served: queue consumers, timers, executors.
    pub(crate) background: Vec<Arc<dyn Service>>,
    /// The app's queues, when the manifest declares any.
    #[cfg(feature = "queues")]
    pub(crate) queues: Option<Arc<wasmfn_host_triggers::queue::QueueService>>,
    /// The app's schedules, when the manifest declares any.
    #[cfg(feature = "schedules")]
    pub(crate) scheduler: Option<Arc<wasmfn_host_triggers::schedule::Scheduler>>,
    /// The app's change feed, when the manifest declares streams.
    #[cfg(feature = "streams")]
    pub(crate) streams: Option<Arc<dyn wasmfn_host_triggers::stream::Feed>>,
    /// The app's workflows, when the manifest declares any.
    #[cfg(feature = "workflows")]
    pub(crate) workflows: Option<Arc<wasmfn_host_orchestration::workflow::Workflows>>,
    /// The app's event bus and topics, when the manifest declares rules or topics.
    #[cfg(feature = "events")]
    pub(crate) events: Option<Arc<wasmfn_host_orchestration::eventbus::EventBus>>,
    /// Where its durable state lives (queues, embedded stores, the admin token).
    pub(crate) state_dir: Option<std::path::PathBuf>,
    /// Development mode: clients see errors' text and the route table (see [`App::set_dev`]).
    pub(crate) dev: bool,
    /// Snapshots of its functions' usage, for usage windows.
    pub(crate) usage_history: crate::telemetry::history::UsageHistory,
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
    #[cfg(feature = "queues")]
    pub fn queues(&self) -> Option<&Arc<wasmfn_host_triggers::queue::QueueService>> {
        self.queues.as_ref()
    }

    /// The app's schedules, when the manifest declares any.
    #[cfg(feature = "schedules")]
    pub fn scheduler(&self) -> Option<&Arc<wasmfn_host_triggers::schedule::Scheduler>> {
        self.scheduler.as_ref()
    }

    /// The app's change feed, when the manifest declares streams.
    #[cfg(feature = "streams")]
    pub fn streams(&self) -> Option<&Arc<dyn wasmfn_host_triggers::stream::Feed>> {
        self.streams.as_ref()
    }

    /// The app's workflows, when the manifest declares any.
    #[cfg(feature = "workflows")]
    pub fn workflows(&self) -> Option<&Arc<wasmfn_host_orchestration::workflow::Workflows>> {
        self.workflows.as_ref()
    }

    /// The app's event bus and topics, when the manifest declares rules or topics.
    #[cfg(feature = "events")]
    pub fn events(&self) -> Option<&Arc<wasmfn_host_orchestration::eventbus::EventBus>> {
        self.events.as_ref()
    }

    /// One of the app's configured capabilities, by type: e.g. [`crate::kv::KvApp`], whose
    /// `store(name)` is the same key-value store the guests bound to `name` use.
    pub fn capability<T: AppCapability>(&self) -> Option<&T> {
        self.capabilities.iter().find_map(|c| {
            let any: &dyn Any = &**c;
            any.downcast_ref::<T>()
        })
    }

    /// The late-bound services of the app (what its capabilities' imports reach).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Start everything that runs in the background of a served app (queue consumers,
    /// schedules, stream consumers, the workflow executor). The tasks stop when `shutdown`
    /// turns true, finishing what they hold.
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let functions: Arc<dyn Invoker> = self.clone();
        self.background
            .iter()
            .flat_map(|s| s.clone().start(functions.clone(), shutdown.clone()))
            .collect()
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

    /// In development mode a failed invocation answers with the error's text (the trap, the
    /// limit and the setting to raise) and an unknown path lists the routes. Otherwise clients
    /// get the error's kind and the invocation id the host's log line carries, and a bare 404:
    /// the trap text and the route table are the operator's, not the internet's.
    pub fn set_dev(&mut self, dev: bool) {
        self.dev = dev;
    }

    /// Whether it is in development mode.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// Where the app keeps its durable state (`None` for an app built by hand).
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.state_dir.as_deref()
    }

    /// Route and handle one HTTP request from the public listener; errors become HTTP error
    /// responses. Paths under `/_wasmfn/` are the host API's, answered only by
    /// [`App::handle_admin`] (the admin listener), never here.
    pub async fn handle<B>(&self, request: http::Request<B>) -> HttpResponse
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if request.uri().path().starts_with(crate::control_api::PREFIX) {
            return text_response(
                http::StatusCode::NOT_FOUND,
                "the host API is not served here; it is on the admin listener (`wasmfn serve --admin-listen`)",
            );
        }
        let Some(function) = self.route(request.uri().path()) else {
            return self.not_found(request.uri().path());
        };
        match function.handle_http_traced(request).await {
            Ok(response) => response,
            Err(failure) if self.dev => error_response(&failure.error),
            Err(failure) => opaque_error_response(&failure),
        }
    }

    /// Handle one request to the host API (`/_wasmfn/...`). The caller has checked who sent
    /// it ([`crate::admin::AdminGuard`]).
    pub async fn handle_admin<B>(&self, request: http::Request<B>) -> HttpResponse
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let get = request.method() == http::Method::GET;
        match request.uri().path() {
            "/healthz" if get => return text_response(http::StatusCode::OK, "ok"),
            "/readyz" if get => {
                let readiness = crate::status::health::readiness(self).await;
                let status = if readiness.ready {
                    http::StatusCode::OK
                } else {
                    http::StatusCode::SERVICE_UNAVAILABLE
                };
                return json_text(status, serde_json::to_value(&readiness).unwrap_or_default());
            }
            "/metrics" if get => return self.metrics().await,
            "/_wasmfn/usage" if get => {
                let since = request.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("since="))
                        .map(|s| s.parse::<f64>())
                });
                let since = match since {
                    None => None,
                    Some(Ok(s)) if s.is_finite() && s >= 0.0 => {
                        Some(std::time::Duration::from_secs_f64(s.min(1e9)))
                    }
                    Some(_) => {
                        return text_response(
                            http::StatusCode::BAD_REQUEST,
                            "`since` is a number of seconds, e.g. ?since=3600",
                        )
                    }
                };
                return json_text(http::StatusCode::OK, crate::status::usage(self, since));
            }
            _ => {}
        }
        if !request.uri().path().starts_with(crate::control_api::PREFIX) {
            return text_response(
                http::StatusCode::NOT_FOUND,
                format!(
                    "the admin listener serves /metrics, /healthz, /readyz and the host API under `{}`; functions are on the public listener",
                    crate::control_api::PREFIX
                ),
            );
        }
        crate::control_api::handle(self, request).await
    }

    /// `GET /metrics`: backend gauges sampled now, then every metric as Prometheus text.
    async fn metrics(&self) -> HttpResponse {
        crate::status::sample_gauges(self).await;
        #[cfg(feature = "prometheus")]
        if let Some(text) = crate::telemetry::prometheus::render() {
            let mut response = text_response(http::StatusCode::OK, text);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        text_response(
            http::StatusCode::NOT_FOUND,
            "metrics are off in this host: install a recorder before loading functions \
             (wasmfn_host::telemetry::prometheus::install, in builds with the `prometheus` feature)",
        )
    }

    fn not_found(&self, path: &str) -> HttpResponse {
        let mut text = format!("no function is routed at `{path}`.");
        if !self.dev {
            return text_response(http::StatusCode::NOT_FOUND, text);
        }
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

impl Invoker for App {
    fn function(&self, name: &str) -> Option<Function> {
        App::function(self, name)
    }

    fn load_error(&self, name: &str) -> Option<String> {
        self.errors
            .iter()
            .find(|e| e.function == name)
            .map(|e| e.message.clone())
    }
}

/// A JSON response.
pub(crate) fn json_text(status: http::StatusCode, value: serde_json::Value) -> HttpResponse {
    let mut response = text_response(status, value.to_string());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
