//! "Aggregates" — period aggregates as differential collections, revised per instant
//! (DOMAIN.md §6, §8; docs/ARCHITECTURE.md, "Periods and aggregates").
//!
//! In: facts at their effective times, from any worker. Out: period records (`rev`, `final`).
//!
//! Two steps:
//! 1. **Deltas.** Every fact becomes `(Slot, Delta)` updates of a differential collection:
//!    the record it changes is the data, the change itself is the *diff* ([`Delta`], a
//!    commutative monoid: sums, and min/max for product detail's application times). The
//!    updates are consolidated within each batch before the exchange (the `"*"` total row,
//!    fed by the movements of every account, and the payment register cross workers as one
//!    update per record and batch), then arranged by account, so that each record's changes
//!    of one instant arrive as one consolidated diff, put back at their own instant. Nothing
//!    keeps the arrangement's trace, so it retains only updates whose instant the watermark
//!    has not passed yet: its memory is what is in flight, never the history.
//! 2. **Revisions** ([`Revisions`], a [`Machine`] on the same worker): adds each instant's
//!    diffs to the running figures of the open periods, derives reconciliation and turnover
//!    rows from money movements per (account, period) (an opening is every earlier period's
//!    movements; each month the watermark enters carries every balance into it), gives every
//!    record whose figures changed in the instant one new revision, and at a period's close
//!    instant gives each of its records the revision with `final: true` and then *forgets*
//!    the period: its figures and revisions are dropped and its movements folded into one
//!    carried opening per account. State therefore covers the open periods (two or three
//!    months) plus one balance per account with money, however long the run.
//!
//! Guarantees: the records, revisions and `final` flags are those of the reference engine
//! (tests/tests/equivalence.rs), whatever the worker count or batching; time-driven revisions
//! (month start carry-forward, close) come from the frontier only, never from a wall clock,
//! and nothing after the run's `end` fires; a closed period never changes (asserted: a fact
//! for a closed period panics instead of reopening it).

use crate::driver::{run_machine, Drive};
use crate::flow::Time;
use crate::flow::{route, time_of, ts_of, Fact};
use crate::machine::Machine;
use crate::money::Money;
use crate::movements::{Movements, SlaCounts};
use crate::output::{
    AggregateKind, Deletion, ExportItem, ExportLine, Figures, Output, PeriodKey, PeriodRecord, RefundReason,
};
use crate::time::{Period, Ts};
use differential_dataflow::consolidation::ConsolidatingContainerBuilder;
use differential_dataflow::difference::{IsZero, Monoid, Semigroup};
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::implementations::{KeyBatcher, KeySpine};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

/// Which record of an account and period a [`Delta`] changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum What {
    /// Money moved: the reconciliation and turnover rows derive from it.
    Movement,
    /// Act of completed work.
    Act,
    /// Product detail of a GTIN.
    Product(String),
    /// Payment register row: a channel, or `channel/YYYY-MM-DD`.
    Payments(String),
    /// Emission SLA.
    Sla,
    /// Debtors snapshot.
    Debtors,
    /// A balance owed back (dormant advance, termination).
    RefundDue,
    /// An export request, by its event id (DOMAIN.md §9).
    Export(String),
    /// The account's deletion (DOMAIN.md §9).
    Deleted,
    /// A deleted account's balance, left out of later `"*"` openings (account `"*"`).
    Forgotten,
}

/// The data of the aggregate collection: a record's account (the worker it lives on),
/// period and kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    /// Account, or `"*"` for totals and registers.
    pub account: String,
    /// Accounting period.
    pub period: Period,
    /// Which record.
    pub what: What,
}

/// A change to one record, carried as the diff of the aggregate collection.
///
/// Adding two deltas of one record is commutative and associative, so consolidation may
/// add them in any order. Snapshots (debtors, dormant advance) are set rather than added:
/// each is produced once per record, and two at one instant keep the larger, so that even
/// then the sum does not depend on order. Product detail's application times are a min and
/// a max, which cannot be negated: facts are never retracted, so the collection needs no
/// negation ([`Monoid`], not `Abelian`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Delta {
    /// No change (the monoid's zero).
    Zero,
    /// Money moved.
    Movement(Movements),
    /// Codes paid, their net and VAT.
    Act {
        /// Codes paid.
        codes: i64,
        /// Net amount.
        net: Money,
        /// VAT.
        vat: Money,
    },
    /// Codes emitted, applied, paid, and the application times seen.
    Product {
        /// Codes emitted.
        emitted: i64,
        /// Codes applied.
        applied: i64,
        /// Codes paid.
        paid: i64,
        /// Earliest application `ts`.
        first: Option<Ts>,
        /// Latest application `ts`.
        last: Option<Ts>,
    },
    /// Payments counted and summed.
    Payments {
        /// Number of payments.
        count: i64,
        /// Their sum.
        amount: Money,
    },
    /// [orders, emitted_within_4h, late, pending].
    Sla(SlaCounts),
    /// A debtors snapshot (set, not added).
    Debtor {
        /// Codes in the FIFO queue.
        unpaid_codes: u64,
        /// Their charges.
        amount_owed: Money,
        /// Earliest application `ts` among them.
        oldest: Option<Ts>,
    },
    /// A balance owed back (set, not added; a termination's replaces a dormant advance's).
    RefundDue {
        /// Balance then.
        balance: Money,
        /// The anchor, or T.
        since: Ts,
        /// Why.
        reason: RefundReason,
    },
    /// An export request (set: one per request id).
    Export {
        /// When the request took effect.
        requested: Ts,
        /// The delivery instant.
        at: Ts,
        /// The first period exported.
        first: Period,
        /// The last (T's).
        last: Period,
    },
    /// The account's deletion (set).
    Deleted,
    /// Balances of deleted accounts (added).
    Forgotten(Money),
}

