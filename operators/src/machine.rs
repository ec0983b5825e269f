//! Stateful operators as state machines: a [`Machine`] is stepped one complete instant at a
//! time by the driver (driver.rs), and a [`Durable`] one saves and restores its state for
//! checkpoints (checkpoint.rs).
//!
//! Each machine carries a constant [`Machine::NAME`]: the timely operator's name (logs and
//! profiles show it, a failure's one-line message names it) and the key of its checkpoint
//! shares. A checkpoint restores share by share under these names, so they are constants of
//! the types, never labels chosen where the graph is wired, and no two may be equal
//! ([`distinct`], checked at compile time where the checkpoint's list of names is built).
//!
//! What a checkpoint costs a worker is [`Durable::snapshot`]: by default the machine's whole
//! state encoded on the worker; a machine whose state is cheap to capture (structurally
//! shared maps) hands over the capture and the checkpoint writer's thread encodes it.

use crate::checkpoint::{decode, encode, RestoreError, Snapshot};
use crate::flow::Time;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A keyed state machine stepped one complete instant at a time.
pub trait Machine: 'static {
    /// The operator's name and its checkpoint key (see the module docs).
    const NAME: &'static str;
    /// What flows in.
    type In: Clone + 'static;
    /// What flows out.
    type Out: Clone + 'static;
    /// Applies the timers due at `now`, then `inputs` (all inputs at `now`), then whatever
    /// the machine does after an instant's inputs (holds ending).
    fn step(&mut self, now: Time, inputs: Vec<Self::In>, out: &mut Vec<Self::Out>);
    /// The earliest pending timer.
    fn next_timer(&self) -> Option<Time>;
    /// The input is exhausted and every instant up to the end has been stepped.
    fn finish(&mut self, end: Time, out: &mut Vec<Self::Out>);
    /// Whether the machine may step its next instant (or save a checkpoint) once its input
    /// frontier has passed it. Always, for a machine whose decisions depend only on its
    /// input stream. A machine that also listens to something outside that stream (the
    /// gate: the accounts' answers to a `terminate`, gate.rs) says "not yet" until what it
    /// heard is complete, and wakes its operator through [`Machine::wake_with`] then.
    fn ready(&mut self) -> bool {
        true
    }
    /// Called once, when the operator is built, with what schedules it again: kept by a
    /// machine whose [`Machine::ready`] can turn true without an input arriving.
    fn wake_with(&mut self, _activator: timely::scheduling::Activator) {}
}

