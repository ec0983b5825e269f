//! "Source: partitions" — a worker's partitions in, each event at its effective time out
//! (DOMAIN.md §4); the capability the source holds is the worker's watermark.
//!
//! In: the worker's [`PartitionInput`]s (files streamed from disk, records in memory, or
//! Kafka topic-partitions), each read in order. Out: [`Sourced`] records — an event at its
//! effective time, or a decode refusal at the current watermark.
//!
//! Guarantees:
//! - Effective time and lateness are computed per partition ([`Placer`]), exactly as
//!   DOMAIN.md §4 says, so they depend neither on the worker count nor on how partitions
//!   interleave.
//! - The held capability never exceeds `min over unfinished partitions of (high-water −
//!   lateness)`; no later event of any partition can take effect before that, so the
//!   frontier *is* the watermark. A partition that has read nothing yet holds it at its start.
//! - The source reads next from the partition whose watermark is lowest (a merge), so the
//!   watermark advances as fast as the input allows and little waits downstream.
//! - Timely has no backpressure: each activation reads at most `in_flight` weight (one per
//!   event plus one per code it names) less what the dataflow could already finish (times
//!   below the watermark) but has not, and nothing while that alone reaches `in_flight`.
//!   Work at or above the watermark never stops the source: only reading on can finish it.
//! - When every partition is finished, the source reports the largest `ts` it read to the
//!   run's [`InputEnd`] (one process: at once, through memory; a cluster: through the
//!   dataflow to the first worker of every process, cluster.rs and [`SourceFinish`]), and
//!   releases its capability only once its own process knows the end. Until then it holds
//!   it at the largest instant any source is known to have read — at or below the end, so
//!   no machine of any process can step past the end before it can see it, and never below
//!   another source's watermark, whose in-flight bound it would otherwise starve.

use markledger_connectors::codec::Decoded;
use markledger_connectors::partition::{Next, PartitionInput};
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::driver::InputEnd;
use markledger_operators::event::Kind;
use markledger_operators::failure;
use markledger_operators::flow::Time;
use markledger_operators::flow::{edges, take, time_of, ts_of, Edge, Placed};
use markledger_operators::output::{Output, Rejection};
use markledger_operators::rules::Admission;
use markledger_operators::{Event, Ts};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

/// Records a source reads per activation.
pub const SOURCE_BATCH_MAX: usize = 4_096;

/// Work a source lets run ahead of what the whole dataflow has finished, weighed as one per
/// event plus one per code it names (an application may name thousands): timely has no
/// backpressure of its own, and without this bound a file run would queue every per-code
/// record of its input at once.
pub const SOURCE_WEIGHT_IN_FLIGHT_MAX: usize = 65_536;

/// How a source feeds the dataflow. Outputs never depend on it (tests/tests/equivalence.rs).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Records read per source activation.
    pub batch: usize,
    /// Weight (one per event plus one per code) allowed ahead of what the dataflow has
    /// finished.
    pub in_flight: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            batch: SOURCE_BATCH_MAX,
            in_flight: SOURCE_WEIGHT_IN_FLIGHT_MAX,
        }
    }
}

impl Batching {
    /// At least one record and one unit of weight.
    pub fn at_least_one(self) -> Batching {
        Batching {
            batch: self.batch.max(1),
            in_flight: self.in_flight.max(1),
        }
    }
}

/// Effective times of one partition (DOMAIN.md §4): an event takes effect at
/// `max(ts, high-water before it − lateness)` and is late when its `ts` is below that.
#[derive(Clone, Debug)]
pub struct Placer {
    lateness_ms: i64,
    high_water: Option<Ts>,
}

impl Placer {
    /// A partition that has read nothing yet.
    pub fn new(lateness_ms: i64) -> Placer {
        Placer::resuming(lateness_ms, None)
    }

    /// A partition whose records up to one with this high-water mark were read before.
    pub fn resuming(lateness_ms: i64, high_water: Option<Ts>) -> Placer {
        Placer {
            lateness_ms,
            high_water,
        }
    }

