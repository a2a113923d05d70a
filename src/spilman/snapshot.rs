//! Versioned snapshots of [`Payer`] and [`Payee`] (the crate's TLV encoding).

use alloc::vec::Vec;

use bitcoin::secp256k1::Secp256k1;
use bitcoin::Amount;

use super::msgs::{read_htlc, read_payment_state, write_htlc, write_payment_state, Msg, Variant};
use super::payee::{Held, Payee, PayeeConfig, PayeePhase};
use super::payer::{HtlcStatus, OnChainHtlc, Payer, PayerConfig, PayerHtlc, PayerPhase};
use super::payment::{ChannelLock, PaymentTemplate};
use crate::core::encode::{required, DecodeError, Reader, TlvWriter, Writer};
use crate::core::hashlock::PaymentPreimage;
use crate::core::units::BlockHeight;
use crate::core::wire::{read_count, read_object};

const KIND_PAYER: u8 = 0x50;
const KIND_PAYEE: u8 = 0x4f;
const VERSION: u8 = 1;

fn write_template(w: &mut Writer, t: &PaymentTemplate) {
    w.outpoint(&t.outpoint).amount(t.capacity);
    match t.lock {
        ChannelLock::Cltv(h) => w.u8(0).u32(h.0),
        ChannelLock::Csv(d) => w.u8(1).u32(u32::from(d)),
        ChannelLock::Multisig => w.u8(2).u32(0),
    };
    w.pubkey(&t.payer_key).pubkey(&t.payee_key).pubkey(&t.payer_htlc_key).pubkey(&t.payee_htlc_key);
    w.script(&t.payer_script).script(&t.payee_script).amount(t.fee).amount(t.dust_limit);
}

fn read_template(r: &mut Reader<'_>) -> Result<PaymentTemplate, DecodeError> {
    let outpoint = r.outpoint()?;
    let capacity = r.amount("capacity")?;
    let lock = match (r.u8()?, r.u32()?) {
        (0, h) => ChannelLock::Cltv(BlockHeight(h)),
        (1, d) => ChannelLock::Csv(u16::try_from(d).map_err(|_| DecodeError::InvalidValue("csv delay"))?),
        (2, _) => ChannelLock::Multisig,
        _ => return Err(DecodeError::InvalidValue("channel lock")),
    };
    Ok(PaymentTemplate {
        outpoint,
        capacity,
        lock,
        payer_key: r.pubkey("payer_key")?,
        payee_key: r.pubkey("payee_key")?,
        payer_htlc_key: r.pubkey("payer_htlc_key")?,
        payee_htlc_key: r.pubkey("payee_htlc_key")?,
        payer_script: r.script()?,
        payee_script: r.script()?,
        fee: r.amount("fee")?,
        dust_limit: r.amount("dust_limit")?,
    })
}

fn variant_byte(v: Variant) -> u8 {
    match v {
        Variant::Cltv => 0,
        Variant::PresignedRefund => 1,
    }
}

fn read_variant(r: &mut Reader<'_>) -> Result<Variant, DecodeError> {
    match r.u8()? {
        0 => Ok(Variant::Cltv),
        1 => Ok(Variant::PresignedRefund),
        _ => Err(DecodeError::InvalidValue("variant")),
    }
}

