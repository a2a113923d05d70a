//! Watchtowers that cannot steal. Lightning: blind appointments (locator + blob sealed under the
//! revoked commitment's txid) let a tower holding no key punish a cheater while the victim is
//! offline for good; a tampered blob, an unrelated transaction or a blob paying anyone but the
//! client make the tower do nothing. The costs against the trusted `PenaltyKit` are measured
//! and printed (`cargo test --test towers -- --nocapture`).

mod common;

use std::collections::{BTreeMap, HashMap};

use bitcoin::{Amount, Transaction};
use common::chain::Chain;
use common::ln::{onion, Pair};
use paychan::core::commitment::{BuiltCommitment, ChannelType, FeeratePerKw, HtlcDirection, OutputRole};
use paychan::core::tower::{Appointment, ClientId, Tower, TowerError};
use paychan::core::{MilliSats, PaymentHash, PaymentPreimage};
use paychan::lightning::tower::{default_ladder, AppointmentError};
use paychan::lightning::{PenaltyRecord, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];
const CAPACITY: u64 = 10_000_000;
const BASE_FEERATE: FeeratePerKw = FeeratePerKw(1_000);

/// One revoked state of B, as A (the client) and B (the cheater) hold it.
struct Revoked {
    /// A's copy of B's commitment (unsigned by B), kept until B revoked it.
    view: BuiltCommitment,
    /// B's signed copy: what B broadcasts when it cheats.
    signed: Transaction,
    /// The appointment A made right after the revocation.
    appointment: Vec<u8>,
    /// B's HTLC-success transactions for this commitment (B knows the preimages).
    htlc_success: Vec<Transaction>,
}

fn records(p: &Pair) -> Vec<PenaltyRecord> {
    paychan::lightning::records::penalty_records(&p.a.records).expect("records")
}

/// Records what changed after one step: B's new signed commitment, A's new view of it, and an
/// appointment for every view A now holds the revocation secret of.
fn capture(
    p: &Pair,
    preimages: &HashMap<PaymentHash, PaymentPreimage>,
    signed: &mut HashMap<u64, (Transaction, Vec<Transaction>)>,
    views: &mut BTreeMap<u64, BuiltCommitment>,
    out: &mut BTreeMap<u64, Revoked>,
    client_work: &mut std::time::Duration,
) {
    let n = p.b.ch.holder_commitment_number();
    if let std::collections::hash_map::Entry::Vacant(e) = signed.entry(n) {
        let v = p.b.ch.holder_commitment(&p.b.signer).expect("commitment");
        let success = v
            .htlc_txs()
            .iter()
            .enumerate()
            .filter(|(_, h)| h.direction == HtlcDirection::Received)
            .filter_map(|(pos, h)| {
                let hash = v.commitment().htlcs()[h.htlc_index].payment_hash();
                v.finalize_htlc_tx(&p.b.signer, pos, Some(&preimages[&hash])).ok().flatten()
            })
            .collect();
        e.insert((v.finalize(&p.b.signer).expect("signed"), success));
    }
    if let Some(v) = p.a.ch.counterparty_commitment() {
        views.entry(p.a.ch.counterparty_commitment_number()).or_insert(v);
    }
    let recs = records(p);
    for (number, view) in views.iter() {
        if out.contains_key(number) {
            continue;
        }
        let started = std::time::Instant::now();
        match p.a.ch.appointment(view.tx(), &recs, &default_ladder(BASE_FEERATE), &p.a.signer) {
            Ok(a) => {
                *client_work += started.elapsed();
                let (signed, htlc_success) = signed.get(number).expect("B signed this commitment").clone();
                assert_eq!(signed.compute_txid(), view.txid(), "both copies have one txid");
                out.insert(*number, Revoked { view: view.clone(), signed, appointment: a.encode(), htlc_success });
            }
            Err(AppointmentError::NotRevoked) => {}
            Err(e) => panic!("appointment for {number}: {e}"),
        }
    }
}

