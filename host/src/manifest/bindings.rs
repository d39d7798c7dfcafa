//! The store tables of `wasmfn.toml`: `[kv.NAME]`, `[sql.NAME]` and `[blob.NAME]`, each naming
//! a backend and its connection settings, and optionally a `stream` that records its changes.
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
//! A store named `default` of each kind exists without being declared (embedded).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{validate_name, At, ManifestError};
use crate::blob::{BlobBackendConfig, S3Config};
use crate::kv::KvBackendConfig;
use crate::secrets::{SecretSource, SecretString};
use crate::sql::SqlBackendConfig;

/// A declared store: where it lives and which stream records its changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreDecl<C> {
    /// Backend and connection settings.
    pub config: C,
    /// `[streams.NAME]` receiving its change records.
    pub stream: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawStore {
    backend: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    pool_size: Option<Spanned<i64>>,
    bucket: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    access_key_id_env: Option<Spanned<String>>,
    secret_access_key_env: Option<Spanned<String>>,
    stream: Option<Spanned<String>>,
}

/// Checks one raw store table for the keys its backend accepts.
struct Checker<'a> {
    table: String,
    backend: &'a str,
    at: &'a At<'a>,
    /// Where `backend` is set (empty when defaulted).
    span: std::ops::Range<usize>,
}

impl Checker<'_> {
    /// Refuse `key` (set in the table) when the backend does not take it.
    fn refuse<T>(&self, v: &Option<Spanned<T>>, key: &str) -> Result<(), ManifestError> {
        match v {
            Some(v) => Err((self.at)(
                v.span(),
                &format!("{}.{key}", self.table),
                format!("`{key}` does not apply to the `{}` backend", self.backend),
            )),
            None => Ok(()),
        }
    }

    /// [`Checker::refuse`] for several string keys.
    fn refuse_all(&self, keys: &[(&Option<Spanned<String>>, &str)]) -> Result<(), ManifestError> {
        keys.iter().try_for_each(|(v, k)| self.refuse(v, k))
    }

    fn unknown_backend(&self, choices: &str) -> ManifestError {
        (self.at)(
            self.span.clone(),
            &format!("{}.backend", self.table),
            format!("unknown backend `{}`: use {choices}", self.backend),
        )
    }

    /// `url` or `url-env`, exactly one.
    fn url(&self, raw: &RawStore, example: &str) -> Result<SecretSource, ManifestError> {
        match (&raw.url, &raw.url_env) {
            (Some(u), None) => Ok(SecretSource::Literal(SecretString::new(
                u.get_ref().clone(),
            ))),
            (None, Some(e)) => Ok(SecretSource::Env(e.get_ref().clone())),
            (Some(u), Some(_)) => Err((self.at)(
                u.span(),
                &format!("{}.url", self.table),
                "set `url` or `url-env`, not both".into(),
            )),
            (None, None) => Err(ManifestError(format!(
                "[{}]: the `{}` backend needs `url = \"{example}\"` or `url-env = \"VARIABLE\"`",
                self.table, self.backend
            ))),
        }
    }
}

fn backend_of<'a>(raw: &'a RawStore, default: &'a str) -> (&'a str, std::ops::Range<usize>) {
    match &raw.backend {
        Some(b) => (b.get_ref().as_str(), b.span()),
        None => (default, 0..0),
    }
}

fn path_of(base: &Path, raw: &RawStore) -> Option<std::path::PathBuf> {
    raw.path.as_ref().map(|p| base.join(p.get_ref()))
}

/// The tables of one store kind: names validated, each table's backend built by `build` from
/// a [`Checker`] for it (which refuses keys of other backends), its folder and the raw table.
fn tables<C>(
    file: &Path,
    kind: &str,
    default_backend: &str,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
    build: impl Fn(&Checker<'_>, &Path, &RawStore) -> Result<C, ManifestError>,
) -> Result<BTreeMap<String, StoreDecl<C>>, ManifestError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [{kind}.{name}]: {m}", file.display())))?;
        let (backend, span) = backend_of(r, default_backend);
        let c = Checker {
            table: format!("{kind}.{name}"),
            backend,
            at,
            span,
        };
        let config = build(&c, base, r)?;
        let stream = r.stream.as_ref().map(|s| s.get_ref().clone());
        out.insert(name.clone(), StoreDecl { config, stream });
    }
    Ok(out)
}

