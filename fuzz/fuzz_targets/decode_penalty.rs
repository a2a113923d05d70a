//! `Record::decode` (penalty and onion records) and `PenaltyKit::decode` (the watchtower blob) on arbitrary bytes; a
//! decoded value must survive its own encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::lightning::penalty::PenaltyKit;
use paychan::lightning::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::decode(data) {
        let again = Record::decode(&r.encode()).expect("own record encoding decodes");
        assert_eq!(again, r, "record round trip");
    }
    if let Ok(k) = PenaltyKit::decode(data) {
        let again = PenaltyKit::decode(&k.encode()).expect("own kit encoding decodes");
        assert!(again == k, "kit round trip");
    }
});
