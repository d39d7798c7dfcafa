//! `wasmfn package lambda NAME`: one function as an AWS Lambda deployment package for the
//! `provided.al2023` runtime: the `bootstrap` custom runtime (`adapters/lambda`), the component,
//! its compiled form for the target architecture (so Init never compiles), and a `wasmfn.toml`
//! reduced to this function and the stores it is bound to, with `--env` already applied; beside
//! it, a SAM `template.yaml` deploying it with its event sources ([`sam`]).
//!
//! `wasmfn package lambda --app`: every function of the app and what connects them (workflows,
//! rules, topics) as one SAM stack ([`lambda_app`]).
//!
//! `wasmfn package workers NAME`: one function as a Cloudflare Worker bundle ([`workers`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use toml::Value;
use wasmfn_host::manifest::{FunctionEntry, Manifest};
use wasmfn_host::{EngineOptions, FunctionSettings, Host, World};

mod aws_schedule;
mod lambda_app;
pub(crate) mod sam;
mod workers;

#[derive(Args)]
pub struct PackageArgs {
    /// Target platform.
    #[arg(value_enum)]
    target: Target,
    /// The function to package.
    #[arg(required_unless_present = "app")]
    function: Option<String>,
    /// Package the whole app as one stack (Lambda): every function, its workflows as state
    /// machines, its rules on an EventBridge bus, its topics on SNS.
    #[arg(long, conflicts_with = "function")]
    app: bool,
    /// The functions folder holding it and its wasmfn.toml.
    #[arg(long, default_value = "guests")]
    dir: PathBuf,
    /// CPU architecture of the Lambda function.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
    /// Where to write the package [default: DIR/.wasmfn/package/TARGET/FUNCTION].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `bootstrap` binary for the architecture [default: beside this `wasmfn` binary, or
    /// its `aarch64-unknown-linux-gnu` build for arm64].
    #[arg(long)]
    bootstrap: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// AWS Lambda (custom runtime, provided.al2023).
    Lambda,
    /// Cloudflare Workers (jco-transpiled bundle; `http` functions so far).
    Workers,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "arm64")]
    Arm64,
}

impl Arch {
    /// The name in Lambda's `Architectures`.
    fn lambda_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }
}

