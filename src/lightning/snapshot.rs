//! The Lightning channel's live-state snapshot (its append-only records are in `records`).

use alloc::vec::Vec;

use bitcoin::secp256k1::{ecdsa, PublicKey, Secp256k1};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{Amount, ScriptBuf};

use super::channel::{Channel, Phase, Shutdown, SideParams};
use super::htlc::{FeeUpdate, Htlc, Progress, Resolution, Side, Stage};
use super::msgs::{OnionPacket, ONION_PACKET_LEN};
use super::onchain::{Claim, ClaimKind, ClosingKind, OnChain};
use super::records::{read_side, side_byte};
use super::{ChannelConfig, DustExposure, HtlcRefusal};
use crate::core::commitment::signatures::CommitmentSignatures;
use crate::core::commitment::ChannelType;
use crate::core::encode::{read_header, required, DecodeError, Reader, TlvWriter, Writer};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::keys::{
    ChannelPubkeys, DelayedPaymentBasepoint, FundingPubkey, HtlcBasepoint, PaymentBasepoint, RevocationBasepoint,
};
use crate::core::script::WitnessScript;
use crate::core::shachain::SecretStore;
use crate::core::sign::KeyIdentity;
use crate::core::units::{BlockHeight, MilliSats};
use crate::driving::ChannelId;

const KIND_CHANNEL: u8 = crate::core::kinds::LIGHTNING_CHANNEL;
/// Version 2 keeps onions out of the snapshot (in [`OnionRecord`](super::records::OnionRecord)s);
/// version 1 carried them inline and is still read.
///
/// Version 3 adds the holder's [`KeyIdentity`] (record 42; absent for a channel first restored from
/// an older version, which keeps none); versions 1
/// and 2 are still read (their channels report no key identity).
const VERSION: u8 = 3;

fn write_pubkeys(w: &mut Writer, k: &ChannelPubkeys) {
    w.pubkey(k.funding.public_key());
    w.pubkey(k.revocation_basepoint.public_key());
    w.pubkey(k.payment_basepoint.public_key());
    w.pubkey(k.delayed_payment_basepoint.public_key());
    w.pubkey(k.htlc_basepoint.public_key());
}

fn read_pubkeys(r: &mut Reader<'_>) -> Result<ChannelPubkeys, DecodeError> {
    Ok(ChannelPubkeys {
        funding: FundingPubkey::from_public_key(r.pubkey("funding")?),
        revocation_basepoint: RevocationBasepoint::from_public_key(r.pubkey("revocation")?),
        payment_basepoint: PaymentBasepoint::from_public_key(r.pubkey("payment")?),
        delayed_payment_basepoint: DelayedPaymentBasepoint::from_public_key(r.pubkey("delayed")?),
        htlc_basepoint: HtlcBasepoint::from_public_key(r.pubkey("htlc")?),
    })
}

fn write_side_params(w: &mut Writer, p: &SideParams) {
    w.amount(p.dust_limit).u64(p.max_htlc_value_in_flight.to_msat()).amount(p.channel_reserve);
    w.u64(p.htlc_minimum.to_msat()).u16(p.to_self_delay).u16(p.max_accepted_htlcs);
    write_pubkeys(w, &p.pubkeys);
}

fn read_side_params(r: &mut Reader<'_>) -> Result<SideParams, DecodeError> {
    Ok(SideParams {
        dust_limit: r.amount("dust_limit")?,
        max_htlc_value_in_flight: MilliSats::from_msat(r.u64()?),
        channel_reserve: r.amount("channel_reserve")?,
        htlc_minimum: MilliSats::from_msat(r.u64()?),
        to_self_delay: r.u16()?,
        max_accepted_htlcs: r.u16()?,
        pubkeys: read_pubkeys(r)?,
    })
}

fn write_config(w: &mut Writer, c: &ChannelConfig) {
    w.bytes(&c.chain_hash).bool(c.channel_type.has_anchors()).amount(c.dust_limit);
    w.u64(c.max_htlc_value_in_flight.to_msat()).amount(c.channel_reserve).u64(c.htlc_minimum.to_msat());
    w.u16(c.to_self_delay).u16(c.max_accepted_htlcs).u32(c.minimum_depth).u16(c.max_to_self_delay);
    w.u32(c.min_feerate).u32(c.max_feerate).u64(encode_dust_exposure(c.max_dust_exposure));
}

