//! Setup messages.

use super::*;

#[test]
fn open_with_wrong_funding_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::before_open(v);
        let open = s.open.clone().unwrap();
        let vout = open.funding_vout as usize;
        let t = s.template();

        // Another script in the channel output.
        let other_scripts = [
            p2wpkh(7),
            ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([7; 32])),
            // The CLTV script for another expiry, the scripts of the other variant.
            spilman_cltv(&t.payer_key, &t.payee_key, BlockHeight(EXPIRY + 1)).to_p2wsh(),
            spilman_cltv(&t.payer_key, &t.payee_key, BlockHeight(EXPIRY)).to_p2wsh(),
            spilman_cltv(&t.payee_key, &t.payer_key, BlockHeight(EXPIRY)).to_p2wsh(),
            funding(&FundingPubkey::from_public_key(t.payer_key), &FundingPubkey::from_public_key(t.payee_key))
                .to_p2wsh(),
            // The right witness script, but as P2SH.
            ScriptBuf::new_p2sh(&t.channel_script().as_script().script_hash()),
        ];
        for script in other_scripts {
            if script == open.funding_tx.output[vout].script_pubkey {
                continue;
            }
            let mut o = open.clone();
            o.funding_tx.output[vout].script_pubkey = script;
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        }
        // The output index pointing elsewhere or nowhere.
        for bad_vout in [0, 2, 1_000, u32::MAX] {
            let mut o = open.clone();
            o.funding_vout = bad_vout;
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        }
        // Another value: the pre-signed payee knows the capacity it signed the refund for; the
        // CLTV payee learns it from the funding, and the first payment's signature (which commits
        // to the funding outpoint and value) no longer verifies.
        for value in [CAPACITY - Amount::from_sat(1), CAPACITY + Amount::from_sat(1), Amount::from_sat(20_000)] {
            let mut o = open.clone();
            o.funding_tx.output[vout].value = value;
            let want = match v {
                Variant::Cltv => Misbehaviour::Signature(SignatureError::Invalid),
                Variant::PresignedRefund => Misbehaviour::WrongFunding,
            };
            payee_refuses(&mut s, Msg::Open(o), want);
        }
        let mut o = open.clone();
        o.funding_tx.output[vout].value = Amount::from_sat(5_000);
        let want = match v {
            Variant::Cltv => Misbehaviour::Payment(PaymentError::ExceedsCapacity),
            Variant::PresignedRefund => Misbehaviour::WrongFunding,
        };
        payee_refuses(&mut s, Msg::Open(o), want);
        // No outputs at all.
        let mut o = open.clone();
        o.funding_tx.output.clear();
        payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        // An unrelated input (another funding transaction).
        let mut o = open.clone();
        o.funding_tx.input[0].previous_output.vout = 1;
        let want = match v {
            Variant::Cltv => Misbehaviour::Signature(SignatureError::Invalid),
            Variant::PresignedRefund => Misbehaviour::WrongFunding,
        };
        payee_refuses(&mut s, Msg::Open(o), want);
        if v == Variant::PresignedRefund {
            // Keys or script other than those the refund was signed for.
            let other = signer(3);
            let mut o = open.clone();
            o.payer_key = *other.pubkeys().funding.public_key();
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
            let mut o = open.clone();
            o.payer_htlc_key = *other.pubkeys().htlc_basepoint.public_key();
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
            let mut o = open.clone();
            o.payer_script = p2wpkh(8);
            payee_refuses(&mut s, Msg::Open(o), Misbehaviour::WrongFunding);
        }
        payee_accepts(&s, Msg::Open(open));
    }
}

#[test]
fn setup_messages_in_the_wrong_state_are_refused() {
    // CLTV: no refund round trip.
    let mut s = Setup::funded(Variant::Cltv);
    let other = Setup::funded(Variant::PresignedRefund);
    let request = other.refund_request.clone().unwrap();
    payee_refuses(&mut s, Msg::RefundRequest(request.clone()), Misbehaviour::WrongVariant);

    // Pre-signed: Open before the refund is signed, a second RefundRequest after it is.
    let mut p = Setup::funded(Variant::PresignedRefund);
    let open = Setup::before_open(Variant::PresignedRefund).open.unwrap();
    payee_refuses(&mut p, Msg::Open(open.clone()), Misbehaviour::WrongVariant);
    let fx = p.payee.handle_message(Msg::RefundRequest(request.clone()), &p.payee_signer, p.tip).unwrap();
    assert!(matches!(fx.send.as_slice(), [Msg::RefundSigned(_)]));
    // The same request again (a payer that never got the signature asks again on reconnection):
    // the same signature, nothing else changes; any other request is refused.
    let before = p.payee.snapshot();
    let again = p.payee.handle_message(Msg::RefundRequest(request.clone()), &p.payee_signer, p.tip).unwrap();
    assert_eq!(again.send, fx.send);
    assert!(again.broadcast.is_empty() && again.events.is_empty());
    assert_eq!(
        Payee::restore(&p.payee.snapshot(), RestoreCheck::default()).unwrap().received(),
        Payee::restore(&before, RestoreCheck::default()).unwrap().received()
    );
    let mut changed = request.clone();
    changed.refund_fee += paychan::bitcoin::Amount::from_sat(1);
    payee_refuses(&mut p, Msg::RefundRequest(changed), Misbehaviour::UnexpectedMessage);

    for v in VARIANTS {
        // Payments before Open.
        let mut s = Setup::before_open(v);
        let first = s.open.clone().unwrap().first_payment;
        payee_refuses(&mut s, Msg::Payment(first.clone()), Misbehaviour::UnexpectedMessage);
        payee_refuses(&mut s, Msg::CloseRequest, Misbehaviour::UnexpectedMessage);
        // Open twice; RefundRequest once open.
        let mut s = Setup::open(v);
        let open = s.open.clone().unwrap();
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::UnexpectedMessage);
        payee_refuses(&mut s, Msg::RefundRequest(request.clone()), Misbehaviour::UnexpectedMessage);
        // Messages only the payee sends.
        let offer = s.offer.clone();
        for m in [
            Msg::Offer(offer),
            Msg::RefundSigned(Setup::before_open(Variant::PresignedRefund).refund_signed.unwrap()),
            Msg::Ack { number: 1 },
            Msg::Fulfill { id: 0, preimage: preimage(1) },
            Msg::Fail { id: 0 },
            Msg::Closed { txid: Txid::from_byte_array([1; 32]) },
        ] {
            payee_refuses(&mut s, m, Misbehaviour::UnexpectedMessage);
        }
        // Messages only the payer sends, and setup messages once open.
        let first = s.payments[0].clone();
        for m in [
            Msg::Offer(s.offer.clone()),
            Msg::RefundRequest(request.clone()),
            Msg::RefundSigned(Setup::before_open(Variant::PresignedRefund).refund_signed.unwrap()),
            Msg::Open(s.open.clone().unwrap()),
            Msg::Payment(first),
            Msg::CloseRequest,
        ] {
            payer_refuses(&mut s, m, Misbehaviour::UnexpectedMessage);
        }
        // A closed payee takes no CloseRequest, nor payments.
        let fx = s.payee.close(&s.payee_signer).unwrap();
        assert_eq!(fx.broadcast.len(), 1);
        payee_refuses(&mut s, Msg::CloseRequest, Misbehaviour::UnexpectedMessage);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let p = s.signed(s.next_number(), state);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::UnexpectedMessage);
    }
}

