//! Hostile inputs once accepted (bugs since fixed in `src/`): non-standard or too heavy payments,
//! an HTLC revealed late, a refund fee not restated, exhausted ids, a CLTV funding above 21 M BTC.

use super::*;

/// `OP_TRUE` as the payer's change script: consensus-valid, but not a standard output type, so no
/// node relays a transaction paying it.
fn non_standard_script() -> ScriptBuf {
    ScriptBuf::from_bytes(vec![0x51])
}

fn is_standard_output(script: &ScriptBuf) -> bool {
    script.is_p2pkh() || script.is_p2sh() || script.is_witness_program() || script.is_op_return()
}

#[test]
fn non_standard_payer_script_is_refused() {
    // CLTV: the script arrives in Open, with a first payment signed over it.
    let mut s = Setup::before_open(Variant::Cltv);
    let mut t = s.template();
    t.payer_script = non_standard_script();
    let state = PaymentState { to_payee: FIRST, htlcs: vec![] };
    let signature = t.sign(&s.payer_signer, &t.build(&state).unwrap()).unwrap();
    let open = Open {
        payer_script: non_standard_script(),
        first_payment: Payment { number: 1, to_payee: FIRST, htlcs: vec![], signature },
        ..s.open.clone().unwrap()
    };
    let mut accepted = s.payee.clone();
    if accepted.handle_message(wire(&Msg::Open(open.clone())), &s.payee_signer, s.tip).is_ok() {
        let close = accepted.closing_tx(&s.payee_signer).unwrap();
        assert!(!close.output.iter().all(|o| is_standard_output(&o.script_pubkey)), "the only close is non-standard");
    }
    payee_refuses(&mut s, Msg::Open(open), Misbehaviour::NonStandardScript);

    // Pre-signed: the script arrives in RefundRequest.
    let mut s = Setup::funded(Variant::PresignedRefund);
    let r = RefundRequest { payer_script: non_standard_script(), ..s.refund_request.clone().unwrap() };
    payee_refuses(&mut s, Msg::RefundRequest(r), Misbehaviour::NonStandardScript);
}

#[test]
fn payment_too_heavy_to_relay_is_refused() {
    let capacity = Amount::from_sat(10_000_000);
    let mut s = Setup::open_with(payee_config(Variant::Cltv), PayerConfig { capacity, ..payer_config() });
    let tip = s.tip.height.0;
    let mut state = s.state();
    state.htlcs = (0..2_400u64)
        .map(|id| {
            let mut p = [0u8; 32];
            p[..8].copy_from_slice(&id.to_be_bytes());
            htlc(id, 1_000, PaymentPreimage(p).hash(), tip + 50)
        })
        .collect();
    // No payer can even sign such a state: the template refuses to build it.
    assert_eq!(s.template().build(&state).unwrap_err(), PaymentError::TooManyHtlcs);
    let p = s.unbuildable(s.next_number(), state.to_payee, state.htlcs);
    let before = payee_fingerprint(&s.payee);
    let err = match s.payee.handle_message(Msg::Payment(p), &s.payee_signer, s.tip) {
        Ok(fx) => panic!("a payment with 2,400 HTLCs must be refused, but {}", describe(&fx)),
        Err(e) => e,
    };
    assert_eq!(err.kind, Misbehaviour::Payment(PaymentError::TooManyHtlcs));
    assert_eq!(payee_fingerprint(&s.payee), before);
}

#[test]
fn payee_goes_on_chain_before_a_revealed_htlc_expires() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let expiry = START + 40;
        let id = s.add_htlc(5_000, preimage(1), expiry);
        assert!(expiry < s.payee.close_by().0);
        // The payee reveals the preimage; the payer never folds the HTLC in.
        let fx = s.payee.fulfill_htlc(id, preimage(1), &s.payee_signer).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::Fulfill { .. }]));
        let mut closed_at = None;
        for height in START + 1..expiry {
            let fx = s.payee.handle_chain(ChainEvent::Tip(ChainTip::at(height)), &s.payee_signer);
            if !fx.broadcast.is_empty() {
                closed_at = Some(height);
                break;
            }
        }
        assert!(
            closed_at.is_some(),
            "no close before the HTLC's timeout path opens at {expiry}; next deadline {:?}",
            s.payee.next_deadline()
        );
    }
}

