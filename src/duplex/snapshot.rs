//! The versioned snapshot of a [`Channel`] (the crate's TLV encoding). Its size is
//! O(d + #HTLC): the current branch's signatures, the newest payment per direction, the HTLCs and
//! an in-progress reset; nothing grows with the number of resets done.

use alloc::vec::Vec;

use bitcoin::ecdsa;
use bitcoin::secp256k1::Secp256k1;

use super::channel::{Channel, Phase};
use super::close::{CoopClose, OnChain, OnChainHtlc};
use super::leaf::{HtlcStatus, LeafChannel, PartyKeys};
use super::msgs::{
    read_count, read_digits, read_htlc, read_removals, read_role, read_sigs, read_terms, write_digits, write_htlc,
    write_removals, write_sigs, write_terms,
};
use super::params::Terms;
use super::reset::{Proposal, ResetState};
use super::tree;
use super::Role;
use crate::core::encode::{required, DecodeError, Reader, TlvWriter, Writer};
use crate::core::hashlock::PaymentPreimage;
use crate::core::sign::KeyIdentity;
use crate::core::units::BlockHeight;
use crate::core::wire::read_object_of;
use crate::spilman::msgs::{read_htlcs, read_payment_state, write_htlcs, write_payment_state};

const KIND: u8 = crate::core::kinds::DUPLEX_CHANNEL;
/// Version 2: zero-fee TRUC tree transactions with a pay-to-anchor output (the signatures held
/// cover those), terms without the tree fee. A version-1 snapshot (fixed-fee tree) is refused
/// with [`DecodeError::UnknownVersion`]: its signatures are on transactions this crate no longer
/// builds; close such a channel with the release that wrote it.
///
/// Version 3 adds the holder's [`KeyIdentity`] (record 32; absent for a channel first restored from version 2) and the initiator's funding
/// transaction while it waits to broadcast it (record 34); version 2 is still read (no key
/// identity; a version-2 initiator waiting for `FundingSigned` holds no transaction: its wallet
/// broadcasts it, as version 2 asked).
///
/// Version 4 adds the agreed [`Terms::funding_depth`] (record 36, written by every version-4
/// writer); versions 2 and 3 are still read, with the smallest depth their terms allow
/// ([`Terms::min_funding_depth`], `R + 1`): such a channel takes no payment until its funding
/// is that deep.
///
/// Version 5 records that the holder released a cooperative close signature, the least such
/// a close pays it and the closes it withdrew (record 38, written only when set: HTLCs offered to it are failed at once from
/// then on) and the HTLCs it
/// withdrew from an unacknowledged payment on reconnection (record 40, written only when there
/// are any). Versions 2 to 4 are still read, as neither.
const VERSION: u8 = 5;
const READABLE: [u8; 4] = [2, 3, 4, VERSION];

fn write_keys(w: &mut Writer, k: &PartyKeys) {
    w.pubkey(&k.funding).pubkey(&k.htlc).script(&k.payout);
}

fn read_keys(r: &mut Reader<'_>) -> Result<PartyKeys, DecodeError> {
    Ok(PartyKeys { funding: r.pubkey("funding key")?, htlc: r.pubkey("htlc key")?, payout: r.script()? })
}

fn write_opt_sig(w: &mut Writer, s: Option<&ecdsa::Signature>) {
    match s {
        Some(s) => w.u8(1).bitcoin_signature(s),
        None => w.u8(0),
    };
}

fn read_opt_sig(r: &mut Reader<'_>) -> Result<Option<ecdsa::Signature>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.bitcoin_signature("signature")?)),
        _ => Err(DecodeError::InvalidValue("optional signature")),
    }
}

fn write_channel(w: &mut Writer, c: &LeafChannel) {
    w.u64(c.number);
    write_payment_state(w, &c.state);
    write_opt_sig(w, c.signature.as_ref());
    w.u64(c.acked).u64(c.next_htlc_id);
    w.bigsize(c.status.len() as u64);
    for (id, s) in &c.status {
        w.u64(*id);
        match s {
            HtlcStatus::Live => w.u8(0),
            HtlcStatus::Fulfilled(p) => w.u8(1).bytes(&p.0),
            HtlcStatus::Failed => w.u8(2),
        };
    }
}

fn read_channel(r: &mut Reader<'_>) -> Result<LeafChannel, DecodeError> {
    let number = r.u64()?;
    let state = read_payment_state(r)?;
    let signature = read_opt_sig(r)?;
    let (acked, next_htlc_id) = (r.u64()?, r.u64()?);
    let n = read_count(r, 9, usize::MAX)?;
    let mut status = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u64()?;
        let s = match r.u8()? {
            0 => HtlcStatus::Live,
            1 => HtlcStatus::Fulfilled(PaymentPreimage(r.array()?)),
            2 => HtlcStatus::Failed,
            _ => return Err(DecodeError::InvalidValue("htlc status")),
        };
        status.push((id, s));
    }
    if status.len() != state.htlcs.len() || !state.htlcs.iter().all(|h| status.iter().any(|(id, _)| *id == h.id)) {
        return Err(DecodeError::InvalidValue("htlc status"));
    }
    Ok(LeafChannel { number, state, signature, acked, next_htlc_id, status })
}

