//! Bitcoin Core's relay policy (versions 28 and 29), as the simulated [`Chain`](super::chain::Chain)
//! applies it on top of consensus once switched on with
//! [`Chain::with_policy`](super::chain::Chain::with_policy).
//!
//! This module holds the settings ([`Policy`]), the typed reasons a node refuses a transaction
//! ([`PolicyReject`], [`TrucViolation`], [`RbfReject`], [`PackageReject`]) and the checks that
//! need nothing but the transaction and the outputs it spends ([`check_standard`],
//! [`check_inputs_standard`], [`dust_threshold`], …). The checks that need the mempool
//! (minimum relay feerate, replacement, TRUC topology, ephemeral dust spends, packages) run in
//! the chain's mempool, which reports them with these same types.
//!
//! What is modelled, with Core's reason strings:
//!
//! | rule | Core | here |
//! |---|---|---|
//! | `version` 1..=3 | `version` | 2 or 3 ([`PolicyReject::Version`]; the crate never uses 1) |
//! | weight ≤ 400,000 | `tx-size` | [`PolicyReject::TooLarge`] |
//! | non-witness size ≥ 65 bytes | `tx-size-small` | [`PolicyReject::TooSmall`] |
//! | `scriptSig` ≤ 1,650 bytes, push-only | `scriptsig-size`, `scriptsig-not-pushonly` | [`PolicyReject::ScriptSig`] |
//! | outputs of a standard type | `scriptpubkey` | [`PolicyReject::NonStandardOutput`] |
//! | one `OP_RETURN` of ≤ 83 bytes | `multi-op-return` | [`PolicyReject::MultiOpReturn`] |
//! | no output below the dust threshold (3 sat/vB) | `dust` | [`PolicyReject::Dust`] |
//! | Core 29: one dust output if the fee is 0 | `dust` | [`PolicyReject::DustWithFee`], [`PolicyReject::TooMuchDust`] |
//! | Core 29: children spend the parent's dust | `missing-ephemeral-spends` | [`PolicyReject::MissingEphemeralSpend`] |
//! | inputs spend standard types | `bad-txns-nonstandard-inputs` | [`PolicyReject::NonStandardInput`] |
//! | standard witnesses | `bad-witness-nonstandard` | [`PolicyReject::NonStandardWitness`] |
//! | min relay feerate 1 sat/vB | `min relay fee not met` | [`PolicyReject::BelowMinRelay`] |
//! | 25 ancestors / 25 descendants, CPFP carve-out | `too-long-mempool-chain` | [`PolicyReject::TooLongChain`] |
//! | BIP125 rules 2–6, full RBF | `insufficient fee`, … | [`PolicyReject::Rbf`] |
//! | TRUC (version 3) | `TRUC-violation` | [`PolicyReject::Truc`] |
//! | 1-parent-1-child packages | `package-…` | [`PolicyReject::Package`] |
//!
//! Not modelled: the sigop limits and the sigop-adjusted vsize (vsize is `ceil(weight / 4)`),
//! the size limits of ancestor and descendant packages (only their counts), the policy-only script flags (`MINIMALIF`, `NULLFAIL`, low S, …: Core's consensus library
//! does not take them), P2PK and bare multisig outputs (refused here; the crate never makes
//! them), the mempool's size limit and expiry, and the rolling mempool minimum feerate.

use core::fmt;

use bitcoin::{Amount, FeeRate, Script, Transaction, TxOut, Txid};

use crate::core::standard::{payout_kind, PayoutKind};

/// Core's `MAX_STANDARD_TX_WEIGHT`.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Core's `MIN_STANDARD_TX_NONWITNESS_SIZE`.
pub const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
/// Core's `MAX_STANDARD_SCRIPTSIG_SIZE`.
pub const MAX_STANDARD_SCRIPTSIG_SIZE: usize = 1_650;
/// Core's `MAX_OP_RETURN_RELAY` (the whole script, `OP_RETURN` included), Core 28/29.
pub const MAX_OP_RETURN_RELAY: usize = 83;
/// Core's `MAX_STANDARD_P2WSH_SCRIPT_SIZE`.
pub const MAX_STANDARD_P2WSH_SCRIPT_SIZE: usize = 3_600;
/// Core's `MAX_STANDARD_P2WSH_STACK_ITEMS`.
pub const MAX_STANDARD_P2WSH_STACK_ITEMS: usize = 100;
/// Core's `MAX_STANDARD_P2WSH_STACK_ITEM_SIZE` (also the tapscript stack item limit).
pub const MAX_STANDARD_WITNESS_ITEM_SIZE: usize = 80;
/// Core's `TRUC_MAX_VSIZE`: a version 3 transaction's largest vsize.
pub const TRUC_MAX_VSIZE: u64 = 10_000;
/// Core's `TRUC_CHILD_MAX_VSIZE`: the largest vsize of a version 3 child of an unconfirmed
/// version 3 parent.
pub const TRUC_CHILD_MAX_VSIZE: u64 = 1_000;

