//! The core fee-bumping engine (`core::feebump`) on its own: replacements, children and
//! aggregates built from templates, checked by Bitcoin Core's interpreter, against a fee market
//! that rises. The channel layers' use of it is tested with each layer.

use bitcoin::absolute::LockTime;
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::{
    schedule, BumpEvent, BumpMethod, BumpRequest, Bumper, FeeEstimates, InputTemplate, Protects, WitnessPart,
};
use paychan::core::keys::{ChannelSecrets, FundingPubkey, Seed};
use paychan::core::script;
use paychan::core::sign::{InMemorySigner, KeyId, SignRequest, Signer, Tweak};
use paychan::core::units::BlockHeight;
use paychan::driving::ChainEvent;
use paychan::testing::chain::Chain;
use paychan::testing::wallet::{FeeCoins, Wallet};

fn signer(n: u8) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0))
}

fn funding_key(s: &InMemorySigner) -> FundingPubkey {
    s.pubkeys().funding
}

/// A confirmed output of `value` that `s`'s funding key alone can spend (the anchor script's
/// owner path).
fn own_output(chain: &mut Chain, s: &InMemorySigner, value: u64, tag: u32) -> (OutPoint, script::WitnessScript) {
    let ws = script::anchor(&funding_key(s));
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()),
                vout: 1_000 + tag,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(value), script_pubkey: ws.to_p2wsh() }],
    };
    chain.credit(&tx);
    (OutPoint { txid: tx.compute_txid(), vout: 0 }, ws)
}

fn owner_template(outpoint: OutPoint, value: u64, ws: &script::WitnessScript) -> InputTemplate {
    InputTemplate {
        outpoint,
        value: Amount::from_sat(value),
        script_code: ws.as_script().to_owned(),
        p2wpkh: false,
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        key: Some((KeyId::Funding, Tweak::None)),
        witness: vec![WitnessPart::Signature, WitnessPart::WitnessScript],
        paired_output: None,
    }
}

/// The transaction a channel would have broadcast first: spending `input` (worth `value`, the
/// owner path of `ws`) to `dest` at a 200-sat fee, signed.
fn first_version(
    s: &InMemorySigner,
    ws: &script::WitnessScript,
    input: OutPoint,
    value: u64,
    dest: &ScriptBuf,
) -> Transaction {
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: input,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(value - 200), script_pubkey: dest.clone() }],
    };
    sign_own_input(s, &mut tx, ws, value);
    tx
}

/// A parent spending our own output `op` (100,000 sat, script `ws`) to an anchor of ours
/// (330 sat) and `change` sat to `change_script`, signed: it pays `100,000 − 330 − change` itself.
fn anchored_parent(
    s: &InMemorySigner,
    ws: &script::WitnessScript,
    op: OutPoint,
    change: u64,
    change_script: ScriptBuf,
) -> (Transaction, script::WitnessScript) {
    let anchor_ws = script::anchor(&funding_key(s));
    let mut parent = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: op,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut { value: Amount::from_sat(330), script_pubkey: anchor_ws.to_p2wsh() },
            TxOut { value: Amount::from_sat(change), script_pubkey: change_script },
        ],
    };
    sign_own_input(s, &mut parent, ws, 100_000);
    (parent, anchor_ws)
}

/// Signs input 0 of `tx`, spending our own output (`ws`, `value` sat) with the funding key.
fn sign_own_input(s: &InMemorySigner, tx: &mut Transaction, ws: &script::WitnessScript, value: u64) {
    let sig = s
        .sign(&SignRequest {
            tx: &*tx,
            input: 0,
            script_code: ws.as_script(),
            p2wpkh: false,
            value: Amount::from_sat(value),
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Funding,
            tweak: Tweak::None,
        })
        .unwrap();
    tx.input[0].witness = script::anchor_owner_witness(ws, &sig);
}

