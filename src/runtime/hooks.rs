//! Named points of the processing loop where a test can act at exactly the right moment,
//! e.g. stop the broker while a commit is in flight. Nothing is registered in production:
//! reaching a point then costs one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Where the loop is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// A stateful task is being created: its inputs' committed offsets are fetched next.
    CreateTask,
    /// Changelogs are being read to restore a task's stores.
    Restore,
    /// A commit point was prepared: its outputs and changelog records are with the
    /// producer (or queued for it), acknowledgements are awaited while processing goes on.
    Commit,
    /// A commit point's outputs are all acknowledged: the local state write and the
    /// offset commit come next.
    CommitSettled,
}

type Hook = Box<dyn FnMut(Point) + Send>;

static SET: AtomicBool = AtomicBool::new(false);
static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

/// Calls `hook` at every point reached from now on (on the processing thread, which waits
/// for it), in place of any hook set before. For tests.
#[doc(hidden)]
pub fn set(hook: impl FnMut(Point) + Send + 'static) {
    *HOOK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    SET.store(true, Ordering::Release);
}

/// Removes the hook.
#[doc(hidden)]
pub fn clear() {
    SET.store(false, Ordering::Release);
    *HOOK.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

pub(crate) fn reach(point: Point) {
    if !SET.load(Ordering::Relaxed) {
        return;
    }
    if let Some(hook) = HOOK.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        hook(point);
    }
}
