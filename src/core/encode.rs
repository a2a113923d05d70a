//! The crate's own binary encoding, used for snapshots and for the messages of the Spilman and
//! duplex layers (the Lightning layer speaks the BOLT wire format, built on the same
//! [`Writer`]/[`Reader`]).
//!
//! An encoded object is `kind (1 byte) ‖ version (1 byte) ‖ TLV stream`. A TLV record is
//! `type (BigSize) ‖ length (BigSize) ‖ value`, types strictly increasing. Readers skip unknown
//! *odd* types and reject unknown *even* types ("it's OK to be odd", BOLT #1), so fields can be
//! added without a version bump when old readers may ignore them. Decoding never panics: every
//! truncation, trailing byte, unknown version or invalid value is a [`DecodeError`].

use alloc::vec::Vec;
use core::fmt;

use bitcoin::consensus::{deserialize_partial, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa, PublicKey};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the object did.
    Truncated,
    /// Bytes were left after the object.
    TrailingBytes,
    /// The object's kind byte is not the one expected.
    WrongKind {
        /// Expected kind.
        expected: u8,
        /// Kind found.
        got: u8,
    },
    /// The version is not one this crate reads.
    UnknownVersion(u8),
    /// An even (mandatory) TLV type this crate does not know.
    UnknownEvenType(u64),
    /// TLV types not strictly increasing.
    UnorderedTypes,
    /// A required field is absent.
    MissingField(&'static str),
    /// A field's value is invalid (named by the field).
    InvalidValue(&'static str),
    /// A wire message of a type this crate does not know (the full BOLT #1 type number: odd
    /// types may be ignored, even ones must not).
    UnknownMessageType(u16),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("input truncated"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after object"),
            DecodeError::WrongKind { expected, got } => write!(f, "object kind {got}, expected {expected}"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown encoding version {v}"),
            DecodeError::UnknownEvenType(t) => write!(f, "unknown mandatory field type {t}"),
            DecodeError::UnorderedTypes => f.write_str("field types not strictly increasing"),
            DecodeError::MissingField(name) => write!(f, "missing field {name}"),
            DecodeError::InvalidValue(name) => write!(f, "invalid value for {name}"),
            DecodeError::UnknownMessageType(t) => write!(f, "unknown message type {t}"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Appends big-endian primitives to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    /// An empty writer with capacity.
    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A boolean as one byte, 0 or 1.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Two bytes, big-endian.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Four bytes, big-endian.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Eight bytes, big-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Raw bytes, no length.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A BigSize count, then each value as 8 bytes.
    pub fn u64_list(&mut self, values: &[u64]) -> &mut Self {
        self.bigsize(values.len() as u64);
        for v in values {
            self.u64(*v);
        }
        self
    }

    /// A BOLT #1 truncated integer (`tu64`, `tu32`, `tu16`): big-endian without leading zero
    /// bytes (zero is written as nothing). Only valid as the last field of a TLV record.
    pub fn tu64(&mut self, v: u64) -> &mut Self {
        let bytes = v.to_be_bytes();
        let skip = (v.leading_zeros() / 8) as usize;
        self.buf.extend_from_slice(bytes.get(skip..).unwrap_or_default());
        self
    }

    /// A BigSize integer (BOLT #1): 1, 3, 5 or 9 bytes.
    pub fn bigsize(&mut self, v: u64) -> &mut Self {
        match v {
            0..=0xfc => self.u8(v as u8),
            0xfd..=0xffff => self.u8(0xfd).u16(v as u16),
            0x1_0000..=0xffff_ffff => self.u8(0xfe).u32(v as u32),
            _ => self.u8(0xff).u64(v),
        }
    }

    /// Bytes prefixed by their BigSize length.
    pub fn var_bytes(&mut self, v: &[u8]) -> &mut Self {
        self.bigsize(v.len() as u64).bytes(v)
    }

    /// An amount in satoshi (8 bytes).
    pub fn amount(&mut self, v: Amount) -> &mut Self {
        self.u64(v.to_sat())
    }

    /// A compressed public key (33 bytes).
    pub fn pubkey(&mut self, v: &PublicKey) -> &mut Self {
        self.bytes(&v.serialize())
    }

    /// A compact signature (64 bytes), as on the Lightning wire.
    pub fn signature(&mut self, v: &ecdsa::Signature) -> &mut Self {
        self.bytes(&v.serialize_compact())
    }

    /// A signature with its sighash byte (65 bytes).
    pub fn bitcoin_signature(&mut self, v: &bitcoin::ecdsa::Signature) -> &mut Self {
        self.signature(&v.signature).u8(v.sighash_type.to_u32() as u8)
    }

    /// A txid (32 bytes, internal order).
    pub fn txid(&mut self, v: &Txid) -> &mut Self {
        self.bytes(v.as_byte_array())
    }

    /// An outpoint (txid, 4-byte vout).
    pub fn outpoint(&mut self, v: &OutPoint) -> &mut Self {
        self.txid(&v.txid).u32(v.vout)
    }

    /// A script, length-prefixed.
    pub fn script(&mut self, v: &ScriptBuf) -> &mut Self {
        self.var_bytes(v.as_bytes())
    }

    /// A transaction in consensus encoding, length-prefixed.
    pub fn transaction(&mut self, v: &Transaction) -> &mut Self {
        self.var_bytes(&serialize(v))
    }
}

/// Reads big-endian primitives from a byte slice; every read checks the remaining length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was read.
    ///
    /// # Errors
    /// If bytes remain.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    /// Every remaining byte.
    pub fn take_rest(self) -> &'a [u8] {
        self.buf
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A boolean byte (0 or 1 only).
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`].
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidValue(field)),
        }
    }

    /// Two bytes, big-endian.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Four bytes, big-endian.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Eight bytes, big-endian.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A list written by [`Writer::u64_list`]. The count is checked against the bytes left
    /// before anything is allocated.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u64_list(&mut self) -> Result<alloc::vec::Vec<u64>, DecodeError> {
        let n = self.bigsize()?;
        if n > (self.remaining() / 8) as u64 {
            return Err(DecodeError::Truncated);
        }
        (0..n).map(|_| self.u64()).collect()
    }

    /// A BOLT #1 truncated integer of at most `max_bytes` bytes (8 for `tu64`, 4 for `tu32`, 2
    /// for `tu16`) taking the rest of the record: big-endian, rejecting a leading zero byte.
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] if longer than `max_bytes` or not minimal.
    pub fn truncated_int(&mut self, max_bytes: usize) -> Result<u64, DecodeError> {
        let n = self.remaining();
        if n > max_bytes.min(8) {
            return Err(DecodeError::InvalidValue("truncated integer too long"));
        }
        let bytes = self.take(n)?;
        if bytes.first() == Some(&0) {
            return Err(DecodeError::InvalidValue("truncated integer not minimal"));
        }
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A BigSize integer, rejecting non-minimal encodings.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`] if not minimal.
    pub fn bigsize(&mut self) -> Result<u64, DecodeError> {
        let (v, min) = match self.u8()? {
            0xff => (self.u64()?, 0x1_0000_0000),
            0xfe => (u64::from(self.u32()?), 0x1_0000),
            0xfd => (u64::from(self.u16()?), 0xfd),
            b => return Ok(u64::from(b)),
        };
        if v < min {
            return Err(DecodeError::InvalidValue("bigsize"));
        }
        Ok(v)
    }

    /// Length-prefixed bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn var_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.bigsize()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        self.take(n)
    }

    /// An amount (8 bytes), at most 21 million bitcoin.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`].
    pub fn amount(&mut self, field: &'static str) -> Result<Amount, DecodeError> {
        let a = Amount::from_sat(self.u64()?);
        if a > Amount::MAX_MONEY {
            return Err(DecodeError::InvalidValue(field));
        }
        Ok(a)
    }

    /// A compressed public key.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`].
    pub fn pubkey(&mut self, field: &'static str) -> Result<PublicKey, DecodeError> {
        let b: [u8; 33] = self.array()?;
        PublicKey::from_slice(&b).map_err(|_| DecodeError::InvalidValue(field))
    }

    /// A compact signature.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`].
    pub fn signature(&mut self, field: &'static str) -> Result<ecdsa::Signature, DecodeError> {
        let b: [u8; 64] = self.array()?;
        ecdsa::Signature::from_compact(&b).map_err(|_| DecodeError::InvalidValue(field))
    }

    /// A signature with its sighash byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`].
    pub fn bitcoin_signature(&mut self, field: &'static str) -> Result<bitcoin::ecdsa::Signature, DecodeError> {
        let signature = self.signature(field)?;
        let sighash_type =
            EcdsaSighashType::from_standard(u32::from(self.u8()?)).map_err(|_| DecodeError::InvalidValue(field))?;
        Ok(bitcoin::ecdsa::Signature { signature, sighash_type })
    }

    /// A txid.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn txid(&mut self) -> Result<Txid, DecodeError> {
        Ok(Txid::from_byte_array(self.array()?))
    }

    /// An outpoint.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn outpoint(&mut self) -> Result<OutPoint, DecodeError> {
        Ok(OutPoint { txid: self.txid()?, vout: self.u32()? })
    }

    /// A length-prefixed script.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn script(&mut self) -> Result<ScriptBuf, DecodeError> {
        Ok(ScriptBuf::from_bytes(self.var_bytes()?.to_vec()))
    }

    /// A length-prefixed transaction in consensus encoding.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] or [`DecodeError::InvalidValue`].
    pub fn transaction(&mut self, field: &'static str) -> Result<Transaction, DecodeError> {
        let bytes = self.var_bytes()?;
        match deserialize_partial::<Transaction>(bytes) {
            Ok((tx, used)) if used == bytes.len() => Ok(tx),
            _ => Err(DecodeError::InvalidValue(field)),
        }
    }
}

