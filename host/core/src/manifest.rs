//! The part of `wasmfn.toml` handling that lower layers plug into: a [`ManifestSection`] owns
//! some top-level tables (`[kv.NAME]`) and some keys of `[functions.NAME]` (`kv = [...]`) and
//! parses them itself, with errors that name the file, line and key.
//!
//! The composition root reads the file into toml's span-carrying tree, applies `[env.NAME]`
//! overlays by the shapes sections declare ([`TableSpec`], [`KeySpec`]), then parses in this
//! order: the capabilities' tables ([`ManifestSection::parse`]), core's function keys, every
//! section's function keys ([`ManifestSection::parse_function_keys`]), then the tables of the
//! triggers and orchestration, each in registration order. A section stores its
//! typed result in [`Sections`] (app-wide) or in a function's settings (per function), and may
//! read sections parsed before it. Names one section declares and another refers to (a store's
//! `stream`, a rule's target queue) are checked once every section has run
//! ([`ParseContext::declare`], [`ParseContext::require`]).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use crate::extensions::Extensions;

/// A manifest error: file, line and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManifestError {}

/// The typed results of every section, by type (app-wide parts of the manifest).
pub type Sections = Extensions;

/// A value of the manifest tree with its byte range in the file.
pub type RawValue<'i> = Spanned<DeValue<'i>>;

/// How a top-level table merges under `[env.NAME]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `[NAME.ENTRY]` tables: an environment's entry replaces the base entry of that name whole.
    Named,
    /// One table (`[queue-backend]`): an environment's table replaces the base one whole.
    Single,
}

/// A top-level table a section owns.
#[derive(Clone, Copy, Debug)]
pub struct TableSpec {
    /// Its name (`kv` for `[kv.NAME]`).
    pub name: &'static str,
    /// How environments overlay it.
    pub shape: Shape,
}

/// How a key of `[functions.NAME]` merges under `[env.NAME]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The environment's value replaces the base value.
    Replace,
    /// A table merged entry by entry (`config`, `secrets`).
    Entries,
}

/// A key of `[functions.NAME]` a section owns.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// The key (`kv`).
    pub name: &'static str,
    /// How environments overlay it.
    pub merge: Merge,
}

/// A part of `wasmfn.toml` owned by a capability, trigger or orchestrator.
pub trait ManifestSection: Send + Sync + 'static {
    /// The top-level tables it owns.
    fn tables(&self) -> &'static [TableSpec] {
        &[]
    }

    /// The keys of `[functions.NAME]` it owns.
    fn function_keys(&self) -> &'static [KeySpec] {
        &[]
    }

    /// Parse and check its tables (taken from `cx`), storing the typed result in `cx`.
    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let _ = cx;
        Ok(())
    }

    /// Parse and check its keys of `[functions.NAME]`, storing them in the functions'
    /// settings. Runs after every capability's tables and core's function keys are parsed.
    fn parse_function_keys(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let _ = cx;
        Ok(())
    }

    /// The settings a function gets when its folder has no manifest at all.
    fn without_manifest(&self, settings: &mut Extensions) {
        let _ = settings;
    }
}

/// Turns byte ranges of the manifest into `file:line: key: message` errors.
#[derive(Clone, Copy)]
pub struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    /// For the manifest `path` whose contents are `text`.
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// The manifest file.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// The manifest's text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// `file:line: `key`: message`, the line being where `span` starts.
    pub fn at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ManifestError {
        let line = self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        ManifestError(format!(
            "{}:{line}: `{key}`: {}",
            self.path.display(),
            message.into()
        ))
    }

    /// `file: message`.
    pub fn error(&self, message: impl std::fmt::Display) -> ManifestError {
        ManifestError(format!("{}: {message}", self.path.display()))
    }

    /// A deserialization error of toml, shown with its line and the offending text.
    pub fn toml_error(&self, mut e: toml::de::Error) -> ManifestError {
        e.set_input(Some(self.text));
        ManifestError(format!(
            "{}: {}",
            self.path.display(),
            e.to_string().trim_end()
        ))
    }

    /// Deserialize `value` (part of this manifest) into `T`.
    pub fn deserialize<'i, T: Deserialize<'i>>(
        &self,
        value: RawValue<'i>,
    ) -> Result<T, ManifestError> {
        T::deserialize(toml::de::ValueDeserializer::from(value)).map_err(|e| self.toml_error(e))
    }
}

/// A name one section refers to, checked against the names declared once every section ran.
struct Reference {
    kind: &'static str,
    name: String,
    error: ManifestError,
}

