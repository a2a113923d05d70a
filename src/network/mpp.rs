//! Receiving a multi-part payment (BOLT #4 `basic_mpp`), sans-I/O: an [`MppCollector`] holds the
//! parts of each payment (its HTLCs, checked one by one by
//! [`receive_part`](super::receive::receive_part)) until their amounts reach the `total_msat`
//! they all name; then every part is settled at once. A payment whose parts do not add up in
//! time is failed back whole with `mpp_timeout`, so the payee never settles part of a payment
//! (which would hand the payer's preimage to a hop for a fraction of the price) and never keeps
//! the payer's funds locked past its timeout.
//!
//! The embedder names each HTLC with its own key `K` (e.g. channel id and HTLC id), offers each
//! part as it arrives, and calls [`MppCollector::expire`] on each new block.
//!
//! ```
//! use paychan::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
//! use paychan::core::{MilliSats, PaymentPreimage};
//! use paychan::network::mpp::{Collected, MppCollector};
//! use paychan::network::onion::build_onion;
//! use paychan::network::payload::HopPayload;
//! use paychan::network::receive::{receive_part, ReceivedHtlc};
//!
//! let payee = SecretKey::from_slice(&[7; 32]).unwrap();
//! let secp = Secp256k1::new();
//! let payee_id = PublicKey::from_secret_key(&secp, &payee);
//! let (preimage, secret) = (PaymentPreimage([1; 32]), [2; 32]);
//! let mut collector = MppCollector::new(20);
//! // Two parts of a 5,000 msat payment: 2,000 then 3,000.
//! for (id, amt) in [(0u64, 2_000), (1, 3_000)] {
//!     let payload = HopPayload::Final {
//!         amt_to_forward: amt,
//!         outgoing_cltv_value: 840,
//!         payment_data: Some((secret, 5_000)),
//!         payment_metadata: None,
//!         keysend_preimage: None,
//!     };
//!     let session = SecretKey::from_slice(&[9 + id as u8; 32]).unwrap();
//!     let hash = preimage.hash();
//!     let (onion, _) = build_onion(&secp, &[payee_id], &[payload.encode()], &session, &hash.0).unwrap();
//!     let htlc = ReceivedHtlc { onion: &onion, payment_hash: hash, amount: MilliSats::from_msat(amt), cltv_expiry: 840 };
//!     let part = receive_part(&htlc, &payee, Some(&secret), 40, 800).unwrap();
//!     match collector.offer(id, part, Some(5_000), 800) {
//!         Collected::Held { received_msat, .. } => assert_eq!((id, received_msat), (0, 2_000)),
//!         // Settle HTLCs 0 and 1 with the invoice's preimage.
//!         Collected::Complete { parts, received_msat, .. } => assert_eq!((parts, received_msat), (vec![0, 1], 5_000)),
//!         other => panic!("{other:?}"),
//!     }
//! }
//! assert!(collector.is_empty());
//! ```

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::onion::failure;
use super::payload::{unknown_payment, Refusal};
use super::receive::{FailBack, FinalPart};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};

/// The parts of multi-part payments held until they add up.
#[derive(Clone, Debug)]
pub struct MppCollector<K> {
    timeout_blocks: u32,
    sets: Vec<HtlcSet<K>>,
    settled: BTreeSet<PaymentHash>,
}

/// The parts held for one payment hash.
#[derive(Clone, Debug)]
struct HtlcSet<K> {
    payment_hash: PaymentHash,
    first_height: u32,
    /// The sum of the held HTLCs' amounts, below the parts' `total_msat` while held.
    received_msat: u64,
    /// Never empty.
    parts: Vec<(K, FinalPart)>,
}

/// What became of a part offered to [`MppCollector::offer`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Collected<K> {
    /// Held, with the others of its payment: `received_msat` of `total_msat` so far.
    Held {
        /// The sum of the held parts' amounts.
        received_msat: u64,
        /// What the parts say the payment totals.
        total_msat: u64,
    },
    /// The payment is complete: settle every part (with [`Channel::fulfill_htlc`]), with the
    /// invoice's preimage or the keysend's `preimage`.
    ///
    /// [`Channel::fulfill_htlc`]: crate::lightning::Channel::fulfill_htlc
    Complete {
        /// The parts, in their order of arrival (this one last).
        parts: Vec<K>,
        /// The sum of their amounts: at least `total_msat`, at most twice it.
        received_msat: u64,
        /// A keysend's preimage (checked against the payment hash by
        /// [`receive_part`](super::receive::receive_part)).
        preimage: Option<PaymentPreimage>,
    },
    /// Fail these HTLCs back (the part offered, and perhaps the others of its payment).
    Refused(Vec<(K, FailBack)>),
    /// An HTLC with this key is already held: nothing changed (settling or failing it twice
    /// would be the embedder's error).
    AlreadyHeld,
}

impl<K: Clone + PartialEq> MppCollector<K> {
    /// A collector failing an incomplete payment back `timeout_blocks` blocks after its first
    /// part arrived. Pick it below the `min_final_cltv_expiry_delta` given to
    /// [`receive_part`](super::receive::receive_part), so that every part is failed back well
    /// before its HTLC expires (each part expires at least that many blocks after it arrived).
    pub fn new(timeout_blocks: u32) -> Self {
        MppCollector { timeout_blocks, sets: Vec::new(), settled: BTreeSet::new() }
    }

