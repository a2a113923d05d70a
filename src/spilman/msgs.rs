//! Spilman channel messages and their versioned binary encoding ([`crate::core::encode`]).
//!
//! ```text
//! payee                               payer
//!   |-------------- Offer -------------->|   key, expiry, payout script, fee, policy
//!   |<--------- RefundRequest -----------|   (pre-signed variant only)
//!   |---------- RefundSigned ----------->|   payee's signature on the nLockTime refund
//!   |<-------------- Open ---------------|   funding tx + first payment
//!   |<------------ Payment --------------|   cumulative amount, HTLCs, payer signature
//!   |--------------- Ack --------------->|
//!   |------------- Fulfill ------------->|   preimage of an HTLC (payer folds it in)
//!   |--------------- Fail --------------->|  payee gives an HTLC up
//!   |<---------- CloseRequest -----------|   payer asks for an early close
//!   |-------------- Closed ------------->|   payee broadcast this transaction
//! ```

use alloc::vec::Vec;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Transaction, Txid};

use super::payee::Payee;
use super::payer::Payer;
use super::payment::{PaymentHtlc, PaymentState};
use super::{peer_error, Effects, Misbehaviour, PeerError};
use crate::core::encode::{required, DecodeError, Reader, TlvReader, TlvWriter, Writer};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;
use crate::core::wire::{
    read_list, read_message, read_single_record, single_record, temporary_channel_id, write_list, Addressed, LayerMsg,
};
use crate::driving::{ChainTip, ChannelId};

/// Which refund construction the channel uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Variant {
    /// The channel output is the BIP-0065 CLTV script; the payer refunds alone after expiry.
    Cltv,
    /// The channel output is a 2-of-2; the payee signs an `nLockTime` refund before funding
    /// (Spilman/Hearn's original design).
    PresignedRefund,
}

/// The payee's terms (first message).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Offer {
    /// Refund construction.
    pub variant: Variant,
    /// The payee's channel key.
    pub payee_key: PublicKey,
    /// The payee's HTLC key.
    pub payee_htlc_key: PublicKey,
    /// Where the payee's output goes.
    pub payee_script: ScriptBuf,
    /// Height from which the payer can refund.
    pub expiry: BlockHeight,
    /// Smallest first payment the payee accepts.
    pub min_first_payment: Amount,
    /// Dust limit for every output.
    pub dust_limit: Amount,
    /// Fee of every payment transaction (the payee pays it).
    pub payment_fee: Amount,
    /// The payee stops accepting payments and closes `close_margin` blocks before expiry.
    pub close_margin: u32,
    /// An HTLC must expire at least this many blocks after it is offered.
    pub htlc_min_blocks: u32,
}

/// The payer asks for a refund signature (pre-signed variant).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefundRequest {
    /// The payer's channel key.
    pub payer_key: PublicKey,
    /// The payer's HTLC key.
    pub payer_htlc_key: PublicKey,
    /// Where the payer's change and refund go.
    pub payer_script: ScriptBuf,
    /// The funding output (not yet broadcast).
    pub funding_outpoint: OutPoint,
    /// Its value.
    pub capacity: Amount,
    /// Fee of the refund.
    pub refund_fee: Amount,
}

/// The payee's refund signature (pre-signed variant).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefundSigned {
    /// Signature on the refund transaction (`SIGHASH_ALL`).
    pub signature: ecdsa::Signature,
}

/// A payment: the new cumulative state and the payer's signature of its transaction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Payment {
    /// Sequence number, strictly increasing.
    pub number: u64,
    /// Total paid to the payee.
    pub to_payee: Amount,
    /// Outstanding HTLCs.
    pub htlcs: Vec<PaymentHtlc>,
    /// The payer's signature (`SIGHASH_ALL`).
    pub signature: ecdsa::Signature,
}

/// The funded channel and its first payment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Open {
    /// The payer's channel key.
    pub payer_key: PublicKey,
    /// The payer's HTLC key.
    pub payer_htlc_key: PublicKey,
    /// Where the payer's change and refund go.
    pub payer_script: ScriptBuf,
    /// Fee of the refund.
    pub refund_fee: Amount,
    /// The signed funding transaction.
    pub funding_tx: Transaction,
    /// Index of the channel output.
    pub funding_vout: u32,
    /// The first payment.
    pub first_payment: Payment,
}