/// The relay settings of a node. [`Policy::CORE_29`] (the [`Default`]) and [`Policy::CORE_28`]
/// are Bitcoin Core's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `-minrelaytxfee`: every transaction but a TRUC one in a package pays at least this.
    pub min_relay_feerate: FeeRate,
    /// `-incrementalrelayfee`: a replacement pays this much more than what it evicts, on its
    /// own vsize.
    pub incremental_relay_feerate: FeeRate,
    /// `-dustrelayfee`: an output is dust when spending it would cost more than its value at
    /// this feerate.
    pub dust_relay_feerate: FeeRate,
    /// The most transactions a replacement may evict (BIP125 rule 5).
    pub max_replacements: usize,
    /// The most in-mempool ancestors (the transaction included) and descendants (the ancestor
    /// included) of a transaction; Core's CPFP carve-out allows one more descendant of at most
    /// 10,000 vB with a single unconfirmed ancestor (not TRUC).
    pub max_chain: usize,
    /// Core 29's ephemeral dust: a transaction paying no fee may have one dust output, which
    /// every child must spend. Off in Core 28, where any dust output is refused.
    pub ephemeral_dust: bool,
}

impl Policy {
    /// Bitcoin Core 29's defaults: 1 sat/vB minimum and incremental relay feerates, 3 sat/vB dust
    /// relay feerate, 100 replacements, chains of 25, ephemeral dust.
    pub const CORE_29: Policy = Policy {
        min_relay_feerate: FeeRate::from_sat_per_kwu(250),
        incremental_relay_feerate: FeeRate::from_sat_per_kwu(250),
        dust_relay_feerate: FeeRate::from_sat_per_kwu(750),
        max_replacements: 100,
        max_chain: 25,
        ephemeral_dust: true,
    };

    /// Bitcoin Core 28's defaults: as [`CORE_29`](Self::CORE_29) without ephemeral dust.
    pub const CORE_28: Policy = Policy { ephemeral_dust: false, ..Policy::CORE_29 };
}

impl Default for Policy {
    fn default() -> Self {
        Policy::CORE_29
    }
}

/// A rule of TRUC (version 3, BIP431) that a transaction breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrucViolation {
    /// A version 3 transaction larger than [`TRUC_MAX_VSIZE`].
    TooLarge {
        /// Its vsize.
        vsize: u64,
    },
    /// A version 3 child of an unconfirmed version 3 parent larger than
    /// [`TRUC_CHILD_MAX_VSIZE`].
    ChildTooLarge {
        /// Its vsize.
        vsize: u64,
    },
    /// A version 3 transaction with more than one unconfirmed ancestor.
    TooManyAncestors {
        /// Its unconfirmed ancestors.
        ancestors: usize,
    },
    /// The unconfirmed version 3 parent already has a child that cannot be evicted (sibling
    /// eviction applies only to a parent with exactly one child).
    TooManyDescendants {
        /// The parent.
        parent: Txid,
    },
    /// A version 3 transaction spends an unconfirmed non-version-3 one.
    SpendsNonTruc {
        /// The unconfirmed parent.
        parent: Txid,
    },
    /// A non-version-3 transaction spends an unconfirmed version 3 one.
    NonTrucSpendsTruc {
        /// The unconfirmed parent.
        parent: Txid,
    },
}