/// What a section's [`ManifestSection::parse`] works with.
pub struct ParseContext<'i> {
    path: PathBuf,
    text: &'i str,
    environment: Option<String>,
    tables: BTreeMap<String, RawValue<'i>>,
    function_keys: BTreeMap<String, BTreeMap<String, RawValue<'i>>>,
    functions: BTreeMap<String, Extensions>,
    sections: Sections,
    declared: BTreeSet<(&'static str, String)>,
    references: Vec<Reference>,
}

impl<'i> ParseContext<'i> {
    /// A context over the claimed parts of the manifest at `path` (text `text`): top-level
    /// `tables` and, per function, its claimed `function_keys`; `functions` holds every
    /// function's settings so far.
    pub fn new(
        path: &Path,
        text: &'i str,
        environment: Option<String>,
        tables: BTreeMap<String, RawValue<'i>>,
        function_keys: BTreeMap<String, BTreeMap<String, RawValue<'i>>>,
        functions: BTreeMap<String, Extensions>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            text,
            environment,
            tables,
            function_keys,
            functions,
            sections: Sections::new(),
            declared: BTreeSet::new(),
            references: Vec::new(),
        }
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder relative paths in the manifest are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The environment applied (`--env`), if any.
    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    /// Errors located in this manifest.
    pub fn locator(&self) -> Locator<'_> {
        Locator::new(&self.path, self.text)
    }

    /// `file:line: `key`: message`.
    pub fn at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ManifestError {
        self.locator().at(span, key, message)
    }

    /// `file: message`.
    pub fn error(&self, message: impl std::fmt::Display) -> ManifestError {
        self.locator().error(message)
    }

    /// Take top-level table `name` and deserialize it.
    pub fn take_table<T: Deserialize<'i>>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, ManifestError> {
        match self.tables.remove(name) {
            None => Ok(None),
            Some(raw) => Locator::new(&self.path, self.text)
                .deserialize(raw)
                .map(Some),
        }
    }

    /// Take every function's value of `key`, deserialized, by function name.
    pub fn take_function_values<T: Deserialize<'i>>(
        &mut self,
        key: &str,
    ) -> Result<Vec<(String, T)>, ManifestError> {
        let locator = Locator::new(&self.path, self.text);
        let mut out = Vec::new();
        for (function, keys) in &mut self.function_keys {
            if let Some(raw) = keys.remove(key) {
                out.push((function.clone(), locator.deserialize(raw)?));
            }
        }
        Ok(out)
    }

    /// The functions the manifest declares.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// The settings of function `name` (declared in the manifest), to add values to.
    pub fn function_settings(&mut self, name: &str) -> &mut Extensions {
        self.functions.entry(name.to_string()).or_default()
    }

    /// Store a section's typed result.
    pub fn insert<T: Any + Send + Sync>(&mut self, section: T) {
        self.sections.insert(section);
    }

    /// A section parsed before this one.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.sections.get()
    }

    /// A section parsed before this one, to change (an event rule adds the queue it delivers
    /// through).
    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.sections.get_mut()
    }

    /// Declare a name of `kind` (`"stream"`, `"queue"`...) that other sections may refer to.
    pub fn declare(&mut self, kind: &'static str, name: &str) {
        self.declared.insert((kind, name.to_string()));
    }

    /// Whether `name` of `kind` is declared (by a section that ran already).
    pub fn is_declared(&self, kind: &'static str, name: &str) -> bool {
        self.declared.contains(&(kind, name.to_string()))
    }

    /// Require `name` of `kind` to be declared by some section; `error` is reported otherwise.
    pub fn require(&mut self, kind: &'static str, name: &str, error: ManifestError) {
        self.references.push(Reference {
            kind,
            name: name.to_string(),
            error,
        });
    }

    /// After every section: the first reference to an undeclared name, and what every section
    /// produced (the sections and each function's settings).
    pub fn finish(self) -> Result<(Sections, BTreeMap<String, Extensions>), ManifestError> {
        if let Some(r) = self
            .references
            .into_iter()
            .find(|r| !self.declared.contains(&(r.kind, r.name.clone())))
        {
            return Err(r.error);
        }
        Ok((self.sections, self.functions))
    }
}

/// Function, store and queue names become URL path segments and file names: keep them simple.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid function name: use letters, digits, `-` and `_` (at most 64)"
        ))
    }
}

/// The entries of a `[NAME.ENTRY]` table, each name checked with [`validate_name`]:
/// `file: [kind.NAME]: problem` otherwise.
pub fn named_entries<T>(
    cx: &ParseContext<'_>,
    kind: &str,
    entries: BTreeMap<String, T>,
) -> Result<BTreeMap<String, T>, ManifestError> {
    for name in entries.keys() {
        validate_name(name).map_err(|m| cx.error(format!("[{kind}.{name}]: {m}")))?;
    }
    Ok(entries)
}
