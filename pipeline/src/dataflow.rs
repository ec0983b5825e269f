//! The dataflow graph, assembled in one place, top to bottom: wiring only. Each stage is a
//! function of the operator file named for it, with typed inputs and a struct of typed
//! output streams (its edges); the runtime that runs the graph on timely workers is
//! runtime.rs, the sink sink.rs.
//!
//! ```text
//! partitions ─► source::partitions (per worker: its partitions, each event at its effective
//!               time; the held capability is the watermark) ── refused ────────────────────┐
//!   ─► dedup::unique_events (by id) ──┬─ duplicates ─────────────────────────────────────┤
//!       ├─ tariffs ─► tariff::tariffs_to_accounts (check, broadcast) ──── refusals ──────┤
//!       └─ the rest ─► gate::gate (by account; terminations heard) ─ refusals ───────────┤
//!       ├─ credits ───────────────────────────────────────────────┐                      │
//!       ├─ order events ─► orders::order_book (by account) ─┬─ pending ─┤        refusals ┤
//!       │                                                   ├─ codes ──┐│                 │
//!       │                                                   └─ facts ─┐││                 │
//!       └─ commands ─► commands::command_codes ── codes ─┐            │││        refusals ┤
//!                                                        ▼            │││                 │
//!          finality (fed back) ─► codes::national_index (by code) ◄──────┘│       refusals ┤
//!                                      └─ to accounts ─► accounts::accounts (by account) ──┤
//!                                                         ├─ finals ─► (feedback) ┘   outputs
//!                                                         ├─ terminations ─► (feedback to the gate)
//!                                                         └─ facts ─► aggregates::aggregates
//!                                                                      (periods) ─────────┤
//!                                                                         sink::write_outputs
//! ```
//! Every stateful stage is a [`Machine`](markledger_operators::machine::Machine) stepped one
//! complete instant at a time (operators/src/driver.rs); the aggregates consolidate their
//! facts as a differential collection first (docs/ARCHITECTURE.md).

use crate::config::Config;
use crate::source::{self, Batching, SourceReports, SourceSettings};
use markledger_connectors::codec::binary::canonical_bytes;
use markledger_connectors::partition::PartitionInput;
use markledger_operators::accounts::{accounts, AccountRules, Accounts};
use markledger_operators::aggregates::aggregates;
use markledger_operators::codes::{national_index, Codes};
use markledger_operators::commands::{command_codes, CommandRules};
use markledger_operators::dedup::{unique_events, Dedup};
use markledger_operators::driver::Drive;
use markledger_operators::final_codes::FinalCodes;
use markledger_operators::flow::{AccountIn, CodesIn, Placed, Time};
use markledger_operators::gate::{gate, Gate, GateIn};
use markledger_operators::orders::{order_book, Orders};
use markledger_operators::output::Output;
use markledger_operators::tariffs::tariffs_to_accounts;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Concatenate, ConnectLoop, Feedback};
use timely::dataflow::{Scope, StreamVec};

/// How long after a code becomes final the national index learns it, in runs without
/// checkpoints: the accounts answer for the code until then, and the index may step that
/// far ahead of the accounts instead of waiting for them at every instant.
pub const FINALITY_DELAY_MS: i64 = 60 * 60 * 1000;

/// What every worker's graph is built from (one per run, shared by the workers).
pub struct GraphSettings {
    /// The run's configuration.
    pub config: Config,
    /// How sources feed the dataflow.
    pub batching: Batching,
    /// Where the watermark stops, and the checkpoints.
    pub drive: Drive,
    /// The finality delay of the feedback edge ([`finality_delay_ms`]).
    pub finality_delay_ms: i64,
    /// A run restored from a checkpoint at `start` places nothing before it.
    pub start: Time,
    /// A stream's orderly stop.
    pub stop: Option<Arc<AtomicBool>>,
    /// Where the national index keeps final codes.
    pub final_codes: FinalCodes,
}

