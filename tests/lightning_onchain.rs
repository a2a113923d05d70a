//! Lightning on chain: every revoked commitment of a long history is punished, second-stage
//! escapes are punished too, force closes resolve every HTLC the right way, and all of it passes
//! a simulated chain that checks lock times and runs Bitcoin Core's interpreter.

mod common;

use bitcoin::{Amount, Transaction};
use common::chain::Chain;
use common::ln::{onion, Pair, Rng};
use paychan::core::commitment::{ChannelType, HtlcDirection};
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::ChainEvent;
use paychan::lightning::{Event, PenaltyRecord, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];

/// A commitment B held at some point, with one of its HTLC-timeout transactions if it had one.
struct Old {
    number: u64,
    tx: Transaction,
    htlc_timeout: Option<(Transaction, u32)>,
}

fn history(ct: ChannelType, updates: usize) -> (Pair, Vec<Old>) {
    let mut p = Pair::open(ct, 10_000_000, 4_000_000_000);
    let mut rng = Rng(77);
    let mut olds: Vec<Old> = Vec::new();
    let mut counter = 0u64;
    let record = |p: &Pair, olds: &mut Vec<Old>| {
        let n = p.b.ch.holder_commitment_number();
        if olds.last().is_some_and(|o| o.number == n) {
            return;
        }
        let v = p.b.ch.holder_commitment(&p.b.signer).expect("commitment");
        let tx = v.finalize(&p.b.signer).expect("signed");
        let htlc_timeout =
            v.htlc_txs().iter().enumerate().find(|(_, h)| h.direction == HtlcDirection::Offered).and_then(
                |(pos, h)| {
                    let t = v.finalize_htlc_tx(&p.b.signer, pos, None).ok().flatten()?;
                    Some((t, h.tx.lock_time.to_consensus_u32()))
                },
            );
        olds.push(Old { number: n, tx, htlc_timeout });
    };
    record(&p, &mut olds);
    let mut preimages = std::collections::HashMap::new();
    while olds.len() < updates {
        // A few HTLCs each way, committed; then some of them settled.
        for side in 0..2 {
            let (peer, out) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
            for _ in 0..rng.below(3) {
                counter += 1;
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&counter.to_be_bytes());
                let pre = PaymentPreimage(bytes);
                preimages.insert(pre.hash(), pre);
                let amount = MilliSats::from_msat(500_000 + rng.below(20_000_000));
                if let Ok((_, fx)) = peer.ch.add_htlc(amount, pre.hash(), 1_100 + rng.below(50) as u32, onion()) {
                    peer.absorb_pub(fx, out);
                }
            }
            if peer.ch.has_unsigned_changes() && !peer.ch.is_awaiting_revoke() {
                let fx = peer.ch.commit(&peer.signer).expect("commit");
                peer.absorb_pub(fx, out);
            }
        }
        // Deliver message by message, recording every commitment B ever holds.
        while p.deliver_to_b() || p.deliver_to_a() {
            record(&p, &mut olds);
        }
        for side in 0..2 {
            let (peer, out) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
            let ready: Vec<_> = peer
                .ch
                .htlcs()
                .iter()
                .filter(|h| h.offerer == Side::Counterparty && h.is_irrevocably_committed() && h.remove.is_none())
                .map(|h| (h.id, h.payment_hash))
                .collect();
            for (id, hash) in ready {
                if rng.below(3) == 0 {
                    continue;
                }
                let fx = if rng.below(4) == 0 {
                    peer.ch.fail_htlc(id, vec![1; 8])
                } else {
                    peer.ch.fulfill_htlc(id, preimages[&hash])
                };
                peer.absorb_pub(fx.expect("remove"), out);
            }
        }
        p.settle();
        record(&p, &mut olds);
    }
    (p, olds)
}

fn records(p: &Pair) -> Vec<PenaltyRecord> {
    paychan::lightning::records::penalty_records(&p.a.records).expect("records")
}

