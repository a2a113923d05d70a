//! The spilman state machine driven by fuzz-chosen actions (see `paychan_fuzz::spilman_state`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| paychan_fuzz::spilman_state::run(data));
