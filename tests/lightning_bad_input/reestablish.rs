//! `channel_reestablish` with impossible or unproven numbers; a stale snapshot.

use super::*;

struct Reestablish {
    channel_id: ChannelId,
    next_commitment_number: u64,
    next_revocation_number: u64,
    your_last_per_commitment_secret: [u8; 32],
    my_current_per_commitment_point: bitcoin::secp256k1::PublicKey,
}

impl Reestablish {
    fn of(m: &Msg) -> Self {
        let Msg::ChannelReestablish {
            channel_id,
            next_commitment_number,
            next_revocation_number,
            your_last_per_commitment_secret,
            my_current_per_commitment_point,
        } = m.clone()
        else {
            panic!("channel_reestablish")
        };
        Reestablish {
            channel_id,
            next_commitment_number,
            next_revocation_number,
            your_last_per_commitment_secret: your_last_per_commitment_secret.to_bytes(),
            my_current_per_commitment_point,
        }
    }

    fn msg(&self) -> Msg {
        Msg::ChannelReestablish {
            channel_id: self.channel_id,
            next_commitment_number: self.next_commitment_number,
            next_revocation_number: self.next_revocation_number,
            your_last_per_commitment_secret: PerCommitmentSecret::from_bytes(self.your_last_per_commitment_secret),
            my_current_per_commitment_point: self.my_current_per_commitment_point,
        }
    }
}

/// A pair after three payments, with a's fourth HTLC signed and b's revocation in flight, then
/// disconnected; returns the reestablish messages a and b would send.
fn disconnected_pair(ct: ChannelType) -> (Pair, Msg, Msg) {
    let mut p = Pair::open(ct, CAPACITY, PUSH);
    for n in 1..=3 {
        pay(&mut p, 5_000_000, n);
    }
    let (_, fx) =
        p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), PaymentPreimage([9; 32]).hash(), 2_000, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.deliver_to_b();
    p.deliver_to_b();
    p.to_a.clear();
    let fx = p.a.ch.handle_disconnect();
    p.a.absorb_pub(fx, &mut VecDeque::new());
    let fx = p.b.ch.handle_disconnect();
    p.b.absorb_pub(fx, &mut VecDeque::new());
    let ra = p.a.ch.reestablish(&p.a.signer).unwrap();
    let rb = p.b.ch.reestablish(&p.b.signer).unwrap();
    (p, ra, rb)
}

#[test]
fn channel_reestablish_with_impossible_numbers_is_refused() {
    for ct in TYPES {
        let (mut p, ra, rb) = disconnected_pair(ct);
        let mismatch = Misbehaviour::ReestablishMismatch;
        for (genuine, to_b) in [(&ra, true), (&rb, false)] {
            let base = Reestablish::of(genuine);
            let mut variants: Vec<Reestablish> = Vec::new();
            // One fewer is legitimate for a, which waits for b's revocation: b may have lost a's
            // last `commitment_signed`, which a then sends again (BOLT #2 ignores
            // `my_current_per_commitment_point`, which no longer tells the two cases apart).
            let receiver_awaits_revoke = if to_b { p.b.ch.is_awaiting_revoke() } else { p.a.ch.is_awaiting_revoke() };
            let mut fewer = vec![0, base.next_commitment_number - 2];
            if !receiver_awaits_revoke {
                fewer.push(base.next_commitment_number - 1);
            }
            for n in fewer {
                variants.push(Reestablish { next_commitment_number: n, ..Reestablish::of(genuine) });
            }
            for n in [
                base.next_revocation_number + 1,
                base.next_revocation_number + 2,
                base.next_revocation_number.wrapping_sub(1),
                u64::MAX,
                1 << 48,
            ] {
                variants.push(Reestablish { next_revocation_number: n, ..Reestablish::of(genuine) });
            }
            let mut secret = base.your_last_per_commitment_secret;
            secret[0] ^= 0x80;
            variants.push(Reestablish { your_last_per_commitment_secret: secret, ..Reestablish::of(genuine) });
            variants.push(Reestablish { your_last_per_commitment_secret: [0; 32], ..Reestablish::of(genuine) });
            let peer = if to_b { &mut p.b } else { &mut p.a };
            for v in variants {
                let err = refuse(&peer.ch, &peer.signer, v.msg(), mismatch);
                assert_eq!(err.action, Action::Close);
            }
            refuse(&peer.ch, &peer.signer, elsewhere(genuine), Misbehaviour::WrongChannel);
        }
        // The genuine messages still reconnect the channel.
        let fx = p.b.ch.handle_message(ra, &p.b.signer, tip()).expect("genuine");
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.handle_message(rb, &p.a.signer, tip()).expect("genuine");
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        p.verify_commitments();
    }
}

#[test]
fn channel_reestablish_claiming_unsigned_commitments_without_proof_is_refused() {
    for ct in TYPES {
        let (p, ra, _) = disconnected_pair(ct);
        let base = Reestablish::of(&ra);
        for extra in [2, 5, 1 << 40] {
            let lie =
                Reestablish { next_commitment_number: base.next_commitment_number + extra, ..Reestablish::of(&ra) };
            refuse(&p.b.ch, &p.b.signer, lie.msg(), Misbehaviour::ReestablishMismatch);
        }
    }
}

