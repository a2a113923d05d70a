//! The checks every simulation runs on the final chain and on each broadcast.

use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bitcoin::{OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::chain::{Chain, Reject};

/// The confirmed transactions descending from a channel's funding output, and where its value
/// went.
#[derive(Clone, Debug, Default)]
pub struct Settlement {
    /// Fees paid by the channel's transactions (inputs minus outputs), in sat.
    pub fees: u64,
    /// Unspent outputs of the channel's transactions.
    pub unspent: Vec<(OutPoint, TxOut)>,
    /// The channel's confirmed transactions, parents first.
    pub txs: Vec<Txid>,
}

impl Settlement {
    /// Walks the confirmed transactions spending `funding` (worth `value`), their children and so on.
    pub fn of(chain: &Chain, funding: OutPoint) -> Settlement {
        let mut spender: HashMap<OutPoint, &Transaction> = HashMap::new();
        for tx in chain.confirmed_txs() {
            for input in &tx.input {
                spender.insert(input.previous_output, tx);
            }
        }
        let mut out = Settlement::default();
        let mut frontier = vec![funding];
        let mut seen = HashSet::new();
        while let Some(op) = frontier.pop() {
            let Some(tx) = spender.get(&op) else {
                if let Some(o) = chain.utxo(&op) {
                    out.unspent.push((op, o.clone()));
                }
                continue;
            };
            let txid = tx.compute_txid();
            if !seen.insert(txid) {
                continue;
            }
            out.txs.push(txid);
            let value_in: u64 = tx
                .input
                .iter()
                .filter_map(|i| chain.tx(&i.previous_output.txid)?.output.get(i.previous_output.vout as usize))
                .map(|o| o.value.to_sat())
                .sum();
            let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
            out.fees += value_in.saturating_sub(value_out);
            frontier.extend((0..tx.output.len()).map(|vout| OutPoint { txid, vout: vout as u32 }));
        }
        out
    }

    /// The unspent value paying `script`.
    pub fn paid_to(&self, script: &ScriptBuf) -> u64 {
        self.unspent.iter().filter(|(_, o)| &o.script_pubkey == script).map(|(_, o)| o.value.to_sat()).sum()
    }

    /// Checks that the value is conserved (`unspent + fees == value`) and that every unspent
    /// output pays one of `owners` or is at most `loose_max` sat (anchors, which anyone may
    /// sweep eventually): nothing is left locked in a channel script nobody will claim.
    ///
    /// # Errors
    /// A description of the violation.
    pub fn check_resolved(&self, value: u64, owners: &[&ScriptBuf], loose_max: u64) -> Result<(), String> {
        let unspent: u64 = self.unspent.iter().map(|(_, o)| o.value.to_sat()).sum();
        if unspent + self.fees != value {
            return Err(format!("value not conserved: {unspent} unspent + {} fees != {value}", self.fees));
        }
        for (op, o) in &self.unspent {
            if !owners.contains(&&o.script_pubkey) && o.value.to_sat() > loose_max {
                return Err(format!("{} sat at {op} left in a script no party owns", o.value.to_sat()));
            }
        }
        Ok(())
    }

    /// The unspent value of small outputs no party owns (anchors).
    pub fn loose(&self, owners: &[&ScriptBuf]) -> u64 {
        self.unspent.iter().filter(|(_, o)| !owners.contains(&&o.script_pubkey)).map(|(_, o)| o.value.to_sat()).sum()
    }
}

/// An honest party got at least what it was owed, less what went to fees and ownerless dust.
///
/// # Errors
/// A description of the loss.
pub fn check_not_robbed(who: &str, got: u64, owed: u64, fee_allowance: u64) -> Result<(), String> {
    if got.saturating_add(fee_allowance) < owed {
        return Err(format!("{who} lost funds: got {got} sat, owed {owed} sat (fee allowance {fee_allowance})"));
    }
    Ok(())
}

/// What a broadcast transaction was, checked against the chain when it was broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BroadcastCheck {
    /// Valid in the next block.
    Valid,
    /// An input's parent is not confirmed yet (valid later, or never if the parent loses a race):
    /// checked again when it confirms or at the end.
    Deferred,
    /// An input is already spent by a confirmed transaction (a race the party lost).
    Conflicted,
}

/// Checks a transaction an honest party broadcast at the chain's current tip: it must be valid in
/// the next block, unless an input's parent is unconfirmed (deferred) or an input is spent
/// already (the party lost a race).
///
/// # Errors
/// Why it is not consensus-valid now (a lock not yet met, a script failure, …).
pub fn check_broadcast(chain: &Chain, tx: &Transaction) -> Result<BroadcastCheck, String> {
    if chain.confirmation(&tx.compute_txid()).is_some() {
        return Ok(BroadcastCheck::Valid);
    }
    match chain.check(tx) {
        Ok(()) => Ok(BroadcastCheck::Valid),
        Err(Reject::MissingOrSpent(op)) => {
            if chain.confirmation(&op.txid).is_some() {
                Ok(BroadcastCheck::Conflicted)
            } else {
                Ok(BroadcastCheck::Deferred)
            }
        }
        Err(e) => Err(format!("broadcast {} invalid at height {}: {e:?}", tx.compute_txid(), chain.height)),
    }
}