pub(super) fn encode_payee(p: &Payee) -> Vec<u8> {
    let c = &p.config;
    let mut t = TlvWriter::new(KIND_PAYEE, VERSION);
    t.record(0, |w| {
        w.u64(p.update_id);
    })
    .record(2, |w| {
        w.u8(variant_byte(c.variant)).script(&c.payee_script).u32(c.expiry.0);
        w.amount(c.min_first_payment).amount(c.dust_limit).amount(c.payment_fee).amount(c.claim_fee);
        w.u32(c.close_margin).u32(c.htlc_min_blocks).u32(c.min_depth);
    })
    .record(4, |w| {
        w.pubkey(&p.payee_key).pubkey(&p.payee_htlc_key);
    })
    .record(6, |w| {
        w.u8(match p.phase {
            PayeePhase::Offered => 0,
            PayeePhase::RefundSigned => 1,
            PayeePhase::Open => 2,
            PayeePhase::Closing => 3,
            PayeePhase::Closed => 4,
        });
    })
    .optional(8, p.template.as_ref(), |w, t| {
        write_template(w, t);
        w.amount(p.refund_fee);
    })
    .optional(10, p.funding_tx.as_ref(), |w, tx| {
        w.transaction(tx);
    })
    .optional(12, p.funding_height, |w, h| {
        w.u32(h.0);
    })
    .optional(14, p.best.as_ref(), |w, b| {
        w.u64(b.number);
        write_payment_state(w, &b.state);
        w.bitcoin_signature(&b.signature);
    })
    .record(16, |w| {
        w.bigsize(p.preimages.len() as u64);
        for (id, pre) in &p.preimages {
            w.u64(*id).bytes(&pre.0);
        }
        w.bigsize(p.failed.len() as u64);
        for id in &p.failed {
            w.u64(*id);
        }
        w.u64(p.next_htlc_id);
    })
    .optional(18, p.closing_txid.as_ref(), |w, txid| {
        w.txid(txid);
    })
    .record(20, |w| {
        w.bigsize(p.claims.len() as u64);
        for (id, txid) in &p.claims {
            w.u64(*id).txid(txid);
        }
    });
    t.finish()
}