fn min_ts(a: Option<Ts>, b: Option<Ts>) -> Option<Ts> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl IsZero for Delta {
    fn is_zero(&self) -> bool {
        match self {
            Delta::Zero => true,
            Delta::Movement(m) => m.is_zero(),
            Delta::Act { codes, net, vat } => *codes == 0 && net.is_zero() && vat.is_zero(),
            Delta::Product {
                emitted,
                applied,
                paid,
                first,
                last,
            } => *emitted == 0 && *applied == 0 && *paid == 0 && first.is_none() && last.is_none(),
            Delta::Payments { count, amount } => *count == 0 && amount.is_zero(),
            Delta::Sla(n) => n.is_zero(),
            Delta::Forgotten(amount) => amount.is_zero(),
            Delta::Debtor { .. } | Delta::RefundDue { .. } | Delta::Export { .. } | Delta::Deleted => false,
        }
    }
}

impl Semigroup for Delta {
    fn plus_equals(&mut self, rhs: &Self) {
        match (&mut *self, rhs) {
            (_, Delta::Zero) => {}
            (Delta::Zero, rhs) => *self = rhs.clone(),
            (Delta::Movement(a), Delta::Movement(b)) => a.add(b),
            (
                Delta::Act { codes, net, vat },
                Delta::Act {
                    codes: c,
                    net: n,
                    vat: v,
                },
            ) => {
                *codes += c;
                *net += n;
                *vat += v;
            }
            (
                Delta::Product {
                    emitted,
                    applied,
                    paid,
                    first,
                    last,
                },
                Delta::Product {
                    emitted: e,
                    applied: a,
                    paid: p,
                    first: f,
                    last: l,
                },
            ) => {
                *emitted += e;
                *applied += a;
                *paid += p;
                *first = min_ts(*first, *f);
                *last = (*last).max(*l);
            }
            (Delta::Payments { count, amount }, Delta::Payments { count: c, amount: a }) => {
                *count += c;
                *amount += a;
            }
            (Delta::Sla(a), Delta::Sla(b)) => a.add(b),
            (Delta::Forgotten(a), Delta::Forgotten(b)) => *a += *b,
            // A termination's refund due replaces a dormant advance's of the period
            // (DOMAIN.md §9), whatever the order they are added in.
            (this @ Delta::RefundDue { .. }, rhs @ Delta::RefundDue { .. }) => {
                let reason = |delta: &Delta| match delta {
                    Delta::RefundDue { reason, .. } => *reason,
                    _ => unreachable!("matched"),
                };
                if (reason(rhs), rhs) > (reason(this), &*this) {
                    *this = rhs.clone();
                }
            }
            (this @ Delta::Debtor { .. }, rhs @ Delta::Debtor { .. })
            | (this @ Delta::Export { .. }, rhs @ Delta::Export { .. })
            | (this @ Delta::Deleted, rhs @ Delta::Deleted) => {
                if *rhs > *this {
                    *this = rhs.clone();
                }
            }
            (this, rhs) => panic!("deltas of different kinds for one record: {this:?} + {rhs:?}"),
        }
    }
}

impl Monoid for Delta {
    fn zero() -> Self {
        Delta::Zero
    }
}

fn signed(count: u64) -> i64 {
    i64::try_from(count).expect("a count fits in i64")
}

/// The updates one fact makes to the aggregate collection.
pub fn deltas(fact: Fact) -> Vec<(Slot, Delta)> {
    let slot = |account: String, period: Period, what: What| Slot { account, period, what };
    match fact {
        Fact::Movement {
            account,
            period,
            movements,
        } => vec![(slot(account, period, What::Movement), Delta::Movement(movements))],
        Fact::Paid {
            account,
            period,
            gtin,
            count,
            net,
            vat,
        } => {
            let paid = Delta::Product {
                emitted: 0,
                applied: 0,
                paid: signed(count),
                first: None,
                last: None,
            };
            let act = Delta::Act {
                codes: signed(count),
                net,
                vat,
            };
            vec![
                (slot(account.clone(), period, What::Act), act),
                (slot(account, period, What::Product(gtin)), paid),
            ]
        }
        Fact::Emitted {
            account,
            period,
            gtin,
            count,
        } => {
            let delta = Delta::Product {
                emitted: signed(count),
                applied: 0,
                paid: 0,
                first: None,
                last: None,
            };
            vec![(slot(account, period, What::Product(gtin)), delta)]
        }
        Fact::Applied {
            account,
            period,
            gtin,
            count,
            at,
        } => {
            let delta = Delta::Product {
                emitted: 0,
                applied: signed(count),
                paid: 0,
                first: Some(at),
                last: Some(at),
            };
            vec![(slot(account, period, What::Product(gtin)), delta)]
        }
        Fact::Payment {
            period,
            channel,
            day,
            amount,
        } => {
            let delta = Delta::Payments { count: 1, amount };
            let day = format!("{channel}/{day}");
            vec![
                (slot("*".into(), period, What::Payments(channel)), delta.clone()),
                (slot("*".into(), period, What::Payments(day)), delta),
            ]
        }
        Fact::Sla { account, period, delta } => vec![(slot(account, period, What::Sla), Delta::Sla(delta))],
        Fact::Debtor {
            account,
            period,
            unpaid_codes,
            amount_owed,
            oldest,
        } => {
            let delta = Delta::Debtor {
                unpaid_codes,
                amount_owed,
                oldest,
            };
            vec![(slot(account, period, What::Debtors), delta)]
        }
        Fact::RefundDue {
            account,
            period,
            balance,
            since,
            reason,
        } => vec![(
            slot(account, period, What::RefundDue),
            Delta::RefundDue { balance, since, reason },
        )],
        Fact::Export {
            account,
            export,
            requested,
            at,
            first,
            last,
        } => vec![(
            slot(account, requested.period(), What::Export(export)),
            Delta::Export {
                requested,
                at,
                first,
                last,
            },
        )],
        Fact::Deleted {
            account,
            period,
            balance,
        } => {
            let mut updates = vec![(slot(account, period, What::Deleted), Delta::Deleted)];
            if !balance.is_zero() {
                let forgotten = Delta::Forgotten(balance);
                updates.push((slot("*".to_string(), period, What::Forgotten), forgotten));
            }
            updates
        }
    }
}

