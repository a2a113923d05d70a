//! Lightning channels between two in-memory peers: open, HTLCs both ways with crossed updates,
//! fee updates, reestablish, cooperative close; every commitment through Bitcoin Core's
//! interpreter and balances to the millisatoshi.

mod common;

use common::ln::{onion, Pair};
use paychan::core::commitment::ChannelType;
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::driving::RestoreError;
use paychan::lightning::{Event, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];

#[test]
fn open_and_one_htlc_each_way() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        p.verify_commitments();
        let pre = PaymentPreimage([1; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(50_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        p.verify_commitments();
        assert!(p.b.take_events().iter().any(|e| matches!(e, Event::HtlcReceived { id: i, .. } if *i == id)));
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.b.ch.commit(&p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.run();
        p.verify_commitments();
        assert!(p.a.take_events().iter().any(|e| matches!(e, Event::HtlcFulfilled { .. })));
        assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty());
        let a = p.a.ch.balances(Side::Holder);
        assert_eq!(a.counterparty, MilliSats::from_msat(250_000_000));
        assert_eq!(a.holder, MilliSats::from_msat(750_000_000));
        assert_eq!(p.b.ch.balances(Side::Holder).holder, MilliSats::from_msat(250_000_000));
        let penalties = paychan::lightning::records::penalty_records(&p.a.records).unwrap();
        assert_eq!(penalties.len(), 1, "one penalty record per HTLC, once it is gone");
        let others = p.a.records.iter().filter(|r| !paychan::core::delta::is_delta(r)).count();
        assert_eq!(others, 2, "and one onion record, with the first write that included it");
    }
}

use std::collections::HashMap;

use common::ln::Rng;
use paychan::core::PaymentHash;

/// Random interleavings of adds, fulfils, fails, fee updates, commits, message deliveries and
/// disconnections; at the end every payment is settled and balances match to the millisatoshi.
fn stress(ct: ChannelType, seed: u64, steps: usize, target_each_way: usize) {
    let capacity_sat = 100_000_000u64;
    let mut p = Pair::open(ct, capacity_sat, capacity_sat * 500);
    let mut rng = Rng(seed);
    let mut preimages: HashMap<PaymentHash, PaymentPreimage> = HashMap::new();
    let mut counter = 0u64;
    let mut done = [0usize; 2];
    let mut reconnects = 0;
    let mut step = 0;
    while step < steps || done[0] < target_each_way || done[1] < target_each_way {
        step += 1;
        assert!(
            step < steps * 10,
            "no progress: done {done:?}, a htlcs {}, b htlcs {}, a bal {:?}",
            p.a.ch.htlcs().len(),
            p.b.ch.htlcs().len(),
            p.a.ch.balances(Side::Holder)
        );
        let side = rng.below(2) as usize;
        match rng.below(100) {
            0..=24 => {
                // Add an HTLC (amounts span trimmed and untrimmed).
                let (peer, out) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
                if peer.ch.htlcs().iter().filter(|h| h.offerer == Side::Holder).count() < 40 {
                    counter += 1;
                    let mut bytes = [0u8; 32];
                    bytes[..8].copy_from_slice(&counter.to_be_bytes());
                    let pre = PaymentPreimage(bytes);
                    preimages.insert(pre.hash(), pre);
                    let amount = MilliSats::from_msat(1_000 + rng.below(3_000_000));
                    // Refused adds (limits, reserve, fee buffer) are fine: the channel is full.
                    if let Ok((_, fx)) = peer.ch.add_htlc(amount, pre.hash(), 5_000 + rng.below(100) as u32, onion()) {
                        peer.absorb_pub(fx, out);
                    }
                }
            }
            25..=39 => {
                // Settle received HTLCs that are irrevocably committed.
                let (peer, out) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
                let ready: Vec<(u64, PaymentHash, u64)> = peer
                    .ch
                    .htlcs()
                    .iter()
                    .filter(|h| h.offerer == Side::Counterparty && h.is_irrevocably_committed() && h.remove.is_none())
                    .map(|h| (h.id, h.payment_hash, h.amount.to_msat()))
                    .collect();
                for (id, hash, _) in ready {
                    let fx = if rng.below(10) == 0 {
                        peer.ch.fail_htlc(id, vec![0u8; 32]).expect("fail")
                    } else {
                        peer.ch.fulfill_htlc(id, preimages[&hash]).expect("fulfill")
                    };
                    peer.absorb_pub(fx, out);
                }
            }
            40..=54 => {
                let (peer, out) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
                if peer.ch.has_unsigned_changes() && !peer.ch.is_awaiting_revoke() {
                    let fx = peer.ch.commit(&peer.signer).expect("commit");
                    peer.absorb_pub(fx, out);
                }
            }
            55..=56 => {
                // The funder changes the fee.
                let rate = 1_000 + rng.below(4_000) as u32;
                if let Ok(fx) = p.a.ch.update_fee(rate) {
                    p.a.absorb_pub(fx, &mut p.to_b);
                }
            }
            57..=58 => {
                reconnects += 1;
                p.reconnect();
            }
            _ => {
                if side == 0 {
                    p.deliver_to_a();
                } else {
                    p.deliver_to_b();
                }
            }
        }
        for (i, peer) in [&mut p.a, &mut p.b].into_iter().enumerate() {
            for e in peer.take_events() {
                if let Event::HtlcFulfilled { .. } = e {
                    done[i] += 1;
                }
            }
        }
        if step % 250 == 0 {
            p.verify_commitments();
        }
    }
    // Finish: every HTLC settles.
    loop {
        p.settle();
        let mut more = false;
        for (peer, out) in [(&mut p.a, &mut p.to_b), (&mut p.b, &mut p.to_a)] {
            let ready: Vec<(u64, PaymentHash)> = peer
                .ch
                .htlcs()
                .iter()
                .filter(|h| h.offerer == Side::Counterparty && h.is_irrevocably_committed() && h.remove.is_none())
                .map(|h| (h.id, h.payment_hash))
                .collect();
            for (id, hash) in ready {
                let fx = peer.ch.fulfill_htlc(id, preimages[&hash]).expect("fulfill");
                peer.absorb_pub(fx, out);
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    for (i, peer) in [&mut p.a, &mut p.b].into_iter().enumerate() {
        for e in peer.take_events() {
            if let Event::HtlcFulfilled { .. } = e {
                done[i] += 1;
            }
        }
    }
    assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty(), "all HTLCs resolved");
    p.verify_commitments();
    let a = p.a.ch.balances(Side::Holder);
    let b = p.b.ch.balances(Side::Holder);
    assert_eq!(a.holder, b.counterparty);
    assert_eq!(a.counterparty, b.holder);
    assert_eq!(a.holder.to_msat() + a.counterparty.to_msat(), capacity_sat * 1000, "value conserved to the msat");
    assert!(done[0] >= target_each_way && done[1] >= target_each_way, "{done:?}");
    assert!(reconnects > 10);
    // The live state stays small whatever the history.
    let snap = p.a.ch.snapshot();
    assert!(snap.len() <= 4096, "live state {} bytes", snap.len());
}

#[test]
fn thousand_payments_each_way_static_remotekey() {
    stress(ChannelType::StaticRemoteKey, 1, 6_000, 1_000);
}

#[test]
fn thousand_payments_each_way_anchors() {
    stress(ChannelType::AnchorsZeroFeeHtlc, 2, 6_000, 1_000);
}

use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, ScriptBuf, WPubkeyHash};

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

#[test]
fn cooperative_close_after_htlcs_clear() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 300_000_000);
        // An HTLC in flight when shutdown starts: it must clear before fees are negotiated.
        let pre = PaymentPreimage([9; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.a.ch.shutdown(p2wpkh(0xaa), (Amount::from_sat(200), Amount::from_sat(5_000)), &p.a.signer).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        assert!(p.b.take_events().contains(&Event::ShutdownReceived));
        // No new HTLCs after shutdown.
        assert!(p.a.ch.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion()).is_err());
        assert!(p.b.ch.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion()).is_err());
        let fx = p.b.ch.shutdown(p2wpkh(0xbb), (Amount::from_sat(100), Amount::from_sat(3_000)), &p.b.signer).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.run();
        assert!(p.a.ch.closing_transaction().is_none(), "no closing while an HTLC remains");
        // The HTLC is fulfilled; then the funder proposes and the sides agree.
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let a_tx = p.a.ch.closing_transaction().expect("a agreed").clone();
        let b_tx = p.b.ch.closing_transaction().expect("b agreed").clone();
        assert_eq!(a_tx, b_tx);
        common::verify_spend(&a_tx, &[p.funding_output()]).expect("Core accepts the closing transaction");
        let to_a = a_tx.output.iter().find(|o| o.script_pubkey == p2wpkh(0xaa)).unwrap().value.to_sat();
        let to_b = a_tx.output.iter().find(|o| o.script_pubkey == p2wpkh(0xbb)).unwrap().value.to_sat();
        let fee = 1_000_000 - to_a - to_b;
        assert_eq!(to_b, 320_000, "the payee's balance to the satoshi");
        assert!((200..=3_000).contains(&fee), "fee {fee} inside both ranges");
        assert_eq!(to_a, 1_000_000 - 320_000 - fee, "the funder pays the closing fee");
    }
}