#[test]
fn presigned_open_must_restate_the_signed_refund_fee() {
    let mut s = Setup::before_open(Variant::PresignedRefund);
    for refund_fee in [Amount::ZERO, FEE + Amount::from_sat(1), Amount::from_sat(100_000)] {
        let open = Open { refund_fee, ..s.open.clone().unwrap() };
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::WrongFunding);
    }
}

/// Issue item 12. A validly signed payment of a hostile payer may carry any HTLC id. An HTLC at
/// `u64::MAX` would leave no next id to require, so a later HTLC could take the same id again
/// (preimages, failures and upstream links are keyed by id), and a payee built with overflow
/// checks panicked on it (`max + 1`). It is refused, as is a payment numbered `u64::MAX`; the
/// largest id with a successor is taken, and then no new HTLC can follow it.
#[test]
fn htlc_id_at_u64_max_is_refused_so_ids_are_never_reused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let expiry = s.tip.height.0 + 50;
        let n = s.next_number();
        let with = |state: &PaymentState, id: u64| {
            let mut state = state.clone();
            state.htlcs.push(htlc(id, 20_000, preimage(3).hash(), expiry));
            state
        };
        let held = s.state();
        let at_max = s.signed(n, with(&held, u64::MAX));
        payee_refuses(&mut s, Msg::Payment(at_max), Misbehaviour::Exhausted);
        // The largest id that has a successor is taken.
        let below = with(&held, u64::MAX - 1);
        let p = s.signed(n, below.clone());
        let fx = s.payee.handle_message(wire(&Msg::Payment(p)), &s.payee_signer, s.tip).expect("id u64::MAX - 1");
        assert!(fx.events.iter().any(|e| matches!(e, paychan::spilman::Event::HtlcOffered(h) if h.id == u64::MAX - 1)));
        // Nothing may follow it.
        let after = s.signed(n + 1, with(&below, u64::MAX));
        payee_refuses(&mut s, Msg::Payment(after), Misbehaviour::Exhausted);
        // A payment numbered u64::MAX leaves no next number either.
        let mut more = below.clone();
        more.to_payee += Amount::from_sat(1_000);
        let last = s.signed(u64::MAX, more.clone());
        payee_refuses(&mut s, Msg::Payment(last), Misbehaviour::Exhausted);
        payee_accepts(&s, Msg::Payment(s.signed(u64::MAX - 1, more)));
    }
}

/// Issue item 13. The CLTV-variant payee took a funding output above 21,000,000 BTC (the
/// pre-signed variant refused it): its first payment could never confirm. Refused now, by the
/// same check for both variants; 21,000,000 BTC exactly is the boundary.
#[test]
fn cltv_funding_above_21m_btc_is_refused() {
    let mut s = Setup::funded(Variant::Cltv);
    let open = s.open.clone().expect("the CLTV payer opens at once");
    let hostile = |capacity: Amount| {
        let mut funding_tx = open.funding_tx.clone();
        funding_tx.output[open.funding_vout as usize].value = capacity;
        let mut t = s.template();
        t.capacity = capacity;
        t.outpoint = OutPoint { txid: funding_tx.compute_txid(), vout: open.funding_vout };
        let state = PaymentState { to_payee: open.first_payment.to_payee, htlcs: vec![] };
        let signature = t.sign(&s.payer_signer, &t.build(&state).expect("buildable")).unwrap();
        Open { funding_tx, first_payment: Payment { signature, ..open.first_payment.clone() }, ..open.clone() }
    };
    let above = hostile(Amount::MAX_MONEY + Amount::from_sat(1));
    payee_accepts(&s, Msg::Open(hostile(Amount::MAX_MONEY)));
    payee_refuses(&mut s, Msg::Open(above), Misbehaviour::BadTerms);
}
