//! Watching rule files with `notify`: one signal per quiet burst of changes that a read could
//! see, never for the reader's own traces (opening and reading files).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a burst of file events must be quiet before rules are read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// `path` made absolute against `cwd`, without resolving links: notify reports absolute
/// paths, and a rules directory that is itself a link may be re-pointed later.
pub fn absolute_in(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

/// The directory whose entries decide a source's rules: a directory (or a path missing now)
/// itself; for a file, its parent, since the file may be a link into a swapped `..data`.
fn scope(source: &Path) -> PathBuf {
    if source.is_file() {
        source.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        source.to_path_buf()
    }
}

/// Whether an event may change what a read sees. Opening, reading and closing a file
/// unwritten are what reading the rules does itself: counting them reloads forever.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether `event` concerns the rules under `scopes`. An event without paths (the kernel's
/// queue overflowed) may hide anything, so it counts.
fn is_relevant(event: &Event, scopes: &[PathBuf]) -> bool {
    is_change(&event.kind)
        && (event.paths.is_empty()
            || event
                .paths
                .iter()
                .any(|p| scopes.iter().any(|s| p.starts_with(s))))
}

/// Sends `()` on `tx` after each quiet burst of changes under `paths`, until cancelled.
///
/// Watches each source's scope and that scope's parent, so a swapped `..data` link, an
/// editor's rename and a directory removed, replaced or re-created are all seen; the watches
/// are re-armed after each burst because a replaced directory is a new inode.
pub fn watch_paths(
    paths: Vec<PathBuf>,
    tx: mpsc::UnboundedSender<()>,
    cancel: CancellationToken,
) -> notify::Result<()> {
    let cwd = std::env::current_dir()?;
    let sources: Vec<PathBuf> = paths.iter().map(|p| absolute_in(p, &cwd)).collect();
    let scopes: Arc<RwLock<Vec<PathBuf>>> = Arc::default();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let seen = scopes.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let relevant = match event {
            Ok(event) => is_relevant(&event, &seen.read().unwrap_or_else(PoisonError::into_inner)),
            // An error may have lost events: read again rather than miss a change.
            Err(_) => true,
        };
        if relevant {
            let _ = raw_tx.send(());
        }
    })?;
    let mut watched: Vec<PathBuf> = Vec::new();
    let arm = move |watcher: &mut notify::RecommendedWatcher, watched: &mut Vec<PathBuf>| {
        for w in watched.drain(..) {
            let _ = watcher.unwatch(&w);
        }
        let now: Vec<PathBuf> = sources.iter().map(|s| scope(s)).collect();
        for dir in &now {
            for p in [Some(dir.clone()), dir.parent().map(Path::to_path_buf)]
                .into_iter()
                .flatten()
            {
                if p.as_os_str().is_empty() || watched.contains(&p) {
                    continue;
                }
                // A missing directory cannot be watched; its parent sees it come back.
                if watcher.watch(&p, RecursiveMode::NonRecursive).is_ok() {
                    watched.push(p);
                }
            }
        }
        *scopes.write().unwrap_or_else(PoisonError::into_inner) = now;
    };
    arm(&mut watcher, &mut watched);
    tokio::spawn(async move {
        let mut watcher = watcher;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                got = raw_rx.recv() => if got.is_none() { return },
            }
            // Debounce: wait until the burst is quiet.
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    got = raw_rx.recv() => if got.is_none() { return },
                }
            }
            arm(&mut watcher, &mut watched);
            let _ = tx.send(());
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    /// Waits for one debounced signal (true) or a timeout (false), then drains extras.
    async fn signalled(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .is_ok();
        tokio::time::sleep(DEBOUNCE * 2).await;
        while rx.try_recv().is_ok() {}
        got
    }

    /// Counts the signals that arrive within `window`.
    async fn count(rx: &mut mpsc::UnboundedReceiver<()>, window: Duration) -> usize {
        let mut n = 0;
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(())) = tokio::time::timeout_at(deadline, rx.recv()).await {
            n += 1;
        }
        n
    }

    #[test]
    fn a_relative_source_matches_absolute_event_paths() {
        let cwd = Path::new("/work/app");
        let source = absolute_in(Path::new("rules/"), cwd);
        let scopes = vec![scope(&source)];
        let event = |kind, p: &str| Event::new(kind).add_path(PathBuf::from(p));
        let create = EventKind::Create(CreateKind::File);
        assert!(is_relevant(
            &event(create, "/work/app/rules/a.yaml"),
            &scopes
        ));
        assert!(is_relevant(&event(create, "/work/app/rules"), &scopes));
        assert!(!is_relevant(&event(create, "/work/app/rules.log"), &scopes));
        assert!(!is_relevant(
            &event(create, "/work/app/other/a.yaml"),
            &scopes
        ));
        assert_eq!(
            absolute_in(Path::new("/etc/rules"), cwd),
            Path::new("/etc/rules")
        );
    }

    #[test]
    fn reading_is_not_a_change_but_writing_is() {
        let scopes = vec![PathBuf::from("/r")];
        let event = |kind| Event::new(kind).add_path(PathBuf::from("/r/a.yaml"));
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!is_relevant(&event(kind), &scopes), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(notify::event::RemoveKind::File),
        ] {
            assert!(is_relevant(&event(kind), &scopes), "{kind:?}");
        }
        assert!(is_relevant(&Event::new(EventKind::Other), &scopes));
    }

    #[tokio::test]
    async fn reading_the_rules_does_not_signal() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rules");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "one").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        watch_paths(vec![dir.clone()], tx, cancel.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = super::super::read_snapshot(std::slice::from_ref(&dir));
        assert_eq!(
            count(&mut rx, DEBOUNCE * 5).await,
            0,
            "a read is not a change"
        );
        // One edit, then the reader's read after the signal: exactly one signal.
        std::fs::write(dir.join("a.yaml"), "two").unwrap();
        assert_eq!(count(&mut rx, DEBOUNCE * 5).await, 1, "one edit");
        let _ = super::super::read_snapshot(std::slice::from_ref(&dir));
        assert_eq!(count(&mut rx, DEBOUNCE * 5).await, 0, "the read after it");
        cancel.cancel();
    }

    #[tokio::test]
    async fn sees_every_way_a_rules_directory_changes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rules");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "one").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        watch_paths(vec![dir.clone()], tx, cancel.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        std::fs::write(dir.join("a.yaml"), "edited in place").unwrap();
        assert!(signalled(&mut rx).await, "in-place edit");

        std::fs::write(dir.join(".a.yaml.swp"), "editor temp").unwrap();
        std::fs::rename(dir.join(".a.yaml.swp"), dir.join("a.yaml")).unwrap();
        assert!(signalled(&mut rx).await, "editor's rename");

        // The kubelet's atomic writer: a timestamped directory and a `..data` link swap.
        let ts1 = dir.join("..2026_01_01_00_00_00.1");
        std::fs::create_dir(&ts1).unwrap();
        std::fs::write(ts1.join("b.yaml"), "b1").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/b.yaml", dir.join("b.yaml")).unwrap();
        assert!(signalled(&mut rx).await, "first ..data link");
        let ts2 = dir.join("..2026_01_01_00_00_00.2");
        std::fs::create_dir(&ts2).unwrap();
        std::fs::write(ts2.join("b.yaml"), "b2").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(&ts1).unwrap();
        assert!(signalled(&mut rx).await, "..data swap");
        assert_eq!(std::fs::read_to_string(dir.join("b.yaml")).unwrap(), "b2");

        // The whole directory replaced, then edited again (the watch must be re-armed).
        let fresh = root.path().join("rules.new");
        std::fs::create_dir(&fresh).unwrap();
        std::fs::write(fresh.join("c.yaml"), "c").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::rename(&fresh, &dir).unwrap();
        assert!(signalled(&mut rx).await, "directory replaced");
        std::fs::write(dir.join("c.yaml"), "c2").unwrap();
        assert!(
            signalled(&mut rx).await,
            "edit after the directory was replaced"
        );

        // Moved away and back: both are seen, and edits after the return too.
        let away = root.path().join("rules.away");
        std::fs::rename(&dir, &away).unwrap();
        assert!(signalled(&mut rx).await, "directory moved away");
        std::fs::rename(&away, &dir).unwrap();
        assert!(signalled(&mut rx).await, "directory moved back");
        std::fs::write(dir.join("c.yaml"), "c3").unwrap();
        assert!(signalled(&mut rx).await, "edit after the return");

        std::fs::write(
            root.path().join("operator.log"),
            "a sibling of the rules directory",
        )
        .unwrap();
        assert!(
            !signalled(&mut rx).await,
            "quiet when nothing under the rules changes"
        );
        cancel.cancel();
    }
}
