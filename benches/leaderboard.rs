//! How the leaderboard path scales with customers and partitions (not criterion: it
//! reports traffic ratios beside timings).
//!
//! Each customer task keeps a partial top-N of its own customers and forwards a total to
//! the board's single partition only when that partial ranking changes (`src/app/game.rs`).
//! This simulates that for C customers spread over P partitions, E point awards with
//! random amounts, one board with top 100, and reports: how many totals reach the board's
//! partition (the hot-partition load), the time per total in a customer task's filter and
//! in the board task, and checks the merged ranking equals the exact top 100 of everything.
//!
//!   cargo bench --bench leaderboard

use std::collections::HashMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scorestream::gamification::TopN;

const TOP: usize = 100;

fn run(customers: u64, partitions: u64, events: u64) {
    let mut rng = StdRng::seed_from_u64(7);
    let ids: Vec<String> = (0..customers).map(|i| format!("c{i:08}")).collect();
    let mut totals = vec![0i64; customers as usize];
    // (customer, new total, reached at), as the customer tasks produce them.
    let updates: Vec<(usize, i64, i64)> = (0..events)
        .map(|t| {
            // A few heavy customers, as in real programs: a quarter of the awards go to 1 %.
            let c = if rng.random_bool(0.25) {
                rng.random_range(0..(customers / 100).max(1))
            } else {
                rng.random_range(0..customers)
            } as usize;
            totals[c] += rng.random_range(1..50);
            (c, totals[c], t as i64)
        })
        .collect();

    let mut partials: Vec<TopN> = (0..partitions).map(|_| TopN::new(TOP)).collect();
    let mut forwarded = Vec::new();
    let t = Instant::now();
    for &(c, total, at) in &updates {
        let p = (c as u64 % partitions) as usize;
        if partials[p].upsert(&ids[c], total, at) {
            forwarded.push((c, total, at));
        }
    }
    let filter = t.elapsed();

    let mut board = TopN::new(TOP);
    let t = Instant::now();
    for &(c, total, at) in &forwarded {
        board.upsert(&ids[c], total, at);
    }
    let merge = t.elapsed();

    // The exact answer: every customer's final total, ranked.
    let mut last_at: HashMap<usize, i64> = HashMap::new();
    for &(c, _, at) in &updates {
        last_at.insert(c, at);
    }
    let mut exact = TopN::new(TOP);
    for (&c, &at) in &last_at {
        exact.upsert(&ids[c], totals[c], at);
    }
    assert_eq!(
        board, exact,
        "merged partial rankings differ from the exact top {TOP}"
    );

    println!(
        "{customers:>9} customers {partitions:>3} partitions {events:>9} totals: \
         {:>7} reach the board ({:>5.2} %), filter {:>4.0} ns/total, board {:>4.0} ns/forwarded; \
         board partition load vs. unfiltered: 1/{:.0}",
        forwarded.len(),
        100.0 * forwarded.len() as f64 / events as f64,
        filter.as_nanos() as f64 / events as f64,
        merge.as_nanos() as f64 / forwarded.len().max(1) as f64,
        events as f64 / forwarded.len().max(1) as f64,
    );
}

fn main() {
    for (customers, partitions, events) in [
        (10_000, 4, 1_000_000),
        (100_000, 4, 1_000_000),
        (1_000_000, 4, 2_000_000),
        (1_000_000, 16, 2_000_000),
        (1_000_000, 64, 2_000_000),
        (5_000_000, 16, 5_000_000),
    ] {
        run(customers, partitions, events);
    }
}
