//! Regressions found by the `lightning_state` fuzz target (reproducers in
//! `fuzz/artifacts-found/`): each test replays the scenario through the public API.

mod common;

use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, ScriptBuf, WPubkeyHash};
use common::ln::{onion, Pair};
use paychan::core::commitment::ChannelType;
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip};
use paychan::lightning::onchain::ClosingKind;
use paychan::lightning::{CommandError, Event, Msg};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

/// `lightning_state-revokes-broadcast-commitment`: after `force_close` the channel must not
/// revoke (or sign, or agree to) anything: a revocation of the broadcast commitment would hand the
/// peer everything once it confirms.
#[test]
fn a_force_closed_channel_takes_no_more_updates() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let pre = PaymentPreimage([4; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        // B fails the HTLC and signs; meanwhile A force-closes.
        let fx = p.b.ch.fail_htlc(id, vec![1, 2, 3]).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.b.ch.commit(&p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.force_close(&p.a.signer).unwrap();
        let broadcast = fx.broadcast.clone();
        p.a.absorb_pub(fx, &mut p.to_b);
        assert_eq!(broadcast.len(), 1);
        assert!(p.a.ch.is_off_chain_over());

        let before = p.a.ch.snapshot();
        let tip = ChainTip::at(p.tip);
        for m in p.to_a.drain(..).collect::<Vec<Msg>>() {
            let err = p.a.ch.handle_message(m, &p.a.signer, tip).expect_err("refused after force close");
            assert_eq!(p.a.ch.snapshot(), before, "state unchanged by {err:?}");
        }
        assert_eq!(
            p.a.ch.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion()).map(|_| ()),
            Err(CommandError::WrongPhase)
        );
        assert!(p.a.ch.commit(&p.a.signer).is_err());
        assert!(p.a.ch.update_fee(3_000).is_err());
        assert!(p.a.ch.shutdown(p2wpkh(1), (Amount::from_sat(1), Amount::from_sat(5_000)), &p.a.signer).is_err());
        assert_eq!(p.a.ch.snapshot(), before);

        // The broadcast commitment confirms: ours, not a lost state.
        let fx =
            p.a.ch
                .handle_chain(ChainEvent::Confirmed { tx: &broadcast[0], height: BlockHeight(p.tip + 1) }, &p.a.signer);
        assert!(!fx.events.contains(&Event::LostState));
        assert!(matches!(p.a.ch.closing_kind(), Some(ClosingKind::Holder(_))));
    }
}

/// Shutdown exchanged and the funder's `closing_signed` sent: returns the closing transaction the
/// fundee agreed to and broadcast, its answer still queued for the funder.
fn close_until_fundee_agrees(p: &mut Pair) -> bitcoin::Transaction {
    let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(200), Amount::from_sat(5_000)), &p.a.signer).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    assert!(p.deliver_to_b());
    let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.b.signer).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    assert!(p.deliver_to_a(), "shutdown reaches a, which proposes a fee");
    assert!(matches!(p.to_b.front(), Some(Msg::ClosingSigned { .. })));
    let fx = p.b.ch.handle_message(p.to_b.pop_front().unwrap(), &p.b.signer, ChainTip::at(p.tip)).unwrap();
    assert_eq!(fx.broadcast.len(), 1, "b agrees and broadcasts");
    let tx = fx.broadcast[0].clone();
    p.b.absorb_pub(fx, &mut p.to_a);
    tx
}

/// `lightning_state-coop-close-unrecognized`: the fundee's agreeing `closing_signed` is lost; the
/// closing transaction it broadcast is still ours, not a sign of lost state.
#[test]
fn the_funder_recognises_its_close_when_the_last_closing_signed_is_lost() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let tx = close_until_fundee_agrees(&mut p);
        common::verify_spend(&tx, &[p.funding_output()]).expect("Core accepts the closing transaction");
        p.to_a.clear();
        let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: BlockHeight(p.tip + 1) }, &p.a.signer);
        assert!(!fx.events.contains(&Event::LostState), "{:?}", fx.events);
        assert_eq!(p.a.ch.closing_kind(), Some(ClosingKind::Cooperative));
        let fx = p.b.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: BlockHeight(p.tip + 1) }, &p.b.signer);
        assert!(!fx.events.contains(&Event::LostState));
        assert_eq!(p.b.ch.closing_kind(), Some(ClosingKind::Cooperative));
    }
}

