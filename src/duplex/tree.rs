//! The invalidation tree (docs/duplex.md §1–§2): the odometer counter, the lock of each level, and the
//! pure builders of the kickoff, node and leaf transactions. Everything here is a function of its
//! arguments; the state machine decides what to sign.
//!
//! ```text
//! F:0 ──K──> N_1[s_1] ──> N_2[s_2] ──> … ──> N_d[s_d] = leaf ─┬─ out A→B: Spilman S_csv(A, B, T_r)
//!                                                            └─ out B→A: Spilman S_csv(B, A, T_r)
//! ```
//! * `K` spends the funding output with nSequence `0xFFFFFFFF`: no relative lock; it is signed
//!   once at setup and only ever published to start a unilateral close, so every level-1 lock
//!   counts from its confirmation.
//! * `N_j` spends output 0 of its parent with nSequence `s_j = (k_j − 1 − v_j)·Δ` (BIP-0068
//!   blocks). Node scripts are the plain 2-of-2 [`funding`](crate::core::script::funding) script
//!   of the two funding keys: the relative lock lives only in the nSequence, which both BIP-0143
//!   signatures commit to. Reusing the keys is safe: every signature commits to its outpoint.
//! * Every tree transaction is version 3 (TRUC, BIP 431) with `nLockTime` 0, pays **no fee**
//!   (its outputs sum to its input: the capacity), and carries one zero-value pay-to-anchor
//!   output ([`p2a_output`]) last. Whoever publishes it gets it mined by a child spending that
//!   anchor ([`p2a_input`](crate::core::script::p2a_input)) with enough fee for both (CPFP, a
//!   one-parent-one-child package under Bitcoin Core 28+ relay policy; the zero-value anchor is
//!   Core 29's ephemeral dust, allowed because the parent pays no fee and the child spends it).
//!   A node is only published once its parent confirmed (TRUC allows one unconfirmed ancestor,
//!   and the anchor's child is that descendant).
//! * Output 0 of the kickoff and of every inner node is the 2-of-2; the leaf's outputs are the
//!   two unidirectional channels, A→B first, each omitted when empty, then the anchor.
//!
//! **Counter.** The digits `v_1 … v_d` advance like an odometer: the deepest level whose digit is
//! below `k_j − 1` goes up by one (its lock drops by `Δ`) and every deeper level restarts at 0
//! (longest lock). Odometer order is lexicographic order of the digits, level 1 most significant.

use alloc::vec::Vec;
use core::cmp::Ordering;

use bitcoin::absolute::LockTime;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use super::params::Params;
use crate::core::script::{p2a_output, TRUC_VERSION};

/// The counter digits `v_1 … v_d`, level 1 first.
pub type Digits = Vec<u16>;

/// The first counter value: every digit 0 (every lock at its longest).
pub fn first(params: &Params) -> Digits {
    alloc::vec![0; params.depth()]
}

/// Whether `digits` is a counter value of this tree.
pub fn is_valid(params: &Params, digits: &[u16]) -> bool {
    digits.len() == params.depth() && digits.iter().zip(params.radix()).all(|(&v, &k)| u32::from(v) < k)
}

/// The odometer successor of `digits` and the level (1-based) that advanced, or `None` when every
/// digit is at its maximum (the counter is exhausted).
pub fn successor(params: &Params, digits: &[u16]) -> Option<(Digits, usize)> {
    let mut next = digits.to_vec();
    for j in (0..params.depth()).rev() {
        let k = *params.radix().get(j)?;
        let v = next.get_mut(j)?;
        if u32::from(*v) + 1 < k {
            *v += 1;
            for deeper in next.iter_mut().skip(j + 1) {
                *deeper = 0;
            }
            return Some((next, j + 1));
        }
    }
    None
}

/// The position of `digits` in odometer order (0 for the first state).
pub fn index(params: &Params, digits: &[u16]) -> u64 {
    digits
        .iter()
        .zip(params.radix())
        .fold(0u64, |acc, (&v, &k)| acc.saturating_mul(u64::from(k)).saturating_add(u64::from(v)))
}

/// Resets left after `digits`: `Π k_j − 1 − index`.
pub fn resets_left(params: &Params, digits: &[u16]) -> u64 {
    params.resets().saturating_sub(index(params, digits))
}

/// Odometer order of two counter values of the same tree.
pub fn compare(a: &[u16], b: &[u16]) -> Ordering {
    a.cmp(b)
}

/// The first level (1-based) at which two counter values differ.
pub fn first_difference(a: &[u16], b: &[u16]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| i + 1)
}

/// The BIP-0068 lock of every level for these digits.
pub fn locks(params: &Params, digits: &[u16]) -> Option<Vec<u16>> {
    digits.iter().enumerate().map(|(j, &v)| params.lock(j + 1, u32::from(v))).collect()
}

/// A zero-fee TRUC transaction with one input and `output` followed by the anchor.
fn one_input(previous_output: OutPoint, sequence: Sequence, mut output: Vec<TxOut>) -> Transaction {
    output.push(p2a_output());
    Transaction {
        version: TRUC_VERSION,
        lock_time: LockTime::ZERO,
        input: alloc::vec![TxIn { previous_output, script_sig: ScriptBuf::new(), sequence, witness: Witness::new() }],
        output,
    }
}

/// The kickoff `K`: spends the funding output, nSequence `0xFFFFFFFF`, a 2-of-2 output of
/// `value` (the capacity) and the anchor.
pub fn kickoff_tx(funding: OutPoint, value: Amount, node_spk: &ScriptBuf) -> Transaction {
    one_input(funding, Sequence::MAX, alloc::vec![TxOut { value, script_pubkey: node_spk.clone() }])
}

