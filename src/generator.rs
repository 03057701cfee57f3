//! A generator of seed-shaped customer events (DESIGN §2, `shared/seeds/`), with a
//! configurable share of bad records. Used by the demo, load runs and tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The input topics the seeds name, and what the generator sends to each.
pub const DEMO_TOPICS: [&str; 5] = [
    "customer-events",
    "cdr-events",
    "billing-events",
    "crm-events",
    "app-events",
];

/// One generated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub topic: &'static str,
    pub value: Vec<u8>,
    /// The dead-letter reason a correct normalizer gives it, for bad records.
    pub expected_reason: Option<&'static str>,
    /// The customer id a correct normalizer extracts, for good records.
    pub customer_id: Option<String>,
}

/// Settings of a generator run.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub customers: u32,
    /// Share of bad records, 0.0..=1.0.
    pub bad_ratio: f64,
    pub seed: u64,
    /// Topics to send to (a subset of [`DEMO_TOPICS`]; others get customer-events shapes).
    pub topics: Vec<String>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            customers: 1000,
            bad_ratio: 0.02,
            seed: 42,
            topics: DEMO_TOPICS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Deterministic for a given seed.
pub struct Generator {
    rng: StdRng,
    config: GeneratorConfig,
    topics: Vec<&'static str>,
    seq: u64,
}

