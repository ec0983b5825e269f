//! A run on several processes: timely's cluster mode (docs/ARCHITECTURE.md, "Cluster
//! mode"). `N` processes, each with `W` worker threads, exchange over TCP; global worker
//! `p × W + w` is thread `w` of process `p`, and partition `i` is read by global worker
//! `i mod (N × W)` (runtime.rs, `worker_of`).
//!
//! What the workers of one process used to share through memory is agreed inside the
//! dataflow instead, so it holds across processes:
//! - **The end of a file run's input** ([`agree_on_end`]): each worker's source, once every
//!   partition it reads has ended, sends the largest instant it read to the first worker of
//!   every process, which tells its process's [`InputEnd`] one finished source per message.
//!   A source releases its watermark only once its process knows the end, so no frontier
//!   passes the end before every machine of every process can see it. While it waits it
//!   holds its watermark at the largest instant any source is known to have read (each
//!   source reports how far it has read as it goes), never lower: a finished source held
//!   back would hold back what the other sources may read (their in-flight bound).
//! - **What the sources read** (the summary's figures) goes along to worker 0, which merges
//!   them in worker order.
//! - **The outputs of a file run** ([`to_process_zero`]) go to process 0's workers, by key
//!   group, tagged with the worker that made them and their order there, so process 0
//!   writes files byte-identical to a one-process run.
//!
//! A failure: the binary ends its process on any panic (crate::failure); when a process
//! ends early, its peers' TCP threads panic ("timely communication error"), which ends
//! them too with a line that says another process went away.

use crate::source::{SourceFinish, SourceStats};
use markledger_operators::driver::InputEnd;
use markledger_operators::flow::{route, worker_of_group, Time, KEY_GROUPS};
use markledger_operators::output::{Deletion, Output};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Scope, StreamVec};

/// Where this process sits in a cluster. The default is one process, as before cluster mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    /// This process, 0-based.
    pub process: usize,
    /// `host:port` of every process, process `i` on line `i` (empty: one process).
    pub addresses: Vec<String>,
}

impl Cluster {
    /// One process: no network.
    pub fn single() -> Cluster {
        Cluster::default()
    }

    /// Process `process` of `processes`, the addresses read from `hostfile` (one
    /// `host:port` per line; blank lines and `#` comments skipped). One process needs no
    /// hostfile.
    pub fn from_hostfile(hostfile: Option<&Path>, processes: usize, process: usize) -> Result<Cluster, String> {
        if processes == 0 {
            return Err("--processes must be at least 1".into());
        }
        if process >= processes {
            return Err(format!(
                "--process {process} is not below --processes {processes} (processes are numbered from 0)"
            ));
        }
        if processes == 1 {
            return Ok(Cluster::single());
        }
        let Some(hostfile) = hostfile else {
            return Err(format!(
                "--processes {processes} needs --hostfile FILE (one host:port per line, process i on line i)"
            ));
        };
        let text = std::fs::read_to_string(hostfile).map_err(|e| format!("reading {}: {e}", hostfile.display()))?;
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        if addresses.len() < processes {
            return Err(format!(
                "{} names {} processes, --processes is {processes}",
                hostfile.display(),
                addresses.len()
            ));
        }
        if let Some(bad) = addresses.iter().find(|a| !a.contains(':')) {
            return Err(format!("{}: {bad:?} is not host:port", hostfile.display()));
        }
        Ok(Cluster {
            process,
            addresses: addresses.into_iter().take(processes).collect(),
        })
    }

    /// Processes in the cluster.
    pub fn processes(&self) -> usize {
        self.addresses.len().max(1)
    }

    /// Whether global worker `worker` runs in this process, with `workers` per process.
    pub fn is_local(&self, worker: usize, workers: usize) -> bool {
        worker / workers.max(1) == self.process
    }

    /// One process only.
    pub fn is_single(&self) -> bool {
        self.processes() == 1
    }

    /// Checks that `workers` per process fit the key groups (every worker owns whole groups).
    pub fn check_workers(&self, workers: usize) -> Result<(), String> {
        let total = self.processes() * workers.max(1);
        if total as u64 > KEY_GROUPS {
            return Err(format!(
                "{} processes × {workers} workers = {total} workers, more than the {KEY_GROUPS} key groups \
                 (each worker owns whole groups)",
                self.processes()
            ));
        }
        Ok(())
    }

