//! The [`BumpRequest`]s of a Spilman channel's time-critical transactions (see
//! [`core::feebump`](crate::core::feebump)).
//!
//! | transaction | who | how it is bumped | deadline (must confirm by) | at stake |
//! |---|---|---|---|---|
//! | the payee's close (a payment, co-signed `SIGHASH_ALL`) | payee | CPFP: a child spends the payee's output, signed by the payee's wallet | the refund's `nLockTime` (`expiry`: the refund can be mined from `expiry + 1`); with a revealed HTLC, `htlc.expiry − ⌈close_margin / 2⌉` if sooner (the other half is the claim's) | the payee's output and the HTLCs it revealed |
//! | the CLTV refund (the payer signs alone) | payer | RBF: re-signed at any feerate, fee taken from the refund | `expiry + 1`, the first block it can be in | the most the payee could take with a payment it holds |
//! | the pre-signed refund (co-signed `SIGHASH_ALL`) | payer | CPFP through the payer's output, signed by the payer's wallet | `expiry + 1` | as above |
//! | an HTLC claim with the preimage | payee | RBF | `htlc.expiry` (the payer's timeout claim can be mined from `expiry + 1`) | the HTLC |
//! | an HTLC timeout claim | payer | RBF | `htlc.expiry + 1` (the payee may claim with the preimage at any time) | the HTLC |
//!
//! A payment and the payee's half of the co-signed refund commit to every output with
//! `SIGHASH_ALL`: nobody can re-sign them at another feerate, so the only way to pay more is a
//! child. A payment has no anchor; its child spends the payee's own output, and a pre-signed
//! refund's child the payer's. That output pays a script of the party's wallet (the payee's
//! `payee_script`, the payer's `payer_script`) which the channel's signer cannot sign: the child's
//! template is signed by the embedder's [`FeeWallet`](crate::core::feebump::FeeWallet)
//! ([`WitnessPart::Wallet`](crate::core::feebump::WitnessPart::Wallet)), which must therefore be
//! the wallet that owns that script.
//!
//! **What cannot be bumped**: a close or pre-signed refund whose party's script is not P2WPKH or
//! P2TR (P2PKH and P2SH need a `scriptSig`, a P2WSH witness is unknown to the bumper,
//! [`InputTemplate::wallet_output`]): it carries no [`BumpRequest`] and confirms only at the fee
//! it was signed with (`payment_fee`, `refund_fee`). The payer's own payouts in a close (its
//! change, the HTLC outputs) cannot pay for the payee's close either: only the payee's output is
//! the payee's. A close whose payee output is too small to cover a child's fee is bumped with
//! wallet coins, up to its [`BumpRequest::at_stake`].

use alloc::vec::Vec;

use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction};

use super::payment::{ChannelLock, PaymentHtlc, PaymentTemplate};
use crate::core::feebump::{BumpMethod, BumpRequest, InputTemplate, Protects, WitnessPart};
use crate::core::hashlock::PaymentPreimage;
use crate::core::sign::{KeyId, Tweak};
use crate::core::units::BlockHeight;

/// A CPFP request for `parent`, paid through its output `vout` (a script of the party's wallet),
/// or `None` if that output cannot be spent by the bumper.
fn child_request(
    parent: &Transaction,
    vout: usize,
    parent_fee: Amount,
    deadline: BlockHeight,
    at_stake: Amount,
    protects: Protects,
) -> Option<BumpRequest> {
    let output = parent.output.get(vout)?;
    let outpoint = OutPoint { txid: parent.compute_txid(), vout: u32::try_from(vout).ok()? };
    let anchor = InputTemplate::wallet_output(outpoint, output)?;
    Some(BumpRequest {
        tx: parent.clone(),
        deadline,
        at_stake,
        protects,
        method: BumpMethod::Child { anchor, parent_fee },
    })
}

