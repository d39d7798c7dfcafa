//! `[sql.NAME]`: an embedded SQLite file (default) or a PostgreSQL database, and the
//! [`StoreKind`] that ties SQL databases into [`crate::stores`].

use std::path::Path;

use wasmfn_host_core::manifest::ManifestError;
use wasmfn_host_core::InstanceState;
use wasmtime::component::Linker;

#[cfg(feature = "sql-postgres")]
use super::PostgresSql;
use super::{Sql, SqlBackend, SqlBackendConfig, SqlStore, SqliteSql};
use crate::stores::{ChangeSink, Checker, RawStore, StoreKind};

impl StoreKind for Sql {
    const KIND: &'static str = "sql";
    const WHAT: &'static str = "SQL";
    const IMPORT: &'static str = "wasmfn:platform/sql";
    const DEFAULT_BACKEND: &'static str = "sqlite";
    type Config = SqlBackendConfig;
    type Store = SqlStore;

    fn is_import(interface: &str) -> bool {
        interface == "wasmfn:platform/sql"
    }

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        super::host_impl::add_to_linker(linker)?;
        super::host_async::add_to_linker(linker)
    }

    fn config(
        c: &Checker<'_>,
        base: &Path,
        r: &RawStore,
    ) -> Result<SqlBackendConfig, ManifestError> {
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
                c.refuse_url(r)?;
                c.refuse(&r.pool_size, "pool-size")?;
                Ok(SqlBackendConfig::Sqlite {
                    path: r.path_in(base),
                })
            }
            #[cfg(feature = "sql-postgres")]
            "postgres" => {
                c.refuse(&r.path, "path")?;
                let pool_size = match &r.pool_size {
                    None => 16,
                    Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref() as usize,
                    Some(n) => {
                        return Err(c.at(
                            n.span(),
                            "pool-size",
                            format!("{} is out of range 1..=1000", n.get_ref()),
                        ))
                    }
                };
                Ok(SqlBackendConfig::Postgres {
                    url: c.url(r, "postgres://user@127.0.0.1/db")?,
                    pool_size,
                })
            }
            #[cfg(not(feature = "sql-postgres"))]
            "postgres" => Err(c.not_compiled("postgres")),
            _ => Err(c.unknown_backend("\"sqlite\" (embedded) or \"postgres\"")),
        }
    }

    fn default_config() -> SqlBackendConfig {
        SqlBackendConfig::Sqlite { path: None }
    }

    fn is_distributed(config: &SqlBackendConfig) -> bool {
        !matches!(config, SqlBackendConfig::Sqlite { .. })
    }

    async fn open(
        name: &str,
        config: &SqlBackendConfig,
        state_dir: &Path,
        changes: Option<ChangeSink>,
    ) -> anyhow::Result<SqlStore> {
        let backend: Box<dyn SqlBackend> = match config {
            SqlBackendConfig::Sqlite { path } => {
                let path = path
                    .clone()
                    .unwrap_or_else(|| state_dir.join("sql").join(format!("{name}.sqlite")));
                Box::new(SqliteSql::open(&path, name, changes)?)
            }
            #[cfg(feature = "sql-postgres")]
            SqlBackendConfig::Postgres { url, pool_size } => {
                let url = url.resolve().map_err(anyhow::Error::msg)?;
                Box::new(PostgresSql::connect(url.expose(), *pool_size, name, changes).await?)
            }
        };
        Ok(SqlStore {
            name: name.to_string(),
            backend,
        })
    }
}
