//! Which build this is: the crate version and the git commit it was built from (set by
//! `build.rs`: `SCORESTREAM_GIT_COMMIT` if given, else `git rev-parse`, else `unknown`, as in
//! a Docker build that copies no `.git`). `scorestream --version` prints both; the
//! `scorestream_build_info{version,commit}` gauge (always 1) carries them to Prometheus.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit (12 hex digits) or `unknown`.
pub const COMMIT: &str = env!("SCORESTREAM_GIT_COMMIT");

/// What `--version` prints after the program name: `0.1.0 (commit 1a2b3c4d5e6f)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SCORESTREAM_GIT_COMMIT"),
    ")"
);