/// The dust-exposure limit in one u64, as older snapshots had a fixed limit in msat: a feerate
/// multiplier has the top bit set (no fixed limit reaches 2^63 msat, more than all bitcoin).
const DUST_MULTIPLIER_TAG: u64 = 1 << 63;

fn encode_dust_exposure(d: DustExposure) -> u64 {
    match d {
        DustExposure::Fixed(v) => v.to_msat().min(DUST_MULTIPLIER_TAG - 1),
        DustExposure::FeerateMultiplier(m) => (m & !DUST_MULTIPLIER_TAG) | DUST_MULTIPLIER_TAG,
    }
}

fn decode_dust_exposure(v: u64) -> DustExposure {
    if v & DUST_MULTIPLIER_TAG == 0 {
        DustExposure::Fixed(MilliSats::from_msat(v))
    } else {
        DustExposure::FeerateMultiplier(v & !DUST_MULTIPLIER_TAG)
    }
}

/// The fee-policy fields added after version 2 (record 3: odd, so older readers skip it), written
/// only when they differ from [`ChannelConfig::default_for`]'s, which a snapshot without it gets.
fn policy_fields(c: &ChannelConfig) -> Option<[u32; 4]> {
    let fields = |c: &ChannelConfig| {
        [
            c.max_peer_reserve_ppm,
            c.min_feerate_percent_of_estimate,
            c.max_feerate_multiple_of_estimate,
            c.fee_update_margin_percent,
        ]
    };
    let ours = fields(c);
    (ours != fields(&ChannelConfig::default_for(c.chain_hash, c.channel_type))).then_some(ours)
}

fn read_policy(r: &mut Reader<'_>, c: &mut ChannelConfig) -> Result<(), DecodeError> {
    c.max_peer_reserve_ppm = r.u32()?;
    c.min_feerate_percent_of_estimate = r.u32()?;
    c.max_feerate_multiple_of_estimate = r.u32()?;
    c.fee_update_margin_percent = r.u32()?;
    Ok(())
}

fn channel_type(anchors: bool) -> ChannelType {
    if anchors {
        ChannelType::AnchorsZeroFeeHtlc
    } else {
        ChannelType::StaticRemoteKey
    }
}

fn read_config(r: &mut Reader<'_>) -> Result<ChannelConfig, DecodeError> {
    let chain_hash = r.array()?;
    let mut c = ChannelConfig::default_for(chain_hash, channel_type(r.bool("channel_type")?));
    c.dust_limit = r.amount("dust_limit")?;
    c.max_htlc_value_in_flight = MilliSats::from_msat(r.u64()?);
    c.channel_reserve = r.amount("channel_reserve")?;
    c.htlc_minimum = MilliSats::from_msat(r.u64()?);
    c.to_self_delay = r.u16()?;
    c.max_accepted_htlcs = r.u16()?;
    c.minimum_depth = r.u32()?;
    c.max_to_self_delay = r.u16()?;
    c.min_feerate = r.u32()?;
    c.max_feerate = r.u32()?;
    c.max_dust_exposure = decode_dust_exposure(r.u64()?);
    Ok(c)
}

fn stage_byte(s: Stage) -> u8 {
    match s {
        Stage::Announced => 0,
        Stage::InReceiver => 1,
        Stage::ReceiverRevoked => 2,
        Stage::InSender => 3,
        Stage::Committed => 4,
    }
}

fn write_progress(w: &mut Writer, p: &Progress) {
    w.u8(side_byte(p.sender)).u8(stage_byte(p.stage));
}

fn read_progress(r: &mut Reader<'_>) -> Result<Progress, DecodeError> {
    let sender = read_side(r)?;
    let stage = match r.u8()? {
        0 => Stage::Announced,
        1 => Stage::InReceiver,
        2 => Stage::ReceiverRevoked,
        3 => Stage::InSender,
        4 => Stage::Committed,
        _ => return Err(DecodeError::InvalidValue("stage")),
    };
    Ok(Progress { sender, stage })
}

fn write_opt_u64(w: &mut Writer, v: Option<u64>) {
    match v {
        Some(x) => w.u8(1).u64(x),
        None => w.u8(0),
    };
}

fn read_opt_u64(r: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u64()?)),
        _ => Err(DecodeError::InvalidValue("option")),
    }
}