#[test]
fn reestablish_at_every_step_of_a_commitment_dance() {
    for ct in TYPES {
        // Count the messages of one full dance (add, commit, revoke, commit, revoke), then for each
        // prefix: deliver that many, disconnect (dropping the rest), reestablish, and finish.
        for cut in 0..8 {
            let mut p = Pair::open(ct, 1_000_000, 300_000_000);
            let pre = PaymentPreimage([cut as u8 + 1; 32]);
            let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 2_000, onion()).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let fx =
                p.b.ch
                    .add_htlc(MilliSats::from_msat(10_000_000), PaymentPreimage([0xee; 32]).hash(), 2_000, onion())
                    .unwrap();
            p.b.absorb_pub(fx.1, &mut p.to_a);
            let fx = p.a.ch.commit(&p.a.signer).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let fx = p.b.ch.commit(&p.b.signer).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
            let mut delivered = 0;
            while delivered < cut {
                let b_first = delivered % 2 == 0;
                let moved = if b_first && p.deliver_to_b() { true } else { p.deliver_to_a() || p.deliver_to_b() };
                if !moved {
                    break;
                }
                delivered += 1;
            }
            p.reconnect();
            p.settle();
            p.verify_commitments();
            assert!(p.b.ch.is_htlc_irrevocably_committed(Side::Counterparty, id), "cut {cut}");
            let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
            // And once more in the middle of the removal.
            let fx = p.b.ch.commit(&p.b.signer).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
            p.deliver_to_a();
            p.reconnect();
            p.settle();
            p.verify_commitments();
            assert!(
                p.a.ch.htlcs().iter().all(|h| h.id != id || h.offerer != Side::Holder),
                "cut {cut}: fulfilled HTLC resolved"
            );
            let a = p.a.ch.balances(Side::Holder);
            let b = p.b.ch.balances(Side::Holder);
            assert_eq!((a.holder, a.counterparty), (b.counterparty, b.holder));
        }
    }
}