/// Mines every transaction in `txs` in its own block, asserting the chain accepts each.
fn mine_all(chain: &mut Chain, txs: &[Transaction]) {
    for t in txs {
        chain.mine(t).unwrap_or_else(|e| panic!("chain rejected {}: {e:?}", t.compute_txid()));
    }
}

#[test]
fn every_revoked_commitment_is_punished() {
    for ct in TYPES {
        let (p, olds) = history(ct, 200);
        let recs = records(&p);
        let current = p.b.ch.holder_commitment_number();
        assert!(olds.len() >= 200 && current >= 199, "history of {} commitments", olds.len());
        let with_htlcs = olds.iter().filter(|o| o.tx.output.len() > 4).count();
        assert!(with_htlcs > 50, "HTLCs came and went: {with_htlcs} commitments carried some");
        let capacity = 10_000_000u64;
        let anchor_total: u64 = if ct == ChannelType::AnchorsZeroFeeHtlc { 330 } else { 0 };
        for old in olds.iter().filter(|o| o.number < current) {
            let mut a = p.a.ch.clone();
            let mut chain = Chain::at(1_200);
            chain.credit(&p.funding);
            chain.mine(&old.tx).expect("the cheater's old commitment is valid on chain");
            let h = BlockHeight(chain.height);
            let fx = a.handle_chain_with_history(ChainEvent::Confirmed { tx: &old.tx, height: h }, &recs, &p.a.signer);
            assert!(fx.update.is_some());
            // Penalty (and, if present, our to_remote sweep), valid in the next block.
            mine_all(&mut chain, &fx.broadcast);
            let spent: Vec<_> = fx.broadcast.iter().flat_map(|t| t.input.iter().map(|i| i.previous_output)).collect();
            let txid = old.tx.compute_txid();
            let mut ours = 0u64;
            for (vout, o) in old.tx.output.iter().enumerate() {
                let op = bitcoin::OutPoint { txid, vout: vout as u32 };
                if o.value == Amount::from_sat(330) {
                    continue; // anchors
                }
                assert!(spent.contains(&op), "commitment #{} output {vout} ({} sat) not swept", old.number, o.value);
                ours += o.value.to_sat();
            }
            let got: u64 = fx.broadcast.iter().flat_map(|t| t.output.iter()).map(|o| o.value.to_sat()).sum();
            let commitment_fee = capacity - old.tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>();
            let sweep_fees = ours - got;
            let anchors =
                old.tx.output.iter().filter(|o| o.value == Amount::from_sat(330)).count() as u64 * anchor_total;
            assert_eq!(
                got + sweep_fees + commitment_fee + anchors,
                capacity,
                "#{}: the whole value minus fees",
                old.number
            );
            assert!(sweep_fees < 20_000, "#{}: sweep fees {sweep_fees}", old.number);
        }
    }
}

#[test]
fn second_stage_escapes_are_punished() {
    for ct in TYPES {
        let (p, olds) = history(ct, 120);
        let recs = records(&p);
        let current = p.b.ch.holder_commitment_number();
        let mut tried = 0;
        for old in olds.iter().filter(|o| o.number < current && o.htlc_timeout.is_some()).take(15) {
            let (htlc_tx, cltv) = old.htlc_timeout.clone().expect("has one");
            let mut a = p.a.ch.clone();
            let mut chain = Chain::at(1_200);
            chain.credit(&p.funding);
            chain.mine(&old.tx).expect("old commitment");
            let fx = a.handle_chain_with_history(
                ChainEvent::Confirmed { tx: &old.tx, height: BlockHeight(chain.height) },
                &recs,
                &p.a.signer,
            );
            assert!(!fx.broadcast.is_empty());
            // The cheater's HTLC-timeout confirms before our penalty.
            chain.height = chain.height.max(cltv);
            chain.mine(&htlc_tx).expect("the cheater's HTLC-timeout is valid");
            let fx2 = a.handle_chain_with_history(
                ChainEvent::Confirmed { tx: &htlc_tx, height: BlockHeight(chain.height) },
                &recs,
                &p.a.signer,
            );
            // A penalty on its output, and a new penalty for what is left of the commitment.
            assert!(fx2
                .broadcast
                .iter()
                .any(|t| t.input.iter().any(|i| i.previous_output.txid == htlc_tx.compute_txid())));
            for t in &fx2.broadcast {
                chain.mine(t).unwrap_or_else(|e| panic!("rejected {e:?}"));
            }
            // Whatever of the first broadcast still can confirm does.
            for t in &fx.broadcast {
                let _ = chain.mine(t);
            }
            let txid = old.tx.compute_txid();
            for (vout, o) in old.tx.output.iter().enumerate() {
                let op = bitcoin::OutPoint { txid, vout: vout as u32 };
                if o.value != Amount::from_sat(330) && vout as u32 != htlc_tx.input[0].previous_output.vout {
                    assert!(!chain.is_unspent(&op), "output {vout} left to the cheater");
                }
            }
            tried += 1;
        }
        assert!(tried > 5);
    }
}

