//! A small simulated chain for tests: a UTXO set, absolute and relative (BIP-0068)
//! lock times, double-spend detection, value conservation, and every input's script checked by
//! Bitcoin Core's interpreter with all consensus flags.
//!
//! By default every valid transaction is mined by the next block and no relay policy applies.
//! [`Chain::with_policy`] adds Bitcoin Core's relay policy ([`super::policy`]: standardness,
//! dust, minimum relay feerate, replacement, TRUC, 1-parent-1-child packages) and
//! [`Chain::with_market`] a fee market ([`super::market`]: each block mines only packages
//! paying its minimum feerate); with either, the mempool holds chains of unconfirmed
//! transactions and blocks are built by ancestor-package feerate (see [`Chain::submit`]).

use std::collections::HashMap;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bitcoin::{FeeRate, OutPoint, Transaction, TxOut, Txid};

use super::market::FeeMarket;
use super::policy::{Policy, PolicyReject};

mod mempool;

/// Why the chain refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// An input is unknown or already spent.
    MissingOrSpent(OutPoint),
    /// `nLockTime` not yet reached at the next block's height.
    NonFinal {
        /// The transaction's `nLockTime`.
        locktime: u32,
        /// The height of the next block.
        next_height: u32,
    },
    /// A BIP-0068 relative lock is not yet met.
    RelativeLock {
        /// The locked input.
        input: usize,
        /// The first height at which it can be mined.
        needed: u32,
        /// The height of the next block.
        next_height: u32,
    },
    /// Outputs exceed inputs.
    ValueCreated,
    /// Bitcoin Core's interpreter refused an input.
    Script(String),
    /// Not version 2 or 3 (TRUC).
    Version,
    /// A time-based relative lock (this crate never uses them).
    TimeBasedRelativeLock,
    /// Valid by consensus but refused by the relay policy ([`Chain::with_policy`]).
    Policy(PolicyReject),
}

/// The simulated chain.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Height of the tip.
    pub height: u32,
    utxos: HashMap<OutPoint, (TxOut, u32)>,
    confirmed: HashMap<Txid, (Transaction, u32)>,
    /// Transactions waiting for a block ([`Chain::submit`], [`Chain::mine_block`]), in arrival
    /// order; conflicting transactions may wait side by side.
    mempool: Vec<Transaction>,
    /// The txids of each block mined by [`Chain::mine`] or [`Chain::mine_block`], by height.
    blocks: Vec<(u32, Vec<Txid>)>,
    /// The fee market, if any ([`Chain::with_market`]).
    market: Option<FeeMarket>,
    /// The relay policy, if any ([`Chain::with_policy`]).
    policy: Option<Policy>,
}

impl Chain {
    /// A chain at `height` with no coins.
    pub fn at(height: u32) -> Self {
        Chain { height, ..Default::default() }
    }

    /// The same chain with a fee market: from now on a block mines a mempool transaction only
    /// when its ancestor package's feerate reaches the block's minimum (see [`FeeMarket`]).
    #[must_use]
    pub fn with_market(mut self, market: FeeMarket) -> Self {
        self.market = Some(market);
        self
    }

    /// The same chain with Bitcoin Core's relay policy applied by [`Chain::submit`] and
    /// [`Chain::submit_package`] (see [`Policy`]).
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Replaces the fee market from the next block on (a simulation that draws its spike once it
    /// knows when its deadlines fall). Blocks already mined keep what they mined.
    pub fn set_market(&mut self, market: FeeMarket) {
        self.market = Some(market);
    }

    /// The fee market, if any.
    pub fn market(&self) -> Option<&FeeMarket> {
        self.market.as_ref()
    }

    /// The relay policy, if any.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The minimum package feerate of the next block, if there is a fee market.
    pub fn next_block_min_feerate(&self) -> Option<FeeRate> {
        self.market.as_ref().map(|m| m.min_feerate(self.height + 1))
    }

    /// What an embedder's fee estimator says now for confirming within `target` blocks
    /// ([`FeeMarket::estimate`] at the current tip), if there is a fee market.
    pub fn fee_estimate(&self, target: u32) -> Option<FeeRate> {
        self.market.as_ref().map(|m| m.estimate(self.height, target))
    }

    /// Adds a transaction's outputs as confirmed at the current height without checks (a wallet
    /// funding transaction whose inputs the test does not model).
    pub fn credit(&mut self, tx: &Transaction) {
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            self.utxos.insert(OutPoint { txid, vout: vout as u32 }, (out.clone(), self.height));
        }
        self.confirmed.insert(txid, (tx.clone(), self.height));
    }

