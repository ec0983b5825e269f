//! Records that travel between the dataflow's operators (docs/ARCHITECTURE.md, "The
//! dataflow engine"), the stable hash that routes them to workers, and the dataflow's
//! timestamp ([`Time`]).
//!
//! Each stage's output is its own enum with one variant per edge (e.g.
//! `orders::OrdersOut`), cut into one typed stream per edge by [`edges`]: the graph's
//! types say which stage feeds which, and no stream is always empty.

use crate::event::{Event, Kind};
use crate::money::Money;
use crate::movements::{Movements, SlaCounts};
use crate::output::{Output, Rejection};
use crate::reason::Reason;
use crate::status::Status;
use crate::time::{Period, Ts};
use crate::validate::is_code;
use crate::wording;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::StreamVec;

/// The number of key groups all keyed state is split into (docs/ARCHITECTURE.md, "Key
/// groups"). A worker owns whole groups: every exchange routes by a key's group, and timely
/// sends group `g` to worker `g mod workers`. Fixed for good: a checkpoint's state is
/// reassigned between workers by group, so changing it would strand state. A run has at
/// most this many workers in all (processes × workers per process).
pub const KEY_GROUPS: u64 = 256;

/// FNV-1a 64 of a key: a hash that is the same on every worker, process and run.
pub fn stable_hash(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The key group of a hash: its low bits. With a power-of-two worker count timely routes
/// `group mod workers`, the same worker as the whole hash did before key groups.
pub fn group_of_hash(hash: u64) -> u64 {
    hash % KEY_GROUPS
}

/// The routing value of a key: its key group (see [`KEY_GROUPS`]).
pub fn route(key: &str) -> u64 {
    group_of_hash(stable_hash(key))
}

/// The worker of `workers` that owns key group `group`: the one timely's exchange sends
/// it to.
pub fn worker_of_group(group: u64, workers: usize) -> usize {
    (group % workers.max(1) as u64) as usize
}

/// A code's identity in the dataflow's state: the xxh3-128 fingerprint of its text.
///
/// Code state is keyed by this 16-byte value instead of the ~85-character code, which is
/// what makes a live code cost tens of bytes. Two codes collide with probability about
/// n²/2¹²⁹ (for ten billion codes, under 10⁻¹⁸); xxh3 is specified, so fingerprints are the
/// same on every machine and version.
pub type CodeKey = u128;

/// The fingerprint of a code.
pub fn code_key(code: &str) -> CodeKey {
    xxhash_rust::xxh3::xxh3_128(code.as_bytes())
}

/// A map keyed by code fingerprints. The key is already a uniform hash, so the table uses
/// its high 64 bits as is instead of hashing it again with SipHash (2 % of a run's CPU,
/// BENCHMARKS.md "Profile"). Not the low bits: they pick the worker a code lives on
/// ([`CodesIn::route`]), so on one worker they share a residue and would crowd buckets.
pub type CodeMap<V> = HashMap<CodeKey, V, BuildHasherDefault<FingerprintHasher>>;

/// The [`CodeMap`] hasher: a fingerprint's high half.
#[derive(Clone, Copy, Debug, Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = (key >> 64) as u64;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only fingerprints (`write_u128`) are keys of a `CodeMap`; anything else still
        // hashes, by FNV-1a.
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

pub use crate::time::Time;

/// The dataflow timestamp of an instant.
pub fn time_of(ts: Ts) -> u64 {
    u64::try_from(ts.0).unwrap_or(0)
}

/// The instant of a dataflow timestamp.
pub fn ts_of(time: u64) -> Ts {
    Ts(i64::try_from(time).unwrap_or(i64::MAX))
}

/// An event with its effective time and lateness (DOMAIN.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// When it takes effect.
    pub effective: Ts,
    /// Its `ts` is below its partition's high-water mark − lateness.
    pub late: bool,
    /// The event.
    pub event: Event,
}

impl Placed {
    /// The event's rejection, for one of its codes or (`None`) the whole event.
    pub fn rejection(&self, code: Option<&str>, reason: Reason, detail: String) -> Output {
        let event = &self.event;
        Output::Rejection(Rejection::of_event(
            &event.id,
            event.kind().as_str(),
            &event.account,
            code,
            reason,
            detail,
        ))
    }

    /// Moves each code of this emission or command out of the event into `out`, in order:
    /// a record for the national index carrying `header` (the event's), or the code's
    /// `BAD_CODE` rejection.
    pub fn codes_to_index<O: From<CodeIn> + From<Output>>(&mut self, header: Arc<Header>, out: &mut Vec<O>) {
        for (position, code) in self.event.body.take_codes().into_iter().enumerate() {
            if is_code(&code) {
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                out.push(O::from(CodeIn {
                    header: header.clone(),
                    position,
                    code,
                }));
            } else {
                let detail = wording::bad_code();
                out.push(O::from(self.rejection(Some(&code), Reason::BadCode, detail)));
            }
        }
    }
}