    /// Timely's configuration: `workers` threads in this process, and the network if more
    /// than one process.
    pub fn timely_config(&self, workers: usize) -> timely::Config {
        let workers = workers.max(1);
        if self.is_single() {
            return timely::Config::process(workers);
        }
        timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// A source's report to one worker: how far it has read, or that it has read everything
/// (`last`: the largest instant it read), with its figures for worker 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Report {
    Read {
        target: usize,
        read: Time,
    },
    Finished {
        target: usize,
        worker: usize,
        last: Option<Time>,
        stats: Option<SourceStats>,
    },
}

impl Report {
    fn target(&self) -> u64 {
        match self {
            Report::Read { target, .. } | Report::Finished { target, .. } => *target as u64,
        }
    }
}

/// Per origin worker, what its source read (worker 0 only; see [`agree_on_end`]).
pub type Totals = Rc<RefCell<Vec<Option<SourceStats>>>>;

/// The operators "Cluster: input end": once this worker's source has read everything
/// (`finish`), tell the first worker of every process (of `workers` each) the largest
/// instant it read, and worker 0 its figures (`stats`); the first worker of a process
/// counts every source's report into its process's `end` (one report per source of the
/// cluster), and worker 0 keeps the figures in `totals`.
pub fn agree_on_end(
    scope: Scope<'_, Time>,
    workers: usize,
    finish: Rc<RefCell<SourceFinish>>,
    stats: Rc<RefCell<SourceStats>>,
    end: InputEnd,
    totals: Totals,
) {
    let worker = scope.index();
    let peers = scope.peers();
    let firsts = move || (0..peers).step_by(workers.max(1));
    let reports = source::<_, CapacityContainerBuilder<Vec<Report>>, _, _>(scope, "Cluster: input end", {
        let finish = finish.clone();
        move |cap, info| {
            finish.borrow_mut().activator = Some(scope.activator_for(info.address));
            let mut cap = Some(cap);
            let mut told: Time = 0;
            move |output| {
                let Some(held) = cap.as_ref() else { return };
                let finish = finish.borrow();
                let mut session = output.session(held);
                // How far this source has read: a finished source elsewhere holds its
                // watermark there while it waits for the end (source.rs).
                if finish.read > told {
                    told = finish.read;
                    for target in firsts() {
                        session.give(Report::Read { target, read: told });
                    }
                }
                let Some(last) = finish.last else { return };
                for target in firsts() {
                    let stats = (target == 0).then(|| stats.borrow().clone());
                    session.give(Report::Finished {
                        target,
                        worker,
                        last,
                        stats,
                    });
                }
                drop(session);
                cap = None;
            }
        }
    });
    totals.borrow_mut().resize(peers, None);
    reports.sink(
        Exchange::new(Report::target),
        "Cluster: input end agreed",
        move |(input, _frontier)| {
            input.for_each_stamp(|_, data| {
                for batch in data {
                    for report in batch.drain(..) {
                        match report {
                            Report::Read { read, .. } => end.note_read(read),
                            Report::Finished {
                                worker, last, stats, ..
                            } => {
                                if let Some(stats) = stats {
                                    totals.borrow_mut()[worker] = Some(stats);
                                }
                                if let Some(last) = last {
                                    end.note_read(last);
                                }
                                end.source_finished(last);
                            }
                        }
                    }
                }
            });
        },
    );
}

/// An output with the worker that made it and its place in that worker's output order.
type Tagged = (usize, u64, Output);

/// The key group an output is routed by to process 0: its account (or period key's).
fn output_group(output: &Output) -> u64 {
    match output {
        Output::Status(s) => route(&s.account),
        Output::Ledger(l) => route(&l.account),
        Output::Balance(b) => route(&b.account),
        Output::Rejection(r) => route(r.account.as_deref().unwrap_or("")),
        Output::Period(p) => route(&p.key.render()),
        // A deletion goes where the records of the key it deletes go, after them.
        Output::Deleted(Deletion::Balance { account, .. }) => route(account),
        Output::Deleted(Deletion::Period { key, .. }) => route(&key.render()),
        Output::Export(e) => route(&e.account),
    }
}

/// The operators "Cluster: outputs to process 0": every output goes to one of process 0's
/// `workers` (global workers `0..workers`) by key group, so process 0 writes all of them.
///
/// Each output is tagged on the worker that made it with that worker and its place in that
/// worker's output order; at each instant the receiving worker hands its sink the outputs
/// ordered by (worker, place). An account's outputs are made by one worker in account
/// order, so they reach the sink in the order a one-process run's sink sees them, and the
/// canonical order of the files (summary.rs) is the same.
pub fn to_process_zero<'scope>(
    outputs: StreamVec<'scope, Time, Output>,
    workers: usize,
) -> StreamVec<'scope, Time, Output> {
    let origin = outputs.scope().index();
    let tagged = outputs.unary::<CapacityContainerBuilder<Vec<Tagged>>, _, _, _>(
        Pipeline,
        "Cluster: tag outputs",
        move |_, _| {
            let mut place = 0u64;
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        for record in batch.drain(..) {
                            session.give((origin, place, record));
                            place += 1;
                        }
                    }
                });
            }
        },
    );
    tagged.unary::<CapacityContainerBuilder<Vec<Output>>, _, _, _>(
        Exchange::new(move |(_, _, output): &Tagged| worker_of_group(output_group(output), workers) as u64),
        "Cluster: outputs to process 0",
        |_, _| {
            let mut staged: Vec<Tagged> = Vec::new();
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    staged.extend(data.flat_map(|batch| batch.drain(..)));
                    staged.sort_unstable_by_key(|(origin, place, _)| (*origin, *place));
                    output
                        .session(&cap)
                        .give_iterator(staged.drain(..).map(|(_, _, record)| record));
                });
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostfile_names_every_process_in_order() {
        // Three addresses (a comment and a blank line skipped); process 1 of 2 takes the first two.
        let dir = std::env::temp_dir().join(format!("markledger-hostfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, "# cluster\n127.0.0.1:7001\n\n127.0.0.1:7002\n127.0.0.1:7003\n").unwrap();
        let cluster = Cluster::from_hostfile(Some(&path), 2, 1).unwrap();
        assert_eq!(cluster.addresses, vec!["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert_eq!((cluster.process, cluster.processes()), (1, 2));
        assert!(Cluster::from_hostfile(Some(&path), 4, 0)
            .unwrap_err()
            .contains("names 3 processes"));
        assert!(Cluster::from_hostfile(Some(&path), 2, 2)
            .unwrap_err()
            .contains("not below"));
        assert!(Cluster::from_hostfile(None, 2, 0).unwrap_err().contains("--hostfile"));
        assert!(Cluster::from_hostfile(None, 1, 0).unwrap().is_single());
        assert!(cluster.check_workers(128).is_ok());
        assert!(cluster.check_workers(129).unwrap_err().contains("256 key groups"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
