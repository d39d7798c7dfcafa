//! The triggers and orchestration of an app: each service is built from its manifest section,
//! checked against the loaded functions (problems are reported, the app serves on), registered
//! to run in the background, and provided to the capabilities that reach it (the queues to the
//! publishing import, the stream feed to the stores' change records...).
//!
//! Only built with at least one of the trigger or orchestration features.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::app::App;
use crate::manifest::Manifest;

/// Build the app's trigger and orchestration services from the manifest, check them against
/// the loaded functions, and provide them to the capabilities that reach them.
pub(crate) fn start_services(app: &mut App, manifest: &Manifest, state: &Path) -> Result<()> {
    #[cfg(feature = "schedules")]
    schedules(app, manifest, state)?;
    #[cfg(feature = "streams")]
    streams(app, manifest, state)?;
    #[cfg(feature = "queues")]
    queues(app, manifest, state)?;
    #[cfg(feature = "workflows")]
    workflows(app, manifest, state)?;
    #[cfg(feature = "events")]
    events(app, manifest);
    Ok(())
}

/// Report problems found while binding a service to the app's functions.
fn report(app: &mut App, problems: Vec<String>) {
    for problem in problems {
        tracing::error!("{problem}");
        app.queue_errors.push(problem);
    }
}

/// Run `connect` on the long-lived runtime (a backend client's tasks must live there).
#[cfg(any(feature = "postgres", feature = "nats"))]
fn block_on_runtime<T>(
    what: &str,
    connect: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("{what} need a tokio runtime"))?;
    tokio::task::block_in_place(|| handle.block_on(connect))
}

/// Connect `what` to the `[cluster]` database with `connect(url)`, on the long-lived runtime.
#[cfg(feature = "postgres")]
fn on_cluster<T, F>(
    cluster: &crate::cluster::ClusterConfig,
    what: &str,
    connect: impl FnOnce(String) -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let url = cluster
        .url
        .resolve()
        .map_err(|e| anyhow::anyhow!("[cluster] url: {e}"))?;
    block_on_runtime(what, connect(url.expose().to_string()))
        .map_err(|e| e.context("[cluster]: connecting to PostgreSQL"))
}

#[cfg(any(feature = "schedules", feature = "streams"))]
fn create_state_dir(state: &Path) -> Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))
}

#[cfg(feature = "schedules")]
fn schedules(app: &mut App, manifest: &Manifest, state: &Path) -> Result<()> {
    use wasmfn_host_triggers::schedule::{ScheduleManifest, Scheduler};
    let Some(m) = manifest.get::<ScheduleManifest>() else {
        return Ok(());
    };
    if m.schedules.is_empty() {
        return Ok(());
    }
    let ticks: Arc<dyn wasmfn_host_triggers::schedule::Ticks> =
        match manifest.get::<crate::cluster::ClusterConfig>() {
            None => {
                create_state_dir(state)?;
                Arc::new(wasmfn_host_triggers::schedule::LocalTicks::new(
                    state.join("schedules.json"),
                ))
            }
            #[cfg(feature = "postgres")]
            Some(cluster) => {
                let ticks = on_cluster(cluster, "the cluster's schedule ticks", |url| async move {
                    wasmfn_host_triggers::schedule::PostgresTicks::connect(
                        &url,
                        &cluster.namespace,
                        cluster.lease,
                    )
                    .await
                })?;
                tracing::info!(namespace = %cluster.namespace, "schedules: ticks claimed in PostgreSQL (cluster)");
                Arc::new(ticks)
            }
            #[cfg(not(feature = "postgres"))]
            Some(_) => anyhow::bail!(
                "[cluster]: this wasmfn was built without PostgreSQL, where a cluster's schedules are claimed; rebuild wasmfn-host with the `postgres` feature"
            ),
        };
    let mut scheduler = Scheduler::new(m.schedules.clone(), ticks);
    let problems = scheduler.validate(app);
    report(app, problems);
    let scheduler = Arc::new(scheduler);
    app.background.push(scheduler.clone());
    app.scheduler = Some(scheduler);
    Ok(())
}