/// A Spilman message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Msg {
    /// Payee's terms.
    Offer(Offer),
    /// Refund signature request (pre-signed variant).
    RefundRequest(RefundRequest),
    /// Refund signature (pre-signed variant).
    RefundSigned(RefundSigned),
    /// Funding and first payment.
    Open(Open),
    /// A payment.
    Payment(Payment),
    /// The payee holds payment `number`.
    Ack {
        /// The acknowledged payment number.
        number: u64,
    },
    /// The preimage of an HTLC.
    Fulfill {
        /// HTLC id.
        id: u64,
        /// Its preimage.
        preimage: PaymentPreimage,
    },
    /// The payee gives up an HTLC.
    Fail {
        /// HTLC id.
        id: u64,
    },
    /// The payer asks the payee to close now.
    CloseRequest,
    /// The payee broadcast this closing transaction.
    Closed {
        /// Its txid.
        txid: Txid,
    },
    /// First message on a new connection, both ways.
    Reestablish(Reestablish),
}

/// Sent by both parties first on every new connection: each then sends again what the other
/// missed, and a payer learns whether it lost state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reestablish {
    /// The newest payment number the sender holds: signed (payer) or received (payee).
    pub number: u64,
    /// (Payer) the HTLCs whose fulfilment or failure it has received: the payee sends the rest
    /// again. Empty from the payee.
    pub resolved: Vec<u64>,
    /// (Payee) the newest payment it holds: a payer that does not remember signing it checks its
    /// signature before it believes it lost state. `None` from the payer.
    pub your_payment: Option<Payment>,
}

const VERSION: u8 = 1;
const K_OFFER: u8 = 0x51;
const K_REFUND_REQUEST: u8 = 0x52;
const K_REFUND_SIGNED: u8 = 0x53;
const K_OPEN: u8 = 0x54;
const K_PAYMENT: u8 = 0x55;
const K_ACK: u8 = 0x56;
const K_FULFILL: u8 = 0x57;
const K_FAIL: u8 = 0x58;
const K_CLOSE_REQUEST: u8 = 0x59;
const K_CLOSED: u8 = 0x5a;
const K_REESTABLISH: u8 = 0x5b;

/// Size of an encoded HTLC.
pub(crate) const HTLC_LEN: usize = 52;

/// Writes an HTLC of a payment (the one encoding of [`PaymentHtlc`], for Spilman and duplex
/// messages and snapshots).
pub(crate) fn write_htlc(w: &mut Writer, h: &PaymentHtlc) {
    w.u64(h.id).amount(h.amount).bytes(&h.payment_hash.0).u32(h.expiry.0);
}

/// Reads an HTLC written by [`write_htlc`].
pub(crate) fn read_htlc(r: &mut Reader<'_>) -> Result<PaymentHtlc, DecodeError> {
    Ok(PaymentHtlc {
        id: r.u64()?,
        amount: r.amount("htlc amount")?,
        payment_hash: PaymentHash(r.array()?),
        expiry: BlockHeight(r.u32()?),
    })
}

/// Writes a list of HTLCs.
pub(crate) fn write_htlcs(w: &mut Writer, htlcs: &[PaymentHtlc]) {
    write_list(w, htlcs, write_htlc);
}

/// Reads a list of HTLCs (the count checked against the input before anything is allocated).
pub(crate) fn read_htlcs(r: &mut Reader<'_>) -> Result<Vec<PaymentHtlc>, DecodeError> {
    read_list(r, HTLC_LEN, usize::MAX, read_htlc)
}

/// Writes a payment state (what [`Payment`] commits to: the payee's total and the HTLCs), as
/// both layers' snapshots hold it.
pub(crate) fn write_payment_state(w: &mut Writer, s: &PaymentState) {
    w.amount(s.to_payee);
    write_htlcs(w, &s.htlcs);
}

/// Reads a payment state written by [`write_payment_state`].
pub(crate) fn read_payment_state(r: &mut Reader<'_>) -> Result<PaymentState, DecodeError> {
    Ok(PaymentState { to_payee: r.amount("to_payee")?, htlcs: read_htlcs(r)? })
}

fn write_payment(t: &mut TlvWriter, p: &Payment, base: u64) {
    t.record(base, |w| {
        w.u64(p.number);
    });
    t.record(base + 2, |w| {
        w.amount(p.to_payee);
    });
    t.record(base + 4, |w| write_htlcs(w, &p.htlcs));
    t.record(base + 6, |w| {
        w.bitcoin_signature(p.signature_ref());
    });
}

impl Payment {
    fn signature_ref(&self) -> &ecdsa::Signature {
        &self.signature
    }
}

#[derive(Default)]
struct PaymentFields {
    number: Option<u64>,
    to_payee: Option<Amount>,
    htlcs: Option<Vec<PaymentHtlc>>,
    signature: Option<ecdsa::Signature>,
}

