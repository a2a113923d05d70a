//! The hostile-but-valid side of the Spilman simulation.
//!
//! In a run with a hostile side ([`Config::hostile`](super::Config::hostile), or one run in five)
//! the payer or the payee signs everything validly but:
//!
//! * (payer) pays at the extremes: 1 sat, just under, exactly and just over what is available,
//!   amounts that leave its change at the dust limit;
//! * (payer) offers HTLCs expiring at the edges of the payee's window (`tip + htlc_min_blocks`
//!   and `expiry - close_margin`, just inside and just outside), for 1 sat or all it has;
//! * (payer) never times its expired HTLCs out (the payee keeps them until it closes);
//! * (payee) reveals preimages at the last block (its own channel decides whether it still may)
//!   or never closes (the payer must refund);
//! * claims stale state on reconnection (a `Reestablish` from an older snapshot of its own);
//! * stalls while blocks go by, and goes silent from some step on.
//!
//! The honest side's refusals are counted, never a failure; every check of the simulation holds
//! for it, the exact accounting included.

use std::string::String;

use bitcoin::Amount;

use crate::core::{BlockHeight, PaymentPreimage};
use crate::driving::RestoreCheck;
use crate::spilman::{Effects, Msg, Payee, Payer};
use crate::testing::rng::Rng;

use super::{Sim, PAYEE, PAYER};

/// The hostile side's strategy for one run.
pub(super) struct Hostile {
    /// Which side it is.
    pub(super) idx: usize,
    /// (Payer) it never times its HTLCs out.
    keeps_expired: bool,
    /// (Payee) it never publishes its close.
    never_closes: bool,
    /// The step from which it goes silent.
    silent_from: Option<u32>,
    silent: bool,
    stale_claim: bool,
}

impl Hostile {
    pub(super) fn draw(mut rng: Rng) -> Hostile {
        Hostile {
            idx: rng.below(2) as usize,
            keeps_expired: rng.chance(400),
            never_closes: rng.chance(300),
            silent_from: rng.chance(200).then(|| rng.range(5, 80) as u32),
            silent: false,
            stale_claim: false,
        }
    }
}

impl Sim {
    fn hostile_idx(&self) -> Option<usize> {
        self.hostile.as_ref().map(|h| h.idx)
    }

    /// Whether side `i` is the hostile side gone silent.
    pub(super) fn is_silent(&self, i: usize) -> bool {
        self.hostile.as_ref().is_some_and(|h| h.idx == i && h.silent)
    }

    /// Whether the payer keeps its expired HTLCs (a hostile payer refusing to time them out).
    pub(super) fn keeps_expired(&self) -> bool {
        self.hostile.as_ref().is_some_and(|h| h.idx == PAYER && h.keeps_expired)
    }

    /// Takes away what the hostile side withholds (everything once silent; a payee that never
    /// closes keeps its close to itself).
    pub(super) fn hostile_filter(&mut self, i: usize, fx: &mut Effects) {
        let Some(h) = self.hostile.as_ref().filter(|h| h.idx == i) else { return };
        let before = fx.send.len() + fx.broadcast.len();
        if h.silent {
            fx.send.clear();
        }
        if h.never_closes && i == PAYEE {
            let funding = self.funding;
            fx.broadcast.retain(|tx| !tx.input.iter().any(|inp| inp.previous_output == funding));
            // Nor does it have its close bumped.
            fx.bumps.retain(|r| !r.tx.input.iter().any(|inp| inp.previous_output == funding));
        }
        self.out.hostile_moves += (before - fx.send.len() - fx.broadcast.len()) as u32;
    }

    /// The hostile side's `Reestablish`, if it claims a stale state this time.
    pub(super) fn hostile_reestablish(&mut self, i: usize) -> Option<Msg> {
        let h = self.hostile.as_mut().filter(|h| h.idx == i && h.stale_claim)?;
        h.stale_claim = false;
        let n = self.stored[i].len().checked_sub(1)?;
        let k = self.rng.below(n.max(1) as u64) as usize;
        let old = self.stored[i].get(k)?;
        let check = RestoreCheck { channel_id: self.channel_id(i), min_update_id: 0 };
        let m = if i == PAYER {
            Payer::restore(old.snapshot.as_deref().unwrap_or(&[]), check).ok()?.reestablish()
        } else {
            Payee::restore(old.snapshot.as_deref().unwrap_or(&[]), check).ok()?.reestablish()
        };
        self.out.hostile_moves += 1;
        Some(m)
    }