/// Period aggregates of `facts` as revisions (see the module docs). `end` is where a file
/// run's watermark stops: no revision after it.
pub fn aggregates<'s>(
    facts: StreamVec<'s, Time, Fact>,
    close_after_days: u32,
    drive: &Drive,
) -> StreamVec<'s, Time, Output> {
    type Update = ((Slot, ()), Time, Delta);
    // explode + consolidate within the batch, before anything crosses workers.
    let updates = facts.unary::<ConsolidatingContainerBuilder<Vec<Update>>, _, _, _>(
        Pipeline,
        "Aggregates: facts as deltas",
        |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let time = *cap.least().expect("a stamp has a time");
                    let mut session = output.session_with_builder(&cap);
                    for fact in data.drain(..) {
                        for (slot, delta) in deltas(fact) {
                            session.give(((slot, ()), time, delta));
                        }
                    }
                });
            }
        },
    );
    // One consolidated diff per record and instant, on the worker of the record's account.
    // The trace handle is dropped at once, so the trace keeps nothing completed.
    let consolidated = arrange_core::<_, _, KeyBatcher<Slot, Time, Delta>, KeySpine<Slot, Time, Delta>>(
        updates,
        Exchange::new(|update: &Update| route(&update.0 .0.account)),
        "Aggregates: consolidate by account",
        KeyBatcher::new,
    )
    .as_collection(|slot, &()| slot.clone())
    .inner;
    // A batch covers every instant its frontier step completed and travels at the first of
    // them: put each update back at its own instant, which is what the machine steps by.
    let consolidated = consolidated.unary::<CapacityContainerBuilder<Vec<(Slot, Delta)>>, _, _, _>(
        Pipeline,
        "Aggregates: at their instants",
        |_cap, _info| {
            move |input, output| {
                let port = output.output_index();
                input.for_each(|cap, data| {
                    data.sort_by_key(|(_, time, _)| *time);
                    let mut updates = data.drain(..).peekable();
                    while let Some((_, time, _)) = updates.peek() {
                        let time = *time;
                        let at = cap.delayed(&time, port);
                        let mut session = output.session(&at);
                        while let Some((slot, _, delta)) = updates.next_if(|(_, t, _)| *t == time) {
                            session.give((slot, delta));
                        }
                    }
                });
            }
        },
    );
    run_machine(consolidated, Pipeline, Revisions::new(close_after_days), drive)
}

/// Time-driven changes, in the order they apply at one instant (DOMAIN.md §9: deliveries
/// after the other time-driven changes; deletions come as inputs, after the timers).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Timer {
    MonthStart(Period),
    Close(Period),
    /// An export delivery, in the order the requests took effect.
    Deliver {
        requested: Ts,
        export: String,
        account: String,
        first: Period,
        last: Period,
    },
}

/// What DOMAIN.md §9 needs of an account's closed periods: its final records of the last
/// 37 months it had records in (an export covers T's month and the 36 before it), and the
/// last `rev` of every older key it ever had (its deletion covers every key).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct History {
    kept: BTreeMap<PeriodKey, PeriodRecord>,
    older: BTreeMap<PeriodKey, u64>,
}

/// Months of final records kept per account: T's and the 36 before it.
const KEPT_MONTHS: u32 = crate::rules::EXPORT_MONTHS_BEFORE + 1;

/// An account's money: the closed periods folded into one balance, and each open period's
/// movements.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Money4 {
    carried: Money,
    open: BTreeMap<Period, Movements>,
}

/// The revision step of one worker's accounts: running figures and last revisions of the
/// open periods (see the module docs).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Revisions {
    close_after_days: u32,
    /// Running figures of the added and set kinds, open periods only.
    figures: BTreeMap<PeriodKey, Figures>,
    /// Money per account (accounts whose balance is zero and have no open movements are
    /// dropped: all their rows would be zero).
    money: BTreeMap<String, Money4>,
    /// The last revision of each record of an open period.
    emitted: BTreeMap<PeriodKey, (u64, Figures)>,
    /// The records of each open period with state (figures or a revision).
    by_period: BTreeMap<Period, BTreeSet<PeriodKey>>,
    dirty: BTreeSet<PeriodKey>,
    current: Option<Period>,
    timers: BTreeSet<(Ts, Timer)>,
    /// Final records of closed periods and older keys, per account (DOMAIN.md §9).
    history: BTreeMap<String, History>,
    /// Balances forgotten with deleted accounts, by the deletion's open period (folded into
    /// the `"*"` carried balance at its close).
    forgotten: BTreeMap<Period, Money>,
}