impl PaymentFields {
    fn read(&mut self, offset: u64, r: &mut Reader<'_>) -> Result<bool, DecodeError> {
        match offset {
            0 => self.number = Some(r.u64()?),
            2 => self.to_payee = Some(r.amount("to_payee")?),
            4 => self.htlcs = Some(read_htlcs(r)?),
            6 => self.signature = Some(r.bitcoin_signature("payment signature")?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self) -> Result<Payment, DecodeError> {
        Ok(Payment {
            number: required(self.number, "number")?,
            to_payee: required(self.to_payee, "to_payee")?,
            htlcs: required(self.htlcs, "htlcs")?,
            signature: required(self.signature, "signature")?,
        })
    }
}

fn variant_byte(v: Variant) -> u8 {
    match v {
        Variant::Cltv => 0,
        Variant::PresignedRefund => 1,
    }
}

impl Msg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Offer(o) => {
                let mut t = TlvWriter::new(K_OFFER, VERSION);
                t.record(0, |w| {
                    w.u8(variant_byte(o.variant));
                })
                .record(2, |w| {
                    w.pubkey(&o.payee_key);
                })
                .record(4, |w| {
                    w.pubkey(&o.payee_htlc_key);
                })
                .record(6, |w| {
                    w.script(&o.payee_script);
                })
                .record(8, |w| {
                    w.u32(o.expiry.0);
                })
                .record(10, |w| {
                    w.amount(o.min_first_payment).amount(o.dust_limit).amount(o.payment_fee);
                })
                .record(12, |w| {
                    w.u32(o.close_margin).u32(o.htlc_min_blocks);
                });
                t.finish()
            }
            Msg::RefundRequest(q) => {
                let mut t = TlvWriter::new(K_REFUND_REQUEST, VERSION);
                t.record(0, |w| {
                    w.pubkey(&q.payer_key).pubkey(&q.payer_htlc_key);
                })
                .record(2, |w| {
                    w.script(&q.payer_script);
                })
                .record(4, |w| {
                    w.outpoint(&q.funding_outpoint).amount(q.capacity).amount(q.refund_fee);
                });
                t.finish()
            }
            Msg::RefundSigned(s) => single_record(K_REFUND_SIGNED, VERSION, |w| {
                w.bitcoin_signature(&s.signature);
            }),
            Msg::Open(o) => {
                let mut t = TlvWriter::new(K_OPEN, VERSION);
                t.record(0, |w| {
                    w.pubkey(&o.payer_key).pubkey(&o.payer_htlc_key);
                })
                .record(2, |w| {
                    w.script(&o.payer_script);
                })
                .record(4, |w| {
                    w.amount(o.refund_fee);
                })
                .record(6, |w| {
                    w.transaction(&o.funding_tx).u32(o.funding_vout);
                });
                write_payment(&mut t, &o.first_payment, 8);
                t.finish()
            }
            Msg::Payment(p) => {
                let mut t = TlvWriter::new(K_PAYMENT, VERSION);
                write_payment(&mut t, p, 0);
                t.finish()
            }
            Msg::Ack { number } => single_record(K_ACK, VERSION, |w| {
                w.u64(*number);
            }),
            Msg::Fulfill { id, preimage } => single_record(K_FULFILL, VERSION, |w| {
                w.u64(*id).bytes(&preimage.0);
            }),
            Msg::Fail { id } => single_record(K_FAIL, VERSION, |w| {
                w.u64(*id);
            }),
            Msg::CloseRequest => TlvWriter::new(K_CLOSE_REQUEST, VERSION).finish(),
            Msg::Closed { txid } => single_record(K_CLOSED, VERSION, |w| {
                w.txid(txid);
            }),
            Msg::Reestablish(r) => {
                let mut t = TlvWriter::new(K_REESTABLISH, VERSION);
                t.record(0, |w| {
                    w.u64(r.number);
                })
                .record(2, |w| {
                    w.u64_list(&r.resolved);
                });
                if let Some(p) = &r.your_payment {
                    write_payment(&mut t, p, 4);
                }
                t.finish()
            }
        }
    }

    /// Decodes a message, rejecting truncation, trailing bytes, unknown versions and kinds,
    /// unknown even fields and invalid values.
    ///
    /// # Errors
    /// [`DecodeError`] naming the problem.
    pub fn decode(bytes: &[u8]) -> Result<Msg, DecodeError> {
        let (kind, tlv) = read_message(bytes, VERSION)?;
        Msg::decode_records(kind, tlv)
    }

    fn decode_records(kind: u8, tlv: TlvReader<'_>) -> Result<Msg, DecodeError> {
        match kind {
            K_OFFER => {
                let (mut variant, mut payee_key, mut payee_htlc_key, mut payee_script, mut expiry) =
                    (None, None, None, None, None);
                let (mut amounts, mut margins) = (None, None);
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => {
                            variant = Some(match r.u8()? {
                                0 => Variant::Cltv,
                                1 => Variant::PresignedRefund,
                                _ => return Err(DecodeError::InvalidValue("variant")),
                            })
                        }
                        2 => payee_key = Some(r.pubkey("payee_key")?),
                        4 => payee_htlc_key = Some(r.pubkey("payee_htlc_key")?),
                        6 => payee_script = Some(r.script()?),
                        8 => expiry = Some(BlockHeight(r.u32()?)),
                        10 => {
                            amounts = Some((
                                r.amount("min_first_payment")?,
                                r.amount("dust_limit")?,
                                r.amount("payment_fee")?,
                            ))
                        }
                        12 => margins = Some((r.u32()?, r.u32()?)),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let (min_first_payment, dust_limit, payment_fee) = required(amounts, "amounts")?;
                let (close_margin, htlc_min_blocks) = required(margins, "margins")?;
                Ok(Msg::Offer(Offer {
                    variant: required(variant, "variant")?,
                    payee_key: required(payee_key, "payee_key")?,
                    payee_htlc_key: required(payee_htlc_key, "payee_htlc_key")?,
                    payee_script: required(payee_script, "payee_script")?,
                    expiry: required(expiry, "expiry")?,
                    min_first_payment,
                    dust_limit,
                    payment_fee,
                    close_margin,
                    htlc_min_blocks,
                }))
            }
            K_REFUND_REQUEST => {
                let (mut keys, mut script, mut funding) = (None, None, None);
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => keys = Some((r.pubkey("payer_key")?, r.pubkey("payer_htlc_key")?)),
                        2 => script = Some(r.script()?),
                        4 => funding = Some((r.outpoint()?, r.amount("capacity")?, r.amount("refund_fee")?)),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let (payer_key, payer_htlc_key) = required(keys, "keys")?;
                let (funding_outpoint, capacity, refund_fee) = required(funding, "funding")?;
                Ok(Msg::RefundRequest(RefundRequest {
                    payer_key,
                    payer_htlc_key,
                    payer_script: required(script, "payer_script")?,
                    funding_outpoint,
                    capacity,
                    refund_fee,
                }))
            }
            K_REFUND_SIGNED => {
                let signature = read_single_record(tlv, "signature", |r| r.bitcoin_signature("refund signature"))?;
                Ok(Msg::RefundSigned(RefundSigned { signature }))
            }
            K_OPEN => {
                let (mut keys, mut script, mut refund_fee, mut funding) = (None, None, None, None);
                let mut payment = PaymentFields::default();
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => keys = Some((r.pubkey("payer_key")?, r.pubkey("payer_htlc_key")?)),
                        2 => script = Some(r.script()?),
                        4 => refund_fee = Some(r.amount("refund_fee")?),
                        6 => funding = Some((r.transaction("funding_tx")?, r.u32()?)),
                        8.. => return payment.read(ty - 8, r),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let (payer_key, payer_htlc_key) = required(keys, "keys")?;
                let (funding_tx, funding_vout) = required(funding, "funding")?;
                Ok(Msg::Open(Open {
                    payer_key,
                    payer_htlc_key,
                    payer_script: required(script, "payer_script")?,
                    refund_fee: required(refund_fee, "refund_fee")?,
                    funding_tx,
                    funding_vout,
                    first_payment: payment.finish()?,
                }))
            }
            K_PAYMENT => {
                let mut payment = PaymentFields::default();
                tlv.for_each(|ty, r| payment.read(ty, r))?;
                Ok(Msg::Payment(payment.finish()?))
            }
            K_ACK => Ok(Msg::Ack { number: read_single_record(tlv, "number", |r| r.u64())? }),
            K_FAIL => Ok(Msg::Fail { id: read_single_record(tlv, "id", |r| r.u64())? }),
            K_FULFILL => {
                let (id, preimage) =
                    read_single_record(tlv, "fulfill", |r| Ok((r.u64()?, PaymentPreimage(r.array()?))))?;
                Ok(Msg::Fulfill { id, preimage })
            }
            K_CLOSE_REQUEST => {
                tlv.for_each(|_, _| Ok(false))?;
                Ok(Msg::CloseRequest)
            }
            K_CLOSED => Ok(Msg::Closed { txid: read_single_record(tlv, "txid", |r| r.txid())? }),
            K_REESTABLISH => {
                let (mut number, mut resolved) = (None, None);
                let mut payment = PaymentFields::default();
                let mut has_payment = false;
                tlv.for_each(|ty, r| {
                    match ty {
                        0 => number = Some(r.u64()?),
                        2 => resolved = Some(r.u64_list()?),
                        4.. => {
                            let known = payment.read(ty - 4, r)?;
                            has_payment |= known;
                            return Ok(known);
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Msg::Reestablish(Reestablish {
                    number: required(number, "number")?,
                    resolved: required(resolved, "resolved")?,
                    your_payment: if has_payment { Some(payment.finish()?) } else { None },
                }))
            }
            _ => Err(DecodeError::WrongKind { expected: K_OFFER, got: kind }),
        }
    }
}

impl crate::core::wire::sealed::Sealed for Msg {}

impl LayerMsg for Msg {
    /// Version 1 with the channel id after the header.
    const ADDRESSED_VERSION: u8 = 2;

    fn encode(&self) -> Vec<u8> {
        Msg::encode(self)
    }

    fn decode_records(kind: u8, tlv: TlvReader<'_>) -> Result<Self, DecodeError> {
        Msg::decode_records(kind, tlv)
    }

    fn is_setup(&self) -> bool {
        matches!(self, Msg::Offer(_) | Msg::RefundRequest(_) | Msg::RefundSigned(_) | Msg::Open(_))
    }
}

/// The temporary id of a Spilman channel: from the payee's keys in its [`Offer`].
fn temporary_id(payee_key: &PublicKey, payee_htlc_key: &PublicKey) -> ChannelId {
    temporary_channel_id("spilman", &[payee_key, payee_htlc_key])
}

/// Refuses a message addressed to another channel.
fn check_address(msg: &Addressed<Msg>, temporary: ChannelId, funded: Option<ChannelId>) -> Result<(), PeerError> {
    if msg.is_for(temporary, funded) {
        Ok(())
    } else {
        Err(peer_error(Misbehaviour::WrongChannel))
    }
}

impl Payer {
    /// The channel's temporary id, used by the setup messages (from the payee's keys in the
    /// [`Offer`]); [`Payer::channel_id`] once funded.
    pub fn temporary_channel_id(&self) -> ChannelId {
        temporary_id(&self.offer.payee_key, &self.offer.payee_htlc_key)
    }

    /// Addresses a message this payer sends (from [`Effects::send`](crate::driving::Effects::send))
    /// to its channel, for a peer that may share several channels.
    pub fn address(&self, msg: Msg) -> Addressed<Msg> {
        Addressed::new(msg, self.temporary_channel_id(), self.channel_id())
    }

    /// [`Payer::handle_message`] for an addressed message: one addressed to another channel
    /// is refused before anything else.
    ///
    /// # Errors
    /// [`Misbehaviour::WrongChannel`] (the channel unchanged) if `msg` is addressed to neither
    /// this channel's temporary id nor its funded id; otherwise as [`Payer::handle_message`].
    pub fn handle_addressed<S: Signer + ?Sized>(
        &mut self,
        msg: Addressed<Msg>,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        check_address(&msg, self.temporary_channel_id(), self.channel_id())?;
        self.handle_message(msg.msg, signer, tip)
    }
}

impl Payee {
    /// The channel's temporary id, used by the setup messages (from this payee's keys in its
    /// [`Offer`]); [`Payee::channel_id`] once the funding outpoint is known.
    pub fn temporary_channel_id(&self) -> ChannelId {
        temporary_id(&self.payee_key, &self.payee_htlc_key)
    }

    /// Addresses a message this payee sends (from [`Effects::send`](crate::driving::Effects::send))
    /// to its channel, for a peer that may share several channels.
    pub fn address(&self, msg: Msg) -> Addressed<Msg> {
        Addressed::new(msg, self.temporary_channel_id(), self.channel_id())
    }

    /// [`Payee::handle_message`] for an addressed message: one addressed to another channel
    /// is refused before anything else.
    ///
    /// # Errors
    /// [`Misbehaviour::WrongChannel`] (the channel unchanged) if `msg` is addressed to neither
    /// this channel's temporary id nor its funded id; otherwise as [`Payee::handle_message`].
    pub fn handle_addressed<S: Signer + ?Sized>(
        &mut self,
        msg: Addressed<Msg>,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        check_address(&msg, self.temporary_channel_id(), self.channel_id())?;
        self.handle_message(msg.msg, signer, tip)
    }
}