/// The payee's close `close` (a completed payment built from `t` with `to_payee`), bumped through
/// the payee's output.
pub(super) fn close_request(
    t: &PaymentTemplate,
    close: &Transaction,
    to_payee: Amount,
    deadline: BlockHeight,
    revealed: Amount,
) -> Option<BumpRequest> {
    let payee_out = to_payee.checked_sub(t.fee)?;
    let vout = close.output.iter().position(|o| o.script_pubkey == t.payee_script && o.value == payee_out)?;
    let at_stake = payee_out.checked_add(revealed)?;
    child_request(close, vout, t.fee, deadline, at_stake, Protects::SpilmanClose)
}

/// The payer's refund `refund` (as [`PaymentTemplate::refund_tx`] builds it with `fee`, then
/// completed), valid from `valid_from` (its `nLockTime`): re-signed at any feerate when the payer
/// signs alone (a script lock), CPFP through the payer's output when it is co-signed.
pub(super) fn refund_request(
    t: &PaymentTemplate,
    refund: &Transaction,
    fee: Amount,
    at_stake: Amount,
) -> Option<BumpRequest> {
    let lock_time = refund.lock_time.to_consensus_u32();
    // The first block it can be in: payments need no lock, so the race starts then.
    let deadline = match t.lock {
        ChannelLock::Csv(_) => return None,
        ChannelLock::Cltv(_) | ChannelLock::Multisig => BlockHeight(lock_time.checked_add(1)?),
    };
    match t.lock {
        ChannelLock::Multisig => child_request(refund, 0, fee, deadline, at_stake, Protects::SpilmanRefund),
        _ => {
            let input = InputTemplate {
                outpoint: t.outpoint,
                value: t.capacity,
                script_code: t.channel_script().into_script(),
                p2wpkh: false,
                // Signals replaceability and keeps `nLockTime` enforced.
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                key: Some((KeyId::Funding, Tweak::None)),
                witness: alloc::vec![
                    WitnessPart::Signature,
                    WitnessPart::Bytes(Vec::new()),
                    WitnessPart::WitnessScript
                ],
                paired_output: None,
            };
            Some(BumpRequest {
                tx: refund.clone(),
                deadline,
                at_stake,
                protects: Protects::SpilmanRefund,
                method: BumpMethod::Replace {
                    inputs: alloc::vec![input],
                    destination: t.payer_script.clone(),
                    lock_time,
                },
            })
        }
    }
}

/// An HTLC claim `claim` of output `outpoint` (HTLC `htlc`): the payee's with `preimage` (must
/// confirm by the expiry, when the payer's timeout claim becomes valid), or the payer's timeout
/// (races the payee's preimage claim from the first block it is valid in).
pub(super) fn claim_request(
    t: &PaymentTemplate,
    claim: &Transaction,
    outpoint: OutPoint,
    htlc: &PaymentHtlc,
    preimage: Option<&PaymentPreimage>,
    destination: ScriptBuf,
) -> Option<BumpRequest> {
    let (witness, lock_time, deadline) = match preimage {
        Some(p) => (
            alloc::vec![
                WitnessPart::Signature,
                WitnessPart::Bytes(p.0.to_vec()),
                WitnessPart::Bytes(alloc::vec![1]),
                WitnessPart::WitnessScript,
            ],
            0,
            htlc.expiry,
        ),
        None => (
            alloc::vec![WitnessPart::Signature, WitnessPart::Bytes(Vec::new()), WitnessPart::WitnessScript],
            htlc.expiry.to_locktime()?.to_consensus_u32(),
            htlc.expiry.checked_add(1)?,
        ),
    };
    let input = InputTemplate {
        outpoint,
        value: htlc.amount,
        script_code: t.htlc_script(htlc).into_script(),
        p2wpkh: false,
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        key: Some((KeyId::Htlc, Tweak::None)),
        witness,
        paired_output: None,
    };
    Some(BumpRequest {
        tx: claim.clone(),
        deadline,
        at_stake: htlc.amount,
        protects: Protects::HtlcClaim,
        method: BumpMethod::Replace { inputs: alloc::vec![input], destination, lock_time },
    })
}