    /// Offers the part `part` (HTLC `key`) at chain height `height`; `expected_msat` is the
    /// invoice's amount, if it named one.
    ///
    /// Refused, each with `incorrect_or_unknown_payment_details` (BOLT #4's answer to an unknown
    /// payment, so a prober learns nothing more):
    /// * a part of a payment this collector already completed (its preimage is out; more
    ///   money for it is the payer's mistake or a probe);
    /// * a payment whose `total_msat` is below `expected_msat` or above twice it (BOLT #4's
    ///   overpayment limit), with every part held for it;
    /// * a part whose `total_msat` or payment secret differs from the parts held for the same
    ///   payment hash, with every part held for it (BOLT #4: the set is failed whole; only the
    ///   payer can make such a part, since [`receive_part`](super::receive::receive_part) checked
    ///   the invoice's secret or the keysend's preimage);
    /// * a part that would bring the sum above twice `total_msat`, or above `u64::MAX` msat
    ///   (alone: the others stay held).
    ///
    /// Sums are computed without overflow whatever the amounts.
    pub fn offer(&mut self, key: K, part: FinalPart, expected_msat: Option<u64>, height: u32) -> Collected<K> {
        if self.sets.iter().any(|s| s.parts.iter().any(|(k, _)| *k == key)) {
            return Collected::AlreadyHeld;
        }
        let refuse = |p: &FinalPart| p.fail(&unknown_payment(p.amount_msat(), height));
        let hash = part.payment_hash();
        if self.settled.contains(&hash) {
            return Collected::Refused(alloc::vec![(key.clone(), refuse(&part))]);
        }
        let total = part.total_msat();
        let index = self.sets.iter().position(|s| s.payment_hash == hash);
        let agrees = index.is_none_or(|i| {
            let first = &self.sets[i].parts[0].1;
            first.total_msat() == total && first.payment_secret() == part.payment_secret()
        });
        let total_ok = expected_msat.is_none_or(|e| total >= e && u128::from(total) <= 2 * u128::from(e));
        if !agrees || !total_ok {
            let mut refused = Vec::new();
            if let Some(i) = index {
                let set = self.sets.remove(i);
                refused.extend(set.parts.iter().map(|(k, p)| (k.clone(), refuse(p))));
            }
            refused.push((key.clone(), refuse(&part)));
            return Collected::Refused(refused);
        }
        let held = index.map_or(0, |i| self.sets[i].received_msat);
        let sum = u128::from(held) + u128::from(part.amount_msat());
        let Some(sum_u64) = u64::try_from(sum).ok().filter(|_| sum <= 2 * u128::from(total)) else {
            return Collected::Refused(alloc::vec![(key.clone(), refuse(&part))]);
        };
        if sum >= u128::from(total) {
            let mut parts: Vec<(K, FinalPart)> = match index {
                Some(i) => self.sets.remove(i).parts,
                None => Vec::new(),
            };
            let preimage = part.preimage();
            parts.push((key, part));
            self.settled.insert(hash);
            return Collected::Complete {
                parts: parts.into_iter().map(|(k, _)| k).collect(),
                received_msat: sum_u64,
                preimage,
            };
        }
        match index {
            Some(i) => {
                let set = &mut self.sets[i];
                set.received_msat = sum_u64;
                set.parts.push((key, part));
            }
            None => self.sets.push(HtlcSet {
                payment_hash: hash,
                first_height: height,
                received_msat: sum_u64,
                parts: alloc::vec![(key, part)],
            }),
        }
        Collected::Held { received_msat: sum_u64, total_msat: total }
    }

    /// At chain height `height`: the parts of every payment whose first part arrived
    /// `timeout_blocks` or more blocks ago, no longer held, each to fail back with
    /// `mpp_timeout` (BOLT #4 code 23).
    pub fn expire(&mut self, height: u32) -> Vec<(K, FailBack)> {
        let timeout = self.timeout_blocks;
        let mut out = Vec::new();
        self.sets.retain(|s| {
            if height < s.first_height.saturating_add(timeout) {
                return true;
            }
            let refusal = Refusal { code: failure::MPP_TIMEOUT, data: Vec::new() };
            out.extend(s.parts.iter().map(|(k, p)| (k.clone(), p.fail(&refusal))));
            false
        });
        out
    }

    /// The sum of the parts held for `payment_hash` (0 if none).
    pub fn held_msat(&self, payment_hash: &PaymentHash) -> u64 {
        self.sets.iter().find(|s| s.payment_hash == *payment_hash).map_or(0, |s| s.received_msat)
    }

    /// Whether no part is held.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Whether this collector completed a payment for `payment_hash` (later parts are refused).
    pub fn is_settled(&self, payment_hash: &PaymentHash) -> bool {
        self.settled.contains(payment_hash)
    }

    /// Forgets a completed payment (to bound memory once the embedder records it paid
    /// elsewhere); later parts for it would start a new payment.
    pub fn forget_settled(&mut self, payment_hash: &PaymentHash) {
        self.settled.remove(payment_hash);
    }
}
