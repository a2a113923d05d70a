//! Shared harness for the `paychan` fuzz targets: a byte reader that turns fuzz input into
//! actions, an in-memory wire with the faults the state-machine targets inject, and the
//! deterministic channel pairs each layer starts from (built once per process, cloned per input).
//!
//! The targets in `fuzz_targets/` are thin wrappers around [`spilman_state::run`],
//! [`lightning_state::run`] and [`duplex_state::run`]; `examples/gen_corpus.rs` uses the same
//! setups to write the seed corpora.

pub mod duplex_state;
pub mod lightning_state;
pub mod spilman_state;

use std::collections::VecDeque;

use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::{
    absolute, transaction, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, WPubkeyHash, Witness,
};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::PaymentPreimage;

/// Whether `PAYCHAN_FUZZ_TRACE` is set: the harnesses then print every action and its outcome
/// to stderr (for reading a reproducer).
pub fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("PAYCHAN_FUZZ_TRACE").is_some())
}

/// A check a state harness knowingly relaxes, each for the reason given. Everything not listed
/// here is always checked: there is no global switch, and a known issue of `src/` is never
/// stepped around (a find is a failure). Each deviation is consulted through [`accepted`] exactly
/// where it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deviation {
    /// Lightning and duplex: a corrupted (one byte flipped) or replayed message that the recipient
    /// acted on can carry data no signature covers (an onion, a failure reason, a fee proposal, a
    /// claimed commitment number), so from then on the peers may legitimately disagree, and a
    /// Lightning peer may legitimately report `LostState`. Value conservation is still checked.
    ActedOnCorruptMessage,
    /// Duplex: a message the recipient refused (crossing messages are refused legitimately, e.g.
    /// a payment that meets a reset, or a payment sent again after a reconnection whose HTLC
    /// expiry left the window while blocks passed before its delivery) suspends the agreement
    /// check until the next reconnection, whose `Reestablish` exchange must repair it (as for a
    /// lost message). Every input ends with such a reconnection with nothing else happening
    /// (`duplex_state::Pair::settle`), where no refusal is excused: a channel wedged off chain
    /// fails there (the former `DuplexRefusedResend` deviation excused that, until `src/duplex`
    /// was fixed).
    DuplexRefusedMessage,
}

impl Deviation {
    /// Every accepted deviation.
    pub const ALL: [Deviation; 2] = [Deviation::ActedOnCorruptMessage, Deviation::DuplexRefusedMessage];

    /// Its name in `PAYCHAN_FUZZ_DENY`.
    pub fn name(self) -> &'static str {
        match self {
            Deviation::ActedOnCorruptMessage => "ActedOnCorruptMessage",
            Deviation::DuplexRefusedMessage => "DuplexRefusedMessage",
        }
    }
}

/// Whether the harness may relax its checks for `d` (it then does so at the call site). True
/// unless `PAYCHAN_FUZZ_DENY` names `d` (comma-separated names, or `all`): denying a deviation
/// shows what it hides, i.e. whether it is still needed.
pub fn accepted(d: Deviation) -> bool {
    static DENY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let deny = DENY.get_or_init(|| {
        std::env::var("PAYCHAN_FUZZ_DENY")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    });
    let ok = !deny.iter().any(|n| n == "all" || n == d.name());
    if trace() {
        eprintln!("  deviation {}: {}", d.name(), if ok { "accepted, checks relaxed" } else { "denied" });
    }
    ok
}

/// Most actions one input is turned into (keeps every execution cheap: ECDSA dominates).
pub const MAX_ACTIONS: usize = 48;

/// Most transactions kept for the "mine" action.
pub const MAX_POOL: usize = 16;

/// What the corpus generator collects from a scripted run.
#[derive(Clone, Default)]
pub struct Log {
    /// Encoded messages.
    pub msgs: Vec<Vec<u8>>,
    /// Persisted snapshots.
    pub snapshots: Vec<Vec<u8>>,
    /// Persisted records (Lightning penalty records).
    pub records: Vec<Vec<u8>>,
}

/// Reads fuzz bytes; yields zeros once exhausted.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }
}

/// A signer from a one-byte seed, leaked so channel values can borrow it for the whole process.
pub fn signer(seed: u8, index: u64) -> &'static InMemorySigner {
    Box::leak(Box::new(InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), index))))
}

/// The P2WPKH script `[n; 20]`.
pub fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