fn fee_of(chain: &Chain, tx: &Transaction) -> Amount {
    let ins: Amount = tx.input.iter().map(|i| chain.utxo(&i.previous_output).expect("input known").value).sum();
    let outs: Amount = tx.output.iter().map(|o| o.value).sum();
    ins - outs
}

/// A fee market that rises 1×, 10×, 100×: each block's minimum feerate for inclusion, and the
/// estimates an embedder would see.
fn market(step: u32) -> FeeratePerKw {
    match step {
        0..=1 => FeeratePerKw(300),
        2..=3 => FeeratePerKw(3_000),
        _ => FeeratePerKw(30_000),
    }
}

#[test]
fn a_sweep_is_replaced_as_the_market_spikes_and_confirms_before_its_deadline() {
    let mut chain = Chain::at(1_000);
    let s = signer(1);
    let (op, ws) = own_output(&mut chain, &s, 200_000, 0);
    let mut wallet = FeeCoins::new(Wallet::new(9));
    let dest = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_raw_hash(bitcoin::hashes::Hash::all_zeros()));
    let req = BumpRequest {
        tx: first_version(&s, &ws, op, 200_000, &dest),
        deadline: BlockHeight(1_010),
        at_stake: Amount::from_sat(200_000),
        protects: Protects::Sweep,
        method: BumpMethod::Replace {
            inputs: vec![owner_template(op, 200_000, &ws)],
            destination: dest.clone(),
            lock_time: 0,
        },
    };
    let mut b = Bumper::new();
    let fx = b.track(req.clone());
    assert!(fx.update.is_some(), "tracking is persisted");
    let mut fees = Vec::new();
    let mut confirmed = None;
    for step in 0..8u32 {
        let tip = BlockHeight(chain.height);
        let rate = market(step);
        // The embedder's estimator sees the market as it is now.
        let fx = b.bump(tip, &FeeEstimates::flat(rate), &mut wallet, &s);
        assert_eq!(fx.broadcast.len(), 1);
        let tx = &fx.broadcast[0];
        chain.check(tx).expect("every attempt is valid for Core's interpreter");
        assert_eq!(tx.input[0].previous_output, op, "every replacement spends the same output");
        let fee = fee_of(&chain, tx);
        if fees.last() != Some(&fee) {
            if let Some(prev) = fees.last().copied() {
                let floor = schedule::replacement_floor(prev, tx.weight().to_wu(), tx.weight().to_wu());
                assert!(fee >= floor, "replacement pays Core's increment: {fee} >= {floor}");
            }
            fees.push(fee);
        }
        assert_eq!(tx.output[0].value + fee, Amount::from_sat(200_000), "the sweep keeps everything but the fee");
        // A block includes it only if it pays the block's minimum.
        let paid = fee.to_sat() * 1000 / tx.weight().to_wu();
        if paid >= u64::from(rate.0) && step >= 5 {
            let h = chain.mine(tx).unwrap();
            confirmed = Some((tx.clone(), h));
            break;
        }
        chain.advance(1);
    }
    let (tx, h) = confirmed.expect("confirmed in the spike");
    assert!(h <= 1_010, "before the deadline");
    assert!(fees.len() >= 3, "re-bumped as the market rose: {fees:?}");
    let fx = b.handle_chain(&ChainEvent::Confirmed { tx: &tx, height: BlockHeight(h) });
    assert!(matches!(fx.events[..], [BumpEvent::Resolved { .. }]));
    assert_eq!(b.pending().count(), 0);
}