#[test]
fn force_close_resolves_every_htlc() {
    for (ct, funder_closes) in [(TYPES[0], true), (TYPES[0], false), (TYPES[1], true), (TYPES[1], false)] {
        let mut p = Pair::open(ct, 10_000_000, 4_000_000_000);
        // "a" below is the side that goes on chain: the funder or the acceptor.
        if !funder_closes {
            std::mem::swap(&mut p.a, &mut p.b);
            std::mem::swap(&mut p.to_a, &mut p.to_b);
        }
        let pres: Vec<PaymentPreimage> = (1..=4u8).map(|i| PaymentPreimage([i; 32])).collect();
        // h0, h1 offered by A; h2, h3 offered by B. Expiries 1_100.
        let mut ids = Vec::new();
        for (i, pre) in pres.iter().enumerate() {
            let (peer, out) = if i < 2 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
            let (id, fx) = peer.ch.add_htlc(MilliSats::from_msat(40_000_000), pre.hash(), 1_100, onion()).unwrap();
            peer.absorb_pub(fx, out);
            ids.push(id);
        }
        p.settle();
        // B learns h0's preimage, A learns h2's (they fulfil, but the removals never get signed).
        let fx = p.b.ch.fulfill_htlc(ids[0], pres[0]).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        let fx = p.a.ch.fulfill_htlc(ids[2], pres[2]).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.to_a.clear();
        p.to_b.clear();
        // A goes on chain.
        let fx = p.a.ch.force_close(&p.a.signer).unwrap();
        let commitment = fx.broadcast[0].clone();
        let mut chain = Chain::at(1_050);
        chain.credit(&p.funding);
        chain.mine(&commitment).expect("A's commitment");
        let mut pending: Vec<Transaction> = Vec::new();
        let mut a_events = Vec::new();
        let mut b_events = Vec::new();
        // Feed every block to both; mine what they broadcast in the next block.
        let mut confirmed = vec![commitment.clone()];
        for _ in 0..400 {
            for tx in std::mem::take(&mut confirmed) {
                let h = BlockHeight(chain.height);
                let fa = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: h }, &p.a.signer);
                let fb = p.b.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: h }, &p.b.signer);
                // Delivered twice: nothing changes.
                assert!(p
                    .a
                    .ch
                    .handle_chain(ChainEvent::Confirmed { tx: &tx, height: h }, &p.a.signer)
                    .broadcast
                    .is_empty());
                a_events.extend(fa.events);
                b_events.extend(fb.events);
                pending.extend(fa.broadcast);
                pending.extend(fb.broadcast);
            }
            for tx in std::mem::take(&mut pending) {
                // A claim broadcast again on a new block (its output unspent as far as the
                // channel knows) that already confirmed: a no-op for the node.
                if chain.confirmation(&tx.compute_txid()).is_some() {
                    continue;
                }
                match chain.check(&tx) {
                    Ok(()) => {
                        chain.mine(&tx).unwrap();
                        confirmed.push(tx);
                    }
                    Err(e) => panic!("broadcast before it was valid or invalid: {e:?}"),
                }
            }
            chain.advance(1);
            let t = paychan::driving::ChainTip::at(chain.height);
            let fa = p.a.ch.handle_chain(ChainEvent::Tip(t), &p.a.signer);
            let fb = p.b.ch.handle_chain(ChainEvent::Tip(t), &p.b.signer);
            a_events.extend(fa.events);
            b_events.extend(fb.events);
            pending.extend(fa.broadcast);
            pending.extend(fb.broadcast);
            if p.a.ch.is_fully_resolved() && p.b.ch.is_fully_resolved() && pending.is_empty() && confirmed.is_empty() {
                break;
            }
        }
        assert!(p.a.ch.is_fully_resolved(), "A left something unclaimed");
        assert!(p.b.ch.is_fully_resolved(), "B left something unclaimed");
        // A learnt h0's preimage from B's on-chain claim; h1 timed out back to A.
        assert!(a_events.iter().any(|e| matches!(e, Event::HtlcFulfilled { id, .. } if *id == ids[0])), "{a_events:?}");
        assert!(a_events.iter().any(|e| matches!(e, Event::HtlcFailed { id, .. } if *id == ids[1])), "{a_events:?}");
        // B learnt h2's preimage from A's HTLC-success; h3 timed out back to B.
        assert!(b_events.iter().any(|e| matches!(e, Event::HtlcFulfilled { id, .. } if *id == ids[2])), "{b_events:?}");
        assert!(b_events.iter().any(|e| matches!(e, Event::HtlcFailed { id, .. } if *id == ids[3])), "{b_events:?}");
        // Nothing of the channel is left unspent except anchors.
        let txid = commitment.compute_txid();
        for (vout, o) in commitment.output.iter().enumerate() {
            if o.value != Amount::from_sat(330) {
                assert!(!chain.is_unspent(&bitcoin::OutPoint { txid, vout: vout as u32 }), "output {vout} unclaimed");
            }
        }
    }
}

