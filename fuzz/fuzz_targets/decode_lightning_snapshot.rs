//! `lightning::Channel::restore_with_records` on arbitrary bytes, with onion records for the
//! first HTLC ids of both sides; a restored channel must restore again from its own snapshot and
//! its own onions to the same state, and its read-only accessors must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::driving::RestoreCheck;
use paychan::lightning::{Channel, OnionPacket, OnionRecord, Side};

fuzz_target!(|data: &[u8]| {
    let records: Vec<Vec<u8>> = [Side::Holder, Side::Counterparty]
        .into_iter()
        .flat_map(|offerer| (0..8).map(move |id| OnionRecord { offerer, id, onion: OnionPacket::zeroed() }.encode()))
        .collect();
    if let Ok(c) = Channel::restore_with_records(data, &records, RestoreCheck::default()) {
        // Its own onions (a version-1 snapshot carries them inline, not as the records above).
        let own: Vec<Vec<u8>> = c
            .htlcs()
            .iter()
            .filter_map(|h| Some(OnionRecord { offerer: h.offerer, id: h.id, onion: h.onion.clone()? }.encode()))
            .collect();
        let snap = c.snapshot();
        let again = Channel::restore_with_records(&snap, &own, RestoreCheck::default()).expect("own snapshot restores");
        assert_eq!(again.snapshot(), snap, "snapshot is stable");
        assert!(again.htlcs() == c.htlcs(), "onions attached alike");
        let _ = (c.balances(Side::Holder), c.balances(Side::Counterparty), c.phase(), c.htlcs().len());
        let _ = (c.available_to_send(), c.feerate(), c.has_unsigned_changes(), c.counterparty_commitment());
        let _ = records.iter().map(|r| c.keeps_record(r)).count();
    }
});
