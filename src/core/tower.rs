//! Blind watchtower appointments (the BOLT 13 draft, The Eye of Satoshi): a client hands a tower,
//! for each transaction its peer must never publish, an *appointment*: a locator (the first 16
//! bytes of that transaction's txid) and a blob, ChaCha20-Poly1305-encrypted under
//! `SHA256(txid)` with a zero nonce, holding fully signed transactions that punish it. The tower
//! learns nothing until the transaction appears on chain (it cannot tell which channel, which
//! amounts, or whether the blob is for a breach at all), then decrypts the blob with the txid it
//! just saw and broadcasts what it holds. It holds no key: every transaction in the blob is
//! already signed (`SIGHASH_ALL`) and pays one output to the client's registered script, so the
//! tower cannot redirect any of it.
//!
//! # Fees: a ladder of penalties in one blob
//! The penalty cannot be re-signed by the tower, so its fee is chosen when the client signs. The
//! blob holds a *ladder*: the same penalty signed at rising feerates (for example 1×, 2×, 4×, 8×
//! the rate at signing). The tower broadcasts the cheapest when the breach confirms and, for
//! each later block in which no output of the breach was spent, the next one (a BIP-125
//! replacement: same inputs, higher fee and feerate); past the top it rebroadcasts the top. The
//! alternative (an anchor output the tower bumps by CPFP with its own coins) needs a tower
//! wallet, an extra output in every penalty and the tower's trust in the client to be repaid; a
//! ladder needs nothing from the tower and costs storage only: one signed penalty per rung (see
//! the measurements in `tests/towers.rs`). The ladder is encrypted once, under one key and
//! nonce: rungs are never encrypted separately under the same nonce. A second, optional ladder
//! (the *fallback*) sweeps only the outputs the cheater cannot take at once: if the cheater
//! spends one of the others first (an HTLC output, through its HTLC transaction), the full
//! penalty can no longer confirm and the tower climbs the fallback instead. The output of that
//! HTLC transaction is a breach of its own: when its txid can be known in advance (Lightning
//! without anchors) the client seals one more appointment under it (`lightning::tower`), which
//! the tower matches, checks and answers like any other; it cannot tell such an appointment
//! from a commitment's.
//!
//! # Resource limits
//! A tower is a public service facing clients it cannot trust: any of them may flood it. It
//! enforces [`TowerLimits`]: a quota of appointments stored per client and a largest sealed blob,
//! refusing what exceeds them with a typed [`TowerError`] and storing nothing then; what it
//! stored already (for that client or any other) is untouched. Appointments are kept per client:
//! another client's blob under the same locator (a cheater who registers and sends garbage
//! under the locator of its own revoked commitment, say) never replaces or hides a client's
//! own; it costs the tower one failed decryption when the breach appears. A client re-sending the
//! same appointment stores nothing new; sending another blob under a locator it used replaces
//! its own (a new ladder for the same revoked state), within the quota.
//!
//! Storage per revoked state: [`LOCATOR_LEN`] + 4 (the client index) + the sealed blob, which is
//! the encoded ladder and fallback (one signed penalty per rung: about 4× one penalty for the
//! default 4-rung ladder) plus the 16-byte tag; with second-stage appointments, one more
//! appointment per HTLC of that state (a one-input penalty per rung). `tests/towers.rs`
//! measures and prints it (`cargo test --test towers costs -- --nocapture`): O(states), or
//! O(states × HTLCs) with second-stage appointments, the price of not trusting the tower,
//! against the trusted kit's O(HTLCs).
//!
//! Everything here is sans-I/O: the embedder feeds [`Tower::block`] each block's transactions
//! and broadcasts what it returns. The byte layout of an appointment is
//! `kind ‖ version ‖ TLV(0: locator, 2: sealed blob)`; the blob's plaintext is
//! `kind ‖ version ‖ TLV(0: ladder, 1: fallback ladder)`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};
use chacha20_poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::encode::{read_header, required, DecodeError, Reader, TlvWriter, Writer};

const KIND_APPOINTMENT: u8 = crate::core::kinds::APPOINTMENT;
const KIND_BLOB: u8 = crate::core::kinds::APPOINTMENT_BLOB;
const KIND_TOWER: u8 = crate::core::kinds::TOWER;
const VERSION: u8 = 1;

