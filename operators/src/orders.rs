//! "Orders: emission checks" — the order book of every account.
//!
//! In: `order`, `order_cancel` and `emission` events, exchanged by account. Out: rejections
//! (`BAD_GTIN`, `ALREADY_EXISTS` for an order id, `UNKNOWN_ORDER`, `GTIN_MISMATCH`,
//! `ORDER_EXCEEDED`, `INVALID_TRANSITION`, per-code `BAD_CODE`), each valid code of an
//! accepted emission for the national index, the account's pending-order count after every
//! instant that changed it, and SLA facts. An accepted emission counts every code it names
//! against its order, so this book never waits for the code index. An order taking effect
//! at or after its own 4-hour deadline (it arrived over 4 h late) is late right after it is
//! placed, before the instant's next input (an emission of it then is not "within 4 h"):
//! each instant is stepped once.
//!
//! State: the books in structurally shared ordered maps (`imbl`), keyed by account and
//! order id, so a checkpoint captures them in O(1) on the worker and the writer's thread
//! encodes them (`Durable::snapshot`).

use crate::checkpoint::Snapshot;
use crate::driver::{run_machine, Drive};
use crate::event::{Body, Kind};
use crate::flow::{edges, route, take, ts_of, AccountIn, CodeIn, CodesIn, Edge, Fact, Header, Placed, Time};
use crate::machine::Machine;
use crate::movements::SlaCounts;
use crate::output::Output;
use crate::reason::Reason;
use crate::rules;
use crate::time::{Period, Ts};
use crate::validate::is_gtin;
use crate::wording;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::StreamVec;

/// What the order book emits: one variant per edge of the graph.
#[derive(Clone, Debug)]
pub enum OrdersOut {
    /// A refused order event or code (→ the rejections output).
    Refused(Box<Output>),
    /// An SLA change (→ the period aggregates).
    Fact(Box<Fact>),
    /// A code of an accepted emission (→ the national index).
    Code(CodeIn),
    /// An account's pending orders after an instant (→ the accounts).
    Pending(AccountIn),
}

impl From<Output> for OrdersOut {
    fn from(output: Output) -> OrdersOut {
        OrdersOut::Refused(Box::new(output))
    }
}

impl From<CodeIn> for OrdersOut {
    fn from(code: CodeIn) -> OrdersOut {
        OrdersOut::Code(code)
    }
}

impl Edge for OrdersOut {
    const EDGES: u64 = 4;
    fn edge(&self) -> u64 {
        match self {
            OrdersOut::Refused(_) => 0,
            OrdersOut::Fact(_) => 1,
            OrdersOut::Code(_) => 2,
            OrdersOut::Pending(_) => 3,
        }
    }
}

/// The order book's typed outputs.
pub struct OrdersEdges<'scope> {
    /// Rejections.
    pub refusals: StreamVec<'scope, Time, Output>,
    /// SLA facts.
    pub facts: StreamVec<'scope, Time, Fact>,
    /// Accepted emissions' codes, for the national index.
    pub codes: StreamVec<'scope, Time, CodesIn>,
    /// Pending-order counts, for the accounts.
    pub pending: StreamVec<'scope, Time, AccountIn>,
}

/// "Orders: emission checks" over the order events (module docs), exchanged by account.
pub fn order_book<'scope>(events: StreamVec<'scope, Time, Placed>, book: Orders, drive: &Drive) -> OrdersEdges<'scope> {
    let by_account = Exchange::new(|placed: &Placed| route(&placed.event.account));
    let mut parts = edges(run_machine(events, by_account, book, drive));
    OrdersEdges {
        refusals: take(parts.next(), |out| {
            if let OrdersOut::Refused(r) = out {
                Some(*r)
            } else {
                None
            }
        }),
        facts: take(
            parts.next(),
            |out| if let OrdersOut::Fact(f) = out { Some(*f) } else { None },
        ),
        codes: take(parts.next(), |out| {
            if let OrdersOut::Code(c) = out {
                Some(CodesIn::Code(c))
            } else {
                None
            }
        }),
        pending: take(parts.next(), |out| {
            if let OrdersOut::Pending(p) = out {
                Some(p)
            } else {
                None
            }
        }),
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Order {
    gtin: String,
    quantity: u64,
    emitted: u64,
    cancelled: bool,
    period: Period,
    late: bool,
}

impl Order {
    fn pending(&self) -> bool {
        !self.cancelled && self.emitted < self.quantity
    }
}

// Persistent maps and sets (`imbl`): a clone shares every node, an update after it copies
// only its path. They encode as the std `BTreeMap`/`BTreeSet` they replaced (a map, a
// sequence), so checkpoints read either.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Book {
    orders: imbl::OrdMap<String, Order>,
    pending: u64,
}

