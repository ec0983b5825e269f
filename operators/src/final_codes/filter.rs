//! The one in-RAM structure every lookup probes first: a fingerprint table that answers
//! "which epochs may hold this key" in two cache lines, whatever the number of run files.
//!
//! A bucketized cuckoo filter (Fan et al., "Cuckoo Filter: Practically Better Than Bloom",
//! 2014) whose slots carry, beside a 16-bit fingerprint, the 8-bit *tag* of the epoch the
//! key's record lives in (docs/FINAL_CODES.md, "The filter"). A bucket is one 64-byte cache
//! line of 21 slots (42 bytes of fingerprints, 21 of tags, one spare), so 3.05 bytes a slot,
//! 3.2 bytes a key at 95 % load. A key may sit in two buckets: its primary one (from the
//! fingerprint's high 64 bits) and the alternate `alt(b) = h(fp) − b mod n`, an involution,
//! so a displaced fingerprint finds its other bucket without its key and the bucket count
//! need not be a power of two.
//!
//! Deletion is by epoch, lazily: when retention drops an epoch its tag is marked dead; dead
//! slots count as empty for inserts and are ignored by lookups, and [`EpochFilter::sweep`]
//! clears them a bounded number of buckets at a time. A tag is reused (256 epochs later)
//! only once no slot carries it ([`EpochFilter::stale`]).
//!
//! False positives: a lookup compares 42 fingerprints, so a key absent from the store
//! matches with probability about 42 / 2¹⁶ ≈ 6.4 × 10⁻⁴; only then does the store look at
//! the memtable and the disk.

use crate::flow::CodeKey;

/// Slots per bucket: as many 3-byte slots as fit in a cache line.
const SLOTS: usize = 21;
/// Displacements an insert tries before it reports the table full.
const KICKS_MAX: usize = 500;
/// Distinct epoch tags.
pub(crate) const TAGS: usize = 256;

/// One cache line of slots. A slot is empty when its fingerprint is 0 (fingerprints are
/// never 0).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Bucket {
    fingerprints: [u16; SLOTS],
    tags: [u8; SLOTS],
    _spare: u8,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

const EMPTY: Bucket = Bucket {
    fingerprints: [0; SLOTS],
    tags: [0; SLOTS],
    _spare: 0,
};

/// The epoch tags a key may be under (usually none or one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Candidates {
    tags: [u8; 8],
    len: u8,
    /// More than 8 distinct tags matched (never seen in practice): every live epoch.
    pub every: bool,
}

impl Candidates {
    fn add(&mut self, tag: u8) {
        if self.tags[..self.len as usize].contains(&tag) {
            return;
        }
        if self.len as usize == self.tags.len() {
            self.every = true;
        } else {
            self.tags[self.len as usize] = tag;
            self.len += 1;
        }
    }

    /// No epoch may hold the key.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.every
    }

    /// The tags found.
    pub fn tags(&self) -> &[u8] {
        &self.tags[..self.len as usize]
    }
}

/// The fingerprint table.
pub(crate) struct EpochFilter {
    buckets: Vec<Bucket>,
    live: [bool; TAGS],
    /// Slots holding each tag, live or dead.
    entries: [u64; TAGS],
    /// Slots holding a live tag (the sum of `entries` over live tags, kept on every change:
    /// inserts read it).
    live_total: u64,
    /// Where the next [`EpochFilter::sweep`] starts.
    sweep_at: usize,
    /// The displacement chooser's state (xorshift: deterministic, so runs are repeatable).
    random: u64,
}

/// The fingerprint and primary bucket of a key in a table of `buckets` buckets. The high
/// 64 bits choose the bucket; bits 40..56 are the fingerprint. Never the low bits alone:
/// they choose the worker ([`crate::flow::CodesIn::route`]), so on one worker they share a
/// residue.
fn locate(key: CodeKey, buckets: usize) -> (u16, usize) {
    let high = (key >> 64) as u64;
    let fingerprint = ((key >> 40) as u16).max(1);
    (fingerprint, reduce(high, buckets))
}

