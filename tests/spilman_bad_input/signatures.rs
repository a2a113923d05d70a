//! Signatures.

use super::*;

#[test]
fn wrong_sighash_type_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let good = s.signed(s.next_number(), state.clone());
        // Re-signed over the same transaction with another sighash type: a valid signature for
        // that type, but not the one the protocol prescribes.
        for ty in [
            EcdsaSighashType::Single,
            EcdsaSighashType::None,
            EcdsaSighashType::AllPlusAnyoneCanPay,
            EcdsaSighashType::SinglePlusAnyoneCanPay,
        ] {
            let mut p = good.clone();
            p.signature = s.sign_with_sighash(&state, ty);
            let want = SignatureError::WrongSighashType { expected: EcdsaSighashType::All, got: ty };
            payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(want));
        }
        // The ALL signature with only its sighash byte changed.
        let mut p = good.clone();
        p.signature.sighash_type = EcdsaSighashType::Single;
        let want = SignatureError::WrongSighashType { expected: EcdsaSighashType::All, got: EcdsaSighashType::Single };
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(want));
        // A sighash byte that is not a standard type does not even decode.
        let mut bytes = Msg::Payment(good.clone()).encode();
        for byte in [0x00, 0x04, 0x41, 0x80, 0xff] {
            *bytes.last_mut().unwrap() = byte;
            assert_eq!(Msg::decode(&bytes), Err(DecodeError::InvalidValue("payment signature")), "sighash {byte:#x}");
        }
        payee_accepts(&s, Msg::Payment(good));
    }
}

#[test]
fn corrupted_signature_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let good = Msg::Payment(s.signed(s.next_number(), state));
        let bytes = good.encode();
        // The signature is the last record: 64 compact bytes and the sighash byte.
        let sig_start = bytes.len() - 65;
        let (mut undecodable, mut invalid) = (0, 0);
        for bit in 0..64 * 8 {
            let mut b = bytes.clone();
            b[sig_start + bit / 8] ^= 1 << (bit % 8);
            match Msg::decode(&b) {
                Err(e) => {
                    assert_eq!(e, DecodeError::InvalidValue("payment signature"));
                    undecodable += 1;
                }
                Ok(m) => {
                    let before = payee_fingerprint(&s.payee);
                    let err = match s.payee.handle_message(m, &s.payee_signer, s.tip) {
                        Ok(fx) => panic!("bit {bit}: {}", describe(&fx)),
                        Err(e) => e,
                    };
                    assert!(
                        matches!(err.kind, Misbehaviour::Signature(SignatureError::Invalid | SignatureError::HighS)),
                        "bit {bit}: {err:?}"
                    );
                    assert_eq!(payee_fingerprint(&s.payee), before);
                    invalid += 1;
                }
            }
        }
        assert!(invalid > 0, "most flips decode and fail verification ({undecodable} undecodable)");
        payee_accepts(&s, good);
    }
}

#[test]
fn high_s_signature_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let mut state = s.state();
        state.to_payee += Amount::from_sat(1_000);
        let good = s.signed(s.next_number(), state);
        let mut p = good.clone();
        p.signature = high_s(&good.signature);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::HighS));
        // Also on the first payment.
        let mut s = Setup::before_open(v);
        let mut open = s.open.clone().unwrap();
        open.first_payment.signature = high_s(&open.first_payment.signature);
        payee_refuses(&mut s, Msg::Open(open), Misbehaviour::Signature(SignatureError::HighS));
    }
}

#[test]
fn signature_over_another_transaction_is_refused() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        s.pay(1_000);
        let number = s.next_number();
        let mut signed_state = s.state();
        signed_state.to_payee += Amount::from_sat(1_000);
        let signed = s.signed(number, signed_state.clone());
        // The message claims more than what was signed.
        let mut p = signed.clone();
        p.to_payee += Amount::from_sat(1);
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // Or an HTLC the signature does not cover.
        let mut p = signed.clone();
        p.htlcs = vec![htlc(0, 1_000, preimage(1).hash(), START + 50)];
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // An old payment's signature under a new amount.
        let mut p = signed.clone();
        p.signature = s.payments.last().unwrap().signature;
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // The payee's own key signing instead of the payer's.
        let t = s.template();
        let mut p = signed.clone();
        p.signature = t.sign(&s.payee_signer, &t.build(&signed_state).unwrap()).unwrap();
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        // A stranger's key.
        let mut p = signed.clone();
        p.signature = t.sign(&signer(3), &t.build(&signed_state).unwrap()).unwrap();
        payee_refuses(&mut s, Msg::Payment(p), Misbehaviour::Signature(SignatureError::Invalid));
        payee_accepts(&s, Msg::Payment(signed));
    }
}