    /// Places the partition's next event and moves its high-water mark.
    pub fn place(&mut self, event: Event) -> Placed {
        let floor = self.floor();
        let effective = floor.map_or(event.ts, |floor| floor.max(event.ts));
        let late = floor.is_some_and(|floor| event.ts < floor);
        self.high_water = Some(self.high_water.map_or(event.ts, |hw| hw.max(event.ts)));
        Placed { effective, late, event }
    }

    /// No later event of the partition takes effect before this (None: nothing read yet).
    pub fn floor(&self) -> Option<Ts> {
        self.high_water.map(|hw| hw.minus_millis(self.lateness_ms))
    }
}

/// What a source emits.
#[derive(Clone, Debug)]
pub enum Sourced {
    /// An event at its effective time.
    Event(Placed),
    /// A record refused at decoding (`MALFORMED`, `UNKNOWN_TYPE`).
    Refused(Rejection),
}

/// What a worker's source read, for the run's summary (sent to worker 0 on a cluster).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SourceStats {
    /// Records read, refused ones included.
    pub records: u64,
    /// Well-formed events.
    pub events: u64,
    /// Events that took effect late.
    pub late_events: u64,
    /// Codes named by code-bearing events.
    pub code_events: u64,
    /// The earliest `ts` read.
    pub first_ts: Option<Ts>,
    /// The largest `ts` read.
    pub last_ts: Option<Ts>,
    /// Accounts of non-tariff events.
    pub accounts: HashSet<String>,
    /// Input bytes read.
    pub bytes: u64,
    /// Partitions read.
    pub partitions: Vec<String>,
    /// Partitions that ended early, with why.
    pub errors: Vec<String>,
}

impl SourceStats {
    fn count(&mut self, placed: &Placed) {
        let event = &placed.event;
        self.events += 1;
        self.late_events += u64::from(placed.late);
        self.code_events += event.code_count() as u64;
        self.first_ts = Some(self.first_ts.map_or(event.ts, |t| t.min(event.ts)));
        self.last_ts = Some(self.last_ts.map_or(event.ts, |t| t.max(event.ts)));
        if event.kind() != Kind::Tariff && !self.accounts.contains(&event.account) {
            self.accounts.insert(event.account.clone());
        }
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: SourceStats) {
        self.records += other.records;
        self.events += other.events;
        self.late_events += other.late_events;
        self.code_events += other.code_events;
        self.first_ts = [self.first_ts, other.first_ts].into_iter().flatten().min();
        self.last_ts = [self.last_ts, other.last_ts].into_iter().flatten().max();
        self.accounts.extend(other.accounts);
        self.bytes += other.bytes;
        self.partitions.extend(other.partitions);
        self.errors.extend(other.errors);
    }
}

/// The event, or its rejection when it is not taken in at all.
fn admit(admission: &Admission, event: Event) -> Decoded {
    match admission.check(&event) {
        Ok(()) => Decoded::Event(event),
        Err(rejection) => Decoded::Refused(*rejection),
    }
}

/// Why `record` may not be taken in yet: its `ts` is in the first year the calendar does
/// not cover, or it is an emission whose expiry deadline would fall there (issue 19).
/// Further out it is absurd and refused `TS_OUT_OF_RANGE` instead.
fn beyond_calendar(admission: &Admission, record: &Next, calendar_name: &str) -> Option<String> {
    let (Next::Record(Decoded::Event(event)) | Next::Known(Decoded::Event(event))) = record else {
        return None;
    };
    let beyond = admission.window.beyond_calendar(event)?;
    let year = beyond.year();
    Some(format!(
        "event {:?} at {} {}, a year {calendar_name} does not cover (its last day is {}): \
         no working-day deadline can be computed there, so the run stops before it; extend the \
         calendar to {year} (datasets/calendars/README.md) and pass it with --calendar",
        event.id,
        event.ts,
        beyond.what(),
        admission
            .window
            .calendar_end
            .local_date()
            .pred_opt()
            .unwrap_or_default()
    ))
}

/// The least time a refusal takes effect at besides its partition's floor: a quarantined
/// event's own `ts`. It was an event in the runs that failed on it, which never completed
/// its instant, so its rejection must come at or after that instant — before it, a restart
/// would take it for an output an earlier run had already produced, and not produce it.
fn refused_at(admission: &Admission, record: &Next) -> Option<Time> {
    match record {
        Next::Record(Decoded::Event(event)) if admission.quarantine.contains_key(&event.id) => Some(time_of(event.ts)),
        _ => None,
    }
}

