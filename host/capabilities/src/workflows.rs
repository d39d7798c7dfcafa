//! Workflow starts: `wasmfn:platform/workflows` starts executions of the app's workflows
//! through the [`WorkflowStarter`] that the workflow executor provides.

use futures::future::BoxFuture;
use wasmfn_host_core::InstanceState;
use wasmtime::component::HasSelf;

use crate::service_import::{grant_key_spec, granted, service, GrantKey, ServiceImportCapability};
use bindings::wasmfn::platform::workflows;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world workflow-imports { import wasmfn:platform/workflows@0.1.0; }
        ",
        world: "wasmfn:host-bindings/workflow-imports",
        imports: { default: async },
    });
}

/// Why an execution could not be started.
#[derive(Debug)]
pub enum StartError {
    /// No workflow of that name is declared (the declared ones).
    UnknownWorkflow(String, Vec<String>),
    /// The input is not JSON, or the name is not usable as an id.
    Invalid(String),
    /// The workflow cannot run (a task's function is missing or of the wrong world).
    NotRunnable(String),
    /// The store failed; nothing was started.
    Store(anyhow::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::UnknownWorkflow(w, known) => write!(
                f,
                "no workflow named `{w}`; declared: {} (declare it as [workflows.{w}] in wasmfn.toml)",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ),
            StartError::Invalid(why) | StartError::NotRunnable(why) => f.write_str(why),
            StartError::Store(e) => write!(f, "workflow store failed, nothing was started: {e:#}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Starts executions of the app's workflows (implemented by the workflow executor).
pub trait WorkflowStarter: Send + Sync {
    /// Start `workflow` with `input` (JSON text); with `name`, starting the same name again
    /// returns the existing execution. The id, and whether it is new.
    fn start_execution<'a>(
        &'a self,
        workflow: &'a str,
        input: &'a str,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(String, bool), StartError>>;
}

/// The workflow-start capability.
pub type WorkflowStartCapability = ServiceImportCapability<dyn WorkflowStarter>;

/// `workflows = ["order-saga"]` in `[functions.NAME]`: the workflows it may start.
const WORKFLOWS: GrantKey = GrantKey {
    key: "workflows",
    what: "workflow",
};

/// Its grant keys, and their manifest shapes.
const GRANTS: &[GrantKey] = &[WORKFLOWS];
const GRANT_KEYS: &[wasmfn_host_core::manifest::KeySpec] = &[grant_key_spec("workflows")];

/// The workflow-start capability, to register.
pub const fn capability() -> WorkflowStartCapability {
    ServiceImportCapability::new(
        "workflows",
        "wasmfn:platform/workflows",
        |linker| {
            workflows::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
            Ok(())
        },
        GRANTS,
        GRANT_KEYS,
    )
}

impl workflows::Host for InstanceState {
    async fn start(
        &mut self,
        workflow: String,
        input: String,
        name: Option<String>,
    ) -> Result<String, workflows::Error> {
        granted::<dyn WorkflowStarter>(self, &WORKFLOWS, &workflow)
            .map_err(workflows::Error::NoSuchWorkflow)?;
        let Some(w) = service::<dyn WorkflowStarter>(self) else {
            return Err(workflows::Error::NoSuchWorkflow(format!(
                "{workflow} (no workflows are declared in wasmfn.toml)"
            )));
        };
        let started = w.start_execution(&workflow, &input, name.as_deref());
        match crate::traced::call("workflow start", "workflow", &workflow, started).await {
            Ok((id, _)) => Ok(id),
            Err(StartError::UnknownWorkflow(w, _)) => Err(workflows::Error::NoSuchWorkflow(w)),
            Err(StartError::Invalid(why)) => Err(workflows::Error::InvalidInput(why)),
            Err(e) => Err(workflows::Error::Other(e.to_string())),
        }
    }
}
