//! Folders whose contents the host runs: the compile cache (native code it maps as
//! executable) and the guest build tools (programs it starts). Whoever can write there can run
//! code as the user running wasmfn, so each is checked on every use: it must belong to that
//! user (or to root, for read-only deployments such as Lambda's `/var/task`) and be writable
//! by nobody else. A folder that fails the check is refused with the command that fixes it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// Who may own a trusted folder or file besides the user running wasmfn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Only the user running wasmfn: folders it writes to.
    Me,
    /// That user or root: folders it only reads, installed by someone else (a Lambda image).
    MeOrRoot,
}

/// The effective user id of this process.
#[cfg(unix)]
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Check that `path` (a folder or a file, symbolic links followed) belongs to an allowed
/// owner and that neither its group nor other users may write it.
pub fn check_trusted(path: &Path, owner: Owner) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let me = current_uid();
        let allowed = meta.uid() == me || (owner == Owner::MeOrRoot && meta.uid() == 0);
        if !allowed {
            bail!(
                "`{}` belongs to user {}, not to the user running wasmfn ({me}): its contents \
                 would run as this user; remove it, or point wasmfn at a folder of your own",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "`{}` can be written by other users (mode {:o}): its contents would run as this \
                 user; run `chmod go-w {}`",
                path.display(),
                meta.mode() & 0o7777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, owner);
    Ok(())
}

/// Create `path` (and its parents) if missing, the folder itself with mode 0700, then check
/// it as [`check_trusted`] does for [`Owner::Me`].
pub fn ensure_private_dir(path: &Path) -> Result<()> {
    if !path.exists() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(path) {
            Ok(()) => {}
            // Another wasmfn created it in between: checked below like any existing folder.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    check_trusted(path, Owner::Me)
}

/// The user's cache folder for wasmfn: `$XDG_CACHE_HOME/wasmfn`, else `~/.cache/wasmfn`.
/// `None` when neither variable is set: there is no private place to default to (a shared
/// temporary folder would let other users plant code), so callers ask for one.
pub fn user_cache_root() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|base| base.join("wasmfn"))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_new_folder_is_private_and_trusted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/cache");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure_private_dir(&dir).unwrap();
    }

    #[test]
    fn a_folder_others_can_write_is_refused_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_trusted(root.path(), Owner::Me)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("can be written by other users (mode 777)"),
            "{e}"
        );
        assert!(e.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_trusted(root.path(), Owner::Me).unwrap();
    }

    #[test]
    fn a_folder_of_another_user_is_refused() {
        if current_uid() == 0 {
            // Root can hand a folder to someone else (nobody, 65534) and see it refused.
            let root = tempfile::tempdir().unwrap();
            std::os::unix::fs::chown(root.path(), Some(65534), None).unwrap();
            let e = check_trusted(root.path(), Owner::MeOrRoot)
                .unwrap_err()
                .to_string();
            assert!(e.contains("belongs to user 65534"), "{e}");
            return;
        }
        // `/` belongs to root: trusted for reading only when root may own it.
        let e = check_trusted(Path::new("/"), Owner::Me)
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to user 0"), "{e}");
        check_trusted(Path::new("/"), Owner::MeOrRoot).unwrap();
    }
}
