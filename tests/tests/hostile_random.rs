//! Issue 15's property: random, hostile events never make either engine panic, both engines
//! agree record for record, and the invariants hold — every balance ≥ 0 and within its
//! maximum, every unpaid amount ≥ 0, every reconciliation closes exactly, revisions
//! increase (`run_with` checks those two), and the FIFO head of an account with unpaid
//! codes is never affordable (the reference asserts it at the end of every run).
//!
//! Each seed builds a few hundred events over three accounts, a small pool of codes and two
//! partitions: every kind, amounts drawn from the extremes (zero, negative, too precise,
//! rust_decimal's maximum, the largest accepted amount), timestamps from the absurd (year
//! 1, 1969, 9999) and from one busy week, duplicate ids, garbage lines and unknown types.
//! A failing seed is printed; `MARKLEDGER_HOSTILE_SEEDS=N` runs more seeds.

use markledger_datasets::generator::rng::Rng;
use markledger_operators::money::BALANCE_MAX;
use markledger_operators::Money;
use markledger_tests::*;

const ACCOUNTS: [&str; 3] = ["KZ-A", "KZ-B", "KZ-C"];

const AMOUNTS: [&str; 12] = [
    "0",
    "-5.00",
    "0.001",
    "1.00",
    "3.0016",
    "10.00",
    "250.50",
    "1000000000000.00",
    "1000000000000.01",
    "79228162514264337593543950335",
    "79228162514264337593543950.33",
    "not money",
];

const TIMES: [&str; 5] = [
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59Z",
    "2028-01-01T00:00:00+05:00",
    "2019-12-31T23:59:59+06:00",
];

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// A timestamp: mostly inside one week of January 2026 (seconds apart, so instants
/// collide), sometimes absurd.
fn ts(rng: &mut Rng) -> String {
    if rng.below(20) == 0 {
        return pick(rng, &TIMES).to_string();
    }
    let minute = rng.below(7 * 24 * 60);
    let (day, hour, min) = (10 + minute / 1440, (minute / 60) % 24, minute % 60);
    format!("2026-01-{day:02}T{hour:02}:{min:02}:{:02}+05:00", rng.below(3))
}

fn codes(rng: &mut Rng, account: &str) -> Vec<String> {
    let n = rng.between(1, 4);
    (0..n)
        .map(|_| {
            // Mostly the account's own codes, sometimes another's, sometimes not a code.
            let owner = if rng.below(6) == 0 {
                pick(rng, &ACCOUNTS)
            } else {
                account
            };
            if rng.below(30) == 0 {
                "bad code".to_string()
            } else {
                format!("{owner}-c{}", rng.below(12))
            }
        })
        .collect()
}

fn line(rng: &mut Rng, index: u64) -> String {
    let account = pick(rng, &ACCOUNTS);
    // Some ids repeat (retries), most are fresh.
    let id = if rng.below(15) == 0 {
        format!("x{}", rng.below(index.max(1)))
    } else {
        format!("x{index}")
    };
    let at = ts(rng);
    let order_id = format!("O{}", rng.below(3));
    let gtin = if rng.below(25) == 0 { "12345678901234" } else { GTIN };
    let list = codes(rng, account);
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    match rng.below(16) {
        0 | 1 => payment(&id, &at, account, pick(rng, &AMOUNTS), "Kaspi Bank"),
        2 => compensation(&id, &at, account, pick(rng, &AMOUNTS)),
        3 => refund(&id, &at, account, pick(rng, &AMOUNTS)),
        4 => order(&id, &at, account, &order_id, gtin, rng.between(1, 6)),
        5 => order_cancel(&id, &at, account, &order_id),
        6 | 7 => emission(&id, &at, account, &order_id, gtin, &list),
        8 | 9 => application(&id, &at, account, &list),
        10 => dropout(&id, &at, account, &list),
        11 => defect(&id, &at, account, "2026-01-12", &list),
        12 => introduction(&id, &at, account, &list),
        13 => tariff(
            &id,
            &at,
            &at,
            pick(rng, &["2.68", "3.00", "0", "100000000000000000000"]),
            "0.12",
        ),
        14 => r#"{"id":"garbage","#.to_string(),
        _ => format!(r#"{{"id":"{id}","type":"inventory","ts":"{at}","account":"{account}"}}"#),
    }
}

fn workload(seed: u64) -> Vec<Vec<String>> {
    let mut rng = Rng::new(seed);
    let mut partitions = vec![Vec::new(), Vec::new()];
    for index in 0..300 {
        let partition = rng.below(2) as usize;
        partitions[partition].push(line(&mut rng, index));
    }
    partitions
}

#[test]
fn random_hostile_events_keep_every_invariant_on_both_engines() {
    // Seeds 1..=N (default 24); each through the reference and the dataflow on 1 and 3
    // workers (run_with), then the balance invariants on the outputs.
    let seeds: u64 = std::env::var("MARKLEDGER_HOSTILE_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let max = Money::exact(BALANCE_MAX);
    let mut refusals = 0;
    for seed in 1..=seeds {
        let partitions = workload(seed);
        let result = std::panic::catch_unwind(|| run_with(&default_config(), &partitions));
        let out = result.unwrap_or_else(|_| panic!("seed {seed} failed (MARKLEDGER_HOSTILE_SEEDS to run more)"));
        for output in &out.outputs {
            if let markledger_operators::Output::Balance(balance) = output {
                assert!(
                    balance.balance >= Money::ZERO && balance.balance <= max,
                    "seed {seed}: {balance:?}"
                );
                assert!(balance.unpaid_amount >= Money::ZERO, "seed {seed}: {balance:?}");
            }
        }
        refusals += out.rejections().len();
    }
    // The workloads are hostile on purpose: they must have been refused a lot.
    assert!(
        refusals > seeds as usize * 10,
        "only {refusals} rejections over {seeds} seeds"
    );
}