fn intern(t: &str) -> &'static str {
    DEMO_TOPICS
        .iter()
        .find(|d| **d == t)
        .copied()
        .unwrap_or_else(|| Box::leak(t.to_string().into_boxed_str()))
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn naive_micros(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        let topics = config.topics.iter().map(|t| intern(t)).collect();
        Generator {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            topics,
            seq: 0,
        }
    }

    /// The next record, with event times a little before `now_ms`.
    pub fn next_event(&mut self, now_ms: i64) -> Generated {
        self.seq += 1;
        let topic = self.topics[self.rng.random_range(0..self.topics.len())];
        if self.rng.random_bool(self.config.bad_ratio.clamp(0.0, 1.0)) {
            return self.bad(topic, now_ms);
        }
        let c = self.rng.random_range(0..self.config.customers.max(1));
        let at = now_ms - self.rng.random_range(0..60_000);
        let (value, customer) = match topic {
            "cdr-events" => self.telecom_usage(c, at),
            "billing-events" => self.recharge(c, at),
            "crm-events" => self.crm(c, at),
            "app-events" => self.app(c, at),
            _ => {
                if self.rng.random_bool(0.5) {
                    self.order(c, at)
                } else {
                    self.telecom_usage(c, at)
                }
            }
        };
        Generated {
            topic,
            value: value.into_bytes(),
            expected_reason: None,
            customer_id: Some(customer),
        }
    }

    fn msisdn(c: u32) -> u64 {
        2_547_000_000 + c as u64
    }

    /// Seed 000: the IN system's data usage / voice events with metadata.
    fn telecom_usage(&mut self, c: u32, at: i64) -> (String, String) {
        let id = Self::msisdn(c);
        let (kind, value) = if self.rng.random_bool(0.7) {
            ("data_usage", self.rng.random_range(1..2000) as f64 / 2.0)
        } else {
            ("voice_call", self.rng.random_range(1..600) as f64)
        };
        let network = ["4G", "5G", "3G"][self.rng.random_range(0..3)];
        // Half use Python's naive isoformat() with microseconds, as the seed's example does.
        let ts = if self.rng.random_bool(0.5) {
            iso(at)
        } else {
            naive_micros(at)
        };
        (
            format!(
                r#"{{"source":"in","source_name":"IN System","customer_id":"{id}","event_type":"{kind}","timestamp":"{ts}","value":{value},"metadata":{{"network":"{network}","location":"city"}}}}"#
            ),
            id.to_string(),
        )
    }

    /// Seed 001: a recharge with an amount and a numeric customer id.
    fn recharge(&mut self, c: u32, at: i64) -> (String, String) {
        let id = Self::msisdn(c);
        let amount = [5.0, 10.0, 20.0, 50.0][self.rng.random_range(0..4)];
        (
            format!(
                r#"{{"customer_id":{id},"event_type":"recharge","timestamp":"{}","amount":{amount:.2}}}"#,
                iso(at)
            ),
            id.to_string(),
        )
    }

    /// Seed 001: a CRM profile update.
    fn crm(&mut self, c: u32, at: i64) -> (String, String) {
        let id = Self::msisdn(c);
        let kind = ["kyc_update", "plan_downgrade", "complaint"][self.rng.random_range(0..3)];
        (
            format!(
                r#"{{"source":"crm","customer_id":"{id}","event_type":"{kind}","timestamp":"{}"}}"#,
                iso(at)
            ),
            id.to_string(),
        )
    }

    /// Seed 002: retail order events with `data.order_value`.
    fn order(&mut self, c: u32, at: i64) -> (String, String) {
        let id = format!("CUST-{c:05}");
        let kind = [
            "order_placed",
            "order_placed",
            "login",
            "product_viewed",
            "payment_failed",
            "cart_abandoned",
            "email_opened",
        ][self.rng.random_range(0..7)];
        let value = self.rng.random_range(500..50_000) as f64 / 100.0;
        let items = self.rng.random_range(1..6);
        (
            format!(
                r#"{{"event_id":"{id}_{at}_{seq}","event_type":"{kind}","customer_id":"{id}","timestamp":"{}","data":{{"order_id":"ORD-{seq}","order_value":{value},"items_count":{items},"payment_method":"credit_card"}}}}"#,
                iso(at),
                seq = self.seq
            ),
            id,
        )
    }

    /// Seeds 003/004: app events with `userId`, camelCase types and epoch-millisecond times.
    fn app(&mut self, c: u32, at: i64) -> (String, String) {
        let id = format!("u-{c}");
        let kind = ["postLiked", "PostCreated", "USER_LOGIN", "video-uploaded"]
            [self.rng.random_range(0..4)];
        (
            format!(
                r#"{{"userId":"{id}","eventType":"{kind}","timestamp":{at},"postId":"p-{}"}}"#,
                self.seq
            ),
            id,
        )
    }

    fn bad(&mut self, topic: &'static str, now_ms: i64) -> Generated {
        let (value, reason): (Vec<u8>, &'static str) = match self.rng.random_range(0..7) {
            0 => (
                br#"{"customer_id":"1","event_type":"recharge""#.to_vec(),
                "invalid_json",
            ),
            1 => (
                format!(
                    r#"{{"event_type":"recharge","timestamp":"{}"}}"#,
                    iso(now_ms)
                )
                .into_bytes(),
                "missing_field",
            ),
            2 => (
                format!(
                    r#"{{"customer_id":12.5,"event_type":"recharge","timestamp":"{}"}}"#,
                    iso(now_ms)
                )
                .into_bytes(),
                "wrong_type",
            ),
            3 => (br#"[{"customer_id":"1"}]"#.to_vec(), "not_an_object"),
            4 => (
                br#"{"customer_id":"1","event_type":"recharge","timestamp":"yesterday"}"#.to_vec(),
                "invalid_timestamp",
            ),
            5 => (vec![b'{', 0xff, 0xfe, b'}'], "invalid_utf8"),
            _ => (
                format!(
                    r#"{{"customer_id":"   ","event_type":"recharge","timestamp":"{}"}}"#,
                    iso(now_ms)
                )
                .into_bytes(),
                "empty_field",
            ),
        };
        Generated {
            topic,
            value,
            expected_reason: Some(reason),
            customer_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_mixes_bad_records() {
        let cfg = GeneratorConfig {
            bad_ratio: 0.1,
            ..GeneratorConfig::default()
        };
        let a: Vec<Generated> = {
            let mut g = Generator::new(cfg.clone());
            (0..500).map(|_| g.next_event(1_700_000_000_000)).collect()
        };
        let b: Vec<Generated> = {
            let mut g = Generator::new(cfg);
            (0..500).map(|_| g.next_event(1_700_000_000_000)).collect()
        };
        assert_eq!(a, b);
        let bad = a.iter().filter(|g| g.expected_reason.is_some()).count();
        assert!((20..=80).contains(&bad), "bad = {bad}");
        for t in DEMO_TOPICS {
            assert!(a.iter().any(|g| g.topic == t), "no event for {t}");
        }
    }
}