/// `lightning_state-update-fee-during-closing`: once the funder proposed a closing fee it sends
/// no more `update_fee` (which would stall the negotiation), and the agreement still completes.
#[test]
fn no_update_fee_once_closing_negotiation_started() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let tx = close_until_fundee_agrees(&mut p);
        let before = p.a.ch.snapshot();
        assert_eq!(p.a.ch.update_fee(5_000).map(|_| ()), Err(CommandError::Fee));
        assert_eq!(p.a.ch.snapshot(), before);
        p.run();
        assert_eq!(p.a.ch.closing_transaction(), Some(&tx), "a takes b's agreement");
    }
}

/// Found by the `simulate` test: a reconnection during shutdown made each side refuse the
/// other's retransmitted `shutdown` (BOLT #2 retransmits it), so the connection broke again at
/// every attempt and the channel could only be closed on chain. Now the negotiation resumes.
#[test]
fn closing_negotiation_survives_reconnections() {
    for ct in TYPES {
        // The funder's proposal is lost in a disconnection.
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(200), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        assert!(p.deliver_to_b());
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(5_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        assert!(p.deliver_to_a());
        assert!(matches!(p.to_b.front(), Some(Msg::ClosingSigned { .. })));
        p.reconnect();
        let broadcast = p.run();
        let tx = p.a.ch.closing_transaction().expect("a agreed after the reconnection").clone();
        assert_eq!(p.b.ch.closing_transaction(), Some(&tx));
        assert!(broadcast.contains(&tx));
        common::verify_spend(&tx, &[p.funding_output()]).expect("Core accepts it");

        // The fundee's agreement is lost: the funder completes after reconnecting; reconnecting
        // again once both agreed changes nothing.
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let tx = close_until_fundee_agrees(&mut p);
        p.reconnect();
        p.run();
        assert_eq!(p.a.ch.closing_transaction(), Some(&tx));
        p.reconnect();
        p.run();
        assert_eq!(p.a.ch.closing_transaction(), Some(&tx));
        assert_eq!(p.b.ch.closing_transaction(), Some(&tx));
    }
}

/// The snapshot `peer` persisted while in `phase`.
fn persisted_in(peer: &common::ln::Peer, phase: paychan::lightning::Phase) -> paychan::lightning::Channel {
    use paychan::driving::RestoreCheck;
    peer.persisted
        .iter()
        .filter_map(|(_, b)| paychan::lightning::Channel::restore(b, RestoreCheck::default()).ok())
        .find(|c| c.phase() == phase)
        .expect("a snapshot in that phase")
}

/// Found by the `simulate` test (lossy restarts): an opener restored from before
/// `funding_signed` while the peer runs the channel used to refuse every message forever. It now
/// knows it lost state, asks the peer to close with `error`, and sweeps its output of the
/// peer's commitment.
#[test]
fn an_opener_that_lost_funding_signed_asks_the_peer_to_close() {
    use paychan::lightning::Phase;
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        let mut old_a = persisted_in(&p.a, Phase::AwaitingFundingSigned);
        let fx = p.b.ch.handle_disconnect();
        assert!(fx.send.is_empty());
        let rb = p.b.ch.reestablish(&p.b.signer).unwrap();
        let fx = old_a.handle_message(rb.clone(), &p.a.signer, ChainTip::at(p.tip)).expect("not an error");
        assert_eq!(fx.events, vec![Event::LostState]);
        assert!(fx.broadcast.is_empty() && fx.update.is_some());
        let [error @ Msg::Error { .. }] = &fx.send[..] else { panic!("{fx:?}") };
        assert!(old_a.has_lost_state());
        // Asked again after another reconnection.
        let again = old_a.handle_message(rb, &p.a.signer, ChainTip::at(p.tip)).unwrap();
        assert_eq!(again.send, vec![error.clone()]);
        // The peer fails the channel; the opener sweeps its balance from the peer's commitment.
        let fx = p.b.ch.handle_message(error.clone(), &p.b.signer, ChainTip::at(p.tip)).unwrap();
        assert!(matches!(fx.events.last(), Some(Event::FailedByPeer { .. })));
        let commitment = fx.broadcast.first().expect("b broadcasts its commitment").clone();
        common::verify_spend(&commitment, &[p.funding_output()]).expect("Core accepts it");
        let h = BlockHeight(p.tip + 1);
        let mut swept = old_a.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer).broadcast;
        for k in 1..=3 {
            swept.extend(old_a.handle_chain(ChainEvent::Tip(ChainTip::at(h.0 + k)), &p.a.signer).broadcast);
        }
        let claim = swept.iter().find(|t| t.input.len() == 1).expect("a's output swept");
        let spent = commitment.output[claim.input[0].previous_output.vout as usize].clone();
        assert!(spent.value > Amount::from_sat(790_000), "a's balance less the commitment fee: {}", spent.value);
        common::verify_spend(claim, &[spent]).expect("Core accepts the sweep");
    }
}

