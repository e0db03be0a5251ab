//! Decoding tests on byte fixtures: messages captured from a real PostgreSQL
//! server (see `../fixtures/README.md`) and hand-built ones for what a
//! PostgreSQL 15 server cannot send or for malformed input.

mod captured_basics;
mod captured_streaming;
mod captured_twophase;
mod decoder_state;
mod fixtures;
mod hand_built;
mod malformed;
mod no_panic;
mod wire;
