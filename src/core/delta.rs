//! Delta records: what changed between two encodings of a channel's state, as a small patch to
//! append to a log instead of re-writing the whole snapshot.
//!
//! A delta is computed by the channel from the bytes of the state the embedder's storage holds
//! (the last full snapshot with every delta since, replayed) to the bytes of the new state, and
//! carries the update id it brings the state to. [`replay`] applies the deltas of a log, in
//! order, to a snapshot. The patch works on bytes, whatever the layer or its encoding version:
//! replaying deltas written by an older version of the crate gives the older encoding, which the
//! layer's decoder still reads, and a channel restored that way diffs its next state against those
//! bytes.
//!
//! Encoding (kind `0x44`, version 1): `kind ‖ version ‖ update_id ‖ result length ‖ checksum ‖
//! ops`, the two numbers as LEB128 varints, the checksum a 32-bit FNV-1a of the resulting bytes
//! (a log applied to the wrong base, or damaged, is refused instead of yielding another state).
//! Each op is a varint `n << 3 | tag`: copy `n` bytes from the old state (0), skip `n` (1),
//! insert `n` literal bytes (2), replace `n` bytes by `n` literal ones (3), or copy `n` bytes from
//! an offset of the old state given next (4, without moving; 5, moving past `n` old bytes). What
//! is left of the old state after the last op is copied.
//!
//! ```
//! use paychan::core::delta::{replay, DeltaRecord};
//! let old = b"the state at update 1".to_vec();
//! let new = b"the state at update 2, longer".to_vec();
//! let delta = DeltaRecord::between(2, &old, &new);
//! assert!(delta.encode().len() < new.len());
//! let log = vec![delta.encode()];
//! assert_eq!(replay(&old, 1, &log)?, (new, 2));
//! # Ok::<(), paychan::core::delta::ReplayError>(())
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::encode::DecodeError;

/// The kind byte of a delta record.
pub const KIND_DELTA: u8 = 0x44;
const VERSION: u8 = 1;

const COPY: u64 = 0;
const SKIP: u64 = 1;
const INSERT: u64 = 2;
const REPLACE: u64 = 3;
const FROM: u64 = 4;
const FROM_SKIP: u64 = 5;

/// A match of fewer bytes is written as literals (an offset costs one to three bytes).
const MIN_MATCH: usize = 6;
/// Matches are searched in old records of at most this many bytes (beyond, only aligned copies).
const MAX_SEARCH_WINDOW: usize = 4_096;

/// One delta record: the patch that brings a state to update `update_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    update_id: u64,
    result_len: u64,
    checksum: u32,
    ops: Vec<u8>,
}

impl fmt::Debug for DeltaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeltaRecord")
            .field("update_id", &self.update_id)
            .field("result_len", &self.result_len)
            .field("ops_len", &self.ops.len())
            .finish()
    }
}

/// Why a log could not be replayed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ReplayError {
    /// A delta record is malformed, does not apply to the state it follows, or does not yield
    /// the bytes it promises (checksum).
    Decode(DecodeError),
    /// The log skips an update: after update `expected - 1` comes the delta of update `found`.
    MissingDelta {
        /// The update id the next delta should have brought.
        expected: u64,
        /// The update id of the delta found instead.
        found: u64,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Decode(e) => write!(f, "delta record: {e}"),
            ReplayError::MissingDelta { expected, found } => {
                write!(f, "the log misses the delta of update {expected} (found {found})")
            }
        }
    }
}

impl core::error::Error for ReplayError {}

impl From<DecodeError> for ReplayError {
    fn from(e: DecodeError) -> Self {
        ReplayError::Decode(e)
    }
}

/// Whether `record` is a delta record (by its kind byte).
pub fn is_delta(record: &[u8]) -> bool {
    record.first() == Some(&KIND_DELTA)
}

