//! The population: who the accounts are, what they make, how fast and how they pay.
//!
//! A country's shape (issue 3): a few factories whose lines print 6,000–12,000 packs a
//! minute, a band of mid-sized producers, and many small importers. The total number of
//! codes to apply is split between the three classes and, inside a class, by heavy-tailed
//! weights, so account sizes differ by orders of magnitude. Everything here is drawn once,
//! up front, from the seed; nothing depends on how the simulation later unfolds.

use super::codes::{account_id, gtin, partition_of, product_key};
use super::rng::Rng;

/// The kind of client an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// A large plant with several fast lines.
    Factory,
    /// A mid-sized producer with one slower line.
    Producer,
    /// An importer marking goods in occasional small batches.
    Importer,
}

impl Profile {
    /// The manifest's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Factory => "factory",
            Profile::Producer => "producer",
            Profile::Importer => "importer",
        }
    }
}

/// How an account funds its prepaid balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Funding {
    /// Tops up ahead of consumption: its queue of unpaid codes stays short.
    Prepaid,
    /// Chronically short of money: pays part of what it owes, catching up now and then,
    /// so its FIFO queue grows and drains.
    Short,
}

/// One product (GTIN) of an account.
#[derive(Clone, Debug)]
pub struct Product {
    /// The GTIN-14.
    pub gtin: String,
    /// The key its codes are derived from.
    pub key: u64,
}

/// One production line.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    /// Packs printed per minute while running.
    pub packs_per_minute: u64,
    /// Time between two application reports while running.
    pub report_every_ms: i64,
}

/// Everything fixed about one account.
#[derive(Clone, Debug)]
pub struct AccountPlan {
    /// Position in the population.
    pub index: u32,
    /// The account id.
    pub id: String,
    /// The partition all its events go to.
    pub partition: u32,
    /// What kind of client it is.
    pub profile: Profile,
    /// How it pays.
    pub funding: Funding,
    /// Its products.
    pub products: Vec<Product>,
    /// Its lines (none for importers).
    pub lines: Vec<Line>,
    /// Its usual payment channel (an index into [`CHANNELS`]).
    pub channel: usize,
    /// Codes it means to apply over the whole horizon.
    pub budget_codes: u64,
}

/// Payment channels: banks and payment systems.
pub const CHANNELS: [&str; 9] = [
    "Halyk Bank",
    "Kaspi Bank",
    "ForteBank",
    "Kaspi Pay",
    "Bank CenterCredit",
    "Jusan Bank",
    "Freedom Bank",
    "Eurasian Bank",
    "Halyk Homebank",
];

/// How often each channel is an account's usual one (big banks dominate).
const CHANNEL_WEIGHTS: [u32; 9] = [30, 25, 10, 12, 10, 5, 4, 3, 1];

/// GS1 prefixes: Kazakhstan for local makers; the countries importers buy from.
const LOCAL_PREFIX: u16 = 487;
const IMPORT_PREFIXES: [u16; 8] = [460, 461, 690, 693, 869, 400, 481, 478];

/// Share of all applied codes made by each class (factories, producers, importers).
const CLASS_SHARES: [f64; 3] = [0.62, 0.25, 0.13];

/// Codes below which an importer's budget is rounded (stochastically) to 0 or to one
/// minimal report: a report has at least this many codes.
pub const REPORT_CODES_MIN: u64 = 100;

