//! The hostile-but-valid party of the duplex simulation.
//!
//! In a run with a hostile party ([`Config::hostile`](super::Config::hostile), or one run in five)
//! one party signs everything validly but:
//!
//! * pays at the extremes: 1 sat, at the dust limit, just under, exactly and just over its
//!   balance;
//! * offers HTLCs expiring at the edges of the window the channel allows (just inside and just
//!   outside), for 1 sat or its whole balance;
//! * proposes resets that try to move money it does not own: its own proposal with the new
//!   leaf's values shifted towards itself, or netting an older payment number of the honest
//!   party's payer channel (its signatures are its own, on what it sends);
//! * proposes resets and abandons them at once (cancels), or withholds its step of every reset
//!   (`ResetAccept` or `ResetFinish`), or its `Ack`s, for the whole run;
//! * never fulfils nor fails the HTLCs offered to it (they expire);
//! * claims stale state on reconnection (a `Reestablish` from an older snapshot of its own);
//! * stalls while blocks go by, and goes silent from some step on.
//!
//! A reset never changes what the honest party is owed: checked at every reset message it
//! accepts. Its refusals are counted, never a failure; every check of the simulation holds for
//! it, the exact accounting included.

use std::format;
use std::string::String;

use bitcoin::Amount;

use crate::core::{BlockHeight, PaymentPreimage};
use crate::driving::RestoreCheck;
use crate::duplex::{Channel, Effects, Msg};
use crate::testing::rng::Rng;

use super::Sim;

/// A kind of message the hostile party never sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Withhold {
    Ack,
    ResetAccept,
    ResetFinish,
    Close,
}

impl Withhold {
    fn covers(self, m: &Msg) -> bool {
        match self {
            Withhold::Ack => matches!(m, Msg::Ack { .. }),
            Withhold::ResetAccept => matches!(m, Msg::ResetAccept(_)),
            Withhold::ResetFinish => matches!(m, Msg::ResetFinish(_)),
            Withhold::Close => matches!(m, Msg::CloseProposal(_) | Msg::CloseSigned(_)),
        }
    }
}

/// The hostile party's strategy for one run.
pub(super) struct Hostile {
    /// Which party it is.
    pub(super) idx: usize,
    withhold: Option<Withhold>,
    /// It never fulfils nor fails the HTLCs offered to it.
    never_settles: bool,
    /// The step from which it goes silent.
    silent_from: Option<u32>,
    silent: bool,
    stale_claim: bool,
}

impl Hostile {
    pub(super) fn draw(mut rng: Rng) -> Hostile {
        let withholds = [
            None,
            None,
            Some(Withhold::Ack),
            Some(Withhold::ResetAccept),
            Some(Withhold::ResetFinish),
            Some(Withhold::Close),
        ];
        Hostile {
            idx: rng.below(2) as usize,
            withhold: withholds[rng.index(withholds.len()).unwrap_or(0)],
            never_settles: rng.chance(300),
            silent_from: rng.chance(200).then(|| rng.range(5, 60) as u32),
            silent: false,
            stale_claim: false,
        }
    }
}

impl Sim {
    fn hostile_idx(&self) -> Option<usize> {
        self.hostile.as_ref().map(|h| h.idx)
    }

    /// Whether party `i` is the hostile party gone silent.
    pub(super) fn is_silent(&self, i: usize) -> bool {
        self.hostile.as_ref().is_some_and(|h| h.idx == i && h.silent)
    }

    /// Takes away what the hostile party withholds.
    pub(super) fn hostile_filter(&mut self, i: usize, fx: &mut Effects) {
        let Some(h) = self.hostile.as_ref().filter(|h| h.idx == i) else { return };
        let before = fx.send.len();
        if h.silent {
            fx.send.clear();
        } else if let Some(w) = h.withhold {
            fx.send.retain(|m| !w.covers(m));
        }
        self.out.hostile_moves += (before - fx.send.len()) as u32;
    }

    /// The hostile party's `Reestablish`, if it claims a stale state this time.
    pub(super) fn hostile_reestablish(&mut self, i: usize) -> Option<Msg> {
        let h = self.hostile.as_mut().filter(|h| h.idx == i && h.stale_claim)?;
        h.stale_claim = false;
        let n = self.stored[i].len().checked_sub(1)?;
        let k = self.rng.below(n.max(1) as u64) as usize;
        let old = self.stored[i].get(k)?;
        let check = RestoreCheck { channel_id: self.pair.parties[i].ch.channel_id(), min_update_id: 0 };
        let m = Channel::restore(old.snapshot.as_deref().unwrap_or(&[]), check).ok()?.reestablish();
        self.out.hostile_moves += 1;
        Some(m)
    }

