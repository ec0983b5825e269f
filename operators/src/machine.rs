//! The one way every stateful operator of the dataflow runs: a keyed state machine fed its
//! inputs a whole instant at a time, in account order, once the instant is complete.
//!
//! In: a stream of `M::In` at effective times (ms), exchanged by the caller's pact (a hash
//! of the key the machine's state is partitioned by). Out: a stream of `M::Out` at the
//! instant that produced them.
//!
//! Contract (what [`Machine::step`] may rely on):
//! - `step(now, inputs)` is called once per instant that has inputs or a due timer, in
//!   increasing `now`, only after the input frontier has passed `now`: no input at or
//!   before `now` can arrive later. `inputs` are all inputs at `now`, unsorted.
//! - Timers a machine reports via [`Machine::next_timer`] are at or after the instant being
//!   stepped; a timer at `now` itself makes `step(now, [])` run again.
//! - Nothing after `end` (the watermark's final position of a file run) is stepped; once the
//!   input frontier has passed `end`, [`Machine::finish`] runs once (holds still open are
//!   refused there) and inputs after `end` (only fed-back records) are dropped.

use std::collections::BTreeMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

/// Timestamps of the dataflow: effective time in milliseconds since the epoch.
pub type Time = u64;

/// A keyed state machine stepped one complete instant at a time.
pub trait Machine: 'static {
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
}

/// Runs `machine` over `stream` (see the module docs for the contract).
pub fn run_machine<'scope, M, P>(
    stream: StreamVec<'scope, Time, M::In>,
    pact: P,
    name: &str,
    mut machine: M,
    end: Time,
) -> StreamVec<'scope, Time, M::Out>
where
    M: Machine,
    P: ParallelizationContract<Time, Vec<M::In>>,
{
    let name = name.to_string();
    stream.unary_frontier::<CapacityContainerBuilder<Vec<M::Out>>, _, _, _>(
        pact,
        &name.clone(),
        move |_default, _info| {
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<M::In>)> = BTreeMap::new();
            let mut timer_cap: Option<Capability<Time>> = None;
            // Held at `end` from the first input on, so `finish` can still emit.
            let mut end_cap: Option<Capability<Time>> = None;
            let mut finished = false;
            let mut produced = Vec::new();
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    let time = *cap.least().expect("a stamp has a time");
                    if end_cap.is_none() && !finished {
                        end_cap = Some(cap.delayed(&end.max(time), port));
                    }
                    let slot = pending
                        .entry(time)
                        .or_insert_with(|| (cap.retain_least(port).expect("retainable"), Vec::new()));
                    slot.1.extend(data.flat_map(|batch| batch.drain(..)));
                });
                loop {
                    let next_input = pending.keys().next().copied();
                    let next_timer = machine.next_timer().filter(|t| *t <= end);
                    let Some(now) = [next_input, next_timer].into_iter().flatten().min() else {
                        break;
                    };
                    if frontier.less_equal(&now) {
                        break;
                    }
                    if now > end {
                        // Only fed-back records can come after the end of a file run; they cannot
                        // change an output any more.
                        pending.pop_first();
                        continue;
                    }
                    let (cap, inputs) = match pending.first_key_value() {
                        Some((time, _)) if *time == now => pending.pop_first().expect("peeked").1,
                        _ => {
                            let mut cap = timer_cap.take().expect("a due timer holds a capability");
                            cap.downgrade(&now);
                            (cap, Vec::new())
                        }
                    };
                    machine.step(now, inputs, &mut produced);
                    if !produced.is_empty() {
                        output.session(&cap).give_iterator(produced.drain(..));
                    }
                    // Hold a capability for the next timer (never before `now`).
                    timer_cap = machine
                        .next_timer()
                        .filter(|t| *t <= end)
                        .map(|t| cap.delayed(&t.max(now)));
                }
                // Finished once nothing at or before `end` can arrive (not once the input is
                // empty: a feedback edge keeps inputs open until every machine has finished).
                if !frontier.less_equal(&end) && pending.range(..=end).next().is_none() && !finished {
                    finished = true;
                    timer_cap = None;
                    machine.finish(end, &mut produced);
                    if let Some(cap) = end_cap.take() {
                        if !produced.is_empty() {
                            output.session(&cap).give_iterator(produced.drain(..));
                        }
                    }
                    debug_assert!(produced.is_empty(), "{name}: finish produced output without input");
                }
            }
        },
    )
}