#[test]
fn stale_snapshot_learns_it_lost_state_and_broadcasts_nothing() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, 10_000_000, 1);
        let stale = p.b.ch.snapshot();
        let stale_commitment = p.b.ch.holder_commitment_number();
        pay(&mut p, 10_000_000, 2);
        pay(&mut p, 10_000_000, 3);
        assert!(p.b.ch.holder_commitment_number() >= stale_commitment + 2);
        let check = RestoreCheck { channel_id: Some(p.b.ch.channel_id()), min_update_id: 0 };
        let mut old_b = Channel::restore(&stale, check).expect("the stale snapshot is a valid snapshot");
        let fx = p.a.ch.handle_disconnect();
        p.a.absorb_pub(fx, &mut VecDeque::new());
        let fx = old_b.handle_disconnect();
        assert!(fx.is_empty(), "nothing unsigned to forget");
        let ra = p.a.ch.reestablish(&p.a.signer).unwrap();
        let rb = old_b.reestablish(&p.b.signer).unwrap();
        // The stale side sees a's proof (its own secret of a commitment it does not know it revoked).
        let fx = old_b.handle_message(ra, &p.b.signer, tip()).expect("a proof is not an error");
        assert_eq!(fx.events, vec![Event::LostState]);
        assert!(fx.broadcast.is_empty(), "the stale side must not broadcast its old state: {fx:?}");
        let [error @ Msg::Error { .. }] = &fx.send[..] else { panic!("an error asks the peer to close: {fx:?}") };
        let error = error.clone();
        // It remembers (persisted) that it must never broadcast its commitment, even restored.
        let update = fx.update.expect("the loss is persisted");
        assert!(old_b.has_lost_state());
        let check = RestoreCheck { channel_id: Some(p.b.ch.channel_id()), min_update_id: update.update_id };
        let mut old_b = Channel::restore_with_records(&stale, &update.records, check).expect("restores");
        assert!(old_b.has_lost_state());
        refuse_cmd(&mut old_b, CommandError::StateLost, |c| c.force_close(&signer_b()));
        refuse_cmd(&mut old_b, CommandError::WrongPhase, |c| {
            c.add_htlc(MilliSats::from_msat(1_000_000), paychan::core::PaymentHash([1; 32]), 2_000, onion())
        });
        // A reestablish after the loss gets the `error` again (the first may have been lost).
        let fx = old_b.handle_message(rb.clone(), &p.b.signer, tip()).unwrap();
        assert!(fx.broadcast.is_empty() && matches!(&fx.send[..], [Msg::Error { .. }]), "{fx:?}");
        refuse(
            &old_b,
            &p.b.signer,
            Msg::UpdateFee { channel_id: p.b.ch.channel_id(), feerate_per_kw: 3_000 },
            Misbehaviour::UnexpectedMessage,
        );
        // The up-to-date side refuses the stale numbers and closes.
        let err = refuse(&p.a.ch, &p.a.signer, rb, Misbehaviour::ReestablishMismatch);
        assert_eq!(err.action, Action::Close);
        // The stale side's `error` makes the peer fail the channel: it broadcasts its commitment.
        let fx = p.a.ch.handle_message(Msg::decode(&error.encode()).unwrap(), &p.a.signer, tip()).unwrap();
        assert!(matches!(fx.events.last(), Some(Event::FailedByPeer { .. })));
        let commitment = fx.broadcast[0].clone();
        assert_eq!(commitment, p.a.ch.holder_commitment_tx(&p.a.signer).unwrap());
        // An `error` to the stale side changes nothing and broadcasts nothing.
        let fx = old_b.handle_message(error, &p.b.signer, tip()).unwrap();
        assert!(fx.broadcast.is_empty() && fx.update.is_none());
        // The stale side still gets its own output of the peer's commitment.
        let h = paychan::core::BlockHeight(tip().height.0 + 1);
        let mut swept = old_b.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.b.signer).broadcast;
        for k in 1..=3 {
            let at = ChainTip { height: paychan::core::BlockHeight(h.0 + k) };
            swept.extend(old_b.handle_chain(ChainEvent::Tip(at), &p.b.signer).broadcast);
        }
        assert!(swept.iter().all(|t| t.input.iter().all(|i| i.previous_output.txid == commitment.compute_txid())));
        let b_balance = p.b.ch.balances(Side::Holder).holder.to_sat_floor();
        // Its to_remote output (after its one-block CSV with anchors) goes to its sweep script.
        let claim = swept.iter().find(|t| t.input.len() == 1).expect("to_remote swept");
        let spent = commitment.output[claim.input[0].previous_output.vout as usize].clone();
        assert_eq!(spent.value.to_sat(), b_balance);
        common::verify_spend(claim, &[spent]).expect("Core accepts the sweep");
    }
}
