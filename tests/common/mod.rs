//! Helpers shared by the integration tests: deterministic keys, P2WSH prevouts, one-input
//! version-2 spending transactions and a policy checker, on top of the crate's own
//! [`paychan::testing`] module (script verification by Bitcoin Core's interpreter, the simulated
//! chain and the channel harnesses), re-exported here.
//!
//! Each test binary uses a subset of these items, hence the `dead_code` allowances.
#![allow(dead_code, unused_imports)]

pub mod route;

pub use paychan::testing::consensus::*;
pub use paychan::testing::lightning as ln;
pub use paychan::testing::{chain, duplex, wallet};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{hash160, sha256, Hash};
use bitcoin::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_CSV, OP_DROP, OP_DUP, OP_ELSE, OP_ENDIF, OP_EQUAL,
    OP_EQUALVERIFY, OP_HASH160, OP_IF, OP_IFDUP, OP_NOTIF, OP_SHA256, OP_SIZE, OP_SWAP,
};
use bitcoin::script::Instruction;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{ecdsa, Amount, OutPoint, Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use paychan::core::script::WitnessScript;
use paychan::core::sign::{p2wsh_sighash, sign};

/// The value of every test prevout unless a test says otherwise.
pub const PREVOUT_VALUE: Amount = Amount::from_sat(1_000_000);

/// The fee every one-input spending transaction pays.
pub const SPEND_FEE: Amount = Amount::from_sat(1_000);

/// A fresh secp256k1 context.
pub fn secp() -> Secp256k1<All> {
    Secp256k1::new()
}

/// The deterministic secret key `[n; 32]` (`n` must be non-zero).
pub fn secret_key(n: u8) -> SecretKey {
    assert_ne!(n, 0, "[0; 32] is not a valid secret key");
    SecretKey::from_slice(&[n; 32]).expect("[n; 32] is below the curve order")
}

/// The public key of [`secret_key`]`(n)`.
pub fn public_key(n: u8) -> PublicKey {
    PublicKey::from_secret_key(&secp(), &secret_key(n))
}

/// A fixed outpoint (`[n; 32]:vout`) standing for a confirmed output that a test spends.
pub fn outpoint(n: u8, vout: u32) -> OutPoint {
    OutPoint { txid: Txid::from_byte_array([n; 32]), vout }
}

/// The P2WSH output paying `value` to `script` (a funding output or any other prevout).
pub fn p2wsh_prevout(script: &WitnessScript, value: Amount) -> TxOut {
    TxOut { value, script_pubkey: script.to_p2wsh() }
}

/// A version-2 transaction with one input spending `prevout` (empty witness, nSequence
/// `sequence`), nLockTime `lock_time` (raw consensus value) and one P2WPKH output worth
/// `input_value - SPEND_FEE`.
pub fn spending_tx(prevout: OutPoint, input_value: Amount, lock_time: u32, sequence: u32) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(lock_time),
        input: vec![TxIn {
            previous_output: prevout,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: input_value.checked_sub(SPEND_FEE).expect("input value covers the fee"),
            script_pubkey: paychan::core::script::to_remote_p2wpkh(&public_key(0x7f)),
        }],
    }
}

/// Signs input `input` of `tx`, spending a P2WSH output with `script` worth `value`, with the
/// crate's own signing functions ([`p2wsh_sighash`] and [`sign`]).
pub fn sign_p2wsh(
    tx: &Transaction,
    input: usize,
    script: &WitnessScript,
    value: Amount,
    key: &SecretKey,
    sighash_type: EcdsaSighashType,
) -> ecdsa::Signature {
    let msg = p2wsh_sighash(tx, input, script.as_script(), value, sighash_type).expect("input in range");
    sign(&secp(), &msg, key, sighash_type)
}

/// [`verify_spend`] followed by [`check_p2wsh_policy`] on every P2WSH input: what a Core node
/// would relay, as far as the witness script execution is concerned.
///
/// # Errors
/// The first consensus or policy failure.
pub fn verify_spend_standard(tx: &Transaction, spent: &[TxOut]) -> Result<(), String> {
    verify_spend(tx, spent)?;
    for (i, prevout) in spent.iter().enumerate() {
        if prevout.script_pubkey.is_p2wsh() {
            check_p2wsh_policy(tx, i, prevout).map_err(|e| format!("input {i}: policy: {e}"))?;
        }
    }
    Ok(())
}