/// The DOT picture names both latest commitments by txid (ours is what a force close
/// broadcasts; the peer's is the one it holds), every HTLC with its second stage, and the penalty
/// paths.
#[test]
fn picture_shows_both_commitments() {
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 300_000_000);
        let pre = PaymentPreimage([3; 32]);
        let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(40_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let (_, fx) = p.b.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 2_100, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let dot = p.a.ch.to_dot(&p.a.signer);
        let ours = p.a.ch.holder_commitment_tx(&p.a.signer).unwrap().compute_txid().to_string();
        let theirs = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap().compute_txid().to_string();
        assert!(dot.starts_with("digraph lightning {") && dot.trim_end().ends_with('}'));
        for needle in [
            format!("our commitment #{} {}", p.a.ch.holder_commitment_number(), &ours[..12]),
            format!("the peer's commitment #{} {}", p.a.ch.counterparty_commitment_number(), &theirs[..12]),
            "HTLC-timeout\\nnLockTime 2000".to_string(),
            "HTLC-success\\npreimage".to_string(),
            "HTLC offered by us\\n40000 sat, expiry 2000".to_string(),
            "penalty by peer".to_string(),
            "revoked commitment(s) of the peer".to_string(),
        ] {
            assert!(dot.contains(&needle), "DOT lacks {needle}:\n{dot}");
        }
        let anchors = dot.matches("(CPFP)").count();
        assert_eq!(anchors, if ct == ChannelType::AnchorsZeroFeeHtlc { 4 } else { 0 });
        assert_eq!(dot.matches('"').count() % 2, 0, "quotes balanced");
    }
}