/// A channel with HTLCs both ways, some fulfilled, delivered message by message; A makes an
/// appointment as soon as each commitment of B is revoked.
fn history(ct: ChannelType, rounds: u64) -> (Pair, Vec<Revoked>, std::time::Duration) {
    let mut p = Pair::open(ct, CAPACITY, 4_000_000_000);
    let (mut signed, mut views, mut out) = (HashMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut work = std::time::Duration::ZERO;
    let mut preimages = HashMap::new();
    capture(&p, &preimages, &mut signed, &mut views, &mut out, &mut work);
    for round in 0..rounds {
        for side in 0..2u64 {
            let (peer, queue) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(round * 2 + side + 1).to_be_bytes());
            let pre = PaymentPreimage(bytes);
            preimages.insert(pre.hash(), pre);
            let amount = MilliSats::from_msat(3_000_000 + 1_000_000 * ((round * 7 + side) % 11));
            let (_, fx) = peer.ch.add_htlc(amount, pre.hash(), 1_100, onion()).expect("add");
            peer.absorb_pub(fx, queue);
        }
        loop {
            let mut acted = false;
            for side in 0..2 {
                let (peer, queue) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
                if peer.ch.has_unsigned_changes() && !peer.ch.is_awaiting_revoke() {
                    let fx = peer.ch.commit(&peer.signer).expect("commit");
                    peer.absorb_pub(fx, queue);
                    acted = true;
                }
            }
            while p.deliver_to_b() || p.deliver_to_a() {
                acted = true;
                capture(&p, &preimages, &mut signed, &mut views, &mut out, &mut work);
            }
            if !acted {
                break;
            }
        }
        // Every other round, each side fulfils the HTLCs it received.
        if round % 2 == 1 {
            for side in 0..2 {
                let (peer, queue) = if side == 0 { (&mut p.a, &mut p.to_b) } else { (&mut p.b, &mut p.to_a) };
                let ready: Vec<_> = peer
                    .ch
                    .htlcs()
                    .iter()
                    .filter(|h| h.offerer == Side::Counterparty && h.is_irrevocably_committed() && h.remove.is_none())
                    .map(|h| (h.id, h.payment_hash))
                    .collect();
                for (id, hash) in ready {
                    let fx = peer.ch.fulfill_htlc(id, preimages[&hash]).expect("fulfil");
                    peer.absorb_pub(fx, queue);
                }
            }
        }
    }
    (p, out.into_values().collect(), work)
}

/// The fee a transaction pays, given the transaction it spends.
fn fee(tx: &Transaction, parent: &Transaction) -> Amount {
    let inputs: Amount = tx.input.iter().map(|i| parent.output[i.previous_output.vout as usize].value).sum();
    inputs - tx.output.iter().map(|o| o.value).sum::<Amount>()
}