struct Partition {
    input: Box<dyn PartitionInput>,
    placer: Placer,
    finished: bool,
    /// Idle (a live partition with nothing for longer than its timeout): not holding the
    /// watermark until its next record.
    idle: bool,
}

/// What a worker's source is told.
pub struct SourceSettings {
    /// DOMAIN.md §4's lateness.
    pub lateness_ms: i64,
    /// Which events are taken in at all (`TS_OUT_OF_RANGE`, `INTERNAL_ERROR`).
    pub admission: Admission,
    /// The calendar's name, for the message of a run stopped at its end.
    pub calendar_name: String,
    /// Records per activation and weight in flight.
    pub batching: Batching,
    /// Where the run's watermark stops (file runs), reported to.
    pub end: InputEnd,
    /// A run restored from a checkpoint at `start` places nothing before it.
    pub start: Time,
    /// Set to stop reading (a stream's orderly stop).
    pub stop: Option<Arc<AtomicBool>>,
    /// A stream's checkpoints: on a cluster, process 0's sources hold their watermark
    /// while a checkpoint request travels to the other processes ([`Checkpoints::hold`]).
    pub checkpoints: Option<Checkpoints>,
}

/// What a worker's source reports back, and what it watches.
pub struct SourceReports {
    /// The whole dataflow's progress (a probe after the sinks): work finished.
    pub done: ProbeHandle<Time>,
    /// What it read, for the run's summary.
    pub stats: Rc<RefCell<SourceStats>>,
    /// Records read across all workers, for a progress line.
    pub records_read: Arc<AtomicU64>,
    /// Once stopped, the watermark the source holds.
    pub stopped: Arc<AtomicU64>,
    /// Told once every partition has ended (the cluster's agreement on the end, cluster.rs).
    pub finish: Rc<RefCell<SourceFinish>>,
}

/// On a cluster, what a source tells "Cluster: input end" (cluster.rs): the largest instant
/// it has read so far, and once it has read everything the largest instant it read; it then
/// waits for its process's [`InputEnd`] to know the run's end before it releases its
/// watermark. One process has no reporter (`activator` is None): the source reports to the
/// shared [`InputEnd`] itself, at once.
#[derive(Debug, Default)]
pub struct SourceFinish {
    /// The largest instant read so far.
    pub read: Time,
    /// `Some(largest instant read)` once every partition has ended.
    pub last: Option<Option<Time>>,
    /// Wakes the operator that reports it (a cluster only).
    pub activator: Option<timely::scheduling::Activator>,
}

/// What a source emits, cut into its two typed edges.
pub struct SourceEdges<'scope> {
    /// Well-formed events, each at its effective time.
    pub events: StreamVec<'scope, Time, Placed>,
    /// Records refused before placement (`MALFORMED`, `UNKNOWN_TYPE`, `TS_OUT_OF_RANGE`,
    /// `INTERNAL_ERROR`), at their partition's floor.
    pub refused: StreamVec<'scope, Time, Output>,
}

impl Edge for Sourced {
    const EDGES: u64 = 2;
    fn edge(&self) -> u64 {
        match self {
            Sourced::Event(_) => 0,
            Sourced::Refused(_) => 1,
        }
    }
}

/// The source of one worker (see the module docs), cut into its typed edges. Once
/// `settings.stop` is set the source reads nothing more and publishes in `reports.stopped`
/// the watermark it holds.
pub fn partitions<'scope>(
    scope: Scope<'scope, Time>,
    inputs: Vec<Box<dyn PartitionInput>>,
    settings: SourceSettings,
    reports: SourceReports,
) -> SourceEdges<'scope> {
    let mut parts = edges(read_partitions(scope, inputs, settings, reports));
    SourceEdges {
        events: take(parts.next(), |record| {
            if let Sourced::Event(placed) = record {
                Some(placed)
            } else {
                None
            }
        }),
        refused: take(parts.next(), |record| match record {
            Sourced::Refused(rejection) => Some(Output::Rejection(rejection)),
            Sourced::Event(_) => None,
        }),
    }
}

