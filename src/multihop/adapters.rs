//! [`HtlcChannel`] for each layer: thin translations onto the layers' own commands and events.
//! No protocol logic lives here beyond what the trait's contract needs of each type:
//!
//! * Lightning: sign pending updates (`commitment_signed`) after every change, as a forwarding
//!   node must for its updates to become irrevocable; after close, hand a preimage learnt
//!   downstream to the on-chain claims.
//! * duplex: start a reset when the receiver failed one of our HTLCs, since only a reset makes
//!   the failure irrevocable (retried on every input until the channel is quiescent).
//! * Spilman: amounts are whole satoshis.

use bitcoin::Amount;

use super::channel::{HtlcChannel, HtlcError, HtlcSignal, RefusedHtlc};
use super::{HopKind, SafetyMargins};
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::sign::{Signer, WrongSigner};
use crate::core::units::{BlockHeight, MilliSats};
use crate::driving::{ChainEvent, ChainTip};
use crate::network::receive::FailBack;
use crate::{duplex, lightning, spilman};

/// BOLT 4 `temporary_channel_failure` (UPDATE|7), the reason a forwarder gives upstream for an
/// HTLC forwarded by an [`add_route`](super::Forwarder::add_route) route: without the onion's
/// shared secret it cannot be wrapped for the origin, so the code travels in clear. HTLCs
/// forwarded from their onion are failed with [`HtlcChannel::fail_htlc_with`].
const TEMPORARY_CHANNEL_FAILURE: [u8; 2] = [0x10, 0x07];

/// A whole-satoshi amount, or [`HtlcError::Amount`].
fn whole_sats(amount: MilliSats) -> Result<Amount, HtlcError> {
    if amount.to_msat() == 0 || amount.to_msat() % 1_000 != 0 {
        return Err(HtlcError::Amount);
    }
    Ok(amount.to_amount_floor())
}

/// An on-chain amount in msat (saturating: amounts are below 21M BTC).
fn msat(amount: Amount) -> MilliSats {
    MilliSats::from_amount(amount).unwrap_or(MilliSats::from_msat(u64::MAX))
}

fn spilman_err(e: spilman::CommandError) -> HtlcError {
    use spilman::CommandError as E;
    HtlcError::Refused(match e {
        E::WrongSigner(w) => return HtlcError::WrongSigner(w),
        E::WrongPhase => "wrong phase",
        E::Payment(_) => "payment does not fit",
        E::InvalidAmount => "invalid amount",
        E::UnknownHtlc => "unknown HTLC",
        E::WrongPreimage => "wrong preimage",
        E::HtlcExpiry => "HTLC expiry outside the channel's window",
        E::Signer(_) => "signer",
        _ => "refused",
    })
}

fn duplex_err(e: duplex::CommandError) -> HtlcError {
    use duplex::CommandError as E;
    HtlcError::Refused(match e {
        E::WrongSigner(w) => return HtlcError::WrongSigner(w),
        E::WrongPhase => "wrong phase",
        E::ResetInProgress => "reset in progress",
        E::ResetNeeded => "leaf channel dry: reset first",
        E::InsufficientBalance => "balance too low",
        E::Payment(_) => "payment does not fit",
        E::UnknownHtlc => "unknown HTLC",
        E::WrongPreimage => "wrong preimage",
        E::HtlcExpiry => "HTLC expiry outside the channel's window",
        E::Signer(_) => "signer",
        _ => "refused",
    })
}

fn lightning_err(e: lightning::CommandError) -> HtlcError {
    use lightning::CommandError as E;
    HtlcError::Refused(match e {
        E::WrongSigner(w) => return HtlcError::WrongSigner(w),
        E::Amount => return HtlcError::Amount,
        E::WrongPhase => "wrong phase",
        E::Limits => "channel limits",
        E::CannotAfford => "cannot afford",
        E::BadExpiry => "bad expiry",
        E::UnknownHtlc => "unknown HTLC",
        E::WrongPreimage => "wrong preimage",
        E::HtlcExpiry => "HTLC expiry too close to the tip",
        E::Signer(_) => "signer",
        _ => "refused",
    })
}

impl HtlcChannel for spilman::Payee {
    type Msg = spilman::Msg;
    type Event = spilman::Event;
    type PeerError = spilman::PeerError;

    fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        spilman::Payee::check_signer(self, signer)
    }

    fn hop_kind(&self, _margins: SafetyMargins) -> HopKind {
        HopKind::Spilman { expiry: self.offer().expiry }
    }

    fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: spilman::Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<spilman::Effects, spilman::PeerError> {
        spilman::Payee::handle_message(self, msg, signer, tip)
    }

    fn handle_chain<S: Signer + ?Sized>(&mut self, event: ChainEvent<'_>, signer: &S) -> spilman::Effects {
        spilman::Payee::handle_chain(self, event, signer)
    }

    fn offer_htlc<S: Signer + ?Sized>(
        &mut self,
        _amount: MilliSats,
        _payment_hash: PaymentHash,
        _expiry: BlockHeight,
        _signer: &S,
        _tip: ChainTip,
    ) -> Result<(u64, spilman::Effects), HtlcError> {
        Err(HtlcError::WrongDirection)
    }

    fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
        _tip: ChainTip,
    ) -> Result<spilman::Effects, HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        spilman::Payee::fulfill_htlc(self, id, preimage, signer).map_err(spilman_err)
    }

    fn fail_htlc<S: Signer + ?Sized>(&mut self, id: u64, _signer: &S) -> Result<spilman::Effects, HtlcError> {
        spilman::Payee::fail_htlc(self, id).map_err(spilman_err)
    }

    fn is_add_irrevocable(&self, id: u64) -> bool {
        self.state().is_some_and(|s| s.htlcs.iter().any(|h| h.id == id))
    }

    fn is_incoming_settled(&self, id: u64) -> bool {
        self.state().is_none_or(|s| !s.htlcs.iter().any(|h| h.id == id))
    }

    fn go_on_chain<S: Signer + ?Sized>(&mut self, signer: &S) -> spilman::Effects {
        self.close(signer).unwrap_or_default()
    }

    fn signal(event: &spilman::Event) -> Option<HtlcSignal> {
        match event {
            spilman::Event::HtlcOffered(h) => Some(HtlcSignal::Received {
                id: h.id,
                amount: msat(h.amount),
                payment_hash: h.payment_hash,
                expiry: h.expiry,
            }),
            _ => None,
        }
    }
}

impl HtlcChannel for spilman::Payer {
    type Msg = spilman::Msg;
    type Event = spilman::Event;
    type PeerError = spilman::PeerError;

    fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        spilman::Payer::check_signer(self, signer)
    }

    fn hop_kind(&self, _margins: SafetyMargins) -> HopKind {
        HopKind::Spilman { expiry: self.refund_height() }
    }

    fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: spilman::Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<spilman::Effects, spilman::PeerError> {
        spilman::Payer::handle_message(self, msg, signer, tip)
    }

    fn handle_chain<S: Signer + ?Sized>(&mut self, event: ChainEvent<'_>, signer: &S) -> spilman::Effects {
        spilman::Payer::handle_chain(self, event, signer)
    }

    fn offer_htlc<S: Signer + ?Sized>(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, spilman::Effects), HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        let amount = whole_sats(amount)?;
        spilman::Payer::add_htlc(self, amount, payment_hash, expiry, signer, tip).map_err(spilman_err)
    }

    fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        _id: u64,
        _preimage: PaymentPreimage,
        _signer: &S,
        _tip: ChainTip,
    ) -> Result<spilman::Effects, HtlcError> {
        Err(HtlcError::WrongDirection)
    }

    fn fail_htlc<S: Signer + ?Sized>(&mut self, _id: u64, _signer: &S) -> Result<spilman::Effects, HtlcError> {
        Err(HtlcError::WrongDirection)
    }

    fn is_add_irrevocable(&self, _id: u64) -> bool {
        false
    }

    fn is_incoming_settled(&self, _id: u64) -> bool {
        true
    }

    fn go_on_chain<S: Signer + ?Sized>(&mut self, _signer: &S) -> spilman::Effects {
        self.request_close().unwrap_or_default()
    }

    fn signal(event: &spilman::Event) -> Option<HtlcSignal> {
        match *event {
            spilman::Event::HtlcFulfilled { id, preimage, .. } => Some(HtlcSignal::Fulfilled { id, preimage }),
            spilman::Event::HtlcFailIrrevocable { id } => Some(HtlcSignal::FailedIrrevocably { id }),
            _ => None,
        }
    }
}

/// Starts a reset if one of our HTLCs waits for one to be dropped; a refusal (not quiescent,
/// reset in progress) is retried on the next input.
fn duplex_reset_if_failed<S: Signer + ?Sized>(
    ch: &mut duplex::Channel,
    signer: &S,
    tip: ChainTip,
    fx: &mut duplex::Effects,
) {
    if ch.phase() == duplex::Phase::Open && ch.has_failed_htlcs() && !ch.is_resetting() {
        if let Ok(more) = ch.reset(signer, tip) {
            fx.merge(more);
        }
    }
}

impl HtlcChannel for duplex::Channel {
    type Msg = duplex::Msg;
    type Event = duplex::Event;
    type PeerError = duplex::PeerError;

    fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        duplex::Channel::check_signer(self, signer)
    }

    fn hop_kind(&self, margins: SafetyMargins) -> HopKind {
        let params = self.params();
        HopKind::Duplex {
            tree_delay: params.max_close_delay(margins.confirm),
            refund_delay: u32::from(params.refund_delay()),
        }
    }

    fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: duplex::Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<duplex::Effects, duplex::PeerError> {
        let mut fx = duplex::Channel::handle_message(self, msg, signer, tip)?;
        duplex_reset_if_failed(self, signer, tip, &mut fx);
        Ok(fx)
    }

    fn handle_chain<S: Signer + ?Sized>(&mut self, event: ChainEvent<'_>, signer: &S) -> duplex::Effects {
        let mut fx = duplex::Channel::handle_chain(self, event, signer);
        if let ChainEvent::Tip(tip) = event {
            duplex_reset_if_failed(self, signer, tip, &mut fx);
        }
        fx
    }

    fn offer_htlc<S: Signer + ?Sized>(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, duplex::Effects), HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        let amount = whole_sats(amount)?;
        duplex::Channel::add_htlc(self, amount, payment_hash, expiry, signer, tip).map_err(duplex_err)
    }

    fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
        _tip: ChainTip,
    ) -> Result<duplex::Effects, HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        duplex::Channel::fulfill_htlc(self, id, preimage, signer).map_err(duplex_err)
    }

    fn fail_htlc<S: Signer + ?Sized>(&mut self, id: u64, _signer: &S) -> Result<duplex::Effects, HtlcError> {
        duplex::Channel::fail_htlc(self, id).map_err(duplex_err)
    }

    fn is_add_irrevocable(&self, id: u64) -> bool {
        self.leaf_state(!self.role()).htlcs.iter().any(|h| h.id == id)
    }

    fn is_incoming_settled(&self, id: u64) -> bool {
        !self.leaf_state(!self.role()).htlcs.iter().any(|h| h.id == id)
    }

    fn go_on_chain<S: Signer + ?Sized>(&mut self, signer: &S) -> duplex::Effects {
        self.force_close(signer)
    }

    fn signal(event: &duplex::Event) -> Option<HtlcSignal> {
        match *event {
            duplex::Event::HtlcOffered(h) => Some(HtlcSignal::Received {
                id: h.id,
                amount: msat(h.amount),
                payment_hash: h.payment_hash,
                expiry: h.expiry,
            }),
            duplex::Event::HtlcFulfilled { id, preimage, .. } => Some(HtlcSignal::Fulfilled { id, preimage }),
            duplex::Event::HtlcFailIrrevocable { id } => Some(HtlcSignal::FailedIrrevocably { id }),
            _ => None,
        }
    }
}

/// Signs everything pending if the protocol allows it now.
fn lightning_commit<S: Signer + ?Sized>(ch: &mut lightning::Channel, signer: &S, fx: &mut lightning::Effects) {
    let open = matches!(ch.phase(), lightning::Phase::Normal | lightning::Phase::ShuttingDown);
    if open && ch.has_unsigned_changes() && !ch.is_awaiting_revoke() {
        if let Ok(more) = ch.commit(signer) {
            fx.merge(more);
        }
    }
}

impl HtlcChannel for lightning::Channel {
    type Msg = lightning::Msg;
    type Event = lightning::Event;
    type PeerError = lightning::PeerError;

    fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        lightning::Channel::check_signer(self, signer)
    }

    fn hop_kind(&self, _margins: SafetyMargins) -> HopKind {
        HopKind::Lightning
    }

    fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: lightning::Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<lightning::Effects, lightning::PeerError> {
        let mut fx = lightning::Channel::handle_message(self, msg, signer, tip)?;
        lightning_commit(self, signer, &mut fx);
        Ok(fx)
    }

    fn handle_chain<S: Signer + ?Sized>(&mut self, event: ChainEvent<'_>, signer: &S) -> lightning::Effects {
        lightning::Channel::handle_chain(self, event, signer)
    }

    fn offer_htlc<S: Signer + ?Sized>(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, lightning::Effects), HtlcError> {
        // A route given by `add_route` carries no onion for the next hop.
        let onion = lightning::OnionPacket::zeroed();
        HtlcChannel::offer_htlc_with_onion(self, amount, payment_hash, expiry, onion, signer, tip)
    }

    fn offer_htlc_with_onion<S: Signer + ?Sized>(
        &mut self,
        amount: MilliSats,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        onion: lightning::OnionPacket,
        signer: &S,
        _tip: ChainTip,
    ) -> Result<(u64, lightning::Effects), HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        let (id, mut fx) =
            lightning::Channel::add_htlc(self, amount, payment_hash, expiry.0, onion).map_err(lightning_err)?;
        lightning_commit(self, signer, &mut fx);
        Ok((id, fx))
    }

    fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
        tip: ChainTip,
    ) -> Result<lightning::Effects, HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        let known = self.htlcs().iter().find(|h| h.offerer == lightning::Side::Counterparty && h.id == id);
        match known {
            Some(h) if !h.payment_hash.is_unlocked_by(&preimage) => return Err(HtlcError::Refused("wrong preimage")),
            None => return Err(HtlcError::Refused("unknown HTLC")),
            Some(_) => {}
        }
        // On chain: the claims learn it and the one now possible is broadcast.
        if self.closing_kind().is_some() {
            let mut fx = self.provide_preimage(id, preimage);
            fx.merge(lightning::Channel::handle_chain(self, ChainEvent::Tip(tip), signer));
            return Ok(fx);
        }
        // Off chain, signed at once; the on-chain claims learn it too, should the channel close.
        let mut fx = match lightning::Channel::fulfill_htlc(self, id, preimage) {
            Ok(fx) => fx,
            Err(lightning::CommandError::HtlcExpiry) => {
                // Too late to settle off chain (the peer could time the HTLC out first), but the
                // preimage is paid for downstream: claim it on chain (the channel's deadline).
                let mut fx = self.provide_preimage(id, preimage);
                fx.merge(self.check_htlc_deadlines(signer));
                return Ok(fx);
            }
            Err(e) => return Err(lightning_err(e)),
        };
        lightning_commit(self, signer, &mut fx);
        fx.merge(self.provide_preimage(id, preimage));
        Ok(fx)
    }

    fn fail_htlc<S: Signer + ?Sized>(&mut self, id: u64, signer: &S) -> Result<lightning::Effects, HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        let mut fx =
            lightning::Channel::fail_htlc(self, id, TEMPORARY_CHANNEL_FAILURE.to_vec()).map_err(lightning_err)?;
        lightning_commit(self, signer, &mut fx);
        Ok(fx)
    }

    fn fail_htlc_with<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        answer: FailBack,
        signer: &S,
    ) -> Result<lightning::Effects, HtlcError> {
        self.check_signer(signer).map_err(HtlcError::WrongSigner)?;
        let mut fx = answer.apply(self, id).map_err(lightning_err)?;
        lightning_commit(self, signer, &mut fx);
        Ok(fx)
    }

    fn is_add_irrevocable(&self, id: u64) -> bool {
        self.is_htlc_irrevocably_committed(lightning::Side::Counterparty, id)
    }

    fn is_incoming_settled(&self, id: u64) -> bool {
        self.is_htlc_removed(lightning::Side::Counterparty, id)
    }

    fn go_on_chain<S: Signer + ?Sized>(&mut self, signer: &S) -> lightning::Effects {
        // The channel may have gone on chain at its own HTLC deadline already.
        if self.is_off_chain_over() {
            return lightning::Effects::none();
        }
        self.force_close(signer).unwrap_or_default()
    }

    fn signal(event: &lightning::Event) -> Option<HtlcSignal> {
        match *event {
            lightning::Event::HtlcReceived { id, amount, payment_hash, cltv_expiry, .. } => {
                Some(HtlcSignal::Received { id, amount, payment_hash, expiry: BlockHeight(cltv_expiry) })
            }
            lightning::Event::HtlcFulfilled { id, preimage, .. } => Some(HtlcSignal::Fulfilled { id, preimage }),
            lightning::Event::HtlcFailed { id, .. } => Some(HtlcSignal::FailedIrrevocably { id }),
            _ => None,
        }
    }

    fn defer_refusals(&mut self) {
        lightning::Channel::defer_refusals(self, true);
    }

    fn refused(event: &lightning::Event) -> Option<RefusedHtlc> {
        match event {
            lightning::Event::HtlcRefused { id, payment_hash, reason, amount, cltv_expiry, onion } => {
                Some(RefusedHtlc {
                    id: *id,
                    payment_hash: *payment_hash,
                    amount: *amount,
                    expiry: BlockHeight(*cltv_expiry),
                    onion: onion.clone(),
                    reason: *reason,
                })
            }
            _ => None,
        }
    }

    fn received_onion(event: &lightning::Event) -> Option<lightning::OnionPacket> {
        match event {
            lightning::Event::HtlcReceived { onion, .. } => onion.clone(),
            _ => None,
        }
    }

    fn failure(event: &lightning::Event) -> Option<lightning::HtlcFailure> {
        match event {
            lightning::Event::HtlcFailed { failure, .. } => Some(failure.clone()),
            _ => None,
        }
    }
}