/// `hash` mapped onto `0..n` without a division (Lemire's multiply-shift).
fn reduce(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// The other bucket of `fingerprint` in `bucket`: `h(fp) − bucket mod n`.
fn alternate(bucket: usize, fingerprint: u16, buckets: usize) -> usize {
    // A 64-bit mix of the fingerprint (splitmix64's finalizer).
    let mut x = u64::from(fingerprint).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let offset = reduce(x, buckets);
    (offset + buckets - bucket) % buckets
}

impl EpochFilter {
    /// A table with room for `keys` keys at 95 % load (at least one bucket).
    pub fn with_capacity(keys: u64) -> EpochFilter {
        let buckets = usize::try_from(keys.div_ceil(20)).expect("fits in memory").max(1);
        EpochFilter {
            buckets: vec![EMPTY; buckets],
            live: [false; TAGS],
            entries: [0; TAGS],
            live_total: 0,
            sweep_at: 0,
            random: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Slots in the table.
    pub fn slots(&self) -> u64 {
        (self.buckets.len() * SLOTS) as u64
    }

    /// Slots holding a live tag.
    pub fn live_entries(&self) -> u64 {
        (0..TAGS)
            .filter(|tag| self.live[*tag])
            .map(|tag| self.entries[tag])
            .sum()
    }

    /// Slots holding a dead tag, not swept yet.
    pub fn dead_entries(&self) -> u64 {
        (0..TAGS)
            .filter(|tag| !self.live[*tag])
            .map(|tag| self.entries[tag])
            .sum()
    }

    /// Heap bytes of the table.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// Marks a tag live (its epoch holds records) or dead (retention dropped its epoch).
    pub fn set_live(&mut self, tag: u8, live: bool) {
        let tag = tag as usize;
        match (self.live[tag], live) {
            (false, true) => self.live_total += self.entries[tag],
            (true, false) => self.live_total -= self.entries[tag],
            _ => {}
        }
        self.live[tag] = live;
    }

    /// Whether slots still carry `tag` (then it cannot be given to a new epoch yet).
    pub fn stale(&self, tag: u8) -> bool {
        !self.live[tag as usize] && self.entries[tag as usize] > 0
    }

    /// The live tags whose slots match `key`'s fingerprint in its two buckets.
    #[inline]
    pub fn candidates(&self, key: CodeKey) -> Candidates {
        let n = self.buckets.len();
        let (fingerprint, first) = locate(key, n);
        let second = alternate(first, fingerprint, n);
        let mut found = Candidates::default();
        for index in [first, second] {
            let bucket = &self.buckets[index];
            // Compare all 21 fingerprints first (a match is rare), then read tags.
            if bucket.fingerprints.contains(&fingerprint) {
                for slot in 0..SLOTS {
                    let tag = bucket.tags[slot];
                    if bucket.fingerprints[slot] == fingerprint && self.live[tag as usize] {
                        found.add(tag);
                    }
                }
            }
        }
        found
    }

    /// A free slot of `bucket`: empty, or holding a dead tag.
    fn free_slot(&self, bucket: usize) -> Option<usize> {
        let bucket = &self.buckets[bucket];
        (0..SLOTS).find(|slot| bucket.fingerprints[*slot] == 0 || !self.live[bucket.tags[*slot] as usize])
    }

    fn put(&mut self, bucket: usize, slot: usize, fingerprint: u16, tag: u8) {
        let old = &mut self.buckets[bucket];
        if old.fingerprints[slot] != 0 {
            // Only a dead slot is ever overwritten.
            self.entries[old.tags[slot] as usize] -= 1;
        }
        old.fingerprints[slot] = fingerprint;
        old.tags[slot] = tag;
        self.entries[tag as usize] += 1;
        self.live_total += 1;
    }

    fn next_random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    /// Records that `key` may be in epoch `tag` (a live tag). Returns false, with the table
    /// unchanged, when no slot could be freed within [`KICKS_MAX`] displacements: the
    /// caller then rebuilds a larger table.
    pub fn insert(&mut self, key: CodeKey, tag: u8) -> bool {
        debug_assert!(self.live[tag as usize], "insert under a live tag");
        let n = self.buckets.len();
        let (fingerprint, first) = locate(key, n);
        let second = alternate(first, fingerprint, n);
        for index in [first, second] {
            let bucket = &self.buckets[index];
            if (0..SLOTS).any(|slot| bucket.fingerprints[slot] == fingerprint && bucket.tags[slot] == tag) {
                return true; // Already recorded (or a fingerprint twin: "may be" either way).
            }
        }
        for index in [first, second] {
            if let Some(slot) = self.free_slot(index) {
                self.put(index, slot, fingerprint, tag);
                return true;
            }
        }
        self.displace(first, fingerprint, tag)
    }

    /// Cuckoo displacement: evict a random slot, move it to its other bucket, and so on.
    /// Every move is logged so a failed chain is undone and nothing is lost.
    fn displace(&mut self, start: usize, fingerprint: u16, tag: u8) -> bool {
        let n = self.buckets.len();
        let mut moves: Vec<(usize, usize, u16, u8)> = Vec::new();
        let (mut bucket, mut carried) = (start, (fingerprint, tag));
        for _ in 0..KICKS_MAX {
            let slot = (self.next_random() % SLOTS as u64) as usize;
            let victim = (self.buckets[bucket].fingerprints[slot], self.buckets[bucket].tags[slot]);
            moves.push((bucket, slot, victim.0, victim.1));
            self.buckets[bucket].fingerprints[slot] = carried.0;
            self.buckets[bucket].tags[slot] = carried.1;
            carried = victim;
            bucket = alternate(bucket, carried.0, n);
            if let Some(free) = self.free_slot(bucket) {
                // Every live slot moved stays live: only the new key adds an entry, and the
                // freed slot may have held a dead one.
                let displaced = &mut self.buckets[bucket];
                if displaced.fingerprints[free] != 0 {
                    self.entries[displaced.tags[free] as usize] -= 1;
                }
                displaced.fingerprints[free] = carried.0;
                displaced.tags[free] = carried.1;
                self.entries[tag as usize] += 1;
                self.live_total += 1;
                return true;
            }
        }
        for (bucket, slot, fingerprint, tag) in moves.into_iter().rev() {
            self.buckets[bucket].fingerprints[slot] = fingerprint;
            self.buckets[bucket].tags[slot] = tag;
        }
        false
    }

    /// Clears dead slots in the next `buckets` buckets (wrapping); returns the slots cleared.
    /// Bounded work: a caller spreads a full pass over many calls.
    pub fn sweep(&mut self, buckets: usize) -> u64 {
        let n = self.buckets.len();
        let mut cleared = 0;
        for _ in 0..buckets.min(n) {
            let index = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % n;
            let bucket = &mut self.buckets[index];
            for slot in 0..SLOTS {
                let tag = bucket.tags[slot] as usize;
                if bucket.fingerprints[slot] != 0 && !self.live[tag] {
                    bucket.fingerprints[slot] = 0;
                    bucket.tags[slot] = 0;
                    self.entries[tag] -= 1;
                    cleared += 1;
                }
            }
        }
        cleared
    }

    /// Clears every dead slot (a full pass).
    pub fn sweep_all(&mut self) -> u64 {
        self.sweep(self.buckets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> CodeKey {
        xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
    }

    #[test]
    fn inserted_keys_are_found_and_absent_ones_rarely_are() {
        // Fills a table to 93 % with 100k keys under two tags, then checks every key is found
        // under its tag and that 100k absent keys match at about the designed rate (< 0.2 %).
        let mut filter = EpochFilter::with_capacity(100_000);
        filter.set_live(3, true);
        filter.set_live(200, true);
        let keys = filter.slots() * 93 / 100;
        for i in 0..keys {
            assert!(
                filter.insert(key(i), if i % 2 == 0 { 3 } else { 200 }),
                "room for key {i}"
            );
        }
        // A fingerprint twin under the same tag in the same bucket pair shares a slot.
        assert!(filter.live_entries() <= keys && filter.live_entries() > keys - keys / 1_000);
        for i in 0..keys {
            let found = filter.candidates(key(i));
            assert!(found.tags().contains(&if i % 2 == 0 { 3 } else { 200 }), "key {i}");
        }
        let false_positives = (0..100_000u64)
            .filter(|i| !filter.candidates(key(1 << 40 | i)).is_empty())
            .count();
        assert!(false_positives < 200, "{false_positives} false positives in 100k");
    }

    #[test]
    fn a_full_table_refuses_an_insert_without_losing_anything() {
        // Inserts into a one-bucket-pair table until it refuses, then checks every accepted
        // key is still found (the displacement chain was undone).
        let mut filter = EpochFilter::with_capacity(40);
        filter.set_live(1, true);
        let mut accepted = Vec::new();
        for i in 0..1_000u64 {
            if filter.insert(key(i), 1) {
                accepted.push(i);
            } else {
                break;
            }
        }
        assert!(accepted.len() < 1_000, "a table of {} slots filled up", filter.slots());
        assert_eq!(filter.live_entries(), accepted.len() as u64);
        for i in accepted {
            assert!(!filter.candidates(key(i)).is_empty(), "key {i} lost");
        }
    }

    #[test]
    fn a_dead_tag_is_invisible_reusable_and_swept() {
        // Kills a tag: its keys are no longer candidates, its slots take new keys, and a sweep
        // clears what is left so the tag can be given out again.
        let mut filter = EpochFilter::with_capacity(1_000);
        filter.set_live(7, true);
        filter.set_live(8, true);
        for i in 0..900 {
            assert!(filter.insert(key(i), 7));
        }
        filter.set_live(7, false);
        assert!(filter.stale(7));
        assert!((0..900).all(|i| filter.candidates(key(i)).is_empty()));
        for i in 1_000..1_900 {
            assert!(filter.insert(key(i), 8), "dead slots are free");
        }
        assert!(filter.dead_entries() < 900, "new keys took dead slots");
        assert!(filter.sweep_all() > 0);
        assert!(!filter.stale(7));
        assert_eq!(filter.dead_entries(), 0);
        assert!((1_000..1_900).all(|i| filter.candidates(key(i)).tags() == [8]));
    }
}
