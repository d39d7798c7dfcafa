//! TLS for the host's own connections to its backends (PostgreSQL with `sslmode=require`,
//! Redis with `rediss://`): rustls on ring, server certificates verified against the Mozilla
//! roots (webpki-roots) plus the PEM certificates of `SSL_CERT_FILE` when it is set (the
//! convention OpenSSL and most TLS clients share, for a private CA), host names checked.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

/// The variable naming extra trusted certificates (PEM, one or more).
pub const CA_FILE_VARIABLE: &str = "SSL_CERT_FILE";

/// The PEM text of `SSL_CERT_FILE`, when it is set.
pub fn extra_roots_pem() -> Result<Option<Vec<u8>>> {
    let Some(path) = std::env::var_os(CA_FILE_VARIABLE).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .with_context(|| format!("reading {CA_FILE_VARIABLE} ({})", path.to_string_lossy()))?;
    Ok(Some(pem))
}

/// The certificates backends' servers are checked against.
pub fn root_store() -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if let Some(pem) = extra_roots_pem()? {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.with_context(|| format!("reading a certificate of {CA_FILE_VARIABLE}"))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate of {CA_FILE_VARIABLE} is not usable"))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "{CA_FILE_VARIABLE} holds no PEM certificate");
    }
    Ok(roots)
}

/// A client configuration for backend connections.
pub fn client_config() -> Result<rustls::ClientConfig> {
    // An explicit provider: another crate of the build may enable a second one.
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("choosing TLS versions")?
    .with_root_certificates(root_store()?)
    .with_no_client_auth())
}

/// The TLS connector for a PostgreSQL connection. The URL's `sslmode=require` gets TLS with
/// the server's certificate verified (like libpq's `verify-full`); any other mode connects
/// without TLS, as before (`prefer` is treated as `disable` rather than trying TLS and
/// trusting whatever certificate answers).
#[cfg(feature = "sql-postgres")]
pub fn postgres(
    config: &mut tokio_postgres::Config,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use tokio_postgres::config::SslMode;
    if config.get_ssl_mode() != SslMode::Require {
        config.ssl_mode(SslMode::Disable);
    }
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        client_config()?,
    ))
}

/// A pool of up to `size` connections to the PostgreSQL database at `url` (TLS as
/// [`postgres`] decides), with `schema` run on its first connection, which must answer
/// within 5 s: the shared setup of wasmfn's own tables (workflows, schedule ticks, streams).
#[cfg(feature = "sql-postgres")]
pub async fn postgres_pool(
    url: &str,
    size: usize,
    schema: &str,
) -> Result<deadpool_postgres::Pool> {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
    let mut config: tokio_postgres::Config = url.parse().context("invalid PostgreSQL URL")?;
    let tls = postgres(&mut config)?;
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // A cheap check that a recycled connection is still alive after an idle period.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(size).build()?;
    let client = tokio::time::timeout(std::time::Duration::from_secs(5), pool.get())
        .await
        .map_err(|_| anyhow::anyhow!("PostgreSQL did not answer within 5 s"))?
        .context("connecting to PostgreSQL")?;
    client
        .batch_execute(schema)
        .await
        .context("creating wasmfn's tables")?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mozilla_roots_are_trusted_by_default() {
        // The process environment is shared by the tests of this crate; only read it.
        if std::env::var_os(CA_FILE_VARIABLE).is_none() {
            assert!(root_store().unwrap().len() > 100);
            client_config().unwrap();
        }
    }
}
