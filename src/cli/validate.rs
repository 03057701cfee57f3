//! `scorestream validate`: everything that would stop `run` before it starts, in every
//! file, at once — and a summary of what was checked only when all of it is valid.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::topology;

/// Configuration keys that name the other files: when one of them is wrong, those files
/// are unknown and are not checked (checking the bundled ones instead would mislead).
const FILE_KEYS: [&str; 7] = [
    "gamification",
    "gamification.rules_file",
    "ingest",
    "ingest.mapping_file",
    "churn",
    "churn.rules_file",
    "churn.model_file",
];

/// What `validate` found: the problems (for stderr) and, when there are none, the summary
/// of what was checked (for stdout).
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub summary: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the configuration file (or the defaults and environment), then the mapping,
/// rules and churn files it names (`rules` replaces `gamification.rules_file`).
pub fn validate(config_path: Option<&Path>, rules: Option<PathBuf>) -> Report {
    let mut report = Report::default();
    let name = config_path.map_or("(defaults and environment)".to_string(), |p| {
        p.display().to_string()
    });
    let (config, errors) = Config::check_file(config_path);
    let files_known =
        config.is_some() && !errors.iter().any(|e| FILE_KEYS.contains(&e.key.as_str()));
    if !errors.is_empty() {
        let mut text = format!("invalid configuration {name}:");
        for e in &errors {
            let _ = write!(text, "\n  - {e}");
        }
        report.problems.push(text);
    }
    let mut config = config.unwrap_or_default();
    if rules.is_some() {
        config.gamification.rules_file = rules.clone();
    }
    if !files_known {
        match rules {
            Some(_) => {
                if let Err(e) = topology::rules(&config) {
                    report.problems.push(e.to_string());
                }
                report.problems.push(format!(
                    "the source mapping and churn files were not checked: the configuration does not say which they are (see {name} above)"
                ));
            }
            None => report.problems.push(format!(
                "the source mapping, rules and churn files were not checked: the configuration does not say which they are (see {name} above)"
            )),
        }
        return report;
    }
    let parts = match topology::Components::load(&config) {
        Ok(p) => p,
        Err(e) => {
            report
                .problems
                .extend(e.problems.iter().map(ToString::to_string));
            return report;
        }
    };
    let topology = match topology::build_topology(&config, &parts, None) {
        Ok(t) => t,
        Err(e) => {
            report.problems.push(format!("invalid topology: {e}"));
            return report;
        }
    };
    if report.ok() {
        report.summary = summary(&config, &parts, &topology);
    }
    report
}

fn summary(config: &Config, parts: &topology::Components, t: &crate::engine::Topology) -> String {
    let mut s = String::new();
    let r = &parts.rules;
    let _ = writeln!(
        s,
        "rules {}: {} point types, {} points rules, {} missions, {} badges, {} streaks, {} tiers, {} scores, {} leaderboards",
        r.version,
        r.point_types.len(),
        r.points.len(),
        r.missions.len(),
        r.badges.len(),
        r.streaks.len(),
        r.tiers.as_ref().map_or(0, |t| t.levels.len()),
        r.scores.len(),
        r.leaderboards.len(),
    );
    if let Some(c) = &parts.churn {
        let inactivity = c.rules.inactivity.as_ref().map_or("off".to_string(), |i| {
            humantime::format_duration(std::time::Duration::from_millis(i.after_ms as u64))
                .to_string()
        });
        let _ = writeln!(
            s,
            "churn rules {}: {} trigger event types, usage drop {}, inactivity {inactivity}; model {} ({} features{})",
            c.rules.version,
            c.rules.trigger_events.len(),
            if c.rules.usage_drop.is_some() { "on" } else { "off" },
            c.model.version,
            c.model.features.len(),
            c.model
                .trained
                .as_ref()
                .map_or(String::new(), |t| format!(", held-out AUC {}", t.holdout_auc)),
        );
    }
    let _ = writeln!(
        s,
        "topology: {} sub-topologies, stores: {}",
        t.subtopologies().len(),
        t.stores()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "inputs: {}; application id {}",
        config.inputs.join(", "),
        config.application_id
    );
    s.push_str("OK\n");
    s
}

/// `scorestream validate`: every problem of every file on stderr (exit 2), or what was
/// checked on stdout.
pub fn command(config: Option<&Path>, rules: Option<PathBuf>) -> std::process::ExitCode {
    let report = validate(config, rules);
    if report.ok() {
        print!("{}", report.summary);
        std::process::ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            eprintln!("{p}");
        }
        std::process::ExitCode::from(2)
    }
}
