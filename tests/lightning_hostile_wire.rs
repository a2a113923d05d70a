//! A peer that speaks BOLT #1/#2 as real implementations do (LDK 0.2's dummy reestablish point,
//! `warning`), or picks hostile values: a funding transaction that does not pay the channel
//! (CVE-2019-12998), a `shutdown` before its updates are signed, protocol slips meant to make us
//! force close. Both channel types each time; refusals leave the refusing side byte-identical.

mod common;

use std::collections::VecDeque;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use common::ln::{config, onion, Pair, Peer};
use paychan::core::commitment::signatures::sign_counterparty_commitment;
use paychan::core::commitment::ChannelType;
use paychan::core::encode::DecodeError;
use paychan::core::keys::{ChannelSecrets, PerCommitmentSecret, Seed};
use paychan::core::sign::{InMemorySigner, Signer};
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{Action, ChainEvent, ChainTip, ChannelId, RestoreCheck};
use paychan::lightning::htlc::Stage;
use paychan::lightning::{Channel, CommandError, Event, Misbehaviour, Msg, OpenParams, PeerError, Phase, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];
const CAPACITY: u64 = 1_000_000;
const PUSH: u64 = 200_000_000;

fn signer_a() -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0))
}

fn signer_b() -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0))
}

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn tip_of(p: &Pair) -> ChainTip {
    ChainTip::at(p.tip)
}

fn wire(m: &Msg) -> Msg {
    Msg::decode(&m.encode()).expect("decodes")
}

/// Feeds `msg` to a copy of `ch`, expects a refusal of `kind` with the state byte-identical.
#[track_caller]
fn refuse(ch: &Channel, signer: &InMemorySigner, msg: Msg, kind: Misbehaviour) -> PeerError {
    let before = ch.snapshot();
    let mut probe = ch.clone();
    let shown = format!("{msg:?}");
    let err = probe.handle_message(msg, signer, ChainTip::at(1_001)).expect_err(&shown);
    assert_eq!(err.kind, kind, "refusal of {shown}");
    assert!(probe.snapshot() == before, "refusing {shown} changed the state");
    err
}

fn pay(p: &mut Pair, from_a: bool, amount_msat: u64, n: u8) {
    let pre = PaymentPreimage([n; 32]);
    let (sender, out) = if from_a { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
    let (id, fx) = sender.ch.add_htlc(MilliSats::from_msat(amount_msat), pre.hash(), 2_000, onion()).unwrap();
    sender.absorb_pub(fx, out);
    p.settle();
    let (receiver, out) = if from_a { (&mut p.b, &mut p.to_a) } else { (&mut p.a, &mut p.to_b) };
    let fx = receiver.ch.fulfill_htlc(id, pre).unwrap();
    receiver.absorb_pub(fx, out);
    p.settle();
}

// ---------------------------------------------------------------------------------------------
// 8a. channel_reestablish: `my_current_per_commitment_point` is ignored (static_remotekey/anchors)
// ---------------------------------------------------------------------------------------------

/// The point LDK 0.2 sends in every `channel_reestablish` (lightning/src/ln/channel.rs,
/// `get_channel_reestablish`): `02 ff 02 02 … 02`, valid but unrelated to any commitment.
fn ldk_dummy_point() -> PublicKey {
    let mut bytes = [2u8; 33];
    bytes[1] = 0xff;
    PublicKey::from_slice(&bytes).expect("LDK's dummy point is a valid point")
}

fn with_point(m: &Msg, point: PublicKey) -> Msg {
    let Msg::ChannelReestablish {
        channel_id,
        next_commitment_number,
        next_revocation_number,
        your_last_per_commitment_secret,
        ..
    } = m.clone()
    else {
        panic!("channel_reestablish")
    };
    Msg::ChannelReestablish {
        channel_id,
        next_commitment_number,
        next_revocation_number,
        your_last_per_commitment_secret,
        my_current_per_commitment_point: point,
    }
}

#[test]
fn ldk_dummy_reestablish_point_does_not_lose_the_channel() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, true, 7_000_000, 1);
        pay(&mut p, false, 3_000_000, 2);
        // An HTLC of a in flight, signed, b's answer lost with the connection.
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), PaymentPreimage([3; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        p.deliver_to_b();
        p.to_a.clear();
        p.to_b.clear();
        let fx = p.a.ch.handle_disconnect();
        p.a.absorb_pub(fx, &mut VecDeque::new());
        let fx = p.b.ch.handle_disconnect();
        p.b.absorb_pub(fx, &mut VecDeque::new());
        // Both sides speak as LDK does: the dummy point, bytes on the wire.
        let ra = with_point(&p.a.ch.reestablish(&p.a.signer).unwrap(), ldk_dummy_point());
        let rb = with_point(&p.b.ch.reestablish(&p.b.signer).unwrap(), ldk_dummy_point());
        assert_eq!(&ra.encode()[ra.encode().len() - 33..], &ldk_dummy_point().serialize()[..]);
        let tip = tip_of(&p);
        let fx = p.b.ch.handle_message(wire(&ra), &p.b.signer, tip).expect("b takes LDK's reestablish");
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.handle_message(wire(&rb), &p.a.signer, tip).expect("a takes LDK's reestablish");
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        // The HTLC completes and both commitments are valid and balanced to the millisatoshi.
        let fx = p.b.ch.fulfill_htlc(1, PaymentPreimage([3; 32])).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        p.verify_commitments();
        let expected_b = PUSH + 7_000_000 - 3_000_000 + 5_000_000;
        assert_eq!(p.b.ch.balances(Side::Holder).holder, MilliSats::from_msat(expected_b));
        assert_eq!(p.a.ch.balances(Side::Holder).counterparty, MilliSats::from_msat(expected_b));
        assert!(!p.a.ch.has_lost_state() && !p.b.ch.has_lost_state());
    }
}

