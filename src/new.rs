//! `wasmfn new TEMPLATE NAME`: a new guest from a template (Rust, JavaScript, Python, C, Go ×
//! http, queue, schedule, stream, task), ready for `wasmfn build`. Templates live in `templates/` and
//! are compiled into the binary.
//!
//! Every template is a working function: `http` echoes the request, `queue` fails the messages
//! whose body says `fail` (partial failure), `schedule` and `stream` log what they receive,
//! `task` wraps its JSON input and fails with `Rejected` when asked to.
//! Guests other than Rust's `http` carry their WIT in `wit/`: `world.wit` (the guest's world,
//! where imports of platform services are added) and `deps/` (wasmfn's and WASI's packages).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

/// Arguments of `wasmfn new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// Template: LANGUAGE-WORLD (`rust-http`, `rust-http-p3` for WASI 0.3, `js-queue`,
    /// `python-schedule`, `c-stream`, `go-http`, ...); `--list` shows them all.
    #[arg(required_unless_present = "list")]
    template: Option<String>,
    /// The function's name (also its folder's).
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// The functions folder to create it in.
    #[arg(long, default_value = "guests")]
    dir: PathBuf,
    /// List the templates.
    #[arg(long)]
    list: bool,
}

/// A template: (file under the guest folder, text with `{{name}}` placeholders).
struct Template {
    language: &'static str,
    world: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// Write `wit/` (with this WASI version, when not the default).
    wit: Option<Option<&'static str>>,
}

const RUST_CARGO: &str = include_str!("../templates/rust/Cargo.toml");
/// componentize-js's engine implements WASI 0.2.10.
const JS_WASI: Option<&str> = Some("0.2.10");

macro_rules! t {
    ($lang:literal, $world:literal, $wit:expr, [$(($file:literal, $src:literal)),*]) => {
        Template {
            language: $lang,
            world: $world,
            wit: $wit,
            files: &[$(($file, include_str!(concat!("../templates/", $src)))),*],
        }
    };
}

const TEMPLATES: &[Template] = &[
    t!(
        "rust",
        "http",
        None,
        [("src/lib.rs", "rust/http/src/lib.rs")]
    ),
    // WASI 0.3: `wasi:http/handler` with async `handle` (the http world's newer export).
    t!(
        "rust",
        "http-p3",
        None,
        [("src/lib.rs", "rust/http-p3/src/lib.rs")]
    ),
    t!(
        "rust",
        "queue",
        Some(None),
        [("src/lib.rs", "rust/queue/src/lib.rs")]
    ),
    t!(
        "rust",
        "schedule",
        Some(None),
        [("src/lib.rs", "rust/schedule/src/lib.rs")]
    ),
    t!(
        "rust",
        "stream",
        Some(None),
        [("src/lib.rs", "rust/stream/src/lib.rs")]
    ),
    t!("js", "http", Some(JS_WASI), [("app.js", "js/http/app.js")]),
    t!(
        "js",
        "queue",
        Some(JS_WASI),
        [("app.js", "js/queue/app.js")]
    ),
    t!(
        "js",
        "schedule",
        Some(JS_WASI),
        [("app.js", "js/schedule/app.js")]
    ),
    t!(
        "js",
        "stream",
        Some(JS_WASI),
        [("app.js", "js/stream/app.js")]
    ),
    t!(
        "python",
        "http",
        Some(None),
        [("app.py", "python/http/app.py")]
    ),
    t!(
        "python",
        "queue",
        Some(None),
        [("app.py", "python/queue/app.py")]
    ),
    t!(
        "python",
        "schedule",
        Some(None),
        [("app.py", "python/schedule/app.py")]
    ),
    t!(
        "python",
        "stream",
        Some(None),
        [("app.py", "python/stream/app.py")]
    ),
    t!("c", "http", Some(None), [("main.c", "c/http/main.c")]),
    t!("c", "queue", Some(None), [("main.c", "c/queue/main.c")]),
    t!(
        "c",
        "schedule",
        Some(None),
        [("main.c", "c/schedule/main.c")]
    ),
    t!("c", "stream", Some(None), [("main.c", "c/stream/main.c")]),
    t!(
        "go",
        "http",
        Some(None),
        [("handler.go", "go/http/handler.go")]
    ),
    t!(
        "go",
        "queue",
        Some(None),
        [("handler.go", "go/queue/handler.go")]
    ),
    t!(
        "go",
        "schedule",
        Some(None),
        [("handler.go", "go/schedule/handler.go")]
    ),
    t!(
        "go",
        "stream",
        Some(None),
        [("handler.go", "go/stream/handler.go")]
    ),
    t!(
        "rust",
        "task",
        Some(None),
        [("src/lib.rs", "rust/task/src/lib.rs")]
    ),
    t!("js", "task", Some(JS_WASI), [("app.js", "js/task/app.js")]),
    t!(
        "python",
        "task",
        Some(None),
        [("app.py", "python/task/app.py")]
    ),
    t!("c", "task", Some(None), [("main.c", "c/task/main.c")]),
    t!(
        "go",
        "task",
        Some(None),
        [("handler.go", "go/task/handler.go")]
    ),
];