/// A zero-fee parent with an anchor of ours, paid for by a child that keeps the same wallet coin
/// in every replacement.
#[test]
fn an_anchor_child_reuses_its_coin_in_every_replacement() {
    let mut chain = Chain::at(500);
    let s = signer(2);
    let (op, ws) = own_output(&mut chain, &s, 100_000, 1);
    let mut wallet = FeeCoins::new(Wallet::new(8));
    wallet.add_coin(&mut chain, Amount::from_sat(60_000));
    wallet.add_coin(&mut chain, Amount::from_sat(50_000));
    // The parent: zero fee, an anchor (330 sat) and the rest.
    let (parent, anchor_ws) = anchored_parent(&s, &ws, op, 99_670, wallet.script());
    let parent_txid = parent.compute_txid();
    let anchor = owner_template(OutPoint { txid: parent_txid, vout: 0 }, 330, &anchor_ws);
    let req = BumpRequest {
        tx: parent.clone(),
        deadline: BlockHeight(520),
        at_stake: Amount::from_sat(40_000),
        protects: Protects::Commitment,
        method: BumpMethod::Child { anchor, parent_fee: Amount::ZERO },
    };
    let mut b = Bumper::new();
    let _ = b.track(req);
    let mut previous: Option<(Amount, u64)> = None;
    let mut coin = None;
    for step in 0..6u32 {
        let rate = market(step);
        let fx = b.bump(BlockHeight(chain.height), &FeeEstimates::flat(rate), &mut wallet, &s);
        assert_eq!(fx.broadcast.len(), 2, "parent and child, in that order");
        assert_eq!(fx.broadcast[0], parent);
        let child = &fx.broadcast[1];
        assert_eq!(child.input[0].previous_output.txid, parent_txid);
        let c = child.input[1].previous_output;
        assert_eq!(*coin.get_or_insert(c), c, "the same wallet coin in every replacement");
        let mut with_parent = chain.clone();
        with_parent.mine(&parent).unwrap();
        with_parent.check(child).expect("the child is valid for Core's interpreter");
        let fee = fee_of(&with_parent, child);
        let package_weight = parent.weight().to_wu() + child.weight().to_wu();
        assert!(
            fee.to_sat() * 1000 / package_weight >= u64::from(rate.0) * 99 / 100,
            "the package reaches the target rate"
        );
        if let Some((pf, pw)) = previous {
            if pf != fee {
                assert!(fee >= schedule::replacement_floor(pf, pw, child.weight().to_wu()));
            }
        }
        assert!(fee <= Amount::from_sat(40_000), "never more than is at stake");
        previous = Some((fee, child.weight().to_wu()));
        chain.advance(1);
    }
    assert_eq!(wallet.selections, 1, "coins were selected once");
}