#[test]
fn lost_state_is_still_proven_with_ldks_dummy_point() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, true, 10_000_000, 1);
        let stale = p.b.ch.snapshot();
        pay(&mut p, true, 10_000_000, 2);
        pay(&mut p, true, 10_000_000, 3);
        let check = RestoreCheck { channel_id: Some(p.b.ch.channel_id()), min_update_id: 0 };
        let mut old_b = Channel::restore(&stale, check).unwrap();
        let fx = p.a.ch.handle_disconnect();
        p.a.absorb_pub(fx, &mut VecDeque::new());
        let _ = old_b.handle_disconnect();
        let ra = with_point(&p.a.ch.reestablish(&p.a.signer).unwrap(), ldk_dummy_point());
        let rb = with_point(&old_b.reestablish(&p.b.signer).unwrap(), ldk_dummy_point());
        // The stale side recognises a's proof (its own revealed secret) whatever the point.
        let fx = old_b.handle_message(wire(&ra), &p.b.signer, tip_of(&p)).expect("a proof is not an error");
        assert_eq!(fx.events, vec![Event::LostState]);
        assert!(fx.broadcast.is_empty(), "the stale side must not broadcast its revoked commitment");
        assert!(old_b.has_lost_state());
        // The up-to-date side refuses the stale numbers (no proof of anything).
        let err = refuse(&p.a.ch, &p.a.signer, rb.clone(), Misbehaviour::ReestablishMismatch);
        assert_eq!(err.action, Action::Close);
        // A wrong `your_last_per_commitment_secret` is refused with the dummy point as before.
        let Msg::ChannelReestablish { channel_id, next_commitment_number, next_revocation_number, .. } = ra else {
            panic!()
        };
        let lie = Msg::ChannelReestablish {
            channel_id,
            next_commitment_number,
            next_revocation_number,
            your_last_per_commitment_secret: PerCommitmentSecret::from_bytes([0x42; 32]),
            my_current_per_commitment_point: ldk_dummy_point(),
        };
        refuse(&p.b.ch, &p.b.signer, lie, Misbehaviour::ReestablishMismatch);
    }
}

// ---------------------------------------------------------------------------------------------
// 8b. shutdown only once our updates are signed
// ---------------------------------------------------------------------------------------------

/// Whether `receiver` holds updates from its peer that no `commitment_signed` covered yet: what
/// LDK checks ("Got shutdown with remote pending HTLCs") before it fails the channel.
fn has_unsigned_updates_from_peer(receiver: &Channel) -> bool {
    receiver.htlcs().iter().any(|h| {
        (h.add.sender == Side::Counterparty && h.add.stage == Stage::Announced)
            || h.remove.as_ref().is_some_and(|(_, r)| r.sender == Side::Counterparty && r.stage == Stage::Announced)
    })
}

/// Delivers everything both ways, asserting that no `shutdown` reaches a peer that still holds
/// unsigned updates of the sender; returns the broadcasts.
fn run_checking_shutdown(p: &mut Pair) -> Vec<Transaction> {
    let mut out = Vec::new();
    loop {
        let mut progressed = false;
        while let Some(m) = p.to_b.pop_front() {
            if matches!(m, Msg::Shutdown { .. }) {
                assert!(!has_unsigned_updates_from_peer(&p.b.ch), "a sent shutdown before signing its updates");
            }
            let fx = p.b.ch.handle_message(m.clone(), &p.b.signer, tip_of(p)).unwrap_or_else(|e| panic!("{m:?}: {e}"));
            out.extend(p.b.absorb_pub(fx, &mut p.to_a));
            progressed = true;
        }
        while let Some(m) = p.to_a.pop_front() {
            if matches!(m, Msg::Shutdown { .. }) {
                assert!(!has_unsigned_updates_from_peer(&p.a.ch), "b sent shutdown before signing its updates");
            }
            let fx = p.a.ch.handle_message(m.clone(), &p.a.signer, tip_of(p)).unwrap_or_else(|e| panic!("{m:?}: {e}"));
            out.extend(p.a.absorb_pub(fx, &mut p.to_b));
            progressed = true;
        }
        if !progressed {
            return out;
        }
    }
}