/// Checks the segwit-v0 *policy* script rules that libbitcoinconsensus cannot enforce (its API
/// only takes consensus flags) on input `input` of `tx`, a P2WSH spend of `prevout`:
///
/// * MINIMALIF: the argument of every executed `OP_IF`/`OP_NOTIF` is `<>` or `0x01`;
/// * NULLFAIL: a signature that fails `OP_CHECKSIG(VERIFY)`/`OP_CHECKMULTISIG` is empty;
/// * NULLDUMMY, strict DER with a standard sighash type, and LOW_S (libsecp256k1 verification
///   refuses high-S signatures);
/// * a clean final stack: exactly one element, and true.
///
/// It is a small independent interpreter covering only the opcodes the crate's scripts use; an
/// unknown opcode is an error, never silently accepted. Lock-time opcodes (`OP_CLTV`, `OP_CSV`)
/// are no-ops here: run [`verify_spend`] for everything consensus checks.
///
/// # Errors
/// A description of the first violated rule.
pub fn check_p2wsh_policy(tx: &Transaction, input: usize, prevout: &TxOut) -> Result<(), String> {
    let witness = &tx.input.get(input).ok_or("input out of range")?.witness;
    let script_bytes = witness.last().ok_or("empty witness")?;
    let script = Script::from_bytes(script_bytes);
    if prevout.script_pubkey != ScriptBuf::new_p2wsh(&script.wscript_hash()) {
        return Err("witness script does not hash to the prevout's P2WSH program".into());
    }
    let mut stack: Vec<Vec<u8>> = witness.iter().take(witness.len() - 1).map(<[u8]>::to_vec).collect();
    let ctx = secp();
    let check_sig = |sig: &[u8], key: &[u8]| -> bool {
        let (Ok(sig), Ok(key)) = (ecdsa::Signature::from_slice(sig), PublicKey::from_slice(key)) else {
            return false;
        };
        let Ok(hash) = SighashCache::new(tx).p2wsh_signature_hash(input, script, prevout.value, sig.sighash_type)
        else {
            return false;
        };
        let msg = bitcoin::secp256k1::Message::from_digest(hash.to_byte_array());
        ctx.verify_ecdsa(&msg, &sig.signature, &key).is_ok()
    };
    let mut exec: Vec<bool> = Vec::new();
    for instruction in script.instructions() {
        let instruction = instruction.map_err(|e| format!("script does not parse: {e}"))?;
        let executing = exec.iter().all(|b| *b);
        let op = match instruction {
            Instruction::PushBytes(bytes) => {
                if executing {
                    stack.push(bytes.as_bytes().to_vec());
                }
                continue;
            }
            Instruction::Op(op) => op,
        };
        match op {
            OP_IF | OP_NOTIF => {
                let mut value = false;
                if executing {
                    let arg = pop(&mut stack)?;
                    if arg.len() > 1 || (arg.len() == 1 && arg[0] != 1) {
                        return Err(format!("MINIMALIF: {op} argument {arg:02x?} is neither <> nor 0x01"));
                    }
                    value = arg == [1];
                    if op == OP_NOTIF {
                        value = !value;
                    }
                }
                exec.push(value);
            }
            OP_ELSE => {
                let top = exec.last_mut().ok_or("OP_ELSE without OP_IF")?;
                *top = !*top;
            }
            OP_ENDIF => {
                exec.pop().ok_or("OP_ENDIF without OP_IF")?;
            }
            _ if !executing => {}
            OP_DUP => {
                let top = stack.last().ok_or("OP_DUP on an empty stack")?.clone();
                stack.push(top);
            }
            OP_IFDUP => {
                let top = stack.last().ok_or("OP_IFDUP on an empty stack")?.clone();
                if cast_to_bool(&top) {
                    stack.push(top);
                }
            }
            OP_DROP => {
                pop(&mut stack)?;
            }
            OP_SWAP => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(b);
                stack.push(a);
            }
            OP_SIZE => {
                let len = stack.last().ok_or("OP_SIZE on an empty stack")?.len();
                stack.push(script_num(len as i64));
            }
            OP_EQUAL | OP_EQUALVERIFY => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                if op == OP_EQUALVERIFY {
                    if a != b {
                        return Err("OP_EQUALVERIFY failed".into());
                    }
                } else {
                    stack.push(bool_item(a == b));
                }
            }
            OP_HASH160 => {
                let a = pop(&mut stack)?;
                stack.push(hash160::Hash::hash(&a).to_byte_array().to_vec());
            }
            OP_SHA256 => {
                let a = pop(&mut stack)?;
                stack.push(sha256::Hash::hash(&a).to_byte_array().to_vec());
            }
            OP_CHECKSIG | OP_CHECKSIGVERIFY => {
                let key = pop(&mut stack)?;
                let sig = pop(&mut stack)?;
                let ok = !sig.is_empty() && check_sig(&sig, &key);
                if !ok && !sig.is_empty() {
                    return Err(format!("NULLFAIL: non-empty signature fails {op}"));
                }
                if op == OP_CHECKSIGVERIFY {
                    if !ok {
                        return Err("OP_CHECKSIGVERIFY failed".into());
                    }
                } else {
                    stack.push(bool_item(ok));
                }
            }
            OP_CHECKMULTISIG => {
                let n = small_num(&pop(&mut stack)?)?;
                let keys = pop_n(&mut stack, n)?;
                let m = small_num(&pop(&mut stack)?)?;
                if m > n {
                    return Err("OP_CHECKMULTISIG with more signatures than keys".into());
                }
                let sigs = pop_n(&mut stack, m)?;
                if !pop(&mut stack)?.is_empty() {
                    return Err("NULLDUMMY: OP_CHECKMULTISIG dummy element is not <>".into());
                }
                // Core matches signatures to keys in order, starting from the last of each.
                let (mut k, mut s) = (keys.len(), sigs.len());
                let mut ok = true;
                while s > 0 {
                    if s > k {
                        ok = false;
                        break;
                    }
                    if !sigs[s - 1].is_empty() && check_sig(&sigs[s - 1], &keys[k - 1]) {
                        s -= 1;
                    }
                    k -= 1;
                }
                if !ok && sigs.iter().any(|sig| !sig.is_empty()) {
                    return Err("NULLFAIL: non-empty signature in a failed OP_CHECKMULTISIG".into());
                }
                stack.push(bool_item(ok));
            }
            OP_CLTV | OP_CSV => {
                stack.last().ok_or("lock-time opcode on an empty stack")?;
            }
            _ => {
                let code = op.to_u8();
                if (0x51..=0x60).contains(&code) {
                    stack.push(vec![code - 0x50]);
                } else {
                    return Err(format!("opcode {op} not supported by this policy checker"));
                }
            }
        }
    }
    if !exec.is_empty() {
        return Err("unbalanced OP_IF".into());
    }
    if stack.len() != 1 || !cast_to_bool(&stack[0]) {
        return Err(format!("final stack {stack:02x?} is not one true element"));
    }
    Ok(())
}

