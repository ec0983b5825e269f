//! Fuzz target: the TOML stream configuration (`StreamFile` in pipeline/src/stream.rs),
//! parse only. Invariant: any bytes parse or are refused, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    markledger_fuzz::stream_config(data);
});
