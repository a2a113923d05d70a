//! BOLT #1/#2 wire messages of the channel protocol: a 2-byte big-endian type, fixed big-endian
//! fields, compact (64-byte) signatures, and a trailing TLV extension stream read with the
//! even/odd rule (unknown odd types are skipped, unknown even types rejected). The 1366-byte
//! onion of `update_add_htlc` is carried opaque.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa::Signature, PublicKey};
use bitcoin::{Amount, ScriptBuf, Txid};

use crate::core::encode::{DecodeError, Reader, TlvReader, Writer};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::keys::PerCommitmentSecret;
use crate::core::units::MilliSats;
use crate::driving::ChannelId;

/// Size of the onion routing packet carried by `update_add_htlc`.
pub const ONION_PACKET_LEN: usize = 1366;

/// The opaque onion routing packet (BOLT #4), 1366 bytes.
///
/// Shared, not copied: cloning one (as a channel does for each HTLC when it validates an update
/// on a copy of its state) only counts a reference.
///
/// ```
/// use paychan::lightning::{msgs::ONION_PACKET_LEN, OnionPacket};
/// let mut a = OnionPacket::new([7; ONION_PACKET_LEN]);
/// let b = a.clone();
/// a.bytes_mut()[0] = 8; // copy on write: `b` is unchanged
/// assert_eq!((a.as_bytes()[0], b.as_bytes()[0]), (8, 7));
/// assert!(OnionPacket::from_slice(&[0; ONION_PACKET_LEN - 1]).is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct OnionPacket(Arc<[u8; ONION_PACKET_LEN]>);

impl OnionPacket {
    /// A packet of these bytes.
    pub fn new(bytes: [u8; ONION_PACKET_LEN]) -> Self {
        OnionPacket(Arc::new(bytes))
    }

    /// A packet of these bytes, if there are exactly [`ONION_PACKET_LEN`] of them.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != ONION_PACKET_LEN {
            return None;
        }
        let mut packet = Self::zeroed();
        packet.bytes_mut().copy_from_slice(bytes);
        Some(packet)
    }

    /// An all-zero packet (for tests and final hops that carry no onion).
    pub fn zeroed() -> Self {
        OnionPacket(Arc::new([0u8; ONION_PACKET_LEN]))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; ONION_PACKET_LEN] {
        &self.0
    }

    /// Its bytes, to change (copied first if the packet is shared).
    pub fn bytes_mut(&mut self) -> &mut [u8; ONION_PACKET_LEN] {
        Arc::make_mut(&mut self.0)
    }
}

impl core::fmt::Debug for OnionPacket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "OnionPacket({} bytes)", ONION_PACKET_LEN)
    }
}

/// Feature bit of `option_static_remotekey` in `channel_type`.
pub const FEATURE_STATIC_REMOTEKEY: u16 = 12;
/// Feature bit of `option_anchors_zero_fee_htlc_tx` in `channel_type`.
pub const FEATURE_ANCHORS_ZERO_FEE_HTLC: u16 = 22;

/// The TLV extension fields this crate understands on `open_channel`/`accept_channel`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct OpenTlvs {
    /// `upfront_shutdown_script` (type 0).
    pub upfront_shutdown_script: Option<ScriptBuf>,
    /// `channel_type` (type 1): a feature bit vector.
    pub channel_type: Option<Vec<u8>>,
}

/// `open_channel` (type 32).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenChannel {
    /// The chain (genesis block hash).
    pub chain_hash: [u8; 32],
    /// Identifies the channel until funding.
    pub temporary_channel_id: ChannelId,
    /// Channel capacity.
    pub funding_satoshis: Amount,
    /// Amount given to the acceptor at open.
    pub push_msat: MilliSats,
    /// Opener's dust limit.
    pub dust_limit_satoshis: Amount,
    /// Cap on the acceptor's HTLCs in flight to the opener.
    pub max_htlc_value_in_flight_msat: MilliSats,
    /// Reserve the acceptor must keep.
    pub channel_reserve_satoshis: Amount,
    /// Smallest HTLC the opener accepts.
    pub htlc_minimum_msat: MilliSats,
    /// Initial fee rate.
    pub feerate_per_kw: u32,
    /// Delay on the acceptor's own outputs.
    pub to_self_delay: u16,
    /// Most HTLCs the opener accepts.
    pub max_accepted_htlcs: u16,
    /// Opener's funding key.
    pub funding_pubkey: PublicKey,
    /// Opener's revocation basepoint.
    pub revocation_basepoint: PublicKey,
    /// Opener's payment basepoint.
    pub payment_basepoint: PublicKey,
    /// Opener's delayed payment basepoint.
    pub delayed_payment_basepoint: PublicKey,
    /// Opener's HTLC basepoint.
    pub htlc_basepoint: PublicKey,
    /// Opener's first per-commitment point.
    pub first_per_commitment_point: PublicKey,
    /// Bit 0: announce the channel.
    pub channel_flags: u8,
    /// Extensions.
    pub tlvs: OpenTlvs,
}

