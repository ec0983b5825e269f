//! "Gate: terminated accounts" — DOMAIN.md §9's `ACCOUNT_TERMINATED`, right after
//! de-duplication, before any stage acts on an account's event.
//!
//! In (exchanged by account): every unique event but tariffs; and, heard beside that
//! stream, the accounts' acceptances of `terminate` (a feedback edge 1 ms after T: only the
//! accounts can decide a termination, since the refusals depend on its FIFO queue and
//! pending orders). Out: `ACCOUNT_TERMINATED` rejections (one per event, `code: null`), and
//! every other event on the edge of the stage that takes its kind (credits, refunds,
//! `terminate` and `export` to the accounts; order events to the order book; code commands
//! to the national index).
//!
//! Why it must sit here: an emission or a command of a terminated account must be refused
//! before the order book and the national index act on it (an emission would otherwise
//! create codes nobody could emit again).
//!
//! Why it is correct without waiting for the accounts at every instant: an account can only
//! be terminated by a `terminate` that passed this gate. So the gate steps its instants as
//! soon as its event stream is complete, like every other machine, and waits for the
//! accounts only after it has passed a `terminate` at T: then it steps nothing after T (and
//! saves no checkpoint) until the feedback edge is complete past T + 1 ms, when every
//! answer to that `terminate` has been heard ([`Machine::ready`]). `terminate`s are rare, so
//! the cycle's lockstep (one round trip of the graph per instant, ~30 % of a file run's
//! time when the feedback was one of the gate's inputs) is paid once per termination, not
//! once per instant. The answers come through a listener operator (a sink: the feedback
//! edge is not an input of the gate's operator, so its frontier never holds the gate back)
//! that shares what it heard with the gate on the same worker. Events at T itself pass: in
//! account order only `terminate` and `export` come after a `terminate` (their kind ranks
//! are the last), and the accounts refuse those themselves.
//!
//! State per terminated account: its [`Termination`] (T, D), kept until the retention
//! horizon after D (not before the end of D's month), as the reference engine keeps it;
//! from then on its id is a new account.

use crate::driver::{run_machine, Drive};
use crate::event::Kind;
use crate::flow::{edges, route, take, ts_of, Edge, Placed, Time};
use crate::machine::{Machine, Sweeper};
use crate::output::Output;
use crate::reason::Reason;
use crate::rules::Termination;
use crate::time::Ts;
use crate::wording;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::scheduling::Activator;

/// What the gate takes in.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum GateIn {
    /// A unique event (not a tariff).
    Event(Box<Placed>),
    /// The accounts accepted `account`'s `terminate` (fed back, 1 ms after T, to the
    /// gate's listener; as an input of the gate itself only from a checkpoint written before
    /// the listener, which carried it).
    Terminated {
        /// The account.
        account: String,
        /// Its termination's instants.
        termination: Termination,
    },
}

impl GateIn {
    /// The worker of the input's account.
    pub fn route(&self) -> u64 {
        match self {
            GateIn::Event(placed) => route(&placed.event.account),
            GateIn::Terminated { account, .. } => route(account),
        }
    }
}

/// What the gate lets through, by the stage that takes it.
#[derive(Clone, Debug)]
pub enum GateOut {
    /// An `ACCOUNT_TERMINATED` rejection (→ the rejections output).
    Refused(Box<Output>),
    /// Payments, compensations, refunds, `terminate`, `export` (→ the accounts).
    Credit(Box<Placed>),
    /// Orders, cancellations, emissions (→ the order book).
    Order(Box<Placed>),
    /// Applications, dropouts, defects, introductions (→ the national index).
    Command(Box<Placed>),
}

impl Edge for GateOut {
    const EDGES: u64 = 4;
    fn edge(&self) -> u64 {
        match self {
            GateOut::Refused(_) => 0,
            GateOut::Credit(_) => 1,
            GateOut::Order(_) => 2,
            GateOut::Command(_) => 3,
        }
    }
}

