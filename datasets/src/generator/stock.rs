//! Codes as ranges of serial numbers: what an account holds emitted but not yet applied
//! ([`Stock`], per product) and applied but not yet introduced or annulled ([`Applied`]).
//!
//! Memory is per range, never per code: a factory printing millions of codes holds a few
//! dozen ranges. Codes are taken from the front in serial order, so ranges split only at
//! their ends.

use markledger_operators::Ts;
use std::collections::VecDeque;

/// Emitted codes of one product, oldest emission first.
#[derive(Clone, Debug, Default)]
pub struct Stock {
    segments: VecDeque<Segment>,
}

/// Serial numbers `lo..hi` of one product, emitted at `emitted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First serial number.
    pub lo: u64,
    /// One past the last.
    pub hi: u64,
    /// When they were emitted (their expiry clock starts on that day).
    pub emitted: Ts,
}

impl Stock {
    /// Adds freshly emitted serials (contiguous ones of the same day merge; the segment
    /// keeps the earlier emission time, which only makes the staleness rule stricter).
    pub fn push(&mut self, lo: u64, hi: u64, emitted: Ts, same_day: impl Fn(Ts, Ts) -> bool) {
        debug_assert!(lo < hi);
        if let Some(last) = self.segments.back_mut() {
            if last.hi == lo && same_day(last.emitted, emitted) {
                last.hi = hi;
                return;
            }
        }
        self.segments.push_back(Segment { lo, hi, emitted });
    }

    /// Drops, from the front, every code emitted at or before `stale_before`: the
    /// generator never commands those again, so they expire (DOMAIN.md §2). Returns how
    /// many codes were dropped.
    pub fn drop_stale(&mut self, stale_before: Ts) -> u64 {
        let mut dropped = 0;
        while let Some(front) = self.segments.front() {
            if front.emitted > stale_before {
                break;
            }
            dropped += front.hi - front.lo;
            self.segments.pop_front();
        }
        dropped
    }

    /// Codes usable at `at`: emitted after `stale_before`.
    pub fn usable(&self, stale_before: Ts) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.emitted > stale_before)
            .map(|s| s.hi - s.lo)
            .sum()
    }

    /// Codes held.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.hi - s.lo).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Takes up to `wanted` codes from the front (call [`Stock::drop_stale`] first),
    /// appending their serial ranges to `out`; returns how many were taken.
    pub fn take(&mut self, wanted: u64, out: &mut Vec<Segment>) -> u64 {
        let mut taken = 0;
        while taken < wanted {
            let Some(front) = self.segments.front_mut() else { break };
            let count = (front.hi - front.lo).min(wanted - taken);
            out.push(Segment {
                lo: front.lo,
                hi: front.lo + count,
                emitted: front.emitted,
            });
            front.lo += count;
            taken += count;
            if front.lo == front.hi {
                self.segments.pop_front();
            }
        }
        taken
    }
}

/// Applied codes not yet introduced or annulled, in application order.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    runs: VecDeque<AppliedRun>,
}

/// Serials `lo..hi` of one product, applied consecutively; `sequence` is the account-wide
/// application sequence number of `lo` (see [`super::wallet`]: paid codes are a prefix of
/// that sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedRun {
    /// The product (index into the account's products).
    pub product: u16,
    /// First serial number.
    pub lo: u64,
    /// One past the last.
    pub hi: u64,
    /// Sequence number of `lo`.
    pub sequence: u64,
}

impl Applied {
    /// Records serials `lo..hi` of `product` applied with sequence numbers from `sequence`.
    pub fn push(&mut self, product: u16, lo: u64, hi: u64, sequence: u64) {
        debug_assert!(lo < hi);
        if let Some(last) = self.runs.back_mut() {
            if last.product == product && last.hi == lo && last.sequence + (last.hi - last.lo) == sequence {
                last.hi = hi;
                return;
            }
        }
        self.runs.push_back(AppliedRun {
            product,
            lo,
            hi,
            sequence,
        });
    }

    /// The oldest run.
    pub fn front(&self) -> Option<&AppliedRun> {
        self.runs.front()
    }

    /// Codes held.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|r| r.hi - r.lo).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Appends the first `wanted` codes (or all) to `out` without taking them.
    pub fn peek(&self, wanted: u64, out: &mut Vec<AppliedRun>) {
        let mut named = 0;
        for run in &self.runs {
            if named == wanted {
                break;
            }
            let count = (run.hi - run.lo).min(wanted - named);
            out.push(AppliedRun {
                hi: run.lo + count,
                ..*run
            });
            named += count;
        }
    }

    /// Takes up to `wanted` codes from the front whose sequence number is below
    /// `sequence_end` (use `u64::MAX` for any), appending them to `out`; returns how many.
    pub fn take(&mut self, wanted: u64, sequence_end: u64, out: &mut Vec<AppliedRun>) -> u64 {
        let mut taken = 0;
        while taken < wanted {
            let Some(front) = self.runs.front_mut() else { break };
            if front.sequence >= sequence_end {
                break;
            }
            let count = (front.hi - front.lo)
                .min(wanted - taken)
                .min(sequence_end - front.sequence);
            out.push(AppliedRun {
                product: front.product,
                lo: front.lo,
                hi: front.lo + count,
                sequence: front.sequence,
            });
            front.lo += count;
            front.sequence += count;
            taken += count;
            if front.lo == front.hi {
                self.runs.pop_front();
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_takes_from_the_front_and_drops_stale_emissions() {
        // Pushes three emissions, drops the stale first one, takes across the other two.
        let mut stock = Stock::default();
        let same_day = |a: Ts, b: Ts| a == b;
        stock.push(0, 10, Ts(1), same_day);
        stock.push(10, 20, Ts(2), same_day);
        stock.push(20, 30, Ts(2), same_day);
        assert_eq!(stock.drop_stale(Ts(1)), 10);
        let mut out = Vec::new();
        assert_eq!(stock.take(15, &mut out), 15);
        assert_eq!(
            out,
            vec![Segment {
                lo: 10,
                hi: 25,
                emitted: Ts(2)
            }]
        );
        assert_eq!(stock.len(), 5);
    }

    #[test]
    fn applied_respects_the_paid_prefix() {
        // Applies two runs, takes paid codes only up to sequence 7.
        let mut applied = Applied::default();
        applied.push(0, 100, 105, 0);
        applied.push(1, 50, 60, 5);
        let mut out = Vec::new();
        assert_eq!(applied.take(100, 7, &mut out), 7);
        assert_eq!(
            out[1],
            AppliedRun {
                product: 1,
                lo: 50,
                hi: 52,
                sequence: 5
            }
        );
        assert_eq!(applied.front().unwrap().sequence, 7);
        assert_eq!(applied.len(), 8);
    }
}
