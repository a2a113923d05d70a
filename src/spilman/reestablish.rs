//! Reconnection: payer and payee each send a [`Reestablish`] first on every new connection.
//!
//! * The payer sends its newest payment again if the payee holds an older one (the payee keeps
//!   the best), and counts a payee holding its newest as the acknowledgement.
//! * The payee sends again the fulfilments and failures the payer does not list as received.
//! * A payee holding a newer payment than the payer remembers signing shows it (with the payer's
//!   signature): the payer lost state ([`Event::LostState`]) and signs nothing new
//!   ([`CommandError::LostState`]); without a valid signature the claim is refused
//!   ([`Misbehaviour::UnprovenReestablish`]) and nothing changes. The payee learns from a payer
//!   behind its best payment that the payer lost state ([`Event::CounterpartyLostState`]); it
//!   holds the best payment, so it can close with it.

use alloc::vec::Vec;

use super::msgs::{Msg, Payment, Reestablish};
use super::payee::{Payee, PayeePhase};
use super::payer::{HtlcStatus, Payer, PayerPhase};
use super::payment::PaymentState;
use super::{peer_error, Effects, Event, Misbehaviour, PeerError};
use crate::core::sign::Signer;

impl Payer {
    /// The [`Msg::Reestablish`] to send first on a new connection.
    pub fn reestablish(&self) -> Msg {
        let resolved = self.htlcs.iter().filter(|h| h.status != HtlcStatus::Live).map(|h| h.htlc.id).collect();
        Msg::Reestablish(Reestablish { number: self.number, resolved, your_payment: None })
    }

    /// Whether a [`Msg::Reestablish`] proved that this payer's data is older than what it signed
    /// ([`Event::LostState`]).
    pub fn has_lost_state(&self) -> bool {
        self.lost_state
    }

    pub(super) fn on_reestablish<S: Signer + ?Sized>(
        &mut self,
        r: Reestablish,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        // A payee holding no payment never got our `Open` (or, pre-signed, our `RefundRequest`):
        // we may have stopped after persisting the funding and before it left. Send it again.
        if r.number == 0 && r.your_payment.is_none() && !self.lost_state {
            match self.phase {
                PayerPhase::AwaitingRefundSignature => {
                    let mut fx = self.persist();
                    fx.send.extend(self.refund_request());
                    return Ok(fx);
                }
                PayerPhase::Open if self.number >= 1 => return self.resend_open(signer),
                _ => {}
            }
        }
        if self.phase != PayerPhase::Open {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let Some(template) = self.template.as_ref() else {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        };
        if r.number > self.number {
            // The payee holds a payment of ours newer than any we remember signing.
            let proven =
                r.your_payment.as_ref().is_some_and(|p| p.number == r.number && template.is_signed(&self.secp, p));
            if !proven {
                return Err(peer_error(Misbehaviour::UnprovenReestablish));
            }
            if self.lost_state {
                return Ok(Effects::none());
            }
            self.lost_state = true;
            let mut fx = self.persist();
            fx.events.push(Event::LostState);
            return Ok(fx);
        }
        if self.lost_state {
            return Ok(Effects::none());
        }
        if r.number < self.number {
            let payment =
                template.resend(signer, self.number, &self.state).map_err(|e| peer_error(Misbehaviour::Signer(e)))?;
            let mut fx = Effects::none();
            if let Some(payment) = payment {
                fx = self.persist();
                fx.send.push(Msg::Payment(payment));
            }
            return Ok(fx);
        }
        if self.acked < self.number {
            self.acked = self.number;
            let mut fx = self.persist();
            fx.events.push(Event::PaymentAcknowledged { number: self.number });
            return Ok(fx);
        }
        Ok(Effects::none())
    }
}

impl Payer {
    /// Sends `Open` again (its first payment signed again: the same signature, RFC6979), then
    /// our newest payment if we made more since. The funding is broadcast again too (harmless if
    /// it already was).
    fn resend_open<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Effects, PeerError> {
        let template = self.template.as_ref().ok_or(peer_error(Misbehaviour::UnexpectedMessage))?;
        let first = PaymentState { to_payee: self.config.first_payment, htlcs: Vec::new() };
        let first = template
            .resend(signer, 1, &first)
            .map_err(|e| peer_error(Misbehaviour::Signer(e)))?
            .ok_or(peer_error(Misbehaviour::UnexpectedMessage))?;
        let newest = if self.number > 1 {
            template.resend(signer, self.number, &self.state).map_err(|e| peer_error(Misbehaviour::Signer(e)))?
        } else {
            None
        };
        let open = self.open_msg(first).ok_or(peer_error(Misbehaviour::UnexpectedMessage))?;
        let funding = self.funding_tx.clone();
        let mut fx = self.persist();
        fx.send.push(open);
        fx.send.extend(newest.map(Msg::Payment));
        fx.broadcast.extend(funding);
        Ok(fx)
    }
}

impl Payee {
    /// The [`Msg::Reestablish`] to send first on a new connection.
    pub fn reestablish(&self) -> Msg {
        let your_payment = self.best.as_ref().map(|b| Payment {
            number: b.number,
            to_payee: b.state.to_payee,
            htlcs: b.state.htlcs.clone(),
            signature: b.signature,
        });
        let number = self.best.as_ref().map_or(0, |b| b.number);
        Msg::Reestablish(Reestablish { number, resolved: Vec::new(), your_payment })
    }

    pub(super) fn on_reestablish(&mut self, r: Reestablish) -> Result<Effects, PeerError> {
        if matches!(self.phase, PayeePhase::Offered | PayeePhase::RefundSigned) {
            // Not open yet: our own `reestablish()` (number 0) tells the payer to send its
            // `Open` (or `RefundRequest`) again if it has one; nothing to send back.
            return Ok(Effects::none());
        }
        if self.phase != PayeePhase::Open {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let Some(best) = self.best.as_ref() else {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        };
        let mut fx = Effects::none();
        if r.number < best.number {
            fx.events.push(Event::CounterpartyLostState);
        }
        let held = |id: u64| best.state.htlcs.iter().any(|h| h.id == id);
        for (id, preimage) in &self.preimages {
            if held(*id) && !r.resolved.contains(id) {
                fx.send.push(Msg::Fulfill { id: *id, preimage: *preimage });
            }
        }
        for id in &self.failed {
            if held(*id) && !r.resolved.contains(id) {
                fx.send.push(Msg::Fail { id: *id });
            }
        }
        if fx.send.is_empty() {
            return Ok(fx);
        }
        // Every send follows a persisted update.
        let mut persisted = self.persist();
        persisted.merge(fx);
        Ok(persisted)
    }
}
