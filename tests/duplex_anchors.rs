//! A deployable duplex tree (issue 15 item 4): the kickoff, every node, the leaf and the
//! cooperative close are zero-fee version-3 (TRUC) transactions with exactly one zero-value
//! pay-to-anchor output, so whoever publishes one pays the fee of the day by a child spending the
//! anchor (CPFP) instead of a fee fixed at signing. Each of them, and such a child (built here,
//! spending the anchor and a wallet coin), is accepted by the simulated chain, which runs Bitcoin
//! Core's interpreter; and since the tree takes nothing, every close pays both parties their
//! balances to the satoshi. Channels and messages of the old fixed-fee encoding are refused with
//! a typed version error.

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::{Amount, OutPoint, Transaction, TxIn, TxOut};
use common::chain::Chain;
use common::duplex::{Pair, CAPACITY, PAYMENT_FEE};
use common::wallet::Wallet;
use paychan::core::encode::DecodeError;
use paychan::core::script::{is_p2a, p2a_input, TRUC_VERSION};
use paychan::driving::{RestoreCheck, RestoreError};
use paychan::duplex::{Channel, Msg, Phase, Role};

const A: Role = Role::Initiator;
const B: Role = Role::Acceptor;

/// Checks the shape of a zero-fee anchored transaction confirmed on `chain` and returns its
/// anchor outpoint.
fn zero_fee_anchored(chain: &Chain, tx: &Transaction, input_value: Amount) -> OutPoint {
    assert_eq!(tx.version, TRUC_VERSION, "version 3 (TRUC)");
    let anchors: Vec<usize> = (0..tx.output.len()).filter(|&i| is_p2a(&tx.output[i].script_pubkey)).collect();
    assert_eq!(anchors.len(), 1, "exactly one pay-to-anchor output");
    let out: Amount = tx.output.iter().map(|o| o.value).sum();
    assert_eq!(out, input_value, "zero fee");
    let txid = tx.compute_txid();
    assert!(chain.confirmation(&txid).is_some(), "{txid} confirmed");
    OutPoint { txid, vout: anchors[0] as u32 }
}

/// A CPFP child: the anchor plus a wallet coin in, the coin less `fee` back to the wallet.
/// Checked against `chain` (consensus, lock times, Bitcoin Core's interpreter).
fn cpfp_child_is_valid(chain: &Chain, anchor: OutPoint) {
    let mut chain = chain.clone();
    let anchor_value = chain.utxo(&anchor).expect("anchor unspent").value;
    let mut wallet = Wallet::new(0x77);
    let (coin, prevout) = wallet.fund(&mut chain, Amount::from_sat(50_000));
    let fee = Amount::from_sat(5_000);
    let mut child = Transaction {
        version: TRUC_VERSION,
        lock_time: LockTime::ZERO,
        input: vec![p2a_input(anchor), TxIn { previous_output: coin, ..p2a_input(coin) }],
        output: vec![TxOut { value: prevout.value + anchor_value - fee, script_pubkey: wallet.script() }],
    };
    wallet.sign_input(&mut child, 1, &prevout);
    assert!(child.input[0].witness.is_empty(), "the anchor is spent with an empty witness");
    assert_eq!(chain.check(&child), Ok(()), "the CPFP child of {} is valid", anchor.txid);
}

fn busy_channel() -> Pair {
    let mut p = Pair::open(common::duplex::terms(vec![2, 2]));
    p.pay(A, 30_000);
    p.pay(B, 5_000);
    p.reset(A);
    p.pay(A, 7_000);
    p.pay(B, 2_000);
    p.assert_views_agree();
    p
}

