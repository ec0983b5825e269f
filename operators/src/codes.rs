//! "Codes: national index" — who owns every code, and the commands waiting for one.
//!
//! In: each valid code of an accepted emission and of a command, exchanged by a hash of the
//! code. Out: `ALREADY_EXISTS`, `WRONG_ACCOUNT` and `UNKNOWN_CODE` rejections, and for the
//! owner's account: codes created, commands on its own codes, and held commands resolved by
//! an emission (DOMAIN.md §4, §8). Within an instant, codes are taken in account order
//! (kind rank, event id, position); holds ending at an instant end after its inputs.

use crate::driver::{run_machine, Drive};
use crate::event::Kind;
use crate::flow::Time;
use crate::flow::{
    code_key, edges, take, time_of, ts_of, AccountIn, CodeIn, CodeKey, CodeMap, CodeOut, CodesIn, Edge, Header,
};
use crate::intern::Interner;
use crate::machine::{Machine, Sweeper};
use crate::output::{Output, Rejection};
use crate::reason::Reason;
use crate::status::Status;
use crate::time::Ts;
use crate::wording;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::StreamVec;

/// A held command's code, ordered the way holds were made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct HoldKey {
    effective: Ts,
    kind: Kind,
    id: String,
    position: u32,
}

/// Who owns a code, and since when it is final (`Ts::MAX` while it is not) in which
/// status. 16 bytes: the status fits in the padding.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Owner {
    account: u32,
    final_at: Ts,
    status: Status,
}

/// The index of one worker's share of the codes.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Codes {
    // Looked up, never iterated: a HashMap cannot reach an output's order. Per live code:
    // the 16-byte fingerprint, the owner's interned id, and when the code became final.
    owners: CodeMap<Owner>,
    retention_ms: i64,
    accounts: Interner,
    held: BTreeMap<String, BTreeMap<HoldKey, (Ts, CodeIn)>>,
    deadlines: BTreeSet<(Ts, HoldKey, String)>,
    hold_ms: i64,
    sweeper: Sweeper,
}

/// What the national index emits: one variant per edge of the graph.
#[derive(Clone, Debug)]
pub enum IndexOut {
    /// A refused code (→ the rejections output).
    Refused(Box<Output>),
    /// A code for its owner's account (→ the accounts).
    ToAccount(CodeOut),
}

impl Edge for IndexOut {
    const EDGES: u64 = 2;
    fn edge(&self) -> u64 {
        match self {
            IndexOut::Refused(_) => 0,
            IndexOut::ToAccount(_) => 1,
        }
    }
}

/// The national index's typed outputs.
pub struct IndexEdges<'scope> {
    /// Rejections (`ALREADY_EXISTS`, `WRONG_ACCOUNT`, `UNKNOWN_CODE`, `INVALID_TRANSITION`
    /// of final codes).
    pub refusals: StreamVec<'scope, Time, Output>,
    /// Codes created, commands on an account's own codes, held commands resolved.
    pub to_accounts: StreamVec<'scope, Time, AccountIn>,
}

/// "Codes: national index" over emissions' and commands' codes and the accounts' finality
/// (module docs), exchanged by the code's fingerprint.
pub fn national_index<'scope>(
    codes: StreamVec<'scope, Time, CodesIn>,
    index: Codes,
    drive: &Drive,
) -> IndexEdges<'scope> {
    let mut parts = edges(run_machine(codes, Exchange::new(CodesIn::route), index, drive));
    IndexEdges {
        refusals: take(parts.next(), |out| {
            if let IndexOut::Refused(r) = out {
                Some(*r)
            } else {
                None
            }
        }),
        to_accounts: take(parts.next(), |out| match out {
            IndexOut::ToAccount(code) => Some(AccountIn::Code(code)),
            IndexOut::Refused(_) => None,
        }),
    }
}

fn reject(code: &CodeIn, reason: Reason, detail: String) -> IndexOut {
    let header = &code.header;
    let rejection = Rejection::of_event(
        &header.id,
        header.kind.as_str(),
        &header.account,
        Some(&code.code),
        reason,
        detail,
    );
    IndexOut::Refused(Box::new(Output::Rejection(rejection)))
}

impl Codes {
    /// An empty index; commands wait `hold_ms` for unknown codes; final codes are
    /// forgotten `retention_ms` after they became final.
    pub fn new(hold_ms: i64, retention_ms: i64) -> Codes {
        Codes {
            owners: CodeMap::default(),
            retention_ms,
            accounts: Interner::default(),
            held: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            hold_ms,
            sweeper: Sweeper::default(),
        }
    }

    /// Codes the index holds (for memory measurements).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether the index holds no code.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Forgets, once per day of event time, every code final for longer than the retention
    /// horizon.
    fn sweep(&mut self, now: Ts) {
        if !self.sweeper.due(now) {
            return;
        }
        let retention_ms = self.retention_ms;
        self.owners
            .retain(|_, owner| owner.final_at == Ts::MAX || owner.final_at.plus_millis(retention_ms) > now);
        if self.owners.capacity() > 1024 && self.owners.len() < self.owners.capacity() / 4 {
            self.owners.shrink_to_fit();
        }
    }

