//! The control messages of a stream on a cluster (docs/ARCHITECTURE.md, "Cluster mode"):
//! what the processes of one run tell each other besides the dataflow's records.
//!
//! In: [`Message`]s any thread of a process hands to [`Control::send`] (a worker, the
//! checkpoint writer). Out: each message delivered, on a worker of the process it is for,
//! to that process's handler ([`Control::handle_with`]).
//!
//! The messages travel in a dataflow of their own ([`build`]): its frontier is not the run's
//! (a message says when it applies, if it does), so it never holds the run back. The first
//! worker of each process sends its process's outbox; every message goes to the first
//! worker of the process it is for.

use markledger_operators::flow::Time;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::scheduling::SyncActivator;
use timely::worker::Worker;

/// What one process of a cluster tells another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Process 0 asks for a checkpoint at this time (its sources hold there until every
    /// process has answered [`Message::Registered`]).
    Request(Time),
    /// A process has taken in the request for a checkpoint.
    Registered {
        /// The process.
        process: usize,
        /// The checkpoint's time.
        time: Time,
    },
    /// A process has written its part of a cut to its state directory.
    Written {
        /// The cut's time.
        time: Time,
        /// The part: its process, file name, size and checksum.
        part: PartFile,
    },
    /// A process restored the cut at `time` (0: none): every process must have restored
    /// the same one, or the run stops (each process's sources hold at the start until
    /// every process has told).
    Restored {
        /// The process.
        process: usize,
        /// The cut's time (0: none).
        time: Time,
    },
    /// A process was asked to stop: every process stops.
    Stop,
    /// A process has stopped: its sources hold still.
    Held {
        /// The process.
        process: usize,
        /// Where its sources hold (the lowest of its workers').
        time: Time,
    },
    /// A process's offset commits cover every output before a frontier (process 0 records
    /// the lowest of them, the cluster's, on the progress topic).
    Covered {
        /// The process.
        process: usize,
        /// The frontier.
        frontier: Time,
    },
}

/// One process's part of a cluster's cut.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartFile {
    /// The process that wrote it.
    pub process: usize,
    /// Its file name in that process's state directory.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// The xxh3-64 of its body.
    pub checksum: u64,
}

/// What a process does with a message for it (on one of its workers).
type Handler = Box<dyn Fn(Message) + Send + Sync>;

/// One process's end of the control messages (cheap to share: an `Arc`).
pub struct Control {
    /// This process.
    pub process: usize,
    /// How many processes there are.
    pub processes: usize,
    /// Messages to send: (target process, message).
    outbox: Mutex<Vec<(usize, Message)>>,
    /// Wakes the first worker's sender.
    sender: Mutex<Option<SyncActivator>>,
    handler: OnceLock<Handler>,
    /// The run's stop flag: set by a [`Message::Stop`]; and whether this process has told the
    /// others it stops.
    stop: Arc<AtomicBool>,
    told_stop: AtomicBool,
    /// Where each process's sources hold once stopped ([`Message::Held`]).
    held: Mutex<Vec<Option<Time>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Control(process {} of {})", self.process, self.processes)
    }
}

impl Control {
    /// Process `process` of `processes`, stopped by `stop` (which a [`Message::Stop`] sets).
    pub fn new(process: usize, processes: usize, stop: Arc<AtomicBool>) -> Arc<Control> {
        Arc::new(Control {
            process,
            processes,
            outbox: Mutex::default(),
            sender: Mutex::default(),
            handler: OnceLock::new(),
            stop,
            told_stop: AtomicBool::new(false),
            held: Mutex::new(vec![None; processes]),
        })
    }

    /// A stopping stream (runtime.rs): tells the other processes to stop too, once; then,
    /// once, where this process's sources hold (`local`, the lowest of its workers'). Returns
    /// the lowest of every process's, once every one has told (None before).
    pub fn stopping(&self, local: Time) -> Option<Time> {
        if !self.told_stop.swap(true, Ordering::SeqCst) {
            self.to_others(Message::Stop);
        }
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if held[self.process].is_none() {
            held[self.process] = Some(local);
            drop(held);
            self.to_others(Message::Held {
                process: self.process,
                time: local,
            });
            held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        // Not before this process's own messages have left (a process that drops its
        // dataflow with its Held still in the outbox would leave the others waiting).
        if !self.sent() {
            return None;
        }
        held.iter().copied().collect::<Option<Vec<Time>>>()?.into_iter().min()
    }

    /// What this process does with each message for it (set once, before the run).
    pub fn handle_with(&self, handler: impl Fn(Message) + Send + Sync + 'static) {
        let _ = self.handler.set(Box::new(handler));
    }

    /// Sends `message` to `process` (this one too: it is handled like any other).
    pub fn send(&self, process: usize, message: Message) {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((process, message));
        if let Some(sender) = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
        {
            // A sender gone away has finished the run: nothing is waiting for the message.
            let _ = sender.activate();
        }
    }

    /// Whether every message handed to [`Control::send`] has left this process's outbox.
    pub fn sent(&self) -> bool {
        self.outbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// Sends `message` to every process but this one.
    pub fn to_others(&self, message: Message) {
        for process in (0..self.processes).filter(|p| *p != self.process) {
            self.send(process, message.clone());
        }
    }

    fn take_outbox(&self) -> Vec<(usize, Message)> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn deliver(&self, message: Message) {
        match message {
            Message::Stop => self.stop.store(true, Ordering::SeqCst),
            Message::Held { process, time } => {
                if let Some(slot) = self
                    .held
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get_mut(process)
                {
                    *slot = Some(time);
                }
            }
            other => {
                if let Some(handler) = self.handler.get() {
                    handler(other);
                }
            }
        }
    }
}

/// Builds the dataflow "Cluster: control" on `worker`, one of `workers` per process: the
/// process's first worker sends its outbox, every message to the first worker of the
/// process it is for, which hands it to its process's handler.
pub fn build(worker: &mut Worker, control: &Arc<Control>, workers: usize) {
    let workers = workers.max(1);
    worker.dataflow::<u64, _, _>(|scope| {
        let first = scope.index() % workers == 0;
        let sending = control.clone();
        let messages = source::<_, CapacityContainerBuilder<Vec<(usize, Message)>>, _, _>(
            scope,
            "Cluster: control out",
            move |cap, info| {
                let mut cap = first.then_some(cap);
                if first {
                    *sending.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        Some(scope.worker().sync_activator_for(info.address.to_vec()));
                }
                move |output| {
                    let Some(cap) = cap.as_mut() else { return };
                    let outbox = sending.take_outbox();
                    if !outbox.is_empty() {
                        output.session(&*cap).give_iterator(
                            outbox
                                .into_iter()
                                .map(|(process, message)| (process * workers, message)),
                        );
                    }
                }
            },
        );
        let receiving = control.clone();
        messages.sink(
            Exchange::new(|(target, _): &(usize, Message)| *target as u64),
            "Cluster: control in",
            move |(input, _frontier)| {
                input.for_each_stamp(|_, data| {
                    for batch in data {
                        for (_, message) in batch.drain(..) {
                            receiving.deliver(message);
                        }
                    }
                });
            },
        );
    });
}
