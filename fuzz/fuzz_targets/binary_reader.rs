//! Fuzz target: the binary format (`BinaryReader` over arbitrary bytes, both versions, one
//! frame payload, and damage to a stream of good frames). Invariants in
//! `markledger_fuzz::binary_reader`: never a panic; the buffer never over one frame; every
//! byte consumed; refusals well-formed; events round-trip; damage never makes an event that
//! was not written nor loses an undamaged frame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    markledger_fuzz::binary_reader(data);
});
