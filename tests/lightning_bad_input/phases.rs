//! Messages in the wrong phase or to the wrong channel; `shutdown` and `closing_signed`.

use super::*;

#[test]
fn messages_in_the_wrong_phase_are_refused() {
    for ct in TYPES {
        let mut log = Vec::new();
        let p = open_logged(config(ct), config(ct), CAPACITY, PUSH, &mut log);
        let open = logged(&log, types::OPEN_CHANNEL);
        let accept = logged(&log, types::ACCEPT_CHANNEL);
        let created = logged(&log, types::FUNDING_CREATED);
        let signed = logged(&log, types::FUNDING_SIGNED);
        let ready_to_b = log.iter().find(|d| d.to_b && d.msg.type_number() == types::CHANNEL_READY).unwrap().clone();
        let ready_to_a = log.iter().find(|d| !d.to_b && d.msg.type_number() == types::CHANNEL_READY).unwrap().clone();
        let (sa, sb) = (signer_a(), signer_b());
        let state_of = |d: &Delivered| d.receiver.clone().expect("a receiver state");

        // open_channel is for Channel::accept only.
        refuse(&state_of(&accept), &sa, open.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&created), &sb, open.msg.clone(), Misbehaviour::UnexpectedMessage);
        // funding_created to the opener, before and after it sent its own.
        refuse(&state_of(&accept), &sa, created.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&signed), &sa, created.msg.clone(), Misbehaviour::UnexpectedMessage);
        // accept_channel twice.
        let mut a = state_of(&accept);
        let _ = a.handle_message(accept.msg.clone(), &sa, tip()).expect("first accept_channel");
        assert_eq!(a.phase(), Phase::AwaitingFundingTx);
        refuse(&a, &sa, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&signed), &sa, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        // accept_channel or funding_signed to the acceptor.
        refuse(&state_of(&created), &sb, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&state_of(&created), &sb, signed.msg.clone(), Misbehaviour::UnexpectedMessage);
        // funding_signed before funding_created was sent.
        refuse(&state_of(&accept), &sa, signed.msg.clone(), Misbehaviour::UnexpectedMessage);
        // funding_created twice.
        let mut b = state_of(&created);
        let _ = b.handle_message(created.msg.clone(), &sb, tip()).expect("first funding_created");
        refuse(&b, &sb, created.msg.clone(), Misbehaviour::UnexpectedMessage);

        // Normal operation before channel_ready, in both directions.
        let cid = p.a.ch.channel_id();
        for (d, s) in [(&ready_to_b, &sb), (&ready_to_a, &sa)] {
            let ch = state_of(d);
            assert_eq!(ch.phase(), Phase::AwaitingChannelReady);
            refuse(&ch, s, add_msg(cid, 0, 10_000_000, 2_000), Misbehaviour::UnexpectedMessage);
            let cs = Msg::CommitmentSigned { channel_id: cid, signature: junk_sig(1), htlc_signatures: vec![] };
            refuse(&ch, s, cs, Misbehaviour::UnexpectedMessage);
            refuse(&ch, s, Msg::UpdateFee { channel_id: cid, feerate_per_kw: 3_000 }, Misbehaviour::UnexpectedMessage);
            let fulfill = Msg::UpdateFulfillHtlc { channel_id: cid, id: 0, payment_preimage: PaymentPreimage([1; 32]) };
            refuse(&ch, s, fulfill, Misbehaviour::UnexpectedMessage);
            let point = *sb.per_commitment_point(CommitmentNumber::new(2).unwrap()).unwrap().public_key();
            let raa = Msg::RevokeAndAck {
                channel_id: cid,
                per_commitment_secret: sb.release_per_commitment_secret(CommitmentNumber::ZERO).unwrap(),
                next_per_commitment_point: point,
            };
            refuse(&ch, s, raa, Misbehaviour::BadRevocation);
            let closing = Msg::ClosingSigned {
                channel_id: cid,
                fee_satoshis: Amount::from_sat(1_000),
                signature: junk_sig(2),
                fee_range: None,
            };
            refuse(&ch, s, closing, Misbehaviour::UnexpectedMessage);
        }

        // channel_ready again: harmless if it repeats the point, refused otherwise.
        let mut pair = p;
        let fx =
            pair.b.ch.handle_message(ready_to_b.msg.clone(), &pair.b.signer, tip()).expect("repeated channel_ready");
        assert!(fx.is_empty());
        let Msg::ChannelReady { channel_id, .. } = ready_to_b.msg else { unreachable!() };
        let other_point = *sa.per_commitment_point(CommitmentNumber::new(5).unwrap()).unwrap().public_key();
        let ready = Msg::ChannelReady { channel_id, second_per_commitment_point: other_point };
        refuse(&pair.b.ch, &pair.b.signer, ready, Misbehaviour::UnexpectedMessage);
        pay(&mut pair, 1_000_000, 1);
        refuse(&pair.b.ch, &pair.b.signer, ready_to_b.msg.clone(), Misbehaviour::UnexpectedMessage);
        // Funding messages once open.
        refuse(&pair.a.ch, &pair.a.signer, accept.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&pair.b.ch, &pair.b.signer, created.msg.clone(), Misbehaviour::UnexpectedMessage);
        refuse(&pair.a.ch, &pair.a.signer, signed.msg.clone(), Misbehaviour::UnexpectedMessage);
    }
}

