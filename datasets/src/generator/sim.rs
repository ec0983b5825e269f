//! The simulation: time advances activity by activity, every account's state is a handful
//! of counters and serial ranges, and events are written the moment they happen.
//!
//! In: the population ([`super::accounts`]) and the horizon (`months` months from
//! `start`, plus the days until the last month closes). Out: events into [`Writers`], in
//! nondecreasing `ts` per partition.
//!
//! A priority queue holds each account's next activities (a line's next report, the next
//! payment, an order's next emission step, …), keyed by (time, kind rank, sequence).
//! Because the key carries the rank of the first event an activity writes, two activities
//! of one account at the same instant run in the order an engine applies their events
//! (DOMAIN.md §4: effective time, kind rank, id; ids rise in write order), so the
//! generator's model of each account (stock, applied codes, [`Wallet`]) is the engine's.
//!
//! Rules the normal traffic keeps, so that it produces none of the injected reasons:
//! a command names only codes of the account's own emissions, never before the emission
//! and never later than [`APPLY_WINDOW_MS`] after it (28 calendar days: under 20 working
//! days, far inside the 30-working-day expiry even across Nauryz or New Year); codes past
//! that window are dropped from the model and never named again, so they expire. Dropouts
//! name emitted codes only, defects and introductions applied ones only (introductions
//! paid ones only, except the deliberate `CODE_UNPAID` attempts). Orders are emitted at
//! most in full; only pending orders are cancelled. Amounts are > 0 with ≤ 2 decimals.
//!
//! Late orders: about [`LATE_ORDER_RATE`] of orders (and the first order that can be, so
//! that every dataset reaching past its first few hours has one) come from an order
//! station that uploads them hours late. Such an order is written when the simulation
//! places it, with a `ts` 4 h 1 min to about 8 h behind its partition's high-water mark
//! ([`Writers::write_late_order`]), so it takes effect after its own 4-hour deadline and is
//! `late` in the SLA at once; its emissions follow as for any order, after it is written.
//! It is not placed when the account wrote a refund within the lateness of that high-water
//! mark: the order would take effect before the refund, which would then meet a pending
//! order the model did not see. The choice comes from a stream of its own, so the rest of
//! the traffic is what it would be without late orders. The simulation counts the orders
//! still pending when their deadline comes ([`Outcome::sla_late`]): the SLA `late` figures
//! an engine reports.
//!
//! Money: a payment held back to be written out of order is credited to the model only
//! once it is written, which is never earlier than an engine applies it; paid codes being
//! a prefix fixed by the totals ([`super::wallet`]), the model then sees at most the
//! engine's paid codes, so introducing a code paid in the model never meets `CODE_UNPAID`.
//! Decisions that need the exact balance (refunds, the deliberate `CODE_UNPAID`
//! introductions) wait while any of the account's credits is still held.

use super::accounts::{AccountPlan, Funding, Profile, CHANNELS, REPORT_CODES_MIN};
use super::codes::{render_code, UNEMITTED_SERIAL_BASE};
use super::rng::Rng;
use super::stock::{Applied, AppliedRun, Segment, Stock};
use super::wallet::{Wallet, UNITS_PER_TENGE, UNITS_PER_TIYN};
use super::writer::{Lateness, Meta, Writers, LATENESS_MS, SLA_MS};
use chrono::{Days, NaiveDate};
use markledger_operators::event::{Body, DecimalField, Kind};
use markledger_operators::time::{day_start, MILLIS_PER_DAY, MILLIS_PER_HOUR, MILLIS_PER_SECOND};
use markledger_operators::{Event, Period, Reason, Ts, WorkingCalendar};
use rust_decimal::Decimal;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::io;

/// Emitted codes are applied or dropped within this long after their emission, else
/// never named again (they expire).
pub const APPLY_WINDOW_MS: i64 = 28 * MILLIS_PER_DAY;
/// Largest order (codes of one GTIN).
pub const ORDER_CODES_MAX: u64 = 150_000;
/// Codes per emission event: a large order arrives in several same-instant blocks.
pub const EMISSION_EVENT_CODES_MAX: u64 = 10_000;
/// Codes per application report.
pub const REPORT_CODES_MAX: u64 = 10_000;
/// Codes per introduction event.
pub const INTRODUCTION_CODES_MAX: u64 = 10_000;
/// Introduction events per shipment activity.
pub const INTRODUCTIONS_PER_SHIPMENT_MAX: u32 = 30;
/// Codes per defect event.
pub const DEFECT_CODES_MAX: u64 = 1_000;
/// Recent emissions remembered as sources of `WRONG_ACCOUNT` codes.
pub const RECENT_EMISSIONS_MAX: usize = 512;
/// A foreign code is named only this long after its emission, so the emission has
/// certainly taken effect in any engine.
pub const FOREIGN_CODE_AGE_MIN_MS: i64 = 10 * 60_000;
/// Share of orders uploaded late, past their own 4-hour deadline.
pub const LATE_ORDER_RATE: f64 = 0.02;
/// A late order's `ts` is this much more than the SLA plus the lateness behind its
/// partition's high-water mark, at least …
const LATE_ORDER_EXTRA_MIN_MS: i64 = 60_000;
/// … and at most.
const LATE_ORDER_EXTRA_MAX_MS: i64 = 4 * MILLIS_PER_HOUR;
/// Late orders wanted and not yet placed (an order that cannot be late leaves it wanted
/// for the next), at most.
const LATE_ORDERS_WANTED_MAX: u32 = 16;
/// The random stream late orders are chosen from (accounts use their index, the injector
/// `u64::MAX`).
const LATE_ORDER_STREAM: u64 = u64::MAX - 1;
/// The random stream that picks the accounts whose contract ends (DOMAIN.md §9): its own,
/// so `--terminate-rate 0` leaves every other draw, and the files, as before.
const TERMINATE_STREAM: u64 = u64::MAX - 2;
/// Smallest payment an account makes, in tenge (smaller top-ups wait for the next one).
const PAYMENT_TENGE_MIN: i64 = 500;
/// An importer retries a report that found no codes at most this many times.
const REPORT_RETRIES_MAX: u32 = 5;

/// Charges in model units: 2.68 × 1.12 before the tariff change, 2.95 × 1.12 after.
const CHARGE_BEFORE_UNITS: i64 = 30_016;
const CHARGE_AFTER_UNITS: i64 = 33_040;

/// Dropout reasons order stations send.
const DROPOUT_REASONS: [&str; 6] = [
    "print defect",
    "damaged label",
    "line jam",
    "camera reading failure",
    "ribbon break",
    "test print",
];
/// Compensation reasons.
const COMPENSATION_REASONS: [&str; 4] = [
    "order station outage",
    "emission SLA breach",
    "service unavailable during maintenance",
    "duplicate charge correction",
];

/// The time span the simulation covers.
#[derive(Clone, Debug)]
pub struct Horizon {
    /// 00:00 local on the first day of the first month.
    pub begin: Ts,
    /// Nothing happens after this: a little after the last month's close instant, so
    /// every generated month closes in a file run.
    pub end: Ts,
    /// Working days in `begin..end`.
    pub working_days: Vec<NaiveDate>,
    /// The new tariff takes effect here (the start of the second month).
    pub tariff_from: Ts,
    /// The tariff event's own `ts` (the 15th of the first month, 10:00).
    pub tariff_announced: Ts,
}

impl Horizon {
    /// The horizon of `months` months from `start`.
    pub fn new(start: Period, months: u32, calendar: &WorkingCalendar) -> Horizon {
        let mut last = start;
        for _ in 1..months {
            last = last.next();
        }
        let begin = start.start();
        let end = last.close_instant(7).plus_millis(10 * MILLIS_PER_HOUR);
        let mut working_days = Vec::new();
        let mut day = start.first_day();
        while day_start(day) < end {
            if calendar.is_working_day(day) {
                working_days.push(day);
            }
            day = day.succ_opt().unwrap_or(day);
        }
        let tariff_from = start.next().start();
        let fifteenth = start
            .first_day()
            .checked_add_days(Days::new(14))
            .unwrap_or(start.first_day());
        let tariff_announced = day_start(fifteenth).plus_millis(10 * MILLIS_PER_HOUR);
        Horizon {
            begin,
            end,
            working_days,
            tariff_from,
            tariff_announced,
        }
    }
}