#[test]
fn refund_request_with_bad_terms_is_refused() {
    let mut s = Setup::funded(Variant::PresignedRefund);
    let request = s.refund_request.clone().unwrap();
    for (capacity, fee) in [
        (FIRST - Amount::from_sat(1), FEE),
        (Amount::MAX_MONEY + Amount::from_sat(1), FEE),
        (CAPACITY, CAPACITY + Amount::from_sat(1)),
        (CAPACITY, CAPACITY - DUST + Amount::from_sat(1)),
    ] {
        let r = RefundRequest { capacity, refund_fee: fee, ..request.clone() };
        let before = payee_fingerprint(&s.payee);
        // Capacities above 21M BTC do not even decode.
        let err = match Msg::decode(&Msg::RefundRequest(r.clone()).encode()) {
            Ok(m) => match s.payee.handle_message(m, &s.payee_signer, s.tip) {
                Ok(fx) => panic!("{capacity} {fee}: {}", describe(&fx)),
                Err(e) => e.kind,
            },
            Err(e) => {
                assert_eq!(e, DecodeError::InvalidValue("capacity"));
                continue;
            }
        };
        assert_eq!(err, Misbehaviour::BadTerms);
        assert_eq!(payee_fingerprint(&s.payee), before);
    }
}

#[test]
fn malleable_presigned_funding_is_refused() {
    let s = Setup::funded(Variant::PresignedRefund);
    let channel_out = s.payer.funding_output();
    let request = s.refund_request.clone().unwrap();
    let open_template = Setup::before_open(Variant::PresignedRefund).open.unwrap();
    // A hostile payer asks for a refund of a funding with a legacy or wrapped input (its
    // scriptSig is part of the txid, so re-encoding it would invalidate the signed refund), then
    // opens with it. A plain segwit input is the control.
    let legacy = ScriptBuf::from_bytes(vec![0x51]);
    let wrapped = ScriptBuf::from_bytes([0x16, 0x00, 0x14].into_iter().chain([3; 20]).collect());
    for script_sig in [legacy, wrapped, ScriptBuf::new()] {
        let mut funding = funding_tx(channel_out.clone());
        funding.input[0].script_sig = script_sig.clone();
        let outpoint = OutPoint { txid: funding.compute_txid(), vout: 1 };
        let mut payee = Payee::new(payee_config(Variant::PresignedRefund), &s.payee_signer).0;
        let r = RefundRequest { funding_outpoint: outpoint, ..request.clone() };
        // The payee does not see the funding yet: it signs the refund.
        let fx = payee.handle_message(wire(&Msg::RefundRequest(r)), &s.payee_signer, s.tip).unwrap();
        assert!(matches!(fx.send.as_slice(), [Msg::RefundSigned(_)]));
        let template = payee.template().unwrap().clone();
        let state = PaymentState { to_payee: FIRST, htlcs: vec![] };
        let signature = template.sign(&s.payer_signer, &template.build(&state).unwrap()).unwrap();
        let open = Open {
            funding_tx: funding,
            funding_vout: 1,
            first_payment: Payment { number: 1, to_payee: FIRST, htlcs: vec![], signature },
            ..open_template.clone()
        };
        if script_sig.is_empty() {
            let _ =
                payee.handle_message(wire(&Msg::Open(open)), &s.payee_signer, s.tip).expect("segwit funding is fine");
        } else {
            refuse(&mut payee, &s.payee_signer, Msg::Open(open), s.tip, Misbehaviour::MalleableFunding);
        }
    }
    // The payer refuses to fund that way in the first place.
    let mut fresh = Payer::new(s.offer.clone(), payer_config(), &s.payer_signer, s.tip).unwrap();
    let mut funding = funding_tx(channel_out);
    funding.input[0].script_sig = ScriptBuf::from_bytes(vec![0x51]);
    let before = payer_fingerprint(&fresh);
    assert_eq!(fresh.fund(funding, &s.payer_signer), Err(CommandError::MalleableFunding));
    assert_eq!(payer_fingerprint(&fresh), before);
}
