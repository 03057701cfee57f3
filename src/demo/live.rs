//! The demo's live view of `gamification-results`: a background consumer keeps the latest
//! leaderboards and what a few customers have reached, for the one-line-per-second loop to
//! print.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

/// What a customer has reached, from their latest results.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub points: BTreeMap<String, i64>,
    pub tier: Option<String>,
    pub badges: BTreeMap<String, String>,
    pub missions_completed: u64,
    pub longest_streak: u64,
}

/// The latest state seen on the results topic.
#[derive(Debug, Default)]
pub struct View {
    pub results_by_type: BTreeMap<String, u64>,
    pub customers: BTreeMap<String, Progress>,
    /// (board, period) → ranking as (customer, total), best first.
    pub boards: BTreeMap<(String, String), Vec<(String, i64)>>,
    pub final_snapshots: u64,
}

impl View {
    fn apply(&mut self, v: &Value) {
        let ty = v["type"].as_str().unwrap_or("?").to_string();
        *self.results_by_type.entry(ty.clone()).or_default() += 1;
        if ty == "leaderboard_updated" {
            let key = (
                v["board"].as_str().unwrap_or("?").to_string(),
                v["period"].as_str().unwrap_or("?").to_string(),
            );
            let entries = v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                e["customer_id"].as_str().unwrap_or("?").to_string(),
                                e["total"].as_i64().unwrap_or(0),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.boards.insert(key, entries);
            self.final_snapshots += u64::from(v["final"].as_bool() == Some(true));
            return;
        }
        let Some(customer) = v["customer_id"].as_str() else {
            return;
        };
        let p = self.customers.entry(customer.to_string()).or_default();
        match ty.as_str() {
            "points_awarded" => {
                if let (Some(t), Some(total)) = (v["point_type"].as_str(), v["total"].as_i64()) {
                    p.points.insert(t.to_string(), total);
                }
            }
            "tier_changed" => p.tier = v["to"].as_str().map(str::to_string),
            "badge_awarded" => {
                if let (Some(b), Some(l)) = (v["badge"].as_str(), v["level_name"].as_str()) {
                    p.badges.insert(b.to_string(), l.to_string());
                }
            }
            "mission_completed" => p.missions_completed += 1,
            "streak_updated" => {
                p.longest_streak = p.longest_streak.max(v["longest"].as_u64().unwrap_or(0))
            }
            _ => {}
        }
    }

    /// A few lines: the all-time top 5 of the first board, and those customers' progress.
    pub fn render(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let board = self
            .boards
            .iter()
            .find(|((_, period), _)| period == "all_time")
            .or_else(|| self.boards.iter().next());
        let Some(((board, period), entries)) = board else {
            lines.push("  (no leaderboard published yet)".into());
            return lines;
        };
        lines.push(format!("  leaderboard {board} {period}:"));
        for (i, (customer, total)) in entries.iter().take(5).enumerate() {
            let detail = self
                .customers
                .get(customer)
                .map(|p| {
                    format!(
                        "tier={} badges=[{}] missions={} longest_streak={}d points={:?}",
                        p.tier.as_deref().unwrap_or("-"),
                        p.badges
                            .iter()
                            .map(|(b, l)| format!("{b}:{l}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        p.missions_completed,
                        p.longest_streak,
                        p.points
                    )
                })
                .unwrap_or_default();
            lines.push(format!(
                "    #{} {customer:<14} {total:>6}  {detail}",
                i + 1
            ));
        }
        lines
    }
}

/// Reads `topic` from the beginning until stopped.
pub struct LiveView {
    pub view: Arc<Mutex<View>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveView {
    pub fn start(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<LiveView> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "scorestream-demo-live-view")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let view = Arc::new(Mutex::new(View::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (view.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    if let Some(Ok(json)) = m.payload().map(serde_json::from_slice::<Value>) {
                        v.lock().expect("view lock").apply(&json);
                    }
                }
            }
        });
        Ok(LiveView {
            view,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.stop();
    }
}