    /// The owner of a code at `now`. Retention is checked here: a code final for
    /// `retention_ms` is forgotten the first time it is looked up (DOMAIN.md §7).
    fn owner(&mut self, key: CodeKey, now: Ts) -> Option<Owner> {
        let owner = *self.owners.get(&key)?;
        if owner.final_at != Ts::MAX && owner.final_at.plus_millis(self.retention_ms) <= now {
            self.owners.remove(&key);
            return None;
        }
        Some(owner)
    }

    fn emit(&mut self, code: CodeIn, now: Ts, out: &mut Vec<IndexOut>) {
        let key = code_key(&code.code);
        if self.owner(key, now).is_some() {
            out.push(reject(&code, Reason::AlreadyExists, wording::code_exists()));
            return;
        }
        let account = self.accounts.intern(&code.header.account);
        self.owners.insert(
            key,
            Owner {
                account,
                final_at: Ts::MAX,
                status: Status::Emitted,
            },
        );
        let waiting = self.held.remove(&code.code).unwrap_or_default();
        let after = code.header.clone();
        out.push(IndexOut::ToAccount(CodeOut::Created(code)));
        for (key, (deadline, command)) in waiting {
            self.deadlines.remove(&(deadline, key, command.code.clone()));
            if command.header.account == after.account {
                out.push(IndexOut::ToAccount(CodeOut::Resolved {
                    after: after.clone(),
                    command,
                }));
            } else {
                out.push(reject(&command, Reason::WrongAccount, wording::wrong_account()));
            }
        }
    }

    fn command(&mut self, code: CodeIn, now: Ts, out: &mut Vec<IndexOut>) {
        let owner = self.owner(code_key(&code.code), now);
        let owner = owner.map(|owner| (self.accounts.name(owner.account), owner));
        match owner {
            // A final code: the account has forgotten it, the index answers (in the words the
            // account would use).
            Some((name, owner)) if name == code.header.account && owner.final_at != Ts::MAX => {
                let detail = wording::invalid_transition(code.header.kind, owner.status);
                out.push(reject(&code, Reason::InvalidTransition, detail));
            }
            Some((name, _)) if name == code.header.account => out.push(IndexOut::ToAccount(CodeOut::Command(code))),
            Some(_) => out.push(reject(&code, Reason::WrongAccount, wording::wrong_account())),
            None => {
                let deadline = code.header.ts.plus_millis(self.hold_ms).max(now);
                let key = HoldKey {
                    effective: code.header.effective,
                    kind: code.header.kind,
                    id: code.header.id.clone(),
                    position: code.position,
                };
                self.deadlines.insert((deadline, key.clone(), code.code.clone()));
                self.held
                    .entry(code.code.clone())
                    .or_default()
                    .insert(key, (deadline, code));
            }
        }
    }

    fn end_holds(&mut self, until: Option<Ts>, out: &mut Vec<IndexOut>) {
        while let Some((deadline, _, _)) = self.deadlines.first() {
            if until.is_some_and(|until| *deadline > until) {
                break;
            }
            let (_, key, code) = self.deadlines.pop_first().expect("peeked");
            let holds = self.held.get_mut(&code).expect("indexed hold");
            let (deadline, command) = holds.remove(&key).expect("indexed hold");
            if holds.is_empty() {
                self.held.remove(&code);
            }
            out.push(reject(&command, Reason::UnknownCode, wording::unknown_code(deadline)));
        }
    }
}

impl crate::machine::Durable for Codes {
    fn keep_configuration(&mut self, restored: &mut Codes) {
        restored.retention_ms = self.retention_ms;
        restored.hold_ms = self.hold_ms;
    }

    fn carried(input: &CodesIn) -> bool {
        // Fed back by the accounts from the instant before: not produced again after a
        // restore.
        matches!(input, CodesIn::Final { .. })
    }
}

impl Machine for Codes {
    const NAME: &'static str = "Codes: national index";
    type In = CodesIn;
    type Out = IndexOut;

    fn step(&mut self, now: Time, inputs: Vec<CodesIn>, out: &mut Vec<IndexOut>) {
        let now = ts_of(now);
        self.sweep(now);
        let mut codes = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                CodesIn::Code(code) => codes.push(code),
                CodesIn::Final { key, at, status } => {
                    if let Some(owner) = self.owners.get_mut(&key) {
                        owner.final_at = at;
                        owner.status = status;
                    }
                }
            }
        }
        // Codes of one event share their header: compare positions without comparing ids.
        codes.sort_by(|a, b| {
            if Arc::ptr_eq(&a.header, &b.header) {
                a.position.cmp(&b.position)
            } else {
                (a.header.kind, &a.header.id, a.position).cmp(&(b.header.kind, &b.header.id, b.position))
            }
        });
        let mut last: Option<Arc<Header>> = None;
        for code in codes {
            // Once per event, not per code: its codes share one header.
            if !last.as_ref().is_some_and(|header| Arc::ptr_eq(header, &code.header)) {
                crate::failure::processing(&code.header.id);
                last = Some(code.header.clone());
            }
            if code.header.kind == Kind::Emission {
                self.emit(code, now, out);
            } else {
                self.command(code, now, out);
            }
        }
        self.end_holds(Some(now), out);
    }

    fn next_timer(&self) -> Option<Time> {
        self.deadlines.first().map(|(at, _, _)| time_of(*at))
    }

    fn finish(&mut self, _end: Time, out: &mut Vec<IndexOut>) {
        // The watermark stopped: commands still waiting are refused.
        self.end_holds(None, out);
    }
}