/// Two zero-fee pre-signed transactions whose peer signature is SINGLE|ANYONECANPAY are paid for
/// together by one aggregate with one wallet coin; a third with the same `nLockTime` joins when
/// it is tracked; one with another `nLockTime` gets its own aggregate when its height comes (the
/// peer's signature commits to the lock time).
#[test]
fn presigned_htlc_transactions_are_aggregated_with_one_fee_input() {
    let mut chain = Chain::at(700);
    let us = signer(3);
    let peer = signer(4);
    let ws = script::funding(&funding_key(&us), &funding_key(&peer));
    let mut wallet = FeeCoins::new(Wallet::new(7));
    wallet.add_coin(&mut chain, Amount::from_sat(80_000));
    wallet.add_coin(&mut chain, Amount::from_sat(70_000));
    let dest = Wallet::new(6).script();
    let mut requests = Vec::new();
    for (i, lock) in [(0u32, 0u32), (1, 0), (2, 705), (3, 0)] {
        let value = 20_000 + 1_000 * u64::from(i);
        let out_tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()),
                    vout: 50 + i,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: Amount::from_sat(value), script_pubkey: ws.to_p2wsh() }],
        };
        chain.credit(&out_tx);
        let op = OutPoint { txid: out_tx.compute_txid(), vout: 0 };
        let paired = TxOut { value: Amount::from_sat(value), script_pubkey: dest.clone() };
        let presigned = Transaction {
            version: Version::TWO,
            lock_time: LockTime::from_consensus(lock),
            input: vec![TxIn {
                previous_output: op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ZERO,
                witness: Witness::new(),
            }],
            output: vec![paired.clone()],
        };
        let peer_sig = peer
            .sign(&SignRequest {
                tx: &presigned,
                input: 0,
                script_code: ws.as_script(),
                p2wpkh: false,
                value: Amount::from_sat(value),
                sighash_type: EcdsaSighashType::SinglePlusAnyoneCanPay,
                key: KeyId::Funding,
                tweak: Tweak::None,
            })
            .unwrap();
        let peer_part = WitnessPart::Bytes(peer_sig.to_vec());
        let ours_first = funding_key(&us).serialize() <= funding_key(&peer).serialize();
        let (a, b) = if ours_first { (WitnessPart::Signature, peer_part) } else { (peer_part, WitnessPart::Signature) };
        let template = InputTemplate {
            outpoint: op,
            value: Amount::from_sat(value),
            script_code: ws.as_script().to_owned(),
            p2wpkh: false,
            sequence: Sequence::ZERO,
            key: Some((KeyId::Funding, Tweak::None)),
            witness: vec![WitnessPart::Bytes(vec![]), a, b, WitnessPart::WitnessScript],
            paired_output: Some(paired),
        };
        requests.push(BumpRequest {
            tx: presigned,
            deadline: BlockHeight(730),
            at_stake: Amount::from_sat(value),
            protects: Protects::HtlcClaim,
            method: BumpMethod::AddInputs { inputs: vec![template], lock_time: lock },
        });
    }
    let mut b = Bumper::new();
    for r in &requests[..3] {
        let _ = b.track(r.clone());
    }
    let est = FeeEstimates::flat(FeeratePerKw(2_000));
    let fx = b.bump(BlockHeight(700), &est, &mut wallet, &us);
    assert_eq!(fx.broadcast.len(), 1, "one aggregate (the time-locked one is not ready)");
    let agg = &fx.broadcast[0];
    assert_eq!(agg.input.len(), 3, "two ready HTLC inputs and one coin");
    assert_eq!(
        agg.output[..2].iter().map(|o| o.value.to_sat()).collect::<Vec<_>>(),
        vec![20_000, 21_000],
        "paired outputs kept"
    );
    chain.check(agg).expect("the peer's SINGLE|ANYONECANPAY signatures stay valid in the aggregate");
    let first_fee = fee_of(&chain, agg);
    assert!(first_fee.to_sat() * 1000 / agg.weight().to_wu() >= 1_990);
    let coin = agg.input[2].previous_output;
    // A third one with the same lock time joins: the aggregate is replaced with the same coin.
    chain.advance(1);
    let _ = b.track(requests[3].clone());
    let fx = b.bump(BlockHeight(701), &est, &mut wallet, &us);
    assert_eq!(fx.broadcast.len(), 1);
    let agg2 = fx.broadcast[0].clone();
    assert_eq!(agg2.input.len(), 4);
    assert_eq!(agg2.input[3].previous_output, coin, "the same coin");
    chain.check(&agg2).expect("valid with three HTLC inputs");
    let fee2 = fee_of(&chain, &agg2);
    assert!(fee2 >= schedule::replacement_floor(first_fee, agg.weight().to_wu(), agg2.weight().to_wu()));
    // The time-locked one gets its own aggregate, with another coin, at its height.
    chain.advance(4);
    let fx = b.bump(BlockHeight(705), &est, &mut wallet, &us);
    assert_eq!(fx.broadcast.len(), 2);
    assert_eq!(fx.broadcast[0], agg2, "unchanged: broadcast again");
    let agg3 = fx.broadcast[1].clone();
    assert_eq!(agg3.lock_time, LockTime::from_consensus(705));
    assert_ne!(agg3.input[1].previous_output, coin, "a coin is never in two aggregates");
    chain.check(&agg3).expect("valid");
    for tx in [&agg2, &agg3] {
        let h = chain.mine(tx).unwrap();
        let _ = b.handle_chain(&ChainEvent::Confirmed { tx, height: BlockHeight(h) });
    }
    assert_eq!(b.pending().count(), 0);
    // Six blocks later the bumper forgets them and gives the coins back.
    chain.advance(6);
    wallet.sync(&chain);
    let fx = b.bump(BlockHeight(chain.height), &est, &mut wallet, &us);
    assert!(fx.broadcast.is_empty());
    assert!(wallet.reserved().is_empty());
    assert_eq!(b, Bumper::decode(&b.encode()).unwrap());
}

