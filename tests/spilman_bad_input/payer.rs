//! The payer's side.

use super::*;

#[test]
fn payer_refuses_bad_fulfill_fail_and_ack() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        let a = s.add_htlc(2_000, preimage(1), tip + 50);
        let b = s.add_htlc(3_000, preimage(2), tip + 50);

        // Fulfill: wrong preimage (another HTLC's, or garbage), unknown ids.
        for pre in [preimage(2), preimage(0), PaymentPreimage(preimage(1).hash().0)] {
            payer_refuses(&mut s, Msg::Fulfill { id: a, preimage: pre }, Misbehaviour::WrongPreimage);
        }
        for id in [b + 1, 1_000, u64::MAX] {
            payer_refuses(&mut s, Msg::Fulfill { id, preimage: preimage(1) }, Misbehaviour::UnknownHtlc);
            payer_refuses(&mut s, Msg::Fail { id }, Misbehaviour::UnknownHtlc);
        }

        // Ack: numbers never sent, replays.
        let n = s.payer.payment_number();
        assert_eq!(s.payer.acknowledged(), n);
        for number in [n + 1, n + 100, u64::MAX] {
            payer_refuses(&mut s, Msg::Ack { number }, Misbehaviour::UnexpectedMessage);
        }
        assert!(n >= 2);
        for number in [0, 1, n - 1] {
            payer_refuses(&mut s, Msg::Ack { number }, Misbehaviour::Replay);
        }
        // A real Ack delivered twice: the second changes nothing (after a reconnection the
        // payee acknowledges a payment sent again), and older ones are replays.
        let fx = s.payer.pay(Amount::from_sat(1_000), &s.payer_signer).unwrap();
        let Some(Msg::Payment(p)) = fx.send.first().cloned() else { panic!() };
        let fx = s.payee.handle_message(Msg::Payment(p), &s.payee_signer, s.tip).unwrap();
        let ack = fx.send[0].clone();
        assert_eq!(ack, Msg::Ack { number: n + 1 });
        let _ = s.payer.handle_message(ack.clone(), &s.payer_signer, s.tip).unwrap();
        let before = payer_fingerprint(&s.payer);
        let fx = s.payer.handle_message(ack, &s.payer_signer, s.tip).expect("a repeated acknowledgement");
        assert!(fx.update.is_none() && fx.send.is_empty() && fx.events.is_empty());
        assert_eq!(payer_fingerprint(&s.payer), before);
        payer_refuses(&mut s, Msg::Ack { number: n }, Misbehaviour::Replay);

        // Fulfill and Fail replays.
        let fx = s.payee.fulfill_htlc(a, preimage(1), &s.payee_signer).unwrap();
        let fulfill = fx.send[0].clone();
        s.deliver_from_payee(fx);
        payer_refuses(&mut s, fulfill, Misbehaviour::Replay);
        payer_refuses(&mut s, Msg::Fail { id: a }, Misbehaviour::UnknownHtlc);
        let fx = s.payee.fail_htlc(b).unwrap();
        let fail = fx.send[0].clone();
        s.deliver_from_payee(fx);
        payer_refuses(&mut s, fail, Misbehaviour::UnknownHtlc);
        assert!(s.state().htlcs.is_empty());
    }
}

#[test]
fn payer_refuses_bad_refund_signature() {
    let mut s = Setup::funded(Variant::PresignedRefund);
    let request = s.refund_request.clone().unwrap();
    let fx = s.payee.clone().handle_message(Msg::RefundRequest(request), &s.payee_signer, s.tip).unwrap();
    let Some(Msg::RefundSigned(good)) = fx.send.first().cloned() else { panic!() };
    let t = s.template();
    let refund = t.refund_tx(FEE, BlockHeight(EXPIRY)).unwrap();
    let ws = t.channel_script();
    let sign_refund = |signer: &InMemorySigner, tx: &Transaction, sighash_type| {
        signer
            .sign(&SignRequest {
                tx,
                input: 0,
                script_code: ws.as_script(),
                p2wpkh: false,
                value: t.capacity,
                sighash_type,
                key: KeyId::Funding,
                tweak: Tweak::None,
            })
            .unwrap()
    };
    let invalid = Misbehaviour::RefundSignature(SignatureError::Invalid);
    // The payer's own signature, a stranger's, the payee's over another refund.
    let cases = [
        (sign_refund(&s.payer_signer, &refund, EcdsaSighashType::All), invalid),
        (sign_refund(&signer(3), &refund, EcdsaSighashType::All), invalid),
        (
            sign_refund(
                &s.payee_signer,
                &t.refund_tx(FEE + Amount::from_sat(1), BlockHeight(EXPIRY)).unwrap(),
                EcdsaSighashType::All,
            ),
            invalid,
        ),
        (
            sign_refund(&s.payee_signer, &t.refund_tx(FEE, BlockHeight(EXPIRY - 1)).unwrap(), EcdsaSighashType::All),
            invalid,
        ),
        (
            sign_refund(&s.payee_signer, &refund, EcdsaSighashType::NonePlusAnyoneCanPay),
            Misbehaviour::RefundSignature(SignatureError::WrongSighashType {
                expected: EcdsaSighashType::All,
                got: EcdsaSighashType::NonePlusAnyoneCanPay,
            }),
        ),
        (high_s(&good.signature), Misbehaviour::RefundSignature(SignatureError::HighS)),
        (
            ecdsa::Signature { sighash_type: EcdsaSighashType::Single, ..good.signature },
            Misbehaviour::RefundSignature(SignatureError::WrongSighashType {
                expected: EcdsaSighashType::All,
                got: EcdsaSighashType::Single,
            }),
        ),
        // A payment signature (the payee never signs one, but it is a valid-looking signature).
        (s.signed(1, PaymentState { to_payee: FIRST, htlcs: vec![] }).signature, invalid),
    ];
    for (signature, want) in cases {
        payer_refuses(&mut s, Msg::RefundSigned(RefundSigned { signature }), want);
    }
    // Flipped bits in the compact signature.
    for bit in (0..512).step_by(7) {
        let mut compact = good.signature.signature.serialize_compact();
        compact[bit / 8] ^= 1 << (bit % 8);
        let Ok(signature) = secp256k1::ecdsa::Signature::from_compact(&compact) else { continue };
        let sig = ecdsa::Signature { signature, sighash_type: EcdsaSighashType::All };
        let before = payer_fingerprint(&s.payer);
        let err = s.payer.handle_message(Msg::RefundSigned(RefundSigned { signature: sig }), &s.payer_signer, s.tip);
        assert!(matches!(
            err.map_err(|e| e.kind),
            Err(Misbehaviour::RefundSignature(SignatureError::Invalid | SignatureError::HighS))
        ));
        assert_eq!(payer_fingerprint(&s.payer), before);
    }
    // Nothing was broadcast or sent on refusal; the genuine signature opens the channel.
    let fx = s.payer.handle_message(Msg::RefundSigned(good.clone()), &s.payer_signer, s.tip).unwrap();
    assert!(matches!(fx.send.as_slice(), [Msg::Open(_)]));
    assert_eq!(fx.broadcast.len(), 1);
    // A second RefundSigned, even the genuine one, is out of place.
    payer_refuses(&mut s, Msg::RefundSigned(good), Misbehaviour::UnexpectedMessage);
}