#[test]
fn shutdown_and_closing_signed_out_of_order_are_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let closing = |fee| Msg::ClosingSigned {
            channel_id: cid,
            fee_satoshis: Amount::from_sat(fee),
            signature: junk_sig(7),
            fee_range: Some((Amount::from_sat(100), Amount::from_sat(5_000))),
        };
        // closing_signed before any shutdown.
        refuse(&p.a.ch, &p.a.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        refuse(&p.b.ch, &p.b.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        // A shutdown script nobody can relay.
        let op_return = ScriptBuf::new_op_return([1u8; 10]);
        let bad = Msg::Shutdown { channel_id: cid, scriptpubkey: op_return.clone() };
        refuse(&p.a.ch, &p.a.signer, bad.clone(), Misbehaviour::NonStandardScript);
        refuse(
            &p.a.ch,
            &p.a.signer,
            Msg::Shutdown { channel_id: cid, scriptpubkey: ScriptBuf::new() },
            Misbehaviour::NonStandardScript,
        );
        refuse_cmd(&mut p.b.ch, CommandError::NonStandardScript, |c| {
            c.shutdown(op_return, (Amount::from_sat(100), Amount::from_sat(1_000)), &signer_b())
        });
        // An HTLC is in flight when b starts closing.
        let pre = PaymentPreimage([1; 32]);
        let id = add_and_settle(&mut p, true, 20_000_000, pre);
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let shutdown = p.to_a.front().cloned().expect("shutdown");
        p.run();
        assert!(p.a.take_events().contains(&Event::ShutdownReceived));
        // No update_add_htlc from the side that sent shutdown, and no second shutdown with
        // another script; the same one again (a retransmission) changes nothing.
        refuse(&p.a.ch, &p.a.signer, add_msg(cid, 0, 10_000_000, 2_000), Misbehaviour::Shutdown);
        let other = Msg::Shutdown { channel_id: cid, scriptpubkey: p2wpkh(0xbc) };
        refuse(&p.a.ch, &p.a.signer, other, Misbehaviour::UnexpectedMessage);
        let before = p.a.ch.snapshot();
        let fx = p.a.ch.handle_message(shutdown.clone(), &p.a.signer, tip()).expect("a retransmitted shutdown");
        assert!(fx.is_empty() && p.a.ch.snapshot() == before, "{fx:?}");
        refuse(&p.a.ch, &p.a.signer, elsewhere(&shutdown), Misbehaviour::WrongChannel);
        // Local commands: no new HTLCs either way.
        for peer in [&mut p.a, &mut p.b] {
            refuse_cmd(&mut peer.ch, CommandError::WrongPhase, |c| {
                c.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion())
            });
        }
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        // Both shut down, but the HTLC is still there: no fee negotiation yet.
        assert!(p.to_a.is_empty() && p.to_b.is_empty());
        refuse(&p.a.ch, &p.a.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        refuse(&p.b.ch, &p.b.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let closed = p.a.ch.closing_transaction().cloned().expect("closed");
        assert_eq!(p.b.ch.closing_transaction(), Some(&closed));
        // After the close: nothing more.
        refuse(&p.a.ch, &p.a.signer, closing(1_000), Misbehaviour::UnexpectedMessage);
        refuse(&p.b.ch, &p.b.signer, add_msg(cid, 1, 10_000_000, 2_000), Misbehaviour::Shutdown);
    }
}

#[test]
fn closing_signed_with_bad_signature_or_fee_is_refused() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        let fx =
            p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(2_000), Amount::from_sat(3_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(1_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        // b's shutdown reaches a, a proposes a fee in its range.
        p.deliver_to_a();
        let Some(Msg::ClosingSigned { fee_satoshis, signature, fee_range, .. }) = p.to_b.pop_front() else {
            panic!("closing_signed")
        };
        assert_eq!(fee_range, Some((Amount::from_sat(2_000), Amount::from_sat(3_000))));
        let closing =
            |fee, signature, fee_range| Msg::ClosingSigned { channel_id: cid, fee_satoshis: fee, signature, fee_range };
        let (b, sb) = (&mut p.b.ch, &p.b.signer);
        let bad = Misbehaviour::BadSignature(CommitmentSigError::Commitment(SignatureError::Invalid));
        refuse(b, sb, closing(fee_satoshis, junk_sig(3), fee_range), bad);
        refuse(b, sb, closing(fee_satoshis + Amount::from_sat(1), signature, fee_range), bad);
        // Signed but the ranges do not overlap.
        refuse(b, sb, closing(fee_satoshis, signature, fee_range), Misbehaviour::ClosingFee);
        refuse(b, sb, closing(fee_satoshis, signature, None), Misbehaviour::ClosingFee);
        // A fee larger than the funder's balance.
        refuse(b, sb, closing(Amount::from_sat(900_000), signature, fee_range), Misbehaviour::ClosingFee);
        assert!(b.closing_transaction().is_none());
    }
}

#[test]
fn wrong_channel_id_is_refused_for_every_message_kind() {
    for ct in TYPES {
        let log = scenario(ct);
        let mut seen = std::collections::BTreeSet::new();
        for d in &log {
            let (Some(receiver), Some(msg)) = (&d.receiver, with_channel_id(&d.msg, OTHER_ID)) else { continue };
            let err = refuse(&receiver.clone(), &d.signer(), msg, Misbehaviour::WrongChannel);
            assert_eq!(err.action, Action::Warn);
            seen.insert(d.msg.type_number());
        }
        assert_eq!(seen.len(), ALL_TYPES.len() - 1, "every kind but open_channel: {seen:?}");
    }
}
