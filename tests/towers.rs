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
    /// B's HTLC-timeout transactions for this commitment (valid from their `cltv_expiry`).
    htlc_timeout: Vec<Transaction>,
    /// The second-stage appointments A made with it (`static_remotekey`; none with anchors).
    second_stage: Vec<Vec<u8>>,
}

/// The client's signing time over a history: the commitments' appointments and the second-stage
/// ones.
#[derive(Default)]
struct Work {
    appointments: std::time::Duration,
    second_stage: std::time::Duration,
}

fn records(p: &Pair) -> Vec<PenaltyRecord> {
    paychan::lightning::records::penalty_records(&p.a.records).expect("records")
}

/// Records what changed after one step: B's new signed commitment, A's new view of it, and an
/// appointment for every view A now holds the revocation secret of.
fn capture(
    p: &Pair,
    preimages: &HashMap<PaymentHash, PaymentPreimage>,
    signed: &mut HashMap<u64, (Transaction, Vec<Transaction>, Vec<Transaction>)>,
    views: &mut BTreeMap<u64, BuiltCommitment>,
    out: &mut BTreeMap<u64, Revoked>,
    client_work: &mut Work,
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
        let timeout = v
            .htlc_txs()
            .iter()
            .enumerate()
            .filter(|(_, h)| h.direction == HtlcDirection::Offered)
            .filter_map(|(pos, _)| v.finalize_htlc_tx(&p.b.signer, pos, None).ok().flatten())
            .collect();
        e.insert((v.finalize(&p.b.signer).expect("signed"), success, timeout));
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
                client_work.appointments += started.elapsed();
                let (signed, htlc_success, htlc_timeout) =
                    signed.get(number).expect("B signed this commitment").clone();
                assert_eq!(signed.compute_txid(), view.txid(), "both copies have one txid");
                let started = std::time::Instant::now();
                let second = p.a.ch.second_stage_appointments(view, &recs, &default_ladder(BASE_FEERATE), &p.a.signer);
                client_work.second_stage += started.elapsed();
                let second_stage = match second {
                    Ok(s) => {
                        assert!(!view.channel_type().has_anchors());
                        s.iter().map(Appointment::encode).collect()
                    }
                    Err(AppointmentError::SecondStageUnpredictable) => {
                        assert!(view.channel_type().has_anchors());
                        Vec::new()
                    }
                    Err(e) => panic!("second-stage appointments for {number}: {e}"),
                };
                let r = Revoked {
                    view: view.clone(),
                    signed,
                    appointment: a.encode(),
                    htlc_success,
                    htlc_timeout,
                    second_stage,
                };
                out.insert(*number, r);
            }
            Err(AppointmentError::NotRevoked) => {}
            Err(e) => panic!("appointment for {number}: {e}"),
        }
    }
}