fn write_htlc(w: &mut Writer, h: &Htlc) {
    w.u64(h.id).u8(side_byte(h.offerer)).u64(h.amount.to_msat()).bytes(&h.payment_hash.0).u32(h.cltv_expiry);
    write_progress(w, &h.add);
    w.u64(h.add_seq).u64(h.remove_seq);
    write_opt_u64(w, h.first_remote_commitment);
    write_opt_u64(w, h.removed_from_remote);
    // 2: the onion is in an `OnionRecord` (appended when the HTLC was added).
    w.u8(if h.onion.is_some() { 2 } else { 0 });
    match &h.remove {
        None => {
            w.u8(0);
        }
        Some((res, p)) => {
            match res {
                Resolution::Fulfill(pre) => w.u8(1).bytes(&pre.0),
                Resolution::Fail(reason) => w.u8(2).var_bytes(reason),
                Resolution::FailMalformed { sha256_of_onion, failure_code } => {
                    w.u8(3).bytes(sha256_of_onion).u16(*failure_code)
                }
            };
            write_progress(w, p);
        }
    }
}

/// Reads one HTLC; `Ok((htlc, true))` when its onion is to be found in the records.
fn read_htlc(r: &mut Reader<'_>, version: u8) -> Result<(Htlc, bool), DecodeError> {
    let id = r.u64()?;
    let offerer = read_side(r)?;
    let amount = MilliSats::from_msat(r.u64()?);
    let payment_hash = PaymentHash(r.array()?);
    let cltv_expiry = r.u32()?;
    let add = read_progress(r)?;
    let add_seq = r.u64()?;
    let remove_seq = r.u64()?;
    let first_remote_commitment = read_opt_u64(r)?;
    let removed_from_remote = read_opt_u64(r)?;
    let mut in_record = false;
    let onion = match (version, r.u8()?) {
        (_, 0) => None,
        (1, 1) => Some(OnionPacket::from_slice(r.take(ONION_PACKET_LEN)?).ok_or(DecodeError::Truncated)?),
        (2.., 2) => {
            in_record = true;
            None
        }
        _ => return Err(DecodeError::InvalidValue("onion")),
    };
    let remove = match r.u8()? {
        0 => None,
        tag => {
            let res = match tag {
                1 => Resolution::Fulfill(PaymentPreimage(r.array()?)),
                2 => Resolution::Fail(r.var_bytes()?.to_vec()),
                3 => Resolution::FailMalformed { sha256_of_onion: r.array()?, failure_code: r.u16()? },
                _ => return Err(DecodeError::InvalidValue("resolution")),
            };
            Some((res, read_progress(r)?))
        }
    };
    let htlc = Htlc {
        id,
        offerer,
        amount,
        payment_hash,
        cltv_expiry,
        onion,
        add,
        remove,
        add_seq,
        remove_seq,
        first_remote_commitment,
        removed_from_remote,
        payment_ripemd: payment_hash.ripemd160(),
        refusal: None,
    };
    Ok((htlc, in_record))
}

fn phase_byte(p: Phase) -> u8 {
    match p {
        Phase::AwaitingAccept => 0,
        Phase::AwaitingFundingTx => 1,
        Phase::AwaitingFundingCreated => 2,
        Phase::AwaitingFundingSigned => 3,
        Phase::AwaitingChannelReady => 4,
        Phase::Normal => 5,
        Phase::ShuttingDown => 6,
        Phase::Closed => 7,
    }
}

fn read_phase(r: &mut Reader<'_>) -> Result<Phase, DecodeError> {
    Ok(match r.u8()? {
        0 => Phase::AwaitingAccept,
        1 => Phase::AwaitingFundingTx,
        2 => Phase::AwaitingFundingCreated,
        3 => Phase::AwaitingFundingSigned,
        4 => Phase::AwaitingChannelReady,
        5 => Phase::Normal,
        6 => Phase::ShuttingDown,
        7 => Phase::Closed,
        _ => return Err(DecodeError::InvalidValue("phase")),
    })
}

fn write_opt_point(w: &mut Writer, p: &Option<PublicKey>) {
    match p {
        Some(k) => w.u8(1).pubkey(k),
        None => w.u8(0),
    };
}

