//! Random single-byte mutations of every message kind, fed to both sides.

use super::*;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Feeds `msg` to `payee`. On refusal its state must be unchanged; an acceptance that changes
/// the state must hand out that state as its update (and it must restore); one without an update
/// must change nothing. Returns whether the state changed.
fn fuzz_payee(payee: &mut Payee, msg: &Msg, signer: &InMemorySigner, tip: ChainTip) -> bool {
    let before = payee.snapshot();
    let Ok(fx) = payee.handle_message(msg.clone(), signer, tip) else {
        assert_eq!(payee.snapshot(), before, "a refused {msg:?} changed the payee");
        return false;
    };
    let after = payee.snapshot();
    let Some(update) = fx.update else {
        assert_eq!(after, before, "{msg:?} changed the payee without an update to persist");
        return false;
    };
    assert_eq!(update.snapshot.as_ref(), Some(&after));
    let restored = Payee::restore(&after, RestoreCheck::default()).expect("own snapshot restores");
    assert_eq!(restored.snapshot(), after);
    if payee.state().is_some() && payee.template().is_some() {
        payee.closing_tx(signer).expect("an accepted payment can close");
    }
    true
}

fn fuzz_payer(payer: &mut Payer, msg: &Msg, signer: &InMemorySigner, tip: ChainTip) -> bool {
    let before = payer.snapshot();
    let Ok(fx) = payer.handle_message(msg.clone(), signer, tip) else {
        assert_eq!(payer.snapshot(), before, "a refused {msg:?} changed the payer");
        return false;
    };
    let after = payer.snapshot();
    let Some(update) = fx.update else {
        assert_eq!(after, before, "{msg:?} changed the payer without an update to persist");
        return false;
    };
    assert_eq!(update.snapshot.as_ref(), Some(&after));
    let restored = Payer::restore(&after, RestoreCheck::default()).expect("own snapshot restores");
    assert_eq!(restored.snapshot(), after);
    true
}

