//! The Lightning channel's append-only records: what the channel hands the embedder once, to keep
//! beside the snapshot, instead of re-writing it in every snapshot.
//!
//! * [`PenaltyRecord`]: appended when an HTLC is gone; penalties on revoked commitments need it
//!   for as long as the channel may see one (pass them to [`Channel::handle_chain_with_history`]).
//! * [`OnionRecord`]: appended when an HTLC is added (sent or received); the channel needs it for
//!   as long as the HTLC may be retransmitted or forwarded (pass it to
//!   [`Channel::restore_with_records`]).
//!
//! * [`DeltaRecord`]: appended by a write that carries no
//!   full snapshot (the [persistence contract](crate::driving#persistence)).
//!
//! Each kind has its own versioned encoding; [`Record::decode`] tells them apart, and
//! [`Channel::keeps_record`] says which ones a compaction of the log may drop.
//!
//! [`Channel::handle_chain_with_history`]: super::Channel::handle_chain_with_history
//! [`Channel::restore_with_records`]: super::Channel::restore_with_records
//! [`Channel::keeps_record`]: super::Channel::keeps_record

use alloc::vec::Vec;

use super::htlc::Side;
use super::msgs::{OnionPacket, ONION_PACKET_LEN};
use crate::core::delta::{is_delta, DeltaRecord, KIND_DELTA};
use crate::core::encode::{read_header, required, DecodeError, Reader, TlvWriter};
use crate::core::hashlock::PaymentHash;
use crate::core::units::MilliSats;

const KIND_PENALTY: u8 = 0x4d;
const KIND_ONION: u8 = 0x4e;
const VERSION: u8 = 1;

pub(super) fn side_byte(s: Side) -> u8 {
    match s {
        Side::Holder => 0,
        Side::Counterparty => 1,
    }
}

pub(super) fn read_side(r: &mut Reader<'_>) -> Result<Side, DecodeError> {
    match r.u8()? {
        0 => Ok(Side::Holder),
        1 => Ok(Side::Counterparty),
        _ => Err(DecodeError::InvalidValue("side")),
    }
}

/// A record of `kind`: the header, then TLV record 0 read by `read` (unknown odd types skipped).
fn decode_record<T>(
    bytes: &[u8],
    kind: u8,
    mut read: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let (version, tlv) = read_header(bytes, kind)?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let mut rec = None;
    tlv.for_each(|ty, r| {
        if ty != 0 {
            return Ok(false);
        }
        rec = Some(read(r)?);
        Ok(true)
    })?;
    required(rec, "record")
}

/// What a penalty needs to know about one HTLC that is gone from the channel: enough to
/// recognise and sweep its output on any revoked counterparty commitment in
/// `first_commitment..=last_commitment`. One record per HTLC, appended once.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PenaltyRecord {
    /// Who offered it.
    pub offerer: Side,
    /// Its id.
    pub id: u64,
    /// Amount.
    pub amount: MilliSats,
    /// Payment hash.
    pub payment_hash: PaymentHash,
    /// Expiry.
    pub cltv_expiry: u32,
    /// First counterparty commitment carrying it.
    pub first_commitment: u64,
    /// Last counterparty commitment carrying it.
    pub last_commitment: u64,
}

impl PenaltyRecord {
    /// Encodes the record (kind, version, TLV).
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::new(KIND_PENALTY, VERSION);
        t.record(0, |w| {
            w.u8(side_byte(self.offerer)).u64(self.id).u64(self.amount.to_msat()).bytes(&self.payment_hash.0);
            w.u32(self.cltv_expiry).u64(self.first_commitment).u64(self.last_commitment);
        });
        t.finish()
    }

    /// Decodes a record.
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bytes, and [`DecodeError::WrongKind`] for a record of another
    /// kind (an [`OnionRecord`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_record(bytes, KIND_PENALTY, |r| {
            Ok(PenaltyRecord {
                offerer: read_side(r)?,
                id: r.u64()?,
                amount: MilliSats::from_msat(r.u64()?),
                payment_hash: PaymentHash(r.array()?),
                cltv_expiry: r.u32()?,
                first_commitment: r.u64()?,
                last_commitment: r.u64()?,
            })
        })
    }
}

