//! The dataflow engine: the whole graph, assembled in one place, top to bottom.
//!
//! ```text
//! partitions ─► Source (per worker: its partitions, each event at its effective time; the
//!               held capability is the watermark)
//!   ─► Dedup: by id ──┬─ tariffs: validate ─► broadcast ───────────────────────────┐
//!                     ├─ payments, compensations, refunds ──────────────────────────┤
//!                     ├─ orders, cancels, emissions ─► Orders ─┬─ pending counts ───┤
//!                     │                                       └─ codes ─┐          │
//!                     └─ commands: pre-checks ─────────── codes ──► Codes: index ──►│
//!                                                                        Accounts ◄─┘
//!   facts (Orders, Accounts) ─► Periods ─► period records
//! ```
//! Every stage is a [`Machine`](markledger_operators::machine::Machine) stepped one complete
//! instant at a time (docs/ARCHITECTURE.md).

use crate::config::Config;
use crate::reference::Summary;
use markledger_connectors::codec::binary::canonical_bytes;
use markledger_connectors::codec::Decoded;
use markledger_operators::accounts::{AccountRules, Accounts};
use markledger_operators::codes::Codes;
use markledger_operators::dedup::Dedup;
use markledger_operators::event::{Body, DecimalField, Kind};
use markledger_operators::flow::{route, time_of, AccountIn, CodeIn, CodesIn, Fact, Flow, Header, Placed};
use markledger_operators::machine::{run_machine, Time};
use markledger_operators::orders::Orders;
use markledger_operators::output::{Entry, Output, Rejection};
use markledger_operators::periods::Periods;
use markledger_operators::validate::is_code;
use markledger_operators::{Reason, Ts};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::{Broadcast, Map, Partition};
use timely::dataflow::operators::{Capability, Concat, Concatenate, ConnectLoop, Feedback, Inspect, Probe};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

/// Records a source emits per activation.
pub const SOURCE_BATCH_MAX: usize = 4_096;

/// Events a source lets run ahead of what the whole dataflow has finished: timely has no
/// backpressure of its own, and without this bound a file run would queue every per-code
/// record of its input at once.
pub const SOURCE_EVENTS_IN_FLIGHT_MAX: usize = 256;

/// Effective time and lateness of every event of one partition (DOMAIN.md §4); refused
/// records are returned apart (they neither move the high-water mark nor take effect).
pub fn place_partition(records: Vec<Decoded>, lateness_ms: i64) -> (Vec<Placed>, Vec<Rejection>) {
    let mut high_water: Option<Ts> = None;
    let (mut placed, mut refused) = (Vec::new(), Vec::new());
    for record in records {
        match record {
            Decoded::Refused(rejection) => refused.push(rejection),
            Decoded::Event(event) => {
                let floor = high_water.map(|hw| hw.minus_millis(lateness_ms));
                let effective = floor.map_or(event.ts, |floor| floor.max(event.ts));
                let late = floor.is_some_and(|floor| event.ts < floor);
                high_water = Some(high_water.map_or(event.ts, |hw| hw.max(event.ts)));
                placed.push(Placed { effective, late, event });
            }
        }
    }
    (placed, refused)
}

