//! The cooperative closing transaction (BOLT #3 "Closing Transaction") of the Lightning layer (the
//! Spilman and duplex layers build their own closes: docs/spilman.md §2, docs/duplex.md §2).

use alloc::vec::Vec;

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

/// Builds a closing transaction spending `funding_outpoint`: version 2, `nLockTime` 0, final
/// `nSequence`, outputs below `dust_limit` left out (their value goes to fees), and the rest in
/// BIP-0069 order. Amounts are what each party receives, after the fee was taken.
pub fn closing_tx(funding_outpoint: OutPoint, outputs: &[(ScriptBuf, Amount)], dust_limit: Amount) -> Transaction {
    let mut out: Vec<TxOut> = outputs
        .iter()
        .filter(|(_, v)| *v >= dust_limit)
        .map(|(s, v)| TxOut { value: *v, script_pubkey: s.clone() })
        .collect();
    out.sort_by(|a, b| (a.value, a.script_pubkey.as_bytes()).cmp(&(b.value, b.script_pubkey.as_bytes())));
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: alloc::vec![TxIn {
            previous_output: funding_outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: out,
    }
}