fn key(kind: AggregateKind, account: &str, period: Period, sub: Option<String>) -> PeriodKey {
    PeriodKey {
        kind,
        account: account.to_string(),
        period,
        sub,
    }
}

fn zero(kind: AggregateKind) -> Figures {
    match kind {
        AggregateKind::Act => Figures::Act {
            codes_paid: 0,
            net: Money::ZERO,
            vat: Money::ZERO,
            gross: Money::ZERO,
        },
        AggregateKind::Product => Figures::Product {
            codes_emitted: 0,
            codes_applied: 0,
            codes_paid: 0,
            first_application: None,
            last_application: None,
        },
        AggregateKind::Payments => Figures::Payments {
            count: 0,
            amount: Money::ZERO,
        },
        AggregateKind::Sla => Figures::Sla {
            orders: 0,
            emitted_within_4h: 0,
            late: 0,
            pending: 0,
        },
        _ => unreachable!("set whole, or derived from movements"),
    }
}

fn add_count(count: &mut u64, delta: i64) {
    *count = count
        .checked_add_signed(delta)
        .expect("a counter never goes below zero");
}

/// Adds an added-kind delta to its record's figures.
fn add(figures: &mut Figures, delta: &Delta) {
    match (figures, delta) {
        (
            Figures::Act {
                codes_paid,
                net,
                vat,
                gross,
            },
            Delta::Act { codes, net: n, vat: v },
        ) => {
            add_count(codes_paid, *codes);
            *net += *n;
            *vat += *v;
            *gross += *n + *v;
        }
        (
            Figures::Product {
                codes_emitted,
                codes_applied,
                codes_paid,
                first_application,
                last_application,
            },
            Delta::Product {
                emitted,
                applied,
                paid,
                first,
                last,
            },
        ) => {
            add_count(codes_emitted, *emitted);
            add_count(codes_applied, *applied);
            add_count(codes_paid, *paid);
            *first_application = min_ts(*first_application, *first);
            *last_application = (*last_application).max(*last);
        }
        (Figures::Payments { count, amount }, Delta::Payments { count: c, amount: a }) => {
            add_count(count, *c);
            *amount += *a;
        }
        (
            Figures::Sla {
                orders,
                emitted_within_4h,
                late,
                pending,
            },
            Delta::Sla(d),
        ) => {
            add_count(orders, d.orders);
            add_count(emitted_within_4h, d.emitted_within_4h);
            add_count(late, d.late);
            add_count(pending, d.pending);
        }
        (figures, delta) => unreachable!("{delta:?} does not add to {figures:?}"),
    }
}

impl Revisions {
    /// No aggregates yet.
    pub fn new(close_after_days: u32) -> Revisions {
        Revisions {
            close_after_days,
            figures: BTreeMap::new(),
            money: BTreeMap::new(),
            emitted: BTreeMap::new(),
            by_period: BTreeMap::new(),
            dirty: BTreeSet::new(),
            current: None,
            timers: BTreeSet::new(),
            history: BTreeMap::new(),
            forgotten: BTreeMap::new(),
        }
    }

    /// How many entries the state holds: records with figures or a revision, and money
    /// rows (carried balances and open periods' movements). Closed periods contribute
    /// nothing but one carried balance per account.
    pub fn state_len(&self) -> usize {
        self.figures.len()
            + self.emitted.len()
            + self.money.values().map(|m| 1 + m.open.len()).sum::<usize>()
            + self.by_period.values().map(BTreeSet::len).sum::<usize>()
    }

    /// The periods that still hold state (open periods).
    pub fn periods_held(&self) -> Vec<Period> {
        let mut periods: BTreeSet<Period> = self.by_period.keys().copied().collect();
        periods.extend(self.money.values().flat_map(|m| m.open.keys().copied()));
        periods.into_iter().collect()
    }

    fn closed(&self, period: Period, now: Ts) -> bool {
        period.close_instant(self.close_after_days) <= now
    }

    /// Keeps `record` as state of its period, which then needs its close.
    fn hold(&mut self, record: &PeriodKey, now: Ts) {
        let records = self.by_period.entry(record.period).or_default();
        if !records.contains(record) {
            records.insert(record.clone());
            self.schedule_close(record.period, now);
        }
    }

    fn schedule_close(&mut self, period: Period, now: Ts) {
        let close = period.close_instant(self.close_after_days);
        if close > now {
            self.timers.insert((close, Timer::Close(period)));
        }
    }

    fn mark(&mut self, record: PeriodKey, now: Ts) {
        assert!(
            !self.closed(record.period, now),
            "closed period changed: {}",
            record.render()
        );
        self.dirty.insert(record);
    }

    fn money_rows(&mut self, account: &str, period: Period, now: Ts) {
        if account != "*" {
            self.mark(key(AggregateKind::Reconciliation, account, period, None), now);
        }
        self.mark(key(AggregateKind::Turnover, account, period, None), now);
    }