/// Runs both sides to the end of a cooperative close; returns the closing transaction.
fn close_out(p: &mut Pair) -> Transaction {
    let mut broadcast = run_checking_shutdown(p);
    for _ in 0..10 {
        for peer in [&mut p.a, &mut p.b] {
            if peer.ch.has_unsigned_changes() && !peer.ch.is_awaiting_revoke() {
                let out = if peer.ch.is_funder() { &mut p.to_b } else { &mut p.to_a };
                let fx = peer.ch.commit(&peer.signer).unwrap();
                peer.absorb_pub(fx, out);
            }
        }
        broadcast.extend(run_checking_shutdown(p));
    }
    assert_eq!(p.a.ch.phase(), Phase::Closed);
    assert_eq!(p.b.ch.phase(), Phase::Closed);
    let tx = p.a.ch.closing_transaction().expect("agreed").clone();
    assert_eq!(Some(&tx), p.b.ch.closing_transaction());
    assert!(broadcast.contains(&tx));
    tx
}

fn paid_to(tx: &Transaction, script: &ScriptBuf) -> u64 {
    tx.output.iter().filter(|o| &o.script_pubkey == script).map(|o| o.value.to_sat()).sum()
}

#[test]
fn shutdown_requested_with_unsigned_updates_goes_out_after_their_commitment_signed() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        // a fulfils b's HTLC but has not signed the removal yet.
        let pre = PaymentPreimage([5; 32]);
        let (id, fx) = p.b.ch.add_htlc(MilliSats::from_msat(9_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let fx = p.a.ch.fulfill_htlc(id, pre).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        assert!(p.a.ch.has_unsigned_changes());
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(100), Amount::from_sat(50_000)), &p.a.signer).unwrap();
        // The removal is signed first, and only then does the `shutdown` go.
        assert!(
            matches!(&fx.send[..], [Msg::CommitmentSigned { .. }, Msg::Shutdown { .. }]),
            "commitment_signed before shutdown: {:?}",
            fx.send
        );
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(50_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let tx = close_out(&mut p);
        // Whole to the satoshi: b has its push plus the HTLC it paid back... minus nothing; a
        // (the funder) pays the closing fee.
        let fee = CAPACITY - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
        assert_eq!(paid_to(&tx, &p2wpkh(0xbb)), (PUSH - 9_000_000) / 1_000);
        assert_eq!(paid_to(&tx, &p2wpkh(0xaa)), (CAPACITY * 1_000 - PUSH + 9_000_000) / 1_000 - fee);
    }
}

#[test]
fn shutdown_held_while_awaiting_revocation_survives_restore_and_reconnection() {
    for ct in TYPES {
        for reconnect in [false, true] {
            let mut p = Pair::open(ct, CAPACITY, PUSH);
            // a's first HTLC is signed and waits for b's revocation; its second cannot be signed yet.
            let (_, fx) =
                p.a.ch
                    .add_htlc(MilliSats::from_msat(6_000_000), PaymentPreimage([1; 32]).hash(), 2_000, onion())
                    .unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let fx = p.a.ch.commit(&p.a.signer).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let (_, fx) =
                p.a.ch
                    .add_htlc(MilliSats::from_msat(4_000_000), PaymentPreimage([2; 32]).hash(), 2_000, onion())
                    .unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            assert_eq!(p.a.ch.commit(&p.a.signer).unwrap_err(), CommandError::WrongPhase);
            let range = (Amount::from_sat(100), Amount::from_sat(50_000));
            let fx = p.a.ch.shutdown(p2wpkh(0xaa), range, &p.a.signer).unwrap();
            assert!(fx.send.is_empty(), "held while an update of ours is unsigned: {:?}", fx.send);
            let update = fx.update.clone().expect("the held shutdown is persisted");
            p.a.absorb_pub(fx, &mut p.to_b);
            assert_eq!(p.a.ch.phase(), Phase::ShuttingDown);
            // A second request is refused, the state unchanged.
            let before = p.a.ch.snapshot();
            assert_eq!(p.a.ch.shutdown(p2wpkh(0xab), range, &p.a.signer).unwrap_err(), CommandError::WrongPhase);
            assert!(p.a.ch.snapshot() == before);
            // Restored from what it persisted, a still holds it.
            let check = RestoreCheck { channel_id: Some(p.a.ch.channel_id()), min_update_id: update.update_id };
            let stored = &p.a.persisted.last().expect("the held shutdown's write").1;
            let restored =
                Channel::restore_with_records(stored, &p.a.records, check).expect("restores the held shutdown");
            assert!(restored.snapshot() == p.a.ch.snapshot());
            p.a.ch = restored;
            if reconnect {
                // b gets a's first HTLC and signature; its answers are lost with the connection.
                p.deliver_to_b();
                p.deliver_to_b();
                p.to_a.clear();
                p.to_b.clear();
                p.reconnect();
            }
            let broadcast = run_checking_shutdown(&mut p);
            assert!(broadcast.is_empty());
            assert!(
                p.b.events.iter().any(|e| matches!(e, Event::ShutdownReceived)),
                "the held shutdown went out once a's updates were signed"
            );
            assert_eq!(p.a.ch.htlcs().len(), 2, "both HTLCs made it");
            // Both HTLCs settle (b fulfils them), then the close completes.
            for (id, pre) in [(0, [1; 32]), (1, [2; 32])] {
                p.settle();
                let fx = p.b.ch.fulfill_htlc(id, PaymentPreimage(pre)).unwrap();
                p.b.absorb_pub(fx, &mut p.to_a);
            }
            let fx = p.b.ch.shutdown(p2wpkh(0xbb), range, &p.b.signer).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
            let tx = close_out(&mut p);
            let fee = CAPACITY - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
            assert_eq!(paid_to(&tx, &p2wpkh(0xbb)), (PUSH + 10_000_000) / 1_000);
            assert_eq!(paid_to(&tx, &p2wpkh(0xaa)), (CAPACITY * 1_000 - PUSH - 10_000_000) / 1_000 - fee);
        }
    }
}