    /// Whether the hostile side acts this step (and whether it went silent).
    pub(super) fn hostile_turn(&mut self) -> bool {
        let steps = self.out.steps;
        let Some(h) = self.hostile.as_mut() else { return false };
        if h.silent_from.is_some_and(|s| steps >= s) && !h.silent {
            h.silent = true;
            self.out.hostile_moves += 1;
        }
        !h.silent && self.rng.chance(350)
    }

    /// One hostile move.
    pub(super) fn hostile_step(&mut self) -> Result<(), String> {
        let Some(h) = self.hostile_idx() else { return Ok(()) };
        self.out.hostile_moves += 1;
        let tip = self.tip();
        match (h, self.rng.below(5)) {
            // Payments at the extremes of what is available.
            (PAYER, 0) => {
                let avail = self.payer.available().to_sat();
                let amounts = crate::testing::hostile::edge_amounts(avail);
                let amount = amounts[self.rng.index(amounts.len()).unwrap_or(0)];
                if let Ok(fx) = self.payer.pay(Amount::from_sat(amount.max(1)), &self.signers[PAYER]) {
                    self.out.payments += 1;
                    self.absorb(PAYER, fx)?;
                }
            }
            // HTLCs at the edges of the payee's window.
            (PAYER, 1) => {
                self.counter += 1;
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
                let pre = PaymentPreimage(bytes);
                self.preimages.insert(pre.hash(), pre);
                let earliest = tip.height.0.saturating_add(12);
                let latest = self.payer.refund_height().0.saturating_sub(self.close_margin);
                let edges = crate::testing::hostile::edge_expiries(earliest, latest);
                let expiry = BlockHeight(edges[self.rng.index(edges.len()).unwrap_or(0)]);
                let avail = self.payer.available().to_sat();
                let amount = if self.rng.chance(500) { 1 } else { avail };
                let fx =
                    self.payer.add_htlc(Amount::from_sat(amount.max(1)), pre.hash(), expiry, &self.signers[PAYER], tip);
                if let Ok((_, fx)) = fx {
                    self.out.htlcs += 1;
                    self.absorb(PAYER, fx)?;
                }
            }
            // The payee reveals a preimage at the last block its channel allows.
            (PAYEE, 0 | 1) => {
                let held = self.payee.state().map(|s| s.htlcs.clone()).unwrap_or_default();
                let Some(htlc) = held.iter().min_by_key(|x| x.expiry.0).copied() else { return Ok(()) };
                if htlc.expiry.0 > self.chain.height + 2 + self.close_margin {
                    // Not yet the last moment: it waits for the blocks to come.
                    return self.stall();
                }
                let Some(pre) = self.preimages.get(&htlc.payment_hash).copied() else { return Ok(()) };
                if let Ok(fx) = self.payee.fulfill_htlc(htlc.id, pre, &self.signers[PAYEE]) {
                    self.revealed.insert(htlc.id);
                    self.out.payments += 1;
                    self.absorb(PAYEE, fx)?;
                }
            }
            (_, 2) => {
                if let Some(s) = self.hostile.as_mut() {
                    s.stale_claim = true;
                }
                self.reconnect()?;
            }
            _ => self.stall()?,
        }
        Ok(())
    }

    /// Blocks go by while the hostile side does nothing.
    fn stall(&mut self) -> Result<(), String> {
        for _ in 0..self.rng.range(1, 20) {
            self.mine()?;
        }
        Ok(())
    }

    /// Counts a refusal by the honest side of a hostile side's message.
    pub(super) fn hostile_refused(&mut self, to: usize) {
        if self.hostile_idx().is_some_and(|h| h != to) {
            self.out.hostile_refused += 1;
        }
    }

    /// Whether the hostile payee withholds its close.
    pub(super) fn withholds_close(&self) -> bool {
        self.hostile.as_ref().is_some_and(|h| h.idx == PAYEE && (h.never_closes || h.silent))
    }
}
