//! Fitting the churn model from a labelled export (`scorestream churn train`): standard
//! scaling, logistic regression by linfa-logistic, and the held-out AUC and calibration.

use std::fmt;
use std::io::{BufRead, Write};

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::features::{FeatureVector, FEATURES};
use super::model::{Model, ModelFeature, Trained};
use super::simulate::Row;

/// Share of rows held out for evaluation.
pub const HOLDOUT: f64 = 0.2;

/// Writes rows as CSV: one column per feature (header = names), then `churned` (0/1).
pub fn write_csv(rows: &[Row], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{},churned", FEATURES.join(","))?;
    for r in rows {
        let values: Vec<String> = r.features.values.iter().map(|v| format!("{v}")).collect();
        writeln!(out, "{},{}", values.join(","), u8::from(r.churned))?;
    }
    Ok(())
}

/// Reads rows written by [`write_csv`] or exported by a spreadsheet or database: RFC 4180
/// CSV (quoted cells, a UTF-8 byte-order mark, CRLF line ends). Columns may come in any
/// order; extra columns are ignored; every feature and `churned` must be present.
pub fn read_csv(input: &mut dyn BufRead) -> Result<Vec<Row>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    if names.iter().all(String::is_empty) {
        return Err("the file is empty".into());
    }
    let col = |n: &str| {
        names
            .iter()
            .position(|h| h == n)
            .ok_or_else(|| format!("column '{n}' is missing from the header"))
    };
    let feature_cols: Vec<usize> = FEATURES.iter().map(|f| col(f)).collect::<Result<_, _>>()?;
    let label_col = col("churned")?;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    // The header is line 1. (csv's own line count is off by one with CRLF line ends.)
    for line in 2.. {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(e.to_string()),
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = |c: usize| {
            record
                .get(c)
                .ok_or_else(|| format!("line {line}: too few columns"))
        };
        let mut values = [0.0; FEATURES.len()];
        for (v, &c) in values.iter_mut().zip(&feature_cols) {
            let text = cell(c)?;
            *v = text
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("line {line}: '{text}' is not a number"))?;
        }
        let churned = match cell(label_col)? {
            "1" | "true" => true,
            "0" | "false" => false,
            other => {
                return Err(format!(
                    "line {line}: churned must be 0 or 1, not '{other}'"
                ))
            }
        };
        rows.push(Row {
            features: FeatureVector { values },
            churned,
        });
    }
    Ok(rows)
}

/// One calibration bin: predictions in `[lower, upper)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub rows: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// What training produced.
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub model: Model,
    pub train_rows: usize,
    pub holdout_rows: usize,
    pub holdout_auc: f64,
    pub churn_rate: f64,
    pub calibration: Vec<Bin>,
}

impl fmt::Display for TrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {}: trained on {} rows, evaluated on {} held-out rows (churn rate {:.1} %)",
            self.model.version,
            self.train_rows,
            self.holdout_rows,
            100.0 * self.churn_rate
        )?;
        writeln!(f, "held-out AUC: {:.4}", self.holdout_auc)?;
        writeln!(f, "calibration (held out): predicted → observed churn rate")?;
        for b in &self.calibration {
            writeln!(
                f,
                "  [{:.1}, {:.1})  {:>6} rows  predicted {:.3}  observed {:.3}",
                b.lower, b.upper, b.rows, b.mean_predicted, b.observed_rate
            )?;
        }
        Ok(())
    }
}

/// Area under the ROC curve: the probability that a random churner scores above a random
/// non-churner (ties count half), by ranks.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Ten equal-width bins of predicted probability.
pub fn calibration(predicted: &[f64], labels: &[bool]) -> Vec<Bin> {
    (0..10)
        .map(|b| {
            let (lower, upper) = (b as f64 / 10.0, (b + 1) as f64 / 10.0);
            let members: Vec<usize> = (0..predicted.len())
                .filter(|&i| {
                    predicted[i] >= lower
                        && (predicted[i] < upper || (b == 9 && predicted[i] <= 1.0))
                })
                .collect();
            let n = members.len();
            let mean = |f: &dyn Fn(usize) -> f64| {
                if n == 0 {
                    0.0
                } else {
                    members.iter().map(|&i| f(i)).sum::<f64>() / n as f64
                }
            };
            Bin {
                lower,
                upper,
                rows: n,
                mean_predicted: mean(&|i| predicted[i]),
                observed_rate: mean(&|i| f64::from(u8::from(labels[i]))),
            }
        })
        .collect()
}