/// What every code of an emission or a command carries about its event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Header {
    /// Effective time (orders held commands the way they were held).
    pub effective: Ts,
    /// The event's kind.
    pub kind: Kind,
    /// The event id.
    pub id: String,
    /// The account.
    pub account: String,
    /// Business time.
    pub ts: Ts,
    /// Late flag.
    pub late: bool,
    /// The product (emissions only).
    pub gtin: String,
}

impl Header {
    /// The header of an event.
    pub fn of(placed: &Placed, gtin: &str) -> Header {
        Header {
            effective: placed.effective,
            kind: placed.event.kind(),
            id: placed.event.id.clone(),
            account: placed.event.account.clone(),
            ts: placed.event.ts,
            late: placed.late,
            gtin: gtin.to_string(),
        }
    }
}

/// One code of an emission or of a command, routed to the national code index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeIn {
    /// Its event.
    pub header: Arc<Header>,
    /// Its place in the event's list.
    pub position: u32,
    /// The code.
    pub code: String,
}

/// Inputs of the national code index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodesIn {
    /// A code of an emission or a command.
    Code(CodeIn),
    /// A code reached a state it can never leave at `at` (fed back from the accounts, the
    /// finality delay later): the index forgets it `retention` after `at`.
    Final {
        /// The code's fingerprint.
        key: CodeKey,
        /// When it became final.
        at: Ts,
        /// The state it can never leave.
        status: Status,
    },
}

impl CodesIn {
    /// The worker hash: the key group of the code's fingerprint, so a code and its finality meet.
    pub fn route(&self) -> u64 {
        match self {
            CodesIn::Code(code) => group_of_hash(code_key(&code.code) as u64),
            CodesIn::Final { key, .. } => group_of_hash(*key as u64),
        }
    }
}

/// What the national code index sends to the code owner's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeOut {
    /// The emission created this code.
    Created(CodeIn),
    /// A command on a code the account owns.
    Command(CodeIn),
    /// A held command whose code the emission `after` just created.
    Resolved {
        /// The emission that created the code.
        after: Arc<Header>,
        /// The held command's code.
        command: CodeIn,
    },
}

/// Inputs of the accounts operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountIn {
    /// A payment, compensation or refund (boxed, as below: a per-code record moves through
    /// every hop, and the enum is as large as its largest variant).
    Event(Box<Placed>),
    /// A tariff, one copy addressed to every worker.
    Tariff {
        /// The worker this copy is for.
        worker: u64,
        /// The tariff event.
        placed: Box<Placed>,
    },
    /// The account's pending orders after this instant's order events.
    Pending {
        /// The account.
        account: String,
        /// Orders neither emitted in full nor cancelled.
        pending: u64,
        /// `ts` of the latest order event that changed it.
        ts: Ts,
    },
    /// A code from the national index.
    Code(CodeOut),
}

impl AccountIn {
    /// The worker hash: tariffs go to the worker they are addressed to, everything else by
    /// account.
    pub fn route(&self) -> u64 {
        match self {
            AccountIn::Tariff { worker, .. } => *worker,
            other => route(other.account()),
        }
    }

    /// The account this input belongs to (`"*"` for tariffs).
    pub fn account(&self) -> &str {
        match self {
            AccountIn::Event(placed) | AccountIn::Tariff { placed, .. } => &placed.event.account,
            AccountIn::Pending { account, .. } => account,
            AccountIn::Code(CodeOut::Created(c) | CodeOut::Command(c)) => &c.header.account,
            AccountIn::Code(CodeOut::Resolved { command, .. }) => &command.header.account,
        }
    }
}

/// A change to period aggregates, routed by `account` (`"*"` for totals and registers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    /// Money moved (reconciliation and turnover; with account `"*"`, the total row).
    Movement {
        /// Account, or `"*"`.
        account: String,
        /// Accounting period.
        period: Period,
        /// What moved.
        movements: Movements,
    },
    /// Codes of one product paid by one settlement (act and product detail).
    Paid {
        /// Account.
        account: String,
        /// Accounting period of the settling event.
        period: Period,
        /// Product.
        gtin: String,
        /// How many.
        count: u64,
        /// Their net prices.
        net: Money,
        /// Their VAT.
        vat: Money,
    },
    /// Codes emitted (product detail).
    Emitted {
        /// Account.
        account: String,
        /// Accounting period.
        period: Period,
        /// Product.
        gtin: String,
        /// How many.
        count: u64,
    },
    /// Codes of one product applied by one application (product detail).
    Applied {
        /// Account.
        account: String,
        /// Accounting period.
        period: Period,
        /// Product.
        gtin: String,
        /// How many.
        count: u64,
        /// The application's `ts`.
        at: Ts,
    },
    /// One payment (register, account `"*"`).
    Payment {
        /// Accounting period.
        period: Period,
        /// Channel.
        channel: String,
        /// Local date of its `ts`, `YYYY-MM-DD`.
        day: String,
        /// Amount.
        amount: Money,
    },
    /// SLA counts change.
    Sla {
        /// Account.
        account: String,
        /// The order's accounting period.
        period: Period,
        /// The change.
        delta: SlaCounts,
    },
    /// The debtors snapshot at the end of `period`.
    Debtor {
        /// Account.
        account: String,
        /// The month that ended.
        period: Period,
        /// Codes in the FIFO queue.
        unpaid_codes: u64,
        /// Their charges.
        amount_owed: Money,
        /// Earliest application `ts` among them.
        oldest: Option<Ts>,
    },
    /// A balance owed back: a dormant advance, or a termination (DOMAIN.md §9).
    RefundDue {
        /// Account.
        account: String,
        /// Period of the instant it fired.
        period: Period,
        /// Balance then.
        balance: Money,
        /// The anchor (dormant), or T (termination).
        since: Ts,
        /// Why.
        reason: crate::output::RefundReason,
    },
    /// An accepted `export` (DOMAIN.md §9), delivered by the aggregates at `at`.
    Export {
        /// Account.
        account: String,
        /// The request's event id.
        export: String,
        /// When the request took effect (deliveries due at one instant go in this order).
        requested: Ts,
        /// The delivery instant.
        at: Ts,
        /// The first period exported (36 months before T's).
        first: Period,
        /// T's period.
        last: Period,
    },
    /// The account was deleted at this instant (DOMAIN.md §9), holding `balance`.
    Deleted {
        /// Account.
        account: String,
        /// The deletion's period.
        period: Period,
        /// The balance forgotten with it (left out of later `"*"` openings).
        balance: Money,
    },
}