/// The gate's typed outputs.
pub struct GateEdges<'scope> {
    /// `ACCOUNT_TERMINATED` rejections.
    pub refusals: StreamVec<'scope, Time, Output>,
    /// Credits, refunds, `terminate`, `export`.
    pub credits: StreamVec<'scope, Time, Placed>,
    /// Orders, cancellations, emissions.
    pub order_events: StreamVec<'scope, Time, Placed>,
    /// Applications, dropouts, defects, introductions.
    pub commands: StreamVec<'scope, Time, Placed>,
}

/// "Gate: terminated accounts" over the unique events (`GateIn::Event`), with the
/// accounts' accepted `terminations` fed back (module docs), both exchanged by account.
pub fn gate<'scope>(
    events: StreamVec<'scope, Time, GateIn>,
    terminations: StreamVec<'scope, Time, GateIn>,
    gate: Gate,
    drive: &Drive,
) -> GateEdges<'scope> {
    let heard = Rc::clone(&gate.heard);
    terminations.sink(Exchange::new(GateIn::route), LISTENER, move |(input, frontier)| {
        let mut heard = heard.borrow_mut();
        let mut news = false;
        input.for_each(|_time, batch| {
            for input in batch.drain(..) {
                if let GateIn::Terminated { account, termination } = input {
                    heard.terminations.push((account, termination));
                    news = true;
                }
            }
        });
        let before = frontier.frontier().iter().copied().min().unwrap_or(Time::MAX);
        if news || before != heard.before {
            heard.before = before;
            if let Some(wake) = &heard.wake {
                wake.activate();
            }
        }
    });
    let mut parts = edges(run_machine(events, Exchange::new(GateIn::route), gate, drive));
    let placed = |out| match out {
        GateOut::Credit(placed) | GateOut::Order(placed) | GateOut::Command(placed) => Some(*placed),
        GateOut::Refused(_) => None,
    };
    GateEdges {
        refusals: take(parts.next(), |out| match out {
            GateOut::Refused(output) => Some(*output),
            _ => None,
        }),
        credits: take(parts.next(), placed),
        order_events: take(parts.next(), placed),
        commands: take(parts.next(), placed),
    }
}

/// The name of the operator that hears the accounts' answers for the gate.
const LISTENER: &str = "Gate: terminations heard";

/// What the gate's listener has heard from the accounts, shared with the gate of the same
/// worker (one thread: the two operators are scheduled by the same worker).
#[derive(Default)]
struct Heard {
    /// Accepted terminations not yet taken by the gate.
    terminations: Vec<(String, Termination)>,
    /// Every termination fed back before this instant has been heard (the feedback edge's
    /// frontier; `Time::MAX` once it is closed).
    before: Time,
    /// Schedules the gate's operator (set when it is built).
    wake: Option<Activator>,
}

/// When a deleted account's termination is forgotten (as the reference engine does: the
/// retention horizon after D, not before the end of D's month, so no period key of the
/// account can be made again after its deletion).
pub fn forgotten_at(termination: &Termination, retention_ms: i64) -> Ts {
    let deletion = termination.deletion;
    deletion.plus_millis(retention_ms).max(deletion.period().end())
}

/// The terminated accounts of one worker.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Gate {
    retention_ms: i64,
    ended: BTreeMap<String, Termination>,
    sweeper: Sweeper,
    /// The last instant at which this worker passed a `terminate` whose answers are not all
    /// heard yet. Not saved: a checkpoint is taken only when there is none.
    #[serde(skip)]
    unanswered: Option<Time>,
    /// What the listener heard (this run's, kept across a restore).
    #[serde(skip)]
    heard: Rc<RefCell<Heard>>,
}

impl Gate {
    /// No account terminated; a termination is remembered until `retention_ms` after its
    /// deletion.
    pub fn new(retention_ms: i64) -> Gate {
        Gate {
            retention_ms,
            ended: BTreeMap::new(),
            sweeper: Sweeper::default(),
            unanswered: None,
            heard: Rc::default(),
        }
    }

