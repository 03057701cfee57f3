//! One runner for the case-file suites (gamification `tests/cases/`, churn
//! `tests/churn_cases/`, normalization `tests/normalize_cases/`): every `.toml` file of the
//! folder in name order, every failure of every file reported together.

use std::path::{Path, PathBuf};

/// What one case file gave: how many cases it held and the failures, each a readable
/// message that names the file (and the case, when a file holds several).
pub struct FileOutcome {
    pub cases: usize,
    pub failures: Vec<String>,
}

impl FileOutcome {
    /// A file that is one case: passed, or failed with `error`.
    pub fn single<E: std::fmt::Display>(path: &Path, result: Result<(), E>) -> FileOutcome {
        FileOutcome {
            cases: 1,
            failures: result
                .err()
                .map(|e| format!("{}: {e}", path.display()))
                .into_iter()
                .collect(),
        }
    }
}

/// Runs `run` on every `.toml` file under `tests/<dir>/` (there must be at least
/// `min_files`); panics listing every failure. Returns how many cases passed.
pub fn run_case_files(
    dir: &str,
    min_files: usize,
    mut run: impl FnMut(&Path) -> FileOutcome,
) -> usize {
    let paths = case_files(dir);
    assert!(
        paths.len() >= min_files,
        "expected the case files, found {paths:?}"
    );
    let (mut cases, mut failures) = (0, Vec::new());
    for path in &paths {
        let outcome = run(path);
        cases += outcome.cases;
        failures.extend(outcome.failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases in {} files of tests/{dir} failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
    cases
}

/// The `.toml` files under `tests/<dir>/`, sorted by name.
fn case_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
}
