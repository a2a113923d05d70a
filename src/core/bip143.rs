//! The BIP-0143 (segwit v0) signature digest, written for speed.
//!
//! Every signature the crate makes or checks starts with this digest, and a commitment with many
//! HTLCs needs two per HTLC (one to sign, one to verify). `bitcoin`'s `SighashCache` computes the
//! same value through its generic encoder, feeding the hash engine a few bytes at a time; here
//! the fixed-size fields are laid out in stack buffers and hashed in three pieces. The result is
//! checked against `SighashCache` for random transactions and every sighash type in the tests.

use bitcoin::hashes::{sha256, sha256d, Hash, HashEngine};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{Amount, Transaction, TxOut};

/// Bitcoin's CompactSize encoding of `n` into `buf`; returns the encoded length.
fn compact_size(buf: &mut [u8; 9], n: usize) -> usize {
    let n = n as u64;
    if n < 0xfd {
        buf[0] = n as u8;
        1
    } else if n <= 0xffff {
        buf[0] = 0xfd;
        buf[1..3].copy_from_slice(&(n as u16).to_le_bytes());
        3
    } else if n <= 0xffff_ffff {
        buf[0] = 0xfe;
        buf[1..5].copy_from_slice(&(n as u32).to_le_bytes());
        5
    } else {
        buf[0] = 0xff;
        buf[1..9].copy_from_slice(&n.to_le_bytes());
        9
    }
}

/// Feeds one output's consensus encoding (value, script length, script) to `engine`.
fn input_txout(engine: &mut sha256::HashEngine, out: &TxOut) {
    let mut head = [0u8; 17];
    head[..8].copy_from_slice(&out.value.to_sat().to_le_bytes());
    let mut len = [0u8; 9];
    let n = compact_size(&mut len, out.script_pubkey.len());
    head[8..8 + n].copy_from_slice(&len[..n]);
    engine.input(&head[..8 + n]);
    engine.input(out.script_pubkey.as_bytes());
}

/// The BIP-0143 digest of input `input` of `tx`, spending `value` with `script_code`, for
/// `sighash_type`; `None` if `input` is out of range. Same value as `bitcoin`'s
/// `SighashCache::p2wsh_signature_hash` (for a P2WSH spend `script_code` is the witness script).
pub(crate) fn segwit_v0_sighash(
    tx: &Transaction,
    input: usize,
    script_code: &[u8],
    value: Amount,
    sighash_type: EcdsaSighashType,
) -> Option<[u8; 32]> {
    segwit_v0_sighash_cached(tx, input, script_code, value, sighash_type, &mut TxDigests::default())
}

/// The transaction-wide parts of BIP-0143 digests (`hashPrevouts`, `hashSequence`,
/// `hashOutputs` for `SIGHASH_ALL`), computed once and reused for every input of one
/// transaction: signing all inputs of an n-input transaction hashes O(n) bytes, not O(n²).
/// Only valid while the transaction is unchanged.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct TxDigests {
    prevouts: Option<[u8; 32]>,
    sequences: Option<[u8; 32]>,
    all_outputs: Option<[u8; 32]>,
}