/// Replays the delta records among `records` on `snapshot` (whose update id is `snapshot_id`):
/// records of other kinds are skipped, as are deltas of updates the snapshot already includes
/// (`update_id <= snapshot_id`); the others must follow each other without a gap. Returns the
/// resulting bytes and their update id.
///
/// # Errors
/// [`ReplayError::MissingDelta`] if a delta is missing; [`ReplayError::Decode`] if a delta is
/// malformed or does not apply.
pub fn replay<I>(snapshot: &[u8], snapshot_id: u64, records: I) -> Result<(Vec<u8>, u64), ReplayError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut state: Option<Vec<u8>> = None;
    let mut id = snapshot_id;
    for r in records {
        let r = r.as_ref();
        if !is_delta(r) {
            continue;
        }
        let d = DeltaRecord::decode(r)?;
        if d.update_id <= id {
            continue;
        }
        if d.update_id != id + 1 {
            return Err(ReplayError::MissingDelta { expected: id + 1, found: d.update_id });
        }
        let next = d.apply(state.as_deref().unwrap_or(snapshot))?;
        state = Some(next);
        id = d.update_id;
    }
    Ok((state.unwrap_or_else(|| snapshot.to_vec()), id))
}

impl DeltaRecord {
    /// The delta from `old` to `new`, bringing the state to update `update_id`.
    pub fn between(update_id: u64, old: &[u8], new: &[u8]) -> Self {
        let mut ops = Ops::default();
        diff(old, new, &mut ops);
        DeltaRecord { update_id, result_len: new.len() as u64, checksum: checksum(new), ops: ops.finish() }
    }

    /// The update id the delta brings the state to.
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// The size of the state it yields.
    pub fn result_len(&self) -> u64 {
        self.result_len
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ops.len() + 24);
        out.push(KIND_DELTA);
        out.push(VERSION);
        put_varint(&mut out, self.update_id);
        put_varint(&mut out, self.result_len);
        out.extend_from_slice(&self.checksum.to_be_bytes());
        out.extend_from_slice(&self.ops);
        out
    }

    /// Decodes a record (its ops are checked when applied).
    ///
    /// # Errors
    /// [`DecodeError`] for another kind, an unknown version or a truncated header.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Cursor { bytes, at: 0 };
        let kind = r.byte()?;
        if kind != KIND_DELTA {
            return Err(DecodeError::WrongKind { expected: KIND_DELTA, got: kind });
        }
        let version = r.byte()?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let update_id = r.varint()?;
        let result_len = r.varint()?;
        let checksum = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?);
        let ops = bytes.get(r.at..).ok_or(DecodeError::Truncated)?.to_vec();
        Ok(DeltaRecord { update_id, result_len, checksum, ops })
    }

    /// Applies the delta to `old`, the state of update `update_id - 1`.
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] if an op reaches outside `old`, the result is not of the
    /// promised length or checksum; [`DecodeError::Truncated`] for truncated ops.
    pub fn apply(&self, old: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let bad = DecodeError::InvalidValue("delta");
        let limit = usize::try_from(self.result_len).map_err(|_| bad)?;
        let mut out = Vec::with_capacity(limit.min(old.len().saturating_add(self.ops.len()).saturating_add(64)));
        let mut r = Cursor { bytes: &self.ops, at: 0 };
        let mut cursor = 0usize;
        let old_range = |from: usize, n: usize| from.checked_add(n).and_then(|end| old.get(from..end)).ok_or(bad);
        while r.at < self.ops.len() {
            let head = r.varint()?;
            let n = usize::try_from(head >> 3).map_err(|_| bad)?;
            if out.len().saturating_add(if head & 7 == SKIP { 0 } else { n }) > limit {
                return Err(bad);
            }
            match head & 7 {
                COPY => {
                    out.extend_from_slice(old_range(cursor, n)?);
                    cursor += n;
                }
                SKIP => {
                    old_range(cursor, n)?;
                    cursor += n;
                }
                INSERT => out.extend_from_slice(r.take(n)?),
                REPLACE => {
                    old_range(cursor, n)?;
                    cursor += n;
                    out.extend_from_slice(r.take(n)?);
                }
                tag @ (FROM | FROM_SKIP) => {
                    let from = usize::try_from(r.varint()?).map_err(|_| bad)?;
                    out.extend_from_slice(old_range(from, n)?);
                    if tag == FROM_SKIP {
                        old_range(cursor, n)?;
                        cursor += n;
                    }
                }
                _ => return Err(bad),
            }
        }
        out.extend_from_slice(old.get(cursor..).ok_or(bad)?);
        if out.len() != limit || checksum(&out) != self.checksum {
            return Err(bad);
        }
        Ok(out)
    }
}

