//! Local commands refused leave the channel unchanged.

use super::*;

#[test]
fn local_commands_refused_leave_the_channel_unchanged() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let pre = PaymentPreimage([1; 32]);
        refuse_cmd(&mut p.a.ch, CommandError::NothingToCommit, |c| c.commit(&signer_a()));
        refuse_cmd(&mut p.b.ch, CommandError::NothingToCommit, |c| c.commit(&signer_b()));
        refuse_cmd(&mut p.b.ch, CommandError::Fee, |c| c.update_fee(5_000));
        refuse_cmd(&mut p.a.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(0, pre));
        refuse_cmd(&mut p.a.ch, CommandError::UnknownHtlc, |c| c.fail_htlc(0, vec![]));
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| c.commit(&signer_a()));
        // The received HTLC is not irrevocably committed yet.
        p.deliver_to_b();
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id, pre));
        p.settle();
        refuse_cmd(&mut p.b.ch, CommandError::WrongPreimage, |c| c.fulfill_htlc(id, PaymentPreimage([2; 32])));
        refuse_cmd(&mut p.b.ch, CommandError::Amount, |c| c.fail_malformed_htlc(id, [0; 32], 0x4005));
        refuse_cmd(&mut p.b.ch, CommandError::Amount, |c| c.fail_htlc(id, vec![0; 65_536]));
        // b cannot remove what it did not receive; a cannot remove its own offer.
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id + 5, pre));
        refuse_cmd(&mut p.a.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id, pre));
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fulfill_htlc(id, pre));
        refuse_cmd(&mut p.b.ch, CommandError::UnknownHtlc, |c| c.fail_htlc(id, vec![]));
        p.settle();
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| {
            c.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion())
        });
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| {
            c.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &signer_a())
        });
        refuse_cmd(&mut p.b.ch, CommandError::Amount, |c| {
            c.shutdown(p2wpkh(0xbb), (Amount::from_sat(5_000), Amount::from_sat(100)), &signer_b())
        });
        refuse_cmd(&mut p.a.ch, CommandError::WrongPhase, |c| c.funding_tx(p.funding.clone(), &signer_a()));
    }
}

#[test]
fn peer_add_crossing_our_shutdown_is_accepted() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let pre = PaymentPreimage([1; 32]);
        let (id, fx) = p.b.ch.add_htlc(MilliSats::from_msat(10_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.b.ch.commit(&p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        // b's add and signature were on the wire before b saw a's shutdown.
        p.settle();
        assert!(p.a.ch.is_htlc_irrevocably_committed(Side::Counterparty, id));
        let fx = p.a.ch.fail_htlc(id, vec![0x40, 0x08]).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        assert!(p.a.ch.closing_transaction().is_some() && p.b.ch.closing_transaction().is_some());
    }
}
