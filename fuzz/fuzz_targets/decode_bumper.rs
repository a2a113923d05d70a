//! `Bumper::decode` on arbitrary bytes: never panics; a decoded bumper encodes to bytes that
//! decode to the same bumper.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::core::feebump::Bumper;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bumper::decode(data) {
        let bytes = b.encode();
        let again = Bumper::decode(&bytes).expect("own encoding decodes");
        assert_eq!(again, b, "bumper encoding is stable");
        let _ = b.pending().count();
    }
});