/// Writes a versioned TLV object: `kind ‖ version ‖ records`.
#[derive(Debug)]
pub struct TlvWriter {
    w: Writer,
    last: Option<u64>,
}

impl TlvWriter {
    /// Starts an object of `kind`, encoding `version`.
    pub fn new(kind: u8, version: u8) -> Self {
        Self::with_capacity(kind, version, 256)
    }

    /// As [`TlvWriter::new`], sized for an object of about `total` bytes (so that a large object
    /// is not copied while it grows).
    pub fn with_capacity(kind: u8, version: u8, total: usize) -> Self {
        let mut w = Writer::with_capacity(total);
        w.u8(kind).u8(version);
        TlvWriter { w, last: None }
    }

    /// Appends record `ty`, whose value `f` writes. Types must be strictly increasing (a bug in
    /// the caller otherwise; it is debug-asserted).
    pub fn record(&mut self, ty: u64, f: impl FnOnce(&mut Writer)) -> &mut Self {
        debug_assert!(self.last.is_none_or(|l| l < ty), "TLV types must increase");
        self.last = Some(ty);
        self.w.bigsize(ty);
        // The value is written in place and its BigSize length slid in before it afterwards:
        // no scratch buffer, and a large value is moved once within the buffer, not copied.
        let at = self.w.buf.len();
        f(&mut self.w);
        let len = self.w.buf.len() - at;
        let mut prefix = Writer::with_capacity(9);
        prefix.bigsize(len as u64);
        let n = prefix.buf.len();
        self.w.buf.resize(at + len + n, 0);
        self.w.buf.copy_within(at..at + len, at + n);
        if let Some(slot) = self.w.buf.get_mut(at..at + n) {
            slot.copy_from_slice(&prefix.buf);
        }
        self
    }

