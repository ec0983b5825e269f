//! "Codes: national index" — who owns every code, and the commands waiting for one.
//!
//! In: each valid code of an accepted emission and of a command, exchanged by a hash of the
//! code. Out: `ALREADY_EXISTS`, `WRONG_ACCOUNT` and `UNKNOWN_CODE` rejections, and for the
//! owner's account: codes created, commands on its own codes, and held commands resolved by
//! an emission (DOMAIN.md §4, §8). Within an instant, codes are taken in account order
//! (kind rank, event id, position); holds ending at an instant end after its inputs.
//!
//! Tiers (issue 17): live codes are held in RAM; a code that becomes final moves to the
//! worker's final-code store on disk ([`Tier`]), which answers for codes it does not hold
//! from a filter in RAM. A checkpoint records the store's manifest, not its codes.

use crate::checkpoint::{decode, encode, RestoreError, Snapshot};
use crate::driver::{run_machine, Drive};
use crate::event::Kind;
use crate::final_codes::{CodesMemory, FinalCodes, FinalRecord, Manifest, Tier, Unsynced};
use crate::flow::Time;
use crate::flow::{
    code_key, edges, group_of_hash, take, time_of, ts_of, AccountIn, CodeIn, CodeKey, CodeMap, CodeOut, CodesIn, Edge,
    Header,
};
use crate::intern::Interner;
use crate::machine::{merge_shares, Machine};
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

/// Who owns a live code (a final one is in the [`Tier`]).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Owner {
    account: u32,
}

/// What the index knows of a code.
enum Known {
    /// Live: its owner's interned id.
    Live(u32),
    /// Final, from the store.
    Final(FinalRecord),
}