/// The order books of one worker's accounts.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Orders {
    books: imbl::OrdMap<String, Book>,
    deadlines: imbl::OrdSet<(Ts, String, String)>,
    sla_ms: i64,
    close_after_days: u32,
}

fn reject(placed: &Placed, code: Option<&str>, reason: Reason, detail: String) -> OrdersOut {
    OrdersOut::from(placed.rejection(code, reason, detail))
}

/// Refuses the whole event.
fn refuse(out: &mut Vec<OrdersOut>, placed: &Placed, reason: Reason, detail: String) -> Applied {
    out.push(reject(placed, None, reason, detail));
    Applied::Refused
}

/// `BAD_GTIN` for an order or emission whose GTIN is not valid.
fn bad_gtin(placed: &Placed, gtin: &str) -> Option<OrdersOut> {
    let detail = || wording::bad_gtin(gtin);
    (!is_gtin(gtin)).then(|| reject(placed, None, Reason::BadGtin, detail()))
}

impl Orders {
    /// Empty books.
    pub fn new(sla_ms: i64, close_after_days: u32) -> Orders {
        Orders {
            books: imbl::OrdMap::new(),
            deadlines: imbl::OrdSet::new(),
            sla_ms,
            close_after_days,
        }
    }

    fn sla(&self, account: &str, period: Period, now: Ts, delta: SlaCounts, out: &mut Vec<OrdersOut>) {
        // An SLA record is frozen with its period.
        if period.close_instant(self.close_after_days) > now {
            out.push(OrdersOut::Fact(Box::new(Fact::Sla {
                account: account.to_string(),
                period,
                delta,
            })));
        }
    }

    /// Fires the 4-hour deadlines due at or before `now`: at the start of an instant those
    /// due then, after an order those it set at `max(deadline, now)` because its deadline had
    /// passed (DOMAIN.md §8: before the instant's later events).
    fn fire_deadlines(&mut self, now: Ts, out: &mut Vec<OrdersOut>) {
        while let Some((at, _, _)) = self.deadlines.get_min() {
            if *at > now {
                break;
            }
            let (_, account, order) = self.deadlines.remove_min().expect("peeked");
            let state = self
                .books
                .get_mut(&account)
                .and_then(|book| book.orders.get_mut(&order));
            if let Some(state) = state.filter(|s| s.pending() && !s.late) {
                state.late = true;
                let period = state.period;
                self.sla(&account, period, now, SlaCounts::LATE, out);
            }
        }
    }

    /// Applies one order event; an accepted emission's codes are moved on to the index.
    fn apply(&mut self, placed: &mut Placed, now: Ts, out: &mut Vec<OrdersOut>) -> Applied {
        match placed.event.kind() {
            Kind::Order => self.place(placed, now, out),
            Kind::OrderCancel => self.cancel(placed, now, out),
            Kind::Emission => {
                let applied = self.emission(placed, now, out);
                if applied != Applied::Refused {
                    let Body::Emission { gtin, .. } = &placed.event.body else {
                        unreachable!("an emission")
                    };
                    let header = Arc::new(Header::of(placed, gtin));
                    placed.codes_to_index(header, out);
                }
                applied
            }
            _ => unreachable!("only order events reach the order book"),
        }
    }