#[test]
fn fees_never_exceed_what_is_at_stake_and_a_missed_deadline_is_reported() {
    let mut chain = Chain::at(100);
    let s = signer(5);
    let (op, ws) = own_output(&mut chain, &s, 50_000, 2);
    let mut wallet = FeeCoins::new(Wallet::new(5));
    let dest = Wallet::new(4).script();
    let mut b = Bumper::new();
    let _ = b.track(BumpRequest {
        tx: first_version(&s, &ws, op, 50_000, &dest),
        deadline: BlockHeight(102),
        at_stake: Amount::from_sat(3_000),
        protects: Protects::Penalty,
        method: BumpMethod::Replace { inputs: vec![owner_template(op, 50_000, &ws)], destination: dest, lock_time: 0 },
    });
    let huge = FeeEstimates::flat(FeeratePerKw(100_000));
    let fx = b.bump(BlockHeight(100), &huge, &mut wallet, &s);
    assert!(fx.events.iter().any(|e| matches!(e, BumpEvent::Capped { .. })));
    assert_eq!(fee_of(&chain, &fx.broadcast[0]), Amount::from_sat(3_000));
    let fx = b.bump(BlockHeight(102), &huge, &mut wallet, &s);
    assert!(fx.events.iter().any(|e| matches!(e, BumpEvent::DeadlineMissed { .. })));
    assert_eq!(fee_of(&chain, &fx.broadcast[0]), Amount::from_sat(3_000), "still capped, not replaced");
}

#[test]
fn a_restored_bumper_continues_exactly_where_it_stopped() {
    let mut chain = Chain::at(300);
    let s = signer(6);
    let (op, ws) = own_output(&mut chain, &s, 90_000, 3);
    let mut w1 = FeeCoins::new(Wallet::new(3));
    let mut w2 = FeeCoins::new(Wallet::new(3));
    let req = BumpRequest {
        tx: first_version(&s, &ws, op, 90_000, &w1.script()),
        deadline: BlockHeight(320),
        at_stake: Amount::from_sat(90_000),
        protects: Protects::HtlcClaim,
        method: BumpMethod::Replace {
            inputs: vec![owner_template(op, 90_000, &ws)],
            destination: w1.script(),
            lock_time: 0,
        },
    };
    let mut live = Bumper::new();
    let mut stored = live.track(req).update.unwrap().snapshot.expect("the bumper writes full snapshots");
    for step in 0..6u32 {
        let mut restored = Bumper::decode(&stored).unwrap();
        let est = FeeEstimates::flat(market(step));
        let a = live.bump(BlockHeight(300 + step), &est, &mut w1, &s);
        let b = restored.bump(BlockHeight(300 + step), &est, &mut w2, &s);
        assert_eq!(a.broadcast, b.broadcast);
        assert_eq!(live, restored);
        if let Some(u) = b.update {
            stored = u.snapshot.expect("the bumper writes full snapshots");
        }
    }
}

