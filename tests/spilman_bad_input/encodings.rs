//! Message encodings.

use super::*;

/// One real message of every kind (and an `Open` of each variant).
fn sample_messages() -> Vec<Msg> {
    let p = Setup::before_open(Variant::PresignedRefund);
    let mut s = Setup::open(Variant::Cltv);
    let tip = s.tip.height.0;
    s.add_htlc(2_000, preimage(1), tip + 50);
    s.add_htlc(3_000, preimage(2), tip + 60);
    let fx = s.payee.fulfill_htlc(0, preimage(1), &s.payee_signer).unwrap();
    let fulfill = fx.send[0].clone();
    let fx = s.payee.fail_htlc(1).unwrap();
    let fail = fx.send[0].clone();
    let closed = s.payee.clone().close(&s.payee_signer).unwrap().send[0].clone();
    let msgs = vec![
        Msg::Offer(p.offer.clone()),
        Msg::RefundRequest(p.refund_request.clone().unwrap()),
        Msg::RefundSigned(p.refund_signed.clone().unwrap()),
        Msg::Open(p.open.clone().unwrap()),
        Msg::Open(s.open.clone().unwrap()),
        Msg::Payment(s.payments.last().unwrap().clone()),
        s.payee_sent.last().unwrap().clone(),
        fulfill,
        fail,
        s.payer.request_close().unwrap().send[0].clone(),
        closed,
    ];
    assert!(matches!(msgs[6], Msg::Ack { number: 3 }));
    assert!(matches!(msgs[7], Msg::Fulfill { .. }) && matches!(msgs[8], Msg::Fail { .. }));
    assert!(matches!(msgs[9], Msg::CloseRequest) && matches!(msgs[10], Msg::Closed { .. }));
    assert_eq!(s.payments.last().unwrap().htlcs.len(), 2);
    msgs
}

fn tlv_record(ty: u64, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bigsize(ty).var_bytes(value);
    w.into_bytes()
}

#[test]
fn message_truncations_fail_to_decode() {
    for m in sample_messages() {
        let bytes = m.encode();
        assert_eq!(Msg::decode(&bytes).as_ref(), Ok(&m));
        for len in 0..bytes.len() {
            let err = Msg::decode(&bytes[..len]).expect_err("a strict prefix must not decode");
            if len < 2 {
                assert_eq!(err, DecodeError::Truncated);
            } else {
                assert!(
                    matches!(err, DecodeError::Truncated | DecodeError::MissingField(_)),
                    "{m:?} at {len}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn message_trailing_bytes_fail_to_decode() {
    for m in sample_messages() {
        for extra in [[0x00].as_slice(), &[0x01], &[0xff], &[0x00, 0x00], &[0xfd, 0x00]] {
            let mut bytes = m.encode();
            bytes.extend_from_slice(extra);
            assert!(Msg::decode(&bytes).is_err(), "{m:?} + {extra:02x?} decoded");
        }
    }
}

#[test]
fn message_version_and_kind_are_checked() {
    for m in sample_messages() {
        for version in [0u8, 2, 0x7f, 0xff] {
            let mut bytes = m.encode();
            bytes[1] = version;
            assert_eq!(Msg::decode(&bytes), Err(DecodeError::UnknownVersion(version)));
        }
        for kind in [0u8, 0x4f, 0x50, 0x5c, 0xff] {
            let mut bytes = m.encode();
            bytes[0] = kind;
            assert!(matches!(Msg::decode(&bytes), Err(DecodeError::WrongKind { got, .. }) if got == kind));
        }
    }
}

#[test]
fn message_unknown_tlv_types_follow_the_even_odd_rule() {
    for m in sample_messages() {
        let bytes = m.encode();
        // Above every known type: even is refused, odd is skipped.
        for ty in [16u64, 1_000, 0x1_0000, 0x1_0000_0000, u64::MAX - 1] {
            let mut b = bytes.clone();
            b.extend(tlv_record(ty, &[1, 2, 3]));
            assert_eq!(Msg::decode(&b), Err(DecodeError::UnknownEvenType(ty)), "{m:?}");
            let mut b = bytes.clone();
            b.extend(tlv_record(ty + 1, &[1, 2, 3]));
            assert_eq!(Msg::decode(&b).as_ref(), Ok(&m), "odd type {} must be skipped", ty + 1);
            if ty + 1 < u64::MAX {
                // A second odd record, empty.
                b.extend(tlv_record(ty + 3, &[]));
                assert_eq!(Msg::decode(&b).as_ref(), Ok(&m));
            }
        }
        // Types must increase: a record not above the last one is refused even if odd.
        if bytes.len() > 2 {
            for ty in [0, 1] {
                let mut b = bytes.clone();
                b.extend(tlv_record(ty, &[]));
                if let Msg::Ack { .. }
                | Msg::Fail { .. }
                | Msg::Fulfill { .. }
                | Msg::RefundSigned(_)
                | Msg::Closed { .. } = m
                {
                    if ty == 1 {
                        // Their only record is type 0: type 1 is a new odd record.
                        assert_eq!(Msg::decode(&b).as_ref(), Ok(&m));
                        continue;
                    }
                }
                assert_eq!(Msg::decode(&b), Err(DecodeError::UnorderedTypes), "{m:?}");
            }
        }
        // A truncated odd record is still a truncation.
        let mut b = bytes.clone();
        b.extend(tlv_record(1_001, &[1, 2, 3]));
        b.pop();
        assert_eq!(Msg::decode(&b), Err(DecodeError::Truncated));
    }
}