#[cfg(feature = "streams")]
fn streams(app: &mut App, manifest: &Manifest, state: &Path) -> Result<()> {
    use wasmfn_host_capabilities::changes::ChangeRecorder;
    use wasmfn_host_triggers::stream::{Feed, StreamFeed, StreamManifest};
    let Some(m) = manifest.get::<StreamManifest>() else {
        return Ok(());
    };
    if m.streams.is_empty() {
        return Ok(());
    }
    let feed: Arc<dyn Feed> = match manifest.get::<crate::cluster::ClusterConfig>() {
        None => {
            create_state_dir(state)?;
            let mut feed = StreamFeed::open(&state.join("streams.sqlite"), m.streams.clone())?;
            let problems = feed.validate(app);
            report(app, problems);
            Arc::new(feed)
        }
        #[cfg(feature = "postgres")]
        Some(cluster) => {
            let mut feed = on_cluster(cluster, "the cluster's stream feed", |url| async move {
                wasmfn_host_triggers::stream::PostgresFeed::connect(
                    &url,
                    &cluster.namespace,
                    cluster.lease,
                    m.streams.clone(),
                )
                .await
            })?;
            let problems = feed.validate(app);
            report(app, problems);
            tracing::info!(namespace = %cluster.namespace, "streams: feed in PostgreSQL, key partitions leased to hosts (cluster)");
            Arc::new(feed)
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => anyhow::bail!(
            "[cluster]: this wasmfn was built without PostgreSQL, where a cluster's stream feed lives; rebuild wasmfn-host with the `postgres` feature"
        ),
    };
    app.services.provide::<dyn ChangeRecorder>(feed.clone());
    app.background.push(feed.clone());
    app.streams = Some(feed);
    Ok(())
}

#[cfg(feature = "queues")]
fn queues(app: &mut App, manifest: &Manifest, state: &Path) -> Result<()> {
    use wasmfn_host_capabilities::queues::QueueSender;
    use wasmfn_host_triggers::queue::{
        QueueBackend, QueueBackendChoice, QueueManifest, QueueService, SqliteQueues,
    };
    let Some(m) = manifest.get::<QueueManifest>() else {
        return Ok(());
    };
    if m.queues.is_empty() {
        return Ok(());
    }
    let mut configs = m.queues.clone();
    report(
        app,
        wasmfn_host_triggers::queue::fit_visibility(&mut configs, app),
    );
    let backend: Arc<dyn QueueBackend> = match &m.backend {
        QueueBackendChoice::Sqlite { fsync } => {
            let db = state.join("queues.sqlite");
            tracing::info!(database = %db.display(), "queues: embedded SQLite backend");
            Arc::new(SqliteQueues::open(&db, *fsync)?)
        }
        #[cfg(feature = "nats")]
        QueueBackendChoice::Nats { url, stream } => {
            let visibility: Vec<_> = configs
                .iter()
                .flat_map(|q| {
                    [
                        (q.name.clone(), q.visibility_timeout),
                        (q.dead_letter_queue.clone(), q.visibility_timeout),
                    ]
                })
                .collect();
            let nats = block_on_runtime(
                "the NATS queue backend",
                wasmfn_host_triggers::queue::NatsQueues::connect(url, stream, &visibility),
            )?;
            let url = wasmfn_host_core::secrets::redact_url(url);
            tracing::info!(%url, %stream, "queues: NATS JetStream backend");
            Arc::new(nats)
        }
    };
    let count = configs.len();
    let mut queues = QueueService::new(backend, configs);
    let problems = queues.validate(app);
    report(app, problems);
    tracing::info!(queues = count, "queues ready");
    let queues = Arc::new(queues);
    app.services.provide::<dyn QueueSender>(queues.clone());
    app.background.push(queues.clone());
    app.queues = Some(queues);
    Ok(())
}

#[cfg(feature = "workflows")]
fn workflows(app: &mut App, manifest: &Manifest, state: &Path) -> Result<()> {
    use wasmfn_host_capabilities::workflows::WorkflowStarter;
    use wasmfn_host_orchestration::workflow::{
        ExecutionStore, SqliteExecutions, WorkflowManifest, WorkflowStoreChoice, Workflows,
    };
    let Some(m) = manifest.get::<WorkflowManifest>() else {
        return Ok(());
    };
    if m.workflows.is_empty() {
        return Ok(());
    }
    let store: Arc<dyn ExecutionStore> = match &m.store {
        WorkflowStoreChoice::Sqlite => {
            let db = state.join("workflows.sqlite");
            tracing::info!(database = %db.display(), "workflows: embedded SQLite store");
            Arc::new(SqliteExecutions::open(&db)?)
        }
        #[cfg(feature = "postgres")]
        WorkflowStoreChoice::Postgres { url, lease } => {
            let url = url
                .resolve()
                .map_err(|e| anyhow::anyhow!("[workflow-store] url: {e}"))?;
            let pg = block_on_runtime(
                "the PostgreSQL workflow store",
                wasmfn_host_orchestration::workflow::PostgresExecutions::connect(
                    url.expose(),
                    *lease,
                ),
            )
            .map_err(|e| e.context("[workflow-store]: connecting to PostgreSQL"))?;
            tracing::info!(
                lease_ms = lease.as_millis() as u64,
                "workflows: PostgreSQL store"
            );
            Arc::new(pg)
        }
    };
    let mut workflows = Workflows::new(store, m.workflows.clone());
    let problems = workflows.validate(app);
    report(app, problems);
    let workflows = Arc::new(workflows);
    app.services
        .provide::<dyn WorkflowStarter>(workflows.clone());
    app.background.push(workflows.clone());
    app.workflows = Some(workflows);
    Ok(())
}

#[cfg(feature = "events")]
fn events(app: &mut App, manifest: &Manifest) {
    use wasmfn_host_capabilities::events::EventPublisher;
    use wasmfn_host_capabilities::queues::QueueSender;
    use wasmfn_host_capabilities::workflows::WorkflowStarter;
    use wasmfn_host_orchestration::eventbus::{EventBus, EventManifest};
    let Some(m) = manifest.get::<EventManifest>() else {
        return;
    };
    if m.rules.is_empty() && m.topics.is_empty() {
        return;
    }
    let bus = Arc::new(EventBus::new(
        m.rules.clone(),
        m.topics.clone(),
        app.services.get::<dyn QueueSender>(),
        app.services.get::<dyn WorkflowStarter>(),
    ));
    app.services.provide::<dyn EventPublisher>(bus.clone());
    app.events = Some(bus);
}