#[test]
fn a_conflicting_confirmation_resolves_a_child_request() {
    let mut chain = Chain::at(10);
    let s = signer(7);
    let (op, ws) = own_output(&mut chain, &s, 10_000, 4);
    let anchor_ws = script::anchor(&funding_key(&s));
    let parent = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: op,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(10_000), script_pubkey: anchor_ws.to_p2wsh() }],
    };
    let mut b = Bumper::new();
    let _ = b.track(BumpRequest {
        tx: parent.clone(),
        deadline: BlockHeight(30),
        at_stake: Amount::from_sat(10_000),
        protects: Protects::Commitment,
        method: BumpMethod::Child {
            anchor: owner_template(OutPoint { txid: parent.compute_txid(), vout: 0 }, 10_000, &anchor_ws),
            parent_fee: Amount::ZERO,
        },
    });
    // Someone else's transaction spends the parent's input (the peer's commitment).
    let mut other = parent.clone();
    other.output[0].value = Amount::from_sat(9_000);
    let fx = b.handle_chain(&ChainEvent::Confirmed { tx: &other, height: BlockHeight(11) });
    assert!(matches!(fx.events[..], [BumpEvent::Resolved { by, .. }] if by == other.compute_txid()));
    assert_eq!(b.pending().count(), 0);
    // A reorg that removes it reopens the request.
    let _ = b.handle_chain(&ChainEvent::Unconfirmed(other.compute_txid()));
    assert_eq!(b.pending().count(), 1);
    let _ = ws;
}

/// A zero-fee version-3 parent spending `input` (worth `value`, the owner path of `ws`) to a
/// pay-to-anchor output and `dest`, signed; and its CPFP request through the anchor.
fn p2a_parent(
    s: &InMemorySigner,
    ws: &script::WitnessScript,
    input: OutPoint,
    value: u64,
    dest: &ScriptBuf,
    deadline: u32,
) -> BumpRequest {
    let mut tx = first_version(s, ws, input, value, dest);
    tx.version = Version(3);
    tx.output = vec![
        TxOut { value: Amount::ZERO, script_pubkey: script::p2a() },
        TxOut { value: Amount::from_sat(value), script_pubkey: dest.clone() },
    ];
    sign_own_input(s, &mut tx, ws, value);
    let anchor = InputTemplate::pay_to_anchor(OutPoint { txid: tx.compute_txid(), vout: 0 }, Amount::ZERO);
    BumpRequest {
        tx,
        deadline: BlockHeight(deadline),
        at_stake: Amount::from_sat(value),
        protects: Protects::DuplexBranch,
        method: BumpMethod::Child { anchor, parent_fee: Amount::ZERO },
    }
}

/// A request resolved by someone else's transaction (the peer's child got the shared parent
/// confirmed) gives its coin back at once: a wallet of one coin can pay for the next request in
/// the next block (a duplex tree's next node is due one block after its parent confirmed, with a
/// deadline `S` blocks later), not only once the first request is forgotten six blocks later.
/// Before the fix the second request failed with `InsufficientFunds` until its deadline passed
/// (simulation seeds 62, 101, 209, 219, 255, 322 and 324 of the duplex fee-spike run).
#[test]
fn a_coin_held_by_a_request_resolved_by_another_spend_pays_for_the_next_one() {
    let mut chain = Chain::at(200);
    let s = signer(9);
    let (op1, ws) = own_output(&mut chain, &s, 100_000, 7);
    let (op2, _) = own_output(&mut chain, &s, 90_000, 8);
    let mut wallet = FeeCoins::new(Wallet::new(9));
    let coin = wallet.add_coin(&mut chain, Amount::from_sat(50_000));
    let dest = Wallet::new(3).script();
    let first = p2a_parent(&s, &ws, op1, 100_000, &dest, 202);
    let second = p2a_parent(&s, &ws, op2, 90_000, &dest, 203);
    let est = FeeEstimates::flat(FeeratePerKw(1_000));
    let mut b = Bumper::new();
    let _ = b.track(first.clone());
    let fx = b.bump(BlockHeight(200), &est, &mut wallet, &s);
    assert_eq!(fx.broadcast.len(), 2, "the parent and our child");
    assert_eq!(fx.broadcast[1].input[1].previous_output, coin);
    // The peer's child got the parent confirmed: our child is dead (the peer's spends the same
    // anchor), our coin unspent.
    chain.mine(&first.tx).unwrap();
    let fx = b.handle_chain(&ChainEvent::Confirmed { tx: &first.tx, height: BlockHeight(201) });
    assert!(matches!(fx.events[..], [BumpEvent::Resolved { .. }]));
    let mut peer_child = fx_child_spending(OutPoint { txid: first.id(), vout: 0 });
    peer_child
        .input
        .push(TxIn { previous_output: OutPoint { txid: first.id(), vout: 1 }, ..peer_child.input[0].clone() });
    let _ = b.handle_chain(&ChainEvent::Confirmed { tx: &peer_child, height: BlockHeight(201) });
    assert!(chain.is_unspent(&coin));
    let _ = b.track(second.clone());
    wallet.sync(&chain);
    let fx = b.bump(BlockHeight(201), &est, &mut wallet, &s);
    assert!(
        fx.events.iter().any(|e| matches!(e, BumpEvent::Bumped { id, .. } if *id == second.id())),
        "the second request is bumped at once: {:?}",
        fx.events
    );
    let child = fx.broadcast.iter().find(|t| t.input[0].previous_output.txid == second.id()).expect("a child");
    assert_eq!(child.input[1].previous_output, coin, "with the coin the first request gave back");
    chain.mine(&second.tx).unwrap();
    chain.check(child).expect("the child is valid for Core's interpreter");
    assert_eq!(b, Bumper::decode(&b.encode()).unwrap());
}

