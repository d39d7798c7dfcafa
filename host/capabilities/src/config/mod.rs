//! Config and secrets: `wasi:config/store` serves a function's `[functions.NAME.config]` values
//! and its `[functions.NAME.secrets]` (read from environment variables or files when the function
//! loads, never logged).
//!
//! ```toml
//! [functions.api.config]
//! greeting = "hi"
//!
//! [functions.api.secrets]
//! api-key = { env = "API_KEY" }      # or { file = "api-key.txt" }, relative to the manifest
//! ```
//!
//! A host built with [`ConfigCapability::with_env_prefix`] also lets environment variables
//! `PREFIX_KEY` override or add values ([`mod@env`]), as the Lambda adapter does.

pub mod env;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{KeySpec, ManifestError, ManifestSection, Merge, ParseContext};
use wasmfn_host_core::secrets::{SecretSource, SecretString};
use wasmfn_host_core::{
    AppCapability, AppContext, Capability, Context, FunctionInfo, InstanceState,
};
use wasmtime::component::Linker;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

/// A function's config values and secret sources, from the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigValues {
    /// Values by key, in key order.
    pub values: Vec<(String, String)>,
    /// Secrets by key: where each is read from when the function loads.
    pub secrets: Vec<(String, SecretSource)>,
}

/// The config capability.
#[derive(Default)]
pub struct ConfigCapability {
    env_prefix: Option<String>,
}

impl ConfigCapability {
    /// Let environment variables `PREFIX_KEY` override (or add) every function's values.
    pub fn with_env_prefix(prefix: Option<String>) -> Self {
        Self { env_prefix: prefix }
    }
}

/// `NAME = { env = "VAR" }` or `NAME = { file = "path" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: Option<String>,
    file: Option<String>,
}

impl ManifestSection for ConfigCapability {
    fn function_keys(&self) -> &'static [KeySpec] {
        &[
            KeySpec {
                name: "config",
                merge: Merge::Entries,
            },
            KeySpec {
                name: "secrets",
                merge: Merge::Entries,
            },
        ]
    }

    fn parse_function_keys(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let values: BTreeMap<String, BTreeMap<String, String>> =
            cx.take_function_values("config")?.into_iter().collect();
        let secrets: BTreeMap<String, BTreeMap<String, Spanned<RawSecret>>> =
            cx.take_function_values("secrets")?.into_iter().collect();
        let base = cx.base_dir().to_path_buf();
        let names: Vec<String> = values.keys().chain(secrets.keys()).cloned().collect();
        for function in names {
            let config = values.get(&function).cloned().unwrap_or_default();
            let mut sources = Vec::new();
            for (key, sec) in secrets.get(&function).into_iter().flatten() {
                let k = format!("functions.{function}.secrets.{key}");
                if config.contains_key(key) {
                    return Err(cx.at(
                        sec.span(),
                        &k,
                        format!("`{key}` is both a config value and a secret; rename one"),
                    ));
                }
                let source = match (&sec.get_ref().env, &sec.get_ref().file) {
                    (Some(v), None) => SecretSource::Env(v.clone()),
                    (None, Some(p)) => SecretSource::File(base.join(p)),
                    _ => {
                        return Err(cx.at(
                            sec.span(),
                            &k,
                            "give exactly one of `env = \"VARIABLE\"` or `file = \"path\"`",
                        ))
                    }
                };
                sources.push((key.clone(), source));
            }
            cx.function_settings(&function).insert(ConfigValues {
                values: config.into_iter().collect(),
                secrets: sources,
            });
        }
        Ok(())
    }
}

/// What `wasi:config/store` reads for one function.
struct ConfigContext(WasiConfigVariables);

/// Functions without a context (they have nothing configured) read no values.
static EMPTY: LazyLock<WasiConfigVariables> = LazyLock::new(WasiConfigVariables::new);

impl Capability for ConfigCapability {
    fn name(&self) -> &'static str {
        "config"
    }

    fn add_to_linker(&self, linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        wasmtime_wasi_config::add_to_linker(linker, |s: &mut InstanceState| {
            WasiConfig::from(s.context::<ConfigContext>().map_or(&*EMPTY, |c| &c.0))
        })?;
        Ok(())
    }

    fn configure_app(
        &self,
        _app: &AppContext<'_>,
    ) -> anyhow::Result<Option<Box<dyn AppCapability>>> {
        Ok(Some(Box::new(ConfigApp {
            env_prefix: self.env_prefix.clone(),
        })))
    }
}

struct ConfigApp {
    env_prefix: Option<String>,
}

impl AppCapability for ConfigApp {
    fn prepare(&self, function: &FunctionInfo<'_>) -> Result<Option<Context>, String> {
        let declared = function.settings.get::<ConfigValues>();
        let mut values = declared.map(|c| c.values.clone()).unwrap_or_default();
        if let Some(prefix) = &self.env_prefix {
            env::overlay(&mut values, prefix, std::env::vars());
        }
        // Secrets are read even by functions that never ask for them: a missing one is a
        // deployment error to report at start-up, not at the first request.
        let mut secrets: Vec<(String, SecretString)> = Vec::new();
        for (key, source) in declared.map(|c| c.secrets.as_slice()).unwrap_or_default() {
            let value = source
                .resolve()
                .map_err(|message| format!("secret `{key}`: {message}"))?;
            secrets.push((key.clone(), value));
        }
        if values.is_empty() && secrets.is_empty() {
            return Ok(None);
        }
        let mut vars = WasiConfigVariables::new();
        for (k, v) in &values {
            vars.insert(k, v);
        }
        for (k, v) in &secrets {
            vars.insert(k, v.expose());
        }
        Ok(Some(Arc::new(ConfigContext(vars))))
    }
}
