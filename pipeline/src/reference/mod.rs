//! The reference engine: a deliberately simple, single-threaded implementation of all of
//! DOMAIN.md. It is the oracle the dataflow is checked against, so clarity beats speed:
//! ordered maps, whole-run sorting, no cleverness.
//!
//! How a run goes:
//! 1. Every partition is read in order. An event takes effect at
//!    `max(ts, high-water of its partition before it − lateness)` and is *late* when its
//!    `ts` is below that (DOMAIN.md §4). Refused records (`MALFORMED`, `UNKNOWN_TYPE`)
//!    are emitted at once and move nothing.
//! 2. All events are sorted by (effective time, kind rank, id, canonical bytes): account
//!    order for every account at once. The last key only orders same-id duplicates, so the
//!    result depends on the set of events, never on how partitions interleave.
//! 3. Instants are visited in increasing order up to the largest `ts` read, each exactly
//!    once. At each instant: time-driven changes (month end, close, expiry, SLA deadline,
//!    dormant advance, retention), then the events taking effect there, then the holds that
//!    end there; then balances and period revisions that changed are emitted. A
//!    time-driven change an event schedules at or before its own effective time (a late
//!    order past its 4-hour deadline, a late emission past its expiry, a payment or charge
//!    over a year old) is decided right after that event, before the next one of the
//!    instant: its instant has passed, so it comes before every later event (DOMAIN.md §8),
//!    and the instant still gets one revision per record.
//! 4. Holds still unresolved at the end are refused `UNKNOWN_CODE`.

mod aggregates;

use crate::config::Config;
use crate::summary::Summary;
use aggregates::Aggregates;
use markledger_connectors::codec::binary::canonical_bytes;
use markledger_connectors::codec::Decoded;
use markledger_operators::flow::{time_of, Time};
use markledger_operators::money::Money;
use markledger_operators::movements::{Movements, SlaCounts};
use markledger_operators::output::{
    BalanceRecord, Deletion, Entry, ExportItem, ExportLine, Figures, LedgerEntry, Output, RefundReason, Rejection,
    StatusChange,
};
use markledger_operators::rules::{self, Termination};
use markledger_operators::validate::{is_code, is_gtin};
use markledger_operators::wording;
use markledger_operators::{Body, DecimalField, Event, Kind, Period, Reason, Sink, Status, TariffHistory, Ts};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One event with its place in account order.
#[derive(Clone, Debug)]
struct Pending {
    effective: Ts,
    late: bool,
    event: Event,
}

/// A code's state.
#[derive(Debug, Clone)]
struct CodeState {
    account: String,
    gtin: String,
    status: Status,
    /// Set once the code's charge has been settled.
    paid: bool,
    /// When it reached a state with no way out (for retention).
    final_at: Option<Ts>,
}

/// An unpaid applied code waiting in its account's FIFO queue.
#[derive(Debug, Clone)]
struct Queued {
    code: String,
    gtin: String,
    net: Money,
    vat: Money,
    application_ts: Ts,
}

impl Queued {
    fn charge(&self) -> Money {
        self.net + self.vat
    }
}

#[derive(Debug, Clone)]
struct Order {
    gtin: String,
    quantity: u64,
    emitted: u64,
    cancelled: bool,
    /// The period its SLA figures live in.
    period: Period,
    /// Set once the 4-hour deadline passed while it was pending.
    late: bool,
}

impl Order {
    fn is_pending(&self) -> bool {
        !self.cancelled && self.emitted < self.quantity
    }
}

#[derive(Debug, Default)]
struct Account {
    balance: Money,
    queue: VecDeque<Queued>,
    unpaid_amount: Money,
    orders: BTreeMap<String, Order>,
    pending_orders: u64,
    /// The latest business time of a payment or a charge (the dormant-advance anchor).
    dormant_anchor: Option<Ts>,
    /// Bumped whenever the anchor moves, so stale dormant timers are ignored.
    dormant_generation: u64,
    /// `ts` of the latest event that changed what the balance record shows.
    last_change_ts: Option<Ts>,
    last_emitted: Option<(Money, u64, Money, u64)>,
    /// Balance records emitted.
    balance_revs: u64,
}

#[derive(Debug)]
struct Emission {
    account: String,
    gtin: String,
    codes: Vec<String>,
}

/// A command waiting for its codes' emission.
#[derive(Debug)]
struct Hold {
    pending: Pending,
    deadline: Ts,
    codes: Vec<String>,
}

/// Time-driven changes, in the order they apply at one instant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The period ended: debtors snapshot, carry-forward into the next.
    MonthEnd(Period),
    /// The period closes.
    Close(Period),
    /// Unapplied codes of an emission expire.
    Expiry(u64),
    /// The 4-hour emission deadline of an order.
    SlaDeadline(String, String),
    /// A year passed since the account's dormant anchor (account, generation).
    Dormant(String, u64),
    /// A final-state code may be compacted away.
    Retention(String),
    /// An export is delivered (its number in `deliveries`): after the other time-driven
    /// changes of the instant, in the order the requests took effect (DOMAIN.md §9).
    Deliver(u64),
    /// A terminated account is deleted, after the deliveries of the instant.
    Delete(String),
    /// The retention horizon after a deletion passed: the termination is forgotten.
    ForgetTermination(String),
}

/// A terminated account (DOMAIN.md §9).
#[derive(Debug, Clone, Copy)]
struct Ended {
    termination: Termination,
    /// Set at the deletion.
    deleted: bool,
    /// The rev of the balance key's deletion (0: the account had no balance record): an
    /// account id used again after the termination is forgotten continues from it, so the
    /// key's `rev` keeps increasing.
    balance_rev: u64,
}

