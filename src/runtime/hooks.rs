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
    /// A polled record's task does not run yet (restoring, or not created during an outage
    /// or a creation backoff): its offset is held, and the partition is sought back to it
    /// when the task starts.
    HoldRecord,
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

static DEFER_TASKS: AtomicBool = AtomicBool::new(false);

/// While `on`, no stream thread creates tasks, as during an outage or a creation backoff:
/// their partitions stay assigned and fetched. For tests.
#[doc(hidden)]
pub fn defer_task_creation(on: bool) {
    DEFER_TASKS.store(on, Ordering::Release);
}

pub(crate) fn task_creation_deferred() -> bool {
    DEFER_TASKS.load(Ordering::Acquire)
}

pub(crate) fn reach(point: Point) {
    if !SET.load(Ordering::Relaxed) {
        return;
    }
    if let Some(hook) = HOOK.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        hook(point);
    }
}

impl std::str::FromStr for Point {
    type Err = String;

    fn from_str(s: &str) -> Result<Point, String> {
        match s {
            "create_task" => Ok(Point::CreateTask),
            "restore" => Ok(Point::Restore),
            "commit" => Ok(Point::Commit),
            "commit_settled" => Ok(Point::CommitSettled),
            "hold_record" => Ok(Point::HoldRecord),
            other => Err(format!(
                "unknown hook point '{other}' (create_task, restore, commit, commit_settled, hold_record)"
            )),
        }
    }
}

/// The variable read by [`stall_from_env`].
pub const STALL_ENV: &str = "SCORESTREAM_TEST_STALL_AT";

/// For crash tests of the binary: with `SCORESTREAM_TEST_STALL_AT=<point>:<n>` (e.g.
/// `commit_settled:3`), the processing thread stops for good the `n`-th time it reaches
/// `<point>` once `started()` is true (e.g. a record was processed), after writing
/// `scorestream test hook: stalled at <point>` to stderr, so a test can kill -9 the process
/// exactly there. Without the variable nothing is registered. Returns whether a hook was set.
#[doc(hidden)]
pub fn stall_from_env(started: impl Fn() -> bool + Send + 'static) -> Result<bool, String> {
    let Ok(spec) = std::env::var(STALL_ENV) else {
        return Ok(false);
    };
    let (point, n) = spec
        .split_once(':')
        .ok_or_else(|| format!("{STALL_ENV}={spec}: expected <point>:<n>"))?;
    let point: Point = point.parse()?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{STALL_ENV}={spec}: <n> must be a positive number"))?;
    let mut seen = 0u64;
    set(move |p| {
        if p != point || !started() {
            return;
        }
        seen += 1;
        if seen < n {
            return;
        }
        eprintln!("scorestream test hook: stalled at {point:?} (reached {seen} times)");
        loop {
            std::thread::park();
        }
    });
    Ok(true)
}