/// The largest sealed blob an appointment may carry (bytes): a few penalties of the largest
/// standard size. A tower may accept less ([`TowerLimits::max_blob_len`]).
pub const MAX_BLOB_LEN: usize = 1 << 20;
/// The default quota of appointments a tower stores per client ([`TowerLimits`]).
pub const DEFAULT_MAX_APPOINTMENTS: u32 = 10_000;
/// The most rungs a penalty ladder may have.
pub const MAX_LADDER: usize = 16;
/// The length of a locator in bytes.
pub const LOCATOR_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// The first 16 bytes of a txid (internal byte order): what a tower matches transactions by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Locator(pub [u8; LOCATOR_LEN]);

impl Locator {
    /// The locator of `txid`.
    pub fn of(txid: &Txid) -> Self {
        let mut l = [0u8; LOCATOR_LEN];
        l.copy_from_slice(&txid.as_byte_array()[..LOCATOR_LEN]);
        Locator(l)
    }
}

/// The blob's key: `SHA256(txid)` (internal byte order).
fn blob_key(txid: &Txid) -> Key {
    Key::new(sha256::Hash::hash(txid.as_byte_array()).to_byte_array())
}

/// One appointment: a locator and a sealed blob. It carries no key and no readable transaction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Appointment {
    /// Which transaction triggers it.
    pub locator: Locator,
    /// ChaCha20-Poly1305 ciphertext ‖ tag of the encoded ladder.
    pub blob: Vec<u8>,
}

impl Appointment {
    /// Seals `ladder` (penalties for `breach` at rising feerates) and `fallback` (the same for
    /// the outputs the cheater cannot take at once, used if it spends others first; may be
    /// empty) into an appointment.
    pub fn seal(breach: &Txid, ladder: &[Transaction], fallback: &[Transaction]) -> Self {
        let mut t = TlvWriter::new(KIND_BLOB, VERSION);
        t.record(0, |w| write_txs(w, ladder));
        if !fallback.is_empty() {
            t.record(1, |w| write_txs(w, fallback));
        }
        let mut blob = t.finish();
        let tag = ChaCha20Poly1305::new(blob_key(breach), Nonce::new([0; 12])).encrypt(&mut blob, None);
        blob.extend_from_slice(&tag);
        Appointment { locator: Locator::of(breach), blob }
    }

    /// Opens the blob with the txid of the transaction that matched the locator, or `None` if
    /// the blob was not sealed for `txid` (or was altered) or does not decode.
    pub fn open(&self, txid: &Txid) -> Option<Penalties> {
        if Locator::of(txid) != self.locator || self.blob.len() < TAG_LEN {
            return None;
        }
        let (ct, tag) = self.blob.split_at(self.blob.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        ChaCha20Poly1305::new(blob_key(txid), Nonce::new([0; 12])).decrypt(&mut buf, tag, None).ok()?;
        decode_penalties(&buf).ok()
    }

    /// The versioned encoding (what the client sends the tower).
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::with_capacity(KIND_APPOINTMENT, VERSION, self.blob.len() + 32);
        t.record(0, |w| {
            w.bytes(&self.locator.0);
        })
        .record(2, |w| {
            w.bytes(&self.blob);
        });
        t.finish()
    }

