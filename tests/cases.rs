//! Runs every gamification case file under `tests/cases/` through the real topology
//! (`app::build_topology`) in the `TopologyTestDriver`: seed-shaped JSON events in, the exact
//! records on `gamification-results` and the dead letters out. The runner and the case
//! file format are `scorestream::cli::case_file` (what `scorestream test` runs for rule
//! authors); expected records are written by hand from the rules.

use std::path::Path;

use scorestream::cli::case_file::{run_case, CaseError};

#[test]
fn every_case_file_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "expected the case files, found {paths:?}"
    );
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| match run_case(p, None) {
            Ok(()) => None,
            Err(CaseError::Failed(e) | CaseError::Invalid(e)) => {
                Some(format!("{}: {e}", p.display()))
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} case files failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