    /// Appends record `ty` only if `value` is `Some`.
    pub fn optional<T>(&mut self, ty: u64, value: Option<T>, f: impl FnOnce(&mut Writer, T)) -> &mut Self {
        if let Some(v) = value {
            self.record(ty, |w| f(w, v));
        }
        self
    }

    /// The encoded object.
    pub fn finish(self) -> Vec<u8> {
        self.w.into_bytes()
    }
}

/// Reads a versioned TLV object. Returns the version and a record reader.
///
/// # Errors
/// [`DecodeError`] if the kind is wrong or the header is truncated; the version is returned for
/// the caller to check.
pub fn read_header(bytes: &[u8], kind: u8) -> Result<(u8, TlvReader<'_>), DecodeError> {
    let mut r = Reader::new(bytes);
    let got = r.u8()?;
    if got != kind {
        return Err(DecodeError::WrongKind { expected: kind, got });
    }
    let version = r.u8()?;
    Ok((version, TlvReader { r, last: None }))
}

/// Iterates over TLV records, enforcing increasing types.
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    r: Reader<'a>,
    last: Option<u64>,
}

impl<'a> TlvReader<'a> {
    /// A record reader over a bare TLV stream (no header).
    pub fn new(bytes: &'a [u8]) -> Self {
        TlvReader { r: Reader::new(bytes), last: None }
    }