    /// Decodes an appointment.
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bytes, a blob shorter than its tag or longer than
    /// [`MAX_BLOB_LEN`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (version, tlv) = read_header(bytes, KIND_APPOINTMENT)?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (mut locator, mut blob) = (None, None);
        tlv.for_each(|ty, r| {
            match ty {
                0 => locator = Some(Locator(r.array()?)),
                2 => blob = Some(read_blob(r)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Appointment { locator: required(locator, "locator")?, blob: required(blob, "blob")? })
    }
}

fn read_blob(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = r.remaining();
    if !(TAG_LEN..=MAX_BLOB_LEN).contains(&n) {
        return Err(DecodeError::InvalidValue("blob"));
    }
    Ok(r.take(n)?.to_vec())
}

/// What a blob holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Penalties {
    /// The penalty sweeping every output of the breach, at rising feerates.
    pub ladder: Vec<Transaction>,
    /// Penalties sweeping only the outputs the cheater cannot spend at once (its delayed
    /// `to_local`), at rising feerates: broadcast instead if another output is spent first.
    pub fallback: Vec<Transaction>,
}

fn decode_penalties(bytes: &[u8]) -> Result<Penalties, DecodeError> {
    let (version, tlv) = read_header(bytes, KIND_BLOB)?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (mut ladder, mut fallback) = (None, Vec::new());
    tlv.for_each(|ty, r| {
        match ty {
            0 => ladder = Some(read_txs(r, MAX_LADDER)?),
            1 => fallback = read_txs(r, MAX_LADDER)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Penalties { ladder: required(ladder, "ladder")?, fallback })
}

fn read_txs(r: &mut Reader<'_>, max: usize) -> Result<Vec<Transaction>, DecodeError> {
    let n = r.bigsize()?;
    if n > max as u64 {
        return Err(DecodeError::InvalidValue("transactions"));
    }
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        v.push(r.transaction("transaction")?);
    }
    Ok(v)
}

/// A client of a tower (an index into its registrations).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ClientId(pub u32);

/// What a tower accepts from each client (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TowerLimits {
    /// The most appointments stored per client at once (an appointment answered or dropped when
    /// its breach appears frees its slot).
    pub max_appointments: u32,
    /// The largest sealed blob accepted, in bytes (at most [`MAX_BLOB_LEN`], which no
    /// appointment can exceed anyway).
    pub max_blob_len: u32,
}

impl Default for TowerLimits {
    /// [`DEFAULT_MAX_APPOINTMENTS`] per client, blobs up to [`MAX_BLOB_LEN`].
    fn default() -> Self {
        TowerLimits { max_appointments: DEFAULT_MAX_APPOINTMENTS, max_blob_len: MAX_BLOB_LEN as u32 }
    }
}

/// Why a tower refused an appointment (nothing was stored).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TowerError {
    /// The client never registered.
    UnknownClient(ClientId),
    /// The appointment does not decode.
    Decode(DecodeError),
    /// The client already has [`TowerLimits::max_appointments`] appointments stored.
    QuotaExceeded {
        /// The client.
        client: ClientId,
        /// Its quota.
        limit: u32,
    },
    /// The sealed blob (or, before decoding, the whole appointment) is larger than
    /// [`TowerLimits::max_blob_len`].
    BlobTooLarge {
        /// Its size in bytes.
        len: usize,
        /// The largest accepted.
        max: u32,
    },
}

impl fmt::Display for TowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TowerError::UnknownClient(c) => write!(f, "unknown tower client {}", c.0),
            TowerError::Decode(e) => write!(f, "appointment does not decode: {e}"),
            TowerError::QuotaExceeded { client, limit } => {
                write!(f, "tower client {} has its {limit} appointments stored already", client.0)
            }
            TowerError::BlobTooLarge { len, max } => write!(f, "appointment of {len} bytes exceeds {max}"),
        }
    }
}

impl core::error::Error for TowerError {}

/// A breach the tower is answering.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Breach {
    txid: Txid,
    ladder: Vec<Transaction>,
    /// Used if the cheater spends an output of `ladder` first (then emptied).
    fallback: Vec<Transaction>,
    /// The rung to broadcast at the next block.
    next: usize,
}

/// The bytes an encoded appointment takes beyond its blob: header, two TLV headers, the locator.
const APPOINTMENT_OVERHEAD: usize = 2 + 2 * 10 + LOCATOR_LEN;

/// A blind watchtower (see the module docs). Holds no key; stores `(locator, blob)` per revoked
/// state and the client's payout script.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Tower {
    clients: Vec<ScriptBuf>,
    appointments: BTreeMap<Locator, Vec<(ClientId, Vec<u8>)>>,
    breaches: Vec<Breach>,
    limits: TowerLimits,
    /// Appointments stored per client (derived from `appointments`).
    stored: Vec<u32>,
}

