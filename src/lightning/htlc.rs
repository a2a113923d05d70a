//! Per-update state machines: every HTLC addition, HTLC removal and fee change moves through
//! the same five stages, whichever side sent it.
//!
//! ```text
//! stage     sender X                                   receiver Y
//! Announced X sends update_*                  ──────▶  (Y has it, nothing signed)
//! InReceiver  X sends commitment_signed        ──────▶  Y's new commitment includes it
//! ReceiverRevoked                              ◀──────  Y sends revoke_and_ack (irrevocable in Y's)
//! InSender                                     ◀──────  Y sends commitment_signed: X's new commitment includes it
//! Committed X sends revoke_and_ack             ──────▶  irrevocable in both
//! ```
//!
//! An update from X is in Y's latest commitment from `InReceiver` on, and in X's latest from
//! `InSender` on. An HTLC is *irrevocably committed* when its addition is `Committed`; it is gone
//! when its removal is `Committed`. A forwarder forwards only irrevocably committed HTLCs and fails
//! upstream only once the downstream removal is `Committed`.

use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::units::MilliSats;

use super::msgs::OnionPacket;

/// Who sent an update.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Side {
    /// This node (the holder).
    Holder,
    /// The peer (the counterparty).
    Counterparty,
}

impl core::ops::Not for Side {
    type Output = Side;
    fn not(self) -> Side {
        match self {
            Side::Holder => Side::Counterparty,
            Side::Counterparty => Side::Holder,
        }
    }
}

/// How far an update has progressed (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Stage {
    /// Sent, in no commitment yet.
    Announced,
    /// In the receiver's latest commitment.
    InReceiver,
    /// The receiver revoked its previous commitment: irrevocable there.
    ReceiverRevoked,
    /// In the sender's latest commitment too.
    InSender,
    /// The sender revoked its previous commitment: irrevocable in both.
    Committed,
}

/// The protocol event that moves updates forward.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Step {
    /// The holder sent `commitment_signed` (signed the counterparty's commitment).
    SentCommit,
    /// The holder received `revoke_and_ack`.
    RecvRevoke,
    /// The holder received `commitment_signed`.
    RecvCommit,
    /// The holder sent `revoke_and_ack`.
    SentRevoke,
}

/// One update's progress.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Progress {
    /// Who sent it.
    pub sender: Side,
    /// Where it stands.
    pub stage: Stage,
}

impl Progress {
    /// A freshly announced update from `sender`.
    pub const fn new(sender: Side) -> Self {
        Progress { sender, stage: Stage::Announced }
    }

    /// Advances the update if `step` is the one it waits for.
    pub(crate) fn advance(&mut self, step: Step) {
        use Side::*;
        use Stage::*;
        use Step::*;
        self.stage = match (self.sender, self.stage, step) {
            (Holder, Announced, SentCommit) | (Counterparty, Announced, RecvCommit) => InReceiver,
            (Holder, InReceiver, RecvRevoke) | (Counterparty, InReceiver, SentRevoke) => ReceiverRevoked,
            (Holder, ReceiverRevoked, RecvCommit) | (Counterparty, ReceiverRevoked, SentCommit) => InSender,
            (Holder, InSender, SentRevoke) | (Counterparty, InSender, RecvRevoke) => Committed,
            (_, s, _) => s,
        };
    }

    /// Whether the update is in `owner`'s latest commitment.
    pub fn in_commitment_of(&self, owner: Side) -> bool {
        if owner == self.sender {
            self.stage >= Stage::InSender
        } else {
            self.stage >= Stage::InReceiver
        }
    }

    /// Whether signing `owner`'s next commitment would change this update's inclusion: what
    /// `commitment_signed` must contain at least one of.
    pub(crate) fn pending_for(&self, owner: Side) -> bool {
        if owner == self.sender {
            self.stage == Stage::ReceiverRevoked
        } else {
            self.stage == Stage::Announced
        }
    }
}

/// How an HTLC was removed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Resolution {
    /// Fulfilled with its preimage: the value goes to the receiver.
    Fulfill(PaymentPreimage),
    /// Failed with an (onion-encrypted) reason: the value returns to the offerer.
    Fail(alloc::vec::Vec<u8>),
    /// Failed as malformed.
    FailMalformed {
        /// SHA256 of the onion that could not be parsed.
        sha256_of_onion: [u8; 32],
        /// BOLT #4 failure code (must have the BADONION bit).
        failure_code: u16,
    },
}

