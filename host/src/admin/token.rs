//! The admin token and the admin endpoint file, both kept in the state folder and readable only
//! by the user running the host.
//!
//! The token is `WASMFN_ADMIN_TOKEN` when set, else the state folder's `admin-token`, created
//! on first start with 256 random bits and mode 0600. A token file that another user owns, or
//! that others can read, is refused rather than trusted.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// The file holding the admin token, inside the state folder.
pub const TOKEN_FILE: &str = "admin-token";
/// The file naming the admin listener (`http://HOST:PORT` or `unix:PATH`), for the CLI.
pub const ENDPOINT_FILE: &str = "admin-endpoint";
/// The environment variable that sets the token instead of the file.
pub const TOKEN_ENV: &str = "WASMFN_ADMIN_TOKEN";

/// Shorter tokens are refused: 16 characters of hex are 64 bits, the least worth calling secret.
const MIN_TOKEN_LEN: usize = 16;

/// The admin token: `WASMFN_ADMIN_TOKEN` if set, else `STATE/admin-token` (created if absent).
pub fn load_or_create(state_dir: &Path) -> Result<String> {
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        return check_token(token.trim(), TOKEN_ENV);
    }
    let path = state_dir.join(TOKEN_FILE);
    if let Some(token) = read_private(&path)? {
        return check_token(token.trim(), &path.display().to_string());
    }
    let token = random_token()?;
    match write_private(&path, token.as_bytes()) {
        Ok(()) => Ok(token),
        // Another host starting on the same folder wrote it first: use theirs.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                == Some(ErrorKind::AlreadyExists) =>
        {
            let token = read_private(&path)?.unwrap_or_default();
            check_token(token.trim(), &path.display().to_string())
        }
        Err(e) => Err(e),
    }
}

/// The token the state folder holds, for the CLI (`None` when there is none yet).
pub fn read(state_dir: &Path) -> Result<Option<String>> {
    Ok(read_private(&state_dir.join(TOKEN_FILE))?.map(|t| t.trim().to_string()))
}

fn check_token(token: &str, from: &str) -> Result<String> {
    if token.len() < MIN_TOKEN_LEN {
        bail!(
            "the admin token from {from} has {} characters; use at least {MIN_TOKEN_LEN} random ones (e.g. `openssl rand -hex 32`)",
            token.len()
        );
    }
    Ok(token.to_string())
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The contents of `path` if it exists, after checking that it is a regular file of ours that
/// nobody else can read or write.
pub(crate) fn read_private(path: &Path) -> Result<Option<String>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    check_private(path, &meta)?;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(text))
}

fn check_private(path: &Path, meta: &fs::Metadata) -> Result<()> {
    if !meta.file_type().is_file() {
        bail!(
            "`{}` is not a regular file; remove it and start again",
            path.display()
        );
    }
    let me = wasmfn_host_core::private_dir::current_uid();
    if meta.uid() != me {
        bail!(
            "`{}` belongs to user {}, not to the user running wasmfn ({me}); remove it (a new token is made on start)",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "`{}` can be read or written by other users (mode {:o}); run `chmod 600 {}`, or remove it for a new token",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Create `path` with `contents`, mode 0600; fails if it exists.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()?;
    Ok(())
}

/// Record where the admin listener is, replacing what an earlier start wrote: a fresh private
/// file renamed over the old one.
pub fn write_endpoint(state_dir: &Path, endpoint: &str) -> Result<PathBuf> {
    let path = state_dir.join(ENDPOINT_FILE);
    let temp = state_dir.join(format!(".{ENDPOINT_FILE}.{}", std::process::id()));
    let _ = fs::remove_file(&temp);
    write_private(&temp, format!("{endpoint}\n").as_bytes())
        .with_context(|| format!("writing {}", temp.display()))?;
    fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Where the admin listener of the host serving from `state_dir` is, if one said so.
pub fn read_endpoint(state_dir: &Path) -> Result<Option<String>> {
    Ok(read_private(&state_dir.join(ENDPOINT_FILE))?.map(|t| t.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn token_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
    }

    #[test]
    fn readable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        fs::write(&path, "0123456789abcdef0123").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn symlinked_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "0123456789abcdef0123").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(TOKEN_FILE)).unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
