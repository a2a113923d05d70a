//! The duplex state machine driven by fuzz-chosen actions (see `paychan_fuzz::duplex_state`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| paychan_fuzz::duplex_state::run(data));