#[test]
fn peer_shutdown_with_its_updates_unsigned_gets_a_warning_not_a_close() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let cid = p.a.ch.channel_id();
        // a announces an HTLC and, without signing it, asks to close (BOLT #2 forbids it).
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(6_000_000), PaymentPreimage([1; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        let commitment_before = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap();
        let hostile = Msg::Shutdown { channel_id: cid, scriptpubkey: p2wpkh(0xaa) };
        let err = refuse(&p.b.ch, &p.b.signer, hostile.clone(), Misbehaviour::Shutdown);
        assert_eq!(err.action, Action::Warn);
        let Some(Msg::Warning { channel_id, data }) = err.warning(cid) else { panic!("a warning to send") };
        assert_eq!(channel_id, cid);
        assert!(!data.is_empty());
        assert!(!p.b.events.iter().any(|e| matches!(e, Event::ShutdownReceived)));
        // Nothing of b's moved: same commitment, nothing broadcast.
        assert_eq!(p.b.ch.holder_commitment_tx(&p.b.signer).unwrap(), commitment_before);
        // After the reconnection (which forgets a's unsigned add) and a signature, the same
        // `shutdown` is fine.
        p.reconnect();
        p.settle();
        assert!(!has_unsigned_updates_from_peer(&p.b.ch));
        let fx = p.b.ch.handle_message(hostile, &p.b.signer, tip_of(&p)).expect("a clean shutdown");
        p.b.absorb_pub(fx, &mut p.to_a);
        assert!(p.b.events.iter().any(|e| matches!(e, Event::ShutdownReceived)));
    }
}

// ---------------------------------------------------------------------------------------------
// 9. BOLT #1 `warning`, and slips that are not worth a force close
// ---------------------------------------------------------------------------------------------

#[test]
fn warning_has_the_bolt1_encoding_of_error_with_type_1() {
    let id = ChannelId([0x5a; 32]);
    for data in [vec![], b"bad htlc id".to_vec(), vec![0xff; 300]] {
        let warning = Msg::Warning { channel_id: id, data: data.clone() };
        let bytes = warning.encode();
        let mut expected = vec![0x00, 0x01];
        expected.extend_from_slice(&id.0);
        expected.extend_from_slice(&(data.len() as u16).to_be_bytes());
        expected.extend_from_slice(&data);
        assert_eq!(bytes, expected);
        assert_eq!(warning.type_number(), 1);
        assert_eq!(Msg::decode(&bytes), Ok(warning));
        // Identical to `error` but for the type.
        let error = Msg::Error { channel_id: id, data }.encode();
        assert_eq!((&error[..2], &error[2..]), (&[0x00, 0x11][..], &bytes[2..]));
        // Truncated anywhere: an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(Msg::decode(&bytes[..cut]).is_err());
        }
    }
    // The all-zero channel id: about the connection.
    let conn = Msg::Warning { channel_id: ChannelId::ZERO, data: b"x".to_vec() };
    assert_eq!(Msg::decode(&conn.encode()), Ok(conn));
    // Longer text than the length field holds is cut, as for `error`.
    let long = Msg::Warning { channel_id: id, data: vec![7; 70_000] };
    let Ok(Msg::Warning { data, .. }) = Msg::decode(&long.encode()) else { panic!() };
    assert_eq!(data.len(), 65_535);
}

