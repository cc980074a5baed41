//! The config file watch: reports when the file behind `mcr run -c` holds complete new
//! content, so the control thread can reload it (debounced there).
//!
//! The path may be a chain of symlinks, as Kubernetes mounts ConfigMaps and Secrets
//! (`mcr.toml -> ..data/mcr.toml`, `..data -> ..2026_12_01_…`, and an update renames a new
//! `..data` over the old one) and as release tools do (`current -> releases/N`). A change to
//! any link on the way is a change of the file, so every link of the chain and the file at its
//! end are watched, each through its directory (so replace-by-rename is seen). When the chain
//! changes shape, [`ConfigWatch::refresh`] (called by the control thread before every reload)
//! watches the new one.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::Watcher;

/// Symlinks followed before giving up (the kernel's limit, `ELOOP`).
const MAX_LINKS: usize = 40;

/// (directory, name) of each link in a config path's chain and of the file at its end.
pub type Chain = BTreeSet<(PathBuf, OsString)>;

/// A watch on the config path's chain. Failure to watch is logged, not fatal.
pub struct ConfigWatch {
    path: PathBuf,
    watcher: notify::RecommendedWatcher,
    /// Directories watched now.
    dirs: BTreeSet<PathBuf>,
    /// What events must name to count; shared with the handler.
    chain: Arc<RwLock<Chain>>,
}

impl ConfigWatch {
    /// Watches `path`'s chain and calls `changed` when an event completes new content.
    pub fn start(path: &Path, changed: impl Fn() + Send + 'static) -> Option<ConfigWatch> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let shared: Arc<RwLock<Chain>> = Arc::default();
        let names = shared.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            let Ok(chain) = names.read() else { return };
            let Some(path) = ev.paths.iter().find(|p| chain.contains(&key(p))) else {
                return;
            };
            let is_symlink =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if completes_a_write(&ev.kind, is_symlink) {
                changed();
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("cannot watch {}: {e}; reload with SIGHUP", path.display());
                return None;
            }
        };
        let mut watch = ConfigWatch {
            path,
            watcher,
            dirs: BTreeSet::new(),
            chain: shared,
        };
        watch.refresh();
        if watch.dirs.is_empty() {
            return None;
        }
        Some(watch)
    }

    /// Reads the chain again and watches the directories it now runs through (and no
    /// others). Cheap: a `readlink` per link.
    pub fn refresh(&mut self) {
        let chain = chain(&self.path);
        let dirs: BTreeSet<PathBuf> = chain.iter().map(|(d, _)| d.clone()).collect();
        for gone in self.dirs.difference(&dirs) {
            // A directory removed after a swap (kubelet deletes the old one) is unwatched by
            // the kernel already.
            let _ = self.watcher.unwatch(gone);
        }
        let mut watched = BTreeSet::new();
        for dir in &dirs {
            if self.dirs.contains(dir) {
                watched.insert(dir.clone());
                continue;
            }
            match self.watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir.clone());
                }
                Err(e) => log::warn!(
                    "cannot watch {} (on the way to {}): {e}; reload with SIGHUP",
                    dir.display(),
                    self.path.display()
                ),
            }
        }
        if watched != self.dirs {
            log::debug!("watching {} through {:?}", self.path.display(), watched);
        }
        self.dirs = watched;
        if let Ok(mut shared) = self.chain.write() {
            *shared = chain;
        }
    }
}

/// The (directory, name) an event path stands for.
fn key(path: &Path) -> (PathBuf, OsString) {
    (
        path.parent().map(Path::to_path_buf).unwrap_or_default(),
        path.file_name().map(OsString::from).unwrap_or_default(),
    )
}

