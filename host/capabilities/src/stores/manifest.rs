//! The store tables of `wasmfn.toml`, shared by the three store kinds: `[kv.NAME]`,
//! `[sql.NAME]` and `[blob.NAME]` each name a backend and its connection settings, and
//! optionally a `stream` that records their changes; `kv = [...]` (and `sql`, `blob`) in
//! `[functions.NAME]` binds stores to a function.
//!
//! ```toml
//! [kv.cache]
//! backend = "redis"            # "sqlite" (default, embedded) or "redis"
//! url-env = "REDIS_URL"        # or url = "redis://127.0.0.1:6379"
//!
//! [sql.users]
//! backend = "postgres"         # "sqlite" (default) or "postgres"
//! url-env = "DATABASE_URL"
//! stream = "user-changes"      # record row changes into [streams.user-changes]
//!
//! [blob.avatars]
//! backend = "s3"               # "fs" (default) or "s3"
//! bucket = "avatars"
//! endpoint = "http://127.0.0.1:9000"
//! ```
//!
//! A store named `default` of each kind exists without being declared (embedded). Every kind
//! reads the same table shape so that a key of another backend is refused by name ("`pool-size`
//! does not apply to the `sqlite` backend") rather than as an unknown field.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{
    named_entries, KeySpec, Locator, ManifestError, ManifestSection, Merge, ParseContext, Shape,
    TableSpec,
};
use wasmfn_host_core::secrets::{SecretSource, SecretString};
use wasmfn_host_core::Extensions;

use super::{Bindings, StoreCapability, StoreKind};

/// A declared store: where it lives and which stream records its changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreDecl<C> {
    /// Backend and connection settings.
    pub config: C,
    /// `[streams.NAME]` receiving its change records.
    pub stream: Option<String>,
}

/// The declared stores of kind `K`, by name (the section's result).
#[derive(Debug)]
pub struct StoreDecls<K: StoreKind> {
    /// The `[KIND.NAME]` tables.
    pub stores: BTreeMap<String, StoreDecl<K::Config>>,
    kind: PhantomData<fn() -> K>,
}

impl<K: StoreKind> StoreDecls<K> {
    /// The store declared as `name`.
    pub fn get(&self, name: &str) -> Option<&StoreDecl<K::Config>> {
        self.stores.get(name)
    }
}

/// One raw `[KIND.NAME]` table: the keys of every backend of every kind.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStore {
    backend: Option<Spanned<String>>,
    /// `path`: the embedded backends' file or folder.
    pub path: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    /// `prefix`: Redis key prefix.
    pub prefix: Option<Spanned<String>>,
    /// `pool-size`: PostgreSQL connections.
    pub pool_size: Option<Spanned<i64>>,
    /// `bucket`, `region`, `endpoint`: S3.
    pub bucket: Option<Spanned<String>>,
    /// See `bucket`.
    pub region: Option<Spanned<String>>,
    /// See `bucket`.
    pub endpoint: Option<Spanned<String>>,
    /// `access-key-id-env`, `secret-access-key-env`: S3 credentials from the environment.
    pub access_key_id_env: Option<Spanned<String>>,
    /// See `access_key_id_env`.
    pub secret_access_key_env: Option<Spanned<String>>,
    stream: Option<Spanned<String>>,
}

impl RawStore {
    /// `path`, resolved against the manifest's folder.
    pub fn path_in(&self, base: &Path) -> Option<std::path::PathBuf> {
        self.path.as_ref().map(|p| base.join(p.get_ref()))
    }
}

/// Checks one raw store table for the keys its backend accepts.
pub struct Checker<'a> {
    /// `kind.NAME`.
    pub table: String,
    /// The backend named (or the default).
    pub backend: &'a str,
    locator: Locator<'a>,
    /// Where `backend` is set (empty when defaulted).
    span: Range<usize>,
}