/// Each feature's mean and standard deviation over the rows `fit` (1 for a constant one).
fn standardization(rows: &[Row], fit: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n_feat = FEATURES.len();
    let mut mean = vec![0.0; n_feat];
    let mut std = vec![0.0; n_feat];
    for &i in fit {
        for (m, v) in mean.iter_mut().zip(&rows[i].features.values) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= fit.len() as f64;
    }
    for &i in fit {
        for ((s, v), m) in std.iter_mut().zip(&rows[i].features.values).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    for s in &mut std {
        *s = (*s / fit.len() as f64).sqrt();
        if *s < 1e-9 {
            *s = 1.0; // a constant feature: scaled to 0, weight meaningless but harmless
        }
    }
    (mean, std)
}

/// Fits a model on a shuffled 80 % of `rows` (deterministic for `seed`) and evaluates it on
/// the rest.
pub fn train(rows: &[Row], seed: u64, version: &str) -> Result<TrainReport, String> {
    if rows.len() < 50 {
        return Err(format!(
            "{} rows are too few to train on (need 50 or more)",
            rows.len()
        ));
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let holdout_n = ((rows.len() as f64) * HOLDOUT).round() as usize;
    let (held, fit) = order.split_at(holdout_n);
    let n_feat = FEATURES.len();
    let (mean, std) = standardization(rows, fit);
    let scaled = |idx: &[usize]| {
        Array2::from_shape_fn((idx.len(), n_feat), |(r, c)| {
            (rows[idx[r]].features.values[c] - mean[c]) / std[c]
        })
    };
    let x = scaled(fit);
    let y: Array1<bool> = fit.iter().map(|&i| rows[i].churned).collect();
    let fitted = LogisticRegression::default()
        .alpha(0.01)
        .max_iterations(500)
        .fit(&Dataset::new(x, y))
        .map_err(|e| format!("logistic regression did not fit: {e}"))?;
    // linfa's positive class is the more frequent label; the model predicts churn.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let features: Vec<ModelFeature> = FEATURES
        .iter()
        .enumerate()
        .map(|(c, name)| ModelFeature {
            name: name.to_string(),
            mean: mean[c],
            std: std[c],
            weight: sign * fitted.params()[c],
        })
        .collect();
    let mut model = Model::new(
        version.to_string(),
        sign * fitted.intercept(),
        features,
        None,
    )
    .map_err(|e| e.to_string())?;
    let predicted: Vec<f64> = held
        .iter()
        .map(|&i| model.predict(&rows[i].features).probability)
        .collect();
    let labels: Vec<bool> = held.iter().map(|&i| rows[i].churned).collect();
    let holdout_auc = auc(&predicted, &labels);
    model.trained = Some(Trained {
        rows: rows.len() as u64,
        holdout_rows: held.len() as u64,
        holdout_auc: (holdout_auc * 10_000.0).round() / 10_000.0,
        seed,
        source: String::new(),
    });
    Ok(TrainReport {
        train_rows: fit.len(),
        holdout_rows: held.len(),
        holdout_auc,
        churn_rate: rows.iter().filter(|r| r.churned).count() as f64 / rows.len() as f64,
        calibration: calibration(&predicted, &labels),
        model,
    })
}

/// `scorestream churn export`: simulates `customers` and writes their labelled features.
pub fn run_export(customers: usize, seed: u64, output: &std::path::Path) -> Result<usize, String> {
    let rules = super::ChurnRules::bundled().map_err(|e| e.to_string())?;
    let rows = super::simulate::simulate(&rules, customers, seed);
    let file = std::fs::File::create(output)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write_csv(&rows, &mut out)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(rows.len())
}

/// `scorestream churn train`: fits a model on `input` and writes it to `output`.
pub fn run_train(
    input: &std::path::Path,
    output: &std::path::Path,
    seed: u64,
    version: &str,
) -> Result<TrainReport, String> {
    let file =
        std::fs::File::open(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let rows = read_csv(&mut std::io::BufReader::new(file))
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let mut report = train(&rows, seed, version)?;
    if let Some(t) = report.model.trained.as_mut() {
        t.source = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    let text = format!(
        "# Churn model written by `scorestream churn train --input {}` (seed {seed}).\n\
         # Logistic regression over standard-scaled features (see docs/churn.md):\n\
         # p = 1 / (1 + exp(-(intercept + sum(weight * (value - mean) / std)))).\n\n{}",
        input.display(),
        report.model.to_toml()
    );
    std::fs::write(output, text).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // Churners score 0.9 and 0.4, non-churners 0.5 and 0.1: of the 4 pairs, 3 are ordered.
        assert_eq!(
            auc(&[0.9, 0.4, 0.5, 0.1], &[true, true, false, false]),
            0.75
        );
        // A tie counts half: pairs (0.5,0.5) = 0.5, (0.5,0.1) = 1 → 0.75.
        assert_eq!(auc(&[0.5, 0.5, 0.1], &[true, false, false]), 0.75);
        assert!(auc(&[0.5], &[true]).is_nan());
    }

    #[test]
    fn calibration_bins_by_prediction() {
        let bins = calibration(&[0.05, 0.15, 0.12, 1.0], &[false, true, false, true]);
        assert_eq!(bins[0].rows, 1);
        assert_eq!(bins[1].rows, 2);
        assert!((bins[1].mean_predicted - 0.135).abs() < 1e-12);
        assert_eq!(bins[1].observed_rate, 0.5);
        assert_eq!(bins[9].rows, 1, "1.0 falls in the last bin");
    }

    #[test]
    fn csv_round_trips_and_names_bad_cells() {
        let row = |v: f64, c: bool| Row {
            features: FeatureVector {
                values: [v; FEATURES.len()],
            },
            churned: c,
        };
        let rows = vec![row(1.5, true), row(0.0, false)];
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        let back = read_csv(&mut out.as_slice()).unwrap();
        assert_eq!(back, rows);
        let text = String::from_utf8(out).unwrap().replacen("1.5", "abc", 1);
        let err = read_csv(&mut text.as_bytes()).unwrap_err();
        assert!(err.contains("line 2") && err.contains("abc"), "{err}");
        let err = read_csv(&mut "a,b\n1,2\n".as_bytes()).unwrap_err();
        assert!(err.contains("days_since_last_activity"), "{err}");
    }

    #[test]
    fn csv_from_spreadsheets_reads_quotes_bom_and_crlf() {
        // As Excel saves "CSV UTF-8": a byte-order mark, quoted cells (a comma inside an
        // extra column), CRLF line ends; the columns in another order.
        let mut names: Vec<String> = FEATURES.iter().rev().map(|f| format!("\"{f}\"")).collect();
        names.insert(0, "\"churned\"".into());
        names.push("note".into());
        let values: Vec<String> = (0..FEATURES.len())
            .rev()
            .map(|i| format!("\"{i}.5\""))
            .collect();
        let text = format!(
            "\u{feff}{}\r\n\"1\",{},\"renewed, then left\"\r\n",
            names.join(","),
            values.join(",")
        );
        let rows = read_csv(&mut text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(rows.len(), 1);
        assert!(rows[0].churned);
        let expected: Vec<f64> = (0..FEATURES.len()).map(|i| i as f64 + 0.5).collect();
        assert_eq!(rows[0].features.values.to_vec(), expected);
        let err = read_csv(&mut text.replace("\"2.5\"", "\"x\"").as_bytes()).unwrap_err();
        assert!(err.contains("line 2") && err.contains("'x'"), "{err}");
    }
}
