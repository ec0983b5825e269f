//! One streaming writer per partition, with the bad-input injector sitting on the stream.
//!
//! In: events from the simulation, in nondecreasing `ts` per partition, each with its
//! [`Meta`]. Out: partition files (`p000.jsonl` / `p000.bin`, …) and the counts the
//! manifest reports. Event ids are assigned here, at write time (`p2-000000123`: the
//! partition and a per-partition counter), so ids rise in file order and are unique.
//!
//! What may be written out of order, and how, is decided here and nowhere else:
//! - a held payment or compensation ([`Writers::hold`]) waits until its partition has
//!   moved past its `ts` (within the 5 s lateness, or minutes beyond it); its credit is
//!   handed back through [`Writers::take_released`] only once written, so the
//!   simulation's money model never sees money earlier than an engine does;
//! - a late order ([`Writers::write_late_order`]), an order station's upload that arrives
//!   hours after it was placed, is written at once with a `ts` more than the 4-hour SLA
//!   ([`SLA_MS`]) plus the lateness behind its partition's high-water mark, so it takes
//!   effect after its own emission deadline; the simulation picks its `ts` and schedules
//!   the order's emissions after the moment it is written;
//! - a duplicate is the same [`Event`] written again, preferably once the partition's
//!   high-water mark is 10 s to 50 min past the original, and always before anything more
//!   than 1 hour past it (in a quiet partition that can be right after the original: a
//!   retry that arrived at once). An engine keeps the first copy in account order; when
//!   both copies take effect at the same instant they are identical, so which one is
//!   "first" changes nothing but which one the `DUPLICATE` record follows.
//!
//! Memory is bounded by [`HELD_PER_PARTITION_MAX`], [`DUPLICATES_PENDING_MAX`] and
//! [`DUPLICATE_CODES_MAX`] codes per pending duplicate.

use super::inject::{self, Category, CATEGORY_WEIGHTS};
use super::manifest::INJECTED_REASONS;
use super::rng::Rng;
use markledger_connectors::file::Format;
use markledger_connectors::file::PartitionWriter;
use markledger_operators::{Event, Reason, Ts};
use std::io;
use std::path::Path;

/// The engines' default lateness: a record at most this far behind its partition's
/// high-water mark still takes effect at its own `ts`.
pub const LATENESS_MS: i64 = 5_000;
/// The operator's emission deadline after an order (DOMAIN.md §2, 000 §4.4.4).
pub const SLA_MS: i64 = 4 * 3_600_000;
/// A duplicate is written, preferably, when its partition's high-water mark is at least
/// this far past the original's `ts` (past the lateness: the copy then takes effect after
/// the original).
pub const DUPLICATE_DELAY_MIN_MS: i64 = 10_000;
/// Latest delay a duplicate is scheduled for.
pub const DUPLICATE_DELAY_MAX_MS: i64 = 50 * 60_000;
/// A duplicate is always written before its partition moves this far past the original.
pub const DUPLICATE_WINDOW_MS: i64 = 60 * 60_000;
/// Only events naming at most this many codes are re-sent (they are kept in memory).
pub const DUPLICATE_CODES_MAX: usize = 1_000;
/// Duplicates waiting per partition.
pub const DUPLICATES_PENDING_MAX: usize = 64;
/// Payments and compensations held back per partition.
pub const HELD_PER_PARTITION_MAX: usize = 64;
/// Injections waiting for a suitable event (next application, payment, …) per partition
/// and category; beyond it an injection becomes a malformed line instead.
pub const WANTED_PER_PARTITION_MAX: u32 = 16;
/// The GTIN a zero-quantity order line names (refused before its GTIN is looked at).
const MALFORMED_ORDER_GTIN: &str = "04870000010013";

/// How the simulation's event may be treated.
#[derive(Clone, Copy, Debug, Default)]
pub struct Meta {
    /// A normal event: an injection may follow it.
    pub injectable: bool,
    /// It may be re-sent as a duplicate: normal, not refused on purpose, small.
    pub duplicable: bool,
}

impl Meta {
    /// A normal event that may be re-sent when small enough.
    pub fn normal(event: &Event) -> Meta {
        Meta {
            injectable: true,
            duplicable: event.code_count() <= DUPLICATE_CODES_MAX,
        }
    }

