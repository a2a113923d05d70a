//! The [`BumpRequest`]s of a Spilman channel's time-critical transactions (see
//! [`core::feebump`](crate::core::feebump)).
//!
//! The table of what is bumped how, and what cannot be, is in the [module docs](super)
//! ("Fee bumping").

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
pub(crate) fn close_request(
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
/// signs alone (a script lock), CPFP through the payer's output when it is co-signed. `None` for
/// a CSV lock, whose deadline depends on when the funding confirmed ([`refund_request_by`]).
pub(crate) fn refund_request(
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
    refund_request_by(t, refund, fee, at_stake, deadline)
}

/// As [`refund_request`], with the deadline given: a CSV-locked refund (a duplex leaf channel's,
/// valid `T_r` blocks after the leaf confirmed) keeps its relative lock in every replacement's
/// `nSequence`.
pub(crate) fn refund_request_by(
    t: &PaymentTemplate,
    refund: &Transaction,
    fee: Amount,
    at_stake: Amount,
    deadline: BlockHeight,
) -> Option<BumpRequest> {
    let lock_time = refund.lock_time.to_consensus_u32();
    let sequence = match t.lock {
        ChannelLock::Multisig => return child_request(refund, 0, fee, deadline, at_stake, Protects::SpilmanRefund),
        // The relative lock (it signals replaceability too).
        ChannelLock::Csv(delay) => Sequence::from_height(delay),
        // Signals replaceability and keeps `nLockTime` enforced.
        ChannelLock::Cltv(_) => Sequence::ENABLE_RBF_NO_LOCKTIME,
    };
    let input = InputTemplate {
        outpoint: t.outpoint,
        value: t.capacity,
        script_code: t.channel_script().into_script(),
        p2wpkh: false,
        sequence,
        key: Some((KeyId::Funding, Tweak::None)),
        witness: alloc::vec![WitnessPart::Signature, WitnessPart::Bytes(Vec::new()), WitnessPart::WitnessScript],
        paired_output: None,
    };
    Some(BumpRequest {
        tx: refund.clone(),
        deadline,
        at_stake,
        protects: Protects::SpilmanRefund,
        method: BumpMethod::Replace { inputs: alloc::vec![input], destination: t.payer_script.clone(), lock_time },
    })
}

/// An HTLC claim `claim` of output `outpoint` (HTLC `htlc`): the payee's with `preimage` (must
/// confirm by the expiry, when the payer's timeout claim becomes valid), or the payer's timeout
/// (races the payee's preimage claim from the first block it is valid in).
pub(crate) fn claim_request(
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