/// The onion of one HTLC, appended once when the HTLC enters the channel, so that the snapshot
/// (re-written on every update) does not carry 1,366 bytes per HTLC in flight.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OnionRecord {
    /// Who offered the HTLC.
    pub offerer: Side,
    /// Its id.
    pub id: u64,
    /// The onion it was added with.
    pub onion: OnionPacket,
}

impl OnionRecord {
    /// Encodes the record (kind, version, TLV).
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::with_capacity(KIND_ONION, VERSION, ONION_PACKET_LEN + 16);
        t.record(0, |w| {
            w.u8(side_byte(self.offerer)).u64(self.id).bytes(self.onion.as_bytes());
        });
        t.finish()
    }

    /// Decodes a record.
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bytes, and [`DecodeError::WrongKind`] for a record of another
    /// kind (a [`PenaltyRecord`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_record(bytes, KIND_ONION, |r| {
            let offerer = read_side(r)?;
            let id = r.u64()?;
            let onion = OnionPacket::from_slice(r.take(ONION_PACKET_LEN)?).ok_or(DecodeError::Truncated)?;
            Ok(OnionRecord { offerer, id, onion })
        })
    }
}

/// Any record the channel appends to [`StateUpdate::records`](crate::driving::StateUpdate::records).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Record {
    /// About an HTLC that is gone, for penalties.
    Penalty(PenaltyRecord),
    /// The onion of an HTLC, for retransmission and forwarding.
    Onion(OnionRecord),
    /// A delta of the channel's state ([`crate::core::delta`]), replayed by
    /// [`Channel::restore_with_records`](super::Channel::restore_with_records).
    Delta(DeltaRecord),
}

impl Record {
    /// Decodes a record of any kind.
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bytes or an unknown kind.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(&KIND_ONION) => OnionRecord::decode(bytes).map(Record::Onion),
            Some(&KIND_DELTA) => DeltaRecord::decode(bytes).map(Record::Delta),
            _ => PenaltyRecord::decode(bytes).map(Record::Penalty),
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Penalty(p) => p.encode(),
            Record::Onion(o) => o.encode(),
            Record::Delta(d) => d.encode(),
        }
    }
}

/// The penalty records among `records` (what
/// [`Channel::handle_chain_with_history`](super::Channel::handle_chain_with_history) needs), in
/// order, skipping the other kinds.
///
/// # Errors
/// [`DecodeError`] if any record is malformed: a damaged log is reported, not skipped.
///
/// ```
/// use paychan::lightning::records::{penalty_records, OnionRecord, PenaltyRecord};
/// use paychan::lightning::{OnionPacket, Side};
/// # use paychan::core::{hashlock::PaymentHash, units::MilliSats};
/// let penalty = PenaltyRecord {
///     offerer: Side::Holder, id: 0, amount: MilliSats::from_msat(5_000_000),
///     payment_hash: PaymentHash([7; 32]), cltv_expiry: 800_000,
///     first_commitment: 3, last_commitment: 5,
/// };
/// let onion = OnionRecord { offerer: Side::Holder, id: 1, onion: OnionPacket::zeroed() };
/// let log = vec![onion.encode(), penalty.encode()];
/// assert_eq!(penalty_records(&log)?, vec![penalty]);
/// # Ok::<(), paychan::core::encode::DecodeError>(())
/// ```
pub fn penalty_records<I>(records: I) -> Result<Vec<PenaltyRecord>, DecodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut out = Vec::new();
    for r in records {
        if is_delta(r.as_ref()) {
            // Deltas are checked when replayed (a restore); decoding them here would copy them.
            continue;
        }
        if let Record::Penalty(p) = Record::decode(r.as_ref())? {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onion_records_round_trip_and_refuse_damage() {
        let mut onion = OnionPacket::zeroed();
        onion.bytes_mut()[0] = 2;
        onion.bytes_mut()[ONION_PACKET_LEN - 1] = 9;
        let rec = OnionRecord { offerer: Side::Counterparty, id: 77, onion };
        let bytes = rec.encode();
        assert_eq!(OnionRecord::decode(&bytes), Ok(rec.clone()));
        assert_eq!(Record::decode(&bytes), Ok(Record::Onion(rec)));
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
        let mut wrong_version = bytes.clone();
        wrong_version[1] = 2;
        assert_eq!(OnionRecord::decode(&wrong_version), Err(DecodeError::UnknownVersion(2)));
        assert!(matches!(PenaltyRecord::decode(&bytes), Err(DecodeError::WrongKind { .. })));
    }
}