    /// The next record, or `None` at the end of the stream.
    ///
    /// # Errors
    /// [`DecodeError`] for truncation or unordered types.
    pub fn next_record(&mut self) -> Result<Option<(u64, Reader<'a>)>, DecodeError> {
        if self.r.remaining() == 0 {
            return Ok(None);
        }
        let ty = self.r.bigsize()?;
        if self.last.is_some_and(|l| l >= ty) {
            return Err(DecodeError::UnorderedTypes);
        }
        self.last = Some(ty);
        let value = self.r.var_bytes()?;
        Ok(Some((ty, Reader::new(value))))
    }

    /// Reads every record, handing each to `f`. `f` returns `Ok(false)` for a type it does not
    /// know: odd ones are skipped, even ones rejected. A known record's value must be read
    /// completely.
    ///
    /// # Errors
    /// [`DecodeError`] from the stream or from `f`.
    pub fn for_each(
        mut self,
        mut f: impl FnMut(u64, &mut Reader<'a>) -> Result<bool, DecodeError>,
    ) -> Result<(), DecodeError> {
        while let Some((ty, mut value)) = self.next_record()? {
            if f(ty, &mut value)? {
                value.finish()?;
            } else if ty % 2 == 0 {
                return Err(DecodeError::UnknownEvenType(ty));
            }
        }
        Ok(())
    }
}

/// Unwraps a required field.
///
/// # Errors
/// [`DecodeError::MissingField`] if `None`.
pub fn required<T>(v: Option<T>, name: &'static str) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::MissingField(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigsize_roundtrip_and_minimality() {
        for v in [0u64, 0xfc, 0xfd, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let mut w = Writer::new();
            w.bigsize(v);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.bigsize(), Ok(v));
            r.finish().unwrap();
        }
        assert_eq!(Reader::new(&[0xfd, 0x00, 0xfc]).bigsize(), Err(DecodeError::InvalidValue("bigsize")));
        assert_eq!(Reader::new(&[0xfe, 0x00]).bigsize(), Err(DecodeError::Truncated));
    }

    #[test]
    fn tlv_even_odd_rule() {
        let mut t = TlvWriter::new(7, 1);
        t.record(1, |w| {
            w.u8(5);
        });
        t.record(3, |w| {
            w.u16(9);
        });
        let bytes = t.finish();
        let (v, r) = read_header(&bytes, 7).unwrap();
        assert_eq!(v, 1);
        let mut seen = 0;
        r.for_each(|ty, val| {
            if ty == 1 {
                seen = val.u8()?;
                Ok(true)
            } else {
                Ok(false)
            }
        })
        .unwrap();
        assert_eq!(seen, 5);

        let mut t = TlvWriter::new(7, 1);
        t.record(4, |w| {
            w.u8(0);
        });
        let bytes = t.finish();
        let (_, r) = read_header(&bytes, 7).unwrap();
        assert_eq!(r.for_each(|_, _| Ok(false)), Err(DecodeError::UnknownEvenType(4)));
        assert!(matches!(read_header(&[8, 1], 7), Err(DecodeError::WrongKind { .. })));
    }
}