#[test]
fn unknown_message_type_is_reported_with_its_full_number() {
    // 0x0111 would have been reported as 0x11 (`error`'s number) and 0x8020 as 0x20
    // (`open_channel`'s); an embedder must tell odd (ignore) from even (disconnect) on the full
    // number.
    for ty in [0x0111u16, 0x8020, 0x0100, 0xffff, 2, 3] {
        let mut bytes = ty.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 40]);
        assert_eq!(Msg::decode(&bytes), Err(DecodeError::UnknownMessageType(ty)));
    }
}

#[test]
fn peer_warning_closes_nothing() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, true, 5_000_000, 1);
        let cid = p.b.ch.channel_id();
        for (channel_id, refused_before) in
            [(cid, false), (ChannelId::ZERO, false), (ChannelId([9; 32]), false), (cid, true)]
        {
            let mut b = p.b.ch.clone();
            if refused_before {
                // Even on a connection where we already refused something.
                let bad = Msg::UpdateFee { channel_id: cid, feerate_per_kw: 1 };
                assert!(b.handle_message(bad, &p.b.signer, tip_of(&p)).is_err());
            }
            let before = b.snapshot();
            let m = wire(&Msg::Warning { channel_id, data: b"please reconnect".to_vec() });
            let fx = b.handle_message(m, &p.b.signer, tip_of(&p)).expect("a warning is taken");
            assert!(fx.is_empty(), "a warning does nothing: {fx:?}");
            assert!(b.snapshot() == before);
            assert_eq!(b.phase(), Phase::Normal);
        }
    }
}

/// A refused slip: a warning to send, the state byte-identical, then a reconnection that carries
/// the channel on as if nothing happened.
#[track_caller]
fn slip_gets_a_warning(p: &mut Pair, to_b: bool, msg: Msg, kind: Misbehaviour) {
    let (receiver, signer) = if to_b { (&p.b.ch, &p.b.signer) } else { (&p.a.ch, &p.a.signer) };
    let cid = receiver.channel_id();
    let commitment = receiver.holder_commitment_tx(signer).unwrap();
    let err = refuse(receiver, signer, msg, kind);
    assert_eq!(err.action, Action::Warn, "{kind:?} puts no money at risk: warning and disconnection");
    assert!(matches!(err.warning(cid), Some(Msg::Warning { channel_id, .. }) if channel_id == cid));
    assert_eq!(receiver.holder_commitment_tx(signer).unwrap(), commitment);
}