/// An unsigned funding transaction: one native segwit input spending `prevout`, then `outputs`
/// (as `paychan::testing::wallet::unsigned_funding`, which this crate does not build with).
pub fn unsigned_funding(prevout: OutPoint, outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prevout,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

/// The preimages HTLCs are locked to: index 0..4 (the fuzzer picks one; index 4 is never used
/// for a lock, so it is always a wrong preimage).
pub fn preimage(k: u8) -> PaymentPreimage {
    PaymentPreimage([k % 5 + 1; 32])
}

/// The preimage unlocking `hash`, if it is one of [`preimage`]'s.
pub fn preimage_for(hash: &paychan::core::PaymentHash) -> Option<PaymentPreimage> {
    (0..5).map(preimage).find(|p| p.hash() == *hash)
}

/// Messages in flight in both directions: `q[i]` holds the messages *to* party `i`. A dropped
/// message breaks its direction (as a dead connection would: nothing after a gap arrives) until
/// the next reconnection.
#[derive(Clone)]
pub struct Wire<M> {
    /// Queues by recipient.
    pub q: [VecDeque<M>; 2],
    /// A message to this party was dropped: discard everything until reconnection.
    pub broken: [bool; 2],
}

impl<M> Default for Wire<M> {
    fn default() -> Self {
        Wire { q: [VecDeque::new(), VecDeque::new()], broken: [false, false] }
    }
}

impl<M> Wire<M> {
    /// Queues messages for party `to` (unless its direction is broken).
    pub fn send(&mut self, to: usize, msgs: Vec<M>) {
        if !self.broken[to] {
            self.q[to].extend(msgs);
        }
    }

    /// Whether nothing is in flight.
    pub fn is_quiet(&self) -> bool {
        self.q[0].is_empty() && self.q[1].is_empty()
    }

    /// Drops the next message to `to` and breaks that direction.
    pub fn drop_next(&mut self, to: usize) -> bool {
        if self.q[to].pop_front().is_some() {
            self.q[to].clear();
            self.broken[to] = true;
            true
        } else {
            false
        }
    }

    /// Clears both directions and repairs them (a new connection).
    pub fn reconnect(&mut self) {
        self.q = [VecDeque::new(), VecDeque::new()];
        self.broken = [false, false];
    }
}

/// Flips one byte of an encoded message: `pos` picks the byte, `xor` (made non-zero) the bits.
pub fn mutate(mut bytes: Vec<u8>, pos: u16, xor: u8) -> Vec<u8> {
    if !bytes.is_empty() {
        let i = usize::from(pos) % bytes.len();
        bytes[i] ^= xor.max(1);
    }
    bytes
}

/// Adds broadcast transactions to the pool the "mine" action picks from.
pub fn pool_add(pool: &mut Vec<Transaction>, txs: Vec<Transaction>) {
    for tx in txs {
        if pool.len() < MAX_POOL && !pool.contains(&tx) {
            pool.push(tx);
        }
    }
}

/// Checks the persistence contract of one successful call: an update carries the state after
/// the call (so restoring it loses nothing) with a strictly increasing id. `stored` is the state
/// the embedder's storage holds (the last full snapshot with every delta since replayed): a full
/// snapshot replaces it, a delta (Lightning) is replayed onto it, and either way the result must
/// be the channel's state after the call. Returns that stored state when there is an update.
/// `snapshot_now` is only called when there is an update.
pub fn check_update(
    update: Option<&paychan::driving::StateUpdate>,
    snapshot_now: impl FnOnce() -> Vec<u8>,
    last_id: &mut u64,
    stored: &mut Option<Vec<u8>>,
    who: &str,
) -> Option<Vec<u8>> {
    let u = update?;
    assert!(u.update_id > *last_id, "{who}: update id {} not above {}", u.update_id, last_id);
    let state = match &u.snapshot {
        Some(s) => s.clone(),
        None => {
            let prev = stored.as_ref().unwrap_or_else(|| panic!("{who}: a delta with nothing stored before it"));
            let (state, reached) = paychan::core::delta::replay(prev, *last_id, &u.records)
                .unwrap_or_else(|e| panic!("{who}: delta {} does not replay: {e:?}", u.update_id));
            assert_eq!(reached, u.update_id, "{who}: the delta does not reach its update id");
            state
        }
    };
    *last_id = u.update_id;
    assert!(state == snapshot_now(), "{who}: persisted state differs from the state after the call");
    *stored = Some(state.clone());
    Some(state)
}
