//! The copy's private work directory, for the schema dump and its restore list.
//!
//! A schema dump can hold secrets (a foreign server's user mapping carries its
//! password), so it never lies where another user could read it, nor outlives
//! the copy: the directory is `<temp>/pgferry-<uid>/<migration>-<target hash>`,
//! its parent and itself mode 0700 and its files 0600. The parent is refused
//! when it is a symbolic link, owned by someone else or open to others (a
//! shared `/tmp` lets anyone create the name first). The directory is removed
//! when the copy ends, by success, error or cancellation; a killed copy leaves
//! it behind, and since its name is the same for the same migration and target,
//! the next run removes it before anything else.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pgferry_core::names::MigrationName;
use pgferry_pg::ConnSpec;

use crate::error::{Error, ErrorKind, Result};

/// The work directory; removed with this value.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    /// Removes what a killed run of this migration left, then makes the
    /// directory afresh. Called before the copy changes anything: its errors are
    /// refusals.
    pub(crate) fn create(target: &ConnSpec, name: &MigrationName) -> Result<WorkDir> {
        let parent = private_parent(&std::env::temp_dir())?;
        let dir = parent.join(format!("{name}-{:016x}", fnv1a(target.to_string().as_bytes())));
        if dir.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&dir).map_err(|e| refused(&dir, "removing the previous run's", e))?;
        }
        DirBuilder::new().mode(0o700).create(&dir).map_err(|e| refused(&dir, "creating", e))?;
        Ok(WorkDir(dir))
    }

    /// An empty file readable by this user only, for a program to write into
    /// (pg_dump keeps the mode of a file it overwrites).
    pub(crate) fn private_file(&self, file_name: &str) -> Result<PathBuf> {
        let path = self.0.join(file_name);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::new(ErrorKind::Server, format!("creating {}: {e}", path.display())))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove the copy's work directory");
        }
    }
}

/// `<base>/pgferry-<uid>`, made 0700 if missing, and checked to be this user's
/// own directory, closed to others.
fn private_parent(base: &Path) -> Result<PathBuf> {
    let uid = std::fs::metadata("/proc/self").map_err(|e| refused(Path::new("/proc/self"), "reading", e))?.uid();
    let parent = base.join(format!("pgferry-{uid}"));
    match DirBuilder::new().mode(0o700).create(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused(&parent, "creating", e)),
    }
    let meta = parent.symlink_metadata().map_err(|e| refused(&parent, "reading", e))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} is not a private directory of this user (a symbolic link, another user's, or open to others)", parent.display()),
        )
        .with_hint("remove it, or set TMPDIR to a directory only this user can write to (the schema dump is kept there during the copy); nothing was changed"));
    }
    Ok(parent)
}

fn refused(path: &Path, doing: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Refused, format!("{doing} the copy's work directory {}: {e}", path.display()))
        .with_hint("set TMPDIR to a writable directory on a local disk; nothing was changed")
}

/// FNV-1a, 64 bits: a name for the target that is stable across runs and builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_open_to_others_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let parent = private_parent(base.path()).unwrap();
        assert_eq!(parent.metadata().unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = private_parent(base.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Refused);
        assert!(err.message.contains("not a private directory"), "{}", err.message);
    }

    #[test]
    fn a_symbolic_link_as_parent_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        std::os::unix::fs::symlink(elsewhere.path(), base.path().join(format!("pgferry-{uid}"))).unwrap();
        assert!(private_parent(base.path()).is_err());
    }
}