/// The account whose own activity this is (stopped once it ends its contract), if any.
fn own_activity(activity: &Activity) -> Option<u32> {
    match *activity {
        Activity::Pay(account)
        | Activity::Compensate(account)
        | Activity::ImporterReport(account)
        | Activity::Ship(account)
        | Activity::Refund(account) => Some(account),
        Activity::SecondPart { account, .. }
        | Activity::PlaceOrders { account, .. }
        | Activity::OrderStep { account, .. }
        | Activity::LineTick { account, .. } => Some(account),
        Activity::Tariff
        | Activity::Final
        | Activity::Terminate(_)
        | Activity::SettleForTermination(_)
        | Activity::Export(_)
        | Activity::RefundAfterTermination(_) => None,
    }
}

/// Something that will happen to an account at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    Tariff,
    Final,
    Pay(u32),
    SecondPart {
        account: u32,
        units: i64,
        credit: Credit,
    },
    Compensate(u32),
    PlaceOrders {
        account: u32,
        product: u16,
        needed_at: Ts,
        codes: u64,
    },
    OrderStep {
        account: u32,
        order: u32,
    },
    LineTick {
        account: u32,
        line: u16,
    },
    ImporterReport(u32),
    Ship(u32),
    Refund(u32),
    /// The account asks to end its contract (DOMAIN.md §9).
    Terminate(u32),
    /// A refused termination is followed by paying what is owed and cancelling orders.
    SettleForTermination(u32),
    /// An `export` request (before termination, within its window, or after deletion).
    Export(u32),
    /// A refund of part of the balance after termination.
    RefundAfterTermination(u32),
}

/// Where an account stands with DOMAIN.md §9.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Ending {
    /// Its contract runs.
    #[default]
    Active,
    /// It asked to end it: no more production, payments or refunds of its own.
    Closing,
    /// Terminated: only the refund and exports the simulation plans follow.
    Terminated,
}

#[derive(Debug)]
struct Scheduled {
    at: Ts,
    rank: u8,
    sequence: u64,
    activity: Activity,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.rank, self.sequence).cmp(&(other.at, other.rank, other.sequence))
    }
}

/// What a credit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credit {
    Payment(&'static str),
    Compensation(&'static str),
}

/// One step of an order's emission plan.
#[derive(Clone, Copy, Debug)]
enum Step {
    Emit { codes: u64, delay_ms: i64 },
    Cancel { delay_ms: i64 },
}

#[derive(Clone, Debug)]
struct Order {
    id: String,
    product: u16,
    quantity: u64,
    emitted: u64,
    steps: VecDeque<Step>,
    /// Its `ts` + 4 h: still pending then, it is late.
    deadline: Ts,
}

#[derive(Clone, Copy, Debug)]
struct Run {
    product: u16,
    left: u64,
    shift_end: Ts,
}

#[derive(Clone, Debug, Default)]
struct LineState {
    budget_left: u64,
    runs_left: u64,
    runs_total: u64,
    runs_done: u64,
    run: Option<Run>,
    dropout_debt: f64,
    dropout_batch: f64,
}

#[derive(Clone, Copy, Debug)]
struct PlannedReport {
    product: u16,
    codes: u64,
    retries: u32,
}

#[derive(Clone, Debug, Default)]
struct ImporterState {
    budget_left: u64,
    reports_left: u64,
    reports_total: u64,
    reports_done: u64,
    next: Option<PlannedReport>,
}

struct Account {
    plan: AccountPlan,
    rng: Rng,
    stock: Vec<Stock>,
    next_serial: Vec<u64>,
    /// Codes ordered per product and not yet emitted or cancelled.
    awaiting: Vec<u64>,
    applied: Applied,
    wallet: Wallet,
    orders: BTreeMap<u32, Order>,
    next_order: u32,
    next_report: u32,
    lines: Vec<LineState>,
    importer: ImporterState,
    defect_debt: f64,
    /// Held (out-of-order) credits not yet written: while any is in flight the model may
    /// see less money than an engine, so nothing is decided on the exact balance.
    late_in_flight: u32,
    expected_daily_units: i64,
    payments_made: u32,
    /// The `ts` of the account's latest refund written.
    last_refund: Option<Ts>,
    /// DOMAIN.md §9.
    ending: Ending,
    /// When its termination was accepted.
    terminated_at: Option<Ts>,
    /// It asked to terminate at least once.
    tried_to_terminate: bool,
}

#[derive(Clone, Copy, Debug)]
struct RecentEmission {
    account: u32,
    product: u16,
    lo: u64,
    hi: u64,
    at: Ts,
}

/// What the simulation reports besides the files.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Refusals the normal traffic carries on purpose.
    pub intended: BTreeMap<Reason, u64>,
    /// Codes left unapplied on purpose.
    pub codes_left_to_expire: u64,
    /// Orders emitted in full or cancelled at or after their 4-hour deadline (late orders
    /// always are): the SLA `late` figures, without the orders never finished.
    pub sla_late: u64,
    /// The deadlines of orders never finished (their last step fell after the horizon):
    /// late if the run's watermark reaches them.
    pub unfinished_deadlines: Vec<Ts>,
    /// Accounts whose termination was accepted (DOMAIN.md §9).
    pub terminated: u64,
    /// Export requests accepted (delivered if the data reaches the close of the month of
    /// termination).
    pub exports_accepted: u64,
}

/// The running simulation.
pub struct Simulation<'c> {
    calendar: &'c WorkingCalendar,
    horizon: Horizon,
    accounts: Vec<Account>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    sequence: u64,
    writers: Writers,
    recent_emissions: VecDeque<RecentEmission>,
    next_unemitted: u64,
    outcome: Outcome,
    segments: Vec<Segment>,
    runs: Vec<AppliedRun>,
    code_text: String,
    /// Which orders arrive late, and how late.
    late_orders: Rng,
    /// Late orders wanted: one from the start, one more with each draw of [`LATE_ORDER_RATE`].
    late_orders_wanted: u32,
}