/// Found by the `simulate` test: a peer restored from before it sent `channel_ready`, while the
/// other side had already sent an HTLC and its signature, could never catch up: the other side
/// did not retransmit `channel_ready` (BOLT #2: when both `next_commitment_number`s are 1), so
/// every update was refused.
#[test]
fn channel_ready_is_retransmitted_to_a_peer_that_lost_it() {
    use paychan::lightning::Phase;
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        let pre = PaymentPreimage([6; 32]);
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        // b's storage lost everything since `funding_signed`; it rescans the chain.
        p.b.ch = persisted_in(&p.b, Phase::AwaitingChannelReady);
        let kept = p.b.persisted.iter().position(|(id, _)| *id == p.b.ch.update_id()).unwrap();
        p.b.persisted.truncate(kept + 1);
        let funding = p.funding.clone();
        let fx = p.b.ch.handle_chain(ChainEvent::Confirmed { tx: &funding, height: BlockHeight(p.tip) }, &p.b.signer);
        p.b.absorb_pub(fx, &mut p.to_a);
        p.reconnect();
        p.settle();
        assert_eq!(p.b.ch.phase(), Phase::Normal);
        assert_eq!(p.b.ch.htlcs().len(), 1, "b has the HTLC");
        p.verify_commitments();
    }
}

/// `error` before the opener holds a signed commitment: the channel is over, nothing to
/// broadcast (the funding transaction was never broadcast).
#[test]
fn error_before_funding_signed_ends_the_channel() {
    use paychan::lightning::Phase;
    for ct in TYPES {
        let p = Pair::open(ct, 1_000_000, 0);
        let mut a = persisted_in(&p.a, Phase::AwaitingFundingSigned);
        let error = Msg::Error { channel_id: a.channel_id(), data: b"no".to_vec() };
        let fx = a.handle_message(error, &p.a.signer, ChainTip::at(p.tip)).unwrap();
        assert!(fx.broadcast.is_empty());
        assert!(matches!(fx.events.last(), Some(Event::FailedByPeer { data }) if data == b"no"));
        assert_eq!(a.phase(), Phase::Closed);
        let other = Msg::Error { channel_id: paychan::driving::ChannelId([9; 32]), data: vec![] };
        assert!(a.handle_message(other, &p.a.signer, ChainTip::at(p.tip)).is_err(), "another channel's error");
    }
}

