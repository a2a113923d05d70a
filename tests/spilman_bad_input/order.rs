//! Replays, order and timing.

use super::*;

#[test]
fn replayed_or_backward_payment_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(1_000);
        s.pay(1_000);
        // The same message delivered twice.
        let last = s.payments.last().unwrap().clone();
        payee_refuses(&mut s, Msg::Payment(last.clone()), Misbehaviour::Replay);
        // Every older one too.
        for p in s.payments.clone() {
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Replay);
        }
        // A genuinely new, validly signed state whose number goes backwards or repeats.
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        for number in [0, 1, last.number - 1, last.number] {
            let p = s.signed(number, state.clone());
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Replay);
        }
        // Skipping numbers forward is allowed.
        payee_accepts(&s, Msg::Payment(s.signed(last.number + 10, state)));
    }
}

#[test]
fn payment_inside_close_margin_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let close_by = s.payee.close_by().0;
        assert_eq!(close_by, EXPIRY - CLOSE_MARGIN);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let p = s.signed(s.next_number(), state);
        for tip in [close_by, close_by + 1, EXPIRY, u32::MAX / 2] {
            payee_refuses_at(&mut s, Msg::Payment(p.clone()), ChainTip::at(tip), Misbehaviour::NotAcceptingPayments);
        }
        let mut payee = s.payee.clone();
        let _ = payee
            .handle_message(Msg::Payment(p), &s.payee_signer, ChainTip::at(close_by - 1))
            .expect("one block before");

        // An Open inside the margin is refused too.
        let mut s = Setup::before_open(v);
        let open = s.open.clone().unwrap();
        payee_refuses_at(&mut s, Msg::Open(open), ChainTip::at(close_by), Misbehaviour::NotAcceptingPayments);
    }
}

#[test]
fn payment_before_funding_depth_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::before_open(v);
        let open = s.open.clone().unwrap();
        let fx = s.payee.handle_message(Msg::Open(open), &s.payee_signer, s.tip).unwrap();
        s.deliver_from_payee(fx);
        // The funding has not confirmed (min_depth 1): later payments wait.
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::NotAcceptingPayments);
    }
}
