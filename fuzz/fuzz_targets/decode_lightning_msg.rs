//! `lightning::Msg::decode` on arbitrary bytes; a decoded message must survive its own encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::lightning::Msg;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Msg::decode(data) {
        let again = Msg::decode(&m.encode()).expect("own encoding decodes");
        assert_eq!(again, m, "decode(encode(m)) == m");
    }
});