/// A channel restored from its snapshot in the middle of a commitment dance answers the next
/// `commitment_signed` exactly as the live channel does (the live one remembers the
/// per-commitment point it sent; the restored one asks its signer again).
#[test]
fn restored_mid_dance_answers_commitment_signed_like_the_live_channel() {
    use paychan::driving::{ChainTip, RestoreCheck};
    use paychan::lightning::{Channel, Msg};
    let tip = ChainTip::at(1_000);
    let deliver = |msgs: Vec<Msg>, to: &mut common::ln::Peer| -> Vec<Msg> {
        let mut out = Vec::new();
        for m in msgs {
            let m = Msg::decode(&m.encode()).unwrap();
            out.extend(to.ch.handle_message(m, &to.signer, tip).unwrap().send);
        }
        out
    };
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), PaymentPreimage([3; 32]).hash(), 2_000, onion()).unwrap();
        let mut to_b = fx.send;
        to_b.extend(p.a.ch.commit(&p.a.signer).unwrap().send);
        let to_a = deliver(to_b, &mut p.b);
        let to_b = deliver(to_a, &mut p.a);
        assert!(deliver(to_b, &mut p.b).is_empty(), "the dance is over");
        // B has sent its revocation (and with it the point of its next commitment).
        let (_, fx) =
            p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), PaymentPreimage([4; 32]).hash(), 2_000, onion()).unwrap();
        let mut to_b = fx.send;
        to_b.extend(p.a.ch.commit(&p.a.signer).unwrap().send);
        let mut restored = common::ln::Peer {
            ch: Channel::restore_with_records(
                &p.b.ch.snapshot(),
                common::ln::onion_records(&p.b.ch),
                RestoreCheck::default(),
            )
            .unwrap(),
            signer: p.b.signer.clone(),
            events: Vec::new(),
            persisted: Vec::new(),
            records: Vec::new(),
        };
        let live_answer = deliver(to_b.clone(), &mut p.b);
        let restored_answer = deliver(to_b, &mut restored);
        assert_eq!(
            live_answer.iter().map(Msg::encode).collect::<Vec<_>>(),
            restored_answer.iter().map(Msg::encode).collect::<Vec<_>>()
        );
        assert!(live_answer.iter().any(|m| matches!(m, Msg::RevokeAndAck { .. })));
        assert!(p.b.ch.snapshot() == restored.ch.snapshot());
        let to_b = deliver(live_answer, &mut p.a);
        assert!(deliver(to_b, &mut p.b).is_empty());
        p.verify_commitments();
    }
}