/// A worker's source: its partitions' events in effective-time order, each at its own
/// time, the held capability always at the next event's time (the worker's watermark).
fn replay<'scope>(
    scope: Scope<'scope, Time>,
    mut events: Vec<Placed>,
    done: ProbeHandle<Time>,
    batching: Batching,
) -> StreamVec<'scope, Time, Placed> {
    events.sort_by_key(|placed| placed.effective);
    source::<_, CapacityContainerBuilder<Vec<Placed>>, _, _>(scope, "Source: partitions", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut held: Option<Capability<Time>> = Some(cap);
        let mut events = events.into_iter().peekable();
        let mut in_flight: std::collections::VecDeque<Time> = std::collections::VecDeque::new();
        move |output| {
            let Some(cap) = held.as_mut() else { return };
            while in_flight.front().is_some_and(|time| !done.less_equal(time)) {
                in_flight.pop_front();
            }
            for _ in 0..batching.batch {
                // Stop only before a strictly later time: events at the time the capability
                // already holds cannot finish before the source moves past it, so waiting
                // for them would deadlock (a burst of late events shares one time).
                let next_time = events.peek().map(|placed| time_of(placed.effective));
                let full = in_flight.len() >= batching.in_flight;
                if full && next_time.is_some_and(|next| in_flight.back().is_some_and(|last| next > *last)) {
                    break;
                }
                let Some(placed) = events.next() else { break };
                let time = time_of(placed.effective);
                if time > *cap.time() {
                    cap.downgrade(&time);
                }
                in_flight.push_back(time);
                output.session(cap).give(placed);
            }
            match events.peek() {
                Some(next) => {
                    cap.downgrade(&time_of(next.effective).max(*cap.time()));
                    activator.activate();
                }
                None => held = None,
            }
        }
    })
}

fn reject(placed: &Placed, code: Option<&str>, reason: Reason, detail: String) -> Output {
    let event = &placed.event;
    Output::Rejection(Rejection::of_event(
        &event.id,
        event.kind().as_str(),
        &event.account,
        code,
        reason,
        detail,
    ))
}

/// Tariffs need no state to check: bad prices, or taking effect before their own event.
fn check_tariff(placed: Placed) -> Result<Placed, Box<Output>> {
    let Body::Tariff {
        effective_from,
        net_price,
        vat_rate,
    } = &placed.event.body
    else {
        return Ok(placed);
    };
    let valid = matches!((net_price, vat_rate),
        (DecimalField::Parsed(net), DecimalField::Parsed(vat)) if !net.is_sign_negative() && !net.is_zero()
            && !vat.is_sign_negative() && *vat < rust_decimal::Decimal::ONE);
    if !valid {
        let detail = format!("tariff needs net_price > 0 and 0 ≤ vat_rate < 1, got {net_price:?} and {vat_rate:?}");
        return Err(Box::new(reject(&placed, None, Reason::BadAmount, detail)));
    }
    if *effective_from < placed.effective {
        let detail = format!(
            "tariff effective from {effective_from} is before its event took effect at {}",
            placed.effective
        );
        return Err(Box::new(reject(&placed, None, Reason::TariffRetroactive, detail)));
    }
    Ok(placed)
}

/// A command's checks that need no state (a late defect report, codes outside the
/// alphabet); its other codes go to the national index.
fn split_command(placed: Placed, config: &Config) -> Vec<Flow> {
    if let Body::Defect { act_date, .. } = &placed.event.body {
        let deadline = config.calendar.deadline_after(*act_date, config.defect_working_days);
        if placed.event.ts >= deadline {
            let detail = format!("defect act of {act_date} had to be reported before {deadline}");
            return vec![Flow::Out(reject(&placed, None, Reason::DefectReportLate, detail))];
        }
    }
    let header = Header::of(&placed, "");
    placed
        .event
        .body
        .codes()
        .iter()
        .enumerate()
        .map(|(position, code)| {
            if is_code(code) {
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                Flow::ToCodes(CodeIn {
                    header: header.clone(),
                    position,
                    code: code.clone(),
                })
            } else {
                Flow::Out(reject(
                    &placed,
                    Some(code),
                    Reason::BadCode,
                    "not 1–128 printable ASCII characters".into(),
                ))
            }
        })
        .collect()
}

/// A stage's output split by destination, each record moved (not copied) to one part.
struct Parts<'scope> {
    outs: StreamVec<'scope, Time, Output>,
    facts: StreamVec<'scope, Time, Fact>,
    codes: StreamVec<'scope, Time, CodesIn>,
    accounts: StreamVec<'scope, Time, AccountIn>,
    finals: StreamVec<'scope, Time, CodesIn>,
}