/// The operator "Source: partitions": each activation reads a batch (a [`Reader`]), emits
/// it at its times, and moves the watermark, or releases it once every partition has ended.
fn read_partitions<'scope>(
    scope: Scope<'scope, Time>,
    inputs: Vec<Box<dyn PartitionInput>>,
    settings: SourceSettings,
    reports: SourceReports,
) -> StreamVec<'scope, Time, Sourced> {
    const NAME: &str = "Source: partitions";
    source::<_, CapacityContainerBuilder<Vec<Sourced>>, _, _>(scope, NAME, move |mut cap, info| {
        let activator = scope.activator_for(info.address);
        // Its process's first worker tells the checkpoints where its watermark is.
        let first_worker = settings
            .checkpoints
            .as_ref()
            .is_some_and(|checkpoints| scope.index() == checkpoints.first_worker());
        // A run restored from a checkpoint at `start` places nothing before it.
        cap.downgrade(&settings.start.max(*cap.time()));
        let mut held: Option<Capability<Time>> = Some(cap);
        let mut reader = Reader::new(inputs, &settings);
        reports.stats.borrow_mut().partitions = reader.partitions.iter().map(|p| p.input.name()).collect();
        move |output| {
            failure::enter_stage(NAME);
            let Some(cap) = held.as_mut() else { return };
            reader.retire_finished(&reports.done, *cap.time());
            let records = reader.read(*cap.time(), &settings, &mut reports.stats.borrow_mut());
            if let Some(last) = reports.stats.borrow().last_ts {
                settings.end.note_read(time_of(last));
                let mut finish = reports.finish.borrow_mut();
                if time_of(last) > finish.read {
                    finish.read = time_of(last);
                    if let Some(reporter) = &finish.activator {
                        reporter.activate();
                    }
                }
            }
            reports.records_read.fetch_add(records, Ordering::Relaxed);
            for (time, records) in std::mem::take(&mut reader.batch) {
                output.session(&cap.delayed(&time)).give_iterator(records.into_iter());
            }
            if let Some(checkpoints) = settings.checkpoints.as_ref().filter(|_| first_worker) {
                checkpoints.note_source_at(*cap.time());
            }
            reader.completed(&reports.done);
            if settings.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                // Stopping: read nothing more; keep the watermark where it is, so nothing
                // after it is decided, and let the dataflow finish what it holds.
                reports.stopped.store(*cap.time(), Ordering::SeqCst);
                activator.activate_after(std::time::Duration::from_millis(10));
                return;
            }
            match reader.watermark(&settings.end) {
                // Every partition finished: report, then release the watermark once the
                // end of the whole run (every source of every process) is known.
                None => {
                    let last = reports.stats.borrow().last_ts.map(time_of);
                    let mut finish = reports.finish.borrow_mut();
                    if finish.last.is_none() {
                        finish.last = Some(last);
                        match &finish.activator {
                            None => settings.end.source_finished(last),
                            Some(reporter) => reporter.activate(),
                        }
                    }
                    if settings.end.get().is_none() {
                        // Wait for the end (set by the last source of the process, or agreed
                        // on a cluster), holding the watermark no lower than
                        // the largest instant any source is known to have read (never past
                        // the end; never below another source's watermark, which would
                        // starve that source's reading of finished work).
                        reader.advance(cap, Some(settings.end.read_max()));
                        activator.activate_after(std::time::Duration::from_millis(1));
                        return;
                    }
                    held = None;
                    // Released: it holds nothing back should the run be stopped.
                    reports.stopped.store(u64::MAX - 1, Ordering::SeqCst);
                }
                Some(floor) => {
                    // A checkpoint request on its way to the other processes of a cluster
                    // holds the watermark (Checkpoints::propose_at_least).
                    let hold = settings.checkpoints.as_ref().map_or(Time::MAX, Checkpoints::hold);
                    reader.advance(cap, floor.map(|floor| floor.min(hold)));
                    if reader.all_waiting() {
                        activator.activate_after(std::time::Duration::from_millis(1));
                    } else {
                        activator.activate();
                    }
                }
            }
        }
    })
}