fn write_proposal(w: &mut Writer, p: &Proposal) {
    write_digits(w, &p.digits);
    w.u8(p.level as u8).u64(p.numbers[0]).u64(p.numbers[1]);
    write_removals(w, &p.removed);
    w.amount(p.values[0]).amount(p.values[1]);
    write_payment_state(w, &p.bases[0]);
    write_payment_state(w, &p.bases[1]);
}

fn read_proposal(r: &mut Reader<'_>, terms: &Terms) -> Result<Proposal, DecodeError> {
    let digits = read_digits(r)?;
    let level = usize::from(r.u8()?);
    if !tree::is_valid(&terms.params, &digits) || level == 0 || level > terms.params.depth() {
        return Err(DecodeError::InvalidValue("reset digits"));
    }
    Ok(Proposal {
        digits,
        level,
        numbers: [r.u64()?, r.u64()?],
        removed: read_removals(r)?,
        values: [r.amount("value")?, r.amount("value")?],
        bases: [read_payment_state(r)?, read_payment_state(r)?],
    })
}

fn phase_byte(p: Phase) -> u8 {
    match p {
        Phase::AwaitingAccept => 0,
        Phase::AwaitingFunding => 1,
        Phase::AwaitingFundingCreated => 2,
        Phase::AwaitingFundingSigned => 3,
        Phase::Open => 4,
        Phase::CoopClosing => 5,
        Phase::ForceClosing => 6,
        Phase::Closed => 7,
    }
}

fn read_phase(b: u8) -> Result<Phase, DecodeError> {
    Ok(match b {
        0 => Phase::AwaitingAccept,
        1 => Phase::AwaitingFunding,
        2 => Phase::AwaitingFundingCreated,
        3 => Phase::AwaitingFundingSigned,
        4 => Phase::Open,
        5 => Phase::CoopClosing,
        6 => Phase::ForceClosing,
        7 => Phase::Closed,
        _ => return Err(DecodeError::InvalidValue("phase")),
    })
}

fn write_chain(w: &mut Writer, c: &OnChain) {
    w.bigsize(c.tree.len() as u64);
    for (txid, h) in &c.tree {
        w.txid(txid).u32(h.0);
    }
    w.bool(c.on_pending).u8(c.broadcast as u8);
    match &c.stale {
        Some((level, txid)) => w.u8(1).u8(*level as u8).txid(txid),
        None => w.u8(0),
    };
    for spent in &c.leaf_spent {
        match spent {
            Some(txid) => w.u8(1).txid(txid),
            None => w.u8(0),
        };
    }
    w.bool(c.payment_sent).bool(c.refund_sent);
    w.bigsize(c.htlcs.len() as u64);
    for h in &c.htlcs {
        w.u8(h.offerer.index() as u8);
        write_htlc(w, &h.htlc);
        w.outpoint(&h.outpoint);
        match &h.preimage {
            Some(p) => w.u8(1).bytes(&p.0),
            None => w.u8(0),
        };
        match &h.claim {
            Some(t) => w.u8(1).txid(t),
            None => w.u8(0),
        };
        w.bool(h.resolved);
    }
}

fn read_opt_txid(r: &mut Reader<'_>) -> Result<Option<bitcoin::Txid>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.txid()?)),
        _ => Err(DecodeError::InvalidValue("optional txid")),
    }
}

fn read_chain(r: &mut Reader<'_>, depth: usize) -> Result<OnChain, DecodeError> {
    let n = read_count(r, 36, depth + 1)?;
    let mut tree = Vec::with_capacity(n);
    for _ in 0..n {
        tree.push((r.txid()?, BlockHeight(r.u32()?)));
    }
    let on_pending = r.bool("on_pending")?;
    let broadcast = usize::from(r.u8()?);
    if broadcast > depth + 1 {
        return Err(DecodeError::InvalidValue("broadcast"));
    }
    let stale = match r.u8()? {
        0 => None,
        1 => Some((usize::from(r.u8()?), r.txid()?)),
        _ => return Err(DecodeError::InvalidValue("stale")),
    };
    let leaf_spent = [read_opt_txid(r)?, read_opt_txid(r)?];
    let (payment_sent, refund_sent) = (r.bool("payment_sent")?, r.bool("refund_sent")?);
    let n = read_count(r, 1 + 52 + 36 + 3, usize::MAX)?;
    let mut htlcs = Vec::with_capacity(n);
    for _ in 0..n {
        let offerer = read_role(r)?;
        let htlc = read_htlc(r)?;
        let outpoint = r.outpoint()?;
        let preimage = match r.u8()? {
            0 => None,
            1 => Some(PaymentPreimage(r.array()?)),
            _ => return Err(DecodeError::InvalidValue("preimage")),
        };
        let claim = read_opt_txid(r)?;
        let resolved = r.bool("resolved")?;
        htlcs.push(OnChainHtlc { offerer, htlc, outpoint, preimage, claim, resolved });
    }
    Ok(OnChain { tree, on_pending, broadcast, stale, leaf_spent, payment_sent, refund_sent, htlcs })
}