    /// A normal event that the engine refuses on purpose (never re-sent).
    pub fn refused() -> Meta {
        Meta {
            injectable: true,
            duplicable: false,
        }
    }

    /// A deliberately bad event, or one outside the injector's reach (the tariff).
    pub fn bad() -> Meta {
        Meta::default()
    }
}

/// How far out of order a held payment is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lateness {
    /// Behind the high-water mark by at most the lateness: takes effect at its own `ts`.
    Within,
    /// Minutes behind: takes effect late.
    Beyond,
}

/// What the files hold, counted as they are written.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Records written.
    pub records: u64,
    /// Codes named.
    pub code_events: u64,
    /// Well-formed records by kind (rank order).
    pub by_kind: [u64; markledger_operators::Kind::ALL.len()],
    /// Codes by kind.
    pub codes_by_kind: [u64; markledger_operators::Kind::ALL.len()],
    /// Exact rejections injected, in [`INJECTED_REASONS`] order.
    pub injected: [u64; 6],
    /// Held payments written behind their partition's high-water mark.
    pub late_written: u64,
    /// Of those, more than [`LATENESS_MS`] behind.
    pub late_beyond_lateness: u64,
    /// Orders written more than [`SLA_MS`] + [`LATENESS_MS`] behind the high-water mark.
    pub late_orders: u64,
    /// Earliest `ts` written (well-formed records).
    pub first_ts: Option<Ts>,
    /// Latest `ts` written.
    pub last_ts: Option<Ts>,
}

impl Counts {
    /// Adds `count` rejections of an injected reason.
    pub fn add_injected(&mut self, reason: Reason, count: u64) {
        let index = INJECTED_REASONS
            .iter()
            .position(|r| *r == reason)
            .expect("an injected reason");
        self.injected[index] += count;
    }
}

struct Held {
    event: Event,
    account: u32,
    credit: i64,
    /// Written once the high-water mark reaches this.
    release_at: Ts,
    /// Written before any event with a `ts` beyond this (keeps it within the lateness).
    release_before: Option<Ts>,
}

struct Duplicate {
    event: Event,
    release_at: Ts,
    latest: Ts,
}

#[derive(Default)]
struct Wanted {
    unknown_code: u32,
    wrong_account: u32,
    duplicate: u32,
    late: u32,
}

struct Partition {
    writer: PartitionWriter,
    prefix: String,
    next_id: u64,
    high_water: Option<Ts>,
    held: Vec<Held>,
    duplicates: Vec<Duplicate>,
    wanted: Wanted,
}

/// The partition writers and the injector.
pub struct Writers {
    partitions: Vec<Partition>,
    names: Vec<String>,
    rng: Rng,
    /// Probability that a normal event is followed by an injection: `r / (1 − r)` for a
    /// bad rate `r`, so injections make up the fraction `r` of all events.
    injection_probability: f64,
    counts: Counts,
    released: Vec<(u32, i64)>,
}

/// The file name of partition `index`.
pub fn partition_file_name(index: u32, format: Format) -> String {
    format!("p{index:03}.{}", format.extension())
}

impl Writers {
    /// Creates the partition files in `dir`.
    pub fn create(dir: &Path, partitions: u32, format: Format, bad_rate: f64, rng: Rng) -> io::Result<Writers> {
        let mut writers = Vec::with_capacity(partitions as usize);
        let mut names = Vec::with_capacity(partitions as usize);
        for index in 0..partitions {
            let name = partition_file_name(index, format);
            writers.push(PartitionWriter::create(&dir.join(&name), format)?);
            names.push(name);
        }
        Ok(Writers::over(writers, names, bad_rate, rng))
    }