#[test]
fn tower_alone_punishes_every_revoked_commitment_while_the_victim_is_offline() {
    for ct in TYPES {
        let (p, revoked, _) = history(ct, 8);
        assert!(revoked.len() >= 15, "{} revoked states", revoked.len());
        assert!(revoked.iter().filter(|r| r.view.htlcs().len() >= 2).count() >= 5, "HTLCs in the revoked states");
        let destination = p.a.ch.sweep_destination();
        let mut tower = Tower::new();
        let client = tower.register(destination.clone());
        for r in &revoked {
            tower.add_appointment(client, &r.appointment).expect("stored");
        }
        assert_eq!(tower.appointment_count(), revoked.len());
        for r in &revoked {
            // A is gone for good. B publishes a revoked commitment.
            let mut tower = tower.clone();
            let mut chain = Chain::at(1_200);
            chain.credit(&p.funding);
            chain.mine(&r.signed).expect("the cheater's commitment confirms");
            let out = tower.block(std::slice::from_ref(&r.signed));
            assert_eq!(out.len(), 1, "the first rung, once");
            // The first rung does not confirm (fees spiked): the tower climbs the ladder.
            let second = tower.block(&[]);
            assert_eq!(second.len(), 1);
            assert!(fee(&second[0], &r.signed) > fee(&out[0], &r.signed), "a higher fee replaces it");
            assert_eq!(
                second[0].input.iter().map(|i| i.previous_output).collect::<Vec<_>>(),
                out[0].input.iter().map(|i| i.previous_output).collect::<Vec<_>>(),
                "same inputs: a replacement"
            );
            let penalty = &second[0];
            chain.mine(penalty).unwrap_or_else(|e| panic!("the tower's penalty is rejected: {e:?}"));
            assert!(tower.block(std::slice::from_ref(penalty)).is_empty(), "settled: nothing more");
            assert!(tower.active_breaches().is_empty());
            // To the satoshi: the penalty sweeps every output B could claim (to_local and every
            // HTLC) to A's destination; what is left of the commitment is A's own to_remote and
            // the anchors.
            let view = &r.view;
            assert_eq!(view.outputs().len(), r.signed.output.len());
            let swept: Vec<u32> = penalty.input.iter().map(|i| i.previous_output.vout).collect();
            let mut to_a = Amount::ZERO;
            let mut anchors = Amount::ZERO;
            for (vout, o) in view.outputs().iter().enumerate() {
                match o.role {
                    OutputRole::ToBroadcaster | OutputRole::Htlc(_) => {
                        assert!(swept.contains(&(vout as u32)), "{:?} left to the cheater", o.role)
                    }
                    OutputRole::ToCountersignatory => to_a += o.value,
                    OutputRole::BroadcasterAnchor | OutputRole::CountersignatoryAnchor => anchors += o.value,
                }
            }
            assert_eq!(penalty.output.len(), 1);
            assert_eq!(penalty.output[0].script_pubkey, destination);
            let commitment_fee = Amount::from_sat(CAPACITY) - r.signed.output.iter().map(|o| o.value).sum::<Amount>();
            let penalty_fee = fee(penalty, &r.signed);
            assert_eq!(
                to_a + penalty.output[0].value + penalty_fee + commitment_fee + anchors,
                Amount::from_sat(CAPACITY)
            );
            // A ends with at least its balance in the newest state.
            let now = p.a.ch.balances(Side::Holder);
            let newest = now.holder.to_amount_floor() + now.offered.to_amount_floor();
            assert!(to_a + penalty.output[0].value + penalty_fee + commitment_fee + anchors >= newest);
            assert!(chain.is_unspent(&bitcoin::OutPoint { txid: penalty.compute_txid(), vout: 0 }));
        }
    }
}