/// A channel with HTLCs both ways, some fulfilled, delivered message by message; A makes an
/// appointment as soon as each commitment of B is revoked.
fn history(ct: ChannelType, rounds: u64) -> (Pair, Vec<Revoked>, Work) {
    let mut p = Pair::open(ct, CAPACITY, 4_000_000_000);
    let (mut signed, mut views, mut out) = (HashMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut work = Work::default();
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
    let mut second_stage = 0;
    for r in &revoked {
        // The commitment's appointment and its second-stage ones: one encoding for both.
        for bytes in std::iter::once(&r.appointment).chain(&r.second_stage) {
            let a = Appointment::decode(bytes).expect("decodes");
            assert_eq!(&a.encode(), bytes);
            for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
                assert!(Appointment::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            tower.add_appointment(c, bytes).unwrap();
        }
        second_stage += r.second_stage.len();
    }
    assert!(second_stage > 0);
    assert_eq!(tower.appointment_count(), revoked.len() + second_stage);
    // A breach and an escape through an HTLC transaction: the tower answers both.
    let r = revoked.iter().rev().find(|r| !r.htlc_timeout.is_empty()).expect("an HTLC B offered");
    let _ = tower.block(std::slice::from_ref(&r.signed));
    let _ = tower.block(&r.htlc_timeout[..1]);
    assert_eq!(tower.active_breaches().len(), 2);
    let bytes = tower.encode();
    let back = Tower::decode(&bytes).expect("tower decodes");
    assert_eq!(back, tower);
    for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
        assert!(Tower::decode(&bytes[..cut]).is_err());
    }
    // A restored tower keeps answering: the next rung of each.
    let mut back = back;
    assert_eq!(back.block(&[]).len(), 2);
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
            work.appointments / revoked.len() as u32,
            kit.encode().len(),
            kit.htlcs.len(),
        );
        // The second-stage appointments (static_remotekey only): one per HTLC transaction.
        let second: Vec<usize> = revoked.iter().flat_map(|r| r.second_stage.iter().map(Vec::len)).collect();
        let htlc_txs: usize = revoked.iter().map(|r| r.view.htlc_txs().len()).sum();
        if ct.has_anchors() {
            assert!(second.is_empty());
            println!("{ct:?}: second-stage appointments: none (the peer's HTLC transactions have no predictable txid)");
        } else {
            assert_eq!(second.len(), htlc_txs, "one per HTLC transaction");
            let mut full = tower.clone();
            for b in revoked.iter().flat_map(|r| &r.second_stage) {
                full.add_appointment(c, b).unwrap();
            }
            println!(
                "{ct:?}: second-stage appointments (4 rungs): {} for {htlc_txs} HTLC transactions, {}..{} B each; \
                 tower stores {} B with them ({} B/state, {} B per HTLC transaction); client signs them in {:?} \
                 per update on average",
                second.len(),
                second.iter().min().unwrap(),
                second.iter().max().unwrap(),
                full.stored_bytes(),
                full.stored_bytes() / revoked.len(),
                (full.stored_bytes() - tower.stored_bytes()) / htlc_txs,
                work.second_stage / revoked.len() as u32,
            );
        }
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

/// Mines `txs` together in the next block (each checked by Core's interpreter); panics if one is
/// refused or left out.
fn mine_together(chain: &mut Chain, txs: &[Transaction], what: &str) -> Vec<Transaction> {
    for tx in txs {
        chain.submit(tx).unwrap_or_else(|e| panic!("{what} rejected: {e:?}"));
    }
    let block = chain.mine_block();
    assert_eq!(block.len(), txs.len(), "{what}: all in one block");
    block
}

/// `static_remotekey`: B publishes a revoked commitment, then, before the tower's penalty
/// confirms, every HTLC transaction it can (HTLC-success with the preimages it knows,
/// HTLC-timeout past their expiry), whose outputs it would take after its delay. A is offline
/// for good. The tower, holding the second-stage appointments A made with the commitment's,
/// turns to the fallback for `to_local` and takes the output of every HTLC transaction to A: B
/// ends with nothing, A with the channel less the fees, to the satoshi. The same tower without
/// the second-stage appointments leaves those outputs to B (the control: the test can fail).
#[test]
fn tower_recovers_second_stage_outputs_when_the_cheater_escapes_through_htlc_transactions() {
    let (p, revoked, _) = history(ChannelType::StaticRemoteKey, 8);
    let destination = p.a.ch.sweep_destination();
    let now = p.a.ch.balances(Side::Holder);
    let newest = now.holder.to_amount_floor() + now.offered.to_amount_floor();
    let mut cases = 0;
    for r in revoked.iter().filter(|r| !r.view.htlc_txs().is_empty()) {
        let escapes: Vec<Transaction> = r.htlc_success.iter().chain(&r.htlc_timeout).cloned().collect();
        assert_eq!(escapes.len(), r.view.htlc_txs().len(), "B can take every HTLC output");
        assert_eq!(r.second_stage.len(), escapes.len(), "one second-stage appointment per HTLC transaction");
        let to_a: Amount =
            r.view.outputs().iter().filter(|o| o.role == OutputRole::ToCountersignatory).map(|o| o.value).sum();
        let commitment_fee = Amount::from_sat(CAPACITY) - r.signed.output.iter().map(|o| o.value).sum::<Amount>();
        let escape_fees: Amount = escapes.iter().map(|e| fee(e, &r.signed)).sum();
        for with_second_stage in [true, false] {
            let mut tower = Tower::new();
            let c = tower.register(destination.clone());
            tower.add_appointment(c, &r.appointment).unwrap();
            if with_second_stage {
                for s in &r.second_stage {
                    tower.add_appointment(c, s).unwrap();
                }
            }
            let mut chain = Chain::at(1_200);
            chain.credit(&p.funding);
            chain.mine(&r.signed).unwrap();
            let first = tower.block(std::slice::from_ref(&r.signed));
            assert_eq!(first.len(), 1, "the full penalty's first rung");
            // B's HTLC transactions confirm first, all in one block.
            let block = mine_together(&mut chain, &escapes, "the cheater's HTLC transactions");
            assert!(chain.check(&first[0]).is_err(), "the full penalty can no longer confirm");
            let out = tower.block(&block);
            let (fallback, second): (Vec<Transaction>, Vec<Transaction>) = out
                .into_iter()
                .partition(|t| t.input.iter().all(|i| i.previous_output.txid == r.signed.compute_txid()));
            assert_eq!(fallback.len(), 1, "to_local through the fallback");
            let expected = if with_second_stage { escapes.len() } else { 0 };
            assert_eq!(second.len(), expected, "one penalty per HTLC transaction");
            let answers: Vec<Transaction> = fallback.iter().chain(&second).cloned().collect();
            mine_together(&mut chain, &answers, "the tower's penalties");
            assert!(tower.block(&answers).is_empty(), "settled: nothing more");
            assert!(tower.active_breaches().is_empty());
            // Every penalty pays A alone; each second-stage one takes its HTLC transaction's
            // output whole, less its own fee.
            let mut to_a_onchain = to_a;
            let mut fees = commitment_fee + escape_fees + fee(&fallback[0], &r.signed);
            for t in &answers {
                assert_eq!(t.output.len(), 1);
                assert_eq!(t.output[0].script_pubkey, destination);
                assert!(chain.is_unspent(&bitcoin::OutPoint { txid: t.compute_txid(), vout: 0 }));
                to_a_onchain += t.output[0].value;
            }
            for t in &second {
                let escape = escapes
                    .iter()
                    .find(|e| e.compute_txid() == t.input[0].previous_output.txid)
                    .expect("spends one of B's HTLC transactions");
                assert_eq!(t.input.len(), 1);
                assert_eq!(t.output[0].value + fee(t, escape), escape.output[0].value);
                fees += fee(t, escape);
            }
            let left: Amount = escapes
                .iter()
                .map(|e| bitcoin::OutPoint { txid: e.compute_txid(), vout: 0 })
                .filter(|op| chain.is_unspent(op))
                .map(|op| chain.utxo(&op).expect("unspent").value)
                .sum();
            assert_eq!(to_a_onchain + fees + left, Amount::from_sat(CAPACITY), "to the satoshi");
            if with_second_stage {
                assert_eq!(left, Amount::ZERO, "B keeps nothing");
                assert!(to_a_onchain + fees >= newest, "A whole but for the fees");
            } else {
                assert!(left > Amount::ZERO, "without them B keeps its HTLC transactions' outputs");
            }
        }
        cases += 1;
    }
    assert!(cases >= 5, "{cases} revoked states with HTLCs");
}

/// The second-stage appointments are blind and checked like any other: one opens only with its
/// own HTLC transaction's txid; a tampered one, or one shown an unrelated transaction (the
/// commitment, another HTLC transaction), does nothing; one whose penalty spends another HTLC
/// transaction than the one it is sealed under is dropped. With anchors none can be made: the
/// peer's HTLC transaction, with the fee input it adds, has another txid than any A could
/// predict.
#[test]
fn second_stage_appointments_are_blind_and_checked() {
    let (p, revoked, _) = history(ChannelType::StaticRemoteKey, 3);
    let destination = p.a.ch.sweep_destination();
    let r = revoked.iter().rev().find(|r| r.second_stage.len() >= 2).expect("a state with two HTLCs");
    let escapes: Vec<Transaction> = r.htlc_success.iter().chain(&r.htlc_timeout).cloned().collect();
    let appointments: Vec<Appointment> = r.second_stage.iter().map(|b| Appointment::decode(b).unwrap()).collect();
    for a in &appointments {
        assert!(a.open(&r.signed.compute_txid()).is_none(), "not with the commitment's txid");
        let opening: Vec<&Transaction> = escapes.iter().filter(|e| a.open(&e.compute_txid()).is_some()).collect();
        assert_eq!(opening.len(), 1, "with exactly one HTLC transaction's txid");
        assert_eq!(a.locator, paychan::core::tower::Locator::of(&opening[0].compute_txid()));
    }
    // Shown the commitment and unrelated transactions, a tower holding only them does nothing.
    let mut tower = Tower::new();
    let c = tower.register(destination.clone());
    for b in &r.second_stage {
        tower.add_appointment(c, b).unwrap();
    }
    let before = tower.encode();
    assert!(tower.block(&[p.funding.clone(), r.signed.clone(), revoked[0].signed.clone()]).is_empty());
    assert_eq!(tower.encode(), before, "unchanged");
    // Tampered: one flipped bit, and the tower answers nothing for that HTLC transaction.
    let escape = &escapes[0];
    let own = appointments.iter().find(|a| a.open(&escape.compute_txid()).is_some()).unwrap();
    for at in [0, own.blob.len() / 2, own.blob.len() - 1] {
        let mut bad = own.clone();
        bad.blob[at] ^= 1;
        let mut tower = Tower::new();
        let c = tower.register(destination.clone());
        tower.add_appointment(c, &bad.encode()).unwrap();
        assert!(tower.block(std::slice::from_ref(escape)).is_empty(), "tampered at {at}");
    }
    // Sealed under the first HTLC transaction, the penalties of the second: dropped.
    let other = appointments.iter().find(|a| a.open(&escapes[1].compute_txid()).is_some()).unwrap();
    let foreign = other.open(&escapes[1].compute_txid()).unwrap().ladder;
    let mut tower = Tower::new();
    let c = tower.register(destination.clone());
    tower.add_appointment(c, &Appointment::seal(&escape.compute_txid(), &foreign, &[]).encode()).unwrap();
    assert!(tower.block(std::slice::from_ref(escape)).is_empty());
    // The control: its own appointment is answered with a penalty the interpreter accepts.
    let mut tower = Tower::new();
    let c = tower.register(destination.clone());
    tower.add_appointment(c, &own.encode()).unwrap();
    let mut chain = Chain::at(1_200);
    chain.credit(&p.funding);
    chain.mine(&r.signed).unwrap();
    chain.mine(escape).unwrap();
    let out = tower.block(std::slice::from_ref(escape));
    assert_eq!(out.len(), 1);
    chain.mine(&out[0]).unwrap_or_else(|e| panic!("second-stage penalty rejected: {e:?}"));
    // Not revoked, and a bad ladder, are refused as for the commitment's appointment.
    let recs = records(&p);
    let current = p.a.ch.counterparty_commitment().unwrap();
    let ladder = default_ladder(BASE_FEERATE);
    assert_eq!(
        p.a.ch.second_stage_appointments(&current, &recs, &ladder, &p.a.signer),
        Err(AppointmentError::NotRevoked)
    );
    assert_eq!(p.a.ch.second_stage_appointments(&r.view, &recs, &[], &p.a.signer), Err(AppointmentError::BadLadder));
    // Anchors: refused, and rightly: B's HTLC transaction carries the input that pays its fee,
    // so its txid is not the one of the transaction A signed.
    let (p, revoked, _) = history(ChannelType::AnchorsZeroFeeHtlc, 3);
    let r = revoked.last().unwrap();
    assert_eq!(
        p.a.ch.second_stage_appointments(&r.view, &records(&p), &ladder, &p.a.signer),
        Err(AppointmentError::SecondStageUnpredictable)
    );
    let v = p.b.ch.holder_commitment(&p.b.signer).expect("B's commitment");
    let pos = v.htlc_txs().iter().position(|h| h.direction == HtlcDirection::Offered).expect("an HTLC B offered");
    let fee_input = bitcoin::TxIn {
        previous_output: p.funding.input[0].previous_output,
        script_sig: bitcoin::ScriptBuf::new(),
        sequence: bitcoin::Sequence::MAX,
        witness: bitcoin::Witness::new(),
    };
    let change = bitcoin::TxOut { value: Amount::from_sat(1_000), script_pubkey: common::ln::p2wpkh_script() };
    let escape = v.finalize_htlc_tx_with_input(&p.b.signer, pos, None, fee_input, change).unwrap().expect("signed");
    assert_ne!(escape.compute_txid(), v.htlc_txs()[pos].tx.compute_txid(), "the txid A signed is not B's");
}

/// A tower is a public service: a hostile client floods it with appointments (garbage, garbage
/// under the locator of the victim's breach, oversized blobs) and is refused with typed errors
/// past its quota, while the appointments stored (the victim's and its own) are untouched and the
/// victim's breach is still answered, to the satoshi of the penalty it signed.
#[test]
fn tower_refuses_floods_and_keeps_what_it_stored() {
    use paychan::core::tower::{TowerLimits, MAX_BLOB_LEN};
    let (p, revoked, _) = history(ChannelType::AnchorsZeroFeeHtlc, 3);
    let victim = p.a.ch.sweep_destination();
    let largest = revoked.iter().map(|r| Appointment::decode(&r.appointment).unwrap().blob.len()).max().unwrap();
    let limits = TowerLimits { max_appointments: revoked.len() as u32, max_blob_len: largest as u32 };
    let mut tower = Tower::with_limits(limits);
    let a = tower.register(victim.clone());
    let mallory = tower.register(common::ln::p2wpkh_script());
    for r in &revoked {
        tower.add_appointment(a, &r.appointment).expect("within the quota");
    }
    // The same appointment again: nothing new stored, no slot taken.
    tower.add_appointment(a, &revoked[0].appointment).unwrap();
    assert_eq!(tower.appointments_of(a), revoked.len() as u32);
    // The victim at its quota: one more is refused.
    let extra = Appointment { locator: paychan::core::tower::Locator([7; 16]), blob: vec![0; 64] };
    assert_eq!(
        tower.add_appointment(a, &extra.encode()),
        Err(TowerError::QuotaExceeded { client: a, limit: revoked.len() as u32 })
    );
    // Mallory (the cheater, say) fills its own quota with garbage, the first under the locator of
    // the breach it plans, then keeps sending: each one past the quota is refused.
    let target = &revoked[revoked.len() - 1];
    let target_locator = Appointment::decode(&target.appointment).unwrap().locator;
    let before = tower.encode();
    let mut accepted = 0;
    let mut refused = 0;
    for n in 0..(3 * revoked.len() as u32) {
        let mut locator = [0u8; 16];
        locator[..4].copy_from_slice(&n.to_be_bytes());
        let locator = if n == 0 { target_locator } else { paychan::core::tower::Locator(locator) };
        let garbage = Appointment { locator, blob: vec![n as u8; 200] };
        match tower.add_appointment(mallory, &garbage.encode()) {
            Ok(()) => accepted += 1,
            Err(TowerError::QuotaExceeded { client, .. }) => {
                assert_eq!(client, mallory);
                refused += 1
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(accepted, revoked.len() as u32, "the quota, and no more");
    assert!(refused > 0);
    assert_eq!(tower.appointments_of(mallory), revoked.len() as u32);
    assert_eq!(tower.appointments_of(a), revoked.len() as u32, "the victim's appointments are untouched");
    assert_ne!(tower.encode(), before);
    // An oversized blob is refused on its size alone, by a tower with room to spare.
    let mut roomy = Tower::with_limits(limits);
    let m = roomy.register(common::ln::p2wpkh_script());
    let big = Appointment { locator: target_locator, blob: vec![1; largest + 1] };
    assert_eq!(
        roomy.add_appointment(m, &big.encode()),
        Err(TowerError::BlobTooLarge { len: largest + 1, max: largest as u32 })
    );
    // Bytes far larger than any blob are refused before decoding (as garbage would not decode).
    let huge = vec![0xffu8; MAX_BLOB_LEN + 4096];
    assert!(matches!(roomy.add_appointment(m, &huge), Err(TowerError::BlobTooLarge { .. })));
    assert_eq!(roomy.appointment_count(), 0);
    // The breach appears: Mallory's garbage under its locator does not open; the victim's does.
    let restored = Tower::decode(&tower.encode()).expect("decodes");
    assert_eq!(restored, tower, "the quota state survives a restart");
    let out = tower.block(std::slice::from_ref(&target.signed));
    assert_eq!(out.len(), 1, "the victim's penalty, nothing for the garbage");
    assert_eq!(out[0].output[0].script_pubkey, victim);
    let real = Appointment::decode(&target.appointment).unwrap().open(&target.signed.compute_txid()).unwrap();
    assert_eq!(out[0], real.ladder[0], "exactly the penalty the victim signed");
    // The breach's appointments freed their slots: the victim may store one more.
    assert_eq!(tower.appointments_of(a), revoked.len() as u32 - 1);
    tower.add_appointment(a, &extra.encode()).expect("a slot freed");
}