/// `accept_channel` (type 33).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AcceptChannel {
    /// From `open_channel`.
    pub temporary_channel_id: ChannelId,
    /// Acceptor's dust limit.
    pub dust_limit_satoshis: Amount,
    /// Cap on the opener's HTLCs in flight to the acceptor.
    pub max_htlc_value_in_flight_msat: MilliSats,
    /// Reserve the opener must keep.
    pub channel_reserve_satoshis: Amount,
    /// Smallest HTLC the acceptor accepts.
    pub htlc_minimum_msat: MilliSats,
    /// Confirmations the acceptor wants before `channel_ready`.
    pub minimum_depth: u32,
    /// Delay on the opener's own outputs.
    pub to_self_delay: u16,
    /// Most HTLCs the acceptor accepts.
    pub max_accepted_htlcs: u16,
    /// Acceptor's funding key.
    pub funding_pubkey: PublicKey,
    /// Acceptor's revocation basepoint.
    pub revocation_basepoint: PublicKey,
    /// Acceptor's payment basepoint.
    pub payment_basepoint: PublicKey,
    /// Acceptor's delayed payment basepoint.
    pub delayed_payment_basepoint: PublicKey,
    /// Acceptor's HTLC basepoint.
    pub htlc_basepoint: PublicKey,
    /// Acceptor's first per-commitment point.
    pub first_per_commitment_point: PublicKey,
    /// Extensions.
    pub tlvs: OpenTlvs,
}

/// A Lightning channel message.
#[derive(Clone, PartialEq, Eq, Debug)]
#[allow(missing_docs)] // fields are named as in BOLT #2
pub enum Msg {
    /// `open_channel` (32).
    OpenChannel(Box<OpenChannel>),
    /// `accept_channel` (33).
    AcceptChannel(Box<AcceptChannel>),
    /// `funding_created` (34).
    FundingCreated {
        temporary_channel_id: ChannelId,
        funding_txid: Txid,
        funding_output_index: u16,
        signature: Signature,
    },
    /// `funding_signed` (35).
    FundingSigned { channel_id: ChannelId, signature: Signature },
    /// `channel_ready` (36).
    ChannelReady { channel_id: ChannelId, second_per_commitment_point: PublicKey },
    /// `shutdown` (38).
    Shutdown { channel_id: ChannelId, scriptpubkey: ScriptBuf },
    /// `closing_signed` (39), with the optional `fee_range` TLV.
    ClosingSigned {
        channel_id: ChannelId,
        fee_satoshis: Amount,
        signature: Signature,
        fee_range: Option<(Amount, Amount)>,
    },
    /// `update_add_htlc` (128).
    UpdateAddHtlc {
        channel_id: ChannelId,
        id: u64,
        amount_msat: MilliSats,
        payment_hash: PaymentHash,
        cltv_expiry: u32,
        onion_routing_packet: OnionPacket,
    },
    /// `update_fulfill_htlc` (130).
    UpdateFulfillHtlc { channel_id: ChannelId, id: u64, payment_preimage: PaymentPreimage },
    /// `update_fail_htlc` (131).
    UpdateFailHtlc { channel_id: ChannelId, id: u64, reason: Vec<u8> },
    /// `commitment_signed` (132).
    CommitmentSigned { channel_id: ChannelId, signature: Signature, htlc_signatures: Vec<Signature> },
    /// `revoke_and_ack` (133).
    RevokeAndAck {
        channel_id: ChannelId,
        per_commitment_secret: PerCommitmentSecret,
        next_per_commitment_point: PublicKey,
    },
    /// `update_fee` (134).
    UpdateFee { channel_id: ChannelId, feerate_per_kw: u32 },
    /// `update_fail_malformed_htlc` (135).
    UpdateFailMalformedHtlc { channel_id: ChannelId, id: u64, sha256_of_onion: [u8; 32], failure_code: u16 },
    /// `error` (17, BOLT #1): the sender failed the channel (all channels for the zero id). `data`
    /// is the peer's free text, untrusted.
    Error { channel_id: ChannelId, data: Vec<u8> },
    /// `warning` (1, BOLT #1): the sender tells of a problem but fails nothing; usually it
    /// disconnects next and the channel resumes with `channel_reestablish`. The zero id means the
    /// connection rather than one channel. `data` is free text, untrusted.
    Warning { channel_id: ChannelId, data: Vec<u8> },
    /// `channel_reestablish` (136).
    ChannelReestablish {
        channel_id: ChannelId,
        next_commitment_number: u64,
        next_revocation_number: u64,
        your_last_per_commitment_secret: PerCommitmentSecret,
        my_current_per_commitment_point: PublicKey,
    },
}