/// An HTLC of the channel, with both its updates.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Htlc {
    /// Id, per offering side, starting at 0.
    pub id: u64,
    /// Who offered it.
    pub offerer: Side,
    /// Amount.
    pub amount: MilliSats,
    /// Payment hash.
    pub payment_hash: PaymentHash,
    /// Absolute expiry height.
    pub cltv_expiry: u32,
    /// The onion: of an HTLC we offered, until the peer irrevocably has it (for retransmission);
    /// of one offered to us, until it is gone (for forwarding). Persisted once, as an
    /// [`OnionRecord`](super::OnionRecord), not in the snapshot.
    pub onion: Option<OnionPacket>,
    /// The addition's progress.
    pub add: Progress,
    /// The removal and its progress, once the receiver removed it.
    pub remove: Option<(Resolution, Progress)>,
    /// Order in which updates were sent, for retransmission.
    pub add_seq: u64,
    /// Send order of the removal.
    pub remove_seq: u64,
    /// The first counterparty commitment number it appeared in (for penalty records).
    pub first_remote_commitment: Option<u64>,
    /// The first counterparty commitment number that no longer has it.
    pub removed_from_remote: Option<u64>,
    /// `RIPEMD160(payment_hash)`, for its scripts in every commitment it appears in.
    pub(crate) payment_ripemd: [u8; 20],
    /// (Offered to us) it breaks our policy: fail it back once irrevocably committed.
    pub(crate) refusal: Option<super::HtlcRefusal>,
}

impl Htlc {
    /// Whether it is an output (or trimmed) of `owner`'s latest commitment.
    pub fn in_commitment_of(&self, owner: Side) -> bool {
        self.add.in_commitment_of(owner) && !self.remove.as_ref().is_some_and(|(_, p)| p.in_commitment_of(owner))
    }

    /// Whether the addition is irrevocably committed on both sides.
    pub fn is_irrevocably_committed(&self) -> bool {
        self.add.stage == Stage::Committed
    }

    /// Whether the removal is irrevocably committed on both sides (the HTLC is gone).
    pub fn is_removed(&self) -> bool {
        self.remove.as_ref().is_some_and(|(_, p)| p.stage == Stage::Committed)
    }

    /// Whether it was fulfilled (removal sent or received with a preimage).
    pub fn preimage(&self) -> Option<&PaymentPreimage> {
        match &self.remove {
            Some((Resolution::Fulfill(p), _)) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn advance(&mut self, step: Step) {
        self.add.advance(step);
        // The peer revoked a commitment with our addition: it has the `update_add_htlc`, which
        // is never retransmitted again, so the onion is not needed any more.
        if self.offerer == Side::Holder && self.add.stage >= Stage::ReceiverRevoked {
            self.onion = None;
        }
        if let Some((_, p)) = &mut self.remove {
            p.advance(step);
        }
    }
}

/// A fee update (only the funder sends them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FeeUpdate {
    /// The new fee rate.
    pub feerate_per_kw: u32,
    /// Its progress.
    pub progress: Progress,
    /// Send order.
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_update_walks_the_dance() {
        let mut p = Progress::new(Side::Holder);
        assert!(p.pending_for(Side::Counterparty) && !p.in_commitment_of(Side::Counterparty));
        p.advance(Step::RecvCommit); // not its step
        assert_eq!(p.stage, Stage::Announced);
        p.advance(Step::SentCommit);
        assert!(p.in_commitment_of(Side::Counterparty) && !p.in_commitment_of(Side::Holder));
        p.advance(Step::RecvRevoke);
        assert!(p.pending_for(Side::Holder));
        p.advance(Step::RecvCommit);
        assert!(p.in_commitment_of(Side::Holder));
        p.advance(Step::SentRevoke);
        assert_eq!(p.stage, Stage::Committed);
    }

    #[test]
    fn counterparty_update_walks_the_dance() {
        let mut p = Progress::new(Side::Counterparty);
        p.advance(Step::RecvCommit);
        assert!(p.in_commitment_of(Side::Holder) && !p.in_commitment_of(Side::Counterparty));
        p.advance(Step::SentRevoke);
        assert!(p.pending_for(Side::Counterparty));
        p.advance(Step::SentCommit);
        p.advance(Step::RecvRevoke);
        assert_eq!(p.stage, Stage::Committed);
    }
}
