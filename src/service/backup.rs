//! Backups requested through the API: the destination is confined to
//! `server.backup_root`, and the backup runs on the blocking pool.
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::views::BackupView;
use super::{blocking, Result, Service, ServiceError};

impl Service {
    /// Backs the database up into `dest`, a new (or empty) directory under
    /// `server.backup_root`: relative to it, or absolute inside it.
    pub async fn backup(&self, dest: &str) -> Result<BackupView> {
        let Some(root) = self.backup_root.clone() else {
            return Err(ServiceError::BackupDisabled(
                "backups through the API are off (set server.backup_root to allow a directory)"
                    .into(),
            ));
        };
        let db = Arc::clone(&self.db);
        let dest = dest.to_owned();
        blocking(move || {
            let path = backup_dest(&root, &dest)?;
            Ok(BackupView::from(&db.backup(&path)?))
        })
        .await?
    }
}

/// Where a backup named `dest` goes: `root` (canonical) joined with a
/// relative `dest`, or an absolute `dest` inside `root`; no `..`; the
/// parent directory must exist and resolve (symlinks followed) inside
/// `root`. Whether the directory itself is usable (absent or empty, not a
/// symlink) is checked by the backup.
pub(super) fn backup_dest(root: &Path, dest: &str) -> Result<PathBuf> {
    let path = Path::new(dest);
    if dest.is_empty() {
        return Err(ServiceError::Invalid(
            "field `dest`: must not be empty".into(),
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ServiceError::Invalid(
            "field `dest`: must not contain `..`".into(),
        ));
    }
    let root = std::fs::canonicalize(root)
        .map_err(|e| ServiceError::Io(format!("server.backup_root {}: {e}", root.display())))?;
    let outside =
        || ServiceError::OutsideBackupRoot(format!("{dest} is outside server.backup_root"));
    let joined = root.join(path);
    let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) else {
        return Err(outside());
    };
    if !joined.starts_with(&root) || joined == root {
        return Err(outside());
    }
    let parent = std::fs::canonicalize(parent).map_err(|e| {
        ServiceError::Invalid(format!(
            "field `dest`: the parent directory of {dest} cannot be used ({e})"
        ))
    })?;
    if !parent.starts_with(&root) {
        return Err(outside());
    }
    Ok(parent.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(root: &Path, dest: &str) -> &'static str {
        match backup_dest(root, dest) {
            Ok(_) => "ok",
            Err(ServiceError::OutsideBackupRoot(_)) => "outside",
            Err(ServiceError::Invalid(_)) => "invalid",
            Err(_) => "other",
        }
    }

    #[test]
    fn destinations_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let canonical = root.canonicalize().unwrap();
        assert_eq!(
            backup_dest(&root, "b1").unwrap(),
            canonical.join("b1"),
            "relative to the root"
        );
        assert_eq!(code(&root, "sub/b2"), "ok");
        let inside = canonical.join("b3").display().to_string();
        assert_eq!(code(&root, &inside), "ok");
        assert_eq!(code(&root, ""), "invalid");
        assert_eq!(code(&root, "../escape"), "invalid");
        assert_eq!(code(&root, "sub/../../escape"), "invalid");
        assert_eq!(code(&root, "/tmp/elsewhere"), "outside");
        assert_eq!(code(&root, "/"), "outside");
        assert_eq!(code(&root, &canonical.display().to_string()), "outside");
        assert_eq!(code(&root, "missing/b4"), "invalid");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
            assert_eq!(code(&root, "link/b5"), "outside");
        }
    }
}
