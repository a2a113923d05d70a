//! The one way the Spilman and duplex layers write and read their messages: `kind ‖ version ‖
//! TLV stream` ([`crate::core::encode`]), with the helpers both layers need (the header and
//! version check, one-record messages, counted lists whose count is checked against the input
//! before anything is allocated).
//!
//! Each layer keeps its own kinds, version and field layout; only the mechanics live here, once.
//!
//! # Routing by channel id
//! Peers that share several channels tell them apart by the [`ChannelId`] every message is
//! [`Addressed`] to: a *temporary* id while the channel is being set up
//! ([`temporary_channel_id`], from the opener's per-channel keys), then the id of the funding
//! outpoint ([`ChannelId::from_funding`], as BOLT #2 does). On the wire an addressed message is
//! the layer's message with the id after its header, under the layer's addressed version:
//! `kind ‖ addressed version ‖ channel id (32 bytes) ‖ TLV stream`. Each channel stamps the id
//! itself (`address`) and refuses a message addressed to another channel (`handle_addressed`)
//! before looking at it.

use alloc::vec::Vec;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::PublicKey;

use super::encode::{read_header, required, DecodeError, Reader, TlvReader, TlvWriter, Writer};
use crate::driving::ChannelId;

/// A message and the id of the channel it is for, as it travels between peers that may share
/// several channels: route it by [`Addressed::channel_id`] without looking at the message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Addressed<M> {
    /// The channel the message is for.
    pub channel_id: ChannelId,
    /// The message.
    pub msg: M,
}

impl<M> Addressed<M> {
    /// The channel the message is for.
    pub fn channel_id(&self) -> ChannelId {
        self.channel_id
    }
}

/// Keeps [`LayerMsg`] to the crate's own layers.
pub(crate) mod sealed {
    /// Implemented by the message types of the layers that speak this codec.
    pub trait Sealed {}
}

/// The messages of a layer that speaks this codec (the Spilman and duplex `Msg`s): what the
/// shared addressed encoding and routing rules need of them. Sealed: implemented by the crate's
/// layers only.
pub trait LayerMsg: sealed::Sealed + Sized {
    /// The version byte of the layer's addressed encoding (its plain version with the channel
    /// id after the header).
    const ADDRESSED_VERSION: u8;

    /// The plain encoding: `kind ‖ version ‖ TLV stream`.
    fn encode(&self) -> Vec<u8>;

    /// Reads a message of `kind` from its TLV records.
    ///
    /// # Errors
    /// As the layer's `Msg::decode`.
    fn decode_records(kind: u8, tlv: TlvReader<'_>) -> Result<Self, DecodeError>;

    /// Whether the message belongs to the channel's setup, before the funding outpoint is known
    /// to both: it is sent to the temporary id.
    fn is_setup(&self) -> bool;
}

impl<M: LayerMsg> Addressed<M> {
    /// Addresses `msg` of a channel whose ids are `temporary` and, once the funding outpoint is
    /// known, `funded`: setup messages go to the temporary id, the others to the funded one.
    pub fn new(msg: M, temporary: ChannelId, funded: Option<ChannelId>) -> Self {
        let channel_id = if msg.is_setup() { temporary } else { funded.unwrap_or(temporary) };
        Addressed { channel_id, msg }
    }

    /// Whether the message is addressed to the channel whose ids are `temporary` and `funded`
    /// (either one: a setup message may cross the funding on the wire, and a reestablish after
    /// a restart may come under either).
    pub fn is_for(&self, temporary: ChannelId, funded: Option<ChannelId>) -> bool {
        self.channel_id == temporary || Some(self.channel_id) == funded
    }

    /// Encodes the message with its channel id: `kind ‖ addressed version ‖ channel id ‖ TLV
    /// stream` (the plain encoding with the id after the header).
    pub fn encode(&self) -> Vec<u8> {
        address_encoding(self.msg.encode(), M::ADDRESSED_VERSION, self.channel_id)
    }

    /// Decodes an addressed message.
    ///
    /// # Errors
    /// [`DecodeError::UnknownVersion`] for a message without a channel id (the layer's plain
    /// encoding) or of an unknown version; otherwise as the layer's `Msg::decode`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (kind, channel_id, tlv) = read_addressed(bytes, M::ADDRESSED_VERSION)?;
        Ok(Addressed { channel_id, msg: M::decode_records(kind, tlv)? })
    }
}