    /// Advances the tip by `n` empty blocks.
    pub fn advance(&mut self, n: u32) {
        self.height += n;
    }

    /// Whether a txid confirmed, and at which height.
    pub fn confirmation(&self, txid: &Txid) -> Option<u32> {
        self.confirmed.get(txid).map(|(_, h)| *h)
    }

    /// Whether an outpoint is unspent.
    pub fn is_unspent(&self, outpoint: &OutPoint) -> bool {
        self.utxos.contains_key(outpoint)
    }

    /// The unspent output at `outpoint`.
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.utxos.get(outpoint).map(|(o, _)| o)
    }

    /// Checks whether `tx` could be mined in the next block.
    pub fn check(&self, tx: &Transaction) -> Result<(), Reject> {
        if tx.version != bitcoin::transaction::Version::TWO && tx.version != crate::core::script::TRUC_VERSION {
            return Err(Reject::Version);
        }
        self.check_coins(tx, |o| self.utxos.get(o).cloned()).map(|_| ())
    }

    /// The checks of [`Chain::check`] but the version, with the spent outputs and the heights
    /// that confirmed them given by `coin`. Returns the fee and the spent outputs.
    fn check_coins(
        &self,
        tx: &Transaction,
        coin: impl Fn(&OutPoint) -> Option<(TxOut, u32)>,
    ) -> Result<(u64, Vec<TxOut>), Reject> {
        let next = self.height + 1;
        let mut spent = Vec::new();
        let mut total_in = 0u64;
        for (i, input) in tx.input.iter().enumerate() {
            let (out, h) = coin(&input.previous_output).ok_or(Reject::MissingOrSpent(input.previous_output))?;
            total_in += out.value.to_sat();
            spent.push(out.clone());
            let seq = input.sequence.0;
            if seq & (1 << 31) == 0 {
                if seq & (1 << 22) != 0 {
                    return Err(Reject::TimeBasedRelativeLock);
                }
                let needed = h + (seq & 0xffff);
                if next < needed {
                    return Err(Reject::RelativeLock { input: i, needed, next_height: next });
                }
            }
        }
        let lt = tx.lock_time.to_consensus_u32();
        let all_final = tx.input.iter().all(|i| i.sequence.0 == 0xffff_ffff);
        if lt != 0 && !all_final {
            // Time locks (BOLT #3 commitments carry an obscured number in 0x20xxxxxx, a date in
            // 1987) are compared with a median-time-past of 2026.
            let now = if lt >= 500_000_000 { 1_790_000_000 } else { next };
            if lt >= now {
                return Err(Reject::NonFinal { locktime: lt, next_height: next });
            }
        }
        let total_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        if total_out > total_in {
            return Err(Reject::ValueCreated);
        }
        super::consensus::verify_spend(tx, &spent).map_err(Reject::Script)?;
        Ok((total_in - total_out, spent))
    }

    /// Mines `tx` alone in the next block.
    pub fn mine(&mut self, tx: &Transaction) -> Result<u32, Reject> {
        self.check(tx)?;
        self.height += 1;
        for input in &tx.input {
            self.utxos.remove(&input.previous_output);
        }
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            self.utxos.insert(OutPoint { txid, vout: vout as u32 }, (out.clone(), self.height));
        }
        self.confirmed.insert(txid, (tx.clone(), self.height));
        self.blocks.push((self.height, vec![txid]));
        if self.node_mode() {
            self.evict_invalid();
        }
        Ok(self.height)
    }

    /// Removes the block that confirmed `txid` if it is the tip block's only transaction (a
    /// one-block reorg), restoring the spent outputs.
    pub fn reorg_last(&mut self, txid: &Txid) -> Option<Transaction> {
        let (tx, h) = self.confirmed.remove(txid)?;
        assert_eq!(h, self.height, "only the tip block can be reorged");
        for vout in 0..tx.output.len() {
            self.utxos.remove(&OutPoint { txid: *txid, vout: vout as u32 });
        }
        for input in &tx.input {
            let (prev, ph) = self.confirmed.get(&input.previous_output.txid).expect("parent known");
            let out = prev.output[input.previous_output.vout as usize].clone();
            self.utxos.insert(input.previous_output, (out, *ph));
        }
        self.height -= 1;
        if self.blocks.last().is_some_and(|(bh, _)| *bh == h) {
            self.blocks.pop();
        }
        Some(tx)
    }

    /// Disconnects the last `depth` blocks mined here (a reorg): their transactions leave the
    /// chain, the outputs they spent come back, the tip goes down by `depth`, and the
    /// transactions return to the front of the mempool (as Core re-adds a disconnected block's
    /// transactions), so the replacement blocks may or may not mine them again. Returns the
    /// txids that were unconfirmed, newest block first. Credited (unmined) transactions and
    /// blocks below the oldest mined one are never disconnected.
    pub fn reorg(&mut self, depth: u32) -> Vec<Txid> {
        let mut unconfirmed = Vec::new();
        let mut back = Vec::new();
        for _ in 0..depth {
            let Some(&(top, _)) = self.blocks.last() else { break };
            if top != self.height {
                // An empty block from `advance`: just lower the tip.
                self.height -= 1;
                continue;
            }
            let Some((_, txids)) = self.blocks.pop() else { break };
            for txid in txids.iter().rev() {
                let Some((tx, _)) = self.confirmed.remove(txid) else { continue };
                for vout in 0..tx.output.len() {
                    self.utxos.remove(&OutPoint { txid: *txid, vout: vout as u32 });
                }
                for input in &tx.input {
                    if let Some((prev, ph)) = self.confirmed.get(&input.previous_output.txid) {
                        if let Some(out) = prev.output.get(input.previous_output.vout as usize) {
                            self.utxos.insert(input.previous_output, (out.clone(), *ph));
                        }
                    }
                }
                unconfirmed.push(*txid);
                back.push(tx);
            }
            self.height -= 1;
        }
        back.reverse();
        back.extend(core::mem::take(&mut self.mempool));
        self.mempool = back;
        unconfirmed
    }

    /// A reorg as a node sees it: the last `depth` blocks are replaced by `depth + 1` new ones
    /// (mining the mempool, the disconnected transactions first). Returns the txids that were
    /// disconnected and the transactions of the new blocks with their heights, to be reported
    /// in that order (`Unconfirmed` for the first, `Confirmed` for the second, then the tip).
    pub fn reorg_to_longer(&mut self, depth: u32) -> (Vec<Txid>, Vec<(Transaction, u32)>) {
        let gone = self.reorg(depth);
        let mut mined = Vec::new();
        for _ in 0..=depth {
            let h = self.height + 1;
            mined.extend(self.mine_block().into_iter().map(|t| (t, h)));
        }
        (gone, mined)
    }

    /// The transaction `txid` if it confirmed.
    pub fn tx(&self, txid: &Txid) -> Option<&Transaction> {
        self.confirmed.get(txid).map(|(t, _)| t)
    }

    /// Accepts `tx` into the mempool if it could be mined in the next block, as Bitcoin Core's
    /// mempool would (a non-final or BIP-0068-locked transaction is refused, and must be
    /// submitted again once valid). Transactions spending the same output may wait side by side;
    /// the first submitted that is valid wins the block. Submitting a transaction twice is a no-op.
    ///
    /// With a policy ([`Chain::with_policy`]) or a market ([`Chain::with_market`]) the mempool
    /// is a node's: a transaction may spend outputs of mempool transactions (its inputs are
    /// looked up in the chain, then in the mempool; an unconfirmed parent counts as confirmed
    /// in the next block for BIP-0068), and with a policy it must pass every rule of
    /// [`super::policy`], a conflicting transaction being a replacement. Without a policy,
    /// conflicting transactions still wait side by side.
    ///
    /// # Errors
    /// The first consensus rule ([`Chain::check`]) or policy rule ([`Reject::Policy`]) broken.
    pub fn submit(&mut self, tx: &Transaction) -> Result<(), Reject> {
        if self.node_mode() {
            return self.submit_node(tx);
        }
        let txid = tx.compute_txid();
        if self.confirmed.contains_key(&txid) || self.mempool.iter().any(|m| m.compute_txid() == txid) {
            return Ok(());
        }
        self.check(tx)?;
        self.mempool.push(tx.clone());
        Ok(())
    }

    /// Accepts `tx` into the mempool in place of every waiting transaction that spends one of
    /// its inputs (a replacement, as Bitcoin Core's RBF would take a better-paying one; the fee
    /// rules are not modelled), and of their descendants. Returns the txids evicted.
    ///
    /// # Errors
    /// As [`Chain::submit`].
    pub fn replace(&mut self, tx: &Transaction) -> Result<Vec<Txid>, Reject> {
        self.check(tx)?;
        let spent: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
        let conflicts: Vec<Txid> = self
            .mempool
            .iter()
            .filter(|m| m.input.iter().any(|i| spent.contains(&i.previous_output)))
            .map(Transaction::compute_txid)
            .collect();
        let mut evicted = Vec::new();
        for txid in conflicts {
            evicted.extend(self.evict(&txid));
        }
        self.submit(tx)?;
        Ok(evicted)
    }

    /// Removes `txid` and its descendants from the mempool (replaced by a transaction that
    /// spends none of our outputs, or dropped). Returns the txids removed.
    pub fn evict(&mut self, txid: &Txid) -> Vec<Txid> {
        let mut gone = Vec::new();
        let mut queue = vec![*txid];
        while let Some(t) = queue.pop() {
            let before = self.mempool.len();
            self.mempool.retain(|m| m.compute_txid() != t);
            if self.mempool.len() != before {
                gone.push(t);
            }
            queue.extend(
                self.mempool
                    .iter()
                    .filter(|m| m.input.iter().any(|i| i.previous_output.txid == t))
                    .map(Transaction::compute_txid),
            );
        }
        gone
    }

    /// Every confirmed transaction (credited ones included).
    pub fn confirmed_txs(&self) -> Vec<&Transaction> {
        self.confirmed.values().map(|(t, _)| t).collect()
    }

    /// The transactions waiting in the mempool.
    pub fn mempool(&self) -> &[Transaction] {
        &self.mempool
    }

    /// Mines the next block: every mempool transaction valid in it, in arrival order (a child may
    /// follow its parent into the same block when its relative lock allows), each checked by
    /// [`Chain::check`]. Transactions left in the mempool that conflict with the block are
    /// evicted. Returns the block's transactions.
    ///
    /// With a policy or a market, the block is built as a miner would: repeatedly the mempool
    /// transaction whose ancestor package (with its unconfirmed ancestors) has the highest
    /// feerate, with those ancestors, as long as that feerate reaches the block's minimum
    /// ([`FeeMarket::min_feerate`]; no minimum without a market); then the transactions the
    /// block made invalid leave the mempool with their descendants.
    pub fn mine_block(&mut self) -> Vec<Transaction> {
        if self.node_mode() {
            return self.mine_block_node();
        }
        let block_height = self.height + 1;
        let mut mined = Vec::new();
        loop {
            let mut progress = false;
            let mut i = 0;
            while i < self.mempool.len() {
                // `check` validates against the next block, `self.height + 1` = `block_height`.
                if self.check(&self.mempool[i]).is_ok() {
                    let tx = self.mempool.remove(i);
                    for input in &tx.input {
                        self.utxos.remove(&input.previous_output);
                    }
                    let txid = tx.compute_txid();
                    for (vout, out) in tx.output.iter().enumerate() {
                        self.utxos.insert(OutPoint { txid, vout: vout as u32 }, (out.clone(), block_height));
                    }
                    self.confirmed.insert(txid, (tx.clone(), block_height));
                    mined.push(tx);
                    progress = true;
                } else {
                    i += 1;
                }
            }
            if !progress {
                break;
            }
        }
        self.height = block_height;
        self.blocks.push((block_height, mined.iter().map(Transaction::compute_txid).collect()));
        let utxos = &self.utxos;
        let confirmed = &self.confirmed;
        // Evict what the block double-spent (an input whose parent confirmed but is spent now).
        self.mempool.retain(|tx| {
            tx.input
                .iter()
                .all(|i| utxos.contains_key(&i.previous_output) || !confirmed.contains_key(&i.previous_output.txid))
        });
        mined
    }
}