/// A worker's partitions and what its source keeps between activations.
struct Reader {
    partitions: Vec<Partition>,
    admission: Admission,
    calendar_name: String,
    /// Events emitted and not yet finished by the whole dataflow, by time, and the part of
    /// it below the watermark (the held capability): only that part can finish before the
    /// source reads on. Kept as a running sum: summing the map at every activation cost
    /// 5 % of a run's CPU (BENCHMARKS.md, "Profile").
    in_flight: BTreeMap<Time, usize>,
    finishable: usize,
    /// What the last read placed, by time.
    batch: BTreeMap<Time, Vec<Sourced>>,
    /// Partitions that had nothing to give in the last read.
    waiting: Vec<bool>,
}

impl Reader {
    fn new(inputs: Vec<Box<dyn PartitionInput>>, settings: &SourceSettings) -> Reader {
        let partitions: Vec<Partition> = inputs
            .into_iter()
            .map(|input| Partition {
                placer: Placer::resuming(settings.lateness_ms, input.start_high_water()),
                input,
                finished: false,
                idle: false,
            })
            .collect();
        Reader {
            waiting: vec![false; partitions.len()],
            partitions,
            admission: settings.admission.clone(),
            calendar_name: settings.calendar_name.clone(),
            in_flight: BTreeMap::new(),
            finishable: 0,
            batch: BTreeMap::new(),
        }
    }

    /// Forgets the work the whole dataflow has finished.
    fn retire_finished(&mut self, done: &ProbeHandle<Time>, watermark: Time) {
        while self
            .in_flight
            .first_key_value()
            .is_some_and(|(time, _)| !done.less_equal(time))
        {
            // Finished, so below the done frontier, which is at most the watermark.
            let (_, weight) = self.in_flight.pop_first().expect("peeked");
            self.finishable -= weight;
        }
        debug_assert_eq!(
            self.finishable,
            self.in_flight.range(..watermark).map(|(_, n)| n).sum::<usize>()
        );
    }

