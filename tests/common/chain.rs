//! A small simulated chain for integration tests: a UTXO set, absolute and relative (BIP-0068)
//! lock times, double-spend detection, value conservation, and every input's script checked by
//! Bitcoin Core's interpreter with all consensus flags.

use std::collections::HashMap;

use bitcoin::{OutPoint, Transaction, TxOut, Txid};

/// Why the chain refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// An input is unknown or already spent.
    MissingOrSpent(OutPoint),
    /// `nLockTime` not yet reached at the next block's height.
    NonFinal { locktime: u32, next_height: u32 },
    /// A BIP-0068 relative lock is not yet met.
    RelativeLock { input: usize, needed: u32, next_height: u32 },
    /// Outputs exceed inputs.
    ValueCreated,
    /// Bitcoin Core's interpreter refused an input.
    Script(String),
    /// Not version 2.
    Version,
}

/// The simulated chain.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Height of the tip.
    pub height: u32,
    utxos: HashMap<OutPoint, (TxOut, u32)>,
    confirmed: HashMap<Txid, (Transaction, u32)>,
}

impl Chain {
    /// A chain at `height` with no coins.
    pub fn at(height: u32) -> Self {
        Chain { height, ..Default::default() }
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
        if tx.version != bitcoin::transaction::Version::TWO {
            return Err(Reject::Version);
        }
        let next = self.height + 1;
        let mut spent = Vec::new();
        let mut total_in = 0u64;
        for (i, input) in tx.input.iter().enumerate() {
            let (out, h) = self.utxos.get(&input.previous_output).ok_or(Reject::MissingOrSpent(input.previous_output))?;
            total_in += out.value.to_sat();
            spent.push(out.clone());
            let seq = input.sequence.0;
            if seq & (1 << 31) == 0 {
                assert_eq!(seq & (1 << 22), 0, "time-based relative locks are not used by this crate");
                let needed = h + (seq & 0xffff);
                if next < needed {
                    return Err(Reject::RelativeLock { input: i, needed, next_height: next });
                }
            }
        }
        let lt = tx.lock_time.to_consensus_u32();
        let all_final = tx.input.iter().all(|i| i.sequence.0 == 0xffff_ffff);
        if lt != 0 && !all_final {
            assert!(lt < 500_000_000, "time locks are not used by this crate");
            if lt >= next {
                return Err(Reject::NonFinal { locktime: lt, next_height: next });
            }
        }
        let total_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        if total_out > total_in {
            return Err(Reject::ValueCreated);
        }
        super::verify_spend(tx, &spent).map_err(Reject::Script)
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
        Some(tx)
    }
}