    fn pass(&self, placed: Box<Placed>, now: Ts) -> GateOut {
        let event = &placed.event;
        let retention_ms = self.retention_ms;
        let ended = self.ended.get(&event.account);
        // Past its horizon a termination is forgotten (swept once a day; checked here).
        if let Some(termination) = ended.filter(|t| now < forgotten_at(t, retention_ms)) {
            let deleted = now >= termination.deletion;
            // Refunds and exports pass until the deletion (DOMAIN.md §9).
            if deleted || !matches!(event.kind(), Kind::Refund | Kind::Export) {
                let detail = wording::account_terminated(termination.at, deleted.then_some(termination.deletion));
                return GateOut::Refused(Box::new(placed.rejection(None, Reason::AccountTerminated, detail)));
            }
        }
        match event.kind() {
            Kind::Payment | Kind::Compensation | Kind::Refund | Kind::Terminate | Kind::Export => {
                GateOut::Credit(placed)
            }
            Kind::Order | Kind::OrderCancel | Kind::Emission => GateOut::Order(placed),
            Kind::Application | Kind::Dropout | Kind::Defect | Kind::Introduction => GateOut::Command(placed),
            Kind::Tariff => unreachable!("tariffs do not pass the gate"),
        }
    }
}

impl crate::machine::Durable for Gate {
    fn keep_configuration(&mut self, restored: &mut Gate) {
        restored.retention_ms = self.retention_ms;
        restored.heard = Rc::clone(&self.heard);
    }

    fn carried(input: &GateIn) -> bool {
        matches!(input, GateIn::Terminated { .. })
    }

    fn input_group(input: &GateIn) -> Option<u64> {
        Some(input.route())
    }

    /// Terminated accounts by their key group.
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool) {
        self.ended.retain(|account, _| owned(route(account)));
    }

    fn absorb(&mut self, other: Gate) {
        self.ended.extend(other.ended);
    }
}

impl Machine for Gate {
    const NAME: &'static str = "Gate: terminated accounts";
    type In = GateIn;
    type Out = GateOut;

    fn step(&mut self, now: Time, inputs: Vec<GateIn>, out: &mut Vec<GateOut>) {
        let now = ts_of(now);
        let mut events = Vec::with_capacity(inputs.len());
        // Terminations first: they took effect before this instant.
        for input in inputs {
            match input {
                GateIn::Terminated { account, termination } => {
                    debug_assert!(termination.at < now, "a termination is fed back after its instant");
                    self.ended.insert(account, termination);
                }
                GateIn::Event(placed) => events.push(placed),
            }
        }
        if self.sweeper.due(now) {
            let retention_ms = self.retention_ms;
            self.ended
                .retain(|_, termination| now < forgotten_at(termination, retention_ms));
        }
        for placed in events {
            crate::failure::processing(&placed.event.id);
            let passed = self.pass(placed, now);
            if matches!(&passed, GateOut::Credit(placed) if placed.event.kind() == Kind::Terminate) {
                self.unanswered = Some(crate::flow::time_of(now));
            }
            out.push(passed);
        }
    }

    fn next_timer(&self) -> Option<Time> {
        None
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<GateOut>) {}

    /// Takes what the listener heard; ready once every `terminate` passed is answered: the
    /// feedback edge is complete past its instant + 1 ms (module docs).
    fn ready(&mut self) -> bool {
        let mut heard = self.heard.borrow_mut();
        for (account, termination) in heard.terminations.drain(..) {
            self.ended.insert(account, termination);
        }
        if self.unanswered.is_some_and(|at| heard.before > at + 1) {
            self.unanswered = None;
        }
        self.unanswered.is_none()
    }

    fn wake_with(&mut self, activator: Activator) {
        self.heard.borrow_mut().wake = Some(activator);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Body, Event};

    fn ts(text: &str) -> Ts {
        Ts::parse_rfc3339(text).expect("a timestamp")
    }

    fn event(id: &str, account: &str, body: Body, at: &str) -> Box<Placed> {
        Box::new(Placed {
            effective: ts(at),
            late: false,
            event: Event {
                id: id.to_string(),
                account: account.to_string(),
                ts: ts(at),
                body,
            },
        })
    }