#[test]
fn reorgs_duplicates_and_garbage_change_nothing_they_should_not() {
    use bitcoin::hashes::Hash;
    use bitcoin::{OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid, Witness};
    use paychan::driving::{ChainTip, RestoreCheck};
    for ct in TYPES {
        let mut p = Pair::open(ct, 10_000_000, 4_000_000_000);
        let pre = PaymentPreimage([5; 32]);
        let (_, fx) = p.b.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 1_100, onion()).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let fx = p.a.ch.force_close(&p.a.signer).unwrap();
        let commitment = fx.broadcast[0].clone();
        let h = BlockHeight(1_050);
        let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer);
        assert!(fx.update.is_some());
        let after_close = p.a.ch.snapshot();
        // The on-chain state survives a snapshot round trip.
        let restored =
            paychan::lightning::Channel::restore_with_records(&after_close, &p.a.records, RestoreCheck::default())
                .unwrap();
        assert_eq!(restored.snapshot(), after_close);
        // Duplicates, unrelated transactions, garbage witnesses and absurd heights.
        assert!(p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer).is_empty());
        let junk = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([0xee; 32]), vout: 7 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0u8; 500], vec![1, 2, 3]]),
            }],
            output: vec![TxOut { value: Amount::from_sat(1), script_pubkey: ScriptBuf::new() }],
        };
        assert!(p
            .a
            .ch
            .handle_chain(ChainEvent::Confirmed { tx: &junk, height: BlockHeight(u32::MAX) }, &p.a.signer)
            .is_empty());
        assert!(p.a.ch.handle_chain(ChainEvent::Unconfirmed(Txid::from_byte_array([1; 32])), &p.a.signer).is_empty());
        assert_eq!(p.a.ch.snapshot(), after_close, "garbage changed the state");
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(u32::MAX)), &p.a.signer);
        // Everything matures at an absurd height; every claim is built once, nothing panics.
        let n = fx.broadcast.len();
        assert!(p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(u32::MAX)), &p.a.signer).broadcast.is_empty());
        assert!(n >= 1);
        // A reorg takes the commitment out: A broadcasts it again.
        let fx = p.a.ch.handle_chain(ChainEvent::Unconfirmed(commitment.compute_txid()), &p.a.signer);
        assert_eq!(fx.broadcast, vec![commitment.clone()]);
        assert!(p.a.ch.closing_kind().is_none());
        // It confirms again: the same claims come back.
        let fx = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer);
        assert!(fx.update.is_some());
        assert!(matches!(p.a.ch.closing_kind(), Some(paychan::lightning::onchain::ClosingKind::Holder(_))));
    }
}

