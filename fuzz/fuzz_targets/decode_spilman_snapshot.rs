//! `Payer::restore` and `Payee::restore` on arbitrary bytes; a restored value must restore again
//! from its own snapshot to the same state (the equality of these types is snapshot equality).
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::driving::RestoreCheck;
use paychan::spilman::{Payee, Payer};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Payer::restore(data, RestoreCheck::default()) {
        let snap = p.snapshot();
        let again = Payer::restore(&snap, RestoreCheck::default()).expect("own payer snapshot restores");
        assert_eq!(again.snapshot(), snap, "payer snapshot is stable");
        let _ = (p.next_deadline(), p.available(), p.channel_id(), p.refund_height());
    }
    if let Ok(p) = Payee::restore(data, RestoreCheck::default()) {
        let snap = p.snapshot();
        let again = Payee::restore(&snap, RestoreCheck::default()).expect("own payee snapshot restores");
        assert_eq!(again.snapshot(), snap, "payee snapshot is stable");
        let _ = (p.next_deadline(), p.received(), p.channel_id(), p.close_by());
    }
});