    /// Writes partition `i` to `writers[i]` (named `names[i]`): files, or pipes into a run.
    pub fn over(writers: Vec<PartitionWriter>, names: Vec<String>, bad_rate: f64, rng: Rng) -> Writers {
        let created = writers
            .into_iter()
            .enumerate()
            .map(|(index, writer)| Partition {
                writer,
                prefix: format!("p{index}-"),
                next_id: 0,
                high_water: None,
                held: Vec::new(),
                duplicates: Vec::new(),
                wanted: Wanted::default(),
            })
            .collect();
        let injection_probability = if bad_rate > 0.0 {
            bad_rate / (1.0 - bad_rate)
        } else {
            0.0
        };
        Writers {
            partitions: created,
            names,
            rng,
            injection_probability,
            counts: Counts::default(),
            released: Vec::new(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Adds injected rejections the simulation put into an application.
    pub fn add_injected(&mut self, reason: Reason, count: u64) {
        self.counts.add_injected(reason, count);
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.writer.bytes_written()).sum()
    }

    /// The partition's high-water mark: the largest `ts` written to it.
    pub fn high_water(&self, partition: u32) -> Option<Ts> {
        self.partitions[partition as usize].high_water
    }

    /// Credits of held payments written since the last call: (account, model units).
    pub fn take_released(&mut self) -> Vec<(u32, i64)> {
        std::mem::take(&mut self.released)
    }

    /// Injections waiting for the partition's next application: (unknown-code ones,
    /// wrong-account ones). The caller adds the codes and counts them, and gives back
    /// the wrong-account ones it could not serve.
    pub fn take_wanted_codes(&mut self, partition: u32) -> (u32, u32) {
        let wanted = &mut self.partitions[partition as usize].wanted;
        let taken = (wanted.unknown_code, wanted.wrong_account);
        wanted.unknown_code = 0;
        wanted.wrong_account = 0;
        taken
    }

    /// Gives back wrong-account injections the caller could not serve yet.
    pub fn return_wrong_account(&mut self, partition: u32, count: u32) {
        self.partitions[partition as usize].wanted.wrong_account += count;
    }

    /// Whether the partition's next payment or compensation should be held back, and
    /// how far.
    pub fn take_late(&mut self, partition: u32) -> Option<Lateness> {
        let part = &mut self.partitions[partition as usize];
        if part.wanted.late == 0 || part.held.len() >= HELD_PER_PARTITION_MAX {
            return None;
        }
        part.wanted.late -= 1;
        Some(if self.rng.chance(0.5) {
            Lateness::Within
        } else {
            Lateness::Beyond
        })
    }

    /// Holds back a payment or compensation of `account` (crediting `credit` units) to be
    /// written out of order.
    pub fn hold(&mut self, partition: u32, event: Event, account: u32, credit: i64, lateness: Lateness) {
        let ts = event.ts;
        let (release_at, release_before) = match lateness {
            Lateness::Within => (
                ts.plus_millis(self.rng.between_i64(1, LATENESS_MS - 1_000)),
                Some(ts.plus_millis(LATENESS_MS)),
            ),
            Lateness::Beyond => (ts.plus_millis(self.rng.between_i64(2 * 60_000, 30 * 60_000)), None),
        };
        self.partitions[partition as usize].held.push(Held {
            event,
            account,
            credit,
            release_at,
            release_before,
        });
    }

    /// Writes one event of the simulation (its id is assigned here), then whatever held
    /// records its `ts` releases, then maybe an injection.
    pub fn write(&mut self, partition: u32, mut event: Event, meta: Meta) -> io::Result<()> {
        debug_assert!(
            self.partitions[partition as usize]
                .high_water
                .is_none_or(|hw| hw <= event.ts),
            "partition {partition} goes back in time"
        );
        self.release_before(partition, event.ts)?;
        self.assign_id(partition, &mut event);
        self.write_event(partition, &event)?;
        self.release_after(partition)?;
        if meta.injectable {
            self.inject_after(partition, event, meta)?;
        }
        Ok(())
    }

    /// Writes an order that arrives late (its id is assigned here): its `ts` is more than
    /// [`SLA_MS`] + [`LATENESS_MS`] behind the partition's high-water mark, so it takes
    /// effect at the high-water mark − lateness, after its own 4-hour deadline. Nothing is
    /// released or injected after it (it moves no high-water mark), and it is never re-sent.
    pub fn write_late_order(&mut self, partition: u32, mut event: Event) -> io::Result<()> {
        debug_assert!(matches!(event.body, markledger_operators::Body::Order { .. }));
        debug_assert!(self.partitions[partition as usize]
            .high_water
            .is_some_and(|hw| hw.0 - event.ts.0 > SLA_MS + LATENESS_MS));
        self.assign_id(partition, &mut event);
        self.write_event(partition, &event)?;
        self.counts.late_orders += 1;
        Ok(())
    }

    fn assign_id(&mut self, partition: u32, event: &mut Event) {
        let part = &mut self.partitions[partition as usize];
        event.id = format!("{}{:09}", part.prefix, part.next_id);
        part.next_id += 1;
    }

    fn fresh_id(&mut self, partition: u32) -> String {
        let part = &mut self.partitions[partition as usize];
        let id = format!("{}{:09}", part.prefix, part.next_id);
        part.next_id += 1;
        id
    }

    /// Writes a well-formed event and counts it.
    fn write_event(&mut self, partition: u32, event: &Event) -> io::Result<()> {
        let part = &mut self.partitions[partition as usize];
        part.writer.write_event(event)?;
        part.high_water = Some(part.high_water.map_or(event.ts, |hw| hw.max(event.ts)));
        let counts = &mut self.counts;
        let kind = event.kind().rank() as usize;
        let codes = event.code_count() as u64;
        counts.records += 1;
        counts.by_kind[kind] += 1;
        counts.codes_by_kind[kind] += codes;
        counts.code_events += codes;
        counts.first_ts = Some(counts.first_ts.map_or(event.ts, |first| first.min(event.ts)));
        counts.last_ts = Some(counts.last_ts.map_or(event.ts, |last| last.max(event.ts)));
        Ok(())
    }

    fn write_raw(&mut self, partition: u32, line: &[u8], reason: Reason) -> io::Result<()> {
        self.partitions[partition as usize].writer.write_raw(line)?;
        self.counts.records += 1;
        self.counts.add_injected(reason, 1);
        Ok(())
    }

    /// Duplicates that must not fall more than an hour behind their original, then held
    /// payments that must not fall more than the lateness behind an event at `ts`. In that
    /// order: in a quiet partition a held payment can be ahead of the high-water mark and
    /// raise it when written, and a duplicate written after it could then be more than an
    /// hour behind (the duplicates left have `latest ≥ ts`, above any held `ts` written here).
    fn release_before(&mut self, partition: u32, ts: Ts) -> io::Result<()> {
        while let Some(index) = self.partitions[partition as usize]
            .duplicates
            .iter()
            .position(|dup| dup.latest < ts)
        {
            let duplicate = self.partitions[partition as usize].duplicates.remove(index);
            self.write_duplicate(partition, &duplicate.event)?;
        }
        while let Some(index) = self.partitions[partition as usize]
            .held
            .iter()
            .position(|held| held.release_before.is_some_and(|before| before < ts))
        {
            let held = self.partitions[partition as usize].held.remove(index);
            self.write_held(partition, held)?;
        }
        Ok(())
    }

    fn write_duplicate(&mut self, partition: u32, event: &Event) -> io::Result<()> {
        debug_assert!(self.partitions[partition as usize]
            .high_water
            .is_some_and(|hw| hw.0 - event.ts.0 <= DUPLICATE_WINDOW_MS));
        self.write_event(partition, event)?;
        self.counts.add_injected(Reason::Duplicate, 1);
        Ok(())
    }

    /// Held payments and duplicates whose time has come.
    fn release_after(&mut self, partition: u32) -> io::Result<()> {
        let Some(high_water) = self.partitions[partition as usize].high_water else {
            return Ok(());
        };
        while let Some(index) = self.partitions[partition as usize]
            .held
            .iter()
            .position(|held| held.release_at <= high_water)
        {
            let held = self.partitions[partition as usize].held.remove(index);
            self.write_held(partition, held)?;
        }
        while let Some(index) = self.partitions[partition as usize]
            .duplicates
            .iter()
            .position(|dup| dup.release_at <= high_water)
        {
            let duplicate = self.partitions[partition as usize].duplicates.remove(index);
            self.write_duplicate(partition, &duplicate.event)?;
        }
        Ok(())
    }

    fn write_held(&mut self, partition: u32, mut held: Held) -> io::Result<()> {
        let high_water = self.partitions[partition as usize].high_water;
        self.assign_id(partition, &mut held.event);
        self.write_event(partition, &held.event)?;
        if let Some(high_water) = high_water {
            if high_water > held.event.ts {
                self.counts.late_written += 1;
                if high_water.0 - held.event.ts.0 > LATENESS_MS {
                    self.counts.late_beyond_lateness += 1;
                }
            }
        }
        self.released.push((held.account, held.credit));
        Ok(())
    }

    /// After a normal event: serve a waiting duplicate, then draw whether to inject.
    fn inject_after(&mut self, partition: u32, event: Event, meta: Meta) -> io::Result<()> {
        let category = if self.injection_probability > 0.0 && self.rng.chance(self.injection_probability) {
            Some(Category::ALL[self.rng.weighted(&CATEGORY_WEIGHTS)])
        } else {
            None
        };
        let ts = event.ts;
        let account = category.map(|_| event.account.clone());
        let mut original = Some(event);
        let part = &mut self.partitions[partition as usize];
        if meta.duplicable && part.wanted.duplicate > 0 && part.duplicates.len() < DUPLICATES_PENDING_MAX {
            part.wanted.duplicate -= 1;
            self.schedule_duplicate(partition, original.take().expect("present"));
        }
        let (Some(category), Some(account)) = (category, account) else {
            return Ok(());
        };
        let part = &mut self.partitions[partition as usize];
        let wanted = &mut part.wanted;
        // Injections that wait for a suitable event; at their bound they become raw lines.
        let waiting = match category {
            Category::UnknownCode => Some(&mut wanted.unknown_code),
            Category::WrongAccount => Some(&mut wanted.wrong_account),
            Category::Late => Some(&mut wanted.late),
            Category::Duplicate => match original.take() {
                Some(original) if meta.duplicable && part.duplicates.len() < DUPLICATES_PENDING_MAX => {
                    self.schedule_duplicate(partition, original);
                    return Ok(());
                }
                _ => Some(&mut wanted.duplicate),
            },
            Category::Malformed | Category::UnknownType | Category::BadAmount => None,
        };
        let category = match waiting {
            Some(count) if *count < WANTED_PER_PARTITION_MAX => {
                *count += 1;
                return Ok(());
            }
            Some(_) => Category::Malformed,
            None => category,
        };
        // Raw and bad-amount records follow the event at its `ts`, as the same order
        // station's next message.
        let id = self.fresh_id(partition);
        match category {
            Category::UnknownType => {
                let line = inject::unknown_type_line(&mut self.rng, &id, &account, ts);
                self.write_raw(partition, &line, Reason::UnknownType)
            }
            Category::BadAmount => {
                let channel = *self.rng.pick(&super::accounts::CHANNELS);
                let mut bad = inject::bad_amount_event(&mut self.rng, &account, ts, channel);
                bad.id = id;
                self.write_event(partition, &bad)?;
                self.counts.add_injected(Reason::BadAmount, 1);
                Ok(())
            }
            _ => {
                let line = inject::malformed_line(&mut self.rng, &id, &account, ts, MALFORMED_ORDER_GTIN);
                self.write_raw(partition, &line, Reason::Malformed)
            }
        }
    }

    fn schedule_duplicate(&mut self, partition: u32, event: Event) {
        let delay = self.rng.between_i64(DUPLICATE_DELAY_MIN_MS, DUPLICATE_DELAY_MAX_MS);
        let release_at = event.ts.plus_millis(delay);
        let latest = event.ts.plus_millis(DUPLICATE_WINDOW_MS);
        self.partitions[partition as usize].duplicates.push(Duplicate {
            event,
            release_at,
            latest,
        });
    }

    /// Writes the duplicates still waiting and what is still held (in that order, as in
    /// `release_before`: a held payment may raise the high-water mark), and closes the
    /// files. Returns the file names, the counts and the bytes written.
    pub fn finish(mut self) -> io::Result<(Vec<String>, Counts, u64)> {
        for index in 0..self.partitions.len() {
            let duplicates = std::mem::take(&mut self.partitions[index].duplicates);
            for duplicate in duplicates {
                self.write_duplicate(index as u32, &duplicate.event)?;
            }
            let held = std::mem::take(&mut self.partitions[index].held);
            for item in held {
                self.write_held(index as u32, item)?;
            }
        }
        let mut bytes = 0;
        for part in self.partitions {
            bytes += part.writer.finish()?;
        }
        Ok((self.names, self.counts, bytes))
    }
}