/// A replacement rule (BIP125 as Bitcoin Core 28 applies it, full RBF: no signalling needed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RbfReject {
    /// It would evict more than [`Policy::max_replacements`] transactions (rule 5).
    TooManyReplacements {
        /// The direct conflicts and their descendants.
        evicted: usize,
    },
    /// Its feerate does not exceed a direct conflict's (rule 6).
    FeerateNotHigher {
        /// The conflict.
        conflict: Txid,
        /// The replacement's feerate, sat/kvB, rounded down as Core does.
        feerate: u64,
        /// The conflict's feerate, sat/kvB.
        conflict_feerate: u64,
    },
    /// It pays less absolute fee than everything it evicts (rule 3).
    LessFeeThanEvicted {
        /// Its fee, satoshi.
        fee: u64,
        /// The fees of every evicted transaction, satoshi.
        evicted_fee: u64,
    },
    /// The extra fee does not pay the incremental relay feerate on its own vsize (rule 4).
    IncrementTooSmall {
        /// The fee above the evicted transactions', satoshi.
        additional: u64,
        /// What the incremental relay feerate asks, satoshi.
        needed: u64,
    },
    /// It spends an unconfirmed output that none of its conflicts spent (rule 2).
    AddsUnconfirmed {
        /// The input.
        input: usize,
    },
    /// It spends an output of a transaction it would evict.
    SpendsConflicting {
        /// The evicted ancestor.
        txid: Txid,
    },
    /// A package replacement Core 28 does not consider: a conflict in a cluster of more than
    /// two transactions, a package with in-mempool ancestors, or a package whose feerate does
    /// not exceed its parent's.
    PackageShape,
}

/// Why a package ([`Chain::submit_package`](super::chain::Chain::submit_package)) is refused
/// as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageReject {
    /// Not one parent and one child spending it (Core 28 relays 1-parent-1-child packages).
    NotChildWithParent,
    /// The child spends an unconfirmed output of a transaction outside the package.
    ChildHasOtherUnconfirmedParent {
        /// The input.
        input: usize,
    },
    /// The two transactions spend the same output.
    Conflicting,
}

/// Why a node's policy refuses a transaction that consensus would accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyReject {
    /// `version` other than 2 or 3.
    Version(i32),
    /// Weight above [`MAX_STANDARD_TX_WEIGHT`].
    TooLarge {
        /// Its weight.
        weight: u64,
    },
    /// Serialized without witness, smaller than [`MIN_STANDARD_TX_NONWITNESS_SIZE`].
    TooSmall {
        /// Its non-witness size.
        size: usize,
    },
    /// A `scriptSig` larger than [`MAX_STANDARD_SCRIPTSIG_SIZE`] or not push-only.
    ScriptSig {
        /// The input.
        input: usize,
    },
    /// An output of no standard type.
    NonStandardOutput {
        /// The output.
        output: usize,
    },
    /// More than one `OP_RETURN` output.
    MultiOpReturn,
    /// An output below its dust threshold ([`dust_threshold`]).
    Dust {
        /// The output.
        output: usize,
        /// Its value, satoshi.
        value: u64,
        /// The smallest non-dust value, satoshi.
        threshold: u64,
    },
    /// More than one dust output (Core 29).
    TooMuchDust,
    /// A dust output on a transaction that pays a fee (Core 29: ephemeral dust is only for
    /// zero-fee transactions, so that no miner is paid to leave it unspent).
    DustWithFee {
        /// The fee, satoshi.
        fee: u64,
    },
    /// The transaction spends an unconfirmed parent's outputs but not its ephemeral dust.
    MissingEphemeralSpend {
        /// The parent.
        parent: Txid,
        /// The dust output not spent.
        vout: u32,
    },
    /// An input spends an output of no standard type (a future witness version other than
    /// pay-to-anchor, or a non-standard script).
    NonStandardInput {
        /// The input.
        input: usize,
    },
    /// An input's witness is not standard: a witness on a non-witness output or on a
    /// pay-to-anchor, a P2WSH script, stack or item too large, a tapscript item too large, an
    /// annex.
    NonStandardWitness {
        /// The input.
        input: usize,
    },
    /// The fee is below the minimum relay feerate on this vsize (for a package, on the
    /// package's).
    BelowMinRelay {
        /// The fee, satoshi.
        fee: u64,
        /// The vsize.
        vsize: u64,
        /// The fee the minimum relay feerate asks.
        needed: u64,
    },
    /// More than [`Policy::max_chain`] unconfirmed ancestors or descendants.
    TooLongChain,
    /// A TRUC rule.
    Truc(TrucViolation),
    /// A replacement rule.
    Rbf(RbfReject),
    /// A package rule.
    Package(PackageReject),
}

impl fmt::Display for PolicyReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The virtual size Core charges: `ceil(weight / 4)` (without the sigop adjustment).
pub fn vsize(tx: &Transaction) -> u64 {
    tx.weight().to_wu().div_ceil(4)
}