#[test]
fn protocol_slips_get_a_warning_not_a_force_close() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, true, 5_000_000, 1);
        let cid = p.a.ch.channel_id();
        let add = |id: u64, amount: u64, expiry: u32| Msg::UpdateAddHtlc {
            channel_id: cid,
            id,
            amount_msat: MilliSats::from_msat(amount),
            payment_hash: PaymentPreimage([8; 32]).hash(),
            cltv_expiry: expiry,
            onion_routing_packet: onion(),
        };
        slip_gets_a_warning(&mut p, true, add(7, 1_000_000, 2_000), Misbehaviour::HtlcId);
        slip_gets_a_warning(&mut p, true, add(1, 0, 2_000), Misbehaviour::HtlcBelowMinimum);
        slip_gets_a_warning(&mut p, true, add(1, 1_000_000, 500_000_000), Misbehaviour::BadExpiry);
        slip_gets_a_warning(&mut p, true, add(1, CAPACITY * 1_000, 2_000), Misbehaviour::CannotAfford);
        let fulfil = Msg::UpdateFulfillHtlc { channel_id: cid, id: 40, payment_preimage: PaymentPreimage([1; 32]) };
        slip_gets_a_warning(&mut p, false, fulfil, Misbehaviour::UnknownHtlc);
        let malformed =
            Msg::UpdateFailMalformedHtlc { channel_id: cid, id: 0, sha256_of_onion: [0; 32], failure_code: 0x4000 };
        slip_gets_a_warning(&mut p, false, malformed, Misbehaviour::MalformedWithoutBadOnion);
        // The fundee may not change the fee; the funder not out of bounds.
        slip_gets_a_warning(
            &mut p,
            false,
            Msg::UpdateFee { channel_id: cid, feerate_per_kw: 3_000 },
            Misbehaviour::NotFunder,
        );
        slip_gets_a_warning(&mut p, true, Msg::UpdateFee { channel_id: cid, feerate_per_kw: 1 }, Misbehaviour::Feerate);
        // A signature over nothing new.
        let key = SecretKey::from_slice(&[1; 32]).unwrap();
        let sig = Secp256k1::signing_only().sign_ecdsa(&Message::from_digest([1; 32]), &key);
        let cs = Msg::CommitmentSigned { channel_id: cid, signature: sig, htlc_signatures: vec![] };
        slip_gets_a_warning(&mut p, true, cs, Misbehaviour::NoChanges);
        // An HTLC of a's, committed, and the wrong preimage for it.
        let (id, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(3_000_000), PaymentPreimage([4; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let wrong = Msg::UpdateFulfillHtlc { channel_id: cid, id, payment_preimage: PaymentPreimage([5; 32]) };
        slip_gets_a_warning(&mut p, false, wrong, Misbehaviour::WrongPreimage);
        // Refused, warned, reconnected: the channel goes on, every satoshi where it was.
        p.reconnect();
        p.settle();
        let fx = p.b.ch.fulfill_htlc(id, PaymentPreimage([4; 32])).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        p.verify_commitments();
        assert_eq!(p.b.ch.balances(Side::Holder).holder, MilliSats::from_msat(PUSH + 5_000_000 + 3_000_000));
    }
}

#[test]
fn a_revocation_that_does_not_match_or_a_bad_commitment_signature_still_forces_a_close() {
    // What reconnecting cannot mend: the peer keeps a commitment it did not revoke, or the sides
    // disagree on what they signed (the same signature comes back after a reconnection).
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(3_000_000), PaymentPreimage([4; 32]).hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.deliver_to_b();
        let Some(Msg::CommitmentSigned { channel_id, signature, htlc_signatures }) = p.to_b.front().cloned() else {
            panic!()
        };
        let mut forged = signature.serialize_compact();
        forged[20] ^= 1;
        let forged = Msg::CommitmentSigned {
            channel_id,
            signature: bitcoin::secp256k1::ecdsa::Signature::from_compact(&forged).unwrap(),
            htlc_signatures,
        };
        let before = p.b.ch.snapshot();
        let mut probe = p.b.ch.clone();
        let err = probe.handle_message(forged, &p.b.signer, tip_of(&p)).expect_err("a forged signature");
        assert!(matches!(err.kind, Misbehaviour::BadSignature(_)), "{err}");
        assert_eq!((err.action, err.warning(channel_id)), (Action::ForceClose, None));
        assert!(probe.snapshot() == before);
        p.deliver_to_b();
        let Some(Msg::RevokeAndAck { channel_id, next_per_commitment_point, .. }) = p.to_a.pop_front() else {
            panic!()
        };
        let forged = Msg::RevokeAndAck {
            channel_id,
            per_commitment_secret: PerCommitmentSecret::from_bytes([0x11; 32]),
            next_per_commitment_point,
        };
        let err = refuse(&p.a.ch, &p.a.signer, forged, Misbehaviour::BadRevocation);
        assert_eq!(err.action, Action::ForceClose);
        assert_eq!(err.warning(channel_id), None);
    }
}

// ---------------------------------------------------------------------------------------------
// 10. The funding output (CVE-2019-12998)
// ---------------------------------------------------------------------------------------------

fn funding_tx_with(outputs: Vec<TxOut>, n: u8) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

/// An acceptor b (honest) after a hostile opener's `funding_created` for output `vout` of `bad`,
/// a transaction that does not pay the channel there, with a valid signature on b's first
/// commitment (the opener signs what it likes). Returns b (waiting for the funding to confirm),
/// its `funding_signed`, and the script and value the funding should have paid.
fn fundee_of_bad_funding(ct: ChannelType, bad: &Transaction, vout: u32) -> (Peer, Msg, ScriptBuf, Amount) {
    let (sa, sb) = (signer_a(), signer_b());
    let tip = ChainTip::at(1_000);
    let params = OpenParams {
        config: config(ct),
        temporary_channel_id: ChannelId([7; 32]),
        funding: Amount::from_sat(CAPACITY),
        push: MilliSats::from_msat(PUSH),
        feerate_per_kw: 2_500,
    };
    let (mut a, fx) = Channel::open(params, &sa, tip).unwrap();
    let Msg::OpenChannel(open) = wire(&fx.send[0]) else { panic!() };
    let (chb, fx) = Channel::accept(&open, config(ct), &sb, tip).unwrap();
    let mut b = Peer { ch: chb, signer: sb, events: vec![], persisted: vec![], records: vec![] };
    let mut to_a = VecDeque::new();
    b.absorb_pub(fx, &mut to_a);
    let fx = a.handle_message(to_a.pop_front().unwrap(), &sa, tip).unwrap();
    let Some(Event::FundingGenerationReady { script_pubkey, value }) = fx.events.first().cloned() else { panic!() };
    // The opener's own channel takes only a transaction that pays the channel…
    let mut outputs = vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: p2wpkh(1) }; vout as usize];
    outputs.push(TxOut { value, script_pubkey: script_pubkey.clone() });
    let good = funding_tx_with(outputs, 3);
    let _created = a.funding_tx(good.clone(), &sa).unwrap();
    // …so the hostile opener signs b's first commitment over `bad`'s outpoint by hand.
    let mut snapshot = a.snapshot();
    let (good_id, bad_id) = (
        ChannelId::from_funding(&OutPoint { txid: good.compute_txid(), vout }),
        ChannelId::from_funding(&OutPoint { txid: bad.compute_txid(), vout }),
    );
    assert!(replace_all(&mut snapshot, good.compute_txid().as_byte_array(), bad.compute_txid().as_byte_array()) >= 1);
    replace_all(&mut snapshot, &good_id.0, &bad_id.0);
    let forged = Channel::restore(&snapshot, RestoreCheck { channel_id: None, min_update_id: 0 }).unwrap();
    assert_eq!(forged.funding_outpoint(), Some(OutPoint { txid: bad.compute_txid(), vout }));
    let built = forged.counterparty_commitment().expect("b's first commitment");
    let signature = sign_counterparty_commitment(&sa, &built).unwrap().commitment.signature;
    let created = Msg::FundingCreated {
        temporary_channel_id: ChannelId([7; 32]),
        funding_txid: bad.compute_txid(),
        funding_output_index: vout as u16,
        signature,
    };
    let fx = b.ch.handle_message(wire(&created), &b.signer, tip).expect("the signature is valid for that outpoint");
    let signed = fx.send[0].clone();
    b.absorb_pub(fx, &mut to_a);
    assert_eq!(b.ch.phase(), Phase::AwaitingChannelReady);
    (b, signed, script_pubkey, value)
}