#[test]
fn tower_ignores_tampered_blobs_unrelated_transactions_and_foreign_payouts() {
    let (p, revoked, _) = history(ChannelType::AnchorsZeroFeeHtlc, 3);
    let r = revoked.last().expect("a revoked state");
    let destination = p.a.ch.sweep_destination();
    // A tampered blob: one flipped bit anywhere in the ciphertext or tag.
    let mut appointment = Appointment::decode(&r.appointment).unwrap();
    for at in [0, appointment.blob.len() / 2, appointment.blob.len() - 1] {
        let mut bad = appointment.clone();
        bad.blob[at] ^= 1;
        let mut tower = Tower::new();
        let c = tower.register(destination.clone());
        tower.add_appointment(c, &bad.encode()).unwrap();
        assert!(tower.block(std::slice::from_ref(&r.signed)).is_empty(), "tampered at {at}");
        assert!(tower.active_breaches().is_empty());
    }
    // An unrelated transaction (the funding, another revoked state): no match, nothing stored used.
    let mut tower = Tower::new();
    let c = tower.register(destination.clone());
    tower.add_appointment(c, &r.appointment).unwrap();
    let before = tower.encode();
    assert!(tower.block(&[p.funding.clone(), revoked[0].signed.clone()]).is_empty());
    assert_eq!(tower.encode(), before, "the tower's state is unchanged");
    // The same appointment for a client registered with another script: the penalty pays A's
    // destination, not that one, so the tower does nothing.
    let mut tower = Tower::new();
    let other = tower.register(common::ln::p2wpkh_script());
    tower.add_appointment(other, &r.appointment).unwrap();
    assert!(tower.block(std::slice::from_ref(&r.signed)).is_empty());
    // A blob sealed for the breach whose penalty pays the client but spends something else (the
    // funding output, and an output the breach does not have).
    let real = appointment.open(&r.signed.compute_txid()).expect("opens").ladder;
    let funding_op = r.signed.input[0].previous_output;
    let missing = bitcoin::OutPoint { txid: r.signed.compute_txid(), vout: r.signed.output.len() as u32 };
    for op in [funding_op, missing] {
        let mut elsewhere = real[0].clone();
        elsewhere.input[0].previous_output = op;
        // (Paying nothing, so that only the input check can refuse it.)
        elsewhere.output[0].value = Amount::ZERO;
        let mut tower = Tower::new();
        let c = tower.register(destination.clone());
        let sealed = Appointment::seal(&r.signed.compute_txid(), &[elsewhere], &[]);
        tower.add_appointment(c, &sealed.encode()).unwrap();
        assert!(tower.block(std::slice::from_ref(&r.signed)).is_empty(), "spends {op}");
    }
    // The untouched ladder, sealed the same way, is answered (the control).
    let mut tower = Tower::new();
    let c = tower.register(destination.clone());
    tower.add_appointment(c, &Appointment::seal(&r.signed.compute_txid(), &real, &[]).encode()).unwrap();
    assert_eq!(tower.block(std::slice::from_ref(&r.signed)).len(), 1);
    // Unknown client and malformed bytes are refused, nothing stored.
    let mut tower = Tower::new();
    assert_eq!(tower.add_appointment(ClientId(0), &r.appointment), Err(TowerError::UnknownClient(ClientId(0))));
    let c = tower.register(destination);
    appointment.blob.truncate(3);
    assert!(matches!(tower.add_appointment(c, &appointment.encode()), Err(TowerError::Decode(_))));
    assert_eq!(tower.appointment_count(), 0);
}

#[test]
fn appointment_and_tower_encodings_round_trip() {
    let (p, revoked, _) = history(ChannelType::StaticRemoteKey, 3);
    let mut tower = Tower::new();
    let c = tower.register(p.a.ch.sweep_destination());
    for r in &revoked {
        let a = Appointment::decode(&r.appointment).expect("decodes");
        assert_eq!(a.encode(), r.appointment);
        tower.add_appointment(c, &r.appointment).unwrap();
    }
    let _ = tower.block(std::slice::from_ref(&revoked[1].signed));
    assert_eq!(tower.active_breaches().len(), 1);
    let bytes = tower.encode();
    let back = Tower::decode(&bytes).expect("tower decodes");
    assert_eq!(back, tower);
    for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
        assert!(Tower::decode(&bytes[..cut]).is_err());
    }
    // A restored tower keeps answering: the next rung.
    let mut back = back;
    assert_eq!(back.block(&[]).len(), 1);
    // Not revoked (A's current view of B) and a bad ladder are refused.
    let current = p.a.ch.counterparty_commitment().unwrap();
    let recs = records(&p);
    assert_eq!(
        p.a.ch.appointment(current.tx(), &recs, &default_ladder(BASE_FEERATE), &p.a.signer),
        Err(AppointmentError::NotRevoked)
    );
    assert_eq!(p.a.ch.appointment(revoked[0].view.tx(), &recs, &[], &p.a.signer), Err(AppointmentError::BadLadder));
}