/// Onions are persisted once, as records, never in a snapshot, with the first write that
/// includes their HTLC (an add not covered by a `commitment_signed` is not written). A channel
/// restored from its snapshot and records holds each HTLC's own onion and retransmits it after a
/// reconnection; the onion of an HTLC the peer irrevocably has is dropped, and its record may be
/// compacted away.
#[test]
fn onions_are_records_restored_and_retransmitted() {
    use paychan::driving::RestoreCheck;
    use paychan::lightning::{Channel, Msg, OnionPacket, OnionRecord};
    let onion_n = |n: u64| {
        let mut o = OnionPacket::zeroed();
        o.bytes_mut().iter_mut().enumerate().for_each(|(i, b)| *b = (i as u8) ^ (n as u8 + 1));
        o
    };
    for ct in TYPES {
        let mut p = Pair::open(ct, 1_000_000, 200_000_000);
        for n in 0..3 {
            let hash = PaymentPreimage([n as u8; 32]).hash();
            let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(10_000_000 + n), hash, 2_000, onion_n(n)).unwrap();
            assert_eq!(id, n);
            assert!(fx.update.is_none(), "an add no signature covers is not written");
            p.a.absorb_pub(fx, &mut p.to_b);
        }
        let fx = p.a.ch.commit(&p.a.signer).unwrap();
        let u = fx.update.clone().unwrap();
        let onion_records: Vec<Vec<u8>> =
            (0..3).map(|id| OnionRecord { offerer: Side::Holder, id, onion: onion_n(id) }.encode()).collect();
        assert_eq!(u.records[..3], onion_records[..], "the write before `commitment_signed` carries the onions");
        assert!(u.snapshot.is_none() && u.records.len() == 4, "then a delta, no snapshot");
        assert!(u.written_bytes() < 3 * 1_400 + 600, "the snapshot carries no onion: {}", u.written_bytes());
        p.a.absorb_pub(fx, &mut p.to_b);
        // B gets the adds but not the signature; both restart from what they persisted.
        while matches!(p.to_b.front(), Some(Msg::UpdateAddHtlc { .. })) {
            assert!(p.deliver_to_b());
        }
        let onions = |records: &[Vec<u8>]| records.iter().filter(|r| OnionRecord::decode(r).is_ok()).count();
        assert_eq!(onions(&p.b.records), 0, "B wrote nothing of them: no signature covers the adds yet");
        for peer in [&mut p.a, &mut p.b] {
            peer.restart();
            assert!(peer.ch.htlcs().iter().all(|h| h.onion == Some(onion_n(h.id))));
        }
        assert_eq!((p.a.ch.htlcs().len(), p.b.ch.htlcs().len()), (3, 0), "B's adds were in memory only");
        let (_, a_snapshot) = p.a.persisted.last().unwrap();
        assert_eq!(Channel::restore(a_snapshot, RestoreCheck::default()).err(), Some(RestoreError::MissingRecord));
        // A retransmits its adds, each with its own onion, then signs again.
        p.reconnect();
        let adds: Vec<(u64, OnionPacket)> = p
            .to_b
            .iter()
            .filter_map(|m| match m {
                Msg::UpdateAddHtlc { id, onion_routing_packet, .. } => Some((*id, onion_routing_packet.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(adds, (0..3).map(|n| (n, onion_n(n))).collect::<Vec<_>>());
        p.settle();
        p.verify_commitments();
        // B is told of each HTLC with its own onion, to forward it.
        let received: Vec<(u64, Option<OnionPacket>)> =
            p.b.take_events()
                .into_iter()
                .filter_map(|e| match e {
                    Event::HtlcReceived { id, onion, .. } => Some((id, onion)),
                    _ => None,
                })
                .collect();
        assert_eq!(received, (0..3).map(|n| (n, Some(onion_n(n)))).collect::<Vec<_>>());
        // A's onions are gone (B irrevocably has the adds), B's stay until the HTLCs are gone.
        assert!(p.a.ch.htlcs().iter().all(|h| h.onion.is_none()));
        assert!(p.b.ch.htlcs().iter().all(|h| h.onion == Some(onion_n(h.id))));
        assert!(p.a.records.iter().all(|r| !p.a.ch.keeps_record(r)), "A may compact its onion records");
        assert!(
            p.b.records.iter().filter(|r| OnionRecord::decode(r).is_ok()).all(|r| p.b.ch.keeps_record(r)),
            "B needs its onion records"
        );
        let compacted: Vec<_> = p.a.records.iter().filter(|r| p.a.ch.keeps_record(r)).collect();
        let a = Channel::restore_with_records(&p.a.ch.snapshot(), compacted, RestoreCheck::default()).unwrap();
        assert_eq!(a.snapshot(), p.a.ch.snapshot());
        for n in 0..3 {
            let fx = p.b.ch.fulfill_htlc(n, PaymentPreimage([n as u8; 32])).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
        }
        p.settle();
        assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty());
        // B received each add twice (before and after the reconnection), and wrote it once.
        assert_eq!((onions(&p.a.records), onions(&p.b.records)), (3, 3));
        for peer in [&p.a, &p.b] {
            let penalties = paychan::lightning::records::penalty_records(&peer.records).unwrap();
            assert_eq!(penalties.len(), 3);
            assert!(peer.records.iter().all(|r| peer.ch.keeps_record(r) == penalties.iter().any(|p| p.encode() == *r)));
        }
    }
}

/// A version-1 snapshot (written before onions moved to records, with each onion inline) still
/// restores with its onions; its re-encoding is version 2 and needs the onion records.
#[test]
fn version_1_snapshots_still_restore() {
    use paychan::driving::RestoreCheck;
    use paychan::lightning::Channel;
    let v1 = include_bytes!("vectors/snapshots/lightning_v1_two_htlcs.bin");
    assert_eq!(v1[1], 1, "a version-1 snapshot");
    let c = Channel::restore(v1, RestoreCheck::default()).expect("version 1 restores");
    assert_eq!(c.htlcs().len(), 2);
    assert!(c.htlcs().iter().all(|h| h.onion.is_some()));
    let v2 = c.snapshot();
    assert_eq!(v2[1], 2, "re-encoded as version 2");
    assert!(v2.len() + 2 * 1_366 <= v1.len(), "without the onions");
    assert_eq!(Channel::restore(&v2, RestoreCheck::default()).err(), Some(RestoreError::MissingRecord));
    let again = Channel::restore_with_records(&v2, common::ln::onion_records(&c), RestoreCheck::default()).unwrap();
    assert_eq!(again.htlcs(), c.htlcs());
    assert_eq!(again.snapshot(), v2);
    // The first update after the upgrade appends the onions the version-2 snapshot refers to,
    // so that the embedder's log alone restores it.
    let mut c = c;
    let sweep_to = || common::ln::p2wpkh_script();
    let feerate = paychan::core::commitment::FeeratePerKw(1_000);
    let update = c.set_sweep_policy(sweep_to(), feerate).update.expect("persisted");
    assert_eq!(update.records[..2], common::ln::onion_records(&c)[..]);
    // The write is a delta against the version-1 bytes the storage holds: replayed on them, it
    // gives the version-2 state.
    assert!(update.snapshot.is_none() && update.records.len() == 3);
    let restored = Channel::restore_with_records(v1, &update.records, RestoreCheck::default()).unwrap();
    assert_eq!(restored.htlcs(), c.htlcs());
    assert_eq!(restored.snapshot(), c.snapshot());
    let fx = c.set_sweep_policy(sweep_to(), feerate);
    assert!(fx.update.is_none_or(|u| u.records.iter().all(|r| paychan::core::delta::is_delta(r))), "appended once");
}

/// A snapshot with two HTLCs of the same offerer and id (a `decode_lightning_snapshot` find) is
/// refused: each HTLC's onion record is found by (offerer, id), and a channel with two such HTLCs
/// could never restore again from its own snapshot and records.
#[test]
fn a_snapshot_with_a_duplicate_htlc_id_is_refused() {
    use paychan::core::encode::DecodeError;
    use paychan::driving::RestoreCheck;
    use paychan::lightning::Channel;
    let bytes = include_bytes!("vectors/snapshots/lightning_duplicate_htlc_id.bin");
    assert_eq!(
        Channel::restore(bytes, RestoreCheck::default()).err(),
        Some(RestoreError::Decode(DecodeError::InvalidValue("duplicate HTLC")))
    );
}

/// A compacted log (the records `keeps_record` keeps) restores the channel exactly, with
/// HTLCs in flight both ways: it holds every penalty record and only the onions still needed.
#[test]
fn a_compacted_log_restores_the_channel() {
    use paychan::driving::RestoreCheck;
    use paychan::lightning::{Channel, Record};
    let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 300_000_000);
    let mut n = 0u8;
    let mut add = |p: &mut Pair, from_a: bool| {
        n += 1;
        let pre = PaymentPreimage([n; 32]);
        let (sender, out) = if from_a { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
        let (id, fx) = sender.ch.add_htlc(MilliSats::from_msat(2_000_000), pre.hash(), 2_000, onion()).unwrap();
        sender.absorb_pub(fx, out);
        (id, pre)
    };
    // Twenty payments each way, settled; then three HTLCs each way left in flight.
    for round in 0..20 {
        let (ida, prea) = add(&mut p, true);
        let (idb, preb) = add(&mut p, false);
        p.settle();
        let fx = p.b.ch.fulfill_htlc(ida, prea).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.fail_htlc(idb, vec![round]).unwrap();
        let _ = preb;
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
    }
    for _ in 0..3 {
        add(&mut p, true);
        add(&mut p, false);
    }
    p.settle();
    for peer in [&p.a, &p.b] {
        let kept: Vec<&Vec<u8>> = peer.records.iter().filter(|r| peer.ch.keeps_record(r)).collect();
        let penalties = kept.iter().filter(|r| matches!(Record::decode(r), Ok(Record::Penalty(_)))).count();
        assert_eq!(penalties, 40, "every penalty record is kept");
        // Only the onions of the three HTLCs offered to this side (ours are irrevocably received).
        assert_eq!(kept.len() - penalties, 3);
        assert!(peer.records.len() > kept.len() + 40);
        let snapshot = peer.ch.snapshot();
        let restored = Channel::restore_with_records(&snapshot, kept, RestoreCheck::default()).unwrap();
        assert!(restored == peer.ch && restored.htlcs() == peer.ch.htlcs());
    }
}