    /// An order: `BAD_GTIN`, `ALREADY_EXISTS` (its id), or a pending order with its SLA
    /// deadline.
    fn place(&mut self, placed: &Placed, now: Ts, out: &mut Vec<OrdersOut>) -> Applied {
        let Body::Order { order, gtin, quantity } = &placed.event.body else {
            unreachable!("an order")
        };
        let quantity = *quantity;
        if let Some(refusal) = bad_gtin(placed, gtin) {
            out.push(refusal);
            return Applied::Refused;
        }
        let account = placed.event.account.clone();
        let book = self.books.entry(account.clone()).or_default();
        if book.orders.contains_key(order.as_str()) {
            return refuse(out, placed, Reason::AlreadyExists, wording::order_exists(order));
        }
        let period = rules::accounting_period(placed.event.ts, now, self.close_after_days);
        let deadline = placed.event.ts.plus_millis(self.sla_ms).max(now);
        let state = Order {
            gtin: gtin.clone(),
            quantity,
            emitted: 0,
            cancelled: false,
            period,
            late: false,
        };
        book.orders.insert(order.clone(), state);
        book.pending += 1;
        self.deadlines.insert((deadline, account.clone(), order.clone()));
        self.sla(&account, period, now, SlaCounts::PLACED, out);
        Applied::PendingChanged
    }

    /// A cancel: `UNKNOWN_ORDER`, `INVALID_TRANSITION` (finished), or nothing remains.
    fn cancel(&mut self, placed: &Placed, now: Ts, out: &mut Vec<OrdersOut>) -> Applied {
        let Body::OrderCancel { order } = &placed.event.body else {
            unreachable!("a cancel")
        };
        let account = placed.event.account.clone();
        let book = self.books.entry(account.clone()).or_default();
        let Some(state) = book.orders.get_mut(order) else {
            return refuse(out, placed, Reason::UnknownOrder, wording::unknown_order(order));
        };
        if !state.pending() {
            return refuse(out, placed, Reason::InvalidTransition, wording::order_finished(order));
        }
        state.cancelled = true;
        book.pending -= 1;
        let period = state.period;
        self.sla(&account, period, now, SlaCounts::FINISHED, out);
        Applied::PendingChanged
    }

    /// An emission's whole-event checks (`BAD_GTIN`, `UNKNOWN_ORDER`, `GTIN_MISMATCH`,
    /// `ORDER_EXCEEDED`); an accepted one counts all `codes` codes against its order.
    fn emission(&mut self, placed: &Placed, now: Ts, out: &mut Vec<OrdersOut>) -> Applied {
        let Body::Emission { order, gtin, codes } = &placed.event.body else {
            unreachable!("an emission")
        };
        let codes = codes.len();
        if let Some(refusal) = bad_gtin(placed, gtin) {
            out.push(refusal);
            return Applied::Refused;
        }
        let account = placed.event.account.clone();
        let book = self.books.entry(account.clone()).or_default();
        let Some(state) = book.orders.get_mut(order) else {
            return refuse(out, placed, Reason::UnknownOrder, wording::unknown_order(order));
        };
        if state.gtin != *gtin {
            let detail = wording::gtin_mismatch(order, &state.gtin, gtin);
            return refuse(out, placed, Reason::GtinMismatch, detail);
        }
        let remaining = if state.cancelled {
            0
        } else {
            state.quantity - state.emitted
        };
        if codes as u64 > remaining {
            let detail = wording::order_exceeded(codes, remaining, order);
            return refuse(out, placed, Reason::OrderExceeded, detail);
        }
        state.emitted += codes as u64;
        if state.emitted < state.quantity || codes == 0 {
            return Applied::Accepted;
        }
        book.pending -= 1;
        let finished = if state.late {
            SlaCounts::FINISHED
        } else {
            SlaCounts::EMITTED_WITHIN_4H
        };
        let period = state.period;
        self.sla(&account, period, now, finished, out);
        Applied::PendingChanged
    }
}

/// What an order event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    /// Refused: nothing changed.
    Refused,
    /// Accepted; the account's pending orders did not change.
    Accepted,
    /// Accepted, and the account's pending orders changed.
    PendingChanged,
}

impl crate::machine::Durable for Orders {
    fn keep_configuration(&mut self, restored: &mut Orders) {
        restored.sla_ms = self.sla_ms;
        restored.close_after_days = self.close_after_days;
    }

    /// An O(1) capture: every field is a persistent map or a number (`Orders` has nothing
    /// `#[serde(skip)]`ped, so the clone encodes as the machine does).
    fn snapshot(&mut self) -> Snapshot {
        Snapshot::of(self.clone())
    }

    fn input_group(placed: &Placed) -> Option<u64> {
        Some(route(&placed.event.account))
    }