/// `[kv.NAME]` tables.
pub(super) fn kv(
    file: &Path,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
) -> Result<BTreeMap<String, StoreDecl<KvBackendConfig>>, ManifestError> {
    tables(file, "kv", "sqlite", raw, at, |c, base, r| {
        c.refuse_all(&[
            (&r.bucket, "bucket"),
            (&r.region, "region"),
            (&r.endpoint, "endpoint"),
            (&r.access_key_id_env, "access-key-id-env"),
            (&r.secret_access_key_env, "secret-access-key-env"),
        ])?;
        c.refuse(&r.pool_size, "pool-size")?;
        match c.backend {
            "sqlite" => {
                c.refuse_all(&[
                    (&r.url, "url"),
                    (&r.url_env, "url-env"),
                    (&r.prefix, "prefix"),
                ])?;
                Ok(KvBackendConfig::Sqlite {
                    path: path_of(base, r),
                })
            }
            "redis" => {
                c.refuse(&r.path, "path")?;
                Ok(KvBackendConfig::Redis {
                    url: c.url(r, "redis://127.0.0.1:6379")?,
                    prefix: r.prefix.as_ref().map(|p| p.get_ref().clone()),
                })
            }
            _ => Err(c.unknown_backend("\"sqlite\" (embedded) or \"redis\"")),
        }
    })
}

/// `[sql.NAME]` tables.
pub(super) fn sql(
    file: &Path,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
) -> Result<BTreeMap<String, StoreDecl<SqlBackendConfig>>, ManifestError> {
    tables(file, "sql", "sqlite", raw, at, |c, base, r| {
        c.refuse_all(&[
            (&r.bucket, "bucket"),
            (&r.region, "region"),
            (&r.endpoint, "endpoint"),
            (&r.prefix, "prefix"),
            (&r.access_key_id_env, "access-key-id-env"),
            (&r.secret_access_key_env, "secret-access-key-env"),
        ])?;
        match c.backend {
            "sqlite" => {
                c.refuse_all(&[(&r.url, "url"), (&r.url_env, "url-env")])?;
                c.refuse(&r.pool_size, "pool-size")?;
                Ok(SqlBackendConfig::Sqlite {
                    path: path_of(base, r),
                })
            }
            "postgres" => {
                c.refuse(&r.path, "path")?;
                let pool_size = match &r.pool_size {
                    None => 16,
                    Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref() as usize,
                    Some(n) => {
                        return Err((c.at)(
                            n.span(),
                            &format!("{}.pool-size", c.table),
                            format!("{} is out of range 1..=1000", n.get_ref()),
                        ))
                    }
                };
                Ok(SqlBackendConfig::Postgres {
                    url: c.url(r, "postgres://user@127.0.0.1/db")?,
                    pool_size,
                })
            }
            _ => Err(c.unknown_backend("\"sqlite\" (embedded) or \"postgres\"")),
        }
    })
}

/// `[blob.NAME]` tables.
pub(super) fn blob(
    file: &Path,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
) -> Result<BTreeMap<String, StoreDecl<BlobBackendConfig>>, ManifestError> {
    tables(file, "blob", "fs", raw, at, |c, base, r| {
        c.refuse_all(&[
            (&r.url, "url"),
            (&r.url_env, "url-env"),
            (&r.prefix, "prefix"),
        ])?;
        c.refuse(&r.pool_size, "pool-size")?;
        match c.backend {
            "fs" => {
                c.refuse_all(&[
                    (&r.bucket, "bucket"),
                    (&r.region, "region"),
                    (&r.endpoint, "endpoint"),
                    (&r.access_key_id_env, "access-key-id-env"),
                    (&r.secret_access_key_env, "secret-access-key-env"),
                ])?;
                Ok(BlobBackendConfig::Fs {
                    path: path_of(base, r),
                })
            }
            "s3" => {
                c.refuse(&r.path, "path")?;
                let Some(bucket) = &r.bucket else {
                    return Err(ManifestError(format!(
                        "[{}]: the `s3` backend needs `bucket = \"NAME\"`",
                        c.table
                    )));
                };
                let env = |v: &Option<Spanned<String>>| {
                    v.as_ref().map(|e| SecretSource::Env(e.get_ref().clone()))
                };
                Ok(BlobBackendConfig::S3(S3Config {
                    bucket: bucket.get_ref().clone(),
                    region: r.region.as_ref().map(|v| v.get_ref().clone()),
                    endpoint: r.endpoint.as_ref().map(|v| v.get_ref().clone()),
                    access_key_id: env(&r.access_key_id_env),
                    secret_access_key: env(&r.secret_access_key_env),
                }))
            }
            _ => Err(c.unknown_backend("\"fs\" (embedded) or \"s3\"")),
        }
    })
}