    /// Reads up to a batch of records, always from the partition whose watermark is lowest,
    /// within the budget of work in flight; returns the records read.
    fn read(&mut self, watermark: Time, settings: &SourceSettings, stats: &mut SourceStats) -> u64 {
        let mut budget = settings.batching.in_flight.saturating_sub(self.finishable);
        let mut records = 0u64;
        self.waiting.iter_mut().for_each(|waiting| *waiting = false);
        for _ in 0..settings.batching.batch {
            if budget == 0 {
                break;
            }
            // The unfinished partition with the lowest watermark that has a record now.
            let next = self
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, p)| !p.finished && !self.waiting[*i])
                .min_by_key(|(_, p)| p.placer.floor())
                .map(|(i, _)| i);
            let Some(index) = next else { break };
            let (read, weight) = self.read_one(index, watermark, stats);
            records += read;
            budget = budget.saturating_sub(weight);
        }
        stats.records += records;
        records
    }

    /// Reads partition `index`'s next record: returns (records read, weight placed).
    fn read_one(&mut self, index: usize, watermark: Time, stats: &mut SourceStats) -> (u64, usize) {
        let partition = &mut self.partitions[index];
        // An event refused before placement is like a malformed record: it moves no
        // high-water mark (also when re-read after a restore).
        let record = partition.input.next_record();
        if let Some(beyond) = beyond_calendar(&self.admission, &record, &self.calendar_name) {
            // A file run stops here (a stream's Kafka input holds such a record unread,
            // connectors/src/kafka/partition.rs): nothing of this partition is placed at or
            // past the calendar's end, so no deadline is computed in a year it lacks.
            partition.finished = true;
            stats.errors.push(format!("{}: {beyond}", partition.input.name()));
            return (1, 0);
        }
        let at_least = refused_at(&self.admission, &record);
        let next = match record {
            Next::Record(Decoded::Event(event)) => Next::Record(admit(&self.admission, event)),
            Next::Known(Decoded::Event(event)) => Next::Known(admit(&self.admission, event)),
            other => other,
        };
        match next {
            Next::Known(record) => {
                // Already in the restored state: only the high-water mark moves.
                partition.idle = false;
                if let Decoded::Event(event) = record {
                    partition.placer.place(event);
                }
                (1, 0)
            }
            Next::Record(Decoded::Event(event)) => (1, self.place_event(index, event, watermark, stats)),
            Next::Record(Decoded::Refused(rejection)) => {
                self.place_refusal(index, rejection, at_least, watermark);
                (1, 0)
            }
            Next::Pending => {
                self.waiting[index] = true;
                (0, 0)
            }
            Next::Idle => {
                self.waiting[index] = true;
                if !partition.idle {
                    // One event per transition (issue 19), never per poll.
                    markledger_operators::note!(
                        "markledger stream: partition {} is idle: caught up and silent, it no longer holds the watermark back",
                        partition.input.name()
                    );
                }
                partition.idle = true;
                (0, 0)
            }
            Next::Finished => {
                partition.finished = true;
                stats.bytes += partition.input.bytes_read();
                if let Some(error) = partition.input.error() {
                    stats.errors.push(format!("{}: {error}", partition.input.name()));
                }
                (0, 0)
            }
        }
    }

    /// Places an event of partition `index` at its effective time; returns its weight.
    fn place_event(&mut self, index: usize, event: Event, watermark: Time, stats: &mut SourceStats) -> usize {
        let partition = &mut self.partitions[index];
        if partition.idle {
            markledger_operators::note!(
                "markledger stream: partition {} is active again: it holds the watermark back",
                partition.input.name()
            );
        }
        partition.idle = false;
        let mut placed = partition.placer.place(event);
        // Only after an idle partition wakes can its event fall below the watermark: it
        // takes effect at the watermark, and is late.
        if time_of(placed.effective) < watermark {
            placed.effective = ts_of(watermark);
            placed.late = true;
        }
        stats.count(&placed);
        let time = time_of(placed.effective);
        partition.input.placed(time);
        if placed.late {
            partition.input.late();
        }
        let weight = 1 + placed.event.code_count();
        *self.in_flight.entry(time).or_default() += weight;
        if time < watermark {
            self.finishable += weight;
        }
        self.batch.entry(time).or_default().push(Sourced::Event(placed));
        weight
    }

    /// Places a refusal at its partition's floor: a function of the partition's records
    /// before it, so a restart places it where the first run did (the watermark when it
    /// happens to be read is not). Behind the watermark only on a partition that was idle.
    fn place_refusal(&mut self, index: usize, rejection: Rejection, at_least: Option<Time>, watermark: Time) {
        let partition = &mut self.partitions[index];
        let floor = partition.placer.floor().map_or(0, time_of);
        let time = floor.max(at_least.unwrap_or(0)).max(watermark);
        partition.input.placed(time);
        self.batch.entry(time).or_default().push(Sourced::Refused(rejection));
    }

    /// Tells every partition what the whole dataflow has finished (a stream commits it).
    fn completed(&mut self, done: &ProbeHandle<Time>) {
        let done_before = done.with_frontier(|frontier| frontier.iter().min().copied());
        for partition in &mut self.partitions {
            partition.input.completed(done_before.unwrap_or(Time::MAX));
        }
    }

    /// The watermark the source can hold: None once every partition has ended; Some(None)
    /// while a partition that holds it has read nothing yet.
    fn watermark(&self, end: &InputEnd) -> Option<Option<Time>> {
        let live = self.partitions.iter().filter(|p| !p.finished);
        let mut holding = live.clone().filter(|p| !p.idle).peekable();
        if live.clone().next().is_none() {
            None
        } else if holding.peek().is_none() {
            // Every live partition is idle: like finished ones they no longer hold the
            // watermark back, which goes just past the largest `ts` any source has read:
            // every instant up to it is decided, as at the end of a file run.
            Some(Some(end.read_max() + 1))
        } else {
            Some(holding.map(|p| p.placer.floor().map(time_of)).min().flatten())
        }
    }

    /// Moves the held capability up to `floor` (never back).
    fn advance(&mut self, cap: &mut Capability<Time>, floor: Option<Time>) {
        if let Some(floor) = floor.filter(|floor| *floor > *cap.time()) {
            self.finishable += self.in_flight.range(*cap.time()..floor).map(|(_, n)| n).sum::<usize>();
            cap.downgrade(&floor);
        }
    }

    /// Whether every unfinished partition had nothing to give in the last read.
    fn all_waiting(&self) -> bool {
        self.partitions
            .iter()
            .zip(&self.waiting)
            .all(|(p, waiting)| p.finished || *waiting)
    }
}