/// The temporary id of a channel being set up, before its funding outpoint is known: the
/// SHA-256 of a tag naming the layer and the opener's per-channel public keys. Both peers
/// compute it from the opener's first message; the crate draws no randomness, so it is unique
/// as long as the opener uses fresh keys for every channel (a fresh key index per channel, which
/// the embedder supplies to its signer).
pub fn temporary_channel_id(layer: &str, opener_keys: &[&PublicKey]) -> ChannelId {
    let mut engine = sha256::Hash::engine();
    engine.input(b"paychan temporary channel id/");
    engine.input(layer.as_bytes());
    for key in opener_keys {
        engine.input(&key.serialize());
    }
    ChannelId(sha256::Hash::from_engine(engine).to_byte_array())
}

/// Turns a message's encoding (`kind ‖ version ‖ TLV stream`) into its addressed encoding:
/// `kind ‖ addressed_version ‖ channel id ‖ TLV stream`.
fn address_encoding(mut plain: Vec<u8>, addressed_version: u8, channel_id: ChannelId) -> Vec<u8> {
    if let Some(version) = plain.get_mut(1) {
        *version = addressed_version;
    }
    let at = plain.len().min(2);
    plain.splice(at..at, channel_id.0);
    plain
}

/// Reads an addressed message's header: its kind, the channel id and the TLV records after it.
///
/// # Errors
/// [`DecodeError::Truncated`] for a truncated header, [`DecodeError::UnknownVersion`] unless the
/// message is of `addressed_version` (a message without an id is refused, typed, here).
fn read_addressed(bytes: &[u8], addressed_version: u8) -> Result<(u8, ChannelId, TlvReader<'_>), DecodeError> {
    let mut r = Reader::new(bytes);
    let kind = r.u8()?;
    let version = r.u8()?;
    if version != addressed_version {
        return Err(DecodeError::UnknownVersion(version));
    }
    let channel_id = ChannelId(r.array()?);
    Ok((kind, channel_id, TlvReader::new(r.take_rest())))
}

/// Reads a message's header: its kind byte and the TLV records after it.
///
/// # Errors
/// [`DecodeError::Truncated`] for an empty or truncated header, [`DecodeError::UnknownVersion`]
/// unless the message is of `version`.
pub fn read_message(bytes: &[u8], version: u8) -> Result<(u8, TlvReader<'_>), DecodeError> {
    let kind = *bytes.first().ok_or(DecodeError::Truncated)?;
    Ok((kind, read_object(bytes, kind, version)?))
}

/// Reads the header of an object of a known `kind` (a snapshot, say) and returns its TLV records.
///
/// # Errors
/// [`DecodeError::WrongKind`] for another kind, [`DecodeError::Truncated`] for a truncated
/// header, [`DecodeError::UnknownVersion`] unless the object is of `version`.
pub fn read_object(bytes: &[u8], kind: u8, version: u8) -> Result<TlvReader<'_>, DecodeError> {
    let (got, tlv) = read_header(bytes, kind)?;
    if got != version {
        return Err(DecodeError::UnknownVersion(got));
    }
    Ok(tlv)
}

/// Encodes a message of `kind` whose only record is type 0, written by `f`.
pub fn single_record(kind: u8, version: u8, f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut t = TlvWriter::new(kind, version);
    t.record(0, f);
    t.finish()
}

/// Reads a message whose only known record is type 0, read by `f` (unknown odd records are
/// skipped, unknown even ones refused).
///
/// # Errors
/// [`DecodeError::MissingField`] naming `field` if record 0 is absent, or any error of the
/// stream or of `f`.
pub fn read_single_record<'a, T>(
    tlv: TlvReader<'a>,
    field: &'static str,
    mut f: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut value = None;
    tlv.for_each(|ty, r| {
        if ty != 0 {
            return Ok(false);
        }
        value = Some(f(r)?);
        Ok(true)
    })?;
    required(value, field)
}

