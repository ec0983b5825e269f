//! The bare loop's state machine: the per-code lifecycle transitions of DOMAIN.md §2 in one
//! hash map, in one thread, and nothing else.
//!
//! In: decoded events, in partition order. State: code fingerprint (xxh3-128, the key the
//! national index uses, [`code_key`]) → owning account (interned) and status, 8 bytes a
//! code. Out: counts only ([`Tally`], [`BareIndex::statuses`]).
//!
//! What it leaves out on purpose, so that it measures the floor of the per-code work:
//! money (an application makes a code `APPLIED_PAID` at once, as if every balance covered
//! it, so `CODE_UNPAID` never occurs), the ledger and every output, de-duplication, holds (a
//! command on an unknown code is refused at once), time (no expiry, no periods, no late
//! events), orders, and the GTIN and code alphabet checks. Partitions are read one after
//! another: each account's events, and so each code's, live in one partition, so per-code
//! order is the partition's.

use markledger_operators::event::Kind;
use markledger_operators::flow::{code_key, CodeKey};
use markledger_operators::intern::Interner;
use markledger_operators::{Event, Status};
use std::collections::HashMap;

/// One code's state: 8 bytes.
#[derive(Clone, Copy, Debug)]
struct CodeState {
    account: u32,
    status: Status,
}

/// What the loop did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Codes named by emissions and commands (the pipeline's "code events").
    pub code_events: u64,
    /// Code events that changed a code (created one, or moved it along its lifecycle).
    pub accepted: u64,
    /// Emissions of a code that exists (`ALREADY_EXISTS`).
    pub already_exists: u64,
    /// Commands on a code nobody emitted (`UNKNOWN_CODE`, without the engine's hold).
    pub unknown_code: u64,
    /// Commands on another account's code (`WRONG_ACCOUNT`).
    pub wrong_account: u64,
    /// Commands the code's status does not allow (`INVALID_TRANSITION`).
    pub invalid_transition: u64,
}

/// Code → (account, status), for every code ever emitted.
#[derive(Debug, Default)]
pub struct BareIndex {
    // Looked up, and iterated only to count statuses: no order reaches an output.
    codes: HashMap<CodeKey, CodeState>,
    accounts: Interner,
    tally: Tally,
}

/// The status a command moves a code to, if its status allows the command (DOMAIN.md §2,
/// with every application paid at once).
pub fn transition(kind: Kind, from: Status) -> Option<Status> {
    match (kind, from) {
        (Kind::Application, Status::Emitted) => Some(Status::AppliedPaid),
        (Kind::Dropout, Status::Emitted) => Some(Status::Rejected),
        (Kind::Defect, Status::AppliedUnpaid | Status::AppliedPaid) => Some(Status::Annulled),
        (Kind::Introduction, Status::AppliedPaid) => Some(Status::Introduced),
        _ => None,
    }
}

impl BareIndex {
    /// An empty index.
    pub fn new() -> BareIndex {
        BareIndex::default()
    }

    /// Applies one event's codes (events that name no code change nothing).
    pub fn apply(&mut self, event: &Event) {
        let codes = event.body.codes();
        if codes.is_empty() {
            return;
        }
        let kind = event.kind();
        let account = self.accounts.intern(&event.account);
        let tally = &mut self.tally;
        tally.code_events += codes.len() as u64;
        if kind == Kind::Emission {
            for code in codes {
                match self.codes.entry(code_key(code)) {
                    std::collections::hash_map::Entry::Occupied(_) => tally.already_exists += 1,
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(CodeState {
                            account,
                            status: Status::Emitted,
                        });
                        tally.accepted += 1;
                    }
                }
            }
            return;
        }
        for code in codes {
            match self.codes.get_mut(&code_key(code)) {
                None => tally.unknown_code += 1,
                Some(state) if state.account != account => tally.wrong_account += 1,
                Some(state) => match transition(kind, state.status) {
                    Some(to) => {
                        state.status = to;
                        tally.accepted += 1;
                    }
                    None => tally.invalid_transition += 1,
                },
            }
        }
    }

    /// The counts so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Codes held (every code emitted: the loop forgets nothing).
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether no code was emitted.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Codes per status, in lifecycle order, statuses with no code left out.
    pub fn statuses(&self) -> Vec<(Status, u64)> {
        let mut counts = [0u64; Status::ALL.len()];
        for state in self.codes.values() {
            counts[state.status as usize] += 1;
        }
        Status::ALL.into_iter().zip(counts).filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::{Body, Ts};

    fn event(id: &str, account: &str, body: Body) -> Event {
        Event {
            id: id.into(),
            ts: Ts(0),
            account: account.into(),
            body,
        }
    }

    fn codes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// Each lifecycle rule of DOMAIN.md §2 the loop keeps, and each refusal it counts, on a
    /// hand-made sequence whose outcome is worked out by hand.
    #[test]
    fn transitions_follow_the_lifecycle() {
        let mut index = BareIndex::new();
        let emission = Body::Emission {
            order: "O".into(),
            gtin: "04870000000017".into(),
            codes: codes(&["a", "b", "c", "d"]),
        };
        index.apply(&event("e1", "A", emission.clone()));
        index.apply(&event("e2", "A", emission));
        index.apply(&event(
            "app",
            "A",
            Body::Application {
                report: "R".into(),
                codes: codes(&["a", "b", "x"]),
            },
        ));
        index.apply(&event(
            "drop",
            "A",
            Body::Dropout {
                codes: codes(&["c", "a"]),
                reason: "spoiled".into(),
            },
        ));
        index.apply(&event("intro-b", "B", Body::Introduction { codes: codes(&["b"]) }));
        index.apply(&event(
            "intro",
            "A",
            Body::Introduction {
                codes: codes(&["a", "d"]),
            },
        ));
        assert_eq!(
            index.tally(),
            &Tally {
                code_events: 4 + 4 + 3 + 2 + 1 + 2,
                // 4 emitted, a and b applied, c dropped, a introduced.
                accepted: 4 + 2 + 1 + 1,
                already_exists: 4,
                unknown_code: 1,
                wrong_account: 1,
                // dropout of applied a; introduction of emitted d.
                invalid_transition: 2,
            }
        );
        assert_eq!(
            index.statuses(),
            vec![
                (Status::Emitted, 1),
                (Status::AppliedPaid, 1),
                (Status::Introduced, 1),
                (Status::Rejected, 1)
            ]
        );
    }
}
