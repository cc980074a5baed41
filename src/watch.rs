//! The config file watch: reports when the file behind `mcr run -c` holds complete new
//! content, so the control thread can reload it (debounced there).

use std::path::{Path, PathBuf};

/// Watches the config file's *directory* (so replace-by-rename, as editors and Ansible do,
/// is seen) and reports events that name the file. Failure to watch is logged, not fatal.
pub fn watch(
    path: &Path,
    changed: impl Fn() + Send + 'static,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_os_string();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        let Some(path) = ev
            .paths
            .iter()
            .find(|p| p.file_name() == Some(name.as_os_str()))
        else {
            return;
        };
        let is_symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if completes_a_write(&ev.kind, is_symlink) {
            changed();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        log::warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
        return None;
    }
    Some(watcher)
}

/// Whether a file event means the config file now holds complete new content. A write in
/// place counts when the writer closes the file — reacting to the truncation or the first
/// `write()` could read an empty or half-written file, and an empty file is a valid config
/// with no flows. A rename over the file (editors, Ansible) is complete at once, and so is a
/// new symlink. Anything else (open, metadata, a new regular file still being written) waits
/// for its close.
fn completes_a_write(kind: &notify::EventKind, is_symlink: bool) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::EventKind;
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => true,
        EventKind::Create(_) => is_symlink,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RenameMode,
    };
    use notify::EventKind;

    #[test]
    fn only_complete_writes_trigger_a_reload() {
        let cases = [
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                false,
                true,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                false,
                false,
            ),
            (
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                false,
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                false,
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                false,
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                false,
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                false,
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                false,
                false,
            ),
            (EventKind::Create(CreateKind::File), false, false),
            (EventKind::Create(CreateKind::File), true, true),
            (
                EventKind::Remove(notify::event::RemoveKind::File),
                false,
                false,
            ),
        ];
        for (kind, symlink, want) in cases {
            assert_eq!(
                completes_a_write(&kind, symlink),
                want,
                "{kind:?} symlink={symlink}"
            );
        }
    }
}