/// The index of one worker's share of the codes.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Codes {
    /// The final-code store's manifest at the last save. The first field: a checkpoint
    /// loader reads it alone ([`Codes::manifest_of`]) to verify the files before a restore.
    final_codes: Option<Manifest>,
    // Looked up, never iterated: a HashMap cannot reach an output's order. Per live code:
    // the 16-byte fingerprint and the owner's interned id.
    owners: CodeMap<Owner>,
    retention_ms: i64,
    accounts: Interner,
    held: BTreeMap<String, BTreeMap<HoldKey, (Ts, CodeIn)>>,
    deadlines: BTreeSet<(Ts, HoldKey, String)>,
    hold_ms: i64,
    /// Final codes (configuration and files: not saved; the manifest above is).
    #[serde(skip)]
    tier: Option<Tier>,
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
    let mut index = index;
    index.tier().attach(codes.scope().index(), drive.checkpoints.clone());
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
    /// forgotten `retention_ms` after they became final. Final codes go to a temporary
    /// directory unless [`Codes::with_final_codes`] says where.
    pub fn new(hold_ms: i64, retention_ms: i64) -> Codes {
        Codes {
            final_codes: None,
            owners: CodeMap::default(),
            retention_ms,
            accounts: Interner::default(),
            held: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            hold_ms,
            tier: None,
        }
    }

    /// Final codes go to `place` (one directory per worker under it).
    pub fn with_final_codes(mut self, place: FinalCodes) -> Codes {
        self.tier = Some(Tier::new(place, self.retention_ms));
        self
    }

    /// The final-code tier, in a temporary directory if none was given.
    fn tier(&mut self) -> &mut Tier {
        let retention_ms = self.retention_ms;
        self.tier
            .get_or_insert_with(|| Tier::new(FinalCodes::temporary(&std::env::temp_dir()), retention_ms))
    }

    /// The final-code manifest in a saved index's state (read without decoding the rest).
    pub fn manifest_of(state: &[u8]) -> Result<Option<Manifest>, RestoreError> {
        decode("the national index's final-code manifest", state)
    }

    /// The live codes in a saved index's state, counted without opening its final-code
    /// store (reports on a checkpoint file, which may have been copied away from it).
    pub fn live_codes_of(state: &[u8]) -> Result<usize, RestoreError> {
        let saved: Codes = decode(std::any::type_name::<Codes>(), state)?;
        Ok(saved.owners.len())
    }

    /// Live codes the index holds in RAM (for memory measurements).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether the index holds no live code.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The live codes' part of what the index's state holds and costs (the tier adds the
    /// final codes' when it reports).
    pub fn memory(&self) -> CodesMemory {
        let entry = std::mem::size_of::<(CodeKey, Owner)>() + 1;
        CodesMemory {
            live_codes: self.owners.len() as u64,
            final_codes: 0,
            ram_bytes: (self.owners.capacity() * entry) as u64,
            disk_bytes: 0,
            emission_text: Default::default(),
        }
    }

    /// Seals the final-code store's memtable and records its manifest (the run files are
    /// shared with earlier checkpoints, never copied); returns the files written since the
    /// last checkpoint that are not fsynced yet.
    fn seal_for_checkpoint(&mut self) -> Option<Unsynced> {
        let mut unsynced = None;
        if let Some(tier) = &mut self.tier {
            self.final_codes = tier.checkpoint();
            unsynced = tier.take_unsynced();
        }
        self.publish_memory();
        unsynced
    }

    fn publish_memory(&self) {
        if let Some(tier) = &self.tier {
            tier.publish(self.memory());
        }
    }

    /// What the index knows of a code at `now`: live codes from RAM, then final ones from
    /// the store (a code final for `retention_ms` is forgotten, DOMAIN.md §7).
    fn known(&self, key: CodeKey, now: Ts) -> Option<Known> {
        if let Some(owner) = self.owners.get(&key) {
            return Some(Known::Live(owner.account));
        }
        self.tier.as_ref()?.get(key, now).map(Known::Final)
    }

    /// A live code became final: it leaves RAM for the store.
    fn finalize(&mut self, key: CodeKey, at: Ts, status: Status) {
        let Some(owner) = self.owners.remove(&key) else { return };
        // The name by reference: the store shares its own copy (no allocation per code).
        self.tier();
        let tier = self.tier.as_mut().expect("made by tier()");
        tier.insert_final(key, self.accounts.name(owner.account), status, at);
        if self.owners.capacity() > 1024 && self.owners.len() < self.owners.capacity() / 4 {
            self.owners.shrink_to_fit();
        }
    }

    fn emit(&mut self, code: CodeIn, now: Ts, out: &mut Vec<IndexOut>) {
        let key = code_key(&code.code);
        if self.known(key, now).is_some() {
            out.push(reject(&code, Reason::AlreadyExists, wording::code_exists()));
            return;
        }
        let account = self.accounts.intern(&code.header.account);
        self.owners.insert(key, Owner { account });
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
        match self.known(code_key(&code.code), now) {
            // A final code: the account has forgotten it, the index answers (in the words the
            // account would use).
            Some(Known::Final(record)) if *record.account == *code.header.account => {
                let detail = wording::invalid_transition(code.header.kind, record.status);
                out.push(reject(&code, Reason::InvalidTransition, detail));
            }
            Some(Known::Live(id)) if self.accounts.name(id) == code.header.account => {
                out.push(IndexOut::ToAccount(CodeOut::Command(code)))
            }
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
        restored.tier = self.tier.take();
    }

    /// Seals the final-code store's memtable and records its manifest: the run files are
    /// shared with earlier checkpoints, never copied.
    fn save(&mut self) -> Vec<u8> {
        if let Some(unsynced) = self.seal_for_checkpoint() {
            unsynced.settle_or_end();
        }
        encode(self)
    }

    /// Seals the memtable on the worker (a run file of ≤ 65,536 records, not fsynced),
    /// then hands the writer the files to fsync and a copy of the live state to encode:
    /// live codes are bounded by the expiry window, and their map (16-byte keys, 4-byte
    /// owners) copies without allocating per code, several times faster than bincode
    /// encodes it.
    fn snapshot(&mut self) -> Snapshot {
        let unsynced = self.seal_for_checkpoint();
        // The fields `Codes` serializes, in its order (`tier` is skipped): the same bytes.
        Snapshot::of((
            self.final_codes.clone(),
            self.owners.clone(),
            self.retention_ms,
            self.accounts.clone(),
            self.held.clone(),
            self.deadlines.clone(),
            self.hold_ms,
        ))
        .after(move || unsynced.into_iter().for_each(Unsynced::settle_or_end))
    }

    /// Restores the live codes and opens the store the saved manifest names (each file
    /// verified: a torn or corrupt one refuses the restore, naming it).
    fn restore(&mut self, state: &[u8]) -> Result<(), RestoreError> {
        let mut restored: Codes = decode(std::any::type_name::<Codes>(), state)?;
        self.keep_configuration(&mut restored);
        let retention_ms = restored.retention_ms;
        if let Some(manifest) = restored.final_codes.clone() {
            let tier = restored.tier();
            tier.set_retention(retention_ms);
            tier.open(&manifest).map_err(|error| RestoreError {
                what: "the national index's final codes".into(),
                detail: error.to_string(),
            })?;
        }
        *self = restored;
        Ok(())
    }

    fn carried(input: &CodesIn) -> bool {
        // Fed back by the accounts from the instant before: not produced again after a
        // restore.
        matches!(input, CodesIn::Final { .. })
    }

    fn input_group(input: &CodesIn) -> Option<u64> {
        Some(input.route())
    }

    /// Live codes and holds by their code's key group (the names interned stay: ids are
    /// only looked up).
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool) {
        let mine = |key: CodeKey| owned(group_of_hash(key as u64));
        self.owners.retain(|key, _| mine(*key));
        self.held.retain(|code, _| mine(code_key(code)));
        self.deadlines.retain(|(_, _, code)| mine(code_key(code)));
    }

    /// Live codes of `other` with their owners re-interned here; its final codes are
    /// rebuilt into this worker's store by [`Durable::restore_rescaled`].
    fn absorb(&mut self, other: Codes) {
        for (key, owner) in other.owners {
            let account = self.accounts.intern(other.accounts.name(owner.account));
            self.owners.insert(key, Owner { account });
        }
        self.held.extend(other.held);
        self.deadlines.extend(other.deadlines);
    }

    /// Every old worker's share, each keeping this worker's groups, merged; then this
    /// worker's final-code store is built anew from the old stores' run files, keeping the
    /// records of its groups (final_codes::Tier::rebuild).
    fn restore_rescaled(&mut self, shares: &[(usize, &[u8])], owned: &dyn Fn(u64) -> bool) -> Result<(), RestoreError> {
        let mut stores: Vec<(usize, Manifest)> = Vec::new();
        let merged = merge_shares::<Codes>(shares, owned, |old_worker, part| {
            stores.extend(part.final_codes.take().map(|manifest| (old_worker, manifest)));
            Ok(())
        })?;
        let Some(mut restored) = merged else {
            return Ok(());
        };
        self.keep_configuration(&mut restored);
        let retention_ms = restored.retention_ms;
        if !stores.is_empty() {
            let tier = restored.tier();
            tier.set_retention(retention_ms);
            tier.rebuild(&stores, &|key| owned(group_of_hash(key as u64)))
                .map_err(|error| RestoreError {
                    what: "the national index's final codes".into(),
                    detail: error.to_string(),
                })?;
        }
        *self = restored;
        Ok(())
    }
}

