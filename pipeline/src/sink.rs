//! "Sink: outputs" — where a worker's outputs leave the dataflow, into the run's
//! [`Sink`] (output files, Kafka, memory), and a sink that only counts.
//!
//! In: every output stream of the graph, concatenated, on the worker that made it (no
//! exchange). Each batch is handed over with its instant, and after each activation the
//! sink is told the frontier (which instants are complete): a stream commits its offsets
//! from it. A probe after the sink tells the sources what the whole dataflow has finished.

use markledger_operators::failure;
use markledger_operators::flow::Time;
use markledger_operators::output::{Output, Sink};
use std::cell::RefCell;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, StreamVec};

/// The operator's name (a failure's one-line message names it).
pub const NAME: &str = "Sink: outputs";

/// A worker's sink, shared between the operator that feeds it and the runtime that
/// finishes it once the run ends.
pub type Shared<S> = Rc<RefCell<Option<S>>>;

/// Feeds `outputs` into `sink`; `done` then tells which instants the whole dataflow has
/// finished (a time is done once the sink has taken all its outputs).
pub fn write_outputs<S: Sink + 'static>(
    outputs: StreamVec<'_, Time, Output>,
    sink: Shared<S>,
    done: &ProbeHandle<Time>,
) {
    outputs
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, NAME, move |_, _| {
            move |(input, frontier), _output| {
                failure::enter_stage(NAME);
                let mut sink = sink.borrow_mut();
                let sink = sink.as_mut().expect("sink lives until the run ends");
                // In arrival order: `for_each_stamp` sorts containers by stamp unstably, which
                // can swap two containers of one instant, so one key's records of an instant
                // (a period's final revision and its deletion at D, DOMAIN.md §9; an export's
                // lines) could reach the sink out of the order they were made in.
                input.for_each(|cap, batch| {
                    let time = *cap.least().expect("a stamp has a time");
                    sink.emit(time, batch);
                });
                sink.frontier(frontier.frontier().as_ref());
            }
        })
        .probe_with(done);
}

/// Counts outputs and drops them (long runs that measure the engine's own state).
#[derive(Default)]
pub struct Count(u64);

impl Sink for Count {
    type Done = u64;

    fn emit(&mut self, _time: Time, outputs: &mut Vec<Output>) {
        self.0 += outputs.len() as u64;
        outputs.clear();
    }

    fn finish(self) -> u64 {
        self.0
    }
}
