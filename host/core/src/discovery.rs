//! Finding functions in a folder by convention: `NAME.wasm`, or a subfolder `NAME/` holding a
//! guest source and, once built, its component `NAME/NAME.wasm`.

use std::path::{Path, PathBuf};

use crate::manifest::validate_name;

/// A function found in a folder, possibly unusable (then `problem` says why and how to fix it).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The function name it would have.
    pub name: String,
    /// Its component file (which may not exist yet, for an unbuilt guest source).
    pub path: PathBuf,
    /// Why it cannot be loaded, with the fix.
    pub problem: Option<String>,
}

/// Files whose presence marks a subfolder as a guest source.
const SOURCE_MARKERS: &[&str] = &[
    "Cargo.toml",
    "package.json",
    "app.py",
    "pyproject.toml",
    "go.mod",
    "CMakeLists.txt",
    "Makefile",
];

/// Folders never treated as functions.
const SKIPPED: &[&str] = &["target", "node_modules", "wit", "deps"];

/// The functions in `dir`, sorted by file name.
pub fn discover(dir: &Path) -> std::io::Result<Vec<Candidate>> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') || SKIPPED.contains(&file_name.as_str()) {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_file() || file_type.is_symlink() && path.is_file() {
            if let Some(name) = file_name.strip_suffix(".wasm") {
                found.push(candidate(name, path.clone(), None));
            }
        } else if path.is_dir() {
            let built = path.join(format!("{file_name}.wasm"));
            if built.is_file() {
                found.push(candidate(&file_name, built, None));
            } else if SOURCE_MARKERS.iter().any(|m| path.join(m).exists()) {
                let problem = format!(
                    "guest source found but no built component `{}`; run `wasmfn build {}` first",
                    built.display(),
                    dir.display()
                );
                found.push(candidate(&file_name, built, Some(problem)));
            }
        }
    }
    // `NAME.wasm` next to a `NAME/` folder is ambiguous: keep the first, flag the second.
    let mut seen = std::collections::HashSet::new();
    for c in &mut found {
        if !seen.insert(c.name.clone()) && c.problem.is_none() {
            c.problem = Some(format!(
                "another component is also named `{}`; rename one of them",
                c.name
            ));
        }
    }
    Ok(found)
}

fn candidate(name: &str, path: PathBuf, problem: Option<String>) -> Candidate {
    let problem = problem.or_else(|| validate_name(name).err());
    Candidate {
        name: name.to_string(),
        path,
        problem,
    }
}
