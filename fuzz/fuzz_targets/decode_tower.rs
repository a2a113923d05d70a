//! The watchtower decoders on arbitrary bytes: `core::tower::Appointment::decode` (what a client
//! sends a blind tower), `Tower::decode` (a tower's state) and `duplex::tower::TowerPackage::decode`
//! (what a duplex tower holds). A decoded value must survive its own encoding; opening a blob
//! with any txid and showing a decoded tower a block must not panic. Second-stage appointments
//! (sealed under a peer's HTLC transaction) share the appointment encoding; the seeds include
//! some, and a tower answering a commitment and an HTLC transaction at once.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::Txid;
use paychan::core::tower::{Appointment, Tower};
use paychan::core::units::BlockHeight;
use paychan::duplex::tower::{DuplexTower, TowerPackage};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Appointment::decode(data) {
        let again = Appointment::decode(&a.encode()).expect("own appointment encoding decodes");
        assert_eq!(again, a, "appointment round trip");
        let mut txid = [0u8; 32];
        txid[..16].copy_from_slice(&a.locator.0);
        let _ = a.open(&Txid::from_byte_array(txid));
    }
    if let Ok(mut t) = Tower::decode(data) {
        let again = Tower::decode(&t.encode()).expect("own tower encoding decodes");
        assert_eq!(again, t, "tower round trip");
        let _ = t.block(&[]);
    }
    if let Ok(p) = TowerPackage::decode(data) {
        let bytes = p.encode();
        assert_eq!(TowerPackage::decode(&bytes), Ok(p.clone()), "package round trip");
        let mut tower = DuplexTower::new(&bytes).expect("a decoded package makes a tower");
        let _ = tower.block(BlockHeight(1_000), &p.txs);
    }
});