#[test]
fn a_watchtower_punishes_from_the_blob_alone() {
    use paychan::core::commitment::FeeratePerKw;
    use paychan::core::keys::{ChannelSecrets, Seed};
    use paychan::lightning::penalty::PenaltyKit;
    let (p, olds) = history(ChannelType::AnchorsZeroFeeHtlc, 60);
    let recs = records(&p);
    let secret = ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0).revocation_base;
    let kit = p.a.ch.watchtower_kit(Some(secret), &recs).expect("kit");
    let blob = kit.encode();
    let tower = PenaltyKit::decode(&blob).expect("blob decodes");
    assert_eq!(tower, kit);
    assert!(!format!("{tower:?}").contains("secret"), "the blob's Debug hides the key");
    // Its size: constant part plus one record per HTLC, whatever the number of updates.
    let per_htlc = kit.htlcs.len();
    let without = PenaltyKit { htlcs: vec![], ..kit.clone() }.encode().len();
    assert!(blob.len() <= without + per_htlc * 80, "{} bytes for {per_htlc} HTLCs", blob.len());
    let current = p.b.ch.holder_commitment_number();
    let mut punished = 0;
    for old in olds.iter().filter(|o| o.number < current) {
        let penalty = tower.penalty_tx(&old.tx, FeeratePerKw(1_000)).expect("penalty");
        let mut chain = Chain::at(1_200);
        chain.credit(&p.funding);
        chain.mine(&old.tx).unwrap();
        chain.mine(&penalty.tx).unwrap_or_else(|e| panic!("tower penalty rejected: {e:?}"));
        punished += 1;
    }
    assert!(punished >= 59);
}