    fn apply(&mut self, slot: Slot, delta: Delta, now: Ts) {
        let Slot { account, period, what } = slot;
        let (kind, sub) = match what {
            What::Movement => {
                let Delta::Movement(movements) = delta else {
                    unreachable!("a movement slot carries movements")
                };
                assert!(
                    !self.closed(period, now),
                    "closed period changed: money of {account}/{period}"
                );
                let row = self
                    .money
                    .entry(account.clone())
                    .or_default()
                    .open
                    .entry(period)
                    .or_default();
                row.add(&movements);
                self.schedule_close(period, now);
                // This period changes, and the opening of every later one up to now.
                let last = self.current.unwrap_or(period).max(period);
                let mut p = period;
                loop {
                    self.money_rows(&account, p, now);
                    if p >= last {
                        break;
                    }
                    p = p.next();
                }
                return;
            }
            What::Act => (AggregateKind::Act, None),
            What::Product(gtin) => (AggregateKind::Product, Some(gtin)),
            What::Payments(sub) => (AggregateKind::Payments, Some(sub)),
            What::Sla => (AggregateKind::Sla, None),
            What::Debtors => (AggregateKind::Debtors, None),
            What::RefundDue => (AggregateKind::RefundDue, None),
            What::Export(export) => {
                let Delta::Export {
                    requested,
                    at,
                    first,
                    last,
                } = delta
                else {
                    unreachable!("an export slot carries an export")
                };
                let deliver = Timer::Deliver {
                    requested,
                    export,
                    account,
                    first,
                    last,
                };
                self.timers.insert((at.max(now), deliver));
                return;
            }
            What::Forgotten => {
                let Delta::Forgotten(amount) = delta else {
                    unreachable!("a forgotten slot carries an amount")
                };
                *self.forgotten.entry(period).or_default() += amount;
                return;
            }
            What::Deleted => unreachable!("deletions are applied before the other inputs"),
        };
        let record = key(kind, &account, period, sub);
        match delta {
            Delta::Debtor {
                unpaid_codes,
                amount_owed,
                oldest,
            } => {
                let figures = Figures::Debtors {
                    unpaid_codes,
                    amount_owed,
                    oldest_unpaid_application: oldest,
                };
                self.figures.insert(record.clone(), figures);
            }
            Delta::RefundDue { balance, since, reason } => {
                self.figures
                    .insert(record.clone(), Figures::RefundDue { balance, since, reason });
            }
            delta => {
                let figures = self.figures.entry(record.clone()).or_insert_with(|| zero(kind));
                add(figures, &delta);
            }
        }
        self.hold(&record, now);
        self.mark(record, now);
    }