/// FNV-1a, 32 bits: an integrity check of the replayed bytes, not a commitment.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(DecodeError::InvalidValue("varint"));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                // The shortest encoding only: one value, one encoding.
                if shift > 0 && part == 0 {
                    return Err(DecodeError::InvalidValue("varint"));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::InvalidValue("varint"))
    }
}

/// The op writer: coalesces copies and literal runs.
#[derive(Default)]
struct Ops {
    out: Vec<u8>,
    copy: usize,
    lit: Vec<u8>,
    lit_replaces: bool,
}

impl Ops {
    fn head(&mut self, n: usize, tag: u64) {
        put_varint(&mut self.out, (n as u64) << 3 | tag);
    }

    fn flush_copy(&mut self) {
        if self.copy > 0 {
            let n = core::mem::take(&mut self.copy);
            self.head(n, COPY);
        }
    }

    fn flush_lit(&mut self) {
        if !self.lit.is_empty() {
            let lit = core::mem::take(&mut self.lit);
            self.head(lit.len(), if self.lit_replaces { REPLACE } else { INSERT });
            self.out.extend_from_slice(&lit);
        }
    }

    fn copy(&mut self, n: usize) {
        if n > 0 {
            self.flush_lit();
            self.copy += n;
        }
    }

    fn skip(&mut self, n: usize) {
        if n > 0 {
            self.flush_copy();
            self.flush_lit();
            self.head(n, SKIP);
        }
    }

    fn literal(&mut self, b: u8, replaces: bool) {
        self.flush_copy();
        if !self.lit.is_empty() && self.lit_replaces != replaces {
            self.flush_lit();
        }
        self.lit_replaces = replaces;
        self.lit.push(b);
    }

    fn from(&mut self, offset: usize, n: usize, skips: bool) {
        self.flush_copy();
        self.flush_lit();
        self.head(n, if skips { FROM_SKIP } else { FROM });
        put_varint(&mut self.out, offset as u64);
    }

    /// The ops, without a final copy (what is left of the old state is copied anyway).
    fn finish(mut self) -> Vec<u8> {
        self.flush_lit();
        self.out
    }
}

/// The records of a versioned TLV object (`kind ‖ version ‖ (type, length, value)*`) as
/// `(type, byte range of the whole record)`, or `None` if the bytes are not one.
fn tlv_records(bytes: &[u8]) -> Option<Vec<(u64, core::ops::Range<usize>)>> {
    let mut r = Cursor { bytes, at: 2 };
    if bytes.len() < 2 {
        return None;
    }
    let mut out = Vec::new();
    while r.at < bytes.len() {
        let start = r.at;
        let ty = bigsize(&mut r)?;
        let len = usize::try_from(bigsize(&mut r)?).ok()?;
        r.take(len).ok()?;
        if out.last().is_some_and(|(last, _)| *last >= ty) {
            return None;
        }
        out.push((ty, start..r.at));
    }
    Some(out)
}

fn bigsize(r: &mut Cursor<'_>) -> Option<u64> {
    let first = r.byte().ok()?;
    let n = match first {
        0xfd => 2,
        0xfe => 4,
        0xff => 8,
        b => return Some(u64::from(b)),
    };
    let mut v = 0u64;
    for b in r.take(n).ok()? {
        v = v << 8 | u64::from(*b);
    }
    Some(v)
}

