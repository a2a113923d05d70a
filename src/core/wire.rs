//! The one way the Spilman and duplex layers write and read their messages: `kind ‖ version ‖
//! TLV stream` ([`crate::core::encode`]), with the helpers both layers need (the header and
//! version check, one-record messages, counted lists whose count is checked against the input
//! before anything is allocated).
//!
//! Each layer keeps its own kinds, version and field layout; only the mechanics live here, once.

use alloc::vec::Vec;

use super::encode::{read_header, required, DecodeError, Reader, TlvReader, TlvWriter, Writer};

/// Reads a message's header: its kind byte and the TLV records after it.
///
/// # Errors
/// [`DecodeError::Truncated`] for an empty or truncated header, [`DecodeError::UnknownVersion`]
/// unless the message is of `version`.
pub fn read_message(bytes: &[u8], version: u8) -> Result<(u8, TlvReader<'_>), DecodeError> {
    let kind = *bytes.first().ok_or(DecodeError::Truncated)?;
    let (got, tlv) = read_header(bytes, kind)?;
    if got != version {
        return Err(DecodeError::UnknownVersion(got));
    }
    Ok((kind, tlv))
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