/// `lightning_state-refused-add-then-commitment`: an `update_add_htlc` is refused (here: it
/// arrives with another channel's id), and the `commitment_signed` that follows on the same
/// connection covers it and an earlier HTLC. The refused HTLC is below a satoshi and changes no
/// output, so that signature still verifies: taking it would leave the peers disagreeing on the
/// HTLC set. The channel now takes nothing more on a connection after a refusal; reconnecting
/// resynchronises both sides.
#[test]
fn nothing_is_taken_after_a_refusal_until_reconnection() {
    use paychan::driving::{Action, ChannelId};
    use paychan::lightning::Misbehaviour;
    for ct in TYPES {
        // a's balance ends in 900 msat, so a 600-msat HTLC changes no output's satoshis.
        let mut p = Pair::open(ct, 1_000_000, 200_000_100);
        let tip = ChainTip::at(p.tip);
        let (first, fx) =
            p.a.ch
                .add_htlc(MilliSats::from_msat(30_000_000), PaymentPreimage([0x43; 32]).hash(), 2_000, onion())
                .unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        assert!(p.deliver_to_b());
        let (second, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(600), PaymentPreimage([0x44; 32]).hash(), 2_000, onion()).unwrap();
        let mut add = fx.send.into_iter().next().unwrap();
        if let Msg::UpdateAddHtlc { channel_id, .. } = &mut add {
            *channel_id = ChannelId([0xee; 32]);
        }
        let before = p.b.ch.snapshot();
        let err = p.b.ch.handle_message(add, &p.b.signer, tip).unwrap_err();
        assert_eq!((err.kind, err.action), (Misbehaviour::WrongChannel, Action::Warn));
        let mut fx = p.a.ch.commit(&p.a.signer).unwrap();
        let commitment = fx.send.remove(0);
        assert!(matches!(commitment, Msg::CommitmentSigned { .. }));
        p.a.absorb_pub(fx, &mut p.to_b);
        let err = p.b.ch.handle_message(commitment, &p.b.signer, tip).unwrap_err();
        assert_eq!((err.kind, err.action), (Misbehaviour::AfterRefusal, Action::Warn));
        assert!(p.b.ch.snapshot() == before, "b took nothing");
        // The embedder disconnects; on reconnection a retransmits both adds and its signature.
        p.reconnect();
        p.settle();
        let held = |ch: &paychan::lightning::Channel| ch.htlcs().iter().map(|h| (h.id, h.amount)).collect::<Vec<_>>();
        let both = vec![(first, MilliSats::from_msat(30_000_000)), (second, MilliSats::from_msat(600))];
        assert_eq!((held(&p.a.ch), held(&p.b.ch)), (both.clone(), both));
        assert!(p.b.ch.htlcs().iter().all(|h| h.is_irrevocably_committed()));
        p.verify_commitments();
    }
}

/// Both sides hold the same two latest commitments: each one's view of its own matches the
/// other's view of it, to the msat.
fn assert_same_commitments(p: &Pair) {
    use paychan::lightning::Side;
    let (a_own, b_of_a) = (p.a.ch.balances(Side::Holder), p.b.ch.balances(Side::Counterparty));
    let (b_own, a_of_b) = (p.b.ch.balances(Side::Holder), p.a.ch.balances(Side::Counterparty));
    for (own, seen) in [(a_own, b_of_a), (b_own, a_of_b)] {
        assert_eq!((own.holder, own.counterparty), (seen.counterparty, seen.holder));
        assert_eq!((own.offered, own.received), (seen.received, seen.offered));
    }
    p.verify_commitments();
}

