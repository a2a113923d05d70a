//! HTLCs.

use super::*;

#[test]
fn htlc_id_reuse_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let a = s.add_htlc(2_000, preimage(1), tip + 50);
        let fx = s.payee.fail_htlc(a).unwrap();
        s.deliver_from_payee(fx);
        assert!(s.state().htlcs.is_empty(), "the failed HTLC was removed");
        // A new HTLC reusing the removed id.
        let mut state = s.state();
        state.htlcs.push(htlc(a, 3_000, preimage(2).hash(), tip + 60));
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcIdReused);

        // Two new HTLCs with the same id, or out of order.
        for ids in [[5, 5], [7, 6]] {
            let mut state = s.state();
            state.htlcs.push(htlc(ids[0], 3_000, preimage(2).hash(), tip + 60));
            state.htlcs.push(htlc(ids[1], 4_000, preimage(3).hash(), tip + 60));
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcIdReused);
        }

        // A live HTLC whose terms change under the same id.
        let b = s.add_htlc(2_000, preimage(4), tip + 50);
        let live = s.state().htlcs[0];
        assert_eq!(live.id, b);
        for changed in [
            PaymentHtlc { amount: live.amount + Amount::from_sat(1), ..live },
            PaymentHtlc { amount: live.amount - Amount::from_sat(1), ..live },
            PaymentHtlc { payment_hash: preimage(5).hash(), ..live },
            PaymentHtlc { expiry: BlockHeight(live.expiry.0 + 1), ..live },
            PaymentHtlc { expiry: BlockHeight(live.expiry.0 - 1), ..live },
        ] {
            let mut state = s.state();
            state.htlcs = vec![changed];
            state.to_payee += Amount::from_sat(10);
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcRemovedUnfairly);
        }
    }
}

#[test]
fn htlc_expiry_outside_window_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let close_by = s.payee.close_by().0;
        for expiry in [0, tip, tip + HTLC_MIN_BLOCKS - 1, close_by + 1, EXPIRY, EXPIRY + 100] {
            let mut state = s.state();
            state.htlcs.push(htlc(0, 2_000, preimage(1).hash(), expiry));
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcExpiry);
        }
        for expiry in [tip + HTLC_MIN_BLOCKS, close_by] {
            let mut state = s.state();
            state.htlcs.push(htlc(0, 2_000, preimage(1).hash(), expiry));
            payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), state)));
        }
    }
}

#[test]
fn unfair_htlc_removal_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let expiry = tip + 50;
        s.add_htlc(2_000, preimage(1), expiry);
        let b = s.add_htlc(3_000, preimage(2), expiry);
        // Live, not expired, not failed: removing it (even while paying more) is unfair.
        for (keep, extra) in [(vec![], 0), (vec![0], 0), (vec![], 4_999), (vec![1], 10_000)] {
            let mut state = s.state();
            state.htlcs = keep.iter().map(|i| state.htlcs[*i]).collect();
            state.to_payee += Amount::from_sat(extra);
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcRemovedUnfairly);
        }
        // One block before expiry: still unfair. From expiry on, the payer may take it back.
        let mut state = s.state();
        state.htlcs.retain(|h| h.id != b);
        let p = s.signed(s.next_number(), state);
        payee_refuses_at(&mut s, Msg::Payment(p.clone()), ChainTip::at(expiry - 1), Misbehaviour::HtlcRemovedUnfairly);
        let mut payee = s.payee.clone();
        let _ = payee.handle_message(Msg::Payment(p.clone()), &s.payee_signer, ChainTip::at(expiry)).expect("expired");
        // Or once the payee failed it.
        let fx = s.payee.fail_htlc(b).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::Fail { id }] if *id == b));
        payee_accepts(&s, Msg::Payment(p));
    }
}

#[test]
fn fulfilled_htlc_must_be_folded() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let a = s.add_htlc(2_000, preimage(1), tip + 50);
        let b = s.add_htlc(3_000, preimage(2), tip + 50);
        // The payee reveals both preimages; the payer does not hear of it (hostile or offline).
        let fx = s.payee.fulfill_htlc(a, preimage(1), &s.payee_signer).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::Fulfill { .. }]));
        let _ = s.payee.fulfill_htlc(b, preimage(2), &s.payee_signer).unwrap();
        let base = s.state();
        let folded_a = PaymentState { to_payee: base.to_payee + Amount::from_sat(2_000), htlcs: vec![base.htlcs[1]] };
        let cases = [
            // Dropped without folding.
            PaymentState { to_payee: base.to_payee, htlcs: vec![base.htlcs[1]] },
            // Folded one satoshi short.
            PaymentState { to_payee: folded_a.to_payee - Amount::from_sat(1), htlcs: vec![base.htlcs[1]] },
            // Both dropped, only one folded.
            PaymentState { to_payee: base.to_payee + Amount::from_sat(3_000), htlcs: vec![] },
            PaymentState { to_payee: base.to_payee + Amount::from_sat(4_999), htlcs: vec![] },
        ];
        for state in cases {
            let p = s.signed(s.next_number(), state);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::HtlcRemovedUnfairly);
        }
        // Even after expiry, a revealed preimage must be paid for.
        let p = s.signed(s.next_number(), PaymentState { to_payee: base.to_payee, htlcs: vec![base.htlcs[1]] });
        payee_refuses_at(&mut s, Msg::Payment(p), ChainTip::at(tip + 60), Misbehaviour::HtlcRemovedUnfairly);
        payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), folded_a)));
        let all = PaymentState { to_payee: base.to_payee + Amount::from_sat(5_000), htlcs: vec![] };
        payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), all)));
    }
}