/// Message type numbers.
pub mod types {
    #![allow(missing_docs)]
    pub const WARNING: u16 = 1;
    pub const ERROR: u16 = 17;
    pub const OPEN_CHANNEL: u16 = 32;
    pub const ACCEPT_CHANNEL: u16 = 33;
    pub const FUNDING_CREATED: u16 = 34;
    pub const FUNDING_SIGNED: u16 = 35;
    pub const CHANNEL_READY: u16 = 36;
    pub const SHUTDOWN: u16 = 38;
    pub const CLOSING_SIGNED: u16 = 39;
    pub const UPDATE_ADD_HTLC: u16 = 128;
    pub const UPDATE_FULFILL_HTLC: u16 = 130;
    pub const UPDATE_FAIL_HTLC: u16 = 131;
    pub const COMMITMENT_SIGNED: u16 = 132;
    pub const REVOKE_AND_ACK: u16 = 133;
    pub const UPDATE_FEE: u16 = 134;
    pub const UPDATE_FAIL_MALFORMED_HTLC: u16 = 135;
    pub const CHANNEL_REESTABLISH: u16 = 136;
}

fn write_open_tlvs(w: &mut Writer, t: &OpenTlvs) {
    if let Some(s) = &t.upfront_shutdown_script {
        w.bigsize(0).var_bytes(s.as_bytes());
    }
    if let Some(ct) = &t.channel_type {
        w.bigsize(1).var_bytes(ct);
    }
}