impl Tower {
    /// An empty tower with the default [`TowerLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tower enforcing `limits`.
    pub fn with_limits(limits: TowerLimits) -> Self {
        Tower { limits, ..Self::default() }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> TowerLimits {
        self.limits
    }

    /// Registers a client whose penalties must pay `destination` (and nothing else).
    pub fn register(&mut self, destination: ScriptBuf) -> ClientId {
        self.clients.push(destination);
        self.stored.push(0);
        ClientId(self.clients.len() as u32 - 1)
    }

    /// Stores an encoded appointment for `client`. The same appointment sent again stores
    /// nothing new; another blob under a locator the client used replaces its own.
    ///
    /// # Errors
    /// [`TowerError`]: an unknown client, bytes that do not decode, a blob larger than the
    /// limit (checked on the raw length first, before any decoding), a client at its quota.
    /// Nothing is stored then, and nothing stored is changed.
    pub fn add_appointment(&mut self, client: ClientId, bytes: &[u8]) -> Result<(), TowerError> {
        let Some(count) = self.stored.get(client.0 as usize).copied() else {
            return Err(TowerError::UnknownClient(client));
        };
        let max = self.limits.max_blob_len.min(MAX_BLOB_LEN as u32);
        if bytes.len() > max as usize + APPOINTMENT_OVERHEAD {
            return Err(TowerError::BlobTooLarge { len: bytes.len(), max });
        }
        let a = Appointment::decode(bytes).map_err(TowerError::Decode)?;
        if a.blob.len() > max as usize {
            return Err(TowerError::BlobTooLarge { len: a.blob.len(), max });
        }
        let entries = self.appointments.get(&a.locator);
        let own = entries.and_then(|v| v.iter().position(|(c, _)| *c == client));
        if own.is_none() && count >= self.limits.max_appointments {
            return Err(TowerError::QuotaExceeded { client, limit: self.limits.max_appointments });
        }
        let entries = self.appointments.entry(a.locator).or_default();
        match own.and_then(|k| entries.get_mut(k)) {
            Some(entry) => entry.1 = a.blob,
            None => {
                entries.push((client, a.blob));
                if let Some(n) = self.stored.get_mut(client.0 as usize) {
                    *n += 1;
                }
            }
        }
        Ok(())
    }

    /// The number of appointments stored for `client`.
    pub fn appointments_of(&self, client: ClientId) -> u32 {
        self.stored.get(client.0 as usize).copied().unwrap_or(0)
    }

    /// The number of appointments stored.
    pub fn appointment_count(&self) -> usize {
        self.appointments.values().map(Vec::len).sum()
    }

    /// The bytes the tower stores for its appointments (locators and blobs).
    pub fn stored_bytes(&self) -> usize {
        self.appointments.values().flatten().map(|(_, b)| LOCATOR_LEN + 4 + b.len()).sum()
    }

    /// The breaches being answered (their txids).
    pub fn active_breaches(&self) -> Vec<Txid> {
        self.breaches.iter().map(|b| b.txid).collect()
    }

    /// Shows the tower a block's transactions; returns what to broadcast: the first rung of the
    /// ladder of each breach found in it, and the next rung of each earlier breach none of whose
    /// penalties confirmed yet. If the cheater spends an output the ladder sweeps (an HTLC
    /// output, through its HTLC transaction), the tower turns to the fallback ladder (the
    /// delayed `to_local` alone) and climbs it from the same rung; that HTLC transaction, if the
    /// client sealed an appointment under its txid, is a breach answered in the same block. An
    /// appointment whose blob does not open for the matching txid, or whose transactions do not
    /// all spend only that transaction and pay only the client's script, is dropped and answers
    /// nothing.
    pub fn block(&mut self, txs: &[Transaction]) -> Vec<Transaction> {
        for tx in txs {
            let txid = tx.compute_txid();
            let Some(stored) = self.appointments.remove(&Locator::of(&txid)) else { continue };
            for (client, _) in &stored {
                if let Some(n) = self.stored.get_mut(client.0 as usize) {
                    *n = n.saturating_sub(1);
                }
            }
            for (client, blob) in stored {
                let Some(dest) = self.clients.get(client.0 as usize) else { continue };
                let a = Appointment { locator: Locator::of(&txid), blob };
                let Some(Penalties { mut ladder, mut fallback }) = a.open(&txid) else { continue };
                let valid = |p: &Transaction| pays_only(tx, &txid, p, dest).is_some();
                if ladder.is_empty() || !ladder.iter().chain(&fallback).all(valid) {
                    continue;
                }
                ladder.sort_by_key(|p| pays_only(tx, &txid, p, dest));
                fallback.sort_by_key(|p| pays_only(tx, &txid, p, dest));
                if self.breaches.iter().any(|b| b.txid == txid && b.ladder == ladder) {
                    continue;
                }
                self.breaches.push(Breach { txid, ladder, fallback, next: 0 });
            }
        }
        let ids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
        self.breaches.retain_mut(|b| {
            if b.ladder.iter().chain(&b.fallback).any(|p| ids.contains(&p.compute_txid())) {
                return false; // a penalty confirmed
            }
            let spent: Vec<OutPoint> = txs
                .iter()
                .flat_map(|t| t.input.iter().map(|i| i.previous_output))
                .filter(|op| op.txid == b.txid)
                .collect();
            let conflicts =
                |l: &[Transaction]| l.iter().any(|p| p.input.iter().any(|i| spent.contains(&i.previous_output)));
            if conflicts(&b.ladder) {
                if b.fallback.is_empty() || conflicts(&b.fallback) {
                    return false; // nothing left to punish
                }
                b.ladder = core::mem::take(&mut b.fallback);
            }
            true
        });
        let mut out = Vec::new();
        for b in &mut self.breaches {
            if let Some(tx) = b.ladder.get(b.next.min(b.ladder.len().saturating_sub(1))) {
                out.push(tx.clone());
            }
            b.next = b.next.saturating_add(1);
        }
        out
    }

    /// The versioned encoding of the tower's state.
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::with_capacity(KIND_TOWER, VERSION, self.stored_bytes() + 64);
        t.record(0, |w| {
            w.bigsize(self.clients.len() as u64);
            for s in &self.clients {
                w.script(s);
            }
        })
        .record(2, |w| {
            w.bigsize(self.appointment_count() as u64);
            for (l, v) in &self.appointments {
                for (c, blob) in v {
                    w.bytes(&l.0).u32(c.0).var_bytes(blob);
                }
            }
        })
        .record(4, |w| {
            w.bigsize(self.breaches.len() as u64);
            for b in &self.breaches {
                w.txid(&b.txid).u64(b.next as u64);
                write_txs(w, &b.ladder);
                write_txs(w, &b.fallback);
            }
        })
        .record(6, |w| {
            w.u32(self.limits.max_appointments).u32(self.limits.max_blob_len);
        });
        t.finish()
    }