fn read_opt_point(r: &mut Reader<'_>) -> Result<Option<PublicKey>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.pubkey("point")?)),
        _ => Err(DecodeError::InvalidValue("option")),
    }
}

fn read_opt_script(r: &mut Reader<'_>) -> Result<Option<ScriptBuf>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.script()?)),
        _ => Err(DecodeError::InvalidValue("option")),
    }
}

fn write_opt_script(w: &mut Writer, s: &Option<ScriptBuf>) {
    match s {
        Some(s) => w.u8(1).script(s),
        None => w.u8(0),
    };
}

/// The fewest bytes one HTLC takes in record 20: id, side, amount, hash, expiry, progress, two
/// sequence numbers, two absent commitment numbers, the onion flag and no removal.
const MIN_HTLC_LEN: usize = 8 + 1 + 8 + 32 + 4 + 2 + 8 + 8 + 1 + 1 + 1 + 1;

/// Bytes of one HTLC in record 20 (an upper bound for a short failure reason).
const HTLC_RECORD_LEN: usize = 128;

/// The HTLCs offered to us that we will fail back, if any.
fn refusals(c: &Channel) -> Option<Vec<(u64, HtlcRefusal)>> {
    let list: Vec<_> = c.htlcs.iter().filter_map(|h| h.refusal.map(|why| (h.id, why))).collect();
    (!list.is_empty()).then_some(list)
}

pub(super) fn encode_channel(c: &Channel) -> Vec<u8> {
    // Sized up front: with many HTLCs the state is large, and growing the buffer would copy it
    // several times.
    let htlcs = c.htlcs.len() * HTLC_RECORD_LEN;
    let sigs = c.holder_signatures.as_ref().map_or(0, |s| s.htlcs.len() * 64);
    let mut t = TlvWriter::with_capacity(KIND_CHANNEL, VERSION, 2_048 + htlcs + sigs);
    t.record(0, |w| {
        w.u64(c.update_id);
    })
    .record(2, |w| {
        w.bool(c.is_funder);
        write_config(w, &c.config);
        w.bool(c.channel_type.has_anchors()).bytes(&c.temporary_channel_id.0).bytes(&c.channel_id.0);
        w.amount(c.capacity).u64(c.push.to_msat()).u32(c.minimum_depth);
    })
    .optional(3, policy_fields(&c.config), |w, f| {
        for v in f {
            w.u32(v);
        }
    })
    .optional(4, c.funding_outpoint.as_ref(), |w, o| {
        w.outpoint(o);
    })
    .optional(6, c.funding_tx.as_ref(), |w, tx| {
        w.transaction(tx);
    })
    .record(8, |w| write_side_params(w, &c.holder))
    .optional(10, c.counterparty.as_ref(), write_side_params)
    .record(12, |w| {
        w.u8(phase_byte(c.phase)).u64(c.holder_commitment).u64(c.counterparty_commitment);
        w.bool(c.awaiting_revoke).bool(c.revoke_sent_last);
        write_opt_point(w, &c.counterparty_point);
        write_opt_point(w, &c.counterparty_next_point);
        write_opt_point(w, &c.counterparty_prev_point);
    })
    .record(14, |w| {
        w.bytes(&c.secrets.encode());
    })
    .optional(16, c.holder_signatures.as_ref(), |w, s| {
        w.signature(&s.commitment.signature).u16(s.htlcs.len() as u16);
        for h in &s.htlcs {
            w.signature(&h.signature);
        }
    })
    .record(18, |w| {
        w.u64(c.settled_holder.to_msat()).u64(c.settled_counterparty.to_msat()).u32(c.feerate);
        w.u64(c.next_holder_htlc_id).u64(c.next_counterparty_htlc_id).u64(c.next_seq);
        w.bigsize(c.fee_updates.len() as u64);
        for f in &c.fee_updates {
            w.u32(f.feerate_per_kw).u64(f.seq);
            write_progress(w, &f.progress);
        }
    })
    .record(20, |w| {
        w.bigsize(c.htlcs.len() as u64);
        for h in &c.htlcs {
            write_htlc(w, h);
        }
    })
    .optional(21, refusals(c).as_deref(), |w, list| {
        // HTLCs offered to us that we fail back once committed (odd: older readers skip it).
        w.bigsize(list.len() as u64);
        for (id, why) in list {
            w.u64(*id).u8(why.to_byte());
        }
    })
    .record(22, |w| {
        let s = &c.shutdown;
        write_opt_script(w, &s.holder_script);
        write_opt_script(w, &s.counterparty_script);
        w.bool(s.holder_sent);
        match s.fee_range {
            Some((a, b)) => w.u8(1).amount(a).amount(b),
            None => w.u8(0),
        };
        write_opt_u64(w, s.last_fee_sent.map(Amount::to_sat));
        match &s.closing_tx {
            Some(tx) => w.u8(1).transaction(tx),
            None => w.u8(0),
        };
    })
    .record(24, |w| {
        write_opt_u64(w, c.funding_height.map(|h| u64::from(h.0)));
        w.u32(c.tip.0).bool(c.channel_ready_sent).bool(c.channel_ready_received);
    })
    .record(26, |w| {
        write_opt_script(w, &c.sweep_destination);
        w.u32(c.sweep_feerate).bool(c.force_closed).bigsize(c.preimages.len() as u64);
        for (side, id, p) in &c.preimages {
            w.u8(side_byte(*side)).u64(*id).bytes(&p.0);
        }
    })
    .optional(28, c.onchain.as_ref(), write_onchain)
    // Even: a reader that does not know it must not restore a channel that may not broadcast.
    .optional(30, c.lost_state.then_some(()), |_, ()| {})
    // Odd and written only when off: older snapshots (and readers) keep the default, on.
    .optional(33, (!c.config.shutdown_anysegwit).then_some(()), |_, ()| {})
    // Odd: a reader that does not know it still never sees the funding pay the channel.
    .optional(35, c.funding_invalid.then_some(()), |_, ()| {})
    // Odd: an older reader keeps its default deadlines. Written only when not the defaults.
    .optional(41, Some(&c.config.htlc_deadlines).filter(|d| **d != super::HtlcDeadlines::default()), |w, d| {
        w.u32(d.offered_grace).u32(d.claim_margin);
    })
    .record(42, |w| KeyIdentity::write_recorded(c.key_identity.as_ref(), w));
    t.finish()
}