/// The fundee sees `bad` confirm: the channel fails, typed, and is never used; b's signature
/// spends nothing that exists.
fn fundee_refuses_to_use(ct: ChannelType, bad: Transaction, vout: u32) {
    let (mut b, _, script, value) = fundee_of_bad_funding(ct, &bad, vout);
    let txid = bad.compute_txid();
    // What b signed (and holds) spends nothing that exists: Bitcoin Core's interpreter refuses
    // b's first commitment against what the outpoint really holds, and accepts it only against
    // the output that was agreed and never made.
    let commitment = b.ch.holder_commitment_tx(&b.signer).unwrap();
    if let Some(real) = bad.output.get(vout as usize) {
        assert!(common::verify_spend(&commitment, std::slice::from_ref(real)).is_err());
    }
    common::verify_spend(&commitment, &[TxOut { value, script_pubkey: script }]).expect("valid on the agreed output");
    let fx = b.ch.handle_chain(ChainEvent::Confirmed { tx: &bad, height: BlockHeight(1_001) }, &b.signer);
    assert!(fx.update.is_some(), "the failure is persisted");
    assert_eq!(fx.events, vec![Event::InvalidFunding { txid }]);
    assert!(matches!(&fx.send[..], [Msg::Error { .. }]), "the opener is told: {:?}", fx.send);
    assert!(fx.broadcast.is_empty());
    b.absorb_pub(fx, &mut VecDeque::new());
    assert!(b.ch.has_invalid_funding());
    assert_eq!(b.ch.phase(), Phase::Closed);
    let cid = b.ch.channel_id();
    // Deep enough, whatever the chain says again: never `channel_ready`.
    for h in 1_001..1_020 {
        let fx = b.ch.handle_chain(ChainEvent::Tip(ChainTip::at(h)), &b.signer);
        assert!(!fx.send.iter().any(|m| matches!(m, Msg::ChannelReady { .. })));
        let fx = b.ch.handle_chain(ChainEvent::Confirmed { tx: &bad, height: BlockHeight(1_001) }, &b.signer);
        assert!(fx.is_empty());
    }
    // The opener's `channel_ready` and HTLCs are refused; the channel never opens.
    let point = *signer_a()
        .per_commitment_point(paychan::core::commitment::CommitmentNumber::new(1).unwrap())
        .unwrap()
        .public_key();
    let ready = Msg::ChannelReady { channel_id: cid, second_per_commitment_point: point };
    refuse(&b.ch, &b.signer, ready, Misbehaviour::UnexpectedMessage);
    let add = Msg::UpdateAddHtlc {
        channel_id: cid,
        id: 0,
        amount_msat: MilliSats::from_msat(1_000_000),
        payment_hash: PaymentPreimage([1; 32]).hash(),
        cltv_expiry: 2_000,
        onion_routing_packet: onion(),
    };
    refuse(&b.ch, &b.signer, add, Misbehaviour::UnexpectedMessage);
    assert!(!b.events.iter().any(|e| matches!(e, Event::ChannelReady { .. })));
    // Nothing to broadcast either: b's commitment would spend an output that does not exist.
    let before = b.ch.snapshot();
    assert_eq!(b.ch.force_close(&b.signer).unwrap_err(), CommandError::WrongPhase);
    assert_eq!(
        b.ch.shutdown(p2wpkh(2), (Amount::from_sat(1), Amount::from_sat(2)), &b.signer).unwrap_err(),
        CommandError::WrongPhase
    );
    assert!(b.ch.snapshot() == before);
    // Each reconnection tells the opener again (the first `error` may have been lost).
    let reestablish = Msg::ChannelReestablish {
        channel_id: cid,
        next_commitment_number: 1,
        next_revocation_number: 0,
        your_last_per_commitment_secret: PerCommitmentSecret::from_bytes([0; 32]),
        my_current_per_commitment_point: point,
    };
    let fx = b.ch.clone().handle_message(reestablish, &b.signer, ChainTip::at(1_020)).unwrap();
    assert!(matches!(&fx.send[..], [Msg::Error { .. }]) && fx.broadcast.is_empty(), "{fx:?}");
    // Restored, it remembers.
    let restored =
        Channel::restore(&b.persisted.last().unwrap().1, RestoreCheck { channel_id: Some(cid), min_update_id: 0 })
            .unwrap();
    assert!(restored.has_invalid_funding());
}