/// The costs of not trusting the tower, printed: bytes per appointment and per revoked state,
/// the client's signing time per update, against the trusted kit's bytes (which grow with HTLCs).
#[test]
fn costs_appointments_versus_kit() {
    use paychan::core::keys::{ChannelSecrets, Seed};
    for ct in TYPES {
        let (p, revoked, work) = history(ct, 8);
        let sizes: Vec<usize> = revoked.iter().map(|r| r.appointment.len()).collect();
        let mut tower = Tower::new();
        let c = tower.register(p.a.ch.sweep_destination());
        for r in &revoked {
            tower.add_appointment(c, &r.appointment).unwrap();
        }
        let one_rung: Vec<usize> = revoked
            .iter()
            .map(|r| {
                p.a.ch.appointment(r.view.tx(), &records(&p), &[BASE_FEERATE], &p.a.signer).unwrap().encode().len()
            })
            .collect();
        let secret = ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0).revocation_base;
        let kit = p.a.ch.watchtower_kit(Some(secret), &records(&p)).unwrap();
        let max_htlcs = revoked.iter().map(|r| r.view.htlcs().len()).max().unwrap();
        println!(
            "{ct:?}: {} revoked states (up to {max_htlcs} HTLCs); appointment (4 rungs) {}..{} B, 1 rung {}..{} B; \
             tower stores {} B ({} B/state); client signs {} rungs per update in {:?} on average; \
             trusted kit {} B in all ({} HTLC records)",
            revoked.len(),
            sizes.iter().min().unwrap(),
            sizes.iter().max().unwrap(),
            one_rung.iter().min().unwrap(),
            one_rung.iter().max().unwrap(),
            tower.stored_bytes(),
            tower.stored_bytes() / revoked.len(),
            default_ladder(BASE_FEERATE).len(),
            work / revoked.len() as u32,
            kit.encode().len(),
            kit.htlcs.len(),
        );
        // Storage is linear in states: every appointment is stored, none shared.
        let blobs: usize = revoked.iter().map(|r| Appointment::decode(&r.appointment).unwrap().blob.len()).sum();
        assert_eq!(tower.stored_bytes(), blobs + revoked.len() * (paychan::core::tower::LOCATOR_LEN + 4));
        // A rung costs one signed penalty: four rungs are about four times one.
        for (four, one) in sizes.iter().zip(&one_rung) {
            assert!(*four > 3 * (*one - 40) && *four < 4 * *one, "{four} vs {one}");
        }
    }
}

/// The cheater takes an HTLC output of its revoked commitment through its HTLC-success
/// transaction before the penalty confirms: the full penalty is now invalid, and a tower that
/// stopped there would leave the cheater its `to_local`. The tower turns to the fallback ladder
/// and takes `to_local` to the client, to the satoshi.
#[test]
fn tower_falls_back_to_to_local_when_the_cheater_escapes_through_an_htlc_transaction() {
    for ct in TYPES {
        let (p, revoked, _) = history(ct, 8);
        let destination = p.a.ch.sweep_destination();
        let mut escapes = 0;
        for r in revoked.iter().filter(|r| !r.htlc_success.is_empty()) {
            let mut tower = Tower::new();
            let c = tower.register(destination.clone());
            tower.add_appointment(c, &r.appointment).unwrap();
            let mut chain = Chain::at(1_200);
            chain.credit(&p.funding);
            chain.mine(&r.signed).unwrap();
            let first = tower.block(std::slice::from_ref(&r.signed));
            assert_eq!(first.len(), 1);
            // The HTLC-success confirms first (the penalty is outbid or delayed).
            let escape = &r.htlc_success[0];
            chain.mine(escape).unwrap_or_else(|e| panic!("the cheater's HTLC-success: {e:?}"));
            assert!(chain.check(&first[0]).is_err(), "the full penalty can no longer confirm");
            let out = tower.block(std::slice::from_ref(escape));
            assert_eq!(out.len(), 1, "the tower keeps going with the fallback");
            let fallback = &out[0];
            chain.mine(fallback).unwrap_or_else(|e| panic!("fallback rejected: {e:?}"));
            // It sweeps exactly the cheater's to_local, less its fee, to the client.
            let to_local = r
                .view
                .outputs()
                .iter()
                .find(|o| o.role == OutputRole::ToBroadcaster)
                .map(|o| o.value)
                .expect("to_local");
            assert_eq!(fallback.output.len(), 1);
            assert_eq!(fallback.output[0].script_pubkey, destination);
            assert_eq!(fallback.output[0].value + fee(fallback, &r.signed), to_local);
            assert!(tower.block(std::slice::from_ref(fallback)).is_empty());
            assert!(tower.active_breaches().is_empty());
            escapes += 1;
        }
        assert!(escapes >= 3, "{escapes} states with an HTLC B could take");
    }
}