fn split(flows: StreamVec<'_, Time, Flow>) -> Parts<'_> {
    let mut parts = flows
        .partition(5, |flow| {
            let part = match &flow {
                Flow::Out(_) => 0,
                Flow::Fact(_) => 1,
                Flow::ToCodes(_) => 2,
                Flow::ToAccounts(_) => 3,
                Flow::Final(..) => 4,
            };
            (part, flow)
        })
        .into_iter();
    let mut next = || parts.next().expect("five parts");
    Parts {
        outs: next().flat_map(|flow| {
            if let Flow::Out(output) = flow {
                Some(output)
            } else {
                None
            }
        }),
        facts: next().flat_map(|flow| if let Flow::Fact(fact) = flow { Some(fact) } else { None }),
        codes: next().flat_map(|flow| {
            if let Flow::ToCodes(code) = flow {
                Some(CodesIn::Code(code))
            } else {
                None
            }
        }),
        accounts: next().flat_map(|flow| {
            if let Flow::ToAccounts(input) = flow {
                Some(input)
            } else {
                None
            }
        }),
        finals: next().flat_map(|flow| {
            if let Flow::Final(key, at) = flow {
                Some(CodesIn::Final { key, at })
            } else {
                None
            }
        }),
    }
}

/// How a source feeds the dataflow. Outputs never depend on it (tests/tests/equivalence.rs).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Events per source activation.
    pub batch: usize,
    /// Events allowed ahead of what the dataflow has finished.
    pub in_flight: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            batch: SOURCE_BATCH_MAX,
            in_flight: SOURCE_EVENTS_IN_FLIGHT_MAX,
        }
    }
}

/// Runs the dataflow over in-memory partitions on `workers` threads and returns every
/// output (decode refusals first, then each worker's outputs).
pub fn run(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize) -> Vec<Output> {
    run_batched(config, partitions, workers, Batching::default())
}

/// [`run`] with an explicit source batching.
pub fn run_batched(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize, batching: Batching) -> Vec<Output> {
    run_placed(config, place_all(config, partitions), workers, batching)
}

/// Every partition placed (DOMAIN.md §4), with the decode refusals apart and the instant the
/// run's watermark stops at.
struct Placement {
    partitions: Vec<Vec<Placed>>,
    refused: Vec<Output>,
    /// Input records read, refused ones included.
    records: u64,
    /// A file run's watermark stops at the largest ts read.
    end: Time,
}

fn place_all(config: &Config, partitions: Vec<Vec<Decoded>>) -> Placement {
    let records = partitions.iter().map(|p| p.len() as u64).sum();
    let mut refused = Vec::new();
    let mut placed_partitions = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (placed, refusals) = place_partition(partition, config.lateness_ms);
        refused.extend(refusals.into_iter().map(Output::Rejection));
        placed_partitions.push(placed);
    }
    let end = placed_partitions
        .iter()
        .flatten()
        .map(|p| time_of(p.event.ts))
        .max()
        .unwrap_or(0);
    Placement {
        partitions: placed_partitions,
        refused,
        records,
        end,
    }
}