impl Machine for Codes {
    const NAME: &'static str = "Codes: national index";
    type In = CodesIn;
    type Out = IndexOut;

    fn step(&mut self, now: Time, inputs: Vec<CodesIn>, out: &mut Vec<IndexOut>) {
        let now = ts_of(now);
        if self
            .tier
            .as_mut()
            .is_some_and(|tier| tier.advance(now) && tier.publish_due())
        {
            self.publish_memory();
        }
        let mut codes = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                CodesIn::Code(code) => codes.push(code),
                CodesIn::Final { key, at, status } => self.finalize(key, at, status),
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
        self.publish_memory();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{group_of_hash, worker_of_group};
    use crate::machine::Durable;

    /// Issue 18: the index saved by 2 workers restores on 1, 3 and 4: each new worker knows
    /// exactly the codes of its key groups, live ones with their owner (re-interned) and
    /// final ones from its rebuilt store.
    #[test]
    fn an_index_saved_by_two_workers_restores_its_groups_on_any_count() {
        let root = std::env::temp_dir().join(format!("markledger-codes-rescale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let place = FinalCodes::in_state(&root);
        let (hold_ms, retention_ms) = (60_000, 400 * crate::time::MILLIS_PER_DAY);
        let key_of = |i: usize| code_key(&format!("code-{i}"));
        let account_of = |i: usize| format!("KZ-{:03}", i % 7);
        let owner = |key: CodeKey, workers: usize| worker_of_group(group_of_hash(key as u64), workers);
        let mut saved = Vec::new();
        for worker in 0..2 {
            let mut index = Codes::new(hold_ms, retention_ms).with_final_codes(place.clone());
            index.tier().attach(worker, None);
            // Interned in another order on each worker: ids differ between them.
            if worker == 1 {
                for i in (0..7).rev() {
                    index.accounts.intern(&account_of(i));
                }
            }
            for i in (0..600).filter(|i| owner(key_of(*i), 2) == worker) {
                let account = index.accounts.intern(&account_of(i));
                index.owners.insert(key_of(i), Owner { account });
                if i % 2 == 0 {
                    index.finalize(key_of(i), Ts(1_000), Status::AppliedPaid);
                }
            }
            saved.push((worker, index.save()));
        }
        let shares: Vec<(usize, &[u8])> = saved.iter().map(|(worker, state)| (*worker, &state[..])).collect();
        for workers in [1usize, 3, 4] {
            for worker in 0..workers {
                let mut index = Codes::new(hold_ms, retention_ms).with_final_codes(place.clone());
                index.tier().attach(worker, None);
                index
                    .restore_rescaled(&shares, &|group| worker_of_group(group, workers) == worker)
                    .expect("restored");
                for i in 0..600 {
                    let known = index.known(key_of(i), Ts(2_000));
                    let mine = owner(key_of(i), workers) == worker;
                    match known {
                        Some(Known::Live(id)) => {
                            assert!(mine && i % 2 == 1, "code {i} on worker {worker} of {workers}");
                            assert_eq!(index.accounts.name(id), account_of(i));
                        }
                        Some(Known::Final(record)) => {
                            assert!(mine && i % 2 == 0, "code {i} on worker {worker} of {workers}");
                            assert_eq!(
                                (&*record.account, record.status),
                                (&*account_of(i), Status::AppliedPaid)
                            );
                        }
                        None => assert!(!mine, "worker {worker} of {workers} lost code {i}"),
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
