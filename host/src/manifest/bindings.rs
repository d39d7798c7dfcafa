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

fn unknown_backend(
    at: &At<'_>,
    table: &str,
    span: std::ops::Range<usize>,
    got: &str,
    choices: &str,
) -> ManifestError {
    at(
        span,
        &format!("{table}.backend"),
        format!("unknown backend `{got}`: use {choices}"),
    )
}

fn path_of(base: &Path, raw: &RawStore) -> Option<std::path::PathBuf> {
    raw.path.as_ref().map(|p| base.join(p.get_ref()))
}

fn stream_of(raw: &RawStore) -> Option<String> {
    raw.stream.as_ref().map(|s| s.get_ref().clone())
}

/// `[kv.NAME]` tables.
pub(super) fn kv(
    file: &Path,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
) -> Result<BTreeMap<String, StoreDecl<KvBackendConfig>>, ManifestError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [kv.{name}]: {m}", file.display())))?;
        let (backend, span) = backend_of(r, "sqlite");
        let c = Checker {
            table: format!("kv.{name}"),
            backend,
            at,
        };
        for (v, k) in [
            (&r.bucket, "bucket"),
            (&r.region, "region"),
            (&r.endpoint, "endpoint"),
        ] {
            c.refuse(v, k)?;
        }
        c.refuse(&r.access_key_id_env, "access-key-id-env")?;
        c.refuse(&r.secret_access_key_env, "secret-access-key-env")?;
        c.refuse(&r.pool_size, "pool-size")?;
        let config = match backend {
            "sqlite" => {
                c.refuse(&r.url, "url")?;
                c.refuse(&r.url_env, "url-env")?;
                c.refuse(&r.prefix, "prefix")?;
                KvBackendConfig::Sqlite {
                    path: path_of(base, r),
                }
            }
            "redis" => {
                c.refuse(&r.path, "path")?;
                KvBackendConfig::Redis {
                    url: c.url(r, "redis://127.0.0.1:6379")?,
                    prefix: r.prefix.as_ref().map(|p| p.get_ref().clone()),
                }
            }
            other => {
                return Err(unknown_backend(
                    at,
                    &c.table,
                    span,
                    other,
                    "\"sqlite\" (embedded) or \"redis\"",
                ))
            }
        };
        out.insert(
            name.clone(),
            StoreDecl {
                config,
                stream: stream_of(r),
            },
        );
    }
    Ok(out)
}

/// `[sql.NAME]` tables.
pub(super) fn sql(
    file: &Path,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
) -> Result<BTreeMap<String, StoreDecl<SqlBackendConfig>>, ManifestError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [sql.{name}]: {m}", file.display())))?;
        let (backend, span) = backend_of(r, "sqlite");
        let c = Checker {
            table: format!("sql.{name}"),
            backend,
            at,
        };
        for (v, k) in [
            (&r.bucket, "bucket"),
            (&r.region, "region"),
            (&r.endpoint, "endpoint"),
            (&r.prefix, "prefix"),
        ] {
            c.refuse(v, k)?;
        }
        c.refuse(&r.access_key_id_env, "access-key-id-env")?;
        c.refuse(&r.secret_access_key_env, "secret-access-key-env")?;
        let config = match backend {
            "sqlite" => {
                c.refuse(&r.url, "url")?;
                c.refuse(&r.url_env, "url-env")?;
                c.refuse(&r.pool_size, "pool-size")?;
                SqlBackendConfig::Sqlite {
                    path: path_of(base, r),
                }
            }
            "postgres" => {
                c.refuse(&r.path, "path")?;
                let pool_size = match &r.pool_size {
                    None => 16,
                    Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref() as usize,
                    Some(n) => {
                        return Err(at(
                            n.span(),
                            &format!("{}.pool-size", c.table),
                            format!("{} is out of range 1..=1000", n.get_ref()),
                        ))
                    }
                };
                SqlBackendConfig::Postgres {
                    url: c.url(r, "postgres://user@127.0.0.1/db")?,
                    pool_size,
                }
            }
            other => {
                return Err(unknown_backend(
                    at,
                    &c.table,
                    span,
                    other,
                    "\"sqlite\" (embedded) or \"postgres\"",
                ))
            }
        };
        out.insert(
            name.clone(),
            StoreDecl {
                config,
                stream: stream_of(r),
            },
        );
    }
    Ok(out)
}

/// `[blob.NAME]` tables.
pub(super) fn blob(
    file: &Path,
    raw: &BTreeMap<String, RawStore>,
    at: &At<'_>,
) -> Result<BTreeMap<String, StoreDecl<BlobBackendConfig>>, ManifestError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [blob.{name}]: {m}", file.display())))?;
        let (backend, span) = backend_of(r, "fs");
        let c = Checker {
            table: format!("blob.{name}"),
            backend,
            at,
        };
        for (v, k) in [
            (&r.url, "url"),
            (&r.url_env, "url-env"),
            (&r.prefix, "prefix"),
        ] {
            c.refuse(v, k)?;
        }
        c.refuse(&r.pool_size, "pool-size")?;
        let config = match backend {
            "fs" => {
                for (v, k) in [
                    (&r.bucket, "bucket"),
                    (&r.region, "region"),
                    (&r.endpoint, "endpoint"),
                ] {
                    c.refuse(v, k)?;
                }
                c.refuse(&r.access_key_id_env, "access-key-id-env")?;
                c.refuse(&r.secret_access_key_env, "secret-access-key-env")?;
                BlobBackendConfig::Fs {
                    path: path_of(base, r),
                }
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
                BlobBackendConfig::S3(S3Config {
                    bucket: bucket.get_ref().clone(),
                    region: r.region.as_ref().map(|v| v.get_ref().clone()),
                    endpoint: r.endpoint.as_ref().map(|v| v.get_ref().clone()),
                    access_key_id: env(&r.access_key_id_env),
                    secret_access_key: env(&r.secret_access_key_env),
                })
            }
            other => {
                return Err(unknown_backend(
                    at,
                    &c.table,
                    span,
                    other,
                    "\"fs\" (embedded) or \"s3\"",
                ))
            }
        };
        out.insert(
            name.clone(),
            StoreDecl {
                config,
                stream: stream_of(r),
            },
        );
    }
    Ok(out)
}
