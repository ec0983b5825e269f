//! markledger's benchmarks. Today: `benches/run_e2e.sh`, the end-to-end file-run benchmark
//! behind BENCHMARKS.md. The criterion benches of the hot parts (decoding, code
//! transitions, FIFO settlement, aggregates) belong to issue 6 and are not written yet.
