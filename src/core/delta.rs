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
pub const KIND_DELTA: u8 = crate::core::kinds::DELTA;
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
    let step = |h: u32, b: &u8| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    // Byte after byte as ever; eight to a loop turn.
    let chunks = bytes.chunks_exact(8);
    let rest = chunks.remainder();
    let h = chunks.fold(0x811c_9dc5u32, |h, c| c.iter().fold(h, step));
    rest.iter().fold(h, step)
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

    /// Literal bytes (a run of them costs as one byte would: no per-byte bookkeeping).
    fn literals(&mut self, bytes: &[u8], replaces: bool) {
        if bytes.is_empty() {
            return;
        }
        self.flush_copy();
        if !self.lit.is_empty() && self.lit_replaces != replaces {
            self.flush_lit();
        }
        self.lit_replaces = replaces;
        self.lit.extend_from_slice(bytes);
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
                ops.literals(&new[news[j].1.clone()], false);
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
    let prefix = common_prefix(a, new);
    let max_suffix = a.len().min(new.len()) - prefix;
    let suffix = common_suffix(&a[prefix..], &new[prefix..]).min(max_suffix);
    ops.copy(prefix);
    let (old_mid, new_mid) = (prefix..a.len() - suffix, &new[prefix..new.len() - suffix]);
    let mut window = if a.len() <= MAX_SEARCH_WINDOW { Some(Window::new(range.start, a)) } else { None };
    // Literal bytes pending, from `new_mid[lit..k]`: written as one run before the next copy.
    let mut lit = 0;
    if old_mid.len() == new_mid.len() {
        let mut k = 0;
        while k < new_mid.len() {
            let at = old_mid.start + k;
            let run = common_prefix(&a[at..old_mid.end], &new_mid[k..]);
            if run >= 3 || k + run == new_mid.len() {
                ops.literals(&new_mid[lit..k], true);
                ops.copy(run);
                k += run;
                lit = k;
                continue;
            }
            if let Some((offset, n)) =
                window.as_mut().and_then(|w| w.longest_match(&new_mid[k..])).filter(|(_, n)| *n > run)
            {
                ops.literals(&new_mid[lit..k], true);
                ops.from(offset, n, true);
                k += n;
                lit = k;
                continue;
            }
            k += 1;
        }
        ops.literals(&new_mid[lit..], true);
    } else {
        ops.skip(old_mid.len());
        let mut k = 0;
        while k < new_mid.len() {
            if let Some((offset, n)) = window.as_mut().and_then(|w| w.longest_match(&new_mid[k..])) {
                ops.literals(&new_mid[lit..k], false);
                ops.from(offset, n, false);
                k += n;
                lit = k;
                continue;
            }
            k += 1;
        }
        ops.literals(&new_mid[lit..], false);
    }
    ops.copy(suffix);
}

/// How many leading bytes `a` and `b` share (eight at a time while they can).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut k = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        if x != y {
            break;
        }
        k += 8;
    }
    k + a[k..].iter().zip(&b[k..]).take_while(|(x, y)| x == y).count()
}

/// How many trailing bytes `a` and `b` share (eight at a time while they can).
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut k = 0;
    for (x, y) in a.rchunks_exact(8).zip(b.rchunks_exact(8)) {
        if x != y {
            break;
        }
        k += 8;
    }
    k + a[..n - k].iter().rev().zip(b[..n - k].iter().rev()).take_while(|(x, y)| x == y).count()
}

/// An old record searched for copies: `(offset of the record in the old state, its bytes)`, with
/// an index of where each [`MIN_MATCH`]-byte sequence of it starts, built on the first search (a
/// record diffed without one costs nothing more).
struct Window<'a> {
    base: usize,
    bytes: &'a [u8],
    index: Option<MatchIndex>,
}

/// The starts of a record's [`MIN_MATCH`]-byte sequences by hash: `head[h]` is the first start
/// whose sequence hashes to `h`, `next[p]` the next start after `p` with the same hash (each chain
/// in increasing order), [`NO_START`] ending a chain. A window is at most [`MAX_SEARCH_WINDOW`]
/// bytes, so every start fits in 16 bits.
struct MatchIndex {
    shift: u32,
    head: Vec<u16>,
    next: Vec<u16>,
}

const NO_START: u16 = u16::MAX;
const _: () = assert!(MAX_SEARCH_WINDOW < NO_START as usize);

/// The first [`MIN_MATCH`] bytes of `bytes` (at least that many) as a number.
fn match_key(bytes: &[u8]) -> u64 {
    let mut key = [0u8; 8];
    key[8 - MIN_MATCH..].copy_from_slice(&bytes[..MIN_MATCH]);
    u64::from_be_bytes(key)
}