/// Simulator seeds 45 and 50 (`tests/simulate.rs`), delivered in order as BOLT 8 guarantees. A
/// signs its HTLC while B offers one; B revokes and signs A's next commitment (both HTLCs, its
/// `revoke_and_ack` first); A, meanwhile, proposes a fee update. Taken in order, A accepts B's
/// signature. The simulator used to hand A the `commitment_signed` before the `revoke_and_ack`
/// (which no BOLT 8 connection can do): A then cannot know B has its HTLC in A's commitment, and
/// refuses the signature, changing nothing.
#[test]
fn crossed_updates_and_a_fee_update_in_flight_agree_on_the_commitment() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let amounts = [(7_852_423, PaymentPreimage([5; 32])), (35_010_776, PaymentPreimage([6; 32]))];
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(amounts[0].0), amounts[0].1.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let (_, fx) = p.b.ch.add_htlc(MilliSats::from_msat(amounts[1].0), amounts[1].1.hash(), 2_000, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        // B takes A's add and signature, revokes, and signs A's next commitment.
        assert!(p.deliver_to_b() && p.deliver_to_b());
        if !p.b.ch.is_awaiting_revoke() {
            let fx = p.b.ch.commit(&p.b.signer).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
        }
        assert_eq!(p.to_a.len(), 3);
        assert!(matches!(p.to_a[0], Msg::UpdateAddHtlc { .. }));
        assert!(matches!(p.to_a[1], Msg::RevokeAndAck { .. }) && matches!(p.to_a[2], Msg::CommitmentSigned { .. }));
        // A takes B's add, then proposes a fee update.
        assert!(p.deliver_to_a());
        let fx = p.a.ch.update_fee(2_120).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);

        // Out of order (the simulator's old network): refused, nothing changed.
        let mut early = p.a.ch.clone();
        let before = early.snapshot();
        let err = early.handle_message(p.to_a[1].clone(), &p.a.signer, ChainTip::at(p.tip)).unwrap_err();
        assert!(matches!(err.kind, paychan::lightning::Misbehaviour::BadSignature(_)), "{err:?}");
        assert_eq!(early.snapshot(), before);

        // In order: accepted, and both sides end on the same commitments.
        assert!(p.deliver_to_a() && p.deliver_to_a());
        assert_same_commitments(&p);
        p.settle();
        assert_same_commitments(&p);
        assert_eq!(p.a.ch.htlcs().iter().filter(|h| h.is_irrevocably_committed()).count(), 2);
    }
}

/// Simulator seed 145, delivered in order. B's `commitment_signed` is lost; B then takes A's HTLC
/// and signature and revokes. On BOLT 8 the loss breaks the connection, so A never sees that
/// `revoke_and_ack` before the reconnection; B retransmits its signature (which did not cover A's
/// HTLC) and then its revocation, and both sides agree. (The simulator used to deliver the
/// revocation after the lost signature on the same connection: A then counted its HTLC in its
/// own next commitment, which B's retransmitted signature rightly does not cover.)
#[test]
fn a_revocation_after_a_lost_signature_is_retransmitted_in_order() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 400_000_000);
        let (_, fx) =
            p.b.ch
                .add_htlc(MilliSats::from_msat(150_864_460), PaymentPreimage([7; 32]).hash(), 2_000, onion())
                .unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.b.ch.commit(&p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let (_, fx) =
            p.a.ch
                .add_htlc(MilliSats::from_msat(280_122_340), PaymentPreimage([8; 32]).hash(), 2_000, onion())
                .unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        // A gets B's add; B's signature is lost (and with it the connection, and whatever B
        // sends after it).
        assert!(p.deliver_to_a());
        let lost = p.to_a.pop_front();
        assert!(matches!(lost, Some(Msg::CommitmentSigned { .. })));
        assert!(p.deliver_to_b() && p.deliver_to_b());
        assert!(p.to_a.iter().any(|m| matches!(m, Msg::RevokeAndAck { .. })));
        p.reconnect();
        p.settle();
        assert_same_commitments(&p);
        assert_eq!(p.a.ch.htlcs().iter().filter(|h| h.is_irrevocably_committed()).count(), 2);
    }
}

/// The embedder's side of a crash between the write and the broadcast (docs/persistence.md §1:
/// persist first): `fx` is written to `peer`'s storage, then the process dies before anything is
/// broadcast or handed to the bumper; the peer restarts from storage. Returns the lost broadcasts.
fn crash_after_write(peer: &mut common::ln::Peer, fx: paychan::lightning::Effects) -> Vec<bitcoin::Transaction> {
    assert!(fx.update.is_some(), "the claim is persisted with the effects that broadcast it");
    let lost = peer.absorb_pub(fx, &mut std::collections::VecDeque::new());
    peer.restart();
    lost
}