    fn figures_of(&self, record: &PeriodKey) -> Figures {
        if !matches!(record.kind, AggregateKind::Reconciliation | AggregateKind::Turnover) {
            return self.figures.get(record).cloned().unwrap_or_else(|| zero(record.kind));
        }
        let money = self.money.get(&record.account);
        let mut opening = money.map_or(Money::ZERO, |money| {
            money.carried + money.open.range(..record.period).map(|(_, m)| m.net()).sum::<Money>()
        });
        if record.account == "*" {
            opening -= self.forgotten.range(..record.period).map(|(_, m)| *m).sum::<Money>();
        }
        let m = money
            .and_then(|money| money.open.get(&record.period))
            .copied()
            .unwrap_or_default();
        let closing = opening + m.net();
        if record.kind == AggregateKind::Reconciliation {
            Figures::Reconciliation {
                opening,
                payments: m.payments,
                compensations: m.compensations,
                services: m.services,
                refunds: m.refunds,
                closing,
            }
        } else {
            Figures::Turnover {
                opening,
                charged: m.services,
                paid: m.payments,
                compensations: m.compensations,
                refunds: m.refunds,
                closing,
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Output>, now: Ts) {
        for record in std::mem::take(&mut self.dirty) {
            let figures = self.figures_of(&record);
            let rev = match self.emitted.get(&record) {
                None if figures.is_zero() => continue,
                None => 1,
                Some((_, last)) if *last == figures => continue,
                Some((rev, _)) => rev + 1,
            };
            self.hold(&record, now);
            self.emitted.insert(record.clone(), (rev, figures.clone()));
            out.push(Output::Period(PeriodRecord {
                key: record,
                rev,
                is_final: false,
                figures,
            }));
        }
    }

    /// The close of `period`: the final revision of each of its records, then its state is
    /// dropped and its movements folded into the carried balances.
    fn close(&mut self, period: Period, out: &mut Vec<Output>) {
        let mut finals: Vec<PeriodRecord> = Vec::new();
        for record in self.by_period.remove(&period).unwrap_or_default() {
            if let Some((rev, _)) = self.emitted.remove(&record) {
                let figures = self.figures_of(&record);
                let record = PeriodRecord {
                    key: record.clone(),
                    rev: rev + 1,
                    is_final: true,
                    figures,
                };
                out.push(Output::Period(record.clone()));
                if record.key.account != "*" {
                    finals.push(record);
                }
            }
            self.figures.remove(&record);
        }
        self.keep(period, finals);
        let forgotten: Money = {
            let later = self.forgotten.split_off(&period.next());
            std::mem::replace(&mut self.forgotten, later).values().copied().sum()
        };
        if !forgotten.is_zero() {
            self.money.entry("*".to_string()).or_default().carried -= forgotten;
        }
        self.money.retain(|_, money| {
            let later = money.open.split_off(&period.next());
            for m in std::mem::replace(&mut money.open, later).values() {
                money.carried += m.net();
            }
            !(money.carried.is_zero() && money.open.is_empty())
        });
    }
}

impl Revisions {
    /// Keeps the final records of `period` (closed now) for exports and deletions; an
    /// account's records older than the 37 months before `period` keep only their `rev`.
    fn keep(&mut self, period: Period, finals: Vec<PeriodRecord>) {
        let mut oldest = period;
        for _ in 1..KEPT_MONTHS {
            oldest = oldest.prev();
        }
        let mut accounts = BTreeSet::new();
        for record in finals {
            let history = self.history.entry(record.key.account.clone()).or_default();
            accounts.insert(record.key.account.clone());
            history.kept.insert(record.key.clone(), record);
        }
        for account in accounts {
            let history = self.history.get_mut(&account).expect("just kept");
            let old: Vec<PeriodKey> = history.kept.keys().filter(|key| key.period < oldest).cloned().collect();
            for key in old {
                let record = history.kept.remove(&key).expect("listed");
                history.older.insert(key, record.rev);
            }
        }
    }

    /// An export delivery at `now` (DOMAIN.md §9): the account's final records of
    /// `first..=last` in export order, then the closing line.
    fn deliver(&self, timer: Timer, now: Ts, out: &mut Vec<Output>) {
        let Timer::Deliver {
            export,
            account,
            first,
            last,
            ..
        } = timer
        else {
            unreachable!("a delivery")
        };
        let mut records: Vec<&PeriodRecord> = self
            .history
            .get(&account)
            .map(|history| {
                history
                    .kept
                    .values()
                    .filter(|record| record.key.period >= first && record.key.period <= last)
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by(|a, b| crate::rules::export_order(&a.key, &b.key));
        let count = records.len() as u64;
        for (index, record) in records.into_iter().enumerate() {
            out.push(Output::Export(ExportLine {
                export: export.clone(),
                account: account.clone(),
                ts: now,
                item: ExportItem::Record {
                    seq: index as u64 + 1,
                    record: record.clone(),
                },
            }));
        }
        out.push(Output::Export(ExportLine {
            export,
            account,
            ts: now,
            item: ExportItem::Complete { records: count },
        }));
    }

    /// The deletion of `account` at `now` (DOMAIN.md §9): its pending revisions, then a
    /// deletion for every period key it ever had (with the next `rev`); everything of it
    /// is forgotten. Its share of the `"*"` rows stays (its balance is left out of later
    /// openings by the [`What::Forgotten`] update the same fact made).
    fn delete(&mut self, account: &str, now: Ts, out: &mut Vec<Output>) {
        let (mine, others): (BTreeSet<PeriodKey>, BTreeSet<PeriodKey>) = std::mem::take(&mut self.dirty)
            .into_iter()
            .partition(|k| k.account == account);
        self.dirty = mine;
        self.flush(out, now);
        self.dirty = others;
        let mut keys: BTreeMap<PeriodKey, u64> = BTreeMap::new();
        if let Some(history) = self.history.remove(account) {
            keys.extend(history.older);
            keys.extend(history.kept.into_iter().map(|(key, record)| (key, record.rev)));
        }
        let open: Vec<PeriodKey> = self.emitted.keys().filter(|k| k.account == account).cloned().collect();
        for key in open {
            let (rev, _) = self.emitted.remove(&key).expect("listed");
            keys.insert(key, rev);
        }
        self.figures.retain(|k, _| k.account != account);
        for records in self.by_period.values_mut() {
            records.retain(|k| k.account != account);
        }
        self.money.remove(account);
        for (key, rev) in keys {
            out.push(Output::Deleted(Deletion::Period { key, rev: rev + 1 }));
        }
    }

    /// Fires the deliveries due at or before `now` that inputs of `now` scheduled.
    fn deliver_due(&mut self, now: Ts, out: &mut Vec<Output>) {
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            let (_, timer) = self.timers.pop_first().expect("peeked");
            debug_assert!(
                matches!(timer, Timer::Deliver { .. }),
                "only deliveries are set for now"
            );
            if matches!(timer, Timer::Deliver { .. }) {
                self.deliver(timer, now, out);
            }
        }
    }
}

impl crate::machine::Durable for Revisions {
    fn keep_configuration(&mut self, restored: &mut Revisions) {
        restored.close_after_days = self.close_after_days;
    }

    /// Records, money, history and deliveries by their account's key group (`"*"`, the
    /// totals and registers, is one account like the others, and so are the balances
    /// forgotten into its carried balance). The month's clock and the close timers are the
    /// worker's: kept whole (a close with nothing of its period left does nothing).
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool) {
        let mine = |account: &str| owned(route(account));
        self.figures.retain(|key, _| mine(&key.account));
        self.money.retain(|account, _| mine(account));
        self.emitted.retain(|key, _| mine(&key.account));
        for keys in self.by_period.values_mut() {
            keys.retain(|key| mine(&key.account));
        }
        self.by_period.retain(|_, keys| !keys.is_empty());
        self.dirty.retain(|key| mine(&key.account));
        self.timers.retain(|(_, timer)| match timer {
            Timer::Deliver { account, .. } => mine(account),
            Timer::MonthStart(_) | Timer::Close(_) => true,
        });
        self.history.retain(|account, _| mine(account));
        if !mine("*") {
            self.forgotten.clear();
        }
    }

    fn absorb(&mut self, other: Revisions) {
        self.figures.extend(other.figures);
        self.money.extend(other.money);
        self.emitted.extend(other.emitted);
        for (period, keys) in other.by_period {
            self.by_period.entry(period).or_default().extend(keys);
        }
        self.dirty.extend(other.dirty);
        self.current = self.current.max(other.current);
        self.timers.extend(other.timers);
        self.history.extend(other.history);
        for (period, amount) in other.forgotten {
            *self.forgotten.entry(period).or_default() += amount;
        }
    }
}

impl Machine for Revisions {
    const NAME: &'static str = "Aggregates: revisions";
    type In = (Slot, Delta);
    type Out = Output;

    fn step(&mut self, now: Time, inputs: Vec<(Slot, Delta)>, out: &mut Vec<Output>) {
        let now = ts_of(now);
        if self.current.is_none() {
            let period = now.period();
            self.current = Some(period);
            self.timers.insert((period.end(), Timer::MonthStart(period.next())));
        }
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            match self.timers.pop_first().expect("peeked").1 {
                Timer::MonthStart(period) => {
                    self.current = Some(period);
                    let accounts: Vec<String> = self.money.keys().cloned().collect();
                    for account in accounts {
                        self.money_rows(&account, period, now);
                    }
                    self.timers.insert((period.end(), Timer::MonthStart(period.next())));
                }
                Timer::Close(period) => {
                    debug_assert!(self.dirty.iter().all(|record| record.period > period));
                    self.close(period, out);
                }
                timer @ Timer::Deliver { .. } => self.deliver(timer, now, out),
            }
        }
        // Deletions at D come after D's timers (deliveries included) and before its other
        // changes (DOMAIN.md §9).
        let (deletions, inputs): (Vec<_>, Vec<_>) =
            inputs.into_iter().partition(|(slot, _)| slot.what == What::Deleted);
        for (slot, _) in deletions {
            self.delete(&slot.account, now, out);
        }
        // Consolidated: at most one delta per record and instant, in no particular order.
        for (slot, delta) in inputs {
            self.apply(slot, delta, now);
        }
        self.flush(out, now);
        // An export taking effect after its termination's period closed is delivered now.
        self.deliver_due(now, out);
    }

    fn next_timer(&self) -> Option<Time> {
        self.timers.first().map(|(at, _)| time_of(*at))
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<Output>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::{Input, Probe};
    use timely::dataflow::ProbeHandle;

    fn ts(text: &str) -> Ts {
        Ts::parse_rfc3339(text).expect("test ts")
    }

    fn money(text: &str) -> Money {
        text.parse().expect("test amount")
    }

    fn payment(account: &str, period: Period, amount: &str) -> Fact {
        Fact::Movement {
            account: account.into(),
            period,
            movements: Movements::payment(money(amount)),
        }
    }

    fn records(outputs: &[(Time, Output)]) -> Vec<(Ts, String, u64, bool)> {
        outputs
            .iter()
            .filter_map(|(time, output)| match output {
                Output::Period(p) => Some((ts_of(*time), p.key.render(), p.rev, p.is_final)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn deltas_add_in_any_order() {
        let a = Delta::Product {
            emitted: 2,
            applied: 0,
            paid: 0,
            first: None,
            last: None,
        };
        let b = Delta::Product {
            emitted: 0,
            applied: 1,
            paid: 0,
            first: Some(Ts(5)),
            last: Some(Ts(5)),
        };
        let c = Delta::Product {
            emitted: 0,
            applied: 3,
            paid: 1,
            first: Some(Ts(3)),
            last: Some(Ts(4)),
        };
        let mut left = Delta::zero();
        for d in [&a, &b, &c] {
            left.plus_equals(d);
        }
        let mut right = c.clone();
        for d in [&b, &a] {
            right.plus_equals(d);
        }
        assert_eq!(left, right);
        assert_eq!(
            left,
            Delta::Product {
                emitted: 2,
                applied: 4,
                paid: 1,
                first: Some(Ts(3)),
                last: Some(Ts(5)),
            }
        );
        let one = SlaCounts {
            orders: 1,
            ..SlaCounts::default()
        };
        let minus_one = SlaCounts {
            orders: -1,
            ..SlaCounts::default()
        };
        assert!(Delta::Sla(one).plus_equals_then(&Delta::Sla(minus_one)).is_zero());
    }

    trait PlusThen {
        fn plus_equals_then(self, rhs: &Delta) -> Delta;
    }

    impl PlusThen for Delta {
        fn plus_equals_then(mut self, rhs: &Delta) -> Delta {
            self.plus_equals(rhs);
            self
        }
    }

    /// Facts across January's close (2026-02-08T00:00+05:00 with 7 days): the final
    /// revisions come at the close instant, nothing of January after it, and January's state
    /// is released (its money folded into one carried balance).
    #[test]
    fn a_closed_period_is_final_and_forgotten() {
        let jan = Period::new(2026, 1);
        let feb = Period::new(2026, 2);
        let close = jan.close_instant(7);
        assert_eq!(close, ts("2026-02-08T00:00:00+05:00"));
        let mut machine = Revisions::new(7);
        let mut out = Vec::new();
        let step = |machine: &mut Revisions, at: Ts, facts: Vec<Fact>, out: &mut Vec<(Time, Output)>| {
            let inputs = facts.into_iter().flat_map(deltas).collect();
            let mut produced = Vec::new();
            machine.step(time_of(at), inputs, &mut produced);
            out.extend(produced.into_iter().map(|o| (time_of(at), o)));
        };
        let sla = |delta| Fact::Sla {
            account: "A".into(),
            period: jan,
            delta,
        };
        step(
            &mut machine,
            ts("2026-01-10T10:00:00+05:00"),
            vec![payment("A", jan, "100.00"), sla(SlaCounts::PLACED)],
            &mut out,
        );
        step(
            &mut machine,
            ts("2026-01-20T10:00:00+05:00"),
            vec![sla(SlaCounts::EMITTED_WITHIN_4H)],
            &mut out,
        );
        // Month start (Feb 1) carries A's balance into February; then the close.
        while let Some(timer) = machine.next_timer().filter(|t| *t <= time_of(close)) {
            step(&mut machine, ts_of(timer), vec![], &mut out);
        }
        assert_eq!(machine.periods_held(), vec![feb]);
        step(
            &mut machine,
            ts("2026-02-10T10:00:00+05:00"),
            vec![payment("A", feb, "5.00")],
            &mut out,
        );
        let seen = records(&out);
        let jan_seen: Vec<_> = seen.iter().filter(|r| r.1.contains("/2026-01")).cloned().collect();
        assert_eq!(
            jan_seen,
            vec![
                (
                    ts("2026-01-10T10:00:00+05:00"),
                    "reconciliation/A/2026-01".into(),
                    1,
                    false
                ),
                (ts("2026-01-10T10:00:00+05:00"), "turnover/A/2026-01".into(), 1, false),
                (ts("2026-01-10T10:00:00+05:00"), "sla/A/2026-01".into(), 1, false),
                (ts("2026-01-20T10:00:00+05:00"), "sla/A/2026-01".into(), 2, false),
                (close, "reconciliation/A/2026-01".into(), 2, true),
                (close, "turnover/A/2026-01".into(), 2, true),
                (close, "sla/A/2026-01".into(), 3, true),
            ]
        );
        // February's row opened with January's closing, carried after January was forgotten.
        let feb_last = out
            .iter()
            .rev()
            .find_map(|(_, o)| match o {
                Output::Period(p) if p.key.render() == "reconciliation/A/2026-02" => Some(p.clone()),
                _ => None,
            })
            .expect("February's reconciliation");
        assert_eq!(feb_last.rev, 2);
        assert!(
            matches!(feb_last.figures, Figures::Reconciliation { opening, closing, .. }
            if opening == money("100") && closing == money("105"))
        );
        // What is left: February's two rows (figures derived), their revisions, A's money.
        assert_eq!(machine.periods_held(), vec![feb]);
        assert_eq!(machine.state_len(), 2 + 1 + 1 + 2);
    }

    /// The whole stage in a dataflow: facts spread over two inputs and many instants give
    /// one revision per record and instant, the final one at the close, none after it.
    #[test]
    fn the_stage_revises_per_instant_and_stops_at_the_close() {
        let jan = Period::new(2026, 1);
        let close = time_of(jan.close_instant(7));
        let end = close + 86_400_000;
        let captured = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, captured) = worker.dataflow::<Time, _, _>(|scope| {
                let (input, facts) = scope.new_input::<Vec<Fact>>();
                let drive = crate::driver::Drive {
                    end: crate::driver::InputEnd::at(end),
                    checkpoints: None,
                };
                let out = aggregates(facts, 7, &drive);
                (input, out.probe_with(&probe).capture())
            });
            let t1 = time_of(ts("2026-01-10T10:00:00+05:00"));
            let t2 = time_of(ts("2026-01-11T10:00:00+05:00"));
            input.advance_to(t1);
            for _ in 0..3 {
                input.send(Fact::Payment {
                    period: jan,
                    channel: "kaspi".into(),
                    day: "2026-01-10".into(),
                    amount: money("1.50"),
                });
            }
            input.advance_to(t2);
            input.send(Fact::Payment {
                period: jan,
                channel: "kaspi".into(),
                day: "2026-01-11".into(),
                amount: money("2"),
            });
            input.advance_to(end);
            drop(input);
            while !probe.done() {
                worker.step();
            }
            captured
        });
        let mut outputs: Vec<(Time, Output)> = Vec::new();
        for event in captured.try_iter() {
            if let Event::Messages(stamp, data) = event {
                let time = *stamp.least().expect("a stamp has a time");
                outputs.extend(data.into_iter().map(|o| (time, o)));
            }
        }
        outputs.sort_by_cached_key(|(time, output)| match output {
            Output::Period(p) => (*time, p.key.render()),
            _ => (*time, String::new()),
        });
        let seen = records(&outputs);
        let t1 = ts("2026-01-10T10:00:00+05:00");
        let t2 = ts("2026-01-11T10:00:00+05:00");
        let c = ts_of(close);
        assert_eq!(
            seen,
            vec![
                (t1, "payments/*/2026-01/kaspi".into(), 1, false),
                (t1, "payments/*/2026-01/kaspi/2026-01-10".into(), 1, false),
                (t2, "payments/*/2026-01/kaspi".into(), 2, false),
                (t2, "payments/*/2026-01/kaspi/2026-01-11".into(), 1, false),
                (c, "payments/*/2026-01/kaspi".into(), 3, true),
                (c, "payments/*/2026-01/kaspi/2026-01-10".into(), 2, true),
                (c, "payments/*/2026-01/kaspi/2026-01-11".into(), 2, true),
            ]
        );
        let Output::Period(first) = &outputs[0].1 else {
            unreachable!()
        };
        assert_eq!(
            first.figures,
            Figures::Payments {
                count: 3,
                amount: money("4.50")
            }
        );
    }
}