/// The guest's `wit/world.wit` for `world`.
fn world_wit(world: &str) -> &'static str {
    match world {
        "http" => include_str!("../templates/world-http.wit"),
        "queue" => include_str!("../templates/world-queue.wit"),
        "schedule" => include_str!("../templates/world-schedule.wit"),
        "task" => include_str!("../templates/world-task.wit"),
        _ => include_str!("../templates/world-stream.wit"),
    }
}

pub fn run(args: &NewArgs) -> Result<ExitCode> {
    if args.list {
        println!("templates (LANGUAGE-WORLD):");
        for t in TEMPLATES {
            println!("  {}-{}", t.language, t.world);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(template), Some(name)) = (&args.template, &args.name) else {
        bail!(
            "give a template and a name: `wasmfn new rust-http hello` (`--list` shows templates)"
        );
    };
    let folder = create(template, name, &args.dir)?;
    println!("created `{name}` from {template} in {}", folder.display());
    println!(
        "next: `wasmfn build {0}` then `wasmfn serve {0}`",
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Write guest `name` from `template` into `dir/name`, returning the folder.
pub fn create(template: &str, name: &str, dir: &Path) -> Result<PathBuf> {
    let t = TEMPLATES
        .iter()
        .find(|t| format!("{}-{}", t.language, t.world) == template)
        .with_context(|| {
            let all: Vec<String> = TEMPLATES
                .iter()
                .map(|t| format!("{}-{}", t.language, t.world))
                .collect();
            format!("no template `{template}`; templates: {}", all.join(", "))
        })?;
    wasmfn_host::manifest::validate_name(name)
        .map_err(|e| anyhow::anyhow!("`{name}` cannot name a function: {e}"))?;
    let folder = dir.join(name);
    if folder.exists() {
        bail!(
            "{} already exists: pick another name or remove it",
            folder.display()
        );
    }
    let fill = |text: &str| text.replace("{{name}}", name);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    if t.language == "rust" {
        let dependency = if t.world == "http" {
            "wasi = { version = \"0.14.7\", features = [\"std\"] }"
        } else if t.world == "http-p3" {
            // `async-spawn`: `spawn_local`, to go on writing a body after `handle` returns.
            "wasip3 = { version = \"0.10\", features = [\"async-spawn\"] }"
        } else {
            "wit-bindgen = \"0.63\""
        };
        std::fs::write(
            folder.join("Cargo.toml"),
            fill(RUST_CARGO).replace("{{dependency}}", dependency),
        )?;
    }
    for (file, text) in t.files {
        let path = folder.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(wasi) = t.wit {
        let wit = folder.join("wit");
        crate::wit_tree::write_deps(&wit, wasi)?;
        let mut world = fill(world_wit(t.world));
        if let Some(v) = wasi {
            world = world.replace("@0.2.12", &format!("@{v}"));
        }
        std::fs::write(wit.join("world.wit"), world)?;
    }
    Ok(folder)
}