impl Fact {
    /// The account this fact is routed by.
    pub fn account(&self) -> &str {
        match self {
            Fact::Payment { .. } => "*",
            Fact::Movement { account, .. }
            | Fact::Paid { account, .. }
            | Fact::Emitted { account, .. }
            | Fact::Applied { account, .. }
            | Fact::Sla { account, .. }
            | Fact::Debtor { account, .. }
            | Fact::RefundDue { account, .. }
            | Fact::Export { account, .. }
            | Fact::Deleted { account, .. } => account,
        }
    }
}

/// A stage's output record: which of the stage's typed edges it goes to.
pub trait Edge {
    /// How many edges the stage has.
    const EDGES: u64;
    /// This record's edge, below [`Edge::EDGES`].
    fn edge(&self) -> u64;
}

/// Cuts a stage's output into one stream per edge, each record moved (not copied) to its
/// edge; the caller takes each edge's records out of the enum ([`take`]).
pub fn edges<'scope, T: Edge + Clone + 'static>(
    stream: StreamVec<'scope, crate::flow::Time, T>,
) -> std::vec::IntoIter<StreamVec<'scope, crate::flow::Time, T>> {
    stream.partition(T::EDGES, |record| (record.edge(), record)).into_iter()
}

/// The records of one edge, out of their stage's enum.
pub fn take<'scope, T: Clone + 'static, U: Clone + 'static>(
    edge: Option<StreamVec<'scope, crate::flow::Time, T>>,
    unwrap: fn(T) -> Option<U>,
) -> StreamVec<'scope, crate::flow::Time, U> {
    edge.expect("one stream per edge").flat_map(unwrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_routes_by_its_group_and_a_worker_owns_whole_groups() {
        // Groups are the stable hash's low bits; with a power-of-two worker count the worker
        // is the one the whole hash picked before key groups (checkpoints keep their owners).
        for key in ["KZ-000000000001", "KZ-940000000001", "", "e-17"] {
            let group = route(key);
            assert!(group < KEY_GROUPS);
            assert_eq!(group, stable_hash(key) % KEY_GROUPS);
            for workers in [1usize, 2, 4, 8, 64] {
                assert_eq!(
                    worker_of_group(group, workers) as u64,
                    stable_hash(key) % workers as u64
                );
            }
        }
        // Every group has one owner among 3 workers, and every worker owns some.
        let owners: std::collections::BTreeSet<usize> = (0..KEY_GROUPS).map(|g| worker_of_group(g, 3)).collect();
        assert_eq!(owners.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 of \"a\"");
    }

    #[test]
    fn per_code_records_stay_small() {
        // Every code of every event moves through the exchanges as one of these: a large
        // variant (an output, a fact, an event) must stay boxed (BENCHMARKS.md "Profile").
        let sizes = [
            ("CodeIn", std::mem::size_of::<CodeIn>(), 40),
            ("CodesIn", std::mem::size_of::<CodesIn>(), 48),
            ("AccountIn", std::mem::size_of::<AccountIn>(), 64),
            ("OrdersOut", std::mem::size_of::<crate::orders::OrdersOut>(), 64),
            ("CommandOut", std::mem::size_of::<crate::commands::CommandOut>(), 64),
            ("IndexOut", std::mem::size_of::<crate::codes::IndexOut>(), 64),
            ("AccountsOut", std::mem::size_of::<crate::accounts::AccountsOut>(), 64),
        ];
        for (name, size, most) in sizes {
            assert!(size <= most, "{name} is {size} bytes, more than {most}");
        }
    }
}
