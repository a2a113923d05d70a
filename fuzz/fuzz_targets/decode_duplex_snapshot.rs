//! `duplex::Channel::restore` on arbitrary bytes; a restored channel must restore again from its
//! own snapshot to the same state, and its read-only accessors must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::driving::{ChainTip, RestoreCheck};
use paychan::duplex::Channel;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Channel::restore(data, RestoreCheck::default()) {
        let snap = c.snapshot();
        let again = Channel::restore(&snap, RestoreCheck::default()).expect("own snapshot restores");
        assert_eq!(again.snapshot(), snap, "snapshot is stable");
        let _ = (c.balances(), c.available(), c.htlcs(), c.resets_left(), c.next_deadline());
        let _ = (c.funding_output(), c.current_branch(), c.close_schedule(), c.htlc_expiry_window(ChainTip::at(1_000)));
    }
});
