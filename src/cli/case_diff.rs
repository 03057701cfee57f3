//! A readable difference between expected and actual result records: records are aligned
//! (`similar`'s diff of the record sequence), then a changed record is shown field by
//! field, so a rule author sees `points: expected 10, got 20`, not two long JSON lines.

use std::fmt::Write as _;

use serde_json::Value;
use similar::{capture_diff_slices, Algorithm, DiffOp};

/// The report for `expected` ≠ `actual`, one line per finding.
pub fn records(expected: &[Value], actual: &[Value]) -> String {
    let e: Vec<String> = expected.iter().map(Value::to_string).collect();
    let a: Vec<String> = actual.iter().map(Value::to_string).collect();
    let mut out = format!(
        "results differ (expected {}, got {}):",
        expected.len(),
        actual.len()
    );
    let missing = |out: &mut String, range: std::ops::Range<usize>| {
        for (i, r) in e.iter().enumerate().skip(range.start).take(range.len()) {
            let _ = write!(out, "\n  missing  #{i}: {r}");
        }
    };
    let unexpected = |out: &mut String, range: std::ops::Range<usize>| {
        for (j, r) in a.iter().enumerate().skip(range.start).take(range.len()) {
            let _ = write!(out, "\n  unexpected #{j}: {r}");
        }
    };
    for op in capture_diff_slices(Algorithm::Myers, &e, &a) {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete {
                old_index, old_len, ..
            } => missing(&mut out, old_index..old_index + old_len),
            DiffOp::Insert {
                new_index, new_len, ..
            } => unexpected(&mut out, new_index..new_index + new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                let pairs = old_len.min(new_len);
                for k in 0..pairs {
                    let (i, j) = (old_index + k, new_index + k);
                    let _ = write!(out, "\n  changed  #{i} ({}):", label(&expected[i]));
                    let mut lines = Vec::new();
                    fields("", &expected[i], &actual[j], &mut lines);
                    for l in lines {
                        let _ = write!(out, "\n      {l}");
                    }
                }
                missing(&mut out, old_index + pairs..old_index + old_len);
                unexpected(&mut out, new_index + pairs..new_index + new_len);
            }
        }
    }
    out
}

/// `points_awarded, event e2`: what a record is about.
fn label(v: &Value) -> String {
    let t = v["type"].as_str().unwrap_or("?");
    match v["event_id"].as_str() {
        Some(id) => format!("{t}, event {id}"),
        None => t.to_string(),
    }
}

/// One line per differing leaf: `path: expected X, got Y`.
fn fields(path: &str, e: &Value, a: &Value, out: &mut Vec<String>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            for (k, ev) in eo {
                match ao.get(k) {
                    Some(av) => fields(&at(k), ev, av, out),
                    None => out.push(format!("{}: expected {ev}, absent", at(k))),
                }
            }
            for (k, av) in ao {
                if !eo.contains_key(k) {
                    out.push(format!("{}: not expected, got {av}", at(k)));
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) if ea.len() == aa.len() => {
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                fields(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        _ if e != a => out.push(format!("{path}: expected {e}, got {a}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_record_is_shown_field_by_field_and_extra_ones_whole() {
        let e = [
            json!({"type":"points_awarded","event_id":"e1","points":20}),
            json!({"type":"points_awarded","event_id":"e2","points":10,"capped":true}),
        ];
        let a = [
            json!({"type":"points_awarded","event_id":"e1","points":20}),
            json!({"type":"points_awarded","event_id":"e2","points":20,"capped":false}),
            json!({"type":"badge_awarded","badge":"b"}),
        ];
        let r = records(&e, &a);
        assert!(r.starts_with("results differ (expected 2, got 3):"), "{r}");
        assert!(r.contains("changed  #1 (points_awarded, event e2):"), "{r}");
        assert!(r.contains("points: expected 10, got 20"), "{r}");
        assert!(r.contains("capped: expected true, got false"), "{r}");
        assert!(
            r.contains(r#"unexpected #2: {"badge":"b","type":"badge_awarded"}"#),
            "{r}"
        );
        assert!(!r.contains("#0"), "equal records are not shown: {r}");
    }
}