impl Checker<'_> {
    /// `file:line: key: message` at `span`.
    pub fn at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ManifestError {
        self.locator
            .at(span, &format!("{}.{key}", self.table), message)
    }

    /// Refuse `key` (set in the table) when the backend does not take it.
    pub fn refuse<T>(&self, v: &Option<Spanned<T>>, key: &str) -> Result<(), ManifestError> {
        match v {
            Some(v) => Err(self.at(
                v.span(),
                key,
                format!("`{key}` does not apply to the `{}` backend", self.backend),
            )),
            None => Ok(()),
        }
    }

    /// [`Checker::refuse`] for several string keys.
    pub fn refuse_all(
        &self,
        keys: &[(&Option<Spanned<String>>, &str)],
    ) -> Result<(), ManifestError> {
        keys.iter().try_for_each(|(v, k)| self.refuse(v, k))
    }

    /// The error for a backend this kind does not have.
    pub fn unknown_backend(&self, choices: &str) -> ManifestError {
        self.at(
            self.span.clone(),
            "backend",
            format!("unknown backend `{}`: use {choices}", self.backend),
        )
    }

    /// The error for a backend this host was built without.
    pub fn not_compiled(&self, feature: &str) -> ManifestError {
        self.at(
            self.span.clone(),
            "backend",
            format!(
                "this wasmfn was built without the `{}` backend; rebuild wasmfn-host with the \
                 `{feature}` feature (the wasmfn command has every backend)",
                self.backend
            ),
        )
    }

    /// `url` or `url-env`, exactly one.
    pub fn url(&self, raw: &RawStore, example: &str) -> Result<SecretSource, ManifestError> {
        match (&raw.url, &raw.url_env) {
            (Some(u), None) => Ok(SecretSource::Literal(SecretString::new(
                u.get_ref().clone(),
            ))),
            (None, Some(e)) => Ok(SecretSource::Env(e.get_ref().clone())),
            (Some(u), Some(_)) => Err(self.at(u.span(), "url", "set `url` or `url-env`, not both")),
            (None, None) => Err(ManifestError(format!(
                "[{}]: the `{}` backend needs `url = \"{example}\"` or `url-env = \"VARIABLE\"`",
                self.table, self.backend
            ))),
        }
    }

    /// Refuse `url` and `url-env`.
    pub fn refuse_url(&self, raw: &RawStore) -> Result<(), ManifestError> {
        self.refuse_all(&[(&raw.url, "url"), (&raw.url_env, "url-env")])
    }
}

/// The spec constants every store kind shares, derived from its `KIND`.
pub(crate) trait Specs: StoreKind {
    const TABLES: &'static [TableSpec] = &[TableSpec {
        name: Self::KIND,
        shape: Shape::Named,
    }];
    const KEYS: &'static [KeySpec] = &[KeySpec {
        name: Self::KIND,
        merge: Merge::Replace,
    }];
}

impl<K: StoreKind> Specs for K {}

impl<K: StoreKind> ManifestSection for StoreCapability<K> {
    fn tables(&self) -> &'static [TableSpec] {
        K::TABLES
    }

    fn function_keys(&self) -> &'static [KeySpec] {
        K::KEYS
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let kind = K::KIND;
        let raw: BTreeMap<String, RawStore> = cx.take_table(kind)?.unwrap_or_default();
        let raw = named_entries(cx, kind, raw)?;
        let base = cx.base_dir().to_path_buf();
        let mut stores = BTreeMap::new();
        for (name, r) in &raw {
            let (backend, span) = match &r.backend {
                Some(b) => (b.get_ref().as_str(), b.span()),
                None => (K::DEFAULT_BACKEND, 0..0),
            };
            let checker = Checker {
                table: format!("{kind}.{name}"),
                backend,
                locator: cx.locator(),
                span,
            };
            let config = K::config(&checker, &base, r)?;
            let stream = r.stream.as_ref().map(|s| s.get_ref().clone());
            stores.insert(name.clone(), StoreDecl { config, stream });
        }
        for (name, d) in &stores {
            if let Some(st) = &d.stream {
                let error = cx.error(format!(
                    "[{kind}.{name}]: stream `{st}` is not declared; add a [streams.{st}] table naming its function"
                ));
                cx.require("stream", st, error);
            }
        }
        cx.insert(StoreDecls::<K> {
            stores,
            kind: PhantomData,
        });
        Ok(())
    }

    fn parse_function_keys(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let kind = K::KIND;
        let declared = cx
            .get::<StoreDecls<K>>()
            .map(|d| d.stores.clone())
            .unwrap_or_default();
        for (function, list) in cx.take_function_values::<Vec<Spanned<String>>>(kind)? {
            let mut names = Vec::new();
            for b in list {
                let n = b.get_ref();
                if n != "default" && !declared.contains_key(n) {
                    return Err(cx.at(
                        b.span(),
                        &format!("functions.{function}.{kind}"),
                        format!(
                            "no {kind} store `{n}` is declared; add a [{kind}.{n}] table (or use the built-in \"default\")"
                        ),
                    ));
                }
                names.push(n.clone());
            }
            cx.function_settings(&function)
                .insert(Bindings::<K>::new(names));
        }
        Ok(())
    }

    fn without_manifest(&self, settings: &mut Extensions) {
        // Without a manifest every function may use the embedded `default` store of each kind.
        settings.insert(Bindings::<K>::new(["default"]));
    }
}
