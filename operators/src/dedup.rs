//! "Dedup: by id" — the first stateful stage.
//!
//! In: every well-formed event at its effective time, exchanged by a hash of its `id`.
//! Out: the first event of an id, on the edge of the stage that takes its kind (tariffs,
//! credits, order events, code commands), and a `DUPLICATE` rejection for the rest.
//! Within one instant the first is the least (kind rank, id, canonical bytes), so the winner
//! depends only on the events. An id is remembered for `horizon_ms` after it took effect.
//!
//! State: the ids seen within the horizon, in a structurally shared ordered map (`imbl`),
//! so a checkpoint captures it in O(1) on the worker and the writer's thread encodes it
//! (`Durable::snapshot`); each id is kept with its key, so its key group is computable.

use crate::checkpoint::Snapshot;
use crate::driver::{run_machine, Drive};
use crate::event::Kind;
use crate::flow::{edges, route, take, ts_of, Edge, Placed, Time};
use crate::machine::{Machine, Sweeper};
use crate::output::{Output, Rejection};
use crate::reason::Reason;
use crate::time::Ts;
use crate::wording;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::StreamVec;

/// What de-duplication emits: a duplicate's rejection, or a unique event (its edge follows
/// its kind).
#[derive(Clone, Debug)]
pub enum DedupOut {
    /// A `DUPLICATE` rejection (→ the rejections output).
    Duplicate(Box<Output>),
    /// The first event of its id.
    Unique(Placed),
}

impl Edge for DedupOut {
    const EDGES: u64 = 5;
    fn edge(&self) -> u64 {
        match self {
            DedupOut::Duplicate(_) => 0,
            DedupOut::Unique(placed) => match placed.event.kind() {
                Kind::Tariff => 1,
                // DOMAIN.md §9's events go to the accounts with the credits (through the
                // gate, like every event but tariffs: pipeline/src/dataflow.rs).
                Kind::Payment | Kind::Compensation | Kind::Refund | Kind::Terminate | Kind::Export => 2,
                Kind::Order | Kind::OrderCancel | Kind::Emission => 3,
                Kind::Application | Kind::Dropout | Kind::Defect | Kind::Introduction => 4,
            },
        }
    }
}

/// Unique events by the stage that takes their kind, each moved to one edge: a `clone()` of
/// the stream would copy every event, codes and all, once per consumer.
pub struct DedupEdges<'scope> {
    /// `DUPLICATE` rejections.
    pub duplicates: StreamVec<'scope, Time, Output>,
    /// Tariffs.
    pub tariffs: StreamVec<'scope, Time, Placed>,
    /// Payments, compensations, refunds.
    pub credits: StreamVec<'scope, Time, Placed>,
    /// Orders, cancellations, emissions.
    pub order_events: StreamVec<'scope, Time, Placed>,
    /// Applications, dropouts, defects, introductions.
    pub commands: StreamVec<'scope, Time, Placed>,
}

/// "Dedup: by id" over every well-formed event (module docs), exchanged by id.
pub fn unique_events<'scope>(
    events: StreamVec<'scope, Time, Placed>,
    dedup: Dedup,
    drive: &Drive,
) -> DedupEdges<'scope> {
    let by_id = Exchange::new(|placed: &Placed| route(&placed.event.id));
    let mut parts = edges(run_machine(events, by_id, dedup, drive));
    let unique = |out| {
        if let DedupOut::Unique(placed) = out {
            Some(placed)
        } else {
            None
        }
    };
    DedupEdges {
        duplicates: take(parts.next(), |out| {
            if let DedupOut::Duplicate(d) = out {
                Some(*d)
            } else {
                None
            }
        }),
        tariffs: take(parts.next(), unique),
        credits: take(parts.next(), unique),
        order_events: take(parts.next(), unique),
        commands: take(parts.next(), unique),
    }
}

/// Orders same-id events deterministically (the engine passes bincode's canonical bytes).
pub type Tiebreak = Box<dyn Fn(&Placed) -> Vec<u8>>;

/// The ids seen, with when each first took effect: a persistent B-tree whose clone shares
/// every node (O(1)); an insert after a clone copies only its path. Encoded as a
/// `BTreeMap<String, Ts>` was (a map), so checkpoints read either.
type Seen = imbl::OrdMap<String, Ts>;

/// The de-duplication state of one worker.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Dedup {
    seen: Seen,
    horizon_ms: i64,
    #[serde(skip, default = "no_tiebreak")]
    tiebreak: Tiebreak,
    sweeper: Sweeper,
}