impl MatchIndex {
    /// The index of `bytes` (at least [`MIN_MATCH`] and at most [`MAX_SEARCH_WINDOW`] of them).
    fn new(bytes: &[u8]) -> Self {
        let starts = bytes.len() + 1 - MIN_MATCH;
        let slots = starts.next_power_of_two().max(16);
        let shift = 64 - slots.trailing_zeros();
        let mut index = MatchIndex { shift, head: alloc::vec![NO_START; slots], next: alloc::vec![NO_START; starts] };
        // The key of each start from the next one's: one byte in, one out.
        let mut key = match_key(&bytes[starts - 1..]);
        index.insert(starts - 1, key);
        for p in (0..starts - 1).rev() {
            key = key >> 8 | u64::from(bytes[p]) << (8 * (MIN_MATCH - 1));
            index.insert(p, key);
        }
        index
    }

    /// Puts `start` (below every start already in) first in the chain of `key`.
    fn insert(&mut self, start: usize, key: u64) {
        let h = self.slot(key);
        self.next[start] = self.head[h];
        self.head[h] = start as u16;
    }

    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }
}

impl<'a> Window<'a> {
    fn new(base: usize, bytes: &'a [u8]) -> Self {
        Window { base, bytes, index: None }
    }

    /// The longest prefix of `want` found in the record, if at least [`MIN_MATCH`] long, the first
    /// one of that length: `(offset in the old state, length)`.
    fn longest_match(&mut self, want: &[u8]) -> Option<(usize, usize)> {
        let bytes = self.bytes;
        if want.len() < MIN_MATCH || bytes.len() < MIN_MATCH {
            return None;
        }
        let index = self.index.get_or_insert_with(|| MatchIndex::new(bytes));
        let key = match_key(want);
        let mut best: Option<(usize, usize)> = None;
        let mut p = index.head[index.slot(key)];
        while p != NO_START {
            let start = p as usize;
            // No later start can give a longer match than `want` or than the bytes left.
            if best.is_some_and(|(_, b)| b >= want.len().min(bytes.len() - start)) {
                break;
            }
            if match_key(&bytes[start..]) == key {
                let n = common_prefix(&bytes[start..], want);
                if best.is_none_or(|(_, b)| n > b) {
                    best = Some((start, n));
                }
            }
            p = index.next[start];
        }
        best.map(|(start, n)| (self.base + start, n))
    }
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

    /// The search the index replaces: every start of the record, in order.
    fn scan_longest_match(base: usize, window: &[u8], want: &[u8]) -> Option<(usize, usize)> {
        if want.len() < MIN_MATCH {
            return None;
        }
        let mut best: Option<(usize, usize)> = None;
        for start in 0..window.len().saturating_sub(MIN_MATCH - 1) {
            let n = window[start..].iter().zip(want).take_while(|(x, y)| x == y).count();
            if n >= MIN_MATCH && best.is_none_or(|(_, b)| n > b) {
                best = Some((base + start, n));
            }
        }
        best
    }

    #[test]
    fn indexed_search_finds_what_a_full_scan_finds() {
        // Records over 2, 3 and 256 symbols (long chains, many ties, hash collisions), each
        // searched for pieces of itself, of a mutated copy and of random bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut found = 0;
        for round in 0..300 {
            let symbols = [2u64, 3, 256][round % 3];
            let len = (rand() % 300) as usize;
            let record: Vec<u8> = (0..len).map(|_| (rand() % symbols) as u8).collect();
            let mut w = Window::new(round, &record);
            for _ in 0..20 {
                let want: Vec<u8> = match rand() % 3 {
                    0 if len > 0 => {
                        let from = (rand() as usize) % len;
                        let mut v = record[from..].to_vec();
                        v.truncate((rand() % 40) as usize);
                        if let Some(b) = v.get_mut((rand() % 40) as usize) {
                            *b ^= 1;
                        }
                        v
                    }
                    _ => (0..rand() % 40).map(|_| (rand() % symbols) as u8).collect(),
                };
                let expected = scan_longest_match(round, &record, &want);
                found += usize::from(expected.is_some());
                assert_eq!(w.longest_match(&want), expected, "record {record:?}, want {want:?}");
            }
        }
        assert!(found > 1_000, "the searches find matches ({found})");
        let (a, b) = (b"abcdefgh12345678", b"12345678abcdefgh");
        assert_eq!(common_prefix(a, a), 16);
        assert_eq!(common_prefix(a, b), 0);
        assert_eq!(common_prefix(&a[..9], a), 9);
        assert_eq!(common_prefix(b"abcdefgh1234x", b"abcdefgh1234y"), 12);
        assert_eq!(common_suffix(a, a), 16);
        assert_eq!(common_suffix(a, b), 0);
        assert_eq!(common_suffix(&a[7..], a), 9);
        assert_eq!(common_suffix(b"x1234abcdefgh", b"y1234abcdefgh"), 12);
        // FNV-1a (32 bits) known answers, across the eight-byte turns.
        assert_eq!(checksum(b""), 0x811c_9dc5);
        assert_eq!(checksum(b"a"), 0xe40c_292c);
        assert_eq!(checksum(b"foobar"), 0xbf9c_f968);
        let long: Vec<u8> = (0..=255u8).cycle().take(1_003).collect();
        let bytewise = long.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
        assert_eq!(checksum(&long), bytewise);
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
