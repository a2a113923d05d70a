//! Per-commitment secrets (BOLT #3 "Per-commitment Secret Requirements").
//!
//! The owner generates secret `I` from one 32-byte seed with [`generate_from_seed`]; indices
//! are 48-bit and count *down* from `2^48 - 1` (the first commitment). The receiver keeps every
//! secret it has been given in a [`SecretStore`] of 49 slots: the secret at an index with `b`
//! trailing zero bits can regenerate every later-revealed index that shares its upper bits, so
//! slot `b` holds the latest such secret. The store's size is constant (49 × 40 bytes
//! encoded) however many commitments have been revoked.

use core::fmt;

use bitcoin::hashes::{sha256, Hash};

use super::keys::{PerCommitmentSecret, Seed};

/// The largest secret index (`2^48 - 1`), used by the first commitment.
pub const MAX_INDEX: u64 = (1 << 48) - 1;

const SLOTS: usize = 49;

/// Applies the BOLT #3 derivation: for each bit `b` from `bits - 1` down to 0 that is set in
/// `index`, flip bit `b` of the value and hash it.
fn derive(mut value: [u8; 32], bits: u32, index: u64) -> [u8; 32] {
    for b in (0..bits).rev() {
        if (index >> b) & 1 == 1 {
            // b < 48, so b / 8 < 6: always in range.
            if let Some(byte) = value.get_mut((b / 8) as usize) {
                *byte ^= 1 << (b % 8);
            }
            value = sha256::Hash::hash(&value).to_byte_array();
        }
    }
    value
}

/// `generate_from_seed(seed, I)` of BOLT #3. Only the low 48 bits of `index` are used.
pub fn generate_from_seed(seed: &Seed, index: u64) -> PerCommitmentSecret {
    PerCommitmentSecret::from_bytes(derive(*seed.as_bytes(), 48, index & MAX_INDEX))
}

/// Why a secret was not accepted into a [`SecretStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShachainError {
    /// The index is above `2^48 - 1`.
    IndexOutOfRange,
    /// Secrets must arrive in order, each index one below the previous one (starting at
    /// `2^48 - 1`).
    UnexpectedIndex {
        /// The index the store expected next.
        expected: u64,
        /// The index that was offered.
        got: u64,
    },
    /// The secret does not derive the secrets already stored: the peer lied, or one of its
    /// earlier secrets was wrong.
    Inconsistent,
}

impl fmt::Display for ShachainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShachainError::IndexOutOfRange => f.write_str("secret index above 2^48-1"),
            ShachainError::UnexpectedIndex { expected, got } => {
                write!(f, "secret index {got} received, expected {expected}")
            }
            ShachainError::Inconsistent => f.write_str("secret inconsistent with earlier secrets"),
        }
    }
}

impl core::error::Error for ShachainError {}

/// The receiver's compact store of revealed per-commitment secrets (49 slots).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretStore {
    /// `(index, secret)` per slot; `None` until filled.
    slots: [Option<(u64, [u8; 32])>; SLOTS],
    /// The next index expected, `None` before the first insert; counts down.
    next: u64,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore").field("next_index", &self.next).field("secrets", &"<redacted>").finish()
    }
}

impl Default for SecretStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot a secret with this index belongs to: its number of trailing zero bits (48 for 0).
fn slot_for(index: u64) -> usize {
    if index == 0 {
        48
    } else {
        index.trailing_zeros().min(48) as usize
    }
}

impl SecretStore {
    /// Size of [`SecretStore::encode`]'s output: the next index plus 49 × (index, secret).
    pub const ENCODED_LEN: usize = 8 + SLOTS * 40;

    /// An empty store, expecting index `2^48 - 1` first.
    pub const fn new() -> Self {
        SecretStore { slots: [None; SLOTS], next: MAX_INDEX }
    }

    /// The index this store expects next (`2^48 - 1` when empty).
    pub const fn next_index(&self) -> u64 {
        self.next
    }

    /// Whether no secret has been inserted yet.
    pub fn is_empty(&self) -> bool {
        self.next == MAX_INDEX && self.slots.iter().all(Option::is_none)
    }

    /// Checks and stores the secret with `index`: it must be the next index in the countdown and
    /// must derive every secret already stored below its slot (BOLT #3 `insert_secret`). On error
    /// the store is unchanged.
    ///
    /// # Errors
    /// [`ShachainError`] if the index is out of range or out of order, or the secret is
    /// inconsistent with earlier ones.
    pub fn insert(&mut self, index: u64, secret: &PerCommitmentSecret) -> Result<(), ShachainError> {
        if index > MAX_INDEX {
            return Err(ShachainError::IndexOutOfRange);
        }
        let complete = self.next == 0 && self.slots.get(48).is_some_and(Option::is_some);
        if index != self.next || complete {
            return Err(ShachainError::UnexpectedIndex { expected: self.next, got: index });
        }
        self.insert_unordered(index, secret)?;
        self.next = index.saturating_sub(1);
        Ok(())
    }