/// What `rate` asks on `vsize` vbytes, rounded up as Core's `CFeeRate::GetFee` (and at least 1
/// satoshi for a non-zero rate and size).
pub fn fee_at(rate: FeeRate, vsize: u64) -> u64 {
    let per_kvb = u128::from(rate.to_sat_per_kwu()) * 4;
    let fee = (per_kvb * u128::from(vsize)).div_ceil(1000);
    let fee = u64::try_from(fee).unwrap_or(u64::MAX);
    if fee == 0 && per_kvb > 0 && vsize > 0 {
        1
    } else {
        fee
    }
}

/// The feerate of `fee` on `vsize`, sat/kvB rounded down, as Core's `CFeeRate(fee, vsize)`
/// compares replacements.
pub fn feerate_per_kvb(fee: u64, vsize: u64) -> u64 {
    if vsize == 0 {
        return 0;
    }
    u64::try_from(u128::from(fee) * 1000 / u128::from(vsize)).unwrap_or(u64::MAX)
}

/// Whether `script` is pay-to-anchor, `OP_1 <0x4e73>` (Core 28's `IsPayToAnchor`).
pub fn is_p2a(script: &Script) -> bool {
    script.as_bytes() == [0x51, 0x02, 0x4e, 0x73]
}

/// Whether `script` is Core's null-data form: `OP_RETURN`, then only pushes, at most
/// [`MAX_OP_RETURN_RELAY`] bytes in all.
pub fn is_null_data(script: &Script) -> bool {
    let b = script.as_bytes();
    b.first() == Some(&0x6a) && b.len() <= MAX_OP_RETURN_RELAY && Script::from_bytes(&b[1..]).is_push_only()
}

/// Whether `script` is a witness program (Core's `IsWitnessProgram`: a version opcode and one
/// direct push of 2..=40 bytes, 4..=42 bytes in all).
fn is_witness_program(script: &Script) -> bool {
    let b = script.as_bytes();
    (4..=42).contains(&b.len()) && (b[0] == 0x00 || (0x51..=0x60).contains(&b[0])) && usize::from(b[1]) + 2 == b.len()
}

/// The smallest value of an output paying `script` that is not dust at `dust_relay_feerate`
/// (Core's `GetDustThreshold`): the cost of the output plus the input that would spend it (148
/// bytes, or 67 vbytes for a witness program), zero for an unspendable `OP_RETURN`.
///
/// P2WPKH 294, P2WSH and P2TR 330, P2A 240, P2SH 540, P2PKH 546 satoshi at 3 sat/vB.
pub fn dust_threshold(script: &Script, dust_relay_feerate: FeeRate) -> Amount {
    if script.as_bytes().first() == Some(&0x6a) || script.len() > 10_000 {
        return Amount::ZERO;
    }
    let len = script.len() as u64;
    let compact = match len {
        0..=252 => 1,
        253..=0xffff => 3,
        _ => 5,
    };
    let output = 8 + compact + len;
    let input = if is_witness_program(script) { 32 + 4 + 1 + 107 / 4 + 4 } else { 32 + 4 + 1 + 107 + 4 };
    Amount::from_sat(fee_at(dust_relay_feerate, output + input))
}

/// Whether `out` is dust under `policy`.
pub fn is_dust(out: &TxOut, policy: &Policy) -> bool {
    out.value < dust_threshold(&out.script_pubkey, policy.dust_relay_feerate)
}

/// Whether `script` is an output type Core relays (the [`crate::core::standard`] templates, any
/// witness program including P2A, and null data).
pub fn is_standard_output(script: &Script) -> bool {
    match payout_kind(script) {
        Some(PayoutKind::OpReturn) | None => is_null_data(script),
        Some(_) => true,
    }
}

/// The checks of Core's `IsStandardTx` and `tx-size-small` that need only the transaction:
/// version, size, `scriptSig`s, output types, `OP_RETURN` count, dust (with [`Policy::ephemeral_dust`]
/// one dust output is allowed here; that it pays no fee is checked once the fee is known).
///
/// # Errors
/// The first rule broken.
pub fn check_standard(tx: &Transaction, policy: &Policy) -> Result<(), PolicyReject> {
    if !(2..=3).contains(&tx.version.0) {
        return Err(PolicyReject::Version(tx.version.0));
    }
    let weight = tx.weight().to_wu();
    if weight > MAX_STANDARD_TX_WEIGHT {
        return Err(PolicyReject::TooLarge { weight });
    }
    for (input, txin) in tx.input.iter().enumerate() {
        if txin.script_sig.len() > MAX_STANDARD_SCRIPTSIG_SIZE || !txin.script_sig.is_push_only() {
            return Err(PolicyReject::ScriptSig { input });
        }
    }
    let mut op_returns = 0;
    let mut dust = 0;
    for (output, out) in tx.output.iter().enumerate() {
        if !is_standard_output(&out.script_pubkey) {
            return Err(PolicyReject::NonStandardOutput { output });
        }
        if is_null_data(&out.script_pubkey) {
            op_returns += 1;
        } else if is_dust(out, policy) {
            if !policy.ephemeral_dust {
                let threshold = dust_threshold(&out.script_pubkey, policy.dust_relay_feerate).to_sat();
                return Err(PolicyReject::Dust { output, value: out.value.to_sat(), threshold });
            }
            dust += 1;
        }
    }
    if op_returns > 1 {
        return Err(PolicyReject::MultiOpReturn);
    }
    if dust > 1 {
        return Err(PolicyReject::TooMuchDust);
    }
    let size = bitcoin::consensus::serialize(&strip_witness(tx)).len();
    if size < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(PolicyReject::TooSmall { size });
    }
    Ok(())
}