fn write_onchain(w: &mut Writer, o: &OnChain) {
    w.transaction(&o.closing_tx);
    let (tag, n) = match o.kind {
        ClosingKind::Holder(n) => (0, n),
        ClosingKind::Counterparty(n) => (1, n),
        ClosingKind::Revoked(n) => (2, n),
        ClosingKind::Cooperative => (3, 0),
        ClosingKind::Unknown => (4, 0),
    };
    w.u8(tag).u64(n).u32(o.height.0).bigsize(o.claims.len() as u64);
    for c in &o.claims {
        w.outpoint(&c.outpoint).amount(c.value).u32(c.created.0);
        for t in [&c.claim_txid, &c.spent_by] {
            match t {
                Some(t) => w.u8(1).txid(t),
                None => w.u8(0),
            };
        }
        match &c.kind {
            ClaimKind::HolderToLocal { n, script } => w.u8(0).u64(*n).var_bytes(script.as_bytes()),
            ClaimKind::HolderHtlc { position, offerer, id, cltv_expiry } => {
                w.u8(1).u32(*position as u32).u8(side_byte(*offerer)).u64(*id).u32(*cltv_expiry)
            }
            ClaimKind::HolderSecondStage { n, script } => w.u8(2).u64(*n).var_bytes(script.as_bytes()),
            ClaimKind::ToRemote => w.u8(3),
            ClaimKind::RemoteHtlc { n, offerer, id, cltv_expiry, script } => {
                w.u8(4).u64(*n).u8(side_byte(*offerer)).u64(*id).u32(*cltv_expiry).var_bytes(script.as_bytes())
            }
            ClaimKind::Penalty => w.u8(5),
        };
    }
}

fn read_opt_txid(r: &mut Reader<'_>) -> Result<Option<bitcoin::Txid>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.txid()?)),
        _ => Err(DecodeError::InvalidValue("option")),
    }
}

fn read_ws(r: &mut Reader<'_>) -> Result<WitnessScript, DecodeError> {
    Ok(WitnessScript::from_script(ScriptBuf::from_bytes(r.var_bytes()?.to_vec())))
}