/// The reference engine's whole state.
pub struct ReferenceEngine<'c, S: Sink> {
    /// The instant being visited (the time outputs are handed to the sink at).
    instant: Time,
    /// One output at a time, handed over as a batch of one.
    batch: Vec<Output>,
    config: &'c Config,
    sink: S,
    tariffs: TariffHistory,
    codes: BTreeMap<String, CodeState>,
    accounts: BTreeMap<String, Account>,
    emissions: BTreeMap<u64, Emission>,
    next_emission: u64,
    seen_ids: BTreeMap<String, Ts>,
    timers: BTreeSet<(Ts, Timer)>,
    holds: BTreeMap<u64, Hold>,
    hold_deadlines: BTreeSet<(Ts, u64)>,
    holds_by_code: BTreeMap<String, Vec<u64>>,
    next_hold: u64,
    aggregates: Aggregates,
    dirty_accounts: BTreeSet<String>,
    /// Terminated accounts, kept after their deletion for the retention horizon.
    ended: BTreeMap<String, Ended>,
    /// Accepted exports not delivered yet: (account, request id), by request order.
    deliveries: BTreeMap<u64, (String, String)>,
    next_delivery: u64,
    /// Accounts deleted (their state is gone from `accounts`).
    deleted_accounts: u64,
    summary: Summary,
}

/// Runs the reference engine over partitions (each in read order) and returns the summary.
/// `progress` is called with (events processed, events in total) now and then.
pub fn run<S: Sink>(
    config: &Config,
    partitions: Vec<Vec<Decoded>>,
    sink: S,
    progress: &mut dyn FnMut(u64, u64),
) -> (Summary, S) {
    let mut engine = ReferenceEngine::new(config, sink);
    let pending = engine.assign_effective_times(partitions);
    engine.process(pending, progress);
    engine.finish()
}

fn compare_account_order(a: &Pending, b: &Pending) -> Ordering {
    (a.effective, a.event.kind().rank(), &a.event.id)
        .cmp(&(b.effective, b.event.kind().rank(), &b.event.id))
        .then_with(|| canonical_bytes(&a.event).cmp(&canonical_bytes(&b.event)))
}

impl<'c, S: Sink> ReferenceEngine<'c, S> {
    fn new(config: &'c Config, sink: S) -> Self {
        ReferenceEngine {
            config,
            sink,
            tariffs: TariffHistory::built_in(),
            codes: BTreeMap::new(),
            accounts: BTreeMap::new(),
            emissions: BTreeMap::new(),
            next_emission: 0,
            seen_ids: BTreeMap::new(),
            timers: BTreeSet::new(),
            holds: BTreeMap::new(),
            hold_deadlines: BTreeSet::new(),
            holds_by_code: BTreeMap::new(),
            next_hold: 0,
            aggregates: Aggregates::new(config.close_after_days),
            dirty_accounts: BTreeSet::new(),
            ended: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            next_delivery: 0,
            deleted_accounts: 0,
            summary: Summary::default(),
            instant: 0,
            batch: Vec::with_capacity(1),
        }
    }

    fn emit(&mut self, output: Output) {
        let name = match &output {
            Output::Status(_) => "status",
            Output::Ledger(_) => "ledger",
            Output::Balance(_) => "balances",
            Output::Rejection(rejection) => {
                *self.summary.rejections.entry(rejection.reason).or_default() += 1;
                "rejections"
            }
            Output::Period(_) | Output::Deleted(Deletion::Period { .. }) => "periods",
            Output::Deleted(Deletion::Balance { .. }) => "balances",
            Output::Export(_) => "exports",
        };
        *self.summary.outputs.entry(name).or_default() += 1;
        self.batch.push(output);
        self.sink.emit(self.instant, &mut self.batch);
    }

    /// Step 1: effective time and lateness per partition (DOMAIN.md §4).
    fn assign_effective_times(&mut self, partitions: Vec<Vec<Decoded>>) -> Vec<Pending> {
        let mut pending = Vec::new();
        let admission = self.config.admission();
        for partition in partitions {
            let mut high_water: Option<Ts> = None;
            for record in partition {
                self.summary.records += 1;
                // As the dataflow's source: a partition stops at its first event in a year
                // the calendar does not cover, or emission whose expiry deadline falls
                // there (issue 19; the file run then fails).
                if matches!(&record, Decoded::Event(event) if admission.window.beyond_calendar(event).is_some()) {
                    break;
                }
                // An event not taken in is refused like a malformed record: it moves no
                // high-water mark and registers no id.
                let record = match record {
                    Decoded::Event(event) => match admission.check(&event) {
                        Ok(()) => Decoded::Event(event),
                        Err(rejection) => Decoded::Refused(*rejection),
                    },
                    refused => refused,
                };
                match record {
                    Decoded::Refused(rejection) => self.emit(Output::Rejection(rejection)),
                    Decoded::Event(event) => {
                        let floor = high_water.map(|hw| hw.minus_millis(self.config.lateness_ms));
                        let late = floor.is_some_and(|floor| event.ts < floor);
                        let effective = floor.map_or(event.ts, |floor| event.ts.max(floor));
                        high_water = Some(high_water.map_or(event.ts, |hw| hw.max(event.ts)));
                        self.summary.events += 1;
                        self.summary.code_events += event.code_count() as u64;
                        self.summary.late_events += u64::from(late);
                        self.summary.first_ts = Some(self.summary.first_ts.map_or(event.ts, |t| t.min(event.ts)));
                        self.summary.last_ts = Some(self.summary.last_ts.map_or(event.ts, |t| t.max(event.ts)));
                        pending.push(Pending { effective, late, event });
                    }
                }
            }
        }
        pending.sort_by(compare_account_order);
        pending
    }