fn strip_witness(tx: &Transaction) -> Transaction {
    let mut t = tx.clone();
    for i in &mut t.input {
        i.witness.clear();
    }
    t
}

/// The dust outputs of `tx` (their indices), for the ephemeral dust rules.
pub fn dust_outputs<'a>(tx: &'a Transaction, policy: &Policy) -> impl Iterator<Item = u32> + 'a {
    let policy = *policy;
    tx.output
        .iter()
        .enumerate()
        .filter(move |(_, o)| !is_null_data(&o.script_pubkey) && is_dust(o, &policy))
        .map(|(i, _)| i as u32)
}

/// Core's `AreInputsStandard` and `IsWitnessStandard`: input `i` of `tx` spends `spent[i]`.
/// Spending a future witness version (P2A excepted) or a non-standard script is refused; a
/// witness is refused on a non-witness output and on P2A; a P2WSH (or P2SH-P2WSH) witness
/// script is at most 3,600 bytes with at most 100 items of at most 80 bytes; a P2TR witness has
/// no annex and tapscript items of at most 80 bytes.
///
/// # Errors
/// The first input that breaks a rule.
pub fn check_inputs_standard(tx: &Transaction, spent: &[TxOut]) -> Result<(), PolicyReject> {
    for (input, (txin, prev)) in tx.input.iter().zip(spent).enumerate() {
        let script = &prev.script_pubkey;
        let kind = payout_kind(script);
        let p2a = is_p2a(script);
        match kind {
            Some(PayoutKind::FutureSegwit { .. }) if !p2a => return Err(PolicyReject::NonStandardInput { input }),
            None => return Err(PolicyReject::NonStandardInput { input }),
            _ => {}
        }
        let witness = &txin.witness;
        if witness.is_empty() {
            continue;
        }
        let bad = PolicyReject::NonStandardWitness { input };
        if p2a {
            return Err(bad);
        }
        // A P2SH input's program is its redeem script, the last push of its scriptSig.
        let program = if kind == Some(PayoutKind::P2sh) {
            match txin.script_sig.instructions().last() {
                Some(Ok(bitcoin::script::Instruction::PushBytes(p))) => {
                    bitcoin::ScriptBuf::from_bytes(p.as_bytes().to_vec())
                }
                _ => return Err(bad),
            }
        } else {
            script.clone()
        };
        if !is_witness_program(&program) {
            return Err(bad);
        }
        let items: std::vec::Vec<&[u8]> = witness.iter().collect();
        match (program.as_bytes()[0], program.len()) {
            (0x00, 34) => {
                let (script, stack) = items.split_last().ok_or(bad.clone())?;
                if script.len() > MAX_STANDARD_P2WSH_SCRIPT_SIZE
                    || stack.len() > MAX_STANDARD_P2WSH_STACK_ITEMS
                    || stack.iter().any(|i| i.len() > MAX_STANDARD_WITNESS_ITEM_SIZE)
                {
                    return Err(bad);
                }
            }
            (0x51, 34) if kind != Some(PayoutKind::P2sh) => {
                let mut items = items;
                if items.len() >= 2 && items.last().is_some_and(|a| a.first() == Some(&0x50)) {
                    return Err(bad); // an annex
                }
                if items.len() >= 2 {
                    let control = items.pop().unwrap_or_default();
                    items.pop(); // the leaf script
                    if control.first().map(|c| c & 0xfe) == Some(0xc0)
                        && items.iter().any(|i| i.len() > MAX_STANDARD_WITNESS_ITEM_SIZE)
                    {
                        return Err(bad);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