#[test]
fn timeout_race_reorg_and_anchor_bump() {
    use paychan::core::commitment::FeeratePerKw;
    use paychan::core::feebump::{Bumper, FeeEstimates};
    use paychan::driving::ChainTip;
    for ct in TYPES {
        let mut p = Pair::open(ct, 10_000_000, 4_000_000_000);
        let pre = PaymentPreimage([0x77; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(40_000_000), pre.hash(), 1_100, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        // B has the preimage (fulfilled) but the removal never reaches A.
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.to_a.clear();
        let fx = p.a.ch.force_close(&p.a.signer).unwrap();
        let commitment = fx.broadcast[0].clone();
        if ct == ChannelType::AnchorsZeroFeeHtlc {
            // The anchor child the engine builds from the close's request: our anchor input is
            // valid under Core's interpreter.
            let mut chain = Chain::at(1_050);
            chain.credit(&p.funding);
            let mut wallet = common::wallet::FeeCoins::new(common::wallet::Wallet::new(4));
            wallet.add_coin(&mut chain, Amount::from_sat(50_000));
            let mut bumper = Bumper::new();
            let _ = bumper.track(fx.bumps[0].clone());
            let out =
                bumper.bump(BlockHeight(1_050), &FeeEstimates::flat(FeeratePerKw(5_000)), &mut wallet, &p.a.signer);
            let child = out.broadcast[1].clone();
            chain.mine(&commitment).unwrap();
            chain.check(&child).expect("the anchor child passes Core's interpreter");
            assert!(child.output[0].value < Amount::from_sat(50_330), "the child pays a fee");
        } else {
            assert!(fx.bumps.is_empty(), "a static_remotekey commitment cannot be bumped");
        }
        let mut chain = Chain::at(1_050);
        chain.credit(&p.funding);
        chain.mine(&commitment).unwrap();
        let h = BlockHeight(chain.height);
        let _ = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.a.signer);
        // Past expiry: A broadcasts its HTLC-timeout; B, late, claims with the preimage and wins.
        chain.height = 1_101;
        let fa = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(1_101)), &p.a.signer);
        let timeout = fa
            .broadcast
            .iter()
            .find(|t| t.lock_time.to_consensus_u32() == 1_100)
            .cloned()
            .expect("HTLC-timeout at expiry");
        // Its HTLC transactions carry their fee without anchors (a fee input would break the peer's
        // `SIGHASH_ALL` signature): no request; with anchors, one to aggregate with fee inputs.
        let timeout_requests = fa.bumps.iter().filter(|r| r.tx == timeout).count();
        assert_eq!(timeout_requests, usize::from(ct == ChannelType::AnchorsZeroFeeHtlc));
        let fb = p.b.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &p.b.signer);
        let success = fb
            .broadcast
            .iter()
            .find(|t| t.input.iter().any(|i| timeout.input[0].previous_output == i.previous_output))
            .cloned()
            .expect("B claims with the preimage");
        chain.mine(&success).expect("B's claim is valid");
        assert!(chain.check(&timeout).is_err(), "the timeout now double-spends");
        let fx =
            p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &success, height: BlockHeight(chain.height) }, &p.a.signer);
        assert!(fx
            .events
            .iter()
            .any(|e| matches!(e, Event::HtlcFulfilled { id: i, preimage, .. } if *i == id && *preimage == pre)));
        // A reorg removes B's claim: A's timeout is open again and broadcast.
        chain.reorg_last(&success.compute_txid()).unwrap();
        let fx = p.a.ch.handle_chain(ChainEvent::Unconfirmed(success.compute_txid()), &p.a.signer);
        let again = fx
            .broadcast
            .iter()
            .find(|t| t.input[0].previous_output == timeout.input[0].previous_output)
            .expect("rebroadcast");
        chain.mine(again).expect("A's timeout confirms after the reorg");
    }
}

