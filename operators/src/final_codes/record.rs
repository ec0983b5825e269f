//! A final code's record, and its fixed-width form in run files (docs/FINAL_CODES.md,
//! "Run file format").
//!
//! On disk a record is [`RECORD_BYTES`] = 28 bytes, little-endian: the 16-byte fingerprint,
//! `final_at` in milliseconds (8 bytes), then one `u32` holding the account's index in the
//! run's own dictionary (low 24 bits) and the status (high 8 bits). The account is stored by
//! name in that dictionary, never by a worker's interned id: those ids change when state
//! moves between workers, names do not.

use crate::flow::CodeKey;
use crate::status::Status;
use crate::time::Ts;
use std::sync::Arc;

/// Bytes of one record in a run file.
pub const RECORD_BYTES: usize = 28;

/// Distinct accounts one run file can name (24 bits of the record; a country has thousands).
pub const ACCOUNTS_PER_RUN_MAX: usize = 1 << 24;

/// What the store keeps about a final code: who owned it, in which final status, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalRecord {
    /// The owner's account, by its stable name (shared: one allocation per account).
    pub account: Arc<str>,
    /// The status the code became final in.
    pub status: Status,
    /// When it became final; the record is forgotten at `final_at + retention`.
    pub final_at: Ts,
}

/// A record as a run file holds it: the account as an index into the run's dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    pub key: CodeKey,
    pub final_at: Ts,
    pub account: u32,
    pub status: Status,
}

/// The status's one-byte form: its position in lifecycle order ([`Status::ALL`]).
fn status_byte(status: Status) -> u8 {
    Status::ALL
        .iter()
        .position(|candidate| *candidate == status)
        .expect("every status is in Status::ALL") as u8
}

impl Packed {
    /// Writes the record's 28 bytes into `out`.
    pub fn encode(&self, out: &mut [u8]) {
        debug_assert!((self.account as usize) < ACCOUNTS_PER_RUN_MAX);
        out[..16].copy_from_slice(&self.key.to_le_bytes());
        out[16..24].copy_from_slice(&self.final_at.0.to_le_bytes());
        let tail = self.account | (u32::from(status_byte(self.status)) << 24);
        out[24..28].copy_from_slice(&tail.to_le_bytes());
    }

    /// The key of the record in `bytes` (its first 16 bytes).
    pub fn key_of(bytes: &[u8]) -> CodeKey {
        CodeKey::from_le_bytes(bytes[..16].try_into().expect("16 bytes"))
    }

    /// Reads a record; `None` when its status byte names no status (a corrupt record that
    /// still passed its block checksum: only a writer bug can make one).
    pub fn decode(bytes: &[u8]) -> Option<Packed> {
        let tail = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        let status = *Status::ALL.get((tail >> 24) as usize)?;
        Some(Packed {
            key: Packed::key_of(bytes),
            final_at: Ts(i64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"))),
            account: tail & 0x00ff_ffff,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_its_28_bytes() {
        // Encodes a record of every status with extreme fields and decodes each back equal.
        for status in Status::ALL {
            let packed = Packed {
                key: u128::MAX - 7,
                final_at: Ts(-5),
                account: (ACCOUNTS_PER_RUN_MAX - 1) as u32,
                status,
            };
            let mut bytes = [0u8; RECORD_BYTES];
            packed.encode(&mut bytes);
            assert_eq!(Packed::decode(&bytes), Some(packed));
            assert_eq!(Packed::key_of(&bytes), u128::MAX - 7);
        }
        let mut bad = [0u8; RECORD_BYTES];
        bad[27] = 200;
        assert_eq!(Packed::decode(&bad), None, "an unknown status byte is refused");
    }
}
