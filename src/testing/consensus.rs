//! Script verification by Bitcoin Core's interpreter (libbitcoinconsensus, through the `bitcoin`
//! crate's `bitcoinconsensus` feature), always with every pre-taproot consensus flag.

use std::format;
use std::string::String;

use bitcoin::{Transaction, TxOut};

/// libbitcoinconsensus `VERIFY_P2SH` (BIP16).
pub const VERIFY_P2SH: u32 = 1;
/// libbitcoinconsensus `VERIFY_DERSIG` (BIP66).
pub const VERIFY_DERSIG: u32 = 1 << 2;
/// libbitcoinconsensus `VERIFY_NULLDUMMY` (BIP147).
pub const VERIFY_NULLDUMMY: u32 = 1 << 4;
/// libbitcoinconsensus `VERIFY_CHECKLOCKTIMEVERIFY` (BIP65).
pub const VERIFY_CHECKLOCKTIMEVERIFY: u32 = 1 << 9;
/// libbitcoinconsensus `VERIFY_CHECKSEQUENCEVERIFY` (BIP112).
pub const VERIFY_CHECKSEQUENCEVERIFY: u32 = 1 << 10;
/// libbitcoinconsensus `VERIFY_WITNESS` (BIP141/143). Never pass it without [`VERIFY_P2SH`]:
/// Core asserts on that combination and aborts the process.
pub const VERIFY_WITNESS: u32 = 1 << 11;

/// Every flag libbitcoinconsensus 0.105 (Core 25) accepts: all soft forks before taproot. The
/// values are the fixed `bitcoinconsensus_SCRIPT_FLAGS_VERIFY_*` of Core's C API.
///
/// Policy-only rules (MINIMALIF, NULLFAIL, LOW_S, …) are not part of this API: Core rejects any
/// other flag with `ERR_INVALID_FLAGS`.
pub const VERIFY_ALL_PRE_TAPROOT: u32 = VERIFY_P2SH
    | VERIFY_DERSIG
    | VERIFY_NULLDUMMY
    | VERIFY_CHECKLOCKTIMEVERIFY
    | VERIFY_CHECKSEQUENCEVERIFY
    | VERIFY_WITNESS;

/// Runs every input of `tx` through Bitcoin Core's script interpreter with
/// [`VERIFY_ALL_PRE_TAPROOT`], input `i` against `spent[i]` (its scriptPubKey and amount).
///
/// # Errors
/// A message naming the first failing input and Core's error code. A script that fails to
/// evaluate gives `ERR_SCRIPT` (see [`is_script_failure`]); other codes mean the call itself was
/// malformed (bad flags, undecodable transaction, …).
pub fn verify_spend(tx: &Transaction, spent: &[TxOut]) -> Result<(), String> {
    verify_spend_with_flags(tx, spent, VERIFY_ALL_PRE_TAPROOT)
}

/// Whether an error of [`verify_spend`] is a genuine script failure (Core evaluated the scripts and
/// refused them), as opposed to a malformed call.
pub fn is_script_failure(error: &str) -> bool {
    error.contains("ERR_SCRIPT")
}

/// As [`verify_spend`] with explicit flags. Flags with [`VERIFY_WITNESS`] but without
/// [`VERIFY_P2SH`] are refused here with an error, because Core aborts the process on them.
///
/// # Errors
/// A message naming the first failing input and Core's error.
pub fn verify_spend_with_flags(tx: &Transaction, spent: &[TxOut], flags: u32) -> Result<(), String> {
    if flags & VERIFY_WITNESS != 0 && flags & VERIFY_P2SH == 0 {
        return Err("VERIFY_WITNESS without VERIFY_P2SH aborts libbitcoinconsensus".into());
    }
    if spent.len() != tx.input.len() {
        return Err(format!("{} inputs but {} spent outputs", tx.input.len(), spent.len()));
    }
    let serialized = bitcoin::consensus::serialize(tx);
    for (i, prevout) in spent.iter().enumerate() {
        bitcoin::consensus::verify_script_with_flags(&prevout.script_pubkey, i, prevout.value, &serialized, flags)
            .map_err(|e| format!("input {i}: {e:?}"))?;
    }
    Ok(())
}