fn pop(stack: &mut Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
    stack.pop().ok_or_else(|| "stack underflow".to_string())
}

/// Pops `n` items and returns them in push order (deepest first).
fn pop_n(stack: &mut Vec<Vec<u8>>, n: usize) -> Result<Vec<Vec<u8>>, String> {
    if stack.len() < n {
        return Err("stack underflow".into());
    }
    Ok(stack.split_off(stack.len() - n))
}

fn small_num(item: &[u8]) -> Result<usize, String> {
    match item {
        [] => Ok(0),
        [n @ 1..=20] => Ok(usize::from(*n)),
        _ => Err(format!("unsupported multisig count {item:02x?}")),
    }
}

fn bool_item(b: bool) -> Vec<u8> {
    if b {
        vec![1]
    } else {
        Vec::new()
    }
}

/// Core's `CastToBool`: false for any encoding of zero (including negative zero).
fn cast_to_bool(item: &[u8]) -> bool {
    item.iter().enumerate().any(|(i, &b)| b != 0 && !(i == item.len() - 1 && b == 0x80))
}

/// Minimal `CScriptNum` encoding.
fn script_num(n: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let negative = n < 0;
    let mut abs = n.unsigned_abs();
    while abs > 0 {
        out.push((abs & 0xff) as u8);
        abs >>= 8;
    }
    if let Some(last) = out.last_mut() {
        if *last & 0x80 != 0 {
            out.push(if negative { 0x80 } else { 0 });
        } else if negative {
            *last |= 0x80;
        }
    }
    out
}
