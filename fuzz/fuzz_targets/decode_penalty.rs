//! `PenaltyRecord::decode` and `PenaltyKit::decode` (the watchtower blob) on arbitrary bytes; a
//! decoded value must survive its own encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::lightning::penalty::PenaltyKit;
use paychan::lightning::PenaltyRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = PenaltyRecord::decode(data) {
        let again = PenaltyRecord::decode(&r.encode()).expect("own record encoding decodes");
        assert_eq!(again, r, "record round trip");
    }
    if let Ok(k) = PenaltyKit::decode(data) {
        let again = PenaltyKit::decode(&k.encode()).expect("own kit encoding decodes");
        assert!(again == k, "kit round trip");
    }
});