pub fn run(args: &PackageArgs, environment: Option<&str>) -> Result<ExitCode> {
    let name = match (&args.function, args.target) {
        (_, Target::Lambda) if args.app => return lambda_app::run(args, environment),
        (_, Target::Workers) if args.app => bail!(
            "`--app` packages for Lambda only so far; package each function for Workers \
             (`wasmfn package workers NAME`)"
        ),
        (Some(name), _) => name,
        (None, _) => bail!("name the function to package, or pass --app"),
    };
    if let Target::Workers = args.target {
        return run_workers(args, name, environment);
    }
    let Prepared {
        manifest,
        reduced_text,
        packaged,
        component,
    } = prepare(&args.dir, name, environment)?;
    let entry = packaged_entry(&packaged, name)?;
    let world = world_of(name, &component, &entry.settings)?;
    // Before any slow step, so that what AWS cannot express fails at once.
    let zip_name = format!("{name}.zip");
    let template = sam::template(&sam::TemplateInput {
        manifest: &manifest,
        entry,
        function: name,
        world,
        architecture: args.arch.lambda_name(),
        code_uri: &zip_name,
        in_app: false,
    })?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(".wasmfn/package/lambda").join(name));
    let stage = out.join("package");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)?;
    let bootstrap = bootstrap_binary(args)?;
    std::fs::copy(&bootstrap, stage.join("bootstrap"))
        .with_context(|| format!("copying {}", bootstrap.display()))?;
    stage_function(&stage, name, &component, &reduced_text, args.arch)?;

    let zip_path = out.join(&zip_name);
    write_zip(&stage, &zip_path)?;
    let size = std::fs::metadata(&zip_path)?.len();
    let template_path = out.join("template.yaml");
    std::fs::write(&template_path, template)?;
    println!(
        "packaged `{name}` for AWS Lambda ({}, provided.al2023)",
        args.arch.triple()
    );
    println!("  {} ({} KiB)", zip_path.display(), size / 1024);
    println!("  contents in {}", stage.display());
    println!(
        "  {} (deploy: sam deploy --guided --template-file {0})",
        template_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Put a function's files in `stage`: its component, its reduced manifest, and the component
/// compiled for `arch` in the package's read-only cache (so Init never compiles).
fn stage_function(
    stage: &Path,
    name: &str,
    component: &Path,
    reduced_text: &str,
    arch: Arch,
) -> Result<()> {
    std::fs::copy(component, stage.join(format!("{name}.wasm")))
        .with_context(|| format!("copying {}", component.display()))?;
    std::fs::write(stage.join("wasmfn.toml"), reduced_text)?;
    let options = EngineOptions {
        target: Some(arch.triple().to_string()),
        ..EngineOptions::default()
    };
    let host = Host::builder()
        .engine_options(options)
        .cache_dir(stage.join("compiled"))
        .build()
        .with_context(|| format!("creating a compiler for {}", arch.triple()))?;
    host.precompile(stage.join(format!("{name}.wasm")))?;
    Ok(())
}

/// What every target starts from.
struct Prepared {
    /// The whole manifest, `--env` applied (triggers, store declarations).
    manifest: Manifest,
    /// The manifest reduced to the function and its stores, as text and parsed.
    reduced_text: String,
    packaged: Manifest,
    /// The function's component file.
    component: PathBuf,
}

/// The function's entry in the reduced manifest (`[defaults]` applied).
fn packaged_entry<'a>(packaged: &'a Manifest, name: &str) -> Result<&'a FunctionEntry> {
    packaged
        .functions
        .get(name)
        .context("the reduced manifest lost the function")
}

fn prepare(dir: &Path, name: &str, environment: Option<&str>) -> Result<Prepared> {
    let manifest_path = dir.join("wasmfn.toml");
    let text = std::fs::read_to_string(&manifest_path).unwrap_or_default();
    // Validate exactly as `serve` would (file:line errors), then reduce the raw document.
    let manifest = Manifest::parse_env(&manifest_path, &text, environment)?;
    let doc: Value = toml::from_str(&text).context("reading wasmfn.toml")?;
    let mut reduced = reduce(doc, name, environment)?;
    let component = component_of(dir, &reduced, name)?;
    // The package holds the component as NAME.wasm, where the runtime finds it by name: a
    // `component` path of the functions folder (one component deployed under several names)
    // would point at nothing there.
    if let Some(Value::Table(f)) = reduced.get_mut("functions").and_then(|f| f.get_mut(name)) {
        f.remove("component");
    }
    let reduced_text = toml::to_string_pretty(&reduced)?;
    let packaged = Manifest::parse(&manifest_path, &reduced_text)?;
    Ok(Prepared {
        manifest,
        reduced_text,
        packaged,
        component,
    })
}