/// An inner node `N_j` (`j < d`): spends its parent's output 0 with the relative lock `lock`; a
/// 2-of-2 output of `value` and the anchor.
pub fn node_tx(parent: OutPoint, lock: u16, value: Amount, node_spk: &ScriptBuf) -> Transaction {
    one_input(parent, Sequence::from_height(lock), alloc::vec![TxOut { value, script_pubkey: node_spk.clone() }])
}

/// The leaf channel outputs: A→B channel then B→A channel, each omitted when zero (the anchor
/// follows them in [`leaf_tx`]).
pub fn leaf_outputs(ab: Amount, ba: Amount, ab_spk: &ScriptBuf, ba_spk: &ScriptBuf) -> Vec<TxOut> {
    let mut out = Vec::with_capacity(2);
    if ab > Amount::ZERO {
        out.push(TxOut { value: ab, script_pubkey: ab_spk.clone() });
    }
    if ba > Amount::ZERO {
        out.push(TxOut { value: ba, script_pubkey: ba_spk.clone() });
    }
    out
}

/// The vout of each direction's channel in the leaf (`[A→B, B→A]`), `None` when omitted.
pub fn leaf_vouts(ab: Amount, ba: Amount) -> [Option<u32>; 2] {
    match (ab > Amount::ZERO, ba > Amount::ZERO) {
        (true, true) => [Some(0), Some(1)],
        (true, false) => [Some(0), None],
        (false, true) => [None, Some(0)],
        (false, false) => [None, None],
    }
}

/// The leaf `N_d`: spends its parent's output 0 with the relative lock `lock`; `outputs` (from
/// [`leaf_outputs`]) and the anchor.
pub fn leaf_tx(parent: OutPoint, lock: u16, outputs: Vec<TxOut>) -> Transaction {
    one_input(parent, Sequence::from_height(lock), outputs)
}

/// Builds the transactions of a branch, given how to make the leaf outputs.
#[derive(Clone, Debug)]
pub struct Branch<'a> {
    /// The tree shape.
    pub params: &'a Params,
    /// The funding outpoint.
    pub funding: OutPoint,
    /// The value of each tree transaction's 2-of-2 output, by level (0 = kickoff), `d` entries
    /// (the capacity: tree transactions pay no fee).
    pub node_values: &'a [Amount],
    /// The scriptPubKey of every 2-of-2 node output.
    pub node_spk: &'a ScriptBuf,
}

impl Branch<'_> {
    /// The kickoff.
    pub fn kickoff(&self) -> Option<Transaction> {
        Some(kickoff_tx(self.funding, *self.node_values.first()?, self.node_spk))
    }

    /// The nodes `N_1 … N_d` for `digits`, the last one with `leaf_outputs`, plus the kickoff.
    /// Index 0 of the result is the kickoff, index `j` is `N_j`. `None` if the digits do not fit
    /// the tree.
    pub fn path(&self, digits: &[u16], leaf_outputs: Vec<TxOut>) -> Option<Vec<Transaction>> {
        let d = self.params.depth();
        if !is_valid(self.params, digits) || self.node_values.len() != d {
            return None;
        }
        let mut txs = Vec::with_capacity(d + 1);
        let kickoff = self.kickoff()?;
        let mut parent = OutPoint { txid: kickoff.compute_txid(), vout: 0 };
        txs.push(kickoff);
        let mut leaf_outputs = Some(leaf_outputs);
        for (j, &v) in digits.iter().enumerate() {
            let level = j + 1;
            let lock = self.params.lock(level, u32::from(v))?;
            let tx = if level == d {
                leaf_tx(parent, lock, leaf_outputs.take()?)
            } else {
                node_tx(parent, lock, *self.node_values.get(level)?, self.node_spk)
            };
            parent = OutPoint { txid: tx.compute_txid(), vout: 0 };
            txs.push(tx);
        }
        Some(txs)
    }
}

/// The txid of output 0's transaction: a helper for readers of [`Branch::path`].
pub fn out0(tx: &Transaction) -> OutPoint {
    OutPoint { txid: tx.compute_txid(), vout: 0 }
}

/// The txids of a path.
pub fn txids(path: &[Transaction]) -> Vec<Txid> {
    path.iter().map(Transaction::compute_txid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odometer_walks_every_state_once() {
        let p = Params::new(alloc::vec![3, 2, 3], 4, 10).unwrap();
        let mut d = first(&p);
        let mut seen = alloc::vec![d.clone()];
        let mut levels = Vec::new();
        while let Some((next, level)) = successor(&p, &d) {
            assert_eq!(compare(&next, &d), Ordering::Greater);
            assert_eq!(first_difference(&d, &next), Some(level));
            assert_eq!(index(&p, &next), index(&p, &d) + 1);
            levels.push(level);
            d = next;
            seen.push(d.clone());
        }
        assert_eq!(seen.len() as u64, p.states());
        assert_eq!(resets_left(&p, &d), 0);
        assert_eq!(d, alloc::vec![2, 1, 2]);
        assert!(levels.contains(&1) && levels.contains(&2) && levels.contains(&3));
        // Locks fall by Δ as a digit rises.
        assert_eq!(locks(&p, &[0, 0, 0]), Some(alloc::vec![8, 4, 8]));
        assert_eq!(locks(&p, &[2, 1, 2]), Some(alloc::vec![0, 0, 0]));
    }
}