/// A transaction spending `input` (only its inputs matter to the bumper's chain events).
fn fx_child_spending(input: OutPoint) -> Transaction {
    Transaction {
        version: Version(3),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: input,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: Wallet::new(4).script() }],
    }
}

/// A parent that pays a fee of its own (a Lightning anchor commitment) can confirm without our
/// child, which stays in the mempool and may still confirm: its coin must stay held until a
/// spend of one of the child's inputs confirms. Before the fix the bumper gave the coin back
/// as soon as the parent confirmed; the next request (the HTLC-success aggregate) was built on
/// it, conflicted with our own child, could not replace it, and died when the child confirmed:
/// the HTLC was lost to the peer's timeout (simulation seed 9365 of the Lightning fee-spike run).
#[test]
fn a_child_left_in_the_mempool_by_its_confirmed_parent_keeps_its_coin() {
    let mut chain = Chain::at(300);
    let s = signer(11);
    let (op1, ws) = own_output(&mut chain, &s, 100_000, 9);
    let (op2, _) = own_output(&mut chain, &s, 90_000, 10);
    let mut wallet = FeeCoins::new(Wallet::new(12));
    let big = wallet.add_coin(&mut chain, Amount::from_sat(60_000));
    let small = wallet.add_coin(&mut chain, Amount::from_sat(50_000));
    // The parent pays 2,000 sat itself: enough to confirm alone once the market falls.
    let (parent, anchor_ws) = anchored_parent(&s, &ws, op1, 97_670, Wallet::new(3).script());
    let first = BumpRequest {
        tx: parent.clone(),
        deadline: BlockHeight(320),
        at_stake: Amount::from_sat(40_000),
        protects: Protects::Commitment,
        method: BumpMethod::Child {
            anchor: owner_template(OutPoint { txid: parent.compute_txid(), vout: 0 }, 330, &anchor_ws),
            parent_fee: Amount::from_sat(2_000),
        },
    };
    let est = FeeEstimates::flat(FeeratePerKw(10_000));
    let mut b = Bumper::new();
    let _ = b.track(first.clone());
    let fx = b.bump(BlockHeight(300), &est, &mut wallet, &s);
    let child = fx.broadcast.iter().find(|t| t.input[0].previous_output.txid == first.id()).expect("a child").clone();
    assert_eq!(child.input[1].previous_output, big, "the largest coin first");
    // The parent confirms alone; our child stays in the mempool.
    chain.mine(&parent).unwrap();
    let fx = b.handle_chain(&ChainEvent::Confirmed { tx: &parent, height: BlockHeight(301) });
    assert!(matches!(fx.events[..], [BumpEvent::Resolved { .. }]));
    let watched = fx.watch;
    chain.check(&child).expect("our child is still valid");
    // The next request needs a coin: not the one our pending child spends.
    let second = p2a_parent(&s, &ws, op2, 90_000, &Wallet::new(3).script(), 330);
    let _ = b.track(second.clone());
    wallet.sync(&chain);
    let fx = b.bump(BlockHeight(301), &est, &mut wallet, &s);
    assert_eq!(b, Bumper::decode(&b.encode()).unwrap(), "the held coin survives a restart");
    let next = fx.broadcast.iter().find(|t| t.input[0].previous_output.txid == second.id()).expect("a child");
    assert_eq!(next.input[1].previous_output, small, "not the coin of the child still in the mempool");
    assert!(wallet.reserved().contains(&big), "the pending child's coin is still held");
    // Both confirm: neither request lost its transaction to the other.
    chain.mine(&child).unwrap();
    chain.mine(&second.tx).unwrap();
    chain.check(next).expect("the second child is valid alongside the first");
    // Once our child confirmed, its (spent) coin is given back and the entry forgotten in time.
    let _ = b.handle_chain(&ChainEvent::Confirmed { tx: &child, height: BlockHeight(302) });
    let _ = b.bump(BlockHeight(302), &est, &mut wallet, &s);
    assert!(!wallet.reserved().contains(&big));
    assert!(
        child.input.iter().all(|i| watched.contains(&paychan::driving::Watch::Spend(i.previous_output))),
        "the child's inputs were watched once its parent confirmed"
    );
}

