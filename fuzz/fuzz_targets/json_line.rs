//! Fuzz target: one JSON input line (`codec::json::decode_event`). Invariants in
//! `markledger_fuzz::json_line`: never a panic; an event or a MALFORMED/UNKNOWN_TYPE refusal
//! with a bounded raw and a detail for people; a decoded event re-encodes and decodes to
//! the same event in JSON and in binary.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    markledger_fuzz::json_line(data);
});