fn read_onchain(r: &mut Reader<'_>) -> Result<OnChain, DecodeError> {
    let closing_tx = r.transaction("closing_tx")?;
    let tag = r.u8()?;
    let n = r.u64()?;
    let kind = match tag {
        0 => ClosingKind::Holder(n),
        1 => ClosingKind::Counterparty(n),
        2 => ClosingKind::Revoked(n),
        3 => ClosingKind::Cooperative,
        4 => ClosingKind::Unknown,
        _ => return Err(DecodeError::InvalidValue("closing kind")),
    };
    let height = BlockHeight(r.u32()?);
    let count = r.bigsize()?;
    if count > (r.remaining() / 50) as u64 {
        return Err(DecodeError::Truncated);
    }
    let mut claims = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let outpoint = r.outpoint()?;
        let value = r.amount("claim value")?;
        let created = BlockHeight(r.u32()?);
        let claim_txid = read_opt_txid(r)?;
        let spent_by = read_opt_txid(r)?;
        let kind = match r.u8()? {
            0 => ClaimKind::HolderToLocal { n: r.u64()?, script: read_ws(r)? },
            1 => ClaimKind::HolderHtlc {
                position: r.u32()? as usize,
                offerer: read_side(r)?,
                id: r.u64()?,
                cltv_expiry: r.u32()?,
            },
            2 => ClaimKind::HolderSecondStage { n: r.u64()?, script: read_ws(r)? },
            3 => ClaimKind::ToRemote,
            4 => ClaimKind::RemoteHtlc {
                n: r.u64()?,
                offerer: read_side(r)?,
                id: r.u64()?,
                cltv_expiry: r.u32()?,
                script: read_ws(r)?,
            },
            5 => ClaimKind::Penalty,
            _ => return Err(DecodeError::InvalidValue("claim kind")),
        };
        claims.push(Claim { outpoint, value, kind, created, claim_txid, spent_by });
    }
    Ok(OnChain { closing_tx, kind, height, claims })
}

/// The update id of a snapshot (record 0), without decoding the rest.
pub(super) fn snapshot_update_id(bytes: &[u8]) -> Result<u64, DecodeError> {
    let (version, mut tlv) = read_header(bytes, KIND_CHANNEL)?;
    if !(1..=VERSION).contains(&version) {
        return Err(DecodeError::UnknownVersion(version));
    }
    match tlv.next_record()? {
        Some((0, mut r)) => {
            let id = r.u64()?;
            r.finish()?;
            Ok(id)
        }
        _ => Err(DecodeError::MissingField("update_id")),
    }
}

