//! Values that must never reach a log line, an error message or a command's output: secrets
//! from the manifest's `secrets` tables and connection URLs that may carry passwords.

use std::fmt;

/// A string whose `Debug` and `Display` print `<redacted>`. Read it with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for handing to the guest or the backend client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret comes from (`[functions.NAME.secrets]`, connection URLs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the manifest itself (connection URLs without credentials, tests).
    Literal(SecretString),
    /// An environment variable of the host process.
    Env(String),
    /// A file, read whole (one trailing newline dropped).
    File(std::path::PathBuf),
}

impl SecretSource {
    /// Read the secret; the error names the variable or file, never a value.
    pub fn resolve(&self) -> Result<SecretString, String> {
        match self {
            SecretSource::Literal(s) => Ok(s.clone()),
            SecretSource::Env(var) => std::env::var(var).map(SecretString).map_err(|_| {
                format!("environment variable `{var}` is not set; export it before starting wasmfn")
            }),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretString(s.strip_suffix('\n').unwrap_or(&s).to_string()))
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
        }
    }
}

/// `url` with the credentials of its authority (`user:password@`, `token@`) replaced by
/// `***`, for log lines and error messages. Anything that does not look like a URL with
/// credentials comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end + 3], &rest[at..]),
        None => url.to_string(),
    }
}

/// Whether `url` carries credentials in its authority (`user:password@host`).
pub fn url_has_credentials(url: &str) -> bool {
    redact_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact_url("nats://alice:s3cret@nats.internal:4222"),
            "nats://***@nats.internal:4222"
        );
        assert_eq!(redact_url("nats://tok3n@10.0.0.1"), "nats://***@10.0.0.1");
        assert_eq!(
            redact_url("postgres://u:p@w@db/app?sslmode=require"),
            "postgres://***@db/app?sslmode=require"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("redis://host/0?note=a@b"),
            "redis://host/0?note=a@b",
            "an @ after the authority is not a credential"
        );
        assert!(url_has_credentials("redis://:pw@host"));
        assert!(!url_has_credentials("not a url"));
    }

    #[test]
    fn never_printed() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
