//! Build identity for `scorestream --version` and the `scorestream_build_info` gauge: the
//! git commit, from `SCORESTREAM_GIT_COMMIT` when set (a Docker build argument), else
//! `git rev-parse`, else `unknown` (outside a git checkout, e.g. the Docker build, which
//! copies no `.git`).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Rebuild when `path` changes, if it exists (a missing path would rerun every build).
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SCORESTREAM_GIT_COMMIT");
    let commit = match std::env::var("SCORESTREAM_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    // HEAD moves when a commit is made or a branch checked out: watch HEAD, the branch it
    // names and packed-refs (worktrees keep them in different directories).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in &watched {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            watch(&path);
        }
    }
    println!("cargo:rustc-env=SCORESTREAM_GIT_COMMIT={commit}");
}