    /// Steps 2–4: visit every instant up to the watermark's final position.
    fn process(&mut self, pending: Vec<Pending>, progress: &mut dyn FnMut(u64, u64)) {
        let Some(watermark_end) = self.summary.last_ts else {
            return;
        };
        let total = pending.len() as u64;
        let mut events = pending.into_iter().peekable();
        let mut processed = 0u64;
        let mut visited: Option<Ts> = None;
        if let Some(first) = events.peek() {
            let period = first.effective.period();
            self.aggregates.current_period = Some(period);
            self.schedule(period.end(), Timer::MonthEnd(period));
            self.schedule(period.close_instant(self.config.close_after_days), Timer::Close(period));
        }
        loop {
            let next_event = events.peek().map(|p| p.effective);
            let next_timer = self.timers.first().map(|(t, _)| *t);
            let next_hold = self.hold_deadlines.first().map(|(t, _)| *t);
            let Some(now) = [next_event, next_timer, next_hold].into_iter().flatten().min() else {
                break;
            };
            if now > watermark_end {
                break;
            }
            // One visit per instant: a second one would revise its records twice.
            assert!(visited < Some(now), "instant {now} visited twice");
            visited = Some(now);
            self.instant = time_of(now);
            // Time-driven changes at `now` come before events at `now` (DOMAIN.md §8).
            self.fire_due(now);
            while events.peek().is_some_and(|p| p.effective == now) {
                let pending = events.next().expect("peeked");
                self.apply_event(pending, now);
                self.fire_due(now);
                processed += 1;
                if processed % 65_536 == 0 {
                    progress(processed, total);
                }
            }
            // Holds end after the events of their instant.
            while let Some((at, hold)) = self.hold_deadlines.first().copied() {
                if at > now {
                    break;
                }
                self.hold_deadlines.pop_first();
                self.end_hold(hold);
            }
            self.end_instant(now);
        }
        progress(processed, total);
        // The watermark stops at the largest ts read: later deadlines do not fire, and
        // commands still waiting for their codes are refused.
        let remaining: Vec<u64> = self.hold_deadlines.iter().map(|(_, hold)| *hold).collect();
        self.hold_deadlines.clear();
        for hold in remaining {
            self.end_hold(hold);
        }
        // Events that were never reached (none: every effective time ≤ the largest ts).
        debug_assert!(events.next().is_none());
    }

    fn schedule(&mut self, at: Ts, timer: Timer) {
        self.timers.insert((at, timer));
    }