fn read_open_tlvs(r: Reader<'_>) -> Result<OpenTlvs, DecodeError> {
    let mut out = OpenTlvs::default();
    let bytes = r.take_rest();
    TlvReader::new(bytes).for_each(|ty, v| {
        match ty {
            0 => out.upfront_shutdown_script = Some(ScriptBuf::from_bytes(v.take(v.remaining())?.to_vec())),
            1 => out.channel_type = Some(v.take(v.remaining())?.to_vec()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(out)
}

/// Reads a TLV stream nobody extends yet: only odd unknown types are allowed.
fn read_empty_tlvs(r: Reader<'_>) -> Result<(), DecodeError> {
    TlvReader::new(r.take_rest()).for_each(|_, _| Ok(false))
}

fn channel_id(r: &mut Reader<'_>) -> Result<ChannelId, DecodeError> {
    Ok(ChannelId(r.array()?))
}

fn msat(r: &mut Reader<'_>) -> Result<MilliSats, DecodeError> {
    Ok(MilliSats::from_msat(r.u64()?))
}

fn sat(r: &mut Reader<'_>, field: &'static str) -> Result<Amount, DecodeError> {
    r.amount(field)
}

impl Msg {
    /// The channel the message is for, so that an embedder with many channels per peer can
    /// route it without matching every variant: the `temporary_channel_id` for
    /// `open_channel`, `accept_channel` and `funding_created`, the channel id otherwise
    /// ([`ChannelId::ZERO`] in an `error` or `warning` about the whole connection).
    ///
    /// ```
    /// use paychan::driving::ChannelId;
    /// use paychan::lightning::Msg;
    ///
    /// let m = Msg::UpdateFee { channel_id: ChannelId([7; 32]), feerate_per_kw: 253 };
    /// assert_eq!(m.channel_id(), ChannelId([7; 32]));
    /// ```
    pub fn channel_id(&self) -> ChannelId {
        match self {
            Msg::OpenChannel(m) => m.temporary_channel_id,
            Msg::AcceptChannel(m) => m.temporary_channel_id,
            Msg::FundingCreated { temporary_channel_id, .. } => *temporary_channel_id,
            Msg::FundingSigned { channel_id, .. }
            | Msg::ChannelReady { channel_id, .. }
            | Msg::Shutdown { channel_id, .. }
            | Msg::ClosingSigned { channel_id, .. }
            | Msg::UpdateAddHtlc { channel_id, .. }
            | Msg::UpdateFulfillHtlc { channel_id, .. }
            | Msg::UpdateFailHtlc { channel_id, .. }
            | Msg::CommitmentSigned { channel_id, .. }
            | Msg::RevokeAndAck { channel_id, .. }
            | Msg::UpdateFee { channel_id, .. }
            | Msg::UpdateFailMalformedHtlc { channel_id, .. }
            | Msg::ChannelReestablish { channel_id, .. }
            | Msg::Error { channel_id, .. }
            | Msg::Warning { channel_id, .. } => *channel_id,
        }
    }

    /// The BOLT message type number.
    pub fn type_number(&self) -> u16 {
        use types::*;
        match self {
            Msg::OpenChannel(_) => OPEN_CHANNEL,
            Msg::AcceptChannel(_) => ACCEPT_CHANNEL,
            Msg::FundingCreated { .. } => FUNDING_CREATED,
            Msg::FundingSigned { .. } => FUNDING_SIGNED,
            Msg::ChannelReady { .. } => CHANNEL_READY,
            Msg::Shutdown { .. } => SHUTDOWN,
            Msg::ClosingSigned { .. } => CLOSING_SIGNED,
            Msg::UpdateAddHtlc { .. } => UPDATE_ADD_HTLC,
            Msg::UpdateFulfillHtlc { .. } => UPDATE_FULFILL_HTLC,
            Msg::UpdateFailHtlc { .. } => UPDATE_FAIL_HTLC,
            Msg::CommitmentSigned { .. } => COMMITMENT_SIGNED,
            Msg::RevokeAndAck { .. } => REVOKE_AND_ACK,
            Msg::UpdateFee { .. } => UPDATE_FEE,
            Msg::UpdateFailMalformedHtlc { .. } => UPDATE_FAIL_MALFORMED_HTLC,
            Msg::ChannelReestablish { .. } => CHANNEL_REESTABLISH,
            Msg::Error { .. } => ERROR,
            Msg::Warning { .. } => WARNING,
        }
    }

    /// Encodes the message in the BOLT wire format (type included).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.u16(self.type_number());
        match self {
            Msg::OpenChannel(m) => {
                w.bytes(&m.chain_hash).bytes(&m.temporary_channel_id.0);
                w.amount(m.funding_satoshis).u64(m.push_msat.to_msat()).amount(m.dust_limit_satoshis);
                w.u64(m.max_htlc_value_in_flight_msat.to_msat()).amount(m.channel_reserve_satoshis);
                w.u64(m.htlc_minimum_msat.to_msat())
                    .u32(m.feerate_per_kw)
                    .u16(m.to_self_delay)
                    .u16(m.max_accepted_htlcs);
                for k in [
                    &m.funding_pubkey,
                    &m.revocation_basepoint,
                    &m.payment_basepoint,
                    &m.delayed_payment_basepoint,
                    &m.htlc_basepoint,
                    &m.first_per_commitment_point,
                ] {
                    w.pubkey(k);
                }
                w.u8(m.channel_flags);
                write_open_tlvs(&mut w, &m.tlvs);
            }
            Msg::AcceptChannel(m) => {
                w.bytes(&m.temporary_channel_id.0).amount(m.dust_limit_satoshis);
                w.u64(m.max_htlc_value_in_flight_msat.to_msat()).amount(m.channel_reserve_satoshis);
                w.u64(m.htlc_minimum_msat.to_msat())
                    .u32(m.minimum_depth)
                    .u16(m.to_self_delay)
                    .u16(m.max_accepted_htlcs);
                for k in [
                    &m.funding_pubkey,
                    &m.revocation_basepoint,
                    &m.payment_basepoint,
                    &m.delayed_payment_basepoint,
                    &m.htlc_basepoint,
                    &m.first_per_commitment_point,
                ] {
                    w.pubkey(k);
                }
                write_open_tlvs(&mut w, &m.tlvs);
            }
            Msg::FundingCreated { temporary_channel_id, funding_txid, funding_output_index, signature } => {
                w.bytes(&temporary_channel_id.0).txid(funding_txid).u16(*funding_output_index).signature(signature);
            }
            Msg::FundingSigned { channel_id, signature } => {
                w.bytes(&channel_id.0).signature(signature);
            }
            Msg::ChannelReady { channel_id, second_per_commitment_point } => {
                w.bytes(&channel_id.0).pubkey(second_per_commitment_point);
            }
            Msg::Shutdown { channel_id, scriptpubkey } => {
                w.bytes(&channel_id.0).u16(scriptpubkey.len() as u16).bytes(scriptpubkey.as_bytes());
            }
            Msg::ClosingSigned { channel_id, fee_satoshis, signature, fee_range } => {
                w.bytes(&channel_id.0).amount(*fee_satoshis).signature(signature);
                if let Some((min, max)) = fee_range {
                    w.bigsize(1).bigsize(16).amount(*min).amount(*max);
                }
            }
            Msg::UpdateAddHtlc { channel_id, id, amount_msat, payment_hash, cltv_expiry, onion_routing_packet } => {
                w.bytes(&channel_id.0).u64(*id).u64(amount_msat.to_msat()).bytes(&payment_hash.0).u32(*cltv_expiry);
                w.bytes(onion_routing_packet.as_bytes());
            }
            Msg::UpdateFulfillHtlc { channel_id, id, payment_preimage } => {
                w.bytes(&channel_id.0).u64(*id).bytes(&payment_preimage.0);
            }
            Msg::UpdateFailHtlc { channel_id, id, reason } => {
                w.bytes(&channel_id.0).u64(*id).u16(reason.len() as u16).bytes(reason);
            }
            Msg::CommitmentSigned { channel_id, signature, htlc_signatures } => {
                w.bytes(&channel_id.0).signature(signature).u16(htlc_signatures.len() as u16);
                for s in htlc_signatures {
                    w.signature(s);
                }
            }
            Msg::RevokeAndAck { channel_id, per_commitment_secret, next_per_commitment_point } => {
                w.bytes(&channel_id.0).bytes(per_commitment_secret.as_bytes()).pubkey(next_per_commitment_point);
            }
            Msg::UpdateFee { channel_id, feerate_per_kw } => {
                w.bytes(&channel_id.0).u32(*feerate_per_kw);
            }
            Msg::UpdateFailMalformedHtlc { channel_id, id, sha256_of_onion, failure_code } => {
                w.bytes(&channel_id.0).u64(*id).bytes(sha256_of_onion).u16(*failure_code);
            }
            Msg::ChannelReestablish {
                channel_id,
                next_commitment_number,
                next_revocation_number,
                your_last_per_commitment_secret,
                my_current_per_commitment_point,
            } => {
                w.bytes(&channel_id.0).u64(*next_commitment_number).u64(*next_revocation_number);
                w.bytes(your_last_per_commitment_secret.as_bytes()).pubkey(my_current_per_commitment_point);
            }
            Msg::Error { channel_id, data } | Msg::Warning { channel_id, data } => {
                // At most 65,535 bytes fit the length field; longer text is cut.
                let data = data.get(..usize::from(u16::MAX)).unwrap_or(data);
                w.bytes(&channel_id.0).u16(data.len() as u16).bytes(data);
            }
        }
        w.into_bytes()
    }

    /// Decodes a message. Truncation, invalid field values (keys, signatures, amounts), unknown
    /// even TLVs and unknown message types are typed errors; unknown odd TLVs are skipped.
    ///
    /// # Errors
    /// [`DecodeError`] naming the problem. An unknown message type is
    /// [`DecodeError::UnknownMessageType`] with the full type number (BOLT #1: ignore it if odd,
    /// fail the connection if even).
    pub fn decode(bytes: &[u8]) -> Result<Msg, DecodeError> {
        use types::*;
        let mut r = Reader::new(bytes);
        let ty = r.u16()?;
        let msg = match ty {
            OPEN_CHANNEL => {
                let chain_hash = r.array()?;
                let temporary_channel_id = channel_id(&mut r)?;
                let funding_satoshis = sat(&mut r, "funding_satoshis")?;
                let push_msat = msat(&mut r)?;
                let dust_limit_satoshis = sat(&mut r, "dust_limit_satoshis")?;
                let max_htlc_value_in_flight_msat = msat(&mut r)?;
                let channel_reserve_satoshis = sat(&mut r, "channel_reserve_satoshis")?;
                let htlc_minimum_msat = msat(&mut r)?;
                let feerate_per_kw = r.u32()?;
                let to_self_delay = r.u16()?;
                let max_accepted_htlcs = r.u16()?;
                let funding_pubkey = r.pubkey("funding_pubkey")?;
                let revocation_basepoint = r.pubkey("revocation_basepoint")?;
                let payment_basepoint = r.pubkey("payment_basepoint")?;
                let delayed_payment_basepoint = r.pubkey("delayed_payment_basepoint")?;
                let htlc_basepoint = r.pubkey("htlc_basepoint")?;
                let first_per_commitment_point = r.pubkey("first_per_commitment_point")?;
                let channel_flags = r.u8()?;
                let tlvs = read_open_tlvs(r)?;
                return Ok(Msg::OpenChannel(Box::new(OpenChannel {
                    chain_hash,
                    temporary_channel_id,
                    funding_satoshis,
                    push_msat,
                    dust_limit_satoshis,
                    max_htlc_value_in_flight_msat,
                    channel_reserve_satoshis,
                    htlc_minimum_msat,
                    feerate_per_kw,
                    to_self_delay,
                    max_accepted_htlcs,
                    funding_pubkey,
                    revocation_basepoint,
                    payment_basepoint,
                    delayed_payment_basepoint,
                    htlc_basepoint,
                    first_per_commitment_point,
                    channel_flags,
                    tlvs,
                })));
            }
            ACCEPT_CHANNEL => {
                let temporary_channel_id = channel_id(&mut r)?;
                let dust_limit_satoshis = sat(&mut r, "dust_limit_satoshis")?;
                let max_htlc_value_in_flight_msat = msat(&mut r)?;
                let channel_reserve_satoshis = sat(&mut r, "channel_reserve_satoshis")?;
                let htlc_minimum_msat = msat(&mut r)?;
                let minimum_depth = r.u32()?;
                let to_self_delay = r.u16()?;
                let max_accepted_htlcs = r.u16()?;
                let funding_pubkey = r.pubkey("funding_pubkey")?;
                let revocation_basepoint = r.pubkey("revocation_basepoint")?;
                let payment_basepoint = r.pubkey("payment_basepoint")?;
                let delayed_payment_basepoint = r.pubkey("delayed_payment_basepoint")?;
                let htlc_basepoint = r.pubkey("htlc_basepoint")?;
                let first_per_commitment_point = r.pubkey("first_per_commitment_point")?;
                let tlvs = read_open_tlvs(r)?;
                return Ok(Msg::AcceptChannel(Box::new(AcceptChannel {
                    temporary_channel_id,
                    dust_limit_satoshis,
                    max_htlc_value_in_flight_msat,
                    channel_reserve_satoshis,
                    htlc_minimum_msat,
                    minimum_depth,
                    to_self_delay,
                    max_accepted_htlcs,
                    funding_pubkey,
                    revocation_basepoint,
                    payment_basepoint,
                    delayed_payment_basepoint,
                    htlc_basepoint,
                    first_per_commitment_point,
                    tlvs,
                })));
            }
            FUNDING_CREATED => Msg::FundingCreated {
                temporary_channel_id: channel_id(&mut r)?,
                funding_txid: r.txid()?,
                funding_output_index: r.u16()?,
                signature: r.signature("signature")?,
            },
            FUNDING_SIGNED => {
                Msg::FundingSigned { channel_id: channel_id(&mut r)?, signature: r.signature("signature")? }
            }
            CHANNEL_READY => Msg::ChannelReady {
                channel_id: channel_id(&mut r)?,
                second_per_commitment_point: r.pubkey("second_per_commitment_point")?,
            },
            SHUTDOWN => {
                let channel_id = channel_id(&mut r)?;
                let len = r.u16()?;
                let scriptpubkey = ScriptBuf::from_bytes(r.take(usize::from(len))?.to_vec());
                Msg::Shutdown { channel_id, scriptpubkey }
            }
            CLOSING_SIGNED => {
                let channel_id = channel_id(&mut r)?;
                let fee_satoshis = sat(&mut r, "fee_satoshis")?;
                let signature = r.signature("signature")?;
                let mut fee_range = None;
                TlvReader::new(r.take_rest()).for_each(|ty, v| {
                    if ty != 1 {
                        return Ok(false);
                    }
                    let min = v.amount("min_fee_satoshis")?;
                    let max = v.amount("max_fee_satoshis")?;
                    if min > max {
                        return Err(DecodeError::InvalidValue("fee_range"));
                    }
                    fee_range = Some((min, max));
                    Ok(true)
                })?;
                return Ok(Msg::ClosingSigned { channel_id, fee_satoshis, signature, fee_range });
            }
            UPDATE_ADD_HTLC => {
                let channel_id = channel_id(&mut r)?;
                let id = r.u64()?;
                let amount_msat = msat(&mut r)?;
                let payment_hash = PaymentHash(r.array()?);
                let cltv_expiry = r.u32()?;
                let onion = OnionPacket::from_slice(r.take(ONION_PACKET_LEN)?).ok_or(DecodeError::Truncated)?;
                Msg::UpdateAddHtlc {
                    channel_id,
                    id,
                    amount_msat,
                    payment_hash,
                    cltv_expiry,
                    onion_routing_packet: onion,
                }
            }
            UPDATE_FULFILL_HTLC => Msg::UpdateFulfillHtlc {
                channel_id: channel_id(&mut r)?,
                id: r.u64()?,
                payment_preimage: PaymentPreimage(r.array()?),
            },
            UPDATE_FAIL_HTLC => {
                let channel_id = channel_id(&mut r)?;
                let id = r.u64()?;
                let len = r.u16()?;
                let reason = r.take(usize::from(len))?.to_vec();
                Msg::UpdateFailHtlc { channel_id, id, reason }
            }
            COMMITMENT_SIGNED => {
                let channel_id = channel_id(&mut r)?;
                let signature = r.signature("signature")?;
                let n = r.u16()?;
                if usize::from(n) * 64 > r.remaining() {
                    return Err(DecodeError::Truncated);
                }
                let mut htlc_signatures = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    htlc_signatures.push(r.signature("htlc_signature")?);
                }
                Msg::CommitmentSigned { channel_id, signature, htlc_signatures }
            }
            REVOKE_AND_ACK => Msg::RevokeAndAck {
                channel_id: channel_id(&mut r)?,
                per_commitment_secret: PerCommitmentSecret::from_bytes(r.array()?),
                next_per_commitment_point: r.pubkey("next_per_commitment_point")?,
            },
            UPDATE_FEE => Msg::UpdateFee { channel_id: channel_id(&mut r)?, feerate_per_kw: r.u32()? },
            UPDATE_FAIL_MALFORMED_HTLC => Msg::UpdateFailMalformedHtlc {
                channel_id: channel_id(&mut r)?,
                id: r.u64()?,
                sha256_of_onion: r.array()?,
                failure_code: r.u16()?,
            },
            CHANNEL_REESTABLISH => Msg::ChannelReestablish {
                channel_id: channel_id(&mut r)?,
                next_commitment_number: r.u64()?,
                next_revocation_number: r.u64()?,
                your_last_per_commitment_secret: PerCommitmentSecret::from_bytes(r.array()?),
                my_current_per_commitment_point: r.pubkey("my_current_per_commitment_point")?,
            },
            ERROR | WARNING => {
                let channel_id = channel_id(&mut r)?;
                let len = r.u16()?;
                let data = r.take(usize::from(len))?.to_vec();
                if ty == ERROR {
                    Msg::Error { channel_id, data }
                } else {
                    Msg::Warning { channel_id, data }
                }
            }
            other => return Err(DecodeError::UnknownMessageType(other)),
        };
        read_empty_tlvs(r)?;
        Ok(msg)
    }
}

impl ChannelId {
    /// The all-zero id (used by messages that concern every channel).
    pub const ZERO: ChannelId = ChannelId([0; 32]);
}

/// A txid's bytes in internal order (as in `funding_created`).
pub fn txid_bytes(txid: &Txid) -> [u8; 32] {
    txid.to_byte_array()
}
