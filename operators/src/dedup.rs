//! "Dedup: by id" — the first stateful stage.
//!
//! In: every well-formed event at its effective time, exchanged by a hash of its `id`.
//! Out: `Ok(event)` for the first event of an id, `Err(DUPLICATE rejection)` for the rest.
//! Within one instant the first is the least (kind rank, id, canonical bytes), so the winner
//! depends only on the events. An id is remembered for `horizon_ms` after it took effect.

use crate::flow::{ts_of, Placed};
use crate::machine::{Machine, Sweeper, Time};
use crate::output::{Output, Rejection};
use crate::reason::Reason;
use crate::time::Ts;
use std::collections::BTreeMap;

/// Orders same-id events deterministically (the engine passes bincode's canonical bytes).
pub type Tiebreak = Box<dyn Fn(&Placed) -> Vec<u8>>;

/// The de-duplication state of one worker.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Dedup {
    seen: BTreeMap<String, Ts>,
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
            seen: BTreeMap::new(),
            horizon_ms,
            tiebreak,
            sweeper: Sweeper::default(),
        }
    }
}

impl crate::checkpoint::Durable for Dedup {
    fn keep_configuration(&mut self, restored: &mut Dedup) {
        std::mem::swap(&mut restored.tiebreak, &mut self.tiebreak);
        restored.horizon_ms = self.horizon_ms;
    }
}

impl Machine for Dedup {
    type In = Placed;
    type Out = Result<Placed, Output>;

    fn step(&mut self, now: Time, mut inputs: Vec<Placed>, out: &mut Vec<Self::Out>) {
        let now = ts_of(now);
        if self.sweeper.due(now) {
            let horizon_ms = self.horizon_ms;
            self.seen.retain(|_, first| now < first.plus_millis(horizon_ms));
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
                    let detail = format!("event id already seen at {first}");
                    let kind = event.kind().as_str();
                    let rejection =
                        Rejection::of_event(&event.id, kind, &event.account, None, Reason::Duplicate, detail);
                    out.push(Err(Output::Rejection(rejection)));
                    continue;
                }
            }
            self.seen.insert(event.id.clone(), now);
            out.push(Ok(placed));
        }
    }

    fn next_timer(&self) -> Option<Time> {
        None
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<Self::Out>) {}
}