pub(super) fn encode(c: &Channel) -> Vec<u8> {
    let mut t = TlvWriter::new(KIND, VERSION);
    t.record(0, |w| {
        w.u64(c.update_id);
    })
    .record(2, |w| {
        w.u8(c.role.index() as u8);
        write_terms(w, &c.terms);
    })
    .record(4, |w| write_keys(w, &c.holder_keys))
    .optional(6, c.keys.as_ref(), |w, k| {
        write_keys(w, &k[0]);
        write_keys(w, &k[1]);
    })
    .record(8, |w| {
        w.u8(phase_byte(c.phase)).u32(c.tip.0);
    })
    .optional(10, c.funding.as_ref(), |w, f| {
        w.outpoint(f);
    })
    .optional(12, c.funding_height, |w, h| {
        w.u32(h.0);
    })
    .optional(14, c.kickoff_sig.as_ref(), |w, s| {
        w.bitcoin_signature(s);
    })
    .record(16, |w| {
        write_digits(w, &c.digits);
        write_sigs(w, &c.node_sigs);
        w.amount(c.values[0]).amount(c.values[1]);
    })
    .record(18, |w| write_channel(w, &c.channels[0]))
    .record(20, |w| write_channel(w, &c.channels[1]))
    .optional(22, c.reserved.as_ref(), |w, (d, txid)| {
        write_digits(w, d);
        w.txid(txid);
    })
    .optional(24, c.reset.proposal(), |w, p| {
        match &c.reset {
            ResetState::AwaitingFinish { node_sigs, base_sig, .. } => {
                w.u8(1);
                write_proposal(w, p);
                write_sigs(w, node_sigs);
                write_opt_sig(w, base_sig.as_ref());
            }
            _ => {
                w.u8(0);
                write_proposal(w, p);
            }
        };
    })
    .optional(26, c.coop.as_ref(), |w, k| {
        w.u8(k.spend).txid(&k.txid).bool(k.complete);
    })
    .record(28, |w| write_chain(w, &c.chain))
    // Even: a decoder that does not know it must refuse the snapshot rather than restore a
    // channel that lost state as a healthy one.
    .optional(30, c.lost_state.then_some(()), |_, ()| {})
    .record(32, |w| KeyIdentity::write_recorded(c.key_identity.as_ref(), w))
    .optional(34, c.funding_tx.as_ref(), |w, tx| {
        w.transaction(tx);
    })
    .record(36, |w| {
        w.u16(c.terms.funding_depth);
    })
    // Even, as 30: a decoder that does not know them must not restore a channel that would
    // forward HTLCs a released close does not pay, or pay the withdrawn amounts again.
    .optional(38, c.close_released, |w, floor| {
        w.amount(floor);
        w.bigsize(c.withdrawn_closes.len() as u64);
        for (spend, txid) in &c.withdrawn_closes {
            w.u8(*spend).txid(txid);
        }
    })
    .optional(40, (!c.withdrawn.is_empty()).then_some(&c.withdrawn), |w, hs| write_htlcs(w, hs));
    t.finish()
}