pub(super) fn decode_payee(bytes: &[u8]) -> Result<Payee, DecodeError> {
    let tlv = read_object(bytes, KIND_PAYEE, VERSION)?;
    let mut update_id = None;
    let mut config = None;
    let mut keys = None;
    let mut phase = None;
    let mut template = None;
    let mut funding_tx = None;
    let mut funding_height = None;
    let mut best = None;
    let mut htlc_data = None;
    let mut closing_txid = None;
    let mut claims = None;
    tlv.for_each(|ty, r| {
        match ty {
            0 => update_id = Some(r.u64()?),
            2 => {
                config = Some(PayeeConfig {
                    variant: read_variant(r)?,
                    payee_script: r.script()?,
                    expiry: BlockHeight(r.u32()?),
                    min_first_payment: r.amount("min_first_payment")?,
                    dust_limit: r.amount("dust_limit")?,
                    payment_fee: r.amount("payment_fee")?,
                    claim_fee: r.amount("claim_fee")?,
                    close_margin: r.u32()?,
                    htlc_min_blocks: r.u32()?,
                    min_depth: r.u32()?,
                })
            }
            4 => keys = Some((r.pubkey("payee_key")?, r.pubkey("payee_htlc_key")?)),
            6 => {
                phase = Some(match r.u8()? {
                    0 => PayeePhase::Offered,
                    1 => PayeePhase::RefundSigned,
                    2 => PayeePhase::Open,
                    3 => PayeePhase::Closing,
                    4 => PayeePhase::Closed,
                    _ => return Err(DecodeError::InvalidValue("phase")),
                })
            }
            8 => template = Some((read_template(r)?, r.amount("refund_fee")?)),
            10 => funding_tx = Some(r.transaction("funding_tx")?),
            12 => funding_height = Some(BlockHeight(r.u32()?)),
            14 => {
                best = Some(Held {
                    number: r.u64()?,
                    state: read_payment_state(r)?,
                    signature: r.bitcoin_signature("payment signature")?,
                })
            }
            16 => {
                let n = read_count(r, 40, usize::MAX)?;
                let mut preimages = Vec::with_capacity(n);
                for _ in 0..n {
                    preimages.push((r.u64()?, PaymentPreimage(r.array()?)));
                }
                let n = read_count(r, 8, usize::MAX)?;
                let mut failed = Vec::with_capacity(n);
                for _ in 0..n {
                    failed.push(r.u64()?);
                }
                htlc_data = Some((preimages, failed, r.u64()?));
            }
            18 => closing_txid = Some(r.txid()?),
            20 => {
                let n = read_count(r, 40, usize::MAX)?;
                let mut c = Vec::with_capacity(n);
                for _ in 0..n {
                    c.push((r.u64()?, r.txid()?));
                }
                claims = Some(c);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (payee_key, payee_htlc_key) = required(keys, "keys")?;
    let (preimages, failed, next_htlc_id) = required(htlc_data, "htlcs")?;
    let phase = required(phase, "phase")?;
    if !matches!(phase, PayeePhase::Offered) && template.is_none() {
        return Err(DecodeError::MissingField("template"));
    }
    if matches!(phase, PayeePhase::Open | PayeePhase::Closing) && best.is_none() {
        return Err(DecodeError::MissingField("payment"));
    }
    let (template, refund_fee) = match template {
        Some((t, f)) => (Some(t), f),
        None => (None, Amount::ZERO),
    };
    Ok(Payee {
        config: required(config, "config")?,
        payee_key,
        payee_htlc_key,
        phase,
        template,
        refund_fee,
        funding_tx,
        funding_height,
        best,
        preimages,
        failed,
        next_htlc_id,
        closing_txid,
        claims: required(claims, "claims")?,
        update_id: required(update_id, "update_id")?,
        secp: Secp256k1::verification_only(),
    })
}

pub(super) fn encode_payer(p: &Payer) -> Vec<u8> {
    let c = &p.config;
    let mut t = TlvWriter::new(KIND_PAYER, VERSION);
    t.record(0, |w| {
        w.u64(p.update_id);
    })
    .record(2, |w| {
        w.var_bytes(&Msg::Offer(p.offer.clone()).encode());
    })
    .record(4, |w| {
        w.amount(c.capacity).script(&c.payer_script).amount(c.refund_fee).amount(c.claim_fee);
        w.amount(c.first_payment).u32(c.max_lifetime);
    })
    .record(6, |w| {
        w.pubkey(&p.payer_key).pubkey(&p.payer_htlc_key);
        w.u8(match p.phase {
            PayerPhase::AwaitingFunding => 0,
            PayerPhase::AwaitingRefundSignature => 1,
            PayerPhase::Open => 2,
            PayerPhase::Closed => 3,
        });
    })
    .optional(8, p.template.as_ref(), write_template)
    .optional(10, p.funding_tx.as_ref(), |w, tx| {
        w.transaction(tx);
    })
    .optional(12, p.refund_payee_sig.as_ref(), |w, s| {
        w.bitcoin_signature(s);
    })
    .record(14, |w| {
        w.u64(p.number);
        write_payment_state(w, &p.state);
        w.u64(p.acked).u64(p.next_htlc_id).u32(p.tip.0);
    })
    .record(16, |w| {
        w.bigsize(p.htlcs.len() as u64);
        for h in &p.htlcs {
            write_htlc(w, &h.htlc);
            w.amount(h.max_exposure);
            match h.status {
                HtlcStatus::Live => w.u8(0),
                HtlcStatus::Fulfilled(pre) => w.u8(1).bytes(&pre.0),
                HtlcStatus::Removed { dominated_at } => w.u8(2).amount(dominated_at),
                HtlcStatus::FailedFinal => w.u8(3),
            };
        }
    })
    .optional(18, p.closing_txid.as_ref(), |w, txid| {
        w.txid(txid);
    })
    .record(20, |w| {
        w.bigsize(p.onchain.len() as u64);
        for o in &p.onchain {
            w.outpoint(&o.outpoint).u64(o.id).bool(o.resolved);
            match &o.claim {
                Some(txid) => w.u8(1).txid(txid),
                None => w.u8(0),
            };
        }
    })
    // Even: a decoder that does not know it must refuse the snapshot rather than restore a payer
    // that lost state as a healthy one.
    .optional(22, p.lost_state.then_some(()), |_, ()| {});
    t.finish()
}

pub(super) fn decode_payer(bytes: &[u8]) -> Result<Payer, DecodeError> {
    let tlv = read_object(bytes, KIND_PAYER, VERSION)?;
    let mut update_id = None;
    let mut offer = None;
    let mut config = None;
    let mut keys_phase = None;
    let mut template = None;
    let mut funding_tx = None;
    let mut refund_sig = None;
    let mut payments = None;
    let mut htlcs = None;
    let mut closing_txid = None;
    let mut onchain = None;
    let mut lost_state = false;
    tlv.for_each(|ty, r| {
        match ty {
            0 => update_id = Some(r.u64()?),
            2 => match Msg::decode(r.var_bytes()?)? {
                Msg::Offer(o) => offer = Some(o),
                _ => return Err(DecodeError::InvalidValue("offer")),
            },
            4 => {
                config = Some(PayerConfig {
                    capacity: r.amount("capacity")?,
                    payer_script: r.script()?,
                    refund_fee: r.amount("refund_fee")?,
                    claim_fee: r.amount("claim_fee")?,
                    first_payment: r.amount("first_payment")?,
                    max_lifetime: r.u32()?,
                })
            }
            6 => {
                let keys = (r.pubkey("payer_key")?, r.pubkey("payer_htlc_key")?);
                let phase = match r.u8()? {
                    0 => PayerPhase::AwaitingFunding,
                    1 => PayerPhase::AwaitingRefundSignature,
                    2 => PayerPhase::Open,
                    3 => PayerPhase::Closed,
                    _ => return Err(DecodeError::InvalidValue("phase")),
                };
                keys_phase = Some((keys, phase));
            }
            8 => template = Some(read_template(r)?),
            10 => funding_tx = Some(r.transaction("funding_tx")?),
            12 => refund_sig = Some(r.bitcoin_signature("refund signature")?),
            14 => payments = Some((r.u64()?, read_payment_state(r)?, r.u64()?, r.u64()?, BlockHeight(r.u32()?))),
            16 => {
                let n = read_count(r, 61, usize::MAX)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let htlc = read_htlc(r)?;
                    let max_exposure = r.amount("max_exposure")?;
                    let status = match r.u8()? {
                        0 => HtlcStatus::Live,
                        1 => HtlcStatus::Fulfilled(PaymentPreimage(r.array()?)),
                        2 => HtlcStatus::Removed { dominated_at: r.amount("dominated_at")? },
                        3 => HtlcStatus::FailedFinal,
                        _ => return Err(DecodeError::InvalidValue("htlc status")),
                    };
                    v.push(PayerHtlc { htlc, status, max_exposure });
                }
                htlcs = Some(v);
            }
            18 => closing_txid = Some(r.txid()?),
            20 => {
                let n = read_count(r, 46, usize::MAX)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let outpoint = r.outpoint()?;
                    let id = r.u64()?;
                    let resolved = r.bool("resolved")?;
                    let claim = match r.u8()? {
                        0 => None,
                        1 => Some(r.txid()?),
                        _ => return Err(DecodeError::InvalidValue("claim")),
                    };
                    v.push(OnChainHtlc { outpoint, id, claim, resolved });
                }
                onchain = Some(v);
            }
            22 => lost_state = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let ((payer_key, payer_htlc_key), phase) = required(keys_phase, "keys")?;
    let (number, state, acked, next_htlc_id, tip) = required(payments, "payments")?;
    if !matches!(phase, PayerPhase::AwaitingFunding) && (template.is_none() || funding_tx.is_none()) {
        return Err(DecodeError::MissingField("template"));
    }
    Ok(Payer {
        offer: required(offer, "offer")?,
        config: required(config, "config")?,
        payer_key,
        payer_htlc_key,
        phase,
        template,
        funding_tx,
        refund_payee_sig: refund_sig,
        number,
        state,
        acked,
        htlcs: required(htlcs, "htlcs")?,
        next_htlc_id,
        tip,
        closing_txid,
        onchain: required(onchain, "onchain")?,
        update_id: required(update_id, "update_id")?,
        lost_state,
        secp: Secp256k1::verification_only(),
    })
}