/// A placeholder while a checkpoint is read (the run's own tiebreak replaces it).
fn no_tiebreak() -> Tiebreak {
    Box::new(|_| Vec::new())
}

impl Dedup {
    /// Remembers ids for `horizon_ms`.
    pub fn new(horizon_ms: i64, tiebreak: Tiebreak) -> Dedup {
        Dedup {
            seen: Seen::new(),
            horizon_ms,
            tiebreak,
            sweeper: Sweeper::default(),
        }
    }
}

impl crate::machine::Durable for Dedup {
    fn keep_configuration(&mut self, restored: &mut Dedup) {
        std::mem::swap(&mut restored.tiebreak, &mut self.tiebreak);
        restored.horizon_ms = self.horizon_ms;
    }

    fn input_group(placed: &Placed) -> Option<u64> {
        Some(route(&placed.event.id))
    }

    /// Ids are routed by their own key group.
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool) {
        self.seen = std::mem::take(&mut self.seen)
            .into_iter()
            .filter(|(id, _)| owned(route(id)))
            .collect();
    }

    fn absorb(&mut self, other: Dedup) {
        self.seen = self.seen.clone().union(other.seen);
    }

    /// An O(1) capture: the map's clone shares its nodes with the live one.
    fn snapshot(&mut self) -> Snapshot {
        // The fields `Dedup` serializes, in its order (`tiebreak` is skipped): the same bytes.
        Snapshot::of((self.seen.clone(), self.horizon_ms, self.sweeper.clone()))
    }
}

impl Machine for Dedup {
    const NAME: &'static str = "Dedup: by id";
    type In = Placed;
    type Out = DedupOut;

    fn step(&mut self, now: Time, mut inputs: Vec<Placed>, out: &mut Vec<Self::Out>) {
        let now = ts_of(now);
        if self.sweeper.due(now) {
            let horizon_ms = self.horizon_ms;
            // A persistent map has no `retain`: the day's expired ids, then their removal
            // (each copies only its path, so a capture a writer still encodes is untouched).
            let expired: Vec<String> = self
                .seen
                .iter()
                .filter(|(_, first)| now >= first.plus_millis(horizon_ms))
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                self.seen.remove(&id);
            }
        }
        inputs.sort_by(|a, b| {
            (a.event.kind(), &a.event.id)
                .cmp(&(b.event.kind(), &b.event.id))
                .then_with(|| (self.tiebreak)(a).cmp(&(self.tiebreak)(b)))
        });
        for placed in inputs {
            let event = &placed.event;
            crate::failure::processing(&event.id);
            if let Some(first) = self.seen.get(&event.id) {
                if now < first.plus_millis(self.horizon_ms) {
                    let detail = wording::duplicate(*first);
                    let kind = event.kind().as_str();
                    let rejection =
                        Rejection::of_event(&event.id, kind, &event.account, None, Reason::Duplicate, detail);
                    out.push(DedupOut::Duplicate(Box::new(Output::Rejection(rejection))));
                    continue;
                }
            }
            self.seen.insert(event.id.clone(), now);
            out.push(DedupOut::Unique(placed));
        }
    }

    fn next_timer(&self) -> Option<Time> {
        None
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<Self::Out>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Durable;

    fn dedup() -> Dedup {
        Dedup::new(1_000, Box::new(|_| Vec::new()))
    }

    #[test]
    fn a_snapshot_encodes_as_save_does_and_ignores_later_steps() {
        // The capture is taken before more ids arrive; encoded afterwards, it still holds
        // only what was seen before it, byte for byte what `save` gave at that moment.
        let mut machine = dedup();
        for (i, id) in ["b", "a", "c"].iter().enumerate() {
            machine.seen.insert(id.to_string(), Ts(i as i64));
        }
        let saved = machine.save();
        let snapshot = machine.snapshot();
        assert!(snapshot.is_deferred());
        machine.seen.insert("d".into(), Ts(9));
        machine.seen.remove("a");
        assert_eq!(snapshot.encode(), saved);
        let mut restored = dedup();
        restored.restore(&saved).expect("restores");
        assert_eq!(restored.seen.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(restored.seen.get("c"), Some(&Ts(2)));
    }

    #[test]
    fn the_encoding_is_that_of_the_ordered_map_it_replaced() {
        // Checkpoints written before the persistent map (a std BTreeMap) still restore.
        let mut before = std::collections::BTreeMap::new();
        before.insert("x".to_string(), Ts(5));
        let old = crate::checkpoint::encode(&(before, 1_000i64, Sweeper::default()));
        let mut machine = dedup();
        machine.seen.insert("x".into(), Ts(5));
        assert_eq!(machine.save(), old);
    }
}