/// Checks that `again` (what the restored channel broadcast on a new block) claims every output
/// `lost` claimed, each claim with its fee-bump request, and that the chain (consensus and
/// Bitcoin Core's interpreter) takes them after `commitment`: returns what they paid `peer`'s sweep
/// destination.
fn rebroadcast_pays(
    p: &Pair,
    commitment: &bitcoin::Transaction,
    lost: &[bitcoin::Transaction],
    fx: &paychan::lightning::Effects,
) -> u64 {
    assert!(!lost.is_empty(), "the claims went out with the write");
    let claimed = |txs: &[bitcoin::Transaction]| {
        let mut ops: Vec<bitcoin::OutPoint> =
            txs.iter().flat_map(|t| t.input.iter().map(|i| i.previous_output)).collect();
        ops.sort();
        ops
    };
    assert_eq!(claimed(&fx.broadcast), claimed(lost), "every lost claim is broadcast again");
    for tx in &fx.broadcast {
        assert!(fx.bumps.iter().any(|r| r.id() == tx.compute_txid()), "with its bump request");
    }
    let mut chain = common::chain::Chain::at(p.tip);
    chain.credit(&p.funding);
    chain.mine(commitment).expect("the commitment confirms");
    for tx in &fx.broadcast {
        assert!(tx.input.iter().all(|i| i.previous_output.txid == commitment.compute_txid()));
        let spent: Vec<bitcoin::TxOut> =
            tx.input.iter().map(|i| commitment.output[i.previous_output.vout as usize].clone()).collect();
        common::verify_spend(tx, &spent).expect("Core accepts the claim");
        chain.mine(tx).unwrap_or_else(|e| panic!("the chain refused {}: {e:?}", tx.compute_txid()));
    }
    let dest = p.a.ch.sweep_destination();
    fx.broadcast
        .iter()
        .flat_map(|t| t.output.iter())
        .filter(|o| o.script_pubkey == dest)
        .map(|o| o.value.to_sat())
        .sum()
}

/// Simulator seed 5822: the peer force-closed; the opener, handed the confirmed commitment,
/// wrote its `to_remote` sweep as broadcast and crashed before broadcasting it (or handing its
/// request to the bumper). The restored channel held the claim as broadcast and never sent it
/// again: the opener's whole balance (4,825,400 sat there) stayed on the peer's commitment. Every
/// claim of the channel now goes out again, with its request, on each new block until a spend
/// of its output confirms.
#[test]
fn a_sweep_lost_in_a_crash_after_its_write_is_broadcast_again() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        let fx = p.b.ch.force_close(&p.b.signer).unwrap();
        let commitment = fx.broadcast[0].clone();
        p.b.absorb_pub(fx, &mut p.to_a);
        let h = BlockHeight(p.tip + 1);
        let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer);
        let lost = crash_after_write(&mut p.a, fx);
        assert_eq!(p.a.ch.closing_kind(), Some(ClosingKind::Counterparty(0)));
        // The restarted embedder rescans the chain: nothing new at the same height.
        let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer);
        assert!(fx.broadcast.is_empty());
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(h.0)), &p.a.signer);
        assert!(fx.broadcast.is_empty());
        // The next block: the sweep again.
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(h.0 + 1)), &p.a.signer);
        p.a.absorb_pub(fx.clone(), &mut p.to_b);
        let got = rebroadcast_pays(&p, &commitment, &lost, &fx);
        let to_remote = commitment.output.iter().map(|o| o.value.to_sat()).find(|v| *v > 790_000).unwrap();
        assert!(got + 1_000 > to_remote && got < to_remote, "a's balance less the sweep fee: {got} of {to_remote}");
        // Once the sweep confirms the channel is resolved and stops.
        for tx in &fx.broadcast {
            let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx, height: BlockHeight(h.0 + 2) }, &p.a.signer);
            p.a.absorb_pub(fx, &mut p.to_b);
        }
        assert!(p.a.ch.is_fully_resolved());
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(h.0 + 3)), &p.a.signer);
        assert!(fx.broadcast.is_empty() && fx.bumps.is_empty());
    }
}

