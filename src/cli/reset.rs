//! `scorestream reset`: make an application start from scratch, like Kafka's
//! `kafka-streams-application-reset`: its internal topics deleted, its consumer group (and
//! so its committed offsets) deleted, its local state wiped. Refuses while any instance is a
//! member of the group, and does nothing without `--yes`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;
use crate::runtime::client::{admin_config, restore_consumer_config};

/// What a reset would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub group: String,
    /// Internal topics that exist on the broker.
    pub topics: Vec<String>,
    /// The local state directory, if it exists.
    pub state_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "reset of application '{}':", self.group)?;
        writeln!(f, "  delete consumer group '{}' (its committed offsets: the next run starts from the earliest input offsets)", self.group)?;
        if self.topics.is_empty() {
            writeln!(f, "  no internal topics on the broker")?;
        }
        for t in &self.topics {
            writeln!(f, "  delete topic {t}")?;
        }
        match &self.state_dir {
            Some(d) => writeln!(f, "  delete local state {}", d.display()),
            None => writeln!(f, "  no local state here"),
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(15);

/// Which internal topics exist and what would be deleted. Refuses (Err) while the group
/// has members.
pub fn plan(config: &Config) -> Result<Plan, String> {
    let parts = crate::topology::Components::load(config).map_err(|e| e.to_string())?;
    let topology =
        crate::topology::build_topology(config, &parts, None).map_err(|e| e.to_string())?;
    let consumer: BaseConsumer = restore_consumer_config(config)
        .create()
        .map_err(|e| format!("Kafka client: {e}"))?;
    let group = config.application_id.clone();
    refuse_if_group_active(&consumer, &group)?;
    refuse_if_instances_announced(config, &group)?;
    let dir = config.state_dir.join(&config.application_id);
    if dir.is_dir() {
        // An instance on this machine holds the lock while it runs.
        drop(
            crate::state::StateDirectory::open(&config.state_dir, &config.application_id)
                .map_err(|e| format!("{e}; stop it first"))?,
        );
    }
    let metadata = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| format!("cannot list topics: {e}"))?;
    let mut known: Vec<String> = topology
        .internal_topics()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    known.push(crate::runtime::registry::registry_topic(&group));
    known.push(format!("{group}-transaction-probe"));
    let mut topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|t| known.contains(t))
        .collect();
    topics.sort();
    Ok(Plan {
        group,
        topics,
        state_dir: dir.is_dir().then_some(dir),
    })
}

/// Refuses while the broker lists the group with members or in a rebalance.
fn refuse_if_group_active(consumer: &BaseConsumer, group: &str) -> Result<(), String> {
    match consumer.fetch_group_list(Some(group), TIMEOUT) {
        Ok(list) => {
            if list.groups().is_empty() {
                eprintln!("consumer group '{group}': not known to the broker");
            }
            for g in list.groups().iter().filter(|g| g.name() == group) {
                eprintln!(
                    "consumer group '{group}': {} with {} member(s)",
                    if g.state().is_empty() { "state unknown" } else { g.state() },
                    g.members().len()
                );
                let members: Vec<String> = g
                    .members()
                    .iter()
                    .map(|m| {
                        format!("{} {} {}", m.id(), m.client_id(), m.client_host())
                            .trim()
                            .to_string()
                    })
                    .collect();
                // A group with members, or one that is not empty or dead (a rebalance in
                // progress may list none yet), has running instances.
                let state = g.state();
                if !members.is_empty() || !matches!(state, "Empty" | "Dead" | "") {
                    return Err(format!(
                        "the consumer group '{group}' is {state} with {} active member(s){}{}; stop every instance first",
                        members.len(),
                        if members.is_empty() { "" } else { ": " },
                        members.join(", ")
                    ));
                }
            }
        }
        Err(e) => eprintln!(
            "warning: could not check the group's members ({e}); make sure every instance is stopped"
        ),
    }
    Ok(())
}

/// Refuses while instances of the group renew their claims on the registry topic.
fn refuse_if_instances_announced(config: &Config, group: &str) -> Result<(), String> {
    // Running instances renew their claim on the registry topic every few seconds; this does
    // not depend on the broker listing the group's members (Tansu does not before the
    // group's first commit).
    let live =
        crate::runtime::registry::live_instances(restore_consumer_config(config), group, TIMEOUT)?;
    if !live.is_empty() {
        let names: Vec<&str> = live.iter().map(|a| a.http.as_str()).collect();
        return Err(format!(
            "{} instance(s) of '{group}' announced themselves in the last {} s ({}): an active member is running; stop every instance first",
            live.len(),
            crate::runtime::registry::STALE_AFTER.as_secs(),
            names.join(", ")
        ));
    }
    Ok(())
}

/// Carries out `plan`; every step is tried and reported. Err lists the steps that failed.
pub fn execute(config: &Config, plan: &Plan) -> Result<(), Vec<String>> {
    let mut failed = Vec::new();
    let admin: AdminClient<DefaultClientContext> = match admin_config(config).create() {
        Ok(a) => a,
        Err(e) => return Err(vec![format!("admin client: {e}")]),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(vec![e.to_string()]),
    };
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    if !plan.topics.is_empty() {
        let names: Vec<&str> = plan.topics.iter().map(String::as_str).collect();
        match rt.block_on(admin.delete_topics(&names, &opts)) {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(t) => println!("deleted topic {t}"),
                        Err((t, e)) => failed.push(format!("topic {t}: {e}")),
                    }
                }
            }
            Err(e) => failed.push(format!("delete topics: {e}")),
        }
    }
    match rt.block_on(admin.delete_groups(&[plan.group.as_str()], &opts)) {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(g) => println!("deleted consumer group {g}"),
                    Err((g, rdkafka::types::RDKafkaErrorCode::GroupIdNotFound)) => {
                        println!("consumer group {g} did not exist")
                    }
                    Err((g, e)) => failed.push(format!("consumer group {g}: {e}")),
                }
            }
        }
        Err(e) => failed.push(format!("delete consumer group: {e}")),
    }
    if let Some(dir) = &plan.state_dir {
        // Taking the lock proves no instance on this machine still uses it.
        match crate::state::StateDirectory::open(&config.state_dir, &plan.group) {
            Err(e) => failed.push(format!("local state {}: {e}", dir.display())),
            Ok(lock) => {
                drop(lock);
                match std::fs::remove_dir_all(dir) {
                    Ok(()) => println!("deleted local state {}", dir.display()),
                    Err(e) => failed.push(format!("local state {}: {e}", dir.display())),
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed)
    }
}

/// `scorestream reset`: prints the plan; carries it out only with `yes` (and not `dry_run`).
pub async fn command(config: Config, yes: bool, dry_run: bool) -> std::process::ExitCode {
    use std::process::ExitCode;
    let outcome = tokio::task::spawn_blocking(move || {
        let plan = plan(&config)?;
        print!("{plan}");
        if dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        if !yes {
            eprintln!("nothing changed: add --yes to do it");
            return Ok(ExitCode::from(2));
        }
        match execute(&config, &plan) {
            Ok(()) => {
                println!("reset done");
                Ok(ExitCode::SUCCESS)
            }
            Err(failed) => Err(format!("these steps failed:\n  {}", failed.join("\n  "))),
        }
    })
    .await;
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