/// Writes the ops turning `old` into `new`. Two objects of the crate's TLV encoding with the
/// same header are compared record by record (an added, removed or resized record does not
/// misalign the others); anything else as one range.
fn diff(old: &[u8], new: &[u8], ops: &mut Ops) {
    let same_header = old.len() >= 2 && new.len() >= 2 && old[..2] == new[..2];
    let records = if same_header { tlv_records(old).zip(tlv_records(new)) } else { None };
    let Some((olds, news)) = records else {
        diff_range(old, 0..old.len(), new, ops);
        return;
    };
    ops.copy(2);
    let (mut i, mut j) = (0, 0);
    while i < olds.len() || j < news.len() {
        match (olds.get(i), news.get(j)) {
            (Some((ot, or)), Some((nt, nr))) if ot == nt => {
                diff_range(old, or.clone(), &new[nr.clone()], ops);
                i += 1;
                j += 1;
            }
            (Some((ot, or)), Some((nt, _))) if ot < nt => {
                ops.skip(or.len());
                i += 1;
            }
            (None, Some(_)) | (Some(_), Some(_)) => {
                let nr = news[j].1.clone();
                for b in &new[nr] {
                    ops.literal(*b, false);
                }
                j += 1;
            }
            (Some((_, or)), None) => {
                ops.skip(or.len());
                i += 1;
            }
            (None, None) => break,
        }
    }
}

/// Writes the ops turning `old[range]` into `new`: common prefix and suffix copied, the middle
/// aligned byte by byte if it kept its length, and otherwise (or where bytes moved) built from
/// literals and copies of `old[range]` found elsewhere.
fn diff_range(old: &[u8], range: core::ops::Range<usize>, new: &[u8], ops: &mut Ops) {
    let a = &old[range.clone()];
    let prefix = a.iter().zip(new).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(new.len()) - prefix;
    let suffix = a.iter().rev().zip(new.iter().rev()).take(max_suffix).take_while(|(x, y)| x == y).count();
    ops.copy(prefix);
    let (old_mid, new_mid) = (prefix..a.len() - suffix, &new[prefix..new.len() - suffix]);
    let window = if a.len() <= MAX_SEARCH_WINDOW { Some((range.start, a)) } else { None };
    if old_mid.len() == new_mid.len() {
        let mut k = 0;
        while k < new_mid.len() {
            let at = old_mid.start + k;
            let run = a[at..old_mid.end].iter().zip(&new_mid[k..]).take_while(|(x, y)| x == y).count();
            if run >= 3 || k + run == new_mid.len() {
                ops.copy(run);
                k += run;
                continue;
            }
            if let Some((offset, n)) = window.and_then(|w| longest_match(w, &new_mid[k..])).filter(|(_, n)| *n > run) {
                ops.from(offset, n, true);
                k += n;
                continue;
            }
            ops.literal(new_mid[k], true);
            k += 1;
        }
    } else {
        ops.skip(old_mid.len());
        let mut k = 0;
        while k < new_mid.len() {
            if let Some((offset, n)) = window.and_then(|w| longest_match(w, &new_mid[k..])) {
                ops.from(offset, n, false);
                k += n;
                continue;
            }
            ops.literal(new_mid[k], false);
            k += 1;
        }
    }
    ops.copy(suffix);
}