#[test]
fn funding_paying_the_wrong_amount_is_never_used() {
    for ct in TYPES {
        for (vout, delta) in [(0u32, -1i64), (1, 1), (0, -(CAPACITY as i64) / 2)] {
            let (_, _, script, value) = fundee_of_bad_funding(ct, &funding_tx_with(vec![], 9), 0);
            let wrong = Amount::from_sat((value.to_sat() as i64 + delta) as u64);
            let mut outputs = vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: p2wpkh(1) }; vout as usize];
            outputs.push(TxOut { value: wrong, script_pubkey: script });
            fundee_refuses_to_use(ct, funding_tx_with(outputs, 4), vout);
        }
    }
}

#[test]
fn funding_paying_the_wrong_script_is_never_used() {
    for ct in TYPES {
        let (_, _, script, value) = fundee_of_bad_funding(ct, &funding_tx_with(vec![], 9), 0);
        // The opener's own key, a bare P2WSH of another script, and the right script at the
        // wrong index (the agreed one pays the opener).
        let other_p2wsh = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([3; 32]));
        for wrong in [p2wpkh(0xa0), other_p2wsh] {
            fundee_refuses_to_use(ct, funding_tx_with(vec![TxOut { value, script_pubkey: wrong }], 5), 0);
        }
        let swapped =
            vec![TxOut { value, script_pubkey: p2wpkh(0xa0) }, TxOut { value, script_pubkey: script.clone() }];
        fundee_refuses_to_use(ct, funding_tx_with(swapped, 6), 0);
    }
}

#[test]
fn funding_without_the_agreed_output_index_is_never_used() {
    for ct in TYPES {
        let (_, _, script, value) = fundee_of_bad_funding(ct, &funding_tx_with(vec![], 9), 0);
        // The channel's output exists, but at index 0; the agreed index 1 (or 3) is missing.
        for vout in [1u32, 3] {
            let bad = funding_tx_with(vec![TxOut { value, script_pubkey: script.clone() }], 7 + vout as u8);
            fundee_refuses_to_use(ct, bad, vout);
        }
    }
}

#[test]
fn opener_refuses_its_own_funding_transaction_that_does_not_pay_the_channel() {
    for ct in TYPES {
        let (sa, sb) = (signer_a(), signer_b());
        let tip = ChainTip::at(1_000);
        let params = OpenParams {
            config: config(ct),
            temporary_channel_id: ChannelId([7; 32]),
            funding: Amount::from_sat(CAPACITY),
            push: MilliSats::from_msat(PUSH),
            feerate_per_kw: 2_500,
        };
        let (mut a, fx) = Channel::open(params, &sa, tip).unwrap();
        let Msg::OpenChannel(open) = wire(&fx.send[0]) else { panic!() };
        let (_, fx) = Channel::accept(&open, config(ct), &sb, tip).unwrap();
        let fx = a.handle_message(fx.send[0].clone(), &sa, tip).unwrap();
        let Some(Event::FundingGenerationReady { script_pubkey, value }) = fx.events.first().cloned() else { panic!() };
        for bad in [
            vec![TxOut { value: value - Amount::from_sat(1), script_pubkey: script_pubkey.clone() }],
            vec![TxOut { value: value + Amount::from_sat(1), script_pubkey: script_pubkey.clone() }],
            vec![TxOut { value, script_pubkey: p2wpkh(0xa0) }],
            vec![],
        ] {
            let before = a.snapshot();
            assert_eq!(a.funding_tx(funding_tx_with(bad, 1), &sa).unwrap_err(), CommandError::NoFundingOutput);
            assert!(a.snapshot() == before);
        }
    }
}