impl<'c> Simulation<'c> {
    /// Sets up the accounts and their first activities.
    pub fn new(
        seed: u64,
        plans: Vec<AccountPlan>,
        horizon: Horizon,
        calendar: &'c WorkingCalendar,
        writers: Writers,
        terminate_rate: f64,
    ) -> Simulation<'c> {
        let working_days = horizon.working_days.len().max(1) as u64;
        let accounts = plans
            .into_iter()
            .map(|plan| {
                let mut rng = Rng::stream(seed, u64::from(plan.index));
                let products = plan.products.len();
                let runs_min = match plan.profile {
                    Profile::Factory => 5_000,
                    _ => 2_000,
                };
                let line_count = plan.lines.len().max(1) as u64;
                let lines = (0..plan.lines.len() as u64)
                    .map(|line| {
                        let budget = plan.budget_codes / line_count + u64::from(line < plan.budget_codes % line_count);
                        let runs = (budget / runs_min).clamp(1, working_days);
                        LineState {
                            budget_left: budget,
                            runs_left: runs,
                            runs_total: runs,
                            dropout_batch: rng.uniform(3.0, 25.0),
                            ..LineState::default()
                        }
                    })
                    .collect();
                let importer = if plan.profile == Profile::Importer {
                    let average = rng.between(300, 2_500);
                    let reports = (plan.budget_codes / average).clamp(1, (working_days / 2).max(1));
                    ImporterState {
                        budget_left: plan.budget_codes,
                        reports_left: reports,
                        reports_total: reports,
                        ..ImporterState::default()
                    }
                } else {
                    ImporterState::default()
                };
                let expected_daily_units =
                    (plan.budget_codes as i64 * CHARGE_BEFORE_UNITS / working_days as i64).max(10 * UNITS_PER_TENGE);
                Account {
                    rng,
                    stock: vec![Stock::default(); products],
                    next_serial: vec![0; products],
                    awaiting: vec![0; products],
                    applied: Applied::default(),
                    wallet: Wallet::default(),
                    orders: BTreeMap::new(),
                    next_order: 0,
                    next_report: 0,
                    lines,
                    importer,
                    defect_debt: 0.0,
                    late_in_flight: 0,
                    expected_daily_units,
                    payments_made: 0,
                    last_refund: None,
                    ending: Ending::Active,
                    terminated_at: None,
                    tried_to_terminate: false,
                    plan,
                }
            })
            .collect();
        let mut simulation = Simulation {
            calendar,
            horizon,
            accounts,
            queue: BinaryHeap::new(),
            sequence: 0,
            writers,
            recent_emissions: VecDeque::with_capacity(RECENT_EMISSIONS_MAX),
            next_unemitted: 0,
            outcome: Outcome::default(),
            segments: Vec::new(),
            runs: Vec::new(),
            code_text: String::new(),
            late_orders: Rng::stream(seed, LATE_ORDER_STREAM),
            late_orders_wanted: 1,
        };
        simulation.schedule_first_activities();
        simulation.schedule_terminations(seed, terminate_rate);
        simulation
    }

    /// Picks the accounts that end their contract (never account 0, which makes the final
    /// top-up) and when: a working day in the first half of the horizon, so the month after
    /// usually lies inside the data. A fifth also ask for an export the day before.
    fn schedule_terminations(&mut self, seed: u64, rate: f64) {
        if rate <= 0.0 {
            return;
        }
        let mut rng = Rng::stream(seed, TERMINATE_STREAM);
        let span = self.horizon.working_days.len() as u64;
        for index in 1..self.accounts.len() as u32 {
            if !rng.chance(rate) || span < 4 {
                continue;
            }
            let day = rng.between(span / 4, span / 2);
            let at = local_at(
                self.horizon.working_days[day as usize],
                rng.between_i64(10 * 3_600, 16 * 3_600),
            );
            if rng.chance(0.2) {
                self.schedule(at.minus_millis(MILLIS_PER_DAY), Activity::Export(index));
            }
            self.schedule(at, Activity::Terminate(index));
        }
    }

    /// Whether an account's own activity stops (it is ending its contract).
    fn ending(&self, index: u32) -> bool {
        self.accounts[index as usize].ending != Ending::Active
    }

    /// `terminate`: refused while the model sees unpaid codes or a pending order (then
    /// settled and tried again the next day), else accepted: exports and a refund follow.
    fn terminate(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        if account.ending == Ending::Terminated {
            return Ok(());
        }
        account.ending = Ending::Closing;
        if account.late_in_flight > 0 {
            // A credit is in flight: the model may see less money than the engine.
            self.schedule(now.plus_millis(MILLIS_PER_DAY), Activity::Terminate(index));
            return Ok(());
        }
        let first_attempt = account.terminated_at.is_none() && !account.tried_to_terminate;
        account.tried_to_terminate = true;
        if first_attempt && account.wallet.unpaid_codes() == 0 && account.orders.is_empty() && account.rng.chance(0.4) {
            // Some clients still have an order open when they ask: refused first.
            self.last_order(index, now)?;
        }
        let account = &self.accounts[index as usize];
        let refused = if account.wallet.unpaid_codes() > 0 {
            Some(Reason::TerminationUnpaidCodes)
        } else if !account.orders.is_empty() {
            Some(Reason::TerminationPendingOrder)
        } else {
            None
        };
        let event = self.event(index, now, Body::Terminate);
        // No injection after a §9 event: the account's later events would be refused
        // ACCOUNT_TERMINATED instead of their injected reason.
        self.write(index, event, Meta::bad())?;
        if let Some(reason) = refused {
            *self.outcome.intended.entry(reason).or_default() += 1;
            self.schedule(
                now.plus_millis(2 * MILLIS_PER_HOUR),
                Activity::SettleForTermination(index),
            );
            return Ok(());
        }
        self.outcome.terminated += 1;
        let account = &mut self.accounts[index as usize];
        account.ending = Ending::Terminated;
        account.terminated_at = Some(now);
        let rng = &mut account.rng;
        let inside = rng.chance(0.7);
        let inside_at = now.plus_millis(rng.between_i64(1, 20) * MILLIS_PER_DAY);
        let after = rng.chance(0.2);
        let refund = rng.chance(0.5);
        let refund_at = now.plus_millis(rng.between_i64(1, 10) * MILLIS_PER_DAY);
        if inside {
            self.schedule(inside_at, Activity::Export(index));
        }
        if after {
            // After the deletion (at most a month and 8 days after T): ACCOUNT_TERMINATED.
            self.schedule(now.plus_millis(40 * MILLIS_PER_DAY), Activity::Export(index));
        }
        if refund {
            self.schedule(refund_at, Activity::RefundAfterTermination(index));
        }
        Ok(())
    }

    /// One more order of one code, placed just before a termination request (which it makes
    /// refused `TERMINATION_PENDING_ORDER`); the settlement cancels it.
    fn last_order(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        let number = account.next_order;
        account.next_order += 1;
        let id = format!("ORD-{}-{:06}", account.plan.index, number);
        let gtin = account.plan.products[0].gtin.clone();
        account.awaiting[0] += 1;
        account.orders.insert(
            number,
            Order {
                id: id.clone(),
                product: 0,
                quantity: 1,
                emitted: 0,
                steps: VecDeque::new(),
                deadline: now.plus_millis(4 * MILLIS_PER_HOUR),
            },
        );
        let event = self.event(
            index,
            now,
            Body::Order {
                order: id,
                gtin,
                quantity: 1,
            },
        );
        self.write(index, event, Meta::bad())
    }

    /// After a refused termination: every pending order cancelled, what is owed paid (with
    /// a margin), and the termination asked again an hour later.
    fn settle_for_termination(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let numbers: Vec<u32> = self.accounts[index as usize].orders.keys().copied().collect();
        for number in numbers {
            let account = &mut self.accounts[index as usize];
            let order = account.orders.remove(&number).expect("listed");
            if now >= order.deadline {
                self.outcome.sla_late += 1;
            }
            account.awaiting[order.product as usize] -= order.quantity - order.emitted;
            let event = self.event(index, now, Body::OrderCancel { order: order.id });
            let meta = Meta::bad();
            self.write(index, event, meta)?;
        }
        let owed = self.accounts[index as usize].wallet.unpaid_amount();
        if owed > 0 {
            let units = (owed / UNITS_PER_TIYN + 1) * UNITS_PER_TIYN + 100 * UNITS_PER_TENGE;
            let channel = CHANNELS[self.accounts[index as usize].plan.channel].to_string();
            let event = self.event(
                index,
                now,
                Body::Payment {
                    amount: money(units),
                    channel,
                },
            );
            self.write(index, event, Meta::bad())?;
            self.accounts[index as usize].wallet.credit(units);
        }
        self.schedule(now.plus_millis(MILLIS_PER_HOUR), Activity::Terminate(index));
        Ok(())
    }

    /// `export`: before termination EXPORT_NOT_TERMINATED, within its window accepted,
    /// after the deletion ACCOUNT_TERMINATED.
    fn export(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let event = self.event(index, now, Body::Export);
        self.write(index, event, Meta::bad())?;
        let refused = match self.accounts[index as usize].terminated_at {
            None => Some(Reason::ExportNotTerminated),
            // The deletion comes at or after the window's end.
            Some(at) if now >= at.plus_one_local_month() => Some(Reason::AccountTerminated),
            Some(_) => None,
        };
        match refused {
            Some(reason) => *self.outcome.intended.entry(reason).or_default() += 1,
            None => self.outcome.exports_accepted += 1,
        }
        Ok(())
    }

    /// A refund of part of the balance after termination (accepted: nothing unpaid, no
    /// order pending).
    fn refund_after_termination(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        let balance = account.wallet.balance();
        let units = (balance as f64 * account.rng.uniform(0.2, 1.0)) as i64 / UNITS_PER_TIYN * UNITS_PER_TIYN;
        if units < UNITS_PER_TIYN {
            return Ok(());
        }
        let event = self.event(index, now, Body::Refund { amount: money(units) });
        self.write(index, event, Meta::bad())?;
        self.accounts[index as usize].wallet.debit_refund(units);
        Ok(())
    }

    fn schedule(&mut self, at: Ts, activity: Activity) {
        // Whole seconds, as order stations stamp their messages.
        let at = Ts(at.0.div_euclid(MILLIS_PER_SECOND) * MILLIS_PER_SECOND);
        if at > self.horizon.end {
            return;
        }
        let rank = match activity {
            Activity::Tariff => Kind::Tariff.rank(),
            Activity::Final | Activity::Pay(_) => Kind::Payment.rank(),
            Activity::Compensate(_) => Kind::Compensation.rank(),
            Activity::SecondPart {
                credit: Credit::Payment(_),
                ..
            } => Kind::Payment.rank(),
            Activity::SecondPart {
                credit: Credit::Compensation(_),
                ..
            } => Kind::Compensation.rank(),
            Activity::PlaceOrders { .. } => Kind::Order.rank(),
            Activity::OrderStep { account, order } => {
                match self.accounts[account as usize]
                    .orders
                    .get(&order)
                    .and_then(|o| o.steps.front())
                {
                    Some(Step::Cancel { .. }) => Kind::OrderCancel.rank(),
                    _ => Kind::Emission.rank(),
                }
            }
            Activity::LineTick { .. } | Activity::ImporterReport(_) => Kind::Application.rank(),
            Activity::Ship(_) => Kind::Defect.rank(),
            Activity::Refund(_) | Activity::RefundAfterTermination(_) => Kind::Refund.rank(),
            Activity::Terminate(_) => Kind::Terminate.rank(),
            Activity::SettleForTermination(_) => Kind::Payment.rank(),
            Activity::Export(_) => Kind::Export.rank(),
        };
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            rank,
            sequence: self.sequence,
            activity,
        }));
    }

    fn schedule_first_activities(&mut self) {
        self.schedule(self.horizon.tariff_announced, Activity::Tariff);
        self.schedule(self.horizon.end, Activity::Final);
        let first_day = self
            .horizon
            .working_days
            .first()
            .copied()
            .unwrap_or(self.horizon.begin.local_date());
        for index in 0..self.accounts.len() as u32 {
            let account = &mut self.accounts[index as usize];
            let pay_at = local_at(first_day, account.rng.between_i64(9 * 3_600, 12 * 3_600));
            let compensate = account.rng.chance(0.2);
            let refund_chance = match (account.plan.profile, account.plan.funding) {
                (_, Funding::Short) => 0.15,
                (Profile::Importer, Funding::Prepaid) => 0.12,
                _ => 0.05,
            };
            let refund = account.rng.chance(refund_chance);
            let ship_offset = account.rng.between_i64(MILLIS_PER_HOUR, 6 * MILLIS_PER_HOUR);
            let span = self.horizon.working_days.len() as u64;
            let compensation_day = account.rng.between(0, span.saturating_sub(1));
            let refund_day = account
                .rng
                .between(span.min(8), span.saturating_sub(2).max(span.min(8)));
            let compensation_at = account.rng.between_i64(10 * 3_600, 17 * 3_600);
            let refund_at = account.rng.between_i64(11 * 3_600, 17 * 3_600);
            self.schedule(pay_at, Activity::Pay(index));
            self.schedule(
                self.horizon.begin.plus_millis(8 * MILLIS_PER_HOUR + ship_offset),
                Activity::Ship(index),
            );
            if compensate && span > 0 {
                let at = local_at(self.horizon.working_days[compensation_day as usize], compensation_at);
                self.schedule(at, Activity::Compensate(index));
            }
            if refund && span > 0 {
                let at = local_at(self.horizon.working_days[refund_day as usize], refund_at);
                self.schedule(at, Activity::Refund(index));
            }
            let now = self.horizon.begin;
            for line in 0..self.accounts[index as usize].lines.len() as u16 {
                self.plan_run(index, line, now);
            }
            if self.accounts[index as usize].plan.profile == Profile::Importer {
                self.plan_report(index, now);
            }
        }
    }

    /// Runs to the end of the horizon, calling `progress` with the codes written so far.
    pub fn run(mut self, progress: &mut dyn FnMut(&Writers)) -> io::Result<(Writers, Outcome)> {
        while let Some(Reverse(next)) = self.queue.pop() {
            let now = next.at;
            if let Some(index) = own_activity(&next.activity) {
                if self.ending(index) {
                    // An account ending its contract does nothing more of its own.
                    continue;
                }
            }
            match next.activity {
                Activity::Tariff => self.tariff(now)?,
                Activity::Final => self.final_payment(now)?,
                Activity::Pay(account) => self.pay(account, now)?,
                Activity::Compensate(account) => self.compensate(account, now)?,
                Activity::SecondPart { account, units, credit } => self.credit(account, now, units, credit)?,
                Activity::PlaceOrders {
                    account,
                    product,
                    needed_at,
                    codes,
                } => self.place_orders(account, product, needed_at, codes, now)?,
                Activity::OrderStep { account, order } => self.order_step(account, order, now)?,
                Activity::LineTick { account, line } => self.line_tick(account, line, now)?,
                Activity::ImporterReport(account) => self.importer_report(account, now)?,
                Activity::Ship(account) => self.ship(account, now)?,
                Activity::Refund(account) => self.refund(account, now)?,
                Activity::Terminate(account) => self.terminate(account, now)?,
                Activity::SettleForTermination(account) => self.settle_for_termination(account, now)?,
                Activity::Export(account) => self.export(account, now)?,
                Activity::RefundAfterTermination(account) => self.refund_after_termination(account, now)?,
            }
            self.credit_released();
            progress(&self.writers);
        }
        for account in &self.accounts {
            self.outcome.codes_left_to_expire += account.stock.iter().map(Stock::len).sum::<u64>();
            let deadlines = account.orders.values().map(|order| order.deadline);
            self.outcome.unfinished_deadlines.extend(deadlines);
        }
        Ok((self.writers, self.outcome))
    }

    /// Credits held payments the writers have now written.
    fn credit_released(&mut self) {
        for (account, credit) in self.writers.take_released() {
            let account = &mut self.accounts[account as usize];
            account.wallet.credit(credit);
            account.late_in_flight -= 1;
        }
    }

    fn charge_at(&self, ts: Ts) -> i64 {
        if ts >= self.horizon.tariff_from {
            CHARGE_AFTER_UNITS
        } else {
            CHARGE_BEFORE_UNITS
        }
    }

    // ------------------------------------------------------------------ time helpers

    /// The first instant at or after `at` inside local hours `open..close` (seconds of
    /// the day) of a working day.
    fn within_hours(&self, at: Ts, open: i64, close: i64) -> Ts {
        let date = at.local_date();
        let second = (at.0 - day_start(date).0) / MILLIS_PER_SECOND;
        if self.calendar.is_working_day(date) && second < close {
            return if second >= open { at } else { local_at(date, open) };
        }
        let mut day = date.succ_opt().unwrap_or(date);
        while !self.calendar.is_working_day(day) {
            day = day.succ_opt().unwrap_or(day);
        }
        local_at(day, open)
    }

    /// When to order codes needed at `needed_at`: `lead` before, moved into office hours,
    /// but never after `needed_at` nor before `now`.
    fn order_time(&self, needed_at: Ts, lead: i64, now: Ts) -> Ts {
        let planned = self.within_hours(needed_at.minus_millis(lead), 8 * 3_600, 20 * 3_600);
        let planned = if planned < needed_at {
            planned
        } else {
            needed_at.minus_millis(10 * 60_000)
        };
        planned.max(now.plus_millis(MILLIS_PER_SECOND))
    }

    /// The product a run or report uses: mostly one with codes left over (so leftovers
    /// are used before they expire), else any.
    fn choose_product(&mut self, index: u32, codes: u64, now: Ts) -> u16 {
        let stale_before = now.minus_millis(APPLY_WINDOW_MS / 2);
        let account = &mut self.accounts[index as usize];
        let best = (0..account.stock.len())
            .max_by_key(|&product| (account.stock[product].usable(stale_before), std::cmp::Reverse(product)))
            .unwrap_or(0);
        if account.stock[best].usable(stale_before) * 5 >= codes && account.rng.chance(0.85) {
            best as u16
        } else {
            account.rng.below(account.plan.products.len() as u64) as u16
        }
    }

    /// The index of the first working day of the horizon on or after `date`.
    fn working_day_index(&self, date: NaiveDate) -> usize {
        self.horizon.working_days.partition_point(|day| *day < date)
    }

    /// The `n`-th working day after `date`.
    fn working_days_later(&self, date: NaiveDate, n: u32) -> NaiveDate {
        self.calendar.nth_working_day_after(date, n)
    }

    // ------------------------------------------------------------------ writing

    fn write(&mut self, account: u32, event: Event, meta: Meta) -> io::Result<()> {
        let state = &mut self.accounts[account as usize];
        if matches!(event.body, Body::Refund { .. }) {
            state.last_refund = Some(event.ts);
        }
        let partition = state.plan.partition;
        self.writers.write(partition, event, meta)
    }

    fn event(&self, account: u32, ts: Ts, body: Body) -> Event {
        Event {
            id: String::new(),
            ts,
            account: self.accounts[account as usize].plan.id.clone(),
            body,
        }
    }

    /// Renders the codes of serial ranges of one account's products.
    fn render(&mut self, account: u32, ranges: &[(u16, u64, u64)]) -> Vec<String> {
        let total: u64 = ranges.iter().map(|(_, lo, hi)| hi - lo).sum();
        let mut codes = Vec::with_capacity(total as usize);
        let products = &self.accounts[account as usize].plan.products;
        for &(product, lo, hi) in ranges {
            let product = &products[product as usize];
            for serial in lo..hi {
                render_code(&product.gtin, product.key, serial, &mut self.code_text);
                codes.push(self.code_text.clone());
            }
        }
        codes
    }

    // ------------------------------------------------------------------ activities

    fn tariff(&mut self, now: Ts) -> io::Result<()> {
        let event = Event {
            id: String::new(),
            ts: now,
            account: "*".to_string(),
            body: Body::Tariff {
                effective_from: self.horizon.tariff_from,
                net_price: DecimalField::Parsed(Decimal::new(295, 2)),
                vat_rate: DecimalField::Parsed(Decimal::new(12, 2)),
            },
        };
        self.writers.write(0, event, Meta::bad())
    }

    fn final_payment(&mut self, now: Ts) -> io::Result<()> {
        // One last top-up at the very end, so a file run's watermark passes the last
        // month's close instant whatever else happened.
        if self.accounts.is_empty() {
            return Ok(());
        }
        let amount = 10_000 * UNITS_PER_TENGE;
        let channel = CHANNELS[self.accounts[0].plan.channel].to_string();
        let event = self.event(
            0,
            now,
            Body::Payment {
                amount: money(amount),
                channel,
            },
        );
        let meta = Meta::normal(&event);
        self.write(0, event, meta)?;
        self.accounts[0].wallet.credit(amount);
        Ok(())
    }

    fn pay(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        let rng = &mut account.rng;
        let (low, high) = match account.plan.profile {
            Profile::Factory => (2, 5),
            Profile::Producer => (3, 8),
            Profile::Importer => (5, 15),
        };
        let period_days = rng.between(low, high) as u32;
        let owed = account.wallet.unpaid_amount();
        let balance = account.wallet.balance();
        let expected = account.expected_daily_units * i64::from(period_days);
        let tenge = |units: f64| (units / UNITS_PER_TENGE as f64) as i64;
        let amount_tenge = if account.payments_made == 0 {
            // The first advance: a few weeks of use ahead, a few days for the short of money;
            // an account that will not mark anything yet pays a round advance and waits.
            let days = match account.plan.funding {
                Funding::Prepaid => rng.uniform(10.0, 30.0),
                Funding::Short => rng.uniform(1.0, 4.0),
            };
            if account.plan.budget_codes == 0 {
                rng.between_i64(2, 20) * 1_000
            } else {
                tenge(account.expected_daily_units as f64 * days).max(500)
            }
        } else {
            match account.plan.funding {
                Funding::Prepaid => tenge((owed + expected) as f64 * rng.uniform(1.2, 2.0) - balance as f64),
                Funding::Short if rng.chance(0.25) => {
                    tenge(owed as f64 * rng.uniform(1.0, 1.15) + expected as f64 * 0.3)
                }
                Funding::Short => tenge((owed + expected) as f64 * rng.uniform(0.3, 0.8)),
            }
        };
        let next_day = self.working_days_later(now.local_date(), period_days);
        let account = &mut self.accounts[index as usize];
        let next_at = local_at(next_day, account.rng.between_i64(9 * 3_600, 18 * 3_600));
        if amount_tenge >= PAYMENT_TENGE_MIN {
            let step = if amount_tenge >= 100_000 { 1_000 } else { 100 };
            let mut units = (amount_tenge + step - 1) / step * step * UNITS_PER_TENGE;
            if account.rng.chance(0.4) {
                units += account.rng.between_i64(1, 99) * UNITS_PER_TIYN;
            }
            let channel = if account.rng.chance(0.85) {
                CHANNELS[account.plan.channel]
            } else {
                *account.rng.pick(&CHANNELS)
            };
            account.payments_made += 1;
            self.credit(index, now, units, Credit::Payment(channel))?;
        }
        self.schedule(next_at, Activity::Pay(index));
        Ok(())
    }

    /// Writes a payment or compensation and credits it, or holds it back to be written
    /// out of order (credited once written). A payment held within the lateness is split
    /// in two parts, the second written a few seconds later, so the partition certainly
    /// moves past the first part's `ts` within the lateness, however quiet it is.
    fn credit(&mut self, index: u32, now: Ts, units: i64, credit: Credit) -> io::Result<()> {
        let partition = self.accounts[index as usize].plan.partition;
        let body = |units: i64| match &credit {
            Credit::Payment(channel) => Body::Payment {
                amount: money(units),
                channel: channel.to_string(),
            },
            Credit::Compensation(reason) => Body::Compensation {
                amount: money(units),
                reason: reason.to_string(),
            },
        };
        match self.writers.take_late(partition) {
            Some(Lateness::Within) if units >= 2 * UNITS_PER_TIYN => {
                let first = units / 2 / UNITS_PER_TIYN * UNITS_PER_TIYN;
                let event = self.event(index, now, body(first));
                self.accounts[index as usize].late_in_flight += 1;
                self.writers.hold(partition, event, index, first, Lateness::Within);
                let after = self.accounts[index as usize]
                    .rng
                    .between_i64(MILLIS_PER_SECOND, 4 * MILLIS_PER_SECOND);
                self.schedule(
                    now.plus_millis(after),
                    Activity::SecondPart {
                        account: index,
                        units: units - first,
                        credit,
                    },
                );
            }
            Some(lateness) => {
                let event = self.event(index, now, body(units));
                self.accounts[index as usize].late_in_flight += 1;
                self.writers.hold(partition, event, index, units, lateness);
            }
            None => {
                let event = self.event(index, now, body(units));
                let meta = Meta::normal(&event);
                self.write(index, event, meta)?;
                self.accounts[index as usize].wallet.credit(units);
            }
        }
        Ok(())
    }

    fn compensate(&mut self, index: u32, now: Ts) -> io::Result<()> {
        // A credit in proportion to the account's use: a few hours to a few days of it.
        let account = &mut self.accounts[index as usize];
        let days = account.rng.uniform(0.3, 3.0);
        let tenge = ((account.expected_daily_units as f64 * days) as i64 / UNITS_PER_TENGE).clamp(100, 30_000);
        let units = tenge * UNITS_PER_TENGE + account.rng.between_i64(0, 99) * UNITS_PER_TIYN;
        let reason = *account.rng.pick(&COMPENSATION_REASONS);
        self.credit(index, now, units, Credit::Compensation(reason))
    }

    fn refund(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        if account.late_in_flight > 0 {
            // A credit is in flight: the model's balance may be short of the engine's.
            let tomorrow = now.plus_millis(MILLIS_PER_DAY);
            let at = self.within_hours(tomorrow, 11 * 3_600, 17 * 3_600);
            self.schedule(at, Activity::Refund(index));
            return Ok(());
        }
        let balance = account.wallet.balance();
        let part = |rng: &mut Rng, low: f64, high: f64| {
            let tiyn = (balance as f64 * rng.uniform(low, high)) as i64 / UNITS_PER_TIYN;
            tiyn * UNITS_PER_TIYN
        };
        let (units, refused) = if account.wallet.unpaid_codes() > 0 {
            (
                part(&mut account.rng, 0.1, 0.5).max(100 * UNITS_PER_TENGE),
                Some(Reason::RefundUnpaidCodes),
            )
        } else if !account.orders.is_empty() {
            (
                part(&mut account.rng, 0.1, 0.5).max(100 * UNITS_PER_TENGE),
                Some(Reason::RefundPendingOrder),
            )
        } else if balance >= UNITS_PER_TIYN && account.rng.chance(0.75) {
            (part(&mut account.rng, 0.2, 1.0).max(UNITS_PER_TIYN), None)
        } else {
            let extra = account.rng.between_i64(1_000, 10_000) * UNITS_PER_TENGE;
            (
                (balance + extra) / UNITS_PER_TIYN * UNITS_PER_TIYN,
                Some(Reason::RefundExceedsBalance),
            )
        };
        let event = self.event(index, now, Body::Refund { amount: money(units) });
        match refused {
            None => {
                let meta = Meta::normal(&event);
                self.write(index, event, meta)?;
                self.accounts[index as usize].wallet.debit_refund(units);
            }
            Some(reason) => {
                self.write(index, event, Meta::refused())?;
                *self.outcome.intended.entry(reason).or_default() += 1;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ production

    /// Plans a line's next run: its day, product and size, and the order that feeds it.
    fn plan_run(&mut self, index: u32, line: u16, now: Ts) {
        let today = self.working_day_index(now.local_date());
        let working_days = self.horizon.working_days.len();
        let account = &mut self.accounts[index as usize];
        let state = &account.lines[line as usize];
        if state.runs_left == 0 || state.budget_left == 0 {
            return;
        }
        let slot = (state.runs_done as f64 + account.rng.unit()) * working_days as f64 / state.runs_total as f64;
        let day_index = (slot as usize).max(today);
        if day_index >= working_days {
            return;
        }
        let date = self.horizon.working_days[day_index];
        let mut start = local_at(date, account.rng.between_i64(7 * 3_600, 12 * 3_600));
        if start <= now {
            start = now.plus_millis(account.rng.between_i64(5 * 60_000, 30 * 60_000));
        }
        let lead = account.rng.between_i64(6 * MILLIS_PER_HOUR, 30 * MILLIS_PER_HOUR);
        let state = &mut account.lines[line as usize];
        let size = if state.runs_left == 1 {
            state.budget_left
        } else {
            state.budget_left / state.runs_left
        };
        state.runs_left -= 1;
        state.budget_left -= size;
        let start = self.within_hours(start, 7 * 3_600, 20 * 3_600);
        let product = self.choose_product(index, size, start);
        let shift_end = local_at(start.local_date(), 22 * 3_600);
        self.accounts[index as usize].lines[line as usize].run = Some(Run {
            product,
            left: size,
            shift_end,
        });
        self.schedule(start, Activity::LineTick { account: index, line });
        let order_at = self.order_time(start, lead, now);
        let codes = size + size / 100;
        self.schedule(
            order_at,
            Activity::PlaceOrders {
                account: index,
                product,
                needed_at: start,
                codes,
            },
        );
    }

    fn line_tick(&mut self, index: u32, line: u16, now: Ts) -> io::Result<()> {
        let Some(run) = self.accounts[index as usize].lines[line as usize].run else {
            return Ok(());
        };
        if now >= run.shift_end {
            // The shift is over: the run continues on the next working day.
            let next_day = self.working_days_later(now.local_date(), 1);
            let account = &mut self.accounts[index as usize];
            let start = local_at(next_day, account.rng.between_i64(7 * 3_600, 8 * 3_600));
            let shift_end = local_at(next_day, 22 * 3_600);
            account.lines[line as usize].run = Some(Run { shift_end, ..run });
            self.schedule(start, Activity::LineTick { account: index, line });
            return Ok(());
        }
        let account = &mut self.accounts[index as usize];
        let spec = account.plan.lines[line as usize];
        let interval = (spec.report_every_ms as f64 * account.rng.uniform(0.7, 1.3)) as i64;
        let mut wanted = (spec.packs_per_minute as i64 * interval / 60_000) as u64;
        wanted = wanted.clamp(REPORT_CODES_MIN, REPORT_CODES_MAX).min(run.left);
        if run.left - wanted < REPORT_CODES_MIN && run.left <= REPORT_CODES_MAX {
            wanted = run.left;
        }
        let got = self.take_stock(index, run.product, wanted, now);
        if got == 0 {
            // No codes: the line waits for its emission (ordering now if nothing is on the way).
            if self.accounts[index as usize].awaiting[run.product as usize] == 0 {
                let codes = run.left + run.left / 100;
                self.order_codes(index, run.product, codes, now)?;
            }
            let wait = self.accounts[index as usize].rng.between_i64(2 * 60_000, 6 * 60_000);
            self.schedule(now.plus_millis(wait), Activity::LineTick { account: index, line });
            return Ok(());
        }
        self.write_application(index, run.product, now)?;
        // Spoiled packs: about 0.5 % of codes, reported in batches after the report.
        let account = &mut self.accounts[index as usize];
        let state = &mut account.lines[line as usize];
        state.dropout_debt += got as f64 * account.rng.uniform(0.003, 0.009);
        if state.dropout_debt >= state.dropout_batch {
            let codes = state.dropout_debt as u64;
            let dropped = self.dropout(index, run.product, codes, now)?;
            let account = &mut self.accounts[index as usize];
            let state = &mut account.lines[line as usize];
            state.dropout_debt -= dropped as f64;
            if dropped > 0 {
                state.dropout_batch = account.rng.uniform(3.0, 25.0);
            }
        }
        let account = &mut self.accounts[index as usize];
        account.defect_debt += got as f64 * account.rng.uniform(0.0002, 0.0008);
        let state = &mut account.lines[line as usize];
        let left = run.left - got;
        if left == 0 {
            state.run = None;
            state.runs_done += 1;
            self.plan_run(index, line, now);
        } else {
            state.run = Some(Run { left, ..run });
            self.schedule(
                now.plus_millis(interval.max(MILLIS_PER_SECOND)),
                Activity::LineTick { account: index, line },
            );
        }
        Ok(())
    }

    /// Plans an importer's next report and the order that feeds it.
    fn plan_report(&mut self, index: u32, now: Ts) {
        let today = self.working_day_index(now.local_date());
        let working_days = self.horizon.working_days.len();
        let account = &mut self.accounts[index as usize];
        let state = &account.importer;
        if state.reports_left == 0 || state.budget_left == 0 {
            return;
        }
        let slot = (state.reports_done as f64 + account.rng.unit()) * working_days as f64 / state.reports_total as f64;
        let day_index = (slot as usize).max(today);
        if day_index >= working_days {
            return;
        }
        let date = self.horizon.working_days[day_index];
        let mut at = local_at(date, account.rng.between_i64(10 * 3_600, 17 * 3_600));
        if at <= now {
            at = now.plus_millis(account.rng.between_i64(MILLIS_PER_HOUR, 3 * MILLIS_PER_HOUR));
        }
        let state = &mut account.importer;
        let codes = if state.reports_left == 1 {
            state.budget_left
        } else {
            let share = (state.budget_left / state.reports_left) as f64 * account.rng.uniform(0.5, 1.5);
            (share as u64).clamp(REPORT_CODES_MIN, 5_000).min(state.budget_left)
        };
        state.reports_left -= 1;
        state.budget_left -= codes;
        let codes = codes.min(REPORT_CODES_MAX);
        let lead = account.rng.between_i64(2 * MILLIS_PER_HOUR, 5 * MILLIS_PER_DAY);
        let at = self.within_hours(at, 9 * 3_600, 18 * 3_600);
        let product = self.choose_product(index, codes, at);
        self.accounts[index as usize].importer.next = Some(PlannedReport {
            product,
            codes,
            retries: 0,
        });
        self.schedule(at, Activity::ImporterReport(index));
        let order_at = self.order_time(at, lead, now);
        self.schedule(
            order_at,
            Activity::PlaceOrders {
                account: index,
                product,
                needed_at: at,
                codes,
            },
        );
    }

    fn importer_report(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let Some(report) = self.accounts[index as usize].importer.next else {
            return Ok(());
        };
        let got = self.take_stock(index, report.product, report.codes, now);
        if got == 0 {
            if report.retries < REPORT_RETRIES_MAX {
                if self.accounts[index as usize].awaiting[report.product as usize] == 0 {
                    self.order_codes(index, report.product, report.codes, now)?;
                }
                let account = &mut self.accounts[index as usize];
                account.importer.next = Some(PlannedReport {
                    retries: report.retries + 1,
                    ..report
                });
                let later = now.plus_millis(account.rng.between_i64(3 * MILLIS_PER_HOUR, 20 * MILLIS_PER_HOUR));
                let at = self.within_hours(later, 9 * 3_600, 18 * 3_600);
                self.schedule(at, Activity::ImporterReport(index));
                return Ok(());
            }
        } else {
            self.write_application(index, report.product, now)?;
            let account = &mut self.accounts[index as usize];
            account.defect_debt += got as f64 * account.rng.uniform(0.0002, 0.0008);
            if account.rng.chance(0.15) {
                let codes = account.rng.between(1, (got / 100).max(2));
                self.dropout(index, report.product, codes, now)?;
            }
        }
        let account = &mut self.accounts[index as usize];
        account.importer.next = None;
        account.importer.reports_done += 1;
        self.plan_report(index, now);
        Ok(())
    }

    /// Takes up to `wanted` emitted codes of a product into `self.segments` (dropping
    /// codes past the apply window first); returns how many.
    fn take_stock(&mut self, index: u32, product: u16, wanted: u64, now: Ts) -> u64 {
        let stock = &mut self.accounts[index as usize].stock[product as usize];
        self.outcome.codes_left_to_expire += stock.drop_stale(now.minus_millis(APPLY_WINDOW_MS));
        self.segments.clear();
        let got = stock.take(wanted, &mut self.segments);
        debug_assert!(self.segments.iter().all(|s| self.safe_to_command(s.emitted, now)));
        got
    }

    /// True when a code emitted at `emitted` is still far from its expiry at `now`.
    fn safe_to_command(&self, emitted: Ts, now: Ts) -> bool {
        now < self
            .calendar
            .deadline_after(emitted.local_date(), 30)
            .minus_millis(MILLIS_PER_DAY)
            && emitted <= now
    }

    /// Writes an application of the codes in `self.segments`, adding the injected
    /// unknown and foreign codes the partition is waiting for.
    fn write_application(&mut self, index: u32, product: u16, now: Ts) -> io::Result<()> {
        let charge = self.charge_at(now);
        let segments = std::mem::take(&mut self.segments);
        let account = &mut self.accounts[index as usize];
        let mut sequence = account.wallet.applied_total();
        let mut ranges = Vec::with_capacity(segments.len());
        for segment in &segments {
            account.applied.push(product, segment.lo, segment.hi, sequence);
            sequence += segment.hi - segment.lo;
            ranges.push((product, segment.lo, segment.hi));
        }
        let applied: u64 = segments.iter().map(|s| s.hi - s.lo).sum();
        account.wallet.apply(applied, charge);
        account.next_report += 1;
        let report = format!("R-{}-{:06}", account.plan.index, account.next_report);
        self.segments = segments;
        let mut codes = self.render(index, &ranges);
        let (unknown, foreign) = self.bad_codes(index, product, now);
        let has_bad = !unknown.is_empty() || !foreign.is_empty();
        let (unknown_count, foreign_count) = (unknown.len() as u64, foreign.len() as u64);
        for code in unknown.into_iter().chain(foreign) {
            let at = self.accounts[index as usize].rng.between(0, codes.len() as u64) as usize;
            codes.insert(at, code);
        }
        let event = self.event(index, now, Body::Application { report, codes });
        let meta = if has_bad { Meta::bad() } else { Meta::normal(&event) };
        self.write(index, event, meta)?;
        self.writers.add_injected(Reason::UnknownCode, unknown_count);
        self.writers.add_injected(Reason::WrongAccount, foreign_count);
        Ok(())
    }

    /// Codes nobody emitted and codes of other accounts, as many as the partition's
    /// injector asked for.
    fn bad_codes(&mut self, index: u32, product: u16, now: Ts) -> (Vec<String>, Vec<String>) {
        let partition = self.accounts[index as usize].plan.partition;
        let (unknown_wanted, foreign_wanted) = self.writers.take_wanted_codes(partition);
        let mut unknown = Vec::new();
        for _ in 0..unknown_wanted {
            let count = self.accounts[index as usize].rng.between(1, 3);
            for _ in 0..count {
                let serial = UNEMITTED_SERIAL_BASE + self.next_unemitted;
                self.next_unemitted += 1;
                let product = &self.accounts[index as usize].plan.products[product as usize];
                render_code(&product.gtin, product.key, serial, &mut self.code_text);
                unknown.push(self.code_text.clone());
            }
        }
        let mut foreign = Vec::new();
        let mut used = BTreeSet::new();
        let oldest_allowed = now.minus_millis(FOREIGN_CODE_AGE_MIN_MS);
        let sources: Vec<RecentEmission> = self
            .recent_emissions
            .iter()
            .rev()
            .filter(|e| e.account != index && e.at <= oldest_allowed)
            .take(16)
            .copied()
            .collect();
        if sources.is_empty() {
            self.writers.return_wrong_account(partition, foreign_wanted);
            return (unknown, foreign);
        }
        for _ in 0..foreign_wanted {
            let rng = &mut self.accounts[index as usize].rng;
            let source = *rng.pick(&sources);
            let count = rng.between(1, 2);
            for _ in 0..count {
                let serial = source.lo + self.accounts[index as usize].rng.below(source.hi - source.lo);
                if !used.insert((source.account, source.product, serial)) {
                    continue;
                }
                let product = &self.accounts[source.account as usize].plan.products[source.product as usize];
                render_code(&product.gtin, product.key, serial, &mut self.code_text);
                foreign.push(self.code_text.clone());
            }
        }
        (unknown, foreign)
    }

    /// Writes a dropout of up to `codes` emitted codes of a product; returns how many.
    fn dropout(&mut self, index: u32, product: u16, codes: u64, now: Ts) -> io::Result<u64> {
        let got = self.take_stock(index, product, codes, now);
        if got == 0 {
            return Ok(0);
        }
        let ranges: Vec<(u16, u64, u64)> = self.segments.iter().map(|s| (product, s.lo, s.hi)).collect();
        let codes = self.render(index, &ranges);
        let reason = self.accounts[index as usize].rng.pick(&DROPOUT_REASONS).to_string();
        let event = self.event(index, now, Body::Dropout { codes, reason });
        let meta = Meta::normal(&event);
        self.write(index, event, meta)?;
        Ok(got)
    }

    // ------------------------------------------------------------------ orders

    fn place_orders(&mut self, index: u32, product: u16, needed_at: Ts, codes: u64, now: Ts) -> io::Result<()> {
        let account = &self.accounts[index as usize];
        let stale_before = needed_at.minus_millis(APPLY_WINDOW_MS);
        let have = account.stock[product as usize].usable(stale_before) + account.awaiting[product as usize];
        if have >= codes {
            return Ok(());
        }
        self.order_codes(index, product, codes - have, now)
    }

    /// Orders at least `codes` codes of a product (rounded up the way the account's
    /// order station does), in orders of at most [`ORDER_CODES_MAX`].
    fn order_codes(&mut self, index: u32, product: u16, codes: u64, now: Ts) -> io::Result<()> {
        // Order stations round up: big orders to 10,000, smaller ones to 1,000, 500, 100.
        let step = match (self.accounts[index as usize].plan.profile, codes) {
            (Profile::Factory | Profile::Producer, 50_000..) => 10_000,
            (Profile::Factory | Profile::Producer, _) => 1_000,
            (Profile::Importer, 500..) => 500,
            (Profile::Importer, _) => 100,
        };
        let mut total = codes.div_ceil(step) * step;
        while total > 0 {
            let quantity = total.min(ORDER_CODES_MAX);
            total -= quantity;
            self.new_order(index, product, quantity, now)?;
        }
        Ok(())
    }

    fn new_order(&mut self, index: u32, product: u16, quantity: u64, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        let number = account.next_order;
        account.next_order += 1;
        let id = format!("ORD-{}-{:06}", account.plan.index, number);
        let rng = &mut account.rng;
        let minutes = |rng: &mut Rng, low: i64, high: i64| rng.between_i64(low * 60_000, high * 60_000);
        let mut steps = VecDeque::new();
        let draw = rng.unit();
        if draw < 0.03 {
            // Cancelled before anything was emitted.
            steps.push_back(Step::Cancel {
                delay_ms: minutes(rng, 10, 180),
            });
        } else if draw < 0.13 && quantity >= 2 {
            // Emitted in several parts; a quarter of these are cancelled before the last.
            let parts = rng.between(2, 4).min(quantity);
            let mut left = quantity;
            for part in 0..parts {
                let delay_ms = if part == 0 {
                    minutes(rng, 1, 20)
                } else {
                    minutes(rng, 10, 180)
                };
                let codes = if part + 1 == parts {
                    left
                } else {
                    (left / (parts - part)).max(1)
                };
                left -= codes;
                steps.push_back(Step::Emit { codes, delay_ms });
            }
            if rng.chance(0.25) {
                if let Some(Step::Emit { delay_ms, .. }) = steps.pop_back() {
                    steps.push_back(Step::Cancel { delay_ms });
                }
            }
        } else if draw < 0.17 {
            // Emitted late: past the 4-hour SLA.
            steps.push_back(Step::Emit {
                codes: quantity,
                delay_ms: minutes(rng, 245, 540),
            });
        } else {
            steps.push_back(Step::Emit {
                codes: quantity,
                delay_ms: rng.between_i64(20_000, 25 * 60_000),
            });
        }
        let gtin = account.plan.products[product as usize].gtin.clone();
        account.awaiting[product as usize] += quantity;
        let first_delay = match steps.front() {
            Some(Step::Emit { delay_ms, .. } | Step::Cancel { delay_ms }) => *delay_ms,
            None => 0,
        };
        let late_ts = self.late_order_ts(index);
        let ts = late_ts.unwrap_or(now);
        let account = &mut self.accounts[index as usize];
        account.orders.insert(
            number,
            Order {
                id: id.clone(),
                product,
                quantity,
                emitted: 0,
                steps,
                deadline: ts.plus_millis(SLA_MS),
            },
        );
        let event = self.event(
            index,
            ts,
            Body::Order {
                order: id,
                gtin,
                quantity,
            },
        );
        if late_ts.is_some() {
            // Late from the start: its deadline passed before it takes effect, so whatever
            // finishes it comes after the deadline (counted in `order_step` or at the end).
            let partition = self.accounts[index as usize].plan.partition;
            self.writers.write_late_order(partition, event)?;
        } else {
            let meta = Meta::normal(&event);
            self.write(index, event, meta)?;
        }
        self.schedule(
            now.plus_millis(first_delay),
            Activity::OrderStep {
                account: index,
                order: number,
            },
        );
        Ok(())
    }

    /// Whether the order the account places now arrives late, and then its `ts`: more than
    /// the SLA plus the lateness behind the partition's high-water mark, in the horizon. It
    /// takes effect at that mark − the lateness, which can be before events of the account
    /// written in the last few seconds; of those only a refund depends on pending orders, so
    /// an account with a refund there places no late order. One draw per order; a late
    /// order wanted waits for the next order that can be late.
    fn late_order_ts(&mut self, index: u32) -> Option<Ts> {
        if self.late_orders.chance(LATE_ORDER_RATE) {
            self.late_orders_wanted = (self.late_orders_wanted + 1).min(LATE_ORDERS_WANTED_MAX);
        }
        if self.late_orders_wanted == 0 {
            return None;
        }
        let account = &self.accounts[index as usize];
        let high_water = self.writers.high_water(account.plan.partition)?;
        let takes_effect = high_water.minus_millis(LATENESS_MS);
        if account.last_refund.is_some_and(|refund| refund >= takes_effect) {
            return None;
        }
        let extra = self
            .late_orders
            .between_i64(LATE_ORDER_EXTRA_MIN_MS, LATE_ORDER_EXTRA_MAX_MS);
        let ts = takes_effect.minus_millis(SLA_MS + extra);
        // Whole seconds, as order stations stamp their messages (rounded down: further behind).
        let ts = Ts(ts.0.div_euclid(MILLIS_PER_SECOND) * MILLIS_PER_SECOND);
        if ts < self.horizon.begin {
            return None;
        }
        self.late_orders_wanted -= 1;
        Some(ts)
    }

    fn order_step(&mut self, index: u32, number: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        let Some(order) = account.orders.get_mut(&number) else {
            return Ok(());
        };
        let Some(step) = order.steps.pop_front() else {
            return Ok(());
        };
        let order_id = order.id.clone();
        let product = order.product;
        // The step that finishes an order (a cancel, the last emission) at or after its
        // deadline finds it late: the deadline fires before events at its instant.
        let finishes = matches!(step, Step::Cancel { .. })
            || matches!(step, Step::Emit { codes, .. } if order.emitted + codes == order.quantity);
        if finishes && now >= order.deadline {
            self.outcome.sla_late += 1;
        }
        match step {
            Step::Cancel { .. } => {
                let remaining = order.quantity - order.emitted;
                account.awaiting[product as usize] -= remaining;
                account.orders.remove(&number);
                let event = self.event(index, now, Body::OrderCancel { order: order_id });
                let meta = Meta::normal(&event);
                return self.write(index, event, meta);
            }
            Step::Emit { codes, .. } => {
                order.emitted += codes;
                debug_assert!(order.emitted <= order.quantity);
                let finished = order.emitted == order.quantity;
                let next_delay = match order.steps.front() {
                    Some(Step::Emit { delay_ms, .. } | Step::Cancel { delay_ms }) => Some(*delay_ms),
                    None => None,
                };
                if finished {
                    account.orders.remove(&number);
                }
                account.awaiting[product as usize] -= codes;
                let lo = account.next_serial[product as usize];
                account.next_serial[product as usize] += codes;
                account.stock[product as usize].push(lo, lo + codes, now, |a, b| a.local_date() == b.local_date());
                if self.recent_emissions.len() == RECENT_EMISSIONS_MAX {
                    self.recent_emissions.pop_front();
                }
                self.recent_emissions.push_back(RecentEmission {
                    account: index,
                    product,
                    lo,
                    hi: lo + codes,
                    at: now,
                });
                let gtin = self.accounts[index as usize].plan.products[product as usize]
                    .gtin
                    .clone();
                let mut block = lo;
                while block < lo + codes {
                    let end = (block + EMISSION_EVENT_CODES_MAX).min(lo + codes);
                    let codes = self.render(index, &[(product, block, end)]);
                    let body = Body::Emission {
                        order: order_id.clone(),
                        gtin: gtin.clone(),
                        codes,
                    };
                    let event = self.event(index, now, body);
                    let meta = Meta::normal(&event);
                    self.write(index, event, meta)?;
                    block = end;
                }
                if let Some(delay) = next_delay {
                    self.schedule(
                        now.plus_millis(delay),
                        Activity::OrderStep {
                            account: index,
                            order: number,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ shipping

    /// Defect reports, then introductions of paid codes (and now and then an attempt on
    /// unpaid ones), then the next shipment.
    fn ship(&mut self, index: u32, now: Ts) -> io::Result<()> {
        let account = &mut self.accounts[index as usize];
        if account.defect_debt >= 1.0 && !account.applied.is_empty() {
            let codes = (account.defect_debt as u64)
                .min(DEFECT_CODES_MAX)
                .min(account.applied.len());
            account.defect_debt -= codes as f64;
            let late = account.rng.chance(0.06);
            self.defect(index, codes, late, now)?;
        }
        let account = &mut self.accounts[index as usize];
        let paid_end = account.wallet.paid_total();
        let front_unpaid = account.applied.front().is_some_and(|front| front.sequence >= paid_end);
        if front_unpaid && account.late_in_flight == 0 && account.rng.chance(0.015) {
            // Goods shipped before their codes were paid: refused CODE_UNPAID per code.
            let front = *account.applied.front().expect("checked");
            let codes = account.rng.between(1, 20).min(front.hi - front.lo);
            let codes = self.render(index, &[(front.product, front.lo, front.lo + codes)]);
            *self.outcome.intended.entry(Reason::CodeUnpaid).or_default() += codes.len() as u64;
            let event = self.event(index, now, Body::Introduction { codes });
            self.write(index, event, Meta::refused())?;
        }
        for _ in 0..INTRODUCTIONS_PER_SHIPMENT_MAX {
            let account = &mut self.accounts[index as usize];
            let paid_end = account.wallet.paid_total();
            self.runs.clear();
            if account.applied.take(INTRODUCTION_CODES_MAX, paid_end, &mut self.runs) == 0 {
                break;
            }
            let ranges: Vec<(u16, u64, u64)> = self.runs.iter().map(|r| (r.product, r.lo, r.hi)).collect();
            let codes = self.render(index, &ranges);
            let event = self.event(index, now, Body::Introduction { codes });
            let meta = Meta::normal(&event);
            self.write(index, event, meta)?;
        }
        let account = &mut self.accounts[index as usize];
        let next = match account.plan.profile {
            Profile::Importer => now.plus_millis(account.rng.between_i64(20 * MILLIS_PER_HOUR, 28 * MILLIS_PER_HOUR)),
            _ => now.plus_millis(account.rng.between_i64(2 * MILLIS_PER_HOUR, 5 * MILLIS_PER_HOUR)),
        };
        let at = self.within_hours(next, 8 * 3_600, 22 * 3_600);
        self.schedule(at, Activity::Ship(index));
        Ok(())
    }

    /// A defect report of the oldest applied codes; a late one (act dated over a month
    /// back) is refused whole, so its codes stay applied.
    fn defect(&mut self, index: u32, codes: u64, late: bool, now: Ts) -> io::Result<()> {
        let today = now.local_date();
        let account = &mut self.accounts[index as usize];
        self.runs.clear();
        let act_date = if late {
            let mut act = today
                .checked_sub_days(Days::new(account.rng.between(30, 45)))
                .unwrap_or(today);
            while self.calendar.deadline_after(act, 10) > now {
                act = act.checked_sub_days(Days::new(7)).unwrap_or(act);
            }
            // The codes stay applied: name them without taking them.
            account.applied.peek(codes, &mut self.runs);
            act
        } else {
            let act = today
                .checked_sub_days(Days::new(account.rng.between(0, 3)))
                .unwrap_or(today);
            debug_assert!(now < self.calendar.deadline_after(act, 10));
            account.applied.take(codes, u64::MAX, &mut self.runs);
            act
        };
        let ranges: Vec<(u16, u64, u64)> = self.runs.iter().map(|r| (r.product, r.lo, r.hi)).collect();
        let codes = self.render(index, &ranges);
        let event = self.event(index, now, Body::Defect { codes, act_date });
        if late {
            *self.outcome.intended.entry(Reason::DefectReportLate).or_default() += 1;
            self.write(index, event, Meta::refused())
        } else {
            let meta = Meta::normal(&event);
            self.write(index, event, meta)
        }
    }
}

/// `seconds` after 00:00 local of `date`.
fn local_at(date: NaiveDate, seconds: i64) -> Ts {
    day_start(date).plus_millis(seconds * MILLIS_PER_SECOND)
}

/// A model amount as a decimal field with two decimals.
fn money(units: i64) -> DecimalField {
    debug_assert!(units > 0 && units % UNITS_PER_TIYN == 0);
    DecimalField::Parsed(Decimal::new(units / UNITS_PER_TIYN, 2))
}