    #[test]
    fn a_terminated_account_is_refused_except_refunds_and_exports_until_its_deletion() {
        // Feeds one termination and checks each kind before and after D, and another
        // account untouched, on the machine alone.
        let mut gate = Gate::new(1000);
        let termination = Termination::at(ts("2025-01-10T10:00:00Z"), 5);
        let now = ts("2025-01-10T10:00:00.001Z");
        let mut out = Vec::new();
        let inputs = vec![
            GateIn::Terminated {
                account: "A".into(),
                termination,
            },
            GateIn::Event(event("e1", "A", Body::Export, "2025-01-10T10:00:00.001Z")),
            GateIn::Event(event("e2", "A", Body::Terminate, "2025-01-10T10:00:00.001Z")),
            GateIn::Event(event("e3", "B", Body::Terminate, "2025-01-10T10:00:00.001Z")),
        ];
        gate.step(crate::flow::time_of(now), inputs, &mut out);
        assert!(matches!(out[0], GateOut::Credit(_)));
        match &out[1] {
            GateOut::Refused(output) => match output.as_ref() {
                Output::Rejection(rejection) => {
                    assert_eq!(rejection.reason, Reason::AccountTerminated);
                    assert_eq!(rejection.detail, wording::account_terminated(termination.at, None));
                }
                other => panic!("a rejection, not {other:?}"),
            },
            other => panic!("a refusal, not {other:?}"),
        }
        assert!(matches!(out[2], GateOut::Credit(_)));
        out.clear();
        let at_deletion = termination.deletion;
        let export = event("e4", "A", Body::Export, "2025-01-10T10:00:00.001Z");
        gate.step(crate::flow::time_of(at_deletion), vec![GateIn::Event(export)], &mut out);
        match &out[0] {
            GateOut::Refused(output) => match output.as_ref() {
                Output::Rejection(rejection) => {
                    let detail = wording::account_terminated(termination.at, Some(at_deletion));
                    assert_eq!(rejection.detail, detail);
                }
                other => panic!("a rejection, not {other:?}"),
            },
            other => panic!("a refusal, not {other:?}"),
        }
        // Past the horizon (and the end of D's month) the id is a new account.
        out.clear();
        let later = forgotten_at(&termination, 1000).plus_millis(1);
        let payment = event("e5", "A", Body::Export, "2025-01-10T10:00:00.001Z");
        gate.step(crate::flow::time_of(later), vec![GateIn::Event(payment)], &mut out);
        assert!(matches!(out[0], GateOut::Credit(_)));
        assert!(gate.ended.is_empty());
    }

    #[test]
    fn after_passing_a_terminate_the_gate_waits_until_every_answer_is_heard() {
        // The gate passes A's terminate at T, then is not ready until the listener's
        // frontier is past T + 1 ms; an accepted termination heard before then refuses A's
        // next event, and a gate that passed no terminate never waits.
        let mut gate = Gate::new(1000);
        let at = ts("2025-01-10T10:00:00Z");
        let t = crate::flow::time_of(at);
        assert!(gate.ready(), "nothing passed, nothing to wait for");
        let mut out = Vec::new();
        let terminate = event("e1", "A", Body::Terminate, "2025-01-10T10:00:00Z");
        gate.step(t, vec![GateIn::Event(terminate)], &mut out);
        assert!(matches!(out[0], GateOut::Credit(_)));
        assert!(!gate.ready(), "the answer to the terminate at T is not heard yet");
        gate.heard.borrow_mut().before = t + 1;
        assert!(!gate.ready(), "answers fed back at T + 1 ms may still come");
        let termination = Termination::at(at, 5);
        gate.heard.borrow_mut().terminations.push(("A".into(), termination));
        gate.heard.borrow_mut().before = t + 2;
        assert!(
            gate.ready(),
            "every answer to T is heard once the edge is past T + 1 ms"
        );
        assert_eq!(gate.ended.get("A"), Some(&termination));
        out.clear();
        let payment = event("e2", "A", Body::Export, "2025-01-10T10:00:00.002Z");
        gate.step(t + 2, vec![GateIn::Event(payment)], &mut out);
        assert!(matches!(out[0], GateOut::Credit(_)), "an export passes until D");
        let order = event("e3", "A", Body::Terminate, "2025-01-10T10:00:00.002Z");
        out.clear();
        gate.step(t + 2, vec![GateIn::Event(order)], &mut out);
        assert!(matches!(out[0], GateOut::Refused(_)));
        assert!(gate.ready(), "a refused terminate is not waited for");
    }
}