fn run_workers(args: &PackageArgs, name: &str, environment: Option<&str>) -> Result<ExitCode> {
    let Prepared {
        manifest,
        packaged,
        component,
        ..
    } = prepare(&args.dir, name, environment)?;
    let entry = packaged_entry(&packaged, name)?;
    // Before loading it: a component importing what Workers lacks is refused by that import.
    let imports = workers::supported_imports(name, &component)?;
    let world = world_of(name, &component, &entry.settings)?;
    let has_manifest = args.dir.join("wasmfn.toml").exists();
    // The top level as packaged (`--env` applied), then every `[env.NAME]` of the manifest.
    let mut environments = vec![workers::Environment::of(
        None,
        &manifest,
        entry,
        name,
        world,
        &imports,
        has_manifest,
    )?];
    for env in &manifest.environments {
        let prepared = prepare(&args.dir, name, Some(env))?;
        let entry = packaged_entry(&prepared.packaged, name)?;
        environments.push(
            workers::Environment::of(
                Some(env),
                &prepared.manifest,
                entry,
                name,
                world,
                &imports,
                has_manifest,
            )
            .with_context(|| format!("[env.{env}]"))?,
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(".wasmfn/package/workers").join(name));
    let limits = &entry.settings.limits;
    workers::package(
        name,
        &component,
        world,
        &imports,
        limits,
        &environments,
        &out,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The manifest reduced to one function: `[env.NAME]` laid over the base (key by key for
/// `defaults` and the function, whole tables otherwise), only the stores it binds, no triggers
/// (on Lambda, event sources trigger it).
fn reduce(doc: Value, name: &str, environment: Option<&str>) -> Result<Value> {
    let Value::Table(mut doc) = doc else {
        bail!("wasmfn.toml is not a table")
    };
    let overlay = match (environment, doc.remove("env")) {
        (Some(env), Some(Value::Table(mut envs))) => envs.remove(env),
        _ => None,
    };
    if let Some(Value::Table(over)) = overlay {
        for (key, value) in over {
            match (key.as_str(), doc.get_mut(&key), value) {
                ("defaults", Some(Value::Table(base)), Value::Table(v)) => base.extend(v),
                ("functions", Some(Value::Table(base)), Value::Table(v)) => {
                    for (f, settings) in v {
                        match (base.get_mut(&f), settings) {
                            (Some(Value::Table(b)), Value::Table(s)) => {
                                for (k, val) in s {
                                    match (b.get_mut(&k), val) {
                                        (Some(Value::Table(bt)), Value::Table(vt))
                                            if k == "config" || k == "secrets" =>
                                        {
                                            bt.extend(vt)
                                        }
                                        (_, val) => {
                                            b.insert(k, val);
                                        }
                                    }
                                }
                            }
                            (_, s) => {
                                base.insert(f, s);
                            }
                        }
                    }
                }
                (_, Some(Value::Table(base)), Value::Table(v)) => base.extend(v),
                (_, _, v) => {
                    doc.insert(key, v);
                }
            }
        }
    }
    let mut function = doc
        .get("functions")
        .and_then(|f| f.get(name))
        .cloned()
        .unwrap_or_else(|| Value::Table(Default::default()));
    // Secret files stay on the developer's machine: on Lambda the secret is an environment
    // variable (a NoEcho parameter of the template).
    if let Some(Value::Table(secrets)) = function.get_mut("secrets") {
        for (key, source) in secrets.iter_mut() {
            if source.get("file").is_some() {
                let var = wasmfn_host::config_env::variable_for(sam::SECRET_PREFIX, key);
                let mut env = toml::map::Map::new();
                env.insert("env".into(), Value::String(var));
                *source = Value::Table(env);
            }
        }
    }
    let mut reduced = toml::map::Map::new();
    if let Some(d) = doc.get("defaults") {
        reduced.insert("defaults".into(), d.clone());
    }
    let mut functions = toml::map::Map::new();
    functions.insert(name.to_string(), function.clone());
    reduced.insert("functions".into(), Value::Table(functions));
    for kind in ["kv", "sql", "blob"] {
        let bound: Vec<String> = function
            .get(kind)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut stores = toml::map::Map::new();
        for store in bound {
            if let Some(Value::Table(mut t)) = doc.get(kind).and_then(|k| k.get(&store)).cloned() {
                refuse_literal_credentials(kind, &store, &t)?;
                // Change streams are the platform's job on Lambda (DynamoDB Streams, S3 events).
                t.remove("stream");
                stores.insert(store, Value::Table(t));
            }
        }
        if !stores.is_empty() {
            reduced.insert(kind.into(), Value::Table(stores));
        }
    }
    Ok(Value::Table(reduced))
}

/// A connection URL with a password in it would travel inside the package (and every copy
/// of it); the manifest must name an environment variable instead, which the SAM template
/// turns into a NoEcho parameter.
fn refuse_literal_credentials(kind: &str, store: &str, table: &toml::Table) -> Result<()> {
    let Some(url) = table.get("url").and_then(Value::as_str) else {
        return Ok(());
    };
    if wasmfn_host::secrets::url_has_credentials(url) {
        let variable = format!("{}_URL", store.to_ascii_uppercase().replace('-', "_"));
        bail!(
            "[{kind}.{store}] url = \"{}\" carries credentials, which would be copied into the \
             package; replace it with `url-env = \"{variable}\"` and set {variable} where the \
             function runs (on Lambda, the template's NoEcho parameter)",
            wasmfn_host::secrets::redact_url(url)
        );
    }
    Ok(())
}

/// The function's world: as the manifest declares it, or read from the component.
fn world_of(name: &str, component: &Path, settings: &FunctionSettings) -> Result<World> {
    if let Some(world) = settings.expected_world {
        return Ok(world);
    }
    let host = Host::builder().build()?;
    // Packaging reads the component, not the secrets: those are the target platform's.
    let mut settings = settings.clone();
    if let Some(config) = settings.get::<wasmfn_host::config::ConfigValues>() {
        let values = config.values.clone();
        settings
            .extensions
            .insert(wasmfn_host::config::ConfigValues {
                values,
                secrets: Vec::new(),
            });
    }
    let function = host
        .load_component(name, component, settings)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(function.world())
}

fn component_of(dir: &Path, reduced: &Value, name: &str) -> Result<PathBuf> {
    if let Some(c) = reduced
        .get("functions")
        .and_then(|f| f.get(name))
        .and_then(|f| f.get("component"))
        .and_then(Value::as_str)
    {
        return Ok(dir.join(c));
    }
    for candidate in [
        dir.join(format!("{name}.wasm")),
        dir.join(name).join(format!("{name}.wasm")),
    ] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "no component for `{name}`: expected {0}/{name}.wasm or {0}/{name}/{name}.wasm (run `wasmfn build {0}`)",
        dir.display()
    )
}

fn bootstrap_binary(args: &PackageArgs) -> Result<PathBuf> {
    if let Some(b) = &args.bootstrap {
        return Ok(b.clone());
    }
    let exe = std::env::current_exe()?;
    // target/release/wasmfn -> target/
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the cargo target folder")?;
    let native = (args.arch == Arch::X86_64 && cfg!(target_arch = "x86_64"))
        || (args.arch == Arch::Arm64 && cfg!(target_arch = "aarch64"));
    let (path, build) = if native {
        (
            target_dir.join("release-lambda/bootstrap"),
            "cargo build --profile release-lambda -p wasmfn-lambda".to_string(),
        )
    } else {
        let triple = args.arch.triple();
        (
            target_dir.join(triple).join("release-lambda/bootstrap"),
            format!(
                "rustup target add {triple}, install a linker for it (Debian: gcc-aarch64-linux-gnu), \
                 then cargo build --profile release-lambda -p wasmfn-lambda --target {triple}"
            ),
        )
    };
    if !path.exists() {
        bail!(
            "no Lambda bootstrap for {} at {}: {build} (or pass --bootstrap PATH)",
            args.arch.triple(),
            path.display()
        );
    }
    Ok(path)
}

fn write_zip(stage: &Path, zip_path: &Path) -> Result<()> {
    let file = std::fs::File::create(zip_path)
        .with_context(|| format!("creating {}", zip_path.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let mut files = Vec::new();
    collect(stage, stage, &mut files)?;
    files.sort();
    for rel in files {
        let mode = if rel == Path::new("bootstrap") {
            0o755
        } else {
            0o644
        };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        zip.start_file(rel.to_string_lossy(), options)?;
        zip.write_all(&std::fs::read(stage.join(&rel))?)?;
    }
    zip.finish()?;
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}