/// How far the national index may run ahead of the accounts (docs/ARCHITECTURE.md,
/// "Finality and retention"). A checkpoint carries only the finality fed back from the
/// instant before its cut, so runs that take checkpoints keep 1 ms; and the index must know
/// a code is final before retention forgets it.
pub fn finality_delay_ms(config: &Config, checkpoints: bool) -> i64 {
    if checkpoints {
        1
    } else {
        FINALITY_DELAY_MS.min(config.retention_ms).max(1)
    }
}

/// Builds one worker's graph over its partitions; gives every output it makes.
pub fn build<'scope>(
    scope: Scope<'scope, Time>,
    inputs: Vec<Box<dyn PartitionInput>>,
    graph: &GraphSettings,
    reports: SourceReports,
) -> StreamVec<'scope, Time, Output> {
    let (config, drive) = (&graph.config, &graph.drive);
    let source = source::partitions(scope, inputs, source_settings(graph), reports);
    let tiebreak = Box::new(|placed: &Placed| canonical_bytes(&placed.event));
    let unique = unique_events(source.events, Dedup::new(config.dedup_horizon_ms, tiebreak), drive);
    let tariffs = tariffs_to_accounts(unique.tariffs, scope.index());
    // Accepted terminations flow back from the accounts to the gate 1 ms after T: after
    // passing a `terminate` the gate waits for its answers before its next instant (gate.rs).
    let (termination_loop, terminations) = scope.feedback::<Vec<GateIn>>(1);
    let events = unique
        .credits
        .concat(unique.order_events)
        .concat(unique.commands)
        .map(|placed| GateIn::Event(Box::new(placed)));
    let gated = gate(events, terminations, Gate::new(config.retention_ms), drive);
    let credits = gated.credits.map(|placed| AccountIn::Event(Box::new(placed)));
    let orders = order_book(
        gated.order_events,
        Orders::new(config.sla_ms, config.close_after_days),
        drive,
    );
    let commands = command_codes(gated.commands, command_rules(config));
    // Finality flows back from the accounts to the index (retention), the finality delay
    // later: the index can run that far ahead of the accounts.
    let (finality_loop, finals) = scope.feedback::<Vec<CodesIn>>(graph.finality_delay_ms as u64);
    let index_codes = orders.codes.concat(commands.codes).concat(finals);
    let codes = Codes::new(config.hold_ms, config.retention_ms).with_final_codes(graph.final_codes.clone());
    let index = national_index(index_codes, codes, drive);
    let account_inputs = credits
        .concat(orders.pending)
        .concat(index.to_accounts)
        .concat(tariffs.to_accounts);
    let account_state = Accounts::new(account_rules(graph)).with_emission_text(graph.final_codes.clone());
    let accounts = accounts(account_inputs, account_state, drive);
    accounts.finals.connect_loop(finality_loop);
    accounts.terminations.connect_loop(termination_loop);
    let periods = aggregates(orders.facts.concat(accounts.facts), config.close_after_days, drive);
    scope.concatenate([
        source.refused,
        unique.duplicates,
        gated.refusals,
        tariffs.refusals,
        commands.refusals,
        orders.refusals,
        index.refusals,
        accounts.outputs,
        periods,
    ])
}

fn source_settings(graph: &GraphSettings) -> SourceSettings {
    SourceSettings {
        lateness_ms: graph.config.lateness_ms,
        admission: graph.config.admission(),
        calendar_name: graph.config.calendar_name.clone(),
        batching: graph.batching,
        end: graph.drive.end.clone(),
        start: graph.start,
        stop: graph.stop.clone(),
        checkpoints: graph.drive.checkpoints.clone(),
    }
}

fn command_rules(config: &Config) -> CommandRules {
    CommandRules {
        calendar: config.calendar.clone(),
        defect_working_days: config.defect_working_days,
    }
}

fn account_rules(graph: &GraphSettings) -> AccountRules {
    AccountRules {
        calendar: graph.config.calendar.clone(),
        expiry_working_days: graph.config.expiry_working_days,
        close_after_days: graph.config.close_after_days,
        finality_delay_ms: graph.finality_delay_ms,
    }
}