/// Real messages of every kind, and sides waiting for each of them.
struct Fixtures {
    samples: Vec<(&'static str, Msg)>,
    payees: Vec<Payee>,
    payers: Vec<Payer>,
}

/// An open channel with two live HTLCs and an unacknowledged payment in flight: the payee before
/// that payment, the payer after it, and the channel messages of that moment.
fn open_fixture(variant: Variant) -> (Payee, Payer, [Msg; 6]) {
    let tip = ChainTip::at(START);
    let mut open = Setup::open(variant);
    let h = open.tip.height.0;
    open.add_htlc(2_000, preimage(1), h + 50);
    open.add_htlc(3_000, preimage(2), h + 60);
    let payee = open.payee.clone();
    let fx = open.payer.pay(Amount::from_sat(1_000), &open.payer_signer).unwrap();
    let payment = fx.send[0].clone();
    let ack = open.payee.handle_message(payment.clone(), &open.payee_signer, tip).unwrap().send[0].clone();
    let fulfill = open.payee.fulfill_htlc(0, preimage(1), &open.payee_signer).unwrap().send[0].clone();
    let fail = open.payee.fail_htlc(1).unwrap().send[0].clone();
    let closed = open.payee.clone().close(&open.payee_signer).unwrap().send[0].clone();
    let close_request = open.payer.request_close().unwrap().send[0].clone();
    (payee, open.payer, [payment, ack, fulfill, fail, close_request, closed])
}

fn fixtures() -> Fixtures {
    let tip = ChainTip::at(START);
    let cltv = Setup::before_open(Variant::Cltv);
    let presigned_funded = Setup::funded(Variant::PresignedRefund);
    let presigned = Setup::before_open(Variant::PresignedRefund);
    let (cltv_payee, cltv_payer, [payment, ack, fulfill, fail, close_request, closed]) = open_fixture(Variant::Cltv);
    let (presigned_payee, presigned_payer, [presigned_payment, ..]) = open_fixture(Variant::PresignedRefund);
    let f = Fixtures {
        samples: vec![
            ("offer", Msg::Offer(cltv.offer.clone())),
            ("refund_request", Msg::RefundRequest(presigned_funded.refund_request.clone().unwrap())),
            ("refund_signed", Msg::RefundSigned(presigned.refund_signed.clone().unwrap())),
            ("open_cltv", Msg::Open(cltv.open.clone().unwrap())),
            ("open_presigned", Msg::Open(presigned.open.clone().unwrap())),
            ("payment_cltv", payment),
            ("payment_presigned", presigned_payment),
            ("ack", ack),
            ("fulfill", fulfill),
            ("fail", fail),
            ("close_request", close_request),
            ("closed", closed),
        ],
        payees: vec![
            cltv.payee.clone(),
            presigned_funded.payee.clone(),
            presigned.payee.clone(),
            cltv_payee,
            presigned_payee,
        ],
        payers: vec![presigned_funded.payer.clone(), cltv_payer, presigned_payer],
    };
    // Unmutated, every message but Offer (taken by `Payer::new`) and Closed (informational) is
    // accepted by a side waiting for it.
    for (name, m) in &f.samples {
        let changed = f.payees.iter().filter(|p| fuzz_payee(&mut (*p).clone(), m, &signer(2), tip)).count()
            + f.payers.iter().filter(|p| fuzz_payer(&mut (*p).clone(), m, &signer(1), tip)).count();
        assert_eq!(changed > 0, !matches!(m, Msg::Offer(_) | Msg::Closed { .. }), "{name}");
    }
    f
}

/// ~2,000 random single-byte changes of each named sample, fed to every waiting side.
fn fuzz(names: &[&str], seed: u64) {
    const MUTATIONS: usize = 2_000;
    let tip = ChainTip::at(START);
    let (payer_signer, payee_signer) = (signer(1), signer(2));
    let f = fixtures();
    let (mut payees, mut payers) = (f.payees.clone(), f.payers.clone());
    let mut rng = XorShift(seed);
    for (name, m) in f.samples.iter().filter(|(n, _)| names.contains(n)) {
        let bytes = m.encode();
        let (mut decoded, mut accepted) = (0, 0);
        for _ in 0..MUTATIONS {
            let mut b = bytes.clone();
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] ^= (rng.next() % 255 + 1) as u8;
            let Ok(mutated) = Msg::decode(&b) else { continue };
            decoded += 1;
            // Whatever decodes re-encodes to the same bytes (no malleable encodings).
            assert_eq!(mutated.encode(), b, "{name}: byte {i} decodes but re-encodes differently");
            if let Msg::Offer(o) = &mutated {
                if let Ok(p) = Payer::new(o.clone(), payer_config(), &payer_signer, tip) {
                    let _ = p.funding_output();
                }
            }
            for (p, base) in payees.iter_mut().zip(&f.payees) {
                if fuzz_payee(p, &mutated, &payee_signer, tip) {
                    accepted += 1;
                    *p = base.clone();
                }
            }
            for (p, base) in payers.iter_mut().zip(&f.payers) {
                if fuzz_payer(p, &mutated, &payer_signer, tip) {
                    accepted += 1;
                    *p = base.clone();
                }
            }
        }
        // (A two-byte CloseRequest has only its kind and version to mutate.)
        assert!(decoded > 0 || bytes.len() == 2, "{name}: some mutations decode");
        eprintln!("{name}: {decoded} of {MUTATIONS} mutations decode, {accepted} accepted");
    }
}

#[test]
fn mutated_setup_messages_never_panic_nor_change_state_on_refusal() {
    fuzz(&["offer", "refund_request", "refund_signed"], 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn mutated_open_messages_never_panic_nor_change_state_on_refusal() {
    fuzz(&["open_cltv", "open_presigned"], 0xd1b5_4a32_d192_ed03);
}

#[test]
fn mutated_channel_messages_never_panic_nor_change_state_on_refusal() {
    fuzz(
        &["payment_cltv", "payment_presigned", "ack", "fulfill", "fail", "close_request", "closed"],
        0x8cb9_2ba7_2f3d_8dd7,
    );
}

#[test]
fn mutated_snapshots_never_panic() {
    let mut s = Setup::open(Variant::PresignedRefund);
    let h = s.tip.height.0;
    s.add_htlc(2_000, preimage(1), h + 50);
    let _ = s.payee.fulfill_htlc(0, preimage(1), &s.payee_signer).unwrap();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for bytes in [s.payer.snapshot(), s.payee.snapshot()] {
        for _ in 0..2_000 {
            let mut b = bytes.clone();
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] ^= (rng.next() % 255 + 1) as u8;
            if let Ok(p) = Payer::restore(&b, RestoreCheck::default()) {
                let _ = (p.snapshot(), p.available(), p.next_deadline(), p.refund_tx(&s.payer_signer));
            }
            if let Ok(p) = Payee::restore(&b, RestoreCheck::default()) {
                let _ = (p.snapshot(), p.received(), p.next_deadline(), p.closing_tx(&s.payee_signer));
            }
        }
    }
}