fn run_placed(config: &Config, placement: Placement, workers: usize, batching: Batching) -> Vec<Output> {
    let batching = Batching {
        batch: batching.batch.max(1),
        in_flight: batching.in_flight.max(1),
    };
    let Placement {
        partitions,
        refused: mut outputs,
        end,
        ..
    } = placement;
    // Each worker takes (moves) its partitions: partition i goes to worker i mod workers.
    let workers = workers.max(1);
    let mut shares: Vec<Vec<Placed>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, partition) in partitions.into_iter().enumerate() {
        shares[i % workers].extend(partition);
    }
    let shares: Arc<Vec<Mutex<Vec<Placed>>>> = Arc::new(shares.into_iter().map(Mutex::new).collect());
    let config = Arc::new(config.clone());
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let mine: Vec<Placed> = std::mem::take(&mut *shares[index].lock().expect("share lock"));
        let collected: Rc<RefCell<Vec<Output>>> = Rc::default();
        let sink = collected.clone();
        let config = config.clone();
        let done = ProbeHandle::new();
        let source_done = done.clone();
        worker.dataflow::<Time, _, _>(|scope| {
            let events = replay(scope, mine, source_done, batching);
            let dedup = Dedup::new(
                config.dedup_horizon_ms,
                Box::new(|placed: &Placed| canonical_bytes(&placed.event)),
            );
            let unique = run_machine(
                events,
                Exchange::new(|placed: &Placed| route(&placed.event.id)),
                "Dedup: by id",
                dedup,
                end,
            );
            let duplicates = unique.clone().flat_map(Result::err);
            let unique = unique.flat_map(Result::ok);

            let tariffs = unique.clone().filter_kinds(&[Kind::Tariff]).map(check_tariff);
            let tariff_refusals = tariffs
                .clone()
                .flat_map(|checked| checked.err().map(|refusal| *refusal));
            // Every worker's accounts need every tariff: broadcast, addressed to the worker.
            let tariffs = tariffs
                .flat_map(Result::ok)
                .broadcast()
                .map(move |placed| AccountIn::Tariff {
                    worker: index as u64,
                    placed,
                });
            let credits = unique
                .clone()
                .filter_kinds(&[Kind::Payment, Kind::Compensation, Kind::Refund])
                .map(AccountIn::Event);

            let order_events = unique
                .clone()
                .filter_kinds(&[Kind::Order, Kind::OrderCancel, Kind::Emission]);
            let orders = split(run_machine(
                order_events,
                Exchange::new(|placed: &Placed| route(&placed.event.account)),
                "Orders: emission checks",
                Orders::new(config.sla_ms, config.close_after_days),
                end,
            ));

            let command_config = config.clone();
            let commands = split(
                unique
                    .filter_kinds(&[Kind::Application, Kind::Dropout, Kind::Defect, Kind::Introduction])
                    .flat_map(move |placed| split_command(placed, &command_config)),
            );

            // Finality flows back from the accounts to the index, 1 ms later (retention).
            let (finals_handle, finals) = scope.feedback::<Vec<CodesIn>>(1);
            let codes = split(run_machine(
                orders.codes.concat(commands.codes).concat(finals),
                Exchange::new(CodesIn::route),
                "Codes: national index",
                Codes::new(config.hold_ms, config.retention_ms),
                end,
            ));

            let account_inputs = credits.concat(orders.accounts).concat(codes.accounts).concat(tariffs);
            let rules = AccountRules {
                calendar: config.calendar.clone(),
                expiry_working_days: config.expiry_working_days,
                close_after_days: config.close_after_days,
            };
            let accounts = split(run_machine(
                account_inputs,
                Exchange::new(AccountIn::route),
                "Accounts: lifecycle, balance, FIFO",
                Accounts::new(rules),
                end,
            ));

            accounts.finals.connect_loop(finals_handle);

            let periods = run_machine(
                orders.facts.concat(accounts.facts),
                Exchange::new(|fact: &Fact| route(fact.account())),
                "Periods: revisions",
                Periods::new(config.close_after_days),
                end,
            );

            scope
                .concatenate([
                    duplicates,
                    tariff_refusals,
                    commands.outs,
                    orders.outs,
                    codes.outs,
                    accounts.outs,
                    periods,
                ])
                .inspect(move |output| sink.borrow_mut().push(output.clone()))
                .probe_with(&done);
        });
        while worker.step() {}
        collected.take()
    })
    .expect("timely workers start");
    for worker in guards.join() {
        outputs.extend(worker.expect("a worker panicked"));
    }
    outputs
}

/// Keeps the events of the given kinds.
trait FilterKinds<'scope> {
    fn filter_kinds(self, kinds: &'static [Kind]) -> StreamVec<'scope, Time, Placed>;
}

