//! Payments that do not fit.

use super::*;

#[test]
fn payment_with_lower_amount_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(5_000);
        let mut state = s.state();
        state.to_payee -= Amount::from_sat(1);
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::AmountDecreased);
    }
}

#[test]
fn payment_without_progress_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(5_000);
        let tip = s.tip.height.0;
        s.add_htlc(2_000, preimage(1), tip + 50);
        let p = s.signed(s.next_number(), s.state());
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::NoProgress);
    }
}

#[test]
fn payment_above_capacity_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        for extra in [1, 1_000, 21_000_000 * 100_000_000 - CAPACITY.to_sat()] {
            let p = s.unbuildable(s.next_number(), CAPACITY + Amount::from_sat(extra), vec![]);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::ExceedsCapacity));
        }
        // An HTLC pushing the total over capacity.
        let tip = s.tip.height.0;
        let h = htlc(0, CAPACITY.to_sat() - FIRST.to_sat() + 1, preimage(1).hash(), tip + 50);
        let p = s.unbuildable(s.next_number(), FIRST, vec![h]);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::ExceedsCapacity));
        // The whole capacity is fine (no change output).
        payee_accepts(&s, Msg::Payment(s.signed(s.next_number(), PaymentState { to_payee: CAPACITY, htlcs: vec![] })));
    }
}

#[test]
fn payment_with_sub_dust_change_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        for change in [1, 2, DUST.to_sat() / 2, DUST.to_sat() - 1] {
            let p = s.unbuildable(s.next_number(), CAPACITY - Amount::from_sat(change), vec![]);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::ChangeBelowDust));
        }
        // Change exactly at the dust limit is fine.
        payee_accepts(
            &s,
            Msg::Payment(s.signed(s.next_number(), PaymentState { to_payee: CAPACITY - DUST, htlcs: vec![] })),
        );
    }
}

#[test]
fn htlc_below_dust_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        for sats in [0, 1, DUST.to_sat() - 1] {
            let h = htlc(0, sats, preimage(1).hash(), tip + 50);
            let p = s.unbuildable(s.next_number(), FIRST, vec![h]);
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Payment(PaymentError::HtlcBelowDust));
        }
    }
}

#[test]
fn first_payment_too_small_or_below_dust_is_refused() {
    for v in VARIANTS {
        // The payee's minimum is below fee + dust, so the dust check is what stops the payment.
        let mut config = payee_config(v);
        config.min_first_payment = Amount::from_sat(600);
        let mut s = Setup::before_open_with(config, payer_config());
        let template = s.template();
        let mut open = s.open.clone().unwrap();
        for sats in [600, 700, FEE.to_sat() + DUST.to_sat() - 1] {
            open.first_payment.to_payee = Amount::from_sat(sats);
            assert!(template.build(&PaymentState { to_payee: open.first_payment.to_payee, htlcs: vec![] }).is_err());
            payee_refuses(&mut s, Msg::Open(open.clone()), Misbehaviour::Payment(PaymentError::PayeeBelowDust));
        }
        open.first_payment.to_payee = Amount::from_sat(599);
        payee_refuses(&mut s, Msg::Open(open.clone()), Misbehaviour::FirstPaymentTooSmall);
        open.first_payment.to_payee = Amount::ZERO;
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::FirstPaymentTooSmall);

        // With the default terms, below the minimum is refused even though it would be payable.
        let mut s = Setup::before_open(v);
        let mut open = s.open.clone().unwrap();
        let state = PaymentState { to_payee: FIRST - Amount::from_sat(1), htlcs: vec![] };
        open.first_payment = s.signed(1, state);
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::FirstPaymentTooSmall);
    }
}