/// A [`Machine`] whose state can be saved in a checkpoint and restored from it.
///
/// Contract: after `restore(save())` into a machine built with the same configuration,
/// stepping the same later inputs gives the same outputs and the same later saves as the
/// machine that was saved. `save` is called between two steps, never inside one.
///
/// A machine is its own serde record: its state fields are saved as they are, and fields
/// that cannot be (closures, the calendar) are `#[serde(skip)]`ped and handed over from the
/// running machine by [`Durable::keep_configuration`].
pub trait Durable: Machine + Serialize + DeserializeOwned
where
    Self::In: Serialize + DeserializeOwned,
{
    /// Moves this run's configuration into `restored` (a machine read from a checkpoint):
    /// the run's settings, not the checkpoint's, apply from now on.
    fn keep_configuration(&mut self, restored: &mut Self);

    /// The machine's state, encoded with [`encode`] (`&mut`: a machine with state on disk
    /// seals what it holds in RAM first).
    fn save(&mut self) -> Vec<u8> {
        encode(self)
    }

    /// What the driver calls at a checkpoint, on the worker, between two steps: the state
    /// as [`Durable::save`] would encode it, captured now and possibly encoded later, off
    /// the worker (checkpoint.rs, [`Snapshot`]). The worker is held up only for this call.
    ///
    /// The default encodes at once (`save`). A machine whose state clones in O(1) or O(what
    /// changed) — fields in structurally shared maps (`imbl`), large immutable parts behind an
    /// `Arc` — overrides it with `Snapshot::of(capture)`, where `capture` encodes to the
    /// bytes `save` would give (for bincode: the same fields in the same order), so
    /// `restore` reads either. Contract: `restore(snapshot().encode())` ≡ `restore(save())`.
    fn snapshot(&mut self) -> Snapshot {
        Snapshot::encoded(self.save())
    }

    /// Replaces the state with a saved one, keeping this run's configuration.
    fn restore(&mut self, state: &[u8]) -> Result<(), RestoreError> {
        let mut restored: Self = decode(std::any::type_name::<Self>(), state)?;
        self.keep_configuration(&mut restored);
        *self = restored;
        Ok(())
    }
    /// Whether an input waiting at the checkpoint's time was produced before it and so
    /// belongs to the checkpoint (true only for what a feedback edge carries: its producer
    /// will not produce it again after a restore).
    fn carried(_input: &Self::In) -> bool {
        false
    }

    /// The key group of an input [`Durable::carried`] says belongs to a checkpoint: on a
    /// restore at another worker count it goes to the worker that owns that group. A
    /// machine that carries inputs must say (`None` keeps it on new worker 0).
    fn input_group(_input: &Self::In) -> Option<u64> {
        None
    }

    /// Keeps only the state of the key groups `owned` says are this worker's (a restore at
    /// another worker count, docs/ARCHITECTURE.md "Key groups"). State that is not keyed
    /// (copies every worker holds, worker-wide clocks) is kept whole.
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool);

    /// Merges `other`, a machine of the same checkpoint holding other key groups (after
    /// [`Durable::retain_groups`] on both, their keyed state is disjoint). Worker-local ids
    /// (interned names, counters) of `other` are re-issued in this machine's.
    fn absorb(&mut self, other: Self);

    /// Restores from every share of a checkpoint written by another worker count
    /// (`shares`: each old worker's state, in worker order): each is decoded, keeps the
    /// groups this worker owns, and they are merged in worker order. A machine with state
    /// on disk overrides it to rebuild its files too.
    fn restore_rescaled(&mut self, shares: &[(usize, &[u8])], owned: &dyn Fn(u64) -> bool) -> Result<(), RestoreError> {
        let Some(mut restored) = merge_shares::<Self>(shares, owned, |_, _| Ok(()))? else {
            return Ok(());
        };
        self.keep_configuration(&mut restored);
        *self = restored;
        Ok(())
    }
}

/// What every restore at another worker count does with a machine's shares: decodes each
/// old worker's (`shares`, in worker order), keeps the key groups `owned` says are this
/// worker's, lets `each` move what the part keeps on disk (it is told the old worker), and
/// merges the parts in worker order ([`Durable::absorb`]). `None` without shares.
pub fn merge_shares<M>(
    shares: &[(usize, &[u8])],
    owned: &dyn Fn(u64) -> bool,
    mut each: impl FnMut(usize, &mut M) -> Result<(), RestoreError>,
) -> Result<Option<M>, RestoreError>
where
    M: Durable,
    M::In: Serialize + DeserializeOwned,
{
    let mut merged: Option<M> = None;
    for (old_worker, state) in shares {
        let mut part: M = decode(std::any::type_name::<M>(), state)?;
        part.retain_groups(owned);
        each(*old_worker, &mut part)?;
        match &mut merged {
            Some(merged) => merged.absorb(part),
            None => merged = Some(part),
        }
    }
    Ok(merged)
}

/// Whether no two of `names` are equal: a `const` check of the checkpoint keys.
pub const fn distinct(names: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() {
            if equal(names[i].as_bytes(), names[j].as_bytes()) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const fn equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// When a machine's sweep of state past its horizon is due: once per day of event time.
/// Lookups check horizons themselves, so when a sweep runs never reaches an output; sweeping
/// only bounds memory.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sweeper {
    next: Option<crate::time::Ts>,
}

impl Sweeper {
    /// Whether to sweep at `now` (the first call only starts the clock).
    pub fn due(&mut self, now: crate::time::Ts) -> bool {
        let every = crate::time::MILLIS_PER_DAY;
        let next = self.next.get_or_insert(now.plus_millis(every));
        if now < *next {
            return false;
        }
        *next = now.plus_millis(every);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::distinct;

    #[test]
    fn distinct_names_are_told_apart_from_repeated_ones() {
        // The const check behind the checkpoint keys: equal names, prefixes, empty lists.
        assert!(distinct(&["Dedup: by id", "Orders: emission checks"]));
        assert!(distinct(&["Codes", "Codes: national index"]));
        assert!(!distinct(&["a", "b", "a"]));
        assert!(distinct(&[]));
    }
}