pub(super) fn decode(bytes: &[u8]) -> Result<Channel, DecodeError> {
    let (version, tlv) = read_object_of(bytes, KIND, &READABLE)?;
    let mut key_identity = None;
    let mut funding_tx = None;
    let mut update_id = None;
    let mut role_terms: Option<(Role, Terms)> = None;
    let mut holder_keys = None;
    let mut keys = None;
    let mut phase_tip = None;
    let mut funding = None;
    let mut funding_height = None;
    let mut kickoff_sig = None;
    let mut branch = None;
    let mut channels: [Option<LeafChannel>; 2] = [None, None];
    let mut reserved = None;
    let mut reset = ResetState::Idle;
    let mut coop = None;
    let mut chain = None;
    let mut lost_state = false;
    let mut funding_depth = None;
    let mut close_released = None;
    let mut withdrawn_closes = Vec::new();
    let mut withdrawn = Vec::new();
    tlv.for_each(|ty, r| {
        match ty {
            0 => update_id = Some(r.u64()?),
            2 => role_terms = Some((read_role(r)?, read_terms(r)?)),
            4 => holder_keys = Some(read_keys(r)?),
            6 => keys = Some([read_keys(r)?, read_keys(r)?]),
            8 => phase_tip = Some((read_phase(r.u8()?)?, BlockHeight(r.u32()?))),
            10 => funding = Some(r.outpoint()?),
            12 => funding_height = Some(BlockHeight(r.u32()?)),
            14 => kickoff_sig = Some(r.bitcoin_signature("kickoff signature")?),
            16 => {
                let digits = read_digits(r)?;
                let sigs = read_sigs(r, "node signature")?;
                branch = Some((digits, sigs, [r.amount("value")?, r.amount("value")?]));
            }
            18 => channels[0] = Some(read_channel(r)?),
            20 => channels[1] = Some(read_channel(r)?),
            22 => reserved = Some((read_digits(r)?, r.txid()?)),
            24 => {
                let terms = &role_terms.as_ref().ok_or(DecodeError::MissingField("terms"))?.1;
                reset = match r.u8()? {
                    0 => ResetState::Proposed(read_proposal(r, terms)?),
                    1 => {
                        let proposal = read_proposal(r, terms)?;
                        let node_sigs = read_sigs(r, "node signature")?;
                        if node_sigs.len() != terms.params.depth() - proposal.level {
                            return Err(DecodeError::InvalidValue("reset signatures"));
                        }
                        ResetState::AwaitingFinish { proposal, node_sigs, base_sig: read_opt_sig(r)? }
                    }
                    _ => return Err(DecodeError::InvalidValue("reset")),
                };
            }
            26 => {
                coop = Some(CoopClose { spend: r.u8()?, txid: r.txid()?, complete: r.bool("complete")? });
            }
            28 => {
                let depth = role_terms.as_ref().ok_or(DecodeError::MissingField("terms"))?.1.params.depth();
                chain = Some(read_chain(r, depth)?);
            }
            30 => lost_state = true,
            32 => key_identity = Some(KeyIdentity::read_recorded(r)?),
            34 => funding_tx = Some(r.transaction("funding_tx")?),
            36 => funding_depth = Some(r.u16()?),
            38 if version >= 5 => {
                close_released = Some(r.amount("released close")?);
                let n = read_count(r, 33, usize::MAX)?;
                withdrawn_closes = Vec::with_capacity(n);
                for _ in 0..n {
                    withdrawn_closes.push((r.u8()?, r.txid()?));
                }
            }
            40 if version >= 5 => withdrawn = read_htlcs(r)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // Written by every version-3 writer (as "none" after an upgrade): a snapshot without it is
    // cut short.
    if version >= 3 && key_identity.is_none() {
        return Err(DecodeError::MissingField("key identity"));
    }
    if version >= 4 && funding_depth.is_none() {
        return Err(DecodeError::MissingField("funding depth"));
    }
    let key_identity = key_identity.flatten();
    let (role, mut terms) = required(role_terms, "terms")?;
    if let Some(depth) = funding_depth {
        terms.funding_depth = depth;
    }
    let (phase, tip) = required(phase_tip, "phase")?;
    let (digits, node_sigs, values) = required(branch, "branch")?;
    let d = terms.params.depth();
    if !tree::is_valid(&terms.params, &digits) || !(node_sigs.is_empty() || node_sigs.len() == d) {
        return Err(DecodeError::InvalidValue("branch"));
    }
    if reserved.as_ref().is_some_and(|(r, _): &(Vec<u16>, _)| !tree::is_valid(&terms.params, r)) {
        return Err(DecodeError::InvalidValue("reserved"));
    }
    let open = matches!(phase, Phase::Open | Phase::CoopClosing | Phase::ForceClosing | Phase::Closed);
    if open && (keys.is_none() || funding.is_none() || kickoff_sig.is_none() || node_sigs.len() != d) {
        return Err(DecodeError::MissingField("signed branch"));
    }
    let [c0, c1] = channels;
    let mut ch = Channel {
        role,
        terms,
        holder_keys: required(holder_keys, "holder keys")?,
        keys,
        phase,
        funding,
        funding_tx,
        funding_height,
        kickoff_sig,
        digits,
        node_sigs,
        values,
        channels: [required(c0, "channel A")?, required(c1, "channel B")?],
        reserved,
        reset,
        coop,
        close_released,
        withdrawn_closes,
        withdrawn,
        chain: required(chain, "chain")?,
        tip,
        update_id: required(update_id, "update_id")?,
        lost_state,
        key_identity,
        derived: Default::default(),
        secp: Secp256k1::verification_only(),
        #[cfg(feature = "test-utils")]
        depth_rule_off: false,
    };
    ch.refresh_scripts();
    ch.refresh_branch();
    Ok(ch)
}