    /// Whether the hostile party acts this step (and whether it went silent).
    pub(super) fn hostile_turn(&mut self, i: usize) -> bool {
        let steps = self.out.steps;
        let Some(h) = self.hostile.as_mut() else { return false };
        if h.silent_from.is_some_and(|s| steps >= s) && !h.silent {
            h.silent = true;
            self.out.hostile_moves += 1;
        }
        h.idx == i && !h.silent && self.frozen.is_none() && self.rng.chance(400)
    }

    /// Whether the hostile party holds the HTLCs offered to it without settling them (until they
    /// expire): true if it takes party `i`'s turn to settle.
    pub(super) fn hostile_settle(&self, i: usize) -> bool {
        self.hostile.as_ref().is_some_and(|h| h.idx == i && h.never_settles)
    }

    /// One hostile move.
    pub(super) fn hostile_step(&mut self, h: usize) -> Result<(), String> {
        self.out.hostile_moves += 1;
        let tip = self.tip();
        let g = 1 - h;
        match self.rng.below(6) {
            // Payments at the extremes of its balance.
            0 => {
                let bal = self.pair.parties[h].ch.balances().holder.to_sat();
                let amounts = crate::testing::hostile::edge_amounts(bal);
                let amount = amounts[self.rng.index(amounts.len()).unwrap_or(0)].max(1);
                let p = &mut self.pair.parties[h];
                if let Ok(fx) = p.ch.pay(Amount::from_sat(amount), &p.signer) {
                    self.out.payments += 1;
                    self.absorb(h, fx)?;
                }
            }
            // HTLCs at the edges of the expiry window.
            1 => {
                self.counter += 1;
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
                let pre = PaymentPreimage(bytes);
                self.preimages.insert(pre.hash(), pre);
                let (Some(earliest), latest) = self.pair.parties[h].ch.htlc_expiry_window(tip) else { return Ok(()) };
                let (e, l) = (earliest.0, latest.0);
                let edges = crate::testing::hostile::edge_expiries(e, l);
                let expiry = BlockHeight(edges[self.rng.index(edges.len()).unwrap_or(0)]);
                let bal = self.pair.parties[h].ch.balances().holder.to_sat();
                let amount = if self.rng.chance(500) { 1 } else { bal };
                let p = &mut self.pair.parties[h];
                if let Ok((_, fx)) = p.ch.add_htlc(Amount::from_sat(amount.max(1)), pre.hash(), expiry, &p.signer, tip)
                {
                    self.out.htlcs += 1;
                    self.absorb(h, fx)?;
                }
            }
            // A reset that tries to move money it does not own.
            2 => {
                let p = &mut self.pair.parties[h];
                let Ok(mut fx) = p.ch.reset(&p.signer, tip) else { return Ok(()) };
                let shift = [1, 546, 10_000][self.rng.index(3).unwrap_or(0)];
                let older = self.rng.chance(500);
                crate::testing::hostile::duplex_hostile_reset(&mut fx.send, g, shift, older);
                self.absorb(h, fx)?;
            }
            // A reset proposed and abandoned at once.
            3 => {
                let p = &mut self.pair.parties[h];
                if let Ok(fx) = p.ch.reset(&p.signer, tip) {
                    self.absorb(h, fx)?;
                    let p = &mut self.pair.parties[h];
                    if let Ok(fx) = p.ch.cancel_reset() {
                        self.absorb(h, fx)?;
                    }
                }
            }
            4 => {
                if let Some(s) = self.hostile.as_mut() {
                    s.stale_claim = true;
                }
                self.reconnect()?;
            }
            _ => {
                for _ in 0..self.rng.range(1, 20) {
                    self.mine()?;
                }
            }
        }
        Ok(())
    }

    /// Counts a refusal by the honest party of a hostile party's message.
    pub(super) fn hostile_refused(&mut self, to: usize) {
        if self.hostile_idx().is_some_and(|h| h != to) {
            self.out.hostile_refused += 1;
        }
    }

    /// A reset message the honest party `to` accepted changed what it is owed.
    pub(super) fn check_reset(&self, to: usize, before: u64, m: &str) -> Result<(), String> {
        let after = self.owed_in_view(to, to);
        if after != before {
            return Err(format!("a {m} changed what party {to} is owed: {before} -> {after} sat"));
        }
        Ok(())
    }
}