impl<'scope> FilterKinds<'scope> for StreamVec<'scope, Time, Placed> {
    fn filter_kinds(self, kinds: &'static [Kind]) -> StreamVec<'scope, Time, Placed> {
        self.flat_map(move |placed| kinds.contains(&placed.event.kind()).then_some(placed))
    }
}

/// Runs the dataflow and returns its outputs in a canonical order, with the run's summary.
///
/// The order makes output files identical whatever the worker count: records are grouped
/// by output and by account (or period key), and within an account keep the order its
/// worker produced them in, which is account order; rejections are sorted.
pub fn run_summarized(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize) -> (Summary, Vec<Output>) {
    let placement = place_all(config, partitions);
    let mut summary = Summary {
        records: placement.records,
        ..Summary::default()
    };
    let mut accounts = std::collections::BTreeSet::new();
    for placed in placement.partitions.iter().flatten() {
        let event = &placed.event;
        summary.events += 1;
        summary.late_events += u64::from(placed.late);
        summary.code_events += event.code_count() as u64;
        summary.first_ts = Some(summary.first_ts.map_or(event.ts, |t| t.min(event.ts)));
        summary.last_ts = Some(summary.last_ts.map_or(event.ts, |t| t.max(event.ts)));
        if event.kind() != Kind::Tariff {
            accounts.insert(event.account.clone());
        }
    }
    summary.accounts = accounts.len() as u64;
    let mut outputs = run_placed(config, placement, workers, Batching::default());
    canonical_order(&mut outputs);
    let mut by_status: std::collections::BTreeMap<markledger_operators::Status, i64> = Default::default();
    let mut balances: std::collections::BTreeMap<&str, (rust_decimal::Decimal, rust_decimal::Decimal)> =
        Default::default();
    for output in &outputs {
        let name = match output {
            Output::Status(change) => {
                let n = change.codes.len() as i64;
                *by_status.entry(change.to).or_default() += n;
                if let Some(from) = change.from {
                    *by_status.entry(from).or_default() -= n;
                }
                "status"
            }
            Output::Ledger(entry) => {
                let total = match entry.entry {
                    Entry::Payment => &mut summary.payments,
                    Entry::Compensation => &mut summary.compensations,
                    Entry::Charge => &mut summary.charged,
                    Entry::Refund => &mut summary.refunds,
                };
                *total += entry.amount;
                "ledger"
            }
            Output::Balance(balance) => {
                balances.insert(&balance.account, (balance.balance, balance.unpaid_amount));
                "balances"
            }
            Output::Rejection(rejection) => {
                *summary.rejections.entry(rejection.reason).or_default() += 1;
                "rejections"
            }
            Output::Period(_) => "periods",
        };
        *summary.outputs.entry(name).or_default() += 1;
    }
    summary.codes_by_status = by_status
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| (status, n.unsigned_abs()))
        .collect();
    summary.balance = balances.values().map(|(balance, _)| *balance).sum();
    summary.unpaid = balances.values().map(|(_, unpaid)| *unpaid).sum();
    (summary, outputs)
}

fn canonical_order(outputs: &mut [Output]) {
    fn group(output: &Output) -> (u8, String) {
        match output {
            Output::Status(s) => (0, s.account.clone()),
            Output::Ledger(l) => (1, l.account.clone()),
            Output::Balance(b) => (2, b.account.clone()),
            Output::Rejection(_) => (3, String::new()),
            Output::Period(p) => (4, p.key.render()),
        }
    }
    // Stable: records of one account keep their account order.
    outputs.sort_by_cached_key(group);
    let start = outputs.partition_point(|o| group(o).0 < 3);
    let end = outputs.partition_point(|o| group(o).0 < 4);
    outputs[start..end].sort_by(|a, b| match (a, b) {
        (Output::Rejection(a), Output::Rejection(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    });
}