    /// Fires every time-driven change due at or before `now`: at the start of an instant,
    /// those due then; after an event (or a held command it released), those it scheduled
    /// behind the watermark (`max(deadline, now)`), which are decided there and then.
    fn fire_due(&mut self, now: Ts) {
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            let (_, timer) = self.timers.pop_first().expect("peeked");
            self.fire(timer, now);
        }
    }

    fn finish(mut self) -> (Summary, S) {
        for code in self.codes.values() {
            *self.summary.codes_by_status.entry(code.status).or_default() += 1;
        }
        let current = self.aggregates.current_period;
        for (name, account) in &self.accounts {
            self.summary.balance += account.balance;
            self.summary.unpaid += account.unpaid_amount;
            assert!(account.balance >= Money::ZERO, "negative balance of {name}");
            let queued: Money = account.queue.iter().map(Queued::charge).sum();
            assert_eq!(queued, account.unpaid_amount, "unpaid amount of {name} drifted");
            if let Some(head) = account.queue.front() {
                assert!(
                    account.balance < head.charge(),
                    "FIFO head of {name} affordable but unpaid"
                );
            }
            // Every movement is accounted in some period up to the current one, so the
            // latest closing is the balance.
            if let Some(period) = current {
                assert_eq!(
                    self.aggregates.closing(name, period),
                    account.balance,
                    "closing of {name} is not its balance"
                );
            }
        }
        self.summary.accounts = self.accounts.len() as u64 + self.deleted_accounts;
        (self.summary, self.sink)
    }

    fn account(&mut self, name: &str) -> &mut Account {
        self.accounts.entry(name.to_string()).or_default()
    }

    fn reject(&mut self, event: &Event, code: Option<&str>, reason: Reason, detail: String) {
        let kind = event.kind().as_str();
        self.emit(Output::Rejection(Rejection::of_event(
            &event.id,
            kind,
            &event.account,
            code,
            reason,
            detail,
        )));
    }

    fn touch_account(&mut self, name: &str, ts: Ts) {
        let account = self.account(name);
        account.last_change_ts = Some(account.last_change_ts.map_or(ts, |t| t.max(ts)));
        self.dirty_accounts.insert(name.to_string());
    }

    // ---------------------------------------------------------------- time-driven changes

    fn fire(&mut self, timer: Timer, now: Ts) {
        match timer {
            Timer::MonthEnd(period) => {
                // Debtors: a snapshot of every account with unpaid codes at the month's end.
                let debtors: Vec<(String, Figures)> = self
                    .accounts
                    .iter()
                    .filter(|(_, account)| !account.queue.is_empty())
                    .map(|(name, account)| {
                        let figures = Figures::Debtors {
                            unpaid_codes: account.queue.len() as u64,
                            amount_owed: account.unpaid_amount,
                            oldest_unpaid_application: account.queue.iter().map(|q| q.application_ts).min(),
                        };
                        (name.clone(), figures)
                    })
                    .collect();
                for (name, figures) in debtors {
                    self.aggregates.set_debtor(&name, period, figures, now);
                }
                let next = period.next();
                self.aggregates.begin_period(next, now);
                self.schedule(next.end(), Timer::MonthEnd(next));
                self.schedule(next.close_instant(self.config.close_after_days), Timer::Close(next));
            }
            Timer::Close(period) => self.aggregates.close(period),
            Timer::Expiry(emission) => {
                let Some(emission) = self.emissions.remove(&emission) else {
                    return;
                };
                let mut expired = Vec::new();
                for code in &emission.codes {
                    if let Some(state) = self.codes.get_mut(code) {
                        if state.status == Status::Emitted && state.account == emission.account {
                            state.status = Status::Expired;
                            state.final_at = Some(now);
                            expired.push(code.clone());
                        }
                    }
                }
                for code in &expired {
                    self.schedule_retention(code, now);
                }
                if !expired.is_empty() {
                    self.emit(Output::Status(StatusChange {
                        event: None,
                        account: emission.account,
                        gtin: emission.gtin,
                        from: Some(Status::Emitted),
                        to: Status::Expired,
                        ts: now,
                        late: false,
                        codes: expired,
                    }));
                }
            }
            Timer::SlaDeadline(account, order) => {
                let Some(state) = self.accounts.get_mut(&account).and_then(|a| a.orders.get_mut(&order)) else {
                    return;
                };
                if state.is_pending() && !state.late {
                    state.late = true;
                    let period = state.period;
                    self.aggregates.change_sla(&account, period, now, SlaCounts::LATE);
                }
            }
            Timer::Dormant(name, generation) => {
                let Some(account) = self.accounts.get(&name) else {
                    return;
                };
                // No dormant advance after termination (DOMAIN.md §9).
                if self.ended.contains_key(&name) {
                    return;
                }
                if account.dormant_generation == generation && account.balance > Money::ZERO {
                    let (balance, since) = (account.balance, account.dormant_anchor.unwrap_or(now));
                    self.aggregates
                        .set_refund_due(&name, balance, since, RefundReason::Dormant, now);
                }
            }
            Timer::Retention(code) => {
                if let Some(state) = self.codes.get(&code) {
                    let compactable = match state.status {
                        Status::Rejected | Status::Expired | Status::Introduced => true,
                        Status::Annulled => state.paid,
                        _ => false,
                    };
                    if compactable
                        && state
                            .final_at
                            .is_some_and(|t| t.plus_millis(self.config.retention_ms) <= now)
                    {
                        self.codes.remove(&code);
                    }
                }
            }
            Timer::Deliver(number) => self.deliver(number, now),
            Timer::Delete(name) => self.delete_account(&name, now),
            Timer::ForgetTermination(name) => {
                if let Some(ended) = self.ended.remove(&name) {
                    // The id is a new account from now on; its balance key's revisions go on.
                    if ended.balance_rev > 0 {
                        self.deleted_accounts -= 1;
                        let account = Account {
                            balance_revs: ended.balance_rev,
                            ..Account::default()
                        };
                        self.accounts.insert(name, account);
                    }
                }
            }
        }
    }

    fn schedule_retention(&mut self, code: &str, now: Ts) {
        let at = now.plus_millis(self.config.retention_ms);
        self.schedule(at, Timer::Retention(code.to_string()));
    }

    fn move_dormant_anchor(&mut self, name: &str, ts: Ts, now: Ts) {
        let account = self.account(name);
        let anchor = account.dormant_anchor.map_or(ts, |a| a.max(ts));
        if account.dormant_anchor == Some(anchor) {
            return;
        }
        account.dormant_anchor = Some(anchor);
        account.dormant_generation += 1;
        let generation = account.dormant_generation;
        let at = anchor.plus_one_local_year().max(now);
        self.schedule(at, Timer::Dormant(name.to_string(), generation));
    }

    // ---------------------------------------------------------------- events

    fn apply_event(&mut self, pending: Pending, now: Ts) {
        let event = &pending.event;
        // De-duplication by id: the first in account order wins.
        if let Some(first) = self.seen_ids.get(&event.id) {
            if now < first.plus_millis(self.config.dedup_horizon_ms) {
                let detail = wording::duplicate(*first);
                self.reject(event, None, Reason::Duplicate, detail);
                return;
            }
        }
        self.seen_ids.insert(event.id.clone(), now);
        // A terminated account: ACCOUNT_TERMINATED before any other check, one rejection for
        // the whole event; refunds and exports pass until the deletion (DOMAIN.md §9).
        if let Some(ended) = self.ended.get(&event.account) {
            if ended.deleted || !matches!(event.kind(), Kind::Refund | Kind::Export) {
                let deleted = ended.deleted.then_some(ended.termination.deletion);
                let detail = wording::account_terminated(ended.termination.at, deleted);
                return self.reject(event, None, Reason::AccountTerminated, detail);
            }
        }
        if event.kind() != Kind::Tariff {
            self.account(&event.account);
        }
        match &event.body {
            Body::Tariff {
                effective_from,
                net_price,
                vat_rate,
            } => self.apply_tariff(event, *effective_from, net_price, vat_rate, now),
            Body::Payment { amount, channel } => self.apply_credit(&pending, amount, Some(channel), now),
            Body::Compensation { amount, .. } => self.apply_credit(&pending, amount, None, now),
            Body::Refund { amount } => self.apply_refund(&pending, amount, now),
            Body::Order { order, gtin, quantity } => self.apply_order(&pending, order, gtin, *quantity, now),
            Body::OrderCancel { order } => self.apply_order_cancel(&pending, order, now),
            Body::Emission { order, gtin, codes } => self.apply_emission(&pending, order, gtin, codes, now),
            Body::Defect { act_date, .. } => {
                let calendar = &self.config.calendar;
                match rules::defect_report(*act_date, event.ts, calendar, self.config.defect_working_days) {
                    Err(detail) => self.reject(event, None, Reason::DefectReportLate, detail),
                    Ok(()) => self.apply_code_command(&pending, event.body.codes(), now, true),
                }
            }
            Body::Application { codes, .. } | Body::Dropout { codes, .. } | Body::Introduction { codes } => {
                self.apply_code_command(&pending, codes, now, true)
            }
            Body::Terminate => self.apply_terminate(&pending, now),
            Body::Export => self.apply_export(&pending, now),
        }
    }

    // ---------------------------------------------------------------- DOMAIN.md §9

    /// `terminate`: refused while codes are unpaid or an order is pending (an account
    /// already terminated never gets here); accepted, its `EMITTED` codes expire, a positive
    /// balance is reported owed back, and its deletion is scheduled.
    fn apply_terminate(&mut self, pending: &Pending, now: Ts) {
        let event = &pending.event;
        let account = &self.accounts[&event.account];
        if !account.queue.is_empty() {
            let detail = wording::termination_unpaid_codes(account.queue.len());
            return self.reject(event, None, Reason::TerminationUnpaidCodes, detail);
        }
        if account.pending_orders > 0 {
            let detail = wording::termination_pending_orders(account.pending_orders);
            return self.reject(event, None, Reason::TerminationPendingOrder, detail);
        }
        let balance = account.balance;
        let termination = Termination::at(now, self.config.close_after_days);
        self.expire_on_termination(pending, now);
        if balance > Money::ZERO {
            self.aggregates
                .set_refund_due(&event.account, balance, now, RefundReason::Termination, now);
        }
        self.ended.insert(
            event.account.clone(),
            Ended {
                termination,
                deleted: false,
                balance_rev: 0,
            },
        );
        self.schedule(termination.deletion, Timer::Delete(event.account.clone()));
    }

    /// The terminated account's `EMITTED` codes expire at T, caused by the `terminate`:
    /// one record per GTIN, codes in emission order.
    fn expire_on_termination(&mut self, pending: &Pending, now: Ts) {
        let event = &pending.event;
        let ids: Vec<u64> = self
            .emissions
            .iter()
            .filter(|(_, emission)| emission.account == event.account)
            .map(|(id, _)| *id)
            .collect();
        let mut by_gtin: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in ids {
            let emission = self.emissions.remove(&id).expect("listed");
            for code in emission.codes {
                let Some(state) = self.codes.get_mut(&code) else {
                    continue;
                };
                if state.status == Status::Emitted && state.account == event.account {
                    state.status = Status::Expired;
                    state.final_at = Some(now);
                    by_gtin.entry(emission.gtin.clone()).or_default().push(code);
                }
            }
        }
        for (gtin, codes) in by_gtin {
            for code in &codes {
                self.schedule_retention(code, now);
            }
            self.emit(Output::Status(StatusChange {
                event: Some(event.id.clone()),
                account: event.account.clone(),
                gtin,
                from: Some(Status::Emitted),
                to: Status::Expired,
                ts: event.ts,
                late: pending.late,
                codes,
            }));
        }
    }

    /// `export`: accepted within a month of termination, delivered at the later of its
    /// effective time and the close of the termination's period.
    fn apply_export(&mut self, pending: &Pending, now: Ts) {
        let event = &pending.event;
        let Some(ended) = self.ended.get(&event.account) else {
            return self.reject(
                event,
                None,
                Reason::ExportNotTerminated,
                wording::export_not_terminated(),
            );
        };
        match ended.termination.export(now) {
            Err(detail) => self.reject(event, None, Reason::ExportOutOfWindow, detail),
            Ok(at) => {
                let number = self.next_delivery;
                self.next_delivery += 1;
                self.deliveries
                    .insert(number, (event.account.clone(), event.id.clone()));
                self.schedule(at, Timer::Deliver(number));
            }
        }
    }

    /// Delivers an export: every final record of the account for T's month and the 36
    /// before it, then the closing line.
    fn deliver(&mut self, number: u64, now: Ts) {
        let Some((account, export)) = self.deliveries.remove(&number) else {
            return;
        };
        let ended = self.ended[&account];
        let (first, last) = ended.termination.export_periods();
        let records = self.aggregates.export(&account, first, last, now);
        let count = records.len() as u64;
        for (index, record) in records.into_iter().enumerate() {
            self.emit(Output::Export(ExportLine {
                export: export.clone(),
                account: account.clone(),
                ts: now,
                item: ExportItem::Record {
                    seq: index as u64 + 1,
                    record,
                },
            }));
        }
        self.emit(Output::Export(ExportLine {
            export,
            account,
            ts: now,
            item: ExportItem::Complete { records: count },
        }));
    }

    /// The deletion at D: pending revisions of the account first, then a deletion for its
    /// balance key and every period key it ever had; everything else of it is forgotten.
    fn delete_account(&mut self, name: &str, now: Ts) {
        let mut records = Vec::new();
        self.aggregates.flush_account(name, now, |record| records.push(record));
        for record in records {
            self.emit(Output::Period(record));
        }
        if self.dirty_accounts.remove(name) {
            self.emit_balance(name, now);
        }
        let mut balance_rev = 0;
        if let Some(account) = self.accounts.remove(name) {
            self.deleted_accounts += 1;
            self.summary.forgotten += account.balance;
            if account.balance_revs > 0 {
                balance_rev = account.balance_revs + 1;
                self.emit(Output::Deleted(Deletion::Balance {
                    account: name.to_string(),
                    rev: balance_rev,
                    ts: now,
                }));
            }
        }
        for (key, rev) in self.aggregates.delete_account(name, now) {
            self.emit(Output::Deleted(Deletion::Period { key, rev: rev + 1 }));
        }
        if let Some(ended) = self.ended.get_mut(name) {
            ended.deleted = true;
            ended.balance_rev = balance_rev;
        }
        // Not before the end of D's period, so no period key of the account can be made
        // again after its deletion (later periods never had one).
        let forget = now.plus_millis(self.config.retention_ms).max(now.period().end());
        self.schedule(forget, Timer::ForgetTermination(name.to_string()));
    }

    fn amount(&mut self, event: &Event, field: &DecimalField) -> Option<Money> {
        match rules::amount(field) {
            Ok(amount) => Some(amount),
            Err(detail) => {
                self.reject(event, None, Reason::BadAmount, detail);
                None
            }
        }
    }

    fn apply_tariff(&mut self, event: &Event, effective_from: Ts, net: &DecimalField, vat: &DecimalField, now: Ts) {
        match rules::tariff(effective_from, net, vat, now) {
            Ok(tariff) => self.tariffs.insert(effective_from, tariff),
            Err((reason, detail)) => self.reject(event, None, reason, detail),
        }
    }

    fn ledger(&mut self, pending: &Pending, entry: Entry, amount: Money, codes: Option<u64>, period: Period) {
        let event = &pending.event;
        let balance = self.accounts[&event.account].balance;
        debug_assert!(balance >= Money::ZERO, "balance went negative");
        self.emit(Output::Ledger(LedgerEntry {
            account: event.account.clone(),
            entry,
            amount,
            balance,
            ts: event.ts,
            event: event.id.clone(),
            codes,
            late: pending.late,
            period,
        }));
    }

    fn apply_credit(&mut self, pending: &Pending, field: &DecimalField, channel: Option<&String>, now: Ts) {
        let event = &pending.event;
        let Some(amount) = self.amount(event, field) else {
            return;
        };
        let balance = self.account(&event.account).balance;
        match rules::credit(balance, amount) {
            Ok(after) => self.account(&event.account).balance = after,
            Err(detail) => return self.reject(event, None, Reason::BadAmount, detail),
        }
        let period = self.aggregates.accounting_period(event.ts, now);
        let (entry, movement) = match channel {
            Some(channel) => {
                self.summary.payments += amount;
                let day = event.ts.local_date().format("%Y-%m-%d").to_string();
                self.aggregates.add_payment(period, channel, &day, amount, now);
                self.move_dormant_anchor(&event.account, event.ts, now);
                (
                    Entry::Payment,
                    Movements {
                        payments: amount,
                        ..Movements::default()
                    },
                )
            }
            None => {
                self.summary.compensations += amount;
                (
                    Entry::Compensation,
                    Movements {
                        compensations: amount,
                        ..Movements::default()
                    },
                )
            }
        };
        self.aggregates.add_movement(&event.account, period, movement, now);
        self.ledger(pending, entry, amount, None, period);
        self.touch_account(&event.account, event.ts);
        let paid = self.settle(pending, now);
        self.emit_status_groups(
            pending,
            paid.into_iter().map(|(code, gtin)| (gtin, Status::AppliedUnpaid, code)),
        );
    }

    fn apply_refund(&mut self, pending: &Pending, field: &DecimalField, now: Ts) {
        let event = &pending.event;
        let Some(amount) = self.amount(event, field) else {
            return;
        };
        let account = &self.accounts[&event.account];
        let refusal = if !account.queue.is_empty() {
            Some((
                Reason::RefundUnpaidCodes,
                wording::refund_unpaid_codes(account.queue.len()),
            ))
        } else if account.pending_orders > 0 {
            Some((
                Reason::RefundPendingOrder,
                wording::refund_pending_orders(account.pending_orders),
            ))
        } else if amount > account.balance {
            Some((
                Reason::RefundExceedsBalance,
                wording::refund_exceeds_balance(amount, account.balance),
            ))
        } else {
            None
        };
        if let Some((reason, detail)) = refusal {
            return self.reject(event, None, reason, detail);
        }
        let period = self.aggregates.accounting_period(event.ts, now);
        self.account(&event.account).balance -= amount;
        self.summary.refunds += amount;
        self.aggregates.add_movement(
            &event.account,
            period,
            Movements {
                refunds: amount,
                ..Movements::default()
            },
            now,
        );
        self.ledger(pending, Entry::Refund, amount, None, period);
        self.touch_account(&event.account, event.ts);
    }

    fn apply_order(&mut self, pending: &Pending, order: &str, gtin: &str, quantity: u64, now: Ts) {
        let event = &pending.event;
        if !is_gtin(gtin) {
            return self.reject(event, None, Reason::BadGtin, wording::bad_gtin(gtin));
        }
        if self.accounts[&event.account].orders.contains_key(order) {
            return self.reject(event, None, Reason::AlreadyExists, wording::order_exists(order));
        }
        let period = self.aggregates.accounting_period(event.ts, now);
        let deadline = event.ts.plus_millis(self.config.sla_ms);
        let state = Order {
            gtin: gtin.to_string(),
            quantity,
            emitted: 0,
            cancelled: false,
            period,
            late: false,
        };
        let account = self.account(&event.account);
        account.orders.insert(order.to_string(), state);
        account.pending_orders += 1;
        self.aggregates
            .change_sla(&event.account, period, now, SlaCounts::PLACED);
        // A deadline at or behind the order's effective time (an order arriving over 4 h
        // late) fires right after the order (`fire_due`): the order is late before any
        // emission of this instant.
        self.schedule(
            deadline.max(now),
            Timer::SlaDeadline(event.account.clone(), order.to_string()),
        );
        self.touch_account(&event.account, event.ts);
    }

    fn apply_order_cancel(&mut self, pending: &Pending, order: &str, now: Ts) {
        let event = &pending.event;
        let Some(state) = self.accounts[&event.account].orders.get(order) else {
            return self.reject(event, None, Reason::UnknownOrder, wording::unknown_order(order));
        };
        if !state.is_pending() {
            return self.reject(event, None, Reason::InvalidTransition, wording::order_finished(order));
        }
        let period = state.period;
        let account = self.account(&event.account);
        account.orders.get_mut(order).expect("checked").cancelled = true;
        account.pending_orders -= 1;
        self.aggregates
            .change_sla(&event.account, period, now, SlaCounts::FINISHED);
        self.touch_account(&event.account, event.ts);
    }

    fn apply_emission(&mut self, pending: &Pending, order: &str, gtin: &str, codes: &[String], now: Ts) {
        let event = &pending.event;
        if !is_gtin(gtin) {
            return self.reject(event, None, Reason::BadGtin, wording::bad_gtin(gtin));
        }
        let Some(state) = self.accounts[&event.account].orders.get(order) else {
            return self.reject(event, None, Reason::UnknownOrder, wording::unknown_order(order));
        };
        if state.gtin != gtin {
            let detail = wording::gtin_mismatch(order, &state.gtin, gtin);
            return self.reject(event, None, Reason::GtinMismatch, detail);
        }
        let remaining = if state.cancelled {
            0
        } else {
            state.quantity - state.emitted
        };
        if codes.len() as u64 > remaining {
            let detail = wording::order_exceeded(codes.len(), remaining, order);
            return self.reject(event, None, Reason::OrderExceeded, detail);
        }
        // The emission passed its whole-event checks: every code it names counts against
        // the order, whatever becomes of each code (docs/ARCHITECTURE.md).
        let (order_period, completed_within, completed) = {
            let state = self.account(&event.account).orders.get_mut(order).expect("checked");
            state.emitted += codes.len() as u64;
            let completed = state.emitted == state.quantity && !codes.is_empty();
            (state.period, completed && !state.late, completed)
        };
        if completed {
            self.account(&event.account).pending_orders -= 1;
            let finished = if completed_within {
                SlaCounts::EMITTED_WITHIN_4H
            } else {
                SlaCounts::FINISHED
            };
            self.aggregates.change_sla(&event.account, order_period, now, finished);
            self.touch_account(&event.account, event.ts);
        }
        let mut created = Vec::new();
        for code in codes {
            if !is_code(code) {
                self.reject(event, Some(code), Reason::BadCode, wording::bad_code());
            } else if self.codes.contains_key(code) {
                self.reject(event, Some(code), Reason::AlreadyExists, wording::code_exists());
            } else {
                self.codes.insert(
                    code.clone(),
                    CodeState {
                        account: event.account.clone(),
                        gtin: gtin.to_string(),
                        status: Status::Emitted,
                        paid: false,
                        final_at: None,
                    },
                );
                created.push(code.clone());
            }
        }
        if created.is_empty() {
            return;
        }
        let period = self.aggregates.accounting_period(event.ts, now);
        self.aggregates
            .add_emitted(&event.account, period, gtin, created.len() as u64, now);
        self.emit(Output::Status(StatusChange {
            event: Some(event.id.clone()),
            account: event.account.clone(),
            gtin: gtin.to_string(),
            from: None,
            to: Status::Emitted,
            ts: event.ts,
            late: pending.late,
            codes: created.clone(),
        }));
        let id = self.next_emission;
        self.next_emission += 1;
        let expiry = self
            .config
            .calendar
            .deadline_after(event.ts.local_date(), self.config.expiry_working_days);
        self.emissions.insert(
            id,
            Emission {
                account: event.account.clone(),
                gtin: gtin.to_string(),
                codes: created.clone(),
            },
        );
        // An expiry at or behind the emission's effective time (an emission arriving over 30
        // working days late) is decided at once, before the held commands it releases and
        // any later event of the instant: they meet EXPIRED codes (DOMAIN.md §8).
        self.schedule(expiry.max(now), Timer::Expiry(id));
        self.fire_due(now);
        self.resolve_holds(&created, now);
    }

    /// A held code takes effect right after its emission; a command of another account
    /// is refused `WRONG_ACCOUNT` (DOMAIN.md §8).
    fn resolve_holds(&mut self, created: &[String], now: Ts) {
        let mut resolved: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for code in created {
            for hold in self.holds_by_code.remove(code).unwrap_or_default() {
                resolved.entry(hold).or_default().push(code.clone());
            }
        }
        for (id, emitted) in resolved {
            let hold = self.holds.get_mut(&id).expect("indexed hold exists");
            // The released codes join the queue in the command's order (DOMAIN.md §3: "the
            // order of codes inside the report"), not the emission's.
            let (codes, waiting): (Vec<String>, Vec<String>) = std::mem::take(&mut hold.codes)
                .into_iter()
                .partition(|c| emitted.contains(c));
            hold.codes = waiting;
            let pending = hold.pending.clone();
            if hold.codes.is_empty() {
                let deadline = hold.deadline;
                self.holds.remove(&id);
                self.hold_deadlines.remove(&(deadline, id));
            }
            self.apply_code_command(&pending, &codes, now, false);
            // A settlement of the released codes may have moved the dormant anchor over a
            // year back: decided now, like after any event.
            self.fire_due(now);
        }
    }

    fn end_hold(&mut self, id: u64) {
        let Some(hold) = self.holds.remove(&id) else { return };
        for code in &hold.codes {
            if let Some(ids) = self.holds_by_code.get_mut(code) {
                ids.retain(|h| *h != id);
                if ids.is_empty() {
                    self.holds_by_code.remove(code);
                }
            }
            let detail = wording::unknown_code(hold.deadline);
            self.reject(&hold.pending.event, Some(code), Reason::UnknownCode, detail);
        }
    }

    /// Applies an application, dropout, defect or introduction to `codes`. Unknown codes
    /// are held when `may_hold` (a first attempt), never when resolving a hold.
    fn apply_code_command(&mut self, pending: &Pending, codes: &[String], now: Ts, may_hold: bool) {
        let event = &pending.event;
        let kind = event.kind();
        let mut changes: Vec<(String, Status, String)> = Vec::new(); // (gtin, from, code)
        let mut applied: Vec<String> = Vec::new();
        let mut held: Vec<String> = Vec::new();
        for code in codes {
            if !is_code(code) {
                self.reject(event, Some(code), Reason::BadCode, wording::bad_code());
                continue;
            }
            let Some(state) = self.codes.get(code) else {
                debug_assert!(may_hold, "a resolved hold names a code that exists");
                held.push(code.clone());
                continue;
            };
            if state.account != event.account {
                self.reject(event, Some(code), Reason::WrongAccount, wording::wrong_account());
                continue;
            }
            let from = state.status;
            let to = match (kind, from) {
                (Kind::Application, Status::Emitted) => Status::AppliedUnpaid,
                (Kind::Dropout, Status::Emitted) => Status::Rejected,
                (Kind::Defect, Status::AppliedUnpaid | Status::AppliedPaid) => Status::Annulled,
                (Kind::Introduction, Status::AppliedPaid) => Status::Introduced,
                (Kind::Introduction, Status::AppliedUnpaid) => {
                    self.reject(event, Some(code), Reason::CodeUnpaid, wording::code_unpaid());
                    continue;
                }
                _ => {
                    let detail = wording::invalid_transition(kind, from);
                    self.reject(event, Some(code), Reason::InvalidTransition, detail);
                    continue;
                }
            };
            let gtin = state.gtin.clone();
            let state = self.codes.get_mut(code).expect("exists");
            state.status = to;
            if matches!(to, Status::Rejected | Status::Introduced | Status::Annulled) {
                state.final_at = Some(now);
            }
            // An annulled code still in the FIFO queue is kept until it is paid.
            if matches!(to, Status::Rejected | Status::Introduced) || (to == Status::Annulled && state.paid) {
                self.schedule_retention(code, now);
            }
            if kind == Kind::Application {
                applied.push(code.clone());
                let tariff = self.tariffs.at(event.ts);
                let period = self.aggregates.accounting_period(event.ts, now);
                self.aggregates
                    .add_applied(&event.account, period, &gtin, event.ts, now);
                let account = self.account(&event.account);
                account.queue.push_back(Queued {
                    code: code.clone(),
                    gtin: gtin.clone(),
                    net: tariff.net_price,
                    vat: tariff.vat(),
                    application_ts: event.ts,
                });
                account.unpaid_amount += tariff.charge();
            } else {
                changes.push((gtin, from, code.clone()));
            }
        }
        if !held.is_empty() {
            self.hold(pending, held, now);
        }
        if kind == Kind::Application {
            if applied.is_empty() {
                return;
            }
            self.touch_account(&event.account, event.ts);
            let paid: BTreeMap<String, String> = self.settle(pending, now).into_iter().collect();
            // Codes of this report go straight from EMITTED to paid or unpaid; codes of
            // earlier reports that this one's settlement paid (none while the FIFO
            // invariant holds) would go from APPLIED_UNPAID.
            let mut groups: BTreeMap<(String, Status, Status), Vec<String>> = BTreeMap::new();
            for code in &applied {
                let gtin = self.codes[code].gtin.clone();
                let to = if paid.contains_key(code) {
                    Status::AppliedPaid
                } else {
                    Status::AppliedUnpaid
                };
                groups
                    .entry((gtin, Status::Emitted, to))
                    .or_default()
                    .push(code.clone());
            }
            for (code, gtin) in &paid {
                if !applied.contains(code) {
                    groups
                        .entry((gtin.clone(), Status::AppliedUnpaid, Status::AppliedPaid))
                        .or_default()
                        .push(code.clone());
                }
            }
            self.emit_groups(pending, groups);
        } else if !changes.is_empty() {
            let to = match kind {
                Kind::Dropout => Status::Rejected,
                Kind::Defect => Status::Annulled,
                _ => Status::Introduced,
            };
            let mut groups: BTreeMap<(String, Status, Status), Vec<String>> = BTreeMap::new();
            for (gtin, from, code) in changes {
                groups.entry((gtin, from, to)).or_default().push(code);
            }
            self.emit_groups(pending, groups);
        }
    }

    fn hold(&mut self, pending: &Pending, codes: Vec<String>, now: Ts) {
        let id = self.next_hold;
        self.next_hold += 1;
        let deadline = pending.event.ts.plus_millis(self.config.hold_ms).max(now);
        for code in &codes {
            self.holds_by_code.entry(code.clone()).or_default().push(id);
        }
        let copy = Pending {
            effective: pending.effective,
            late: pending.late,
            event: pending.event.clone(),
        };
        self.holds.insert(
            id,
            Hold {
                pending: copy,
                deadline,
                codes,
            },
        );
        self.hold_deadlines.insert((deadline, id));
    }

    fn emit_groups(&mut self, pending: &Pending, groups: BTreeMap<(String, Status, Status), Vec<String>>) {
        for ((gtin, from, to), codes) in groups {
            self.emit(Output::Status(StatusChange {
                event: Some(pending.event.id.clone()),
                account: pending.event.account.clone(),
                gtin,
                from: Some(from),
                to,
                ts: pending.event.ts,
                late: pending.late,
                codes,
            }));
        }
    }

    /// Status records for codes a credit's settlement paid (annulled codes stay annulled).
    fn emit_status_groups(&mut self, pending: &Pending, paid: impl Iterator<Item = (String, Status, String)>) {
        let mut groups: BTreeMap<(String, Status, Status), Vec<String>> = BTreeMap::new();
        for (gtin, from, code) in paid {
            groups.entry((gtin, from, Status::AppliedPaid)).or_default().push(code);
        }
        self.emit_groups(pending, groups);
    }

    /// FIFO settlement (DOMAIN.md §3): pay from the head while the balance covers it,
    /// never skipping the head. Returns the (code, gtin) pairs paid whose status moves to
    /// `APPLIED_PAID` (annulled codes are paid but keep their status).
    fn settle(&mut self, pending: &Pending, now: Ts) -> Vec<(String, String)> {
        let event = &pending.event;
        let period = self.aggregates.accounting_period(event.ts, now);
        let mut paid_codes = Vec::new();
        let mut charged = Money::ZERO;
        let mut count = 0u64;
        loop {
            let account = self.account(&event.account);
            let Some(head) = account.queue.front() else { break };
            if account.balance < head.charge() {
                break;
            }
            let head = account.queue.pop_front().expect("peeked");
            account.balance -= head.charge();
            account.unpaid_amount -= head.charge();
            debug_assert!(account.balance >= Money::ZERO);
            charged += head.charge();
            count += 1;
            self.aggregates
                .add_paid(&event.account, period, &head.gtin, head.net, head.vat, now);
            let state = self.codes.get_mut(&head.code).expect("queued codes exist");
            state.paid = true;
            match state.status {
                Status::AppliedUnpaid => {
                    state.status = Status::AppliedPaid;
                    paid_codes.push((head.code.clone(), head.gtin.clone()));
                }
                Status::Annulled => self.schedule_retention(&head.code, now),
                other => unreachable!("queued code in status {other:?}"),
            }
        }
        if count == 0 {
            return paid_codes;
        }
        self.summary.charged += charged;
        self.aggregates.add_movement(
            &event.account,
            period,
            Movements {
                services: charged,
                ..Movements::default()
            },
            now,
        );
        self.ledger(pending, Entry::Charge, charged, Some(count), period);
        self.move_dormant_anchor(&event.account, event.ts, now);
        self.touch_account(&event.account, event.ts);
        paid_codes
    }

    /// The account's balance record, when what it shows changed.
    fn emit_balance(&mut self, name: &str, now: Ts) {
        let account = &self.accounts[name];
        let shown = (
            account.balance,
            account.queue.len() as u64,
            account.unpaid_amount,
            account.pending_orders,
        );
        if account.last_emitted == Some(shown) {
            return;
        }
        let record = BalanceRecord {
            account: name.to_string(),
            balance: shown.0,
            unpaid_codes: shown.1,
            unpaid_amount: shown.2,
            pending_orders: shown.3,
            ts: account.last_change_ts.unwrap_or(now),
            rev: account.balance_revs + 1,
        };
        let account = self.accounts.get_mut(name).expect("exists");
        account.last_emitted = Some(shown);
        account.balance_revs += 1;
        self.emit(Output::Balance(record));
    }

    fn end_instant(&mut self, now: Ts) {
        for name in std::mem::take(&mut self.dirty_accounts) {
            self.emit_balance(&name, now);
        }
        let mut records = Vec::new();
        self.aggregates.flush(now, |record| records.push(record));
        for record in records {
            // A period that got its first record (a late event before the first instant's
            // month) must still close.
            let period = record.key.period;
            let close = period.close_instant(self.config.close_after_days);
            if close > now {
                self.schedule(close, Timer::Close(period));
            }
            self.emit(Output::Period(record));
        }
    }
}

#[cfg(test)]
mod tests;
