//! Commitment numbers (48-bit, counting up from 0) and their obscured on-chain encoding.

use core::fmt;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::Sequence;

use crate::core::keys::PaymentBasepoint;
use crate::core::shachain::MAX_INDEX;

mod encapsulate {
    /// A commitment number: 0 for the first commitment, at most `2^48 - 1`.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
    pub struct CommitmentNumber(u64);

    impl CommitmentNumber {
        /// The largest commitment number.
        pub const MAX: CommitmentNumber = CommitmentNumber(super::MAX_INDEX);

        /// The number `n`, or `None` if it needs more than 48 bits.
        pub const fn new(n: u64) -> Option<Self> {
            if n <= super::MAX_INDEX {
                Some(CommitmentNumber(n))
            } else {
                None
            }
        }

        /// The number as a `u64`.
        pub const fn to_u64(self) -> u64 {
            self.0
        }
    }
}
pub use encapsulate::CommitmentNumber;

impl CommitmentNumber {
    /// The first commitment.
    pub const ZERO: CommitmentNumber = match CommitmentNumber::new(0) {
        Some(n) => n,
        None => CommitmentNumber::MAX,
    };

    /// The following number, or `None` after `2^48 - 1`.
    pub fn next(self) -> Option<Self> {
        Self::new(self.to_u64() + 1)
    }

    /// The previous number, or `None` for 0.
    pub fn prev(self) -> Option<Self> {
        self.to_u64().checked_sub(1).and_then(Self::new)
    }

    /// The BOLT #3 per-commitment secret index of this commitment: `2^48 - 1 - n`.
    pub fn secret_index(self) -> u64 {
        MAX_INDEX - self.to_u64()
    }

    /// The commitment number of a secret index.
    pub fn from_secret_index(index: u64) -> Option<Self> {
        MAX_INDEX.checked_sub(index).and_then(Self::new)
    }
}

impl fmt::Debug for CommitmentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.to_u64())
    }
}

impl fmt::Display for CommitmentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.to_u64())
    }
}

/// The 48-bit factor that hides commitment numbers on chain: the low 48 bits of
/// `SHA256(opener payment_basepoint ‖ accepter payment_basepoint)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ObscuringFactor(u64);

impl ObscuringFactor {
    /// Computes the factor from the two payment basepoints, the channel opener's first.
    pub fn new(opener: &PaymentBasepoint, accepter: &PaymentBasepoint) -> Self {
        let mut engine = sha256::Hash::engine();
        engine.input(&opener.serialize());
        engine.input(&accepter.serialize());
        let h = sha256::Hash::from_engine(engine).to_byte_array();
        let mut low = [0u8; 8];
        low[2..].copy_from_slice(&h[26..]);
        ObscuringFactor(u64::from_be_bytes(low))
    }

    /// A factor from its raw value (the low 48 bits are used).
    pub const fn from_u64(v: u64) -> Self {
        ObscuringFactor(v & ((1 << 48) - 1))
    }

    /// The raw 48-bit value.
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// The `nLockTime` and input `nSequence` that carry commitment `n` (upper byte `0x20` and
    /// `0x80`, lower 24 bits the low and high halves of the obscured number).
    pub fn encode(self, n: CommitmentNumber) -> (LockTime, Sequence) {
        let obscured = n.to_u64() ^ self.0;
        let locktime = (0x20 << 24) | (obscured & 0xFF_FFFF) as u32;
        let sequence = (0x80 << 24) | ((obscured >> 24) & 0xFF_FFFF) as u32;
        (LockTime::from_consensus(locktime), Sequence(sequence))
    }

    /// Recovers the commitment number from a transaction's `nLockTime` and first input's
    /// `nSequence`, or `None` if they do not carry the BOLT #3 markers.
    pub fn decode(self, locktime: LockTime, sequence: Sequence) -> Option<CommitmentNumber> {
        let lt = locktime.to_consensus_u32();
        let seq = sequence.0;
        if lt >> 24 != 0x20 || seq >> 24 != 0x80 {
            return None;
        }
        let obscured = (u64::from(seq & 0xFF_FFFF) << 24) | u64::from(lt & 0xFF_FFFF);
        CommitmentNumber::new(obscured ^ self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let f = ObscuringFactor(0x2bb0_3852_1914);
        let n = CommitmentNumber::new(42).unwrap();
        let (lt, seq) = f.encode(n);
        assert_eq!(lt.to_consensus_u32(), 542_251_326);
        assert_eq!(seq.0, 2_150_346_808);
        assert_eq!(f.decode(lt, seq), Some(n));
        assert_eq!(f.decode(LockTime::ZERO, seq), None);
        assert_eq!(CommitmentNumber::new(1 << 48), None);
        assert_eq!(CommitmentNumber::MAX.next(), None);
    }
}
