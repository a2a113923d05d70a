//! Hashlocks: the payment hash `H = SHA256(preimage)` shared by every channel type, so one
//! payment can cross Spilman, duplex and Lightning hops alike.

use core::fmt;

use bitcoin::hashes::{ripemd160, sha256, Hash};
use bitcoin::Witness;

/// A payment hash: `SHA256(preimage)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaymentHash(pub [u8; 32]);

/// A payment preimage: 32 secret bytes whose SHA256 is the payment hash. `Debug` is redacted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentPreimage(pub [u8; 32]);

impl PaymentPreimage {
    /// The payment hash locked to this preimage.
    pub fn hash(&self) -> PaymentHash {
        PaymentHash(sha256::Hash::hash(&self.0).to_byte_array())
    }
}

impl fmt::Debug for PaymentPreimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PaymentPreimage(<redacted>)")
    }
}

impl PaymentHash {
    /// Whether `preimage` unlocks this hash.
    pub fn is_unlocked_by(&self, preimage: &PaymentPreimage) -> bool {
        preimage.hash() == *self
    }

    /// `RIPEMD160(H)`, the 20 bytes BOLT #3 HTLC scripts compare against `OP_HASH160(preimage)`.
    pub fn ripemd160(&self) -> [u8; 20] {
        ripemd160::Hash::hash(&self.0).to_byte_array()
    }

    /// Finds the preimage of this hash among the elements of an on-chain witness (any spend of an
    /// HTLC output through its success path reveals it). Garbage witnesses simply yield `None`.
    pub fn find_preimage_in(&self, witness: &Witness) -> Option<PaymentPreimage> {
        witness.iter().find_map(|element| {
            let bytes: [u8; 32] = element.try_into().ok()?;
            let preimage = PaymentPreimage(bytes);
            self.is_unlocked_by(&preimage).then_some(preimage)
        })
    }
}

impl fmt::Debug for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentHash(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl fmt::Display for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn preimage_is_found_only_when_it_matches() {
        let p = PaymentPreimage([9; 32]);
        let h = p.hash();
        let w = Witness::from_slice(&[&[1u8; 71][..], &[9u8; 32][..], &[1u8][..]]);
        assert_eq!(h.find_preimage_in(&w), Some(p));
        let wrong = Witness::from_slice(&[&[8u8; 32][..]]);
        assert_eq!(h.find_preimage_in(&wrong), None);
        assert!(!format!("{p:?}").contains("09"));
    }
}
