//! Runs every gamification case file under `tests/cases/` through the real topology
//! (`app::build_topology`) in the `TopologyTestDriver`: seed-shaped JSON events in, the exact
//! records on `gamification-results` and the dead letters out. The runner and the case
//! file format are `scorestream::cli::case_file` (what `scorestream test` runs for rule
//! authors); expected records are written by hand from the rules.

mod support;

use scorestream::cli::case_file::{run_case, CaseError};
use support::cases::{run_case_files, FileOutcome};

#[test]
fn every_case_file_passes() {
    run_case_files("cases", 10, |p| {
        FileOutcome::single(
            p,
            run_case(p, None).map_err(|(CaseError::Failed(e) | CaseError::Invalid(e))| e),
        )
    });
}