/// Reads a BigSize count of items of at least `size` bytes each, refusing a count the input
/// cannot hold (before anything is allocated) or above `max`.
///
/// # Errors
/// [`DecodeError::Truncated`] if the input is too short for the count,
/// [`DecodeError::InvalidValue`] if it is above `max`.
pub fn read_count(r: &mut Reader<'_>, size: usize, max: usize) -> Result<usize, DecodeError> {
    let n = r.bigsize()?;
    if n > (r.remaining() / size.max(1)) as u64 {
        return Err(DecodeError::Truncated);
    }
    if n > max as u64 {
        return Err(DecodeError::InvalidValue("count"));
    }
    Ok(n as usize)
}

/// Writes a list as a BigSize count and each item, written by `f`.
pub fn write_list<T>(w: &mut Writer, items: &[T], mut f: impl FnMut(&mut Writer, &T)) {
    w.bigsize(items.len() as u64);
    for item in items {
        f(w, item);
    }
}

/// Reads a list written by [`write_list`]: at most `max` items of at least `size` bytes each,
/// read by `f`.
///
/// # Errors
/// As [`read_count`], or any error of `f`.
pub fn read_list<'a, T>(
    r: &mut Reader<'a>,
    size: usize,
    max: usize,
    mut f: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n = read_count(r, size, max)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(f(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_addressed_encoding_is_the_plain_one_with_the_id_after_the_header() {
        let plain = single_record(0x42, 1, |w| {
            w.u64(7);
        });
        let id = ChannelId([5; 32]);
        let addressed = address_encoding(plain.clone(), 2, id);
        assert_eq!(addressed.len(), plain.len() + 32);
        let (kind, got, tlv) = read_addressed(&addressed, 2).unwrap();
        assert_eq!((kind, got), (0x42, id));
        assert_eq!(read_single_record(tlv, "n", |r| r.u64()), Ok(7));
        // The plain encoding has no id: refused by its version, typed.
        assert!(matches!(read_addressed(&plain, 2), Err(DecodeError::UnknownVersion(1))));
        assert!(matches!(read_addressed(&addressed[..20], 2), Err(DecodeError::Truncated)));
    }

    #[test]
    fn temporary_ids_depend_on_the_layer_and_on_every_key() {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let key = |n: u8| bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap().public_key(&secp);
        let (a, b) = (key(1), key(2));
        let id = temporary_channel_id("spilman", &[&a, &b]);
        assert_eq!(id, temporary_channel_id("spilman", &[&a, &b]));
        assert_ne!(id, temporary_channel_id("duplex", &[&a, &b]));
        assert_ne!(id, temporary_channel_id("spilman", &[&a, &a]));
        assert_ne!(id, temporary_channel_id("spilman", &[&b, &a]));
    }

    #[test]
    fn a_count_the_input_cannot_hold_is_refused_before_allocating() {
        let mut w = Writer::new();
        w.bigsize(u64::MAX);
        let bytes = w.into_bytes();
        let got = read_list(&mut Reader::new(&bytes), 8, usize::MAX, |r| r.u64());
        assert_eq!(got, Err(DecodeError::Truncated));
    }

    #[test]
    fn lists_round_trip_and_respect_their_maximum() {
        let mut w = Writer::new();
        write_list(&mut w, &[1u16, 2, 3], |w, v| {
            w.u16(*v);
        });
        let bytes = w.into_bytes();
        assert_eq!(read_list(&mut Reader::new(&bytes), 2, 3, |r| r.u16()), Ok(alloc::vec![1, 2, 3]));
        assert_eq!(read_list(&mut Reader::new(&bytes), 2, 2, |r| r.u16()), Err(DecodeError::InvalidValue("count")));
    }

    #[test]
    fn the_header_refuses_other_versions_and_single_records_need_record_zero() {
        let bytes = single_record(0x42, 3, |w| {
            w.u64(7);
        });
        let (kind, tlv) = read_message(&bytes, 3).unwrap();
        assert_eq!(kind, 0x42);
        assert_eq!(read_single_record(tlv, "n", |r| r.u64()), Ok(7));
        assert!(matches!(read_message(&bytes, 2), Err(DecodeError::UnknownVersion(3))));
        assert!(matches!(read_message(&[], 2), Err(DecodeError::Truncated)));
        let empty = TlvWriter::new(0x42, 3).finish();
        let (_, tlv) = read_message(&empty, 3).unwrap();
        assert_eq!(read_single_record(tlv, "n", |r| r.u64()), Err(DecodeError::MissingField("n")));
    }
}
