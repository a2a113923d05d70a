//! Snapshots.

use super::*;

#[test]
fn snapshot_truncations_and_extensions_fail_to_restore() {
    let mut snapshots = vec![];
    for v in VARIANTS {
        let s = Setup::funded(v);
        snapshots.push((s.payer.snapshot(), s.payee.snapshot()));
        let mut s = Setup::open(v);
        let tip = s.tip.height.0;
        s.add_htlc(2_000, preimage(1), tip + 50);
        s.add_htlc(3_000, preimage(2), tip + 50);
        let _ = s.payee.fulfill_htlc(0, preimage(1), &s.payee_signer).unwrap();
        snapshots.push((s.payer.snapshot(), s.payee.snapshot()));
    }
    let any = RestoreCheck::default();
    for (payer, payee) in snapshots {
        assert_eq!(Payer::restore(&payer, any).unwrap().snapshot(), payer);
        assert_eq!(Payee::restore(&payee, any).unwrap().snapshot(), payee);
        for len in 0..payer.len() {
            assert!(matches!(Payer::restore(&payer[..len], any), Err(RestoreError::Decode(_))), "payer prefix {len}");
        }
        for len in 0..payee.len() {
            assert!(matches!(Payee::restore(&payee[..len], any), Err(RestoreError::Decode(_))), "payee prefix {len}");
        }
        for extra in [[0x00].as_slice(), &[0x01], &[0x14, 0x00], &[0xff, 0xff], &[0x1a, 0x00], &[0x17, 0x05, 0x00]] {
            let (mut a, mut b) = (payer.clone(), payee.clone());
            a.extend_from_slice(extra);
            b.extend_from_slice(extra);
            assert!(matches!(Payer::restore(&a, any), Err(RestoreError::Decode(_))), "payer + {extra:02x?}");
            assert!(matches!(Payee::restore(&b, any), Err(RestoreError::Decode(_))), "payee + {extra:02x?}");
        }
        // A complete unknown odd record after the last one is a newer writer's optional field:
        // skipped (even/odd rule), not an error.
        let (mut a, mut b) = (payer.clone(), payee.clone());
        a.extend_from_slice(&[0x19, 0x01, 0xaa]);
        b.extend_from_slice(&[0x19, 0x01, 0xaa]);
        assert_eq!(Payer::restore(&a, any).unwrap().snapshot(), payer);
        assert_eq!(Payee::restore(&b, any).unwrap().snapshot(), payee);
        // Version byte.
        let (mut a, mut b) = (payer.clone(), payee.clone());
        a[1] = 3;
        b[1] = 0;
        assert_eq!(Payer::restore(&a, any).err(), Some(RestoreError::Decode(DecodeError::UnknownVersion(3))));
        assert_eq!(Payee::restore(&b, any).err(), Some(RestoreError::Decode(DecodeError::UnknownVersion(0))));
        // One side's snapshot given to the other.
        assert!(matches!(
            Payer::restore(&payee, any),
            Err(RestoreError::Decode(DecodeError::WrongKind { expected: 0x50, got: 0x4f }))
        ));
        assert!(matches!(
            Payee::restore(&payer, any),
            Err(RestoreError::Decode(DecodeError::WrongKind { expected: 0x4f, got: 0x50 }))
        ));
        // A message is not a snapshot.
        let offer = Msg::Offer(Setup::funded(Variant::Cltv).offer).encode();
        assert!(matches!(Payer::restore(&offer, any), Err(RestoreError::Decode(DecodeError::WrongKind { .. }))));
        assert!(matches!(Payee::restore(&offer, any), Err(RestoreError::Decode(DecodeError::WrongKind { .. }))));
    }
}

#[test]
fn snapshot_of_another_channel_or_stale_fails_to_restore() {
    for v in VARIANTS {
        let mut s = Setup::open(v);
        let channel = s.payer.channel_id().unwrap();
        assert_eq!(s.payee.channel_id(), Some(channel));
        let other = ChannelId::from_funding(&OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 1 });
        let mut neighbour = channel.0;
        neighbour[31] ^= 1;
        let payer_old = s.payer.snapshot();
        let payee_old = s.payee.snapshot();
        let (payer_old_id, payee_old_id) = (s.payer.update_id(), s.payee.update_id());
        s.pay(1_000);
        let payer_new = s.payer.snapshot();
        let payee_new = s.payee.snapshot();
        for wrong in [other, ChannelId(neighbour)] {
            let check = RestoreCheck { channel_id: Some(wrong), min_update_id: 0 };
            assert_eq!(Payer::restore(&payer_new, check).err(), Some(RestoreError::WrongChannel));
            assert_eq!(Payee::restore(&payee_new, check).err(), Some(RestoreError::WrongChannel));
        }
        // A snapshot from before funding has no channel id yet.
        let payee = Payee::new(payee_config(v), &s.payee_signer).0;
        let payer = Payer::new(s.offer.clone(), payer_config(), &s.payer_signer, s.tip).unwrap();
        assert_eq!((payer.channel_id(), payee.channel_id()), (None, None));
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: 0 };
        assert_eq!(Payer::restore(&payer.snapshot(), check).err(), Some(RestoreError::WrongChannel));
        assert_eq!(Payee::restore(&payee.snapshot(), check).err(), Some(RestoreError::WrongChannel));
        // Stale: the embedder knows a newer update was persisted.
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: s.payer.update_id() };
        assert_eq!(
            Payer::restore(&payer_old, check).err(),
            Some(RestoreError::Stale { snapshot: payer_old_id, expected_at_least: s.payer.update_id() })
        );
        assert_eq!(Payer::restore(&payer_new, check).unwrap().snapshot(), payer_new);
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: s.payer.update_id() + 1 };
        assert!(matches!(Payer::restore(&payer_new, check), Err(RestoreError::Stale { .. })));
        let check = RestoreCheck { channel_id: Some(channel), min_update_id: s.payee.update_id() };
        assert_eq!(
            Payee::restore(&payee_old, check).err(),
            Some(RestoreError::Stale { snapshot: payee_old_id, expected_at_least: s.payee.update_id() })
        );
        assert_eq!(Payee::restore(&payee_new, check).unwrap().snapshot(), payee_new);
        let check = RestoreCheck { channel_id: None, min_update_id: u64::MAX };
        assert!(matches!(Payee::restore(&payee_new, check), Err(RestoreError::Stale { .. })));
    }
}