    /// Books and deadlines by their account's key group.
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool) {
        self.books = std::mem::take(&mut self.books)
            .into_iter()
            .filter(|(account, _)| owned(route(account)))
            .collect();
        self.deadlines = std::mem::take(&mut self.deadlines)
            .into_iter()
            .filter(|(_, account, _)| owned(route(account)))
            .collect();
    }

    fn absorb(&mut self, other: Orders) {
        self.books = self.books.clone().union(other.books);
        self.deadlines = self.deadlines.clone().union(other.deadlines);
    }
}

impl Machine for Orders {
    const NAME: &'static str = "Orders: emission checks";
    type In = Placed;
    type Out = OrdersOut;

    fn step(&mut self, now: Time, mut inputs: Vec<Placed>, out: &mut Vec<OrdersOut>) {
        let now = ts_of(now);
        self.fire_deadlines(now, out);
        inputs.sort_by(|a, b| (a.event.kind(), &a.event.id).cmp(&(b.event.kind(), &b.event.id)));
        let mut changed: BTreeMap<String, Ts> = BTreeMap::new();
        for placed in &mut inputs {
            crate::failure::processing(&placed.event.id);
            if self.apply(placed, now, out) == Applied::PendingChanged {
                let ts = changed.entry(placed.event.account.clone()).or_insert(placed.event.ts);
                *ts = (*ts).max(placed.event.ts);
            }
            // A late order's deadline that has already passed fires before the next input.
            self.fire_deadlines(now, out);
        }
        debug_assert!(self.deadlines.get_min().is_none_or(|(at, _, _)| *at > now));
        for (account, ts) in changed {
            let pending = self.books[&account].pending;
            out.push(OrdersOut::Pending(AccountIn::Pending { account, pending, ts }));
        }
    }

    fn next_timer(&self) -> Option<Time> {
        self.deadlines.get_min().map(|(at, _, _)| crate::flow::time_of(*at))
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<OrdersOut>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Durable;

    fn order(quantity: u64) -> Order {
        Order {
            gtin: "04600000000008".into(),
            quantity,
            emitted: 0,
            cancelled: false,
            period: Ts(0).period(),
            late: false,
        }
    }

    #[test]
    fn a_snapshot_encodes_as_save_does_and_ignores_later_changes() {
        // The capture shares the books' nodes; changes after it copy their paths, so the
        // deferred encoding is the state at the capture, byte for byte `save`'s.
        let mut orders = Orders::new(4 * 3_600_000, 5);
        let book = orders.books.entry("A".into()).or_default();
        book.orders.insert("o1".into(), order(10));
        book.pending = 1;
        orders.deadlines.insert((Ts(5), "A".into(), "o1".into()));
        let saved = orders.save();
        let snapshot = orders.snapshot();
        orders
            .books
            .get_mut("A")
            .expect("book")
            .orders
            .get_mut("o1")
            .expect("order")
            .emitted = 10;
        orders.books.entry("B".into()).or_default().pending = 3;
        orders.deadlines.remove_min();
        assert_eq!(snapshot.encode(), saved);
        let mut restored = Orders::new(0, 0);
        restored.restore(&saved).expect("restores");
        assert_eq!(restored.books["A"].orders["o1"].emitted, 0);
        assert_eq!(restored.deadlines.len(), 1);
        assert_eq!(restored.sla_ms, 0, "the run's configuration, not the checkpoint's");
    }

    #[test]
    fn the_encoding_is_that_of_the_std_collections_it_replaced() {
        // Checkpoints written with std BTreeMap/BTreeSet books still restore.
        let mut orders = Orders::new(7, 5);
        orders
            .books
            .entry("A".into())
            .or_default()
            .orders
            .insert("o1".into(), order(2));
        orders.deadlines.insert((Ts(5), "A".into(), "o1".into()));
        let mut books = std::collections::BTreeMap::new();
        let mut book_orders = std::collections::BTreeMap::new();
        book_orders.insert("o1".to_string(), order(2));
        books.insert("A".to_string(), (book_orders, 0u64));
        let deadlines: std::collections::BTreeSet<_> = [(Ts(5), "A".to_string(), "o1".to_string())].into();
        let old = crate::checkpoint::encode(&(books, deadlines, 7i64, 5u32));
        assert_eq!(orders.save(), old);
    }
}