/// Anchors: our zero-fee HTLC-timeout and HTLC-success transactions come with a request the
/// fee-bumping engine pays for with a wallet input. The peer's `SINGLE|ANYONECANPAY` signature
/// survives, the result passes Core's interpreter with the wallet's input signed and pays the fee
/// rate asked for, and the channel takes the bumped transaction for its own: its output is swept
/// after `to_self_delay`.
#[test]
fn anchors_htlc_transactions_are_paid_for_with_a_fee_input() {
    use common::wallet::{FeeCoins, Wallet};
    use paychan::core::commitment::FeeratePerKw;
    use paychan::core::feebump::{BumpEvent, BumpMethod, Bumper, FeeEstimates};
    use paychan::driving::ChainTip;
    const FEERATE: FeeratePerKw = FeeratePerKw(2_500);
    for a_closes in [true, false] {
        let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, 10_000_000, 4_000_000_000);
        // Two HTLCs from A: B fulfils one (the removal never reaches A), the other times out.
        let pre = PaymentPreimage([0x71; 32]);
        let (paid, fx) = p.a.ch.add_htlc(MilliSats::from_msat(40_000_000), pre.hash(), 1_100, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        let (expired, fx) =
            p.a.ch
                .add_htlc(MilliSats::from_msat(50_000_000), PaymentPreimage([0x72; 32]).hash(), 1_100, onion())
                .unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.b.ch.fulfill_htlc(paid, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.to_a.clear();
        // The closer's second stage: A's HTLC-timeout of `expired`, or B's HTLC-success of `paid`.
        let (closer, value, ready) = if a_closes { (&mut p.a, 50_000, 1_101) } else { (&mut p.b, 40_000, 1_052) };
        let commitment = closer.ch.force_close(&closer.signer).unwrap().broadcast[0].clone();
        let mut chain = Chain::at(1_050);
        chain.credit(&p.funding);
        chain.mine(&commitment).unwrap();
        let h = BlockHeight(chain.height);
        let fx = closer.ch.handle_chain(ChainEvent::Confirmed { tx: &commitment, height: h }, &closer.signer);
        let (mut broadcast, mut bumps) = (fx.broadcast, fx.bumps);
        chain.height = ready;
        let fx = closer.ch.handle_chain(ChainEvent::Tip(ChainTip::at(ready)), &closer.signer);
        broadcast.extend(fx.broadcast);
        bumps.extend(fx.bumps);
        let zero_fee = broadcast
            .iter()
            .find(|t| {
                t.input[0].previous_output.txid == commitment.compute_txid() && t.output[0].value.to_sat() == value
            })
            .cloned()
            .expect("the second-stage transaction");
        assert_eq!(zero_fee.output.iter().map(|o| o.value).sum::<Amount>().to_sat(), value, "it pays no fee");
        let htlc_out = commitment.output[zero_fee.input[0].previous_output.vout as usize].clone();
        let request = bumps.iter().find(|r| r.tx == zero_fee).cloned().expect("its bump request");
        assert!(matches!(request.method, BumpMethod::AddInputs { .. }));
        assert_eq!(request.at_stake.to_sat(), value);

        let mut wallet = FeeCoins::new(Wallet::new(0x5a));
        wallet.add_coin(&mut chain, Amount::from_sat(1_000));
        let mut bumper = Bumper::new();
        let _ = bumper.track(request);
        let est = FeeEstimates::flat(FEERATE);
        let fx = bumper.bump(BlockHeight(ready), &est, &mut wallet, &closer.signer);
        assert!(
            fx.events.iter().any(|e| matches!(e, BumpEvent::Failed { .. })),
            "a wallet that cannot pay the fee and leave change above dust: {:?}",
            fx.events
        );
        let op = wallet.add_coin(&mut chain, Amount::from_sat(50_000));
        let txout = chain.utxo(&op).unwrap().clone();
        let fx = bumper.bump(BlockHeight(ready), &est, &mut wallet, &closer.signer);
        let bumped = fx.broadcast[0].clone();
        assert_eq!(bumped.output[0], zero_fee.output[0], "the HTLC output is unchanged");
        assert_eq!(bumped.input[0].previous_output, zero_fee.input[0].previous_output);
        assert!(bumped.input.iter().any(|i| i.previous_output == op), "the wallet's coin pays");
        let spent: Vec<_> = bumped.input.iter().map(|i| chain.utxo(&i.previous_output).unwrap().clone()).collect();
        let fee = spent.iter().map(|o| o.value).sum::<Amount>() - bumped.output.iter().map(|o| o.value).sum::<Amount>();
        let needed = FEERATE.fee_for_weight(bumped.weight().to_wu());
        assert!(fee >= needed && fee <= needed * 11 / 10, "fee {fee} for {needed}");
        assert!(spent.contains(&htlc_out) && spent.contains(&txout));
        chain.check(&bumped).expect("Core's interpreter");
        chain.mine(&bumped).expect("the bumped transaction confirms");
        let fx = closer
            .ch
            .handle_chain(ChainEvent::Confirmed { tx: &bumped, height: BlockHeight(chain.height) }, &closer.signer);
        if a_closes {
            assert!(fx.events.iter().any(|e| matches!(e, Event::HtlcFailed { id, .. } if *id == expired)));
        }
        // Its output is ours after the delay: the channel sweeps it.
        let later = chain.height + 1_000;
        chain.height = later;
        let fx = closer.ch.handle_chain(ChainEvent::Tip(ChainTip::at(later)), &closer.signer);
        let sweep = fx
            .broadcast
            .iter()
            .find(|t| t.input.iter().any(|i| i.previous_output.txid == bumped.compute_txid()))
            .expect("the second-stage output is swept");
        chain.mine(sweep).expect("the sweep confirms");
    }
}