#[test]
fn unilateral_close_tree_is_zero_fee_truc_with_one_anchor_and_pays_balances_to_the_satoshi() {
    let mut p = busy_channel();
    let (a_bal, b_bal) = (p.a().balances().holder.to_sat(), p.b().balances().holder.to_sat());
    assert_eq!(a_bal + b_bal, CAPACITY, "the balances share the whole capacity");
    let fx = p.parties[0].ch.force_close(&p.parties[0].signer);
    p.absorb(A, fx);
    for _ in 0..60 {
        p.mine();
        if p.a().phase() == Phase::Closed && p.b().phase() == Phase::Closed && p.chain.mempool().is_empty() {
            break;
        }
    }
    assert_eq!((p.a().phase(), p.b().phase()), (Phase::Closed, Phase::Closed));
    let schedule = p.a().close_schedule();
    assert_eq!(schedule.len(), 3, "kickoff, N_1, leaf");
    let mut value = Amount::from_sat(CAPACITY);
    for s in &schedule {
        let tx = p.chain.tx(&s.txid).expect("tree transaction confirmed").clone();
        let anchor = zero_fee_anchored(&p.chain, &tx, value);
        cpfp_child_is_valid(&p.chain, anchor);
        value = tx.output.iter().filter(|o| !is_p2a(&o.script_pubkey)).map(|o| o.value).sum();
        assert_eq!(value, Amount::from_sat(CAPACITY), "the tree keeps the whole capacity");
    }
    // Each payee published its best payment (paying its fee); nothing else is taken.
    assert_eq!(p.paid_to(A), a_bal - PAYMENT_FEE);
    assert_eq!(p.paid_to(B), b_bal - PAYMENT_FEE);
}

#[test]
fn cooperative_close_is_zero_fee_truc_with_one_anchor_and_pays_balances_to_the_satoshi() {
    let mut p = busy_channel();
    let (a_bal, b_bal) = (p.a().balances().holder.to_sat(), p.b().balances().holder.to_sat());
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("close");
    p.absorb(A, fx);
    p.run();
    let mined = p.mine();
    assert_eq!(mined.len(), 1);
    let anchor = zero_fee_anchored(&p.chain, &mined[0], Amount::from_sat(CAPACITY));
    assert_eq!(p.chain.utxo(&anchor).expect("anchor").value, Amount::ZERO);
    cpfp_child_is_valid(&p.chain, anchor);
    assert_eq!((p.paid_to(A), p.paid_to(B)), (a_bal, b_bal));
}

#[test]
fn signed_branch_transactions_are_each_valid_in_turn() {
    // The branch a party can publish on its own (fully signed): each transaction, with its
    // CPFP child, is valid once its parent confirmed and its lock matured.
    let p = busy_channel();
    let branch = p.a().signed_branch(&common::duplex::signer(A)).expect("signed");
    let mut chain = p.chain.clone();
    let mut value = Amount::from_sat(CAPACITY);
    for tx in &branch {
        let lock = tx.input[0].sequence.to_relative_lock_time().map_or(0, |l| match l {
            bitcoin::relative::LockTime::Blocks(h) => u32::from(h.value()),
            bitcoin::relative::LockTime::Time(_) => panic!("block locks only"),
        });
        chain.advance(lock.saturating_sub(1));
        chain.mine(tx).expect("valid when its lock matured");
        let anchor = zero_fee_anchored(&chain, tx, value);
        cpfp_child_is_valid(&chain, anchor);
        value = tx.output.iter().filter(|o| !is_p2a(&o.script_pubkey)).map(|o| o.value).sum();
    }
}

#[test]
fn fixed_fee_v1_snapshot_and_messages_are_refused_with_a_version_error() {
    // Written by the crate before this change (a 2-level channel with one payment; an `Open`).
    let snapshot = include_bytes!("vectors/snapshots/duplex_v1_open.bin");
    assert_eq!(snapshot[1], 1);
    assert_eq!(
        Channel::restore(snapshot, RestoreCheck::default()).unwrap_err(),
        RestoreError::Decode(DecodeError::UnknownVersion(1))
    );
    let open = include_bytes!("vectors/snapshots/duplex_v1_open_msg.bin");
    assert_eq!(open[1], 1);
    assert_eq!(Msg::decode(open), Err(DecodeError::UnknownVersion(1)));
    // The current snapshot encoding is version 5 (version 2, the key identity, the funding
    // depth, a released close and withdrawn HTLCs).
    let p = busy_channel();
    assert_eq!(p.a().snapshot()[1], 5);
}