/// The same crash with a penalty: the peer broadcast a revoked commitment; the penalty (and the
/// `to_remote` sweep) written and lost in a crash before the broadcast go out again on the next
/// block, so the cheater's balance is still taken before its delay runs out.
#[test]
fn a_penalty_lost_in_a_crash_after_its_write_is_broadcast_again() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        let revoked = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap();
        let pre = PaymentPreimage([9; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(50_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        assert!(p.b.ch.holder_commitment_number() >= 2, "commitment 0 is revoked");
        let h = BlockHeight(p.tip + 1);
        let records = paychan::lightning::records::penalty_records(&p.a.records).unwrap();
        let fx =
            p.a.ch.handle_chain_with_history(ChainEvent::Confirmed { tx: &revoked, height: h }, &records, &p.a.signer);
        let lost = crash_after_write(&mut p.a, fx);
        assert!(matches!(p.a.ch.closing_kind(), Some(ClosingKind::Revoked(0))));
        let fx = p.a.ch.handle_chain_with_history(ChainEvent::Tip(ChainTip::at(h.0 + 1)), &records, &p.a.signer);
        p.a.absorb_pub(fx.clone(), &mut p.to_b);
        let got = rebroadcast_pays(&p, &revoked, &lost, &fx);
        let outputs: u64 = revoked.output.iter().map(|o| o.value.to_sat()).filter(|v| *v != 330).sum();
        assert!(got + 2_000 > outputs && got < outputs, "everything on the revoked commitment: {got} of {outputs}");
    }
}

/// The same crash with the commitment itself: the channel force-closes at an HTLC deadline (its
/// own decision, which no embedder makes again after a restart) and the process dies after the
/// write, before the broadcast. The restored channel is over off chain (it refuses every
/// message): without its commitment going out again on the next block nothing would ever be
/// published, and the HTLC it offered could not be timed out on chain before the one it pays
/// back upstream expires.
#[test]
fn a_commitment_lost_in_a_crash_after_its_write_is_broadcast_again() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        let pre = PaymentPreimage([10; 32]);
        let expiry = p.tip + 100;
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(50_000_000), pre.hash(), expiry, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let deadline = p.a.ch.next_deadline().expect("the HTLC's deadline").0;
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(deadline)), &p.a.signer);
        assert!(fx.events.iter().any(|e| matches!(e, Event::HtlcDeadline { .. })), "{:?}", fx.events);
        let lost = crash_after_write(&mut p.a, fx);
        assert_eq!(lost.len(), 1, "the commitment");
        assert!(p.a.ch.is_off_chain_over());
        // Restarted at the same height: nothing yet (and no deadline left to act on).
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(deadline)), &p.a.signer);
        assert!(fx.broadcast.is_empty());
        // The next block: the commitment again, with its request where it has an anchor.
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(deadline + 1)), &p.a.signer);
        assert_eq!(fx.broadcast, lost, "the same commitment");
        assert!(fx.update.is_some());
        assert_eq!(fx.bumps.len(), usize::from(ct == ChannelType::AnchorsZeroFeeHtlc));
        common::verify_spend(&fx.broadcast[0], &[p.funding_output()]).expect("Core accepts it");
        p.a.absorb_pub(fx, &mut p.to_b);
        // Once it confirms, the claims take over and it is not broadcast again.
        let h = BlockHeight(deadline + 2);
        let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &lost[0], height: h }, &p.a.signer);
        p.a.absorb_pub(fx, &mut p.to_b);
        assert_eq!(p.a.ch.closing_kind(), Some(ClosingKind::Holder(p.a.ch.holder_commitment_number())));
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(h.0 + 1)), &p.a.signer);
        assert!(!fx.broadcast.contains(&lost[0]));
    }
}
