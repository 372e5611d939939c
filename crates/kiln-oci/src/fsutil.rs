//! Directories and renames done the way a store must do them: modes set exactly (never
//! through the process umask, which would otherwise leak into images), kiln's private state
//! kept 0700, and renames made durable by fsyncing the directory they land in.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Creates `path` and any missing parents, each new directory with exactly `mode`.
/// Directories that already exist keep their mode. `create_dir_all` alone would give
/// `0777 & !umask`, so a builder run under umask 077 would make 0700 directories that end up
/// in images (a non-root `USER` then cannot enter them).
pub fn create_dir_all_exact(path: &Path, mode: u32) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_all_exact(parent, mode)?;
    }
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates (or tightens) one of kiln's own state directories: 0700, so that nothing in it
/// (unpacked snapshots keep setuid binaries and device nodes) is reachable by other local
/// users, as containerd keeps its root. Parents are made as usual.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::metadata(path)?;
    if meta.permissions().mode() & 0o7777 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Flushes a directory's entries to disk, so that a rename into it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Renames `from` to `to` and fsyncs the directory `to` is in: once this returns, the new
/// name is on disk. `from`'s directory is synced too when it differs, so the old name does
/// not come back after a crash.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let to_dir = to.parent().unwrap_or(Path::new("."));
    sync_dir(to_dir)?;
    if let Some(from_dir) = from.parent()
        && from_dir != to_dir
    {
        sync_dir(from_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn exact_modes_ignore_the_umask() {
        // 0711 is what no umask gives from mkdir's 0777, so it proves the mode is set, not
        // masked (the process umask itself is not changed: tests share it).
        let d = tempfile::tempdir().unwrap();
        create_dir_all_exact(&d.path().join("a/b/c"), 0o711).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(fs::metadata(d.path().join(p)).unwrap().mode() & 0o7777, 0o711, "{p}");
        }
        create_private_dir(&d.path().join("p")).unwrap();
        assert_eq!(fs::metadata(d.path().join("p")).unwrap().mode() & 0o7777, 0o700);
        fs::set_permissions(d.path().join("p"), fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&d.path().join("p")).unwrap();
        assert_eq!(fs::metadata(d.path().join("p")).unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn durable_rename_moves() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x"), b"1").unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        rename_durable(&d.path().join("x"), &d.path().join("sub/y")).unwrap();
        assert_eq!(fs::read(d.path().join("sub/y")).unwrap(), b"1");
    }
}