/// A confirmed transaction that spends a coin of a pending request's current attempt without
/// being that attempt (the wallet spent a coin the bumper reserved; an older aggregate of other
/// members) leaves the attempt invalid for good: the bumper builds a new one with another coin
/// at the next block instead of broadcasting the dead one until the deadline. (Before, it kept
/// the dead attempt: simulation seed 9365 of the Lightning fee-spike run rebroadcast an
/// HTLC-success aggregate whose coin was spent for 77 blocks.)
#[test]
fn an_attempt_whose_coin_was_spent_elsewhere_is_rebuilt_with_another_coin() {
    let mut chain = Chain::at(400);
    let s = signer(13);
    let (op, ws) = own_output(&mut chain, &s, 100_000, 11);
    let mut wallet = FeeCoins::new(Wallet::new(14));
    let big = wallet.add_coin(&mut chain, Amount::from_sat(60_000));
    let small = wallet.add_coin(&mut chain, Amount::from_sat(50_000));
    let request = p2a_parent(&s, &ws, op, 100_000, &Wallet::new(3).script(), 420);
    let est = FeeEstimates::flat(FeeratePerKw(2_000));
    let mut b = Bumper::new();
    let _ = b.track(request.clone());
    let fx = b.bump(BlockHeight(400), &est, &mut wallet, &s);
    let child = fx.broadcast.iter().find(|t| t.input[0].previous_output.txid == request.id()).expect("a child");
    assert_eq!(child.input[1].previous_output, big);
    // Something else spends the coin and confirms; the parent is still unconfirmed.
    let stray = fx_child_spending(big);
    let fx = b.handle_chain(&ChainEvent::Confirmed { tx: &stray, height: BlockHeight(401) });
    let persisted = fx.update.is_some();
    assert_eq!(b.pending().count(), 1, "the request is still pending");
    let fx = b.bump(BlockHeight(401), &est, &mut wallet, &s);
    assert!(
        fx.events.iter().any(|e| matches!(e, BumpEvent::Bumped { id, .. } if *id == request.id())),
        "a new attempt at once: {:?}",
        fx.events
    );
    let next = fx.broadcast.iter().find(|t| t.input[0].previous_output.txid == request.id()).expect("a child");
    assert!(next.input.iter().all(|i| i.previous_output != big), "not the spent coin");
    assert_eq!(next.input[1].previous_output, small);
    chain.mine(&request.tx).unwrap();
    chain.check(next).expect("the new child is valid for Core's interpreter");
    assert!(persisted, "dropping the spent coin was persisted");
}