    /// Decodes a tower's state (a state without limits, from before they existed, gets the
    /// default ones).
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bytes (an appointment of an unknown client included).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (version, tlv) = read_header(bytes, KIND_TOWER)?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let mut tower = Tower::new();
        let mut seen = [false; 3];
        tlv.for_each(|ty, r| {
            match ty {
                0 => {
                    for _ in 0..count(r)? {
                        tower.clients.push(r.script()?);
                    }
                }
                2 => {
                    for _ in 0..count(r)? {
                        let l = Locator(r.array()?);
                        let c = ClientId(r.u32()?);
                        if c.0 as usize >= tower.clients.len() {
                            return Err(DecodeError::InvalidValue("client"));
                        }
                        let mut blob = Reader::new(r.var_bytes()?);
                        let entries = tower.appointments.entry(l).or_default();
                        if entries.iter().any(|(e, _)| *e == c) {
                            return Err(DecodeError::InvalidValue("appointment"));
                        }
                        entries.push((c, read_blob(&mut blob)?));
                    }
                }
                4 => {
                    for _ in 0..count(r)? {
                        let txid = r.txid()?;
                        let next = usize::try_from(r.u64()?).map_err(|_| DecodeError::InvalidValue("next"))?;
                        let ladder = read_txs(r, MAX_LADDER)?;
                        let fallback = read_txs(r, MAX_LADDER)?;
                        if ladder.is_empty() {
                            return Err(DecodeError::InvalidValue("ladder"));
                        }
                        tower.breaches.push(Breach { txid, ladder, fallback, next });
                    }
                }
                6 => tower.limits = TowerLimits { max_appointments: r.u32()?, max_blob_len: r.u32()? },
                _ => return Ok(false),
            }
            if let Some(s) = seen.get_mut(ty as usize / 2) {
                *s = true;
            }
            Ok(true)
        })?;
        if !seen.iter().all(|s| *s) {
            return Err(DecodeError::MissingField("tower"));
        }
        tower.stored = alloc::vec![0; tower.clients.len()];
        for (c, _) in tower.appointments.values().flatten() {
            if let Some(n) = tower.stored.get_mut(c.0 as usize) {
                *n += 1;
            }
        }
        Ok(tower)
    }
}

fn write_txs(w: &mut Writer, txs: &[Transaction]) {
    w.bigsize(txs.len() as u64);
    for tx in txs {
        w.transaction(tx);
    }
}

/// A count that cannot exceed the remaining bytes (each item takes at least one).
fn count(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let n = r.bigsize()?;
    if n > r.remaining() as u64 {
        return Err(DecodeError::Truncated);
    }
    Ok(n)
}

/// The fee of `penalty` if it spends only distinct outputs of `breach` (whose txid is `txid`) and
/// has exactly one output, paying `dest`, no larger than what it spends.
fn pays_only(breach: &Transaction, txid: &Txid, penalty: &Transaction, dest: &ScriptBuf) -> Option<Amount> {
    if penalty.input.is_empty() || penalty.output.len() != 1 {
        return None;
    }
    let mut spent: Vec<OutPoint> = Vec::with_capacity(penalty.input.len());
    let mut total = Amount::ZERO;
    for i in &penalty.input {
        let op = i.previous_output;
        if op.txid != *txid || spent.contains(&op) {
            return None;
        }
        total = total.checked_add(breach.output.get(op.vout as usize)?.value)?;
        spent.push(op);
    }
    let out = penalty.output.first()?;
    if out.script_pubkey != *dest {
        return None;
    }
    total.checked_sub(out.value)
}