/// Draws the population for `accounts` accounts that together apply about
/// `applied_codes` codes, spread over `partitions` partitions.
pub fn population(seed: u64, accounts: u32, applied_codes: u64, partitions: u32) -> Vec<AccountPlan> {
    let mut rng = Rng::stream(seed, u64::MAX - 1);
    let factories = (accounts * 3 / 100).max(1).min(accounts);
    let producers = if accounts >= 3 { (accounts * 15 / 100).max(1) } else { 0 };
    let producers = producers.min(accounts - factories);
    let mut profiles: Vec<Profile> = (0..accounts)
        .map(|index| {
            if index < factories {
                Profile::Factory
            } else if index < factories + producers {
                Profile::Producer
            } else {
                Profile::Importer
            }
        })
        .collect();
    rng.shuffle(&mut profiles);

    // Heavy-tailed weights inside each class: 0.25 + 4u³ spans 0.25 to 4.25.
    let weights: Vec<f64> = (0..accounts)
        .map(|_| {
            let u = rng.unit();
            0.25 + 4.0 * u * u * u
        })
        .collect();
    let class_of = |profile: Profile| match profile {
        Profile::Factory => 0,
        Profile::Producer => 1,
        Profile::Importer => 2,
    };
    let mut class_weight = [0.0f64; 3];
    for (profile, weight) in profiles.iter().zip(&weights) {
        class_weight[class_of(*profile)] += weight;
    }
    let present_share: f64 = (0..3).filter(|&c| class_weight[c] > 0.0).map(|c| CLASS_SHARES[c]).sum();

    let mut plans = Vec::with_capacity(accounts as usize);
    for index in 0..accounts {
        let profile = profiles[index as usize];
        let class = class_of(profile);
        let share = CLASS_SHARES[class] / present_share * weights[index as usize] / class_weight[class];
        let mut budget_codes = (applied_codes as f64 * share) as u64;
        if profile == Profile::Importer && budget_codes < REPORT_CODES_MIN {
            // Keep the expected total right while never planning a report below the minimum.
            budget_codes = if rng.below(REPORT_CODES_MIN) < budget_codes {
                REPORT_CODES_MIN
            } else {
                0
            };
        }
        let id = account_id(index);
        let partition = partition_of(&id, partitions);
        let (product_count, prefix) = match profile {
            Profile::Factory => (rng.between(3, 12), LOCAL_PREFIX),
            Profile::Producer => (rng.between(2, 6), LOCAL_PREFIX),
            Profile::Importer => (rng.between(1, 5), *rng.pick(&IMPORT_PREFIXES)),
        };
        let products = (0..product_count as u16)
            .map(|item| {
                // Item references are spread so neighbouring products do not look sequential.
                let item_ref = (item * 37 + (index % 7) as u16) % 1_000;
                Product {
                    gtin: gtin(prefix, index % 1_000_000, item_ref),
                    key: product_key(seed, index, item_ref),
                }
            })
            .collect();
        let lines = match profile {
            Profile::Factory => (0..rng.between(2, 4))
                .map(|_| Line {
                    packs_per_minute: rng.between(6_000, 12_000),
                    report_every_ms: rng.between_i64(2_000, 10_000),
                })
                .collect(),
            Profile::Producer => vec![Line {
                packs_per_minute: rng.between(400, 3_000),
                report_every_ms: rng.between_i64(10_000, 60_000),
            }],
            Profile::Importer => Vec::new(),
        };
        let short_share = match profile {
            Profile::Factory => 0.35,
            Profile::Producer => 0.30,
            Profile::Importer => 0.20,
        };
        let funding = if rng.chance(short_share) {
            Funding::Short
        } else {
            Funding::Prepaid
        };
        let channel = rng.weighted(&CHANNEL_WEIGHTS);
        plans.push(AccountPlan {
            index,
            id,
            partition,
            profile,
            funding,
            products,
            lines,
            channel,
            budget_codes,
        });
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::validate::{is_account, is_gtin};
    use std::collections::BTreeSet;

    #[test]
    fn population_has_a_country_shape() {
        // Draws 200 accounts and checks the class counts, unique valid GTINs and ids, and
        // that the budgets add up to about the total with factories the largest.
        let plans = population(1, 200, 1_000_000, 4);
        let count = |profile| plans.iter().filter(|p| p.profile == profile).count();
        assert_eq!(count(Profile::Factory), 6);
        assert_eq!(count(Profile::Producer), 30);
        assert_eq!(count(Profile::Importer), 164);
        let mut gtins = BTreeSet::new();
        for plan in &plans {
            assert!(is_account(&plan.id));
            assert!(plan.partition < 4);
            for product in &plan.products {
                assert!(is_gtin(&product.gtin));
                assert!(gtins.insert(product.gtin.clone()), "GTIN {} repeats", product.gtin);
            }
        }
        let total: u64 = plans.iter().map(|p| p.budget_codes).sum();
        assert!((900_000..=1_100_000).contains(&total), "{total}");
        let largest = plans.iter().max_by_key(|p| p.budget_codes).unwrap();
        assert_eq!(largest.profile, Profile::Factory);
        // One account alone still works.
        assert_eq!(population(1, 1, 1_000, 1)[0].profile, Profile::Factory);
    }
}