    /// The consistency check and slot write of BOLT #3 `insert_secret`, without the ordering
    /// rule (used by the test vectors, whose indices are always in order anyway).
    fn insert_unordered(&mut self, index: u64, secret: &PerCommitmentSecret) -> Result<(), ShachainError> {
        let slot = slot_for(index);
        for (known_index, known_secret) in self.slots.iter().take(slot).flatten() {
            if derive(secret.to_bytes(), slot as u32, *known_index) != *known_secret {
                return Err(ShachainError::Inconsistent);
            }
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some((index, secret.to_bytes()));
        }
        Ok(())
    }

    /// The secret with `index`, if it was revealed (directly or derivably).
    pub fn get(&self, index: u64) -> Option<PerCommitmentSecret> {
        if index > MAX_INDEX {
            return None;
        }
        for (b, slot) in self.slots.iter().enumerate() {
            if let Some((known_index, secret)) = slot {
                let mask = !((1u64 << b) - 1);
                if index & mask == *known_index {
                    return Some(PerCommitmentSecret::from_bytes(derive(*secret, b as u32, index)));
                }
            }
        }
        None
    }

    /// The fixed-size encoding: next index (8 bytes, big-endian), then per slot the index
    /// (8 bytes, `u64::MAX` for an empty slot) and the secret (32 bytes, zero when empty).
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        let (head, rest) = out.split_at_mut(8);
        head.copy_from_slice(&self.next.to_be_bytes());
        for (chunk, slot) in rest.chunks_exact_mut(40).zip(self.slots.iter()) {
            let (idx, sec) = chunk.split_at_mut(8);
            match slot {
                Some((i, s)) => {
                    idx.copy_from_slice(&i.to_be_bytes());
                    sec.copy_from_slice(s);
                }
                None => idx.copy_from_slice(&u64::MAX.to_be_bytes()),
            }
        }
        out
    }

    /// Decodes [`SecretStore::encode`]'s output, checking that every stored index belongs to
    /// its slot and that the secrets are mutually consistent.
    ///
    /// # Errors
    /// [`ShachainError::Inconsistent`] for any malformed or inconsistent content.
    pub fn decode(bytes: &[u8; Self::ENCODED_LEN]) -> Result<Self, ShachainError> {
        let (head, rest) = bytes.split_at(8);
        let mut next_bytes = [0u8; 8];
        next_bytes.copy_from_slice(head);
        let next = u64::from_be_bytes(next_bytes);
        if next > MAX_INDEX {
            return Err(ShachainError::IndexOutOfRange);
        }
        let mut store = SecretStore { slots: [None; SLOTS], next };
        let mut entries: [Option<(u64, [u8; 32])>; SLOTS] = [None; SLOTS];
        for ((chunk, entry), b) in rest.chunks_exact(40).zip(entries.iter_mut()).zip(0usize..) {
            let (idx, sec) = chunk.split_at(8);
            let mut ib = [0u8; 8];
            ib.copy_from_slice(idx);
            let index = u64::from_be_bytes(ib);
            if index == u64::MAX {
                if sec.iter().any(|&x| x != 0) {
                    return Err(ShachainError::Inconsistent);
                }
                continue;
            }
            if index > MAX_INDEX || slot_for(index) != b || index <= next && index != 0 {
                return Err(ShachainError::Inconsistent);
            }
            let mut s = [0u8; 32];
            s.copy_from_slice(sec);
            *entry = Some((index, s));
        }
        // Insert in revelation order (descending index) so every consistency check applies.
        let mut order: alloc::vec::Vec<(u64, [u8; 32])> = entries.iter().flatten().copied().collect();
        order.sort_by_key(|e| core::cmp::Reverse(e.0));
        for (index, secret) in order {
            store.insert_unordered(index, &PerCommitmentSecret::from_bytes(secret))?;
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_inserts_from_a_seed_are_all_retrievable() {
        let seed = Seed::from_bytes([0x42; 32]);
        let mut store = SecretStore::new();
        for i in 0..300u64 {
            let index = MAX_INDEX - i;
            store.insert(index, &generate_from_seed(&seed, index)).unwrap();
        }
        for i in 0..300u64 {
            let index = MAX_INDEX - i;
            assert_eq!(store.get(index), Some(generate_from_seed(&seed, index)));
        }
        assert_eq!(store.get(MAX_INDEX - 300), None);
        let decoded = SecretStore::decode(&store.encode()).unwrap();
        assert_eq!(decoded, store);
    }

    #[test]
    fn out_of_order_is_rejected_and_leaves_store_unchanged() {
        let seed = Seed::from_bytes([1; 32]);
        let mut store = SecretStore::new();
        store.insert(MAX_INDEX, &generate_from_seed(&seed, MAX_INDEX)).unwrap();
        let before = store.clone();
        let err = store.insert(MAX_INDEX - 2, &generate_from_seed(&seed, MAX_INDEX - 2));
        assert_eq!(err, Err(ShachainError::UnexpectedIndex { expected: MAX_INDEX - 1, got: MAX_INDEX - 2 }));
        assert_eq!(store, before);
    }
}
