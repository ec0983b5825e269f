//! markledger pipeline.
