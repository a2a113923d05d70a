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
    /// The fee each of [`Settlement::txs`] paid (inputs minus outputs), in sat.
    pub tx_fees: HashMap<Txid, u64>,
    /// Value the channel's transactions spent from outside the channel (wallet coins paying for
    /// fee bumps), in sat: [`Settlement::unspent`] plus [`Settlement::fees`] is the funding value
    /// plus this.
    pub external: u64,
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
            out.tx_fees.insert(txid, value_in.saturating_sub(value_out));
            frontier.extend((0..tx.output.len()).map(|vout| OutPoint { txid, vout: vout as u32 }));
        }
        for txid in &out.txs {
            let Some(tx) = chain.tx(txid) else { continue };
            out.external += tx
                .input
                .iter()
                .filter(|i| i.previous_output != funding && !seen.contains(&i.previous_output.txid))
                .filter_map(|i| chain.tx(&i.previous_output.txid)?.output.get(i.previous_output.vout as usize))
                .map(|o| o.value.to_sat())
                .sum::<u64>();
        }
        out
    }

    /// The unspent value paying `script`.
    pub fn paid_to(&self, script: &ScriptBuf) -> u64 {
        self.unspent.iter().filter(|(_, o)| &o.script_pubkey == script).map(|(_, o)| o.value.to_sat()).sum()
    }
}

/// Which party broadcast which transaction, to charge each confirmed transaction's fee to the
/// party that paid it.
///
/// The rule: a transaction's fee is charged to the party that broadcast it. A transaction both
/// parties broadcast (a duplex tree node, a Spilman payment the payee and a restarted payer both
/// know) is charged to the party it pays the most (the one that needed it). A layer whose
/// protocol fixes who pays a transaction whoever broadcasts it (a Lightning commitment: the
/// funder, BOLT 3; a duplex tree node: the channel value, before either balance) leaves it out
/// with `skip`.
#[derive(Clone, Debug, Default)]
pub struct Broadcasts {
    by: HashMap<Txid, [bool; 2]>,
}

impl Broadcasts {
    /// Records that party `i` broadcast `tx`.
    pub fn record(&mut self, i: usize, tx: &Transaction) {
        if let Some(b) = self.by.get_mut(&tx.compute_txid()).and_then(|b| b.get_mut(i)) {
            *b = true;
        } else {
            let mut b = [false; 2];
            b[i] = true;
            self.by.insert(tx.compute_txid(), b);
        }
    }

    /// Whether party `i` broadcast `txid`.
    pub fn did(&self, i: usize, txid: &Txid) -> bool {
        self.by.get(txid).is_some_and(|b| b[i])
    }

    /// The party charged with a confirmed transaction's fee (`None`: nobody broadcast it through
    /// an embedder, e.g. a cheater's own publication).
    pub fn payer_of(&self, chain: &Chain, txid: &Txid, scripts: [&ScriptBuf; 2]) -> Option<usize> {
        match self.by.get(txid)? {
            [true, false] => Some(0),
            [false, true] => Some(1),
            [true, true] => {
                let tx = chain.tx(txid)?;
                let paid = |s: &ScriptBuf| -> u64 {
                    tx.output.iter().filter(|o| &o.script_pubkey == s).map(|o| o.value.to_sat()).sum()
                };
                Some(usize::from(paid(scripts[1]) > paid(scripts[0])))
            }
            [false, false] => None,
        }
    }

    /// The fees of the settlement's transactions charged to party `i`, except those `skip` says
    /// the protocol charges otherwise.
    pub fn fees_of(
        &self,
        chain: &Chain,
        settled: &Settlement,
        i: usize,
        scripts: [&ScriptBuf; 2],
        skip: impl Fn(&Txid) -> bool,
    ) -> u64 {
        settled
            .txs
            .iter()
            .filter(|t| !skip(t) && self.payer_of(chain, t, scripts) == Some(i))
            .map(|t| settled.tx_fees.get(t).copied().unwrap_or(0))
            .sum()
    }
}

/// An honest party ends with at least what it was owed, less the fees of the transactions it
/// broadcast, to the satoshi.
///
/// # Errors
/// A description of the loss.
pub fn check_owed(who: &str, got: u64, owed: u64, own_fees: u64) -> Result<(), String> {
    if got.saturating_add(own_fees) < owed {
        return Err(format!(
            "{who} lost funds: got {got} sat on chain, owed {owed} sat less its own fees {own_fees} sat (short by {} sat)",
            owed - got - own_fees
        ));
    }
    Ok(())
}

/// A cheater ends with at most what the protocol leaves it.
///
/// # Errors
/// A description of the gain.
pub fn check_cheater(who: &str, got: u64, allowed: u64) -> Result<(), String> {
    if got > allowed {
        return Err(format!(
            "cheater {who} gained: got {got} sat on chain, the protocol leaves it at most {allowed} sat"
        ));
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