/// Decodes a snapshot. Returns the channel and the HTLCs (offerer, id) whose onions are in
/// records, to be attached by the caller.
#[allow(clippy::too_many_lines)]
pub(super) fn decode_channel(bytes: &[u8]) -> Result<(Channel, Vec<(Side, u64)>), DecodeError> {
    let (version, tlv) = read_header(bytes, KIND_CHANNEL)?;
    if !(1..=VERSION).contains(&version) {
        return Err(DecodeError::UnknownVersion(version));
    }
    let mut onions_in_records = Vec::new();
    let mut key_identity = None;
    let mut update_id = None;
    let mut ident = None;
    let mut funding_outpoint = None;
    let mut funding_tx = None;
    let mut holder = None;
    let mut counterparty = None;
    let mut commitments = None;
    let mut secrets = None;
    let mut holder_signatures = None;
    let mut balances = None;
    let mut htlcs = None;
    let mut shutdown = None;
    let mut chain = None;
    let mut sweep = None;
    let mut onchain = None;
    let mut lost_state = false;
    let mut no_anysegwit = false;
    let mut htlc_deadlines = None;
    let mut funding_invalid = false;
    tlv.for_each(|ty, r| {
        match ty {
            0 => update_id = Some(r.u64()?),
            2 => {
                let is_funder = r.bool("is_funder")?;
                let config = read_config(r)?;
                let ct = channel_type(r.bool("channel_type")?);
                let tmp = ChannelId(r.array()?);
                let id = ChannelId(r.array()?);
                ident = Some((
                    is_funder,
                    config,
                    ct,
                    tmp,
                    id,
                    r.amount("capacity")?,
                    MilliSats::from_msat(r.u64()?),
                    r.u32()?,
                ));
            }
            3 => {
                // Follows record 2 (types increase), so the config is there to complete.
                let (_, config, ..) = ident.as_mut().ok_or(DecodeError::MissingField("identity"))?;
                read_policy(r, config)?;
            }
            4 => funding_outpoint = Some(r.outpoint()?),
            6 => funding_tx = Some(r.transaction("funding_tx")?),
            8 => holder = Some(read_side_params(r)?),
            10 => counterparty = Some(read_side_params(r)?),
            12 => {
                commitments = Some((
                    read_phase(r)?,
                    r.u64()?,
                    r.u64()?,
                    r.bool("awaiting_revoke")?,
                    r.bool("revoke_sent_last")?,
                    read_opt_point(r)?,
                    read_opt_point(r)?,
                    read_opt_point(r)?,
                ))
            }
            14 => {
                let b: [u8; SecretStore::ENCODED_LEN] = r.array()?;
                secrets = Some(SecretStore::decode(&b).map_err(|_| DecodeError::InvalidValue("shachain"))?);
            }
            16 => {
                let commitment = bitcoin::ecdsa::Signature {
                    signature: r.signature("commitment signature")?,
                    sighash_type: EcdsaSighashType::All,
                };
                let n = r.u16()?;
                if usize::from(n) * 64 > r.remaining() {
                    return Err(DecodeError::Truncated);
                }
                let mut v = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    v.push(r.signature("htlc signature")?);
                }
                holder_signatures = Some((commitment, v));
            }
            18 => {
                let (h, c, f) = (MilliSats::from_msat(r.u64()?), MilliSats::from_msat(r.u64()?), r.u32()?);
                let (nh, nc, seq) = (r.u64()?, r.u64()?, r.u64()?);
                let n = r.bigsize()?;
                if n > (r.remaining() / 14) as u64 {
                    return Err(DecodeError::Truncated);
                }
                let mut fees = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    fees.push(FeeUpdate { feerate_per_kw: r.u32()?, seq: r.u64()?, progress: read_progress(r)? });
                }
                balances = Some((h, c, f, nh, nc, seq, fees));
            }
            20 => {
                let n = r.bigsize()?;
                if n > (r.remaining() / MIN_HTLC_LEN) as u64 {
                    return Err(DecodeError::Truncated);
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (h, in_record) = read_htlc(r, version)?;
                    if v.iter().any(|o: &Htlc| o.offerer == h.offerer && o.id == h.id) {
                        return Err(DecodeError::InvalidValue("duplicate HTLC"));
                    }
                    if in_record {
                        onions_in_records.push((h.offerer, h.id));
                    }
                    v.push(h);
                }
                htlcs = Some(v);
            }
            21 => {
                let list = htlcs.as_mut().ok_or(DecodeError::MissingField("htlcs"))?;
                let n = r.bigsize()?;
                for _ in 0..n {
                    let (id, why) = (r.u64()?, r.u8()?);
                    let why = HtlcRefusal::from_byte(why).ok_or(DecodeError::InvalidValue("htlc refusal"))?;
                    let h = list
                        .iter_mut()
                        .find(|h: &&mut Htlc| h.offerer == Side::Counterparty && h.id == id)
                        .ok_or(DecodeError::InvalidValue("refusal of an unknown HTLC"))?;
                    if h.refusal.replace(why).is_some() {
                        return Err(DecodeError::InvalidValue("duplicate htlc refusal"));
                    }
                }
            }
            22 => {
                let holder_script = read_opt_script(r)?;
                let counterparty_script = read_opt_script(r)?;
                let holder_sent = r.bool("holder_sent")?;
                let fee_range = match r.u8()? {
                    0 => None,
                    1 => Some((r.amount("fee_min")?, r.amount("fee_max")?)),
                    _ => return Err(DecodeError::InvalidValue("fee_range")),
                };
                let last_fee_sent = read_opt_u64(r)?.map(Amount::from_sat);
                let closing_tx = match r.u8()? {
                    0 => None,
                    1 => Some(r.transaction("closing_tx")?),
                    _ => return Err(DecodeError::InvalidValue("closing_tx")),
                };
                shutdown = Some(Shutdown {
                    holder_script,
                    counterparty_script,
                    holder_sent,
                    fee_range,
                    last_fee_sent,
                    closing_tx,
                });
            }
            24 => {
                let fh = read_opt_u64(r)?.map(|h| BlockHeight(h as u32));
                chain = Some((fh, BlockHeight(r.u32()?), r.bool("ready_sent")?, r.bool("ready_received")?));
            }
            26 => {
                let dest = read_opt_script(r)?;
                let feerate = r.u32()?;
                let force_closed = r.bool("force_closed")?;
                let n = r.bigsize()?;
                if n > (r.remaining() / 41) as u64 {
                    return Err(DecodeError::Truncated);
                }
                let mut pre = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    pre.push((read_side(r)?, r.u64()?, PaymentPreimage(r.array()?)));
                }
                sweep = Some((dest, feerate, force_closed, pre));
            }
            28 => onchain = Some(read_onchain(r)?),
            30 => lost_state = true,
            33 => no_anysegwit = true,
            35 => funding_invalid = true,
            41 => {
                htlc_deadlines = Some(super::HtlcDeadlines { offered_grace: r.u32()?, claim_margin: r.u32()? });
            }
            42 => key_identity = Some(KeyIdentity::read_recorded(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // Written by every version-3 writer (as "none" after an upgrade): a snapshot without it is
    // cut short.
    if version >= 3 && key_identity.is_none() {
        return Err(DecodeError::MissingField("key identity"));
    }
    let key_identity = key_identity.flatten();
    let (sweep_destination, sweep_feerate, force_closed, preimages) = required(sweep, "sweep")?;
    let (is_funder, mut config, ct, temporary_channel_id, channel_id, capacity, push, minimum_depth) =
        required(ident, "identity")?;
    config.shutdown_anysegwit = !no_anysegwit;
    if let Some(d) = htlc_deadlines {
        config.htlc_deadlines = d;
    }
    let (phase, holder_commitment, counterparty_commitment, awaiting_revoke, revoke_sent_last, cp, cnp, cpp) =
        required(commitments, "commitments")?;
    let (
        settled_holder,
        settled_counterparty,
        feerate,
        next_holder_htlc_id,
        next_counterparty_htlc_id,
        next_seq,
        fee_updates,
    ) = required(balances, "balances")?;
    let (funding_height, tip, channel_ready_sent, channel_ready_received) = required(chain, "chain")?;
    let htlc_type = if ct.has_anchors() { EcdsaSighashType::SinglePlusAnyoneCanPay } else { EcdsaSighashType::All };
    let holder_signatures =
        holder_signatures.map(|(commitment, v): (bitcoin::ecdsa::Signature, Vec<ecdsa::Signature>)| {
            CommitmentSignatures {
                commitment,
                htlcs: v
                    .into_iter()
                    .map(|signature| bitcoin::ecdsa::Signature { signature, sighash_type: htlc_type })
                    .collect(),
            }
        });
    let htlcs = required(htlcs, "htlcs")?;
    let htlcs_have_onions = htlcs.iter().any(|h: &Htlc| h.onion.is_some());
    let channel = Channel {
        is_funder,
        config,
        channel_type: ct,
        temporary_channel_id,
        channel_id,
        capacity,
        push,
        funding_outpoint,
        funding_tx,
        holder: required(holder, "holder")?,
        counterparty,
        phase,
        holder_commitment,
        counterparty_commitment,
        awaiting_revoke,
        revoke_sent_last,
        counterparty_point: cp,
        counterparty_next_point: cnp,
        counterparty_prev_point: cpp,
        secrets: required(secrets, "secrets")?,
        holder_signatures,
        settled_holder,
        settled_counterparty,
        feerate,
        fee_updates,
        htlcs,
        next_holder_htlc_id,
        next_counterparty_htlc_id,
        next_seq,
        shutdown: required(shutdown, "shutdown")?,
        funding_height,
        tip,
        channel_ready_sent,
        channel_ready_received,
        minimum_depth,
        update_id: required(update_id, "update_id")?,
        sweep_destination,
        sweep_feerate,
        force_closed,
        lost_state,
        key_identity,
        preimages,
        onchain,
        secp: Secp256k1::new(),
        holder_next_point: None,
        refused_on_this_connection: false,
        defer_refusals: false,
        funding_invalid,
        onions_to_append: version == 1 && htlcs_have_onions,
        fee_estimate: None,
        durable: None,
        deltas_since_full: 0,
        full_snapshot_interval: crate::driving::FULL_SNAPSHOT_INTERVAL,
        pending_onions: Vec::new(),
    };
    Ok((channel, onions_in_records))
}
