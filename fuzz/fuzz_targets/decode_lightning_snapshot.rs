//! `lightning::Channel::restore` on arbitrary bytes; a restored channel must restore again from
//! its own snapshot to the same state, and its read-only accessors must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::driving::RestoreCheck;
use paychan::lightning::{Channel, Side};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Channel::restore(data, RestoreCheck::default()) {
        let snap = c.snapshot();
        let again = Channel::restore(&snap, RestoreCheck::default()).expect("own snapshot restores");
        assert_eq!(again.snapshot(), snap, "snapshot is stable");
        let _ = (c.balances(Side::Holder), c.balances(Side::Counterparty), c.phase(), c.htlcs().len());
        let _ = (c.available_to_send(), c.feerate(), c.has_unsigned_changes(), c.counterparty_commitment());
    }
});