/// The longest prefix of `want` found in the window (`(offset of the window in the old state,
/// bytes)`), if at least [`MIN_MATCH`] long: `(absolute offset, length)`.
fn longest_match((base, window): (usize, &[u8]), want: &[u8]) -> Option<(usize, usize)> {
    if want.len() < MIN_MATCH {
        return None;
    }
    let mut best: Option<(usize, usize)> = None;
    for start in 0..window.len().saturating_sub(MIN_MATCH - 1) {
        if window[start] != want[0] {
            continue;
        }
        let n = window[start..].iter().zip(want).take_while(|(x, y)| x == y).count();
        if n >= MIN_MATCH && best.is_none_or(|(_, b)| n > b) {
            best = Some((base + start, n));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn roundtrip(old: &[u8], new: &[u8]) -> usize {
        let d = DeltaRecord::between(7, old, new);
        let bytes = d.encode();
        let back = DeltaRecord::decode(&bytes).expect("decodes");
        assert_eq!(back, d);
        assert_eq!(back.apply(old).expect("applies"), new);
        bytes.len()
    }

    fn tlv(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = vec![0x4c, 2];
        for (t, value) in records {
            v.push(*t);
            v.push(value.len() as u8);
            v.extend_from_slice(value);
        }
        v
    }

    #[test]
    fn deltas_round_trip_and_stay_small() {
        roundtrip(b"", b"");
        roundtrip(b"", b"abc");
        roundtrip(b"abc", b"");
        roundtrip(b"same", b"same");
        let old = tlv(&[(0, &[0, 0, 0, 0, 0, 0, 0, 9]), (2, &[1; 100]), (4, &[5; 40])]);
        let new = tlv(&[(0, &[0, 0, 0, 0, 0, 0, 0, 10]), (2, &[1; 100]), (3, &[8; 3]), (4, &[5; 20])]);
        assert!(roundtrip(&old, &new) < 30);
        // A 33-byte field moved from one slot to another is copied, not re-written.
        let p: Vec<u8> = (0..33).collect();
        let n: Vec<u8> = (100..133).collect();
        let old = tlv(&[(12, &[[1].as_slice(), &p, &[1], &n, &[0]].concat())]);
        let new = tlv(&[(12, &[[1].as_slice(), &n, &[0], &[1], &p].concat())]);
        assert!(roundtrip(&old, &new) < 30, "{}", roundtrip(&old, &new));
        // Different headers: a plain patch.
        roundtrip(b"\x4c\x01abcdef", b"\x4c\x02abcdxf");
    }

    #[test]
    fn damaged_or_misapplied_deltas_are_refused() {
        let old = tlv(&[(0, &[1, 2, 3, 4]), (2, b"hello world, hello")]);
        let new = tlv(&[(0, &[1, 2, 3, 5]), (2, b"hello there, hello")]);
        let bytes = DeltaRecord::between(3, &old, &new).encode();
        for n in 0..bytes.len() {
            if let Ok(d) = DeltaRecord::decode(&bytes[..n]) {
                assert!(d.apply(&old).is_err(), "truncated at {n}");
            }
        }
        for k in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[k] ^= 0x10;
            if let Ok(d) = DeltaRecord::decode(&damaged) {
                assert!(d.apply(&old).map_or(true, |r| r == new && k < 3), "byte {k}");
            }
        }
        let d = DeltaRecord::decode(&bytes).unwrap();
        let other = tlv(&[(0, &[1, 2, 3, 4]), (2, b"hello world, hellp")]);
        assert!(d.apply(&other).is_err(), "applied to the wrong state");
        assert!(d.apply(&old[..old.len() - 1]).is_err());
    }

    #[test]
    fn replay_skips_known_updates_and_refuses_gaps() {
        let s1 = tlv(&[(0, &[1])]);
        let s2 = tlv(&[(0, &[2])]);
        let s3 = tlv(&[(0, &[3])]);
        let d2 = DeltaRecord::between(2, &s1, &s2).encode();
        let d3 = DeltaRecord::between(3, &s2, &s3).encode();
        let other = vec![0x4e, 1, 0];
        let log = vec![d2.clone(), other.clone(), d3.clone()];
        assert_eq!(replay(&s1, 1, &log), Ok((s3.clone(), 3)));
        assert_eq!(replay(&s2, 2, &log), Ok((s3.clone(), 3)));
        assert_eq!(replay(&s3, 3, &log), Ok((s3.clone(), 3)));
        assert_eq!(replay(&s1, 1, [&d3]), Err(ReplayError::MissingDelta { expected: 2, found: 3 }));
        assert!(matches!(replay(&s1, 1, [&d3, &d2]), Err(ReplayError::MissingDelta { .. })));
    }

    #[test]
    fn varints_have_one_encoding() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Cursor { bytes: &out, at: 0 }.varint(), Ok(v));
        }
        assert!(Cursor { bytes: &[0x80, 0x00], at: 0 }.varint().is_err());
    }
}
