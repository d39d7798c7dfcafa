//! `wasmfn package lambda --app`: the whole app as one SAM stack. Each function is its own zip
//! (its component, compiled for the architecture, and its reduced manifest); the `bootstrap`
//! they all run on is one layer, uploaded once rather than once per function. The template
//! ([`sam::app_template`]) adds the app's workflows, rules and topics.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use wasmfn_host::manifest::Manifest;

use super::{
    bootstrap_binary, packaged_entry, prepare, sam, stage_function, world_of, write_zip,
    PackageArgs, Prepared,
};

/// The runtime layer's zip, beside the template.
const LAYER_ZIP: &str = "wasmfn-runtime.zip";

pub(super) fn run(args: &PackageArgs, environment: Option<&str>) -> Result<ExitCode> {
    let manifest_path = args.dir.join("wasmfn.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::parse_env(&manifest_path, &text, environment)?;
    let names = app_functions(&args.dir, &manifest)?;
    let workflows = workflow_definitions(&args.dir, &text)?;

    // Every function prepared and the template made before any slow step, so that what AWS
    // cannot express fails at once.
    let mut prepared = Vec::new();
    for name in &names {
        let p =
            prepare(&args.dir, name, environment).with_context(|| format!("function `{name}`"))?;
        let world = world_of(
            name,
            &p.component,
            &packaged_entry(&p.packaged, name)?.settings,
        )?;
        prepared.push((name.clone(), p, world));
    }
    let code_uris: Vec<String> = names.iter().map(|n| format!("functions/{n}.zip")).collect();
    let mut inputs = Vec::new();
    for ((name, p, world), code_uri) in prepared.iter().zip(&code_uris) {
        inputs.push(sam::TemplateInput {
            manifest: &manifest,
            entry: packaged_entry(&p.packaged, name)?,
            function: name,
            world: *world,
            architecture: args.arch.lambda_name(),
            code_uri,
            in_app: true,
        });
    }
    let template = sam::app_template(&sam::AppInput {
        manifest: &manifest,
        functions: inputs,
        architecture: args.arch.lambda_name(),
        layer_uri: LAYER_ZIP,
        workflows,
    })?;

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(".wasmfn/package/lambda-app"));
    let stage_root = out.join("stage");
    if stage_root.exists() {
        std::fs::remove_dir_all(&stage_root)
            .with_context(|| format!("clearing {}", stage_root.display()))?;
    }
    let layer = stage_root.join("layer");
    std::fs::create_dir_all(&layer)?;
    let bootstrap = bootstrap_binary(args)?;
    // Lambda looks for `bootstrap` in the function's code, then in its layers (`/opt`).
    std::fs::copy(&bootstrap, layer.join("bootstrap"))
        .with_context(|| format!("copying {}", bootstrap.display()))?;
    write_zip(&layer, &out.join(LAYER_ZIP))?;
    std::fs::create_dir_all(out.join("functions"))?;
    for ((name, p, _), code_uri) in prepared.iter().zip(&code_uris) {
        let Prepared {
            reduced_text,
            component,
            ..
        } = p;
        let stage = stage_root.join("functions").join(name);
        std::fs::create_dir_all(&stage)?;
        stage_function(&stage, name, component, reduced_text, args.arch)
            .with_context(|| format!("function `{name}`"))?;
        write_zip(&stage, &out.join(code_uri))?;
        println!("  {name}: {}", out.join(code_uri).display());
    }
    let template_path = out.join("template.yaml");
    std::fs::write(&template_path, template)?;
    println!(
        "packaged the app ({} functions) for AWS Lambda ({}, provided.al2023)",
        names.len(),
        args.arch.triple()
    );
    println!(
        "  {} (the bootstrap, one layer)",
        out.join(LAYER_ZIP).display()
    );
    println!(
        "  {} (deploy: sam deploy --guided --template-file {0})",
        template_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The functions `serve` would load from `dir` ([`wasmfn_host::app_functions`]): a declared
/// one without a component fails when it is prepared, naming what is missing.
fn app_functions(dir: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let mut names: Vec<String> = wasmfn_host::app_functions(dir, manifest)?
        .into_iter()
        .filter(|f| f.declared || f.component.is_ok())
        .map(|f| f.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Each `[workflows.NAME]`'s definition as written (a JSON or TOML file beside the manifest),
/// as JSON: the state machine's definition.
fn workflow_definitions(
    dir: &Path,
    manifest_text: &str,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let doc: toml::Table = toml::from_str(manifest_text).context("reading wasmfn.toml")?;
    let mut out = BTreeMap::new();
    let Some(toml::Value::Table(workflows)) = doc.get("workflows") else {
        return Ok(out);
    };
    for (name, w) in workflows {
        let Some(file) = w.get("definition").and_then(toml::Value::as_str) else {
            continue;
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading workflow `{name}`'s {}", path.display()))?;
        let json: serde_json::Value = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?
        } else {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
        };
        out.insert(name.clone(), json);
    }
    Ok(out)
}