/// As [`segwit_v0_sighash`], reusing (and filling) `cache`, which must have been used only with
/// this very transaction.
pub(crate) fn segwit_v0_sighash_cached(
    tx: &Transaction,
    input: usize,
    script_code: &[u8],
    value: Amount,
    sighash_type: EcdsaSighashType,
    cache: &mut TxDigests,
) -> Option<[u8; 32]> {
    let txin = tx.input.get(input)?;
    let ty = sighash_type.to_u32();
    let anyone_can_pay = ty & 0x80 != 0;
    let base = ty & 0x1f;
    let (none, single) = (base == EcdsaSighashType::None as u32, base == EcdsaSighashType::Single as u32);

    // version ‖ hashPrevouts ‖ hashSequence ‖ outpoint ‖ CompactSize(script_code)
    let mut head = [0u8; 4 + 32 + 32 + 36 + 9];
    head[..4].copy_from_slice(&tx.version.0.to_le_bytes());
    if !anyone_can_pay {
        let prevouts = *cache.prevouts.get_or_insert_with(|| {
            let mut prevouts = sha256::Hash::engine();
            for i in &tx.input {
                let mut outpoint = [0u8; 36];
                outpoint[..32].copy_from_slice(i.previous_output.txid.as_byte_array());
                outpoint[32..].copy_from_slice(&i.previous_output.vout.to_le_bytes());
                prevouts.input(&outpoint);
            }
            sha256d::Hash::from_engine(prevouts).to_byte_array()
        });
        head[4..36].copy_from_slice(&prevouts);
        if !none && !single {
            let sequences = *cache.sequences.get_or_insert_with(|| {
                let mut sequences = sha256::Hash::engine();
                for i in &tx.input {
                    sequences.input(&i.sequence.0.to_le_bytes());
                }
                sha256d::Hash::from_engine(sequences).to_byte_array()
            });
            head[36..68].copy_from_slice(&sequences);
        }
    }
    head[68..100].copy_from_slice(txin.previous_output.txid.as_byte_array());
    head[100..104].copy_from_slice(&txin.previous_output.vout.to_le_bytes());
    let mut len = [0u8; 9];
    let n = compact_size(&mut len, script_code.len());
    head[104..104 + n].copy_from_slice(&len[..n]);

    // amount ‖ nSequence ‖ hashOutputs ‖ nLockTime ‖ sighash type
    let mut tail = [0u8; 8 + 4 + 32 + 4 + 4];
    tail[..8].copy_from_slice(&value.to_sat().to_le_bytes());
    tail[8..12].copy_from_slice(&txin.sequence.0.to_le_bytes());
    let hash_outputs = |outputs: &[TxOut]| {
        let mut engine = sha256::Hash::engine();
        for out in outputs {
            input_txout(&mut engine, out);
        }
        sha256d::Hash::from_engine(engine).to_byte_array()
    };
    if !none && !single {
        let all = *cache.all_outputs.get_or_insert_with(|| hash_outputs(&tx.output));
        tail[12..44].copy_from_slice(&all);
    } else if single {
        if let Some(out) = tx.output.get(input) {
            tail[12..44].copy_from_slice(&hash_outputs(core::slice::from_ref(out)));
        }
    }
    tail[44..48].copy_from_slice(&tx.lock_time.to_consensus_u32().to_le_bytes());
    tail[48..52].copy_from_slice(&ty.to_le_bytes());

    let mut engine = sha256::Hash::engine();
    engine.input(&head[..104 + n]);
    engine.input(script_code);
    engine.input(&tail);
    Some(sha256d::Hash::from_engine(engine).to_byte_array())
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use bitcoin::hashes::Hash as _;
    use bitcoin::sighash::SighashCache;
    use bitcoin::{absolute, transaction, OutPoint, ScriptBuf, Sequence, TxIn, Txid, Witness};
    use proptest::prelude::*;

    use super::*;

    const TYPES: [EcdsaSighashType; 6] = [
        EcdsaSighashType::All,
        EcdsaSighashType::None,
        EcdsaSighashType::Single,
        EcdsaSighashType::AllPlusAnyoneCanPay,
        EcdsaSighashType::NonePlusAnyoneCanPay,
        EcdsaSighashType::SinglePlusAnyoneCanPay,
    ];

    fn tx(inputs: &[(u8, u32, u32)], outputs: &[(u64, usize)], version: i32, lock: u32) -> Transaction {
        Transaction {
            version: transaction::Version(version),
            lock_time: absolute::LockTime::from_consensus(lock),
            input: inputs
                .iter()
                .map(|&(t, vout, seq)| TxIn {
                    previous_output: OutPoint { txid: Txid::from_byte_array([t; 32]), vout },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence(seq),
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs
                .iter()
                .map(|&(v, len)| TxOut {
                    value: Amount::from_sat(v),
                    script_pubkey: ScriptBuf::from_bytes((0..len).map(|i| i as u8).collect()),
                })
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn matches_sighash_cache(
            inputs in prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 1..4),
            outputs in prop::collection::vec((0u64..2_100_000_000_000_000, prop_oneof![0usize..40, 250usize..260]), 0..4),
            version in any::<i32>(),
            lock in any::<u32>(),
            script_len in prop_oneof![0usize..160, 250usize..300],
            value in any::<u64>(),
            pick in any::<prop::sample::Index>(),
        ) {
            let tx = tx(&inputs, &outputs, version, lock);
            let script = ScriptBuf::from_bytes((0..script_len).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
            let input = pick.index(inputs.len());
            for ty in TYPES {
                let want = SighashCache::new(&tx)
                    .p2wsh_signature_hash(input, &script, Amount::from_sat(value), ty)
                    .expect("input in range")
                    .to_byte_array();
                prop_assert_eq!(segwit_v0_sighash(&tx, input, script.as_bytes(), Amount::from_sat(value), ty), Some(want));
            }
            prop_assert_eq!(segwit_v0_sighash(&tx, inputs.len(), script.as_bytes(), Amount::ZERO, EcdsaSighashType::All), None);
        }

        /// One cache for every input and sighash type of a transaction gives the uncached digests.
        #[test]
        fn cached_digests_match(
            inputs in prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 1..6),
            outputs in prop::collection::vec((0u64..2_100_000_000_000_000, 0usize..40), 0..4),
            value in any::<u64>(),
        ) {
            let tx = tx(&inputs, &outputs, 2, 0);
            let script = ScriptBuf::from_bytes(alloc::vec![0x51; 35]);
            let mut cache = TxDigests::default();
            for input in 0..inputs.len() {
                for ty in TYPES {
                    let v = Amount::from_sat(value);
                    prop_assert_eq!(
                        segwit_v0_sighash_cached(&tx, input, script.as_bytes(), v, ty, &mut cache),
                        segwit_v0_sighash(&tx, input, script.as_bytes(), v, ty)
                    );
                }
            }
        }
    }

    #[test]
    fn compact_size_boundaries() {
        let mut buf = [0u8; 9];
        for (n, want) in [(0xfc, 1), (0xfd, 3), (0xffff, 3), (0x1_0000, 5), (0xffff_ffff, 5)] {
            assert_eq!(compact_size(&mut buf, n), want, "{n:#x}");
        }
    }
}