/// Every link `path` (absolute) runs through, and the file it ends at, as (directory, name):
/// what changes the file `path` opens. Stops at the first component that does not exist
/// (watching for it to appear) and after [`MAX_LINKS`] links.
pub fn chain(path: &Path) -> Chain {
    let mut chain = Chain::new();
    let mut dir = PathBuf::from("/");
    // Components still to resolve, the next one last.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path, &mut dir);
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            dir.pop();
            continue;
        }
        let here = dir.join(&name);
        let last = todo.is_empty();
        match std::fs::read_link(&here) {
            Ok(target) if links < MAX_LINKS => {
                links += 1;
                chain.insert((dir.clone(), name));
                push_components(&mut todo, &target, &mut dir);
            }
            Ok(_) => {
                chain.insert((dir, name));
                break;
            }
            Err(_) if last || !here.is_dir() => {
                // The file itself, or a component that is missing (or not a directory):
                // watch where it would appear.
                chain.insert((dir, name));
                break;
            }
            Err(_) => dir = here,
        }
    }
    chain
}

/// Queues `path`'s components to be resolved next (the stack's top is resolved first); `..`
/// stays a component, resolved in turn as the kernel does (after the links before it). An
/// absolute path restarts from `/`: it is pushed when `dir` is the directory it is relative
/// to, so resetting `dir` now is resetting it for its first component.
fn push_components(todo: &mut Vec<OsString>, path: &Path, dir: &mut PathBuf) {
    let mut parts: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                *dir = PathBuf::from("/");
                parts.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::Normal(n) => parts.push(n.to_os_string()),
        }
    }
    todo.extend(parts.into_iter().rev());
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

#[cfg(test)]
mod chain_tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcr-chain-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entry(dir: &Path, name: &str) -> (PathBuf, OsString) {
        (dir.to_path_buf(), OsString::from(name))
    }

    #[test]
    fn a_plain_file_is_its_own_chain() {
        let d = dir("plain");
        std::fs::write(d.join("mcr.toml"), "").unwrap();
        assert_eq!(
            chain(&d.join("mcr.toml")),
            Chain::from([entry(&d, "mcr.toml")])
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_configmap_volume_is_followed_through_both_links() {
        let d = dir("configmap");
        let ts = d.join("..2026_12_01_00_00_00.1");
        std::fs::create_dir(&ts).unwrap();
        std::fs::write(ts.join("mcr.toml"), "").unwrap();
        symlink("..2026_12_01_00_00_00.1", d.join("..data")).unwrap();
        symlink("..data/mcr.toml", d.join("mcr.toml")).unwrap();
        assert_eq!(
            chain(&d.join("mcr.toml")),
            Chain::from([
                entry(&d, "mcr.toml"),
                entry(&d, "..data"),
                entry(&ts, "mcr.toml")
            ])
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn release_links_absolute_targets_and_dot_dot_resolve_like_the_kernel() {
        let d = dir("release");
        let r2 = d.join("releases/2");
        std::fs::create_dir_all(r2.join("etc")).unwrap();
        std::fs::write(r2.join("etc/mcr.toml"), "").unwrap();
        symlink(&r2, d.join("current")).unwrap(); // absolute target
        std::fs::create_dir(d.join("etc")).unwrap();
        symlink("../current/etc/mcr.toml", d.join("etc/mcr.toml")).unwrap();
        assert_eq!(
            chain(&d.join("etc/mcr.toml")),
            Chain::from([
                entry(&d.join("etc"), "mcr.toml"),
                entry(&d, "current"),
                entry(&r2.join("etc"), "mcr.toml"),
            ])
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_file_or_directory_is_watched_where_it_would_appear_and_loops_end() {
        let d = dir("missing");
        assert_eq!(
            chain(&d.join("mcr.toml")),
            Chain::from([entry(&d, "mcr.toml")])
        );
        assert_eq!(
            chain(&d.join("conf/mcr.toml")),
            Chain::from([entry(&d, "conf")])
        );
        symlink("b", d.join("a")).unwrap();
        symlink("a", d.join("b")).unwrap();
        let looped = chain(&d.join("a"));
        assert_eq!(looped, Chain::from([entry(&d, "a"), entry(&d, "b")]));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
