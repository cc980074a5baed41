//! The `--stats-json` file: the latest counters as JSON, replaced whole at each stats tick
//! and at shutdown, for scripts and tests that read it while mcr runs.

use std::path::Path;

use crate::stats::Snapshot;

/// Best effort: a write that fails is logged, never fatal.
pub fn write(path: Option<&Path>, snap: &Snapshot) {
    let Some(path) = path else { return };
    let result = serde_json::to_vec_pretty(snap)
        .map_err(std::io::Error::other)
        .and_then(|bytes| replace_file(path, &bytes));
    if let Err(e) = result {
        log::warn!("cannot write stats to {}: {e}", path.display());
    }
}

/// Writes `bytes` to a new file beside `path` and renames it over `path`, so readers see
/// the old or the new content whole. The temporary file is created exclusively (`O_EXCL`,
/// which never follows a symlink) under a name with the pid and a counter: a file or link
/// planted in advance is never written through, even when mcr runs as root.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    for _ in 0..8 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        return written;
    }
    Err(std::io::Error::other("no free temporary file name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_file_replacement_never_writes_through_a_planted_link() {
        let dir = std::env::temp_dir().join(format!("mcr-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let path = dir.join("stats.json");
        // The old predictable name, and the first name this process would pick.
        std::os::unix::fs::symlink(&victim, dir.join("stats.tmp")).unwrap();
        let first = format!(".stats.json.{}.0.tmp", std::process::id());
        std::os::unix::fs::symlink(&victim, dir.join(&first)).unwrap();
        replace_file(&path, b"{\"new\":1}").unwrap();
        replace_file(&path, b"{\"new\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\":2}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") && n != &first && n != "stats.tmp")
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
