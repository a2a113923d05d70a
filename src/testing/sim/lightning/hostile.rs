//! The hostile-but-valid peer of the Lightning simulation.
//!
//! In a run with a hostile peer ([`Config::hostile`](super::Config::hostile), or one run in five)
//! one party keeps to the protocol's encodings and signs everything validly, but:
//!
//! * opens with extreme-but-legal parameters, at the bounds the honest side accepts: a 546-sat
//!   dust limit, the largest reserve the honest side accepts (1 % of the capacity, at least
//!   1,000 sat), the honest side's largest `to_self_delay`, 1 or 483 HTLCs, an in-flight limit of
//!   1 sat, 1 % of the capacity or unlimited, an HTLC minimum of 1 msat or 1,000 sat, and as
//!   funder a fee rate of 253 to 100,000 sat/kW;
//! * as funder sends `update_fee` at the bounds of the honest side's acceptance (just inside and
//!   just outside 50 %..10× of the honest side's estimate, and of its absolute bounds; a rate its
//!   own channel refuses to produce is crafted as a `Msg::UpdateFee`);
//! * floods the honest side with dust HTLCs and with as many HTLCs as it may offer (and one more,
//!   crafted);
//! * offers HTLCs expiring at the edge of the honest side's [`HtlcDeadlines`] (just inside and
//!   just outside `claim_margin`);
//! * reveals the preimages of the honest side's HTLCs promptly, at the last block, only on chain
//!   (its channel is given the preimage and claims when the honest side goes on chain), or never;
//! * claims stale state on reconnection (a `channel_reestablish` built from an older snapshot
//!   of its own, while it keeps the current one);
//! * asks to close to payout scripts at the edge of standardness (standard ones just inside the
//!   templates, and non-standard ones just outside, crafted);
//! * refuses to cooperate: withholds its `commitment_signed`, its `revoke_and_ack` or its closing
//!   messages for the whole run, or goes silent from some step on.
//!
//! The honest side runs [`ChannelConfig::default_for`]'s policy with a fee estimate. Its
//! refusals (typed errors) are handled as its embedder is told (a warning and a reconnection, or
//! a close) and counted, never a failure; if the channel does not settle over a perfect
//! connection at the end, the honest side closes unilaterally. Every check of the simulation
//! holds for the honest side: no panic, only its latest state broadcast, the exact accounting.

use std::format;
use std::string::String;
use std::vec::Vec;

use bitcoin::{Amount, ScriptBuf};

use crate::core::commitment::ChannelType;
use crate::core::{MilliSats, PaymentHash, PaymentPreimage};
use crate::driving::RestoreCheck;
use crate::lightning::{ChannelConfig, DustExposure, Effects, Event, HtlcDeadlines, Msg, Side};
use crate::testing::lightning::{config, onion, Pair, CHAIN};
use crate::testing::rng::Rng;

use super::{wire, Sim};

/// How the hostile peer settles the HTLCs the honest side offers it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fulfil {
    /// Fulfils (or fails) them as soon as they are committed.
    Prompt,
    /// Fulfils them only in the last two blocks before their expiry.
    LastMoment,
    /// Never off chain: its channel is given the preimage and claims on chain.
    OnChainOnly,
    /// Never off chain, and on chain only in the mempool (replacement cycling): its channel is
    /// given the preimage, and each claim it broadcasts is put in the mempool in place of the
    /// honest side's timeout, reported to it, and evicted at once by a spend of the hostile
    /// peer's own; after a few such cycles it stops broadcasting. The preimage never confirms:
    /// the HTLC times out back to the honest side, which must keep broadcasting its timeout.
    MempoolOnly,
    /// Never.
    Never,
}

/// A kind of message the hostile peer never sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Withhold {
    Commitment,
    Revocation,
    Closing,
}

impl Withhold {
    fn covers(self, m: &Msg) -> bool {
        match self {
            Withhold::Commitment => matches!(m, Msg::CommitmentSigned { .. }),
            Withhold::Revocation => matches!(m, Msg::RevokeAndAck { .. }),
            Withhold::Closing => matches!(m, Msg::Shutdown { .. } | Msg::ClosingSigned { .. }),
        }
    }
}

/// The hostile peer's strategy for one run.
pub(super) struct Hostile {
    /// Which peer it is.
    pub(super) idx: usize,
    /// The honest side's policy.
    honest: ChannelConfig,
    /// The hostile side's open parameters.
    own: ChannelConfig,
    /// The open fee rate.
    feerate: u32,
    /// The honest side's fee estimate.
    estimate: u32,
    fulfil: Fulfil,
    withhold: Option<Withhold>,
    /// The step from which it goes silent.
    silent_from: Option<u32>,
    silent: bool,
    /// Its next `channel_reestablish` claims an older state.
    stale_claim: bool,
    /// The id of the last HTLC it offered.
    last_add: Option<u64>,
    /// The payout scripts it asked to close to (the honest side's checks must know them).
    pub(super) scripts: Vec<ScriptBuf>,
    /// How many more preimage spends it cycles through the mempool ([`Fulfil::MempoolOnly`]).
    cycles_left: u32,
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.index(xs.len()).unwrap_or(0)]
}

impl Hostile {
    /// Draws the hostile peer's strategy for a channel of `capacity` sat.
    pub(super) fn draw(mut rng: Rng, ct: ChannelType, capacity: u64) -> Hostile {
        let honest = ChannelConfig { minimum_depth: 1, ..ChannelConfig::default_for(CHAIN, ct) };
        let idx = rng.below(2) as usize;
        let own = ChannelConfig {
            dust_limit: Amount::from_sat(546),
            channel_reserve: honest.max_peer_reserve(Amount::from_sat(capacity)),
            to_self_delay: honest.max_to_self_delay,
            max_accepted_htlcs: pick(&mut rng, &[1, 483]),
            max_htlc_value_in_flight: MilliSats::from_msat(pick(&mut rng, &[1_000, capacity * 10, u64::MAX])),
            htlc_minimum: MilliSats::from_msat(pick(&mut rng, &[1, 1_000_000])),
            max_dust_exposure: DustExposure::Fixed(MilliSats::from_msat(u64::MAX)),
            max_feerate: u32::MAX,
            // It never protects itself: it offers and settles up to the last block.
            htlc_deadlines: HtlcDeadlines { offered_grace: 1_000_000, claim_margin: 0 },
            ..config(ct)
        };
        let feerate = if idx == 0 { pick(&mut rng, &[253, 2_500, 25_000, 100_000]) } else { 2_500 };
        let estimate = pick(&mut rng, &[253, 1_000, 2_500, 10_000]);
        let fulfil = pick(
            &mut rng,
            &[
                Fulfil::Prompt,
                Fulfil::Prompt,
                Fulfil::LastMoment,
                Fulfil::OnChainOnly,
                Fulfil::Never,
                Fulfil::MempoolOnly,
            ],
        );
        let cycles_left = rng.range(1, 6) as u32;
        let withhold = pick(
            &mut rng,
            &[None, None, None, Some(Withhold::Commitment), Some(Withhold::Revocation), Some(Withhold::Closing)],
        );
        let silent_from = rng.chance(200).then(|| rng.range(5, 60) as u32);
        Hostile {
            idx,
            honest,
            own,
            feerate,
            estimate,
            fulfil,
            withhold,
            silent_from,
            silent: false,
            stale_claim: false,
            last_add: None,
            scripts: Vec::new(),
            cycles_left,
        }
    }

    /// Opens the channel: the hostile peer's parameters against the honest side's policy.
    pub(super) fn open(&self, capacity: u64, push_msat: u64) -> Pair {
        let (a, b) = if self.idx == 0 {
            (self.own.clone(), self.honest.clone())
        } else {
            (self.honest.clone(), self.own.clone())
        };
        Pair::open_with(a, b, capacity, push_msat, self.feerate)
    }
}

impl Sim {
    fn hostile_idx(&self) -> Option<usize> {
        self.hostile.as_ref().map(|h| h.idx)
    }

    /// Whether peer `i` is the hostile peer gone silent.
    pub(super) fn is_silent(&self, i: usize) -> bool {
        self.hostile.as_ref().is_some_and(|h| h.idx == i && h.silent)
    }

    /// Gives the honest side its fee estimate.
    pub(super) fn hostile_start(&mut self) -> Result<(), String> {
        let Some(h) = self.hostile_idx() else { return Ok(()) };
        self.out.hostile = 1;
        self.feed_estimate(1 - h)
    }

    fn feed_estimate(&mut self, g: usize) -> Result<(), String> {
        let Some(est) = self.hostile.as_ref().map(|h| h.estimate) else { return Ok(()) };
        let fx = self.nodes[g].ch.handle_fee_estimate(est);
        self.absorb(g, fx)
    }

    /// After a restore: the honest side's embedder gives its estimate again.
    pub(super) fn hostile_restored(&mut self, i: usize) -> Result<(), String> {
        match self.hostile_idx() {
            Some(h) if h != i => self.feed_estimate(i),
            _ => Ok(()),
        }
    }

    /// Counts what the honest side did by itself, and takes away what the hostile peer withholds.
    pub(super) fn hostile_filter(&mut self, i: usize, fx: &mut Effects) {
        if self.is_honest(i) {
            let refused = fx.events.iter().filter(|e| matches!(e, Event::HtlcRefused { .. })).count();
            self.out.failed_back += refused as u32;
            self.out.deadline_closes += u32::from(fx.events.iter().any(|e| matches!(e, Event::HtlcDeadline { .. })));
            return;
        }
        let Some(h) = self.hostile.as_ref().filter(|h| h.idx == i) else { return };
        let before = fx.send.len();
        if h.silent {
            fx.send.clear();
        } else if let Some(w) = h.withhold {
            fx.send.retain(|m| !w.covers(m));
        }
        self.out.hostile_moves += (before - fx.send.len()) as u32;
    }

    /// The hostile peer's `channel_reestablish`, if it claims a stale state this time.
    pub(super) fn hostile_reestablish(&mut self, i: usize) -> Option<Msg> {
        let h = self.hostile.as_mut().filter(|h| h.idx == i && h.stale_claim)?;
        h.stale_claim = false;
        let node = &self.nodes[i];
        let n = node.persisted.len().checked_sub(1)?;
        let k = self.rng.below(n.max(1) as u64) as usize;
        let check = RestoreCheck { channel_id: Some(node.ch.channel_id()), min_update_id: 0 };
        let old = self.restore_write(i, k, check).ok()?;
        let node = &self.nodes[i];
        let m = old.reestablish(&node.signer).ok()?;
        self.out.hostile_moves += 1;
        Some(m)
    }

    /// Whether the hostile peer acts this step (and whether it went silent).
    pub(super) fn hostile_turn(&mut self, i: usize) -> bool {
        let steps = self.out.steps;
        let Some(h) = self.hostile.as_mut() else { return false };
        if h.silent_from.is_some_and(|s| steps >= s) && !h.silent {
            h.silent = true;
            self.out.hostile_moves += 1;
        }
        h.idx == i && !h.silent && !self.onchain && self.rng.chance(400)
    }

    /// The expiry delta of the HTLCs the simulation offers: near the deadlines in hostile runs,
    /// so that they come within the run.
    pub(super) fn expiry_delta(&mut self) -> u64 {
        if self.hostile.is_some() {
            self.rng.range(18, 30)
        } else {
            self.rng.range(40, 300)
        }
    }

    /// Sends a message the hostile peer crafted (one its own channel would not produce).
    fn inject(&mut self, from: usize, m: Msg) -> Result<(), String> {
        if self.onchain {
            return Ok(());
        }
        let m = wire(&m)?;
        self.transmit(from, m);
        Ok(())
    }

    /// The hostile peer offers an HTLC through its channel; false if its channel refuses.
    fn hostile_add(&mut self, h: usize, amount_msat: u64, expiry: u32) -> Result<bool, String> {
        self.counter += 1;
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.counter.to_be_bytes());
        let pre = PaymentPreimage(bytes);
        self.preimages.insert(pre.hash(), pre);
        match self.nodes[h].ch.add_htlc(MilliSats::from_msat(amount_msat.max(1)), pre.hash(), expiry, onion()) {
            Ok((id, fx)) => {
                self.out.htlcs += 1;
                if let Some(s) = self.hostile.as_mut() {
                    s.last_add = Some(id);
                }
                self.absorb(h, fx)?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn hostile_commit(&mut self, h: usize) -> Result<(), String> {
        let node = &mut self.nodes[h];
        if node.ch.has_unsigned_changes() && !node.ch.is_awaiting_revoke() {
            if let Ok(fx) = node.ch.commit(&node.signer) {
                self.absorb(h, fx)?;
            }
        }
        Ok(())
    }

    /// One hostile move.
    pub(super) fn hostile_step(&mut self) -> Result<(), String> {
        let Some(h) = self.hostile_idx() else { return Ok(()) };
        let g = 1 - h;
        self.out.hostile_moves += 1;
        let tip = self.chain.height;
        let cid = self.nodes[h].ch.channel_id();
        match self.rng.below(8) {
            // `update_fee` at the bounds of the honest side's acceptance.
            0 if h == 0 => {
                let Some(s) = self.hostile.as_ref() else { return Ok(()) };
                let rates = crate::testing::hostile::lightning_fee_edges(s.estimate, &s.honest);
                let rate = pick(&mut self.rng, &rates);
                match self.nodes[h].ch.update_fee(rate) {
                    Ok(fx) => {
                        self.absorb(h, fx)?;
                        if self.rng.chance(500) {
                            self.hostile_commit(h)?;
                        }
                    }
                    Err(_) => self.inject(h, Msg::UpdateFee { channel_id: cid, feerate_per_kw: rate })?,
                }
            }
            // A dust flood (amounts under both dust limits).
            0 | 1 => {
                for _ in 0..self.rng.range(5, 40) {
                    let amount = self.rng.range(1, 546_000);
                    let expiry = tip + self.rng.range(18, 200) as u32;
                    if !self.hostile_add(h, amount, expiry)? {
                        break;
                    }
                }
                self.hostile_commit(h)?;
            }
            // As many HTLCs as it may offer, then one more (crafted).
            2 => {
                let amount = self.rng.range(546_000, 5_000_000);
                for _ in 0..483 {
                    if !self.hostile_add(h, amount, tip + 40)? {
                        break;
                    }
                }
                if let Some(id) = self.hostile.as_ref().and_then(|s| s.last_add) {
                    let pre = PaymentPreimage(self.rng.bytes32());
                    self.preimages.insert(pre.hash(), pre);
                    let m = Msg::UpdateAddHtlc {
                        channel_id: cid,
                        id: id + 1,
                        amount_msat: MilliSats::from_msat(amount),
                        payment_hash: pre.hash(),
                        cltv_expiry: tip + 40,
                        onion_routing_packet: onion(),
                    };
                    self.inject(h, m)?;
                }
                self.hostile_commit(h)?;
            }
            // HTLCs expiring at the edge of the honest side's `claim_margin`.
            3 => {
                let margin = self.hostile.as_ref().map_or(18, |s| s.honest.htlc_deadlines.claim_margin);
                let delta = pick(&mut self.rng, &crate::testing::hostile::edge_expiry_deltas(margin));
                let amount = self.rng.range(546_000, self.capacity * 100);
                self.hostile_add(h, amount, tip + delta)?;
                self.hostile_commit(h)?;
            }
            // A stale `channel_reestablish` at the next reconnection.
            4 => {
                if let Some(s) = self.hostile.as_mut() {
                    s.stale_claim = true;
                }
                self.broken = true;
            }
            // `shutdown` to a payout script at the edge of standardness.
            5 => {
                let script = crate::testing::hostile::edge_script(self.rng.below(10));
                if let Some(s) = self.hostile.as_mut() {
                    s.scripts.push(script.clone());
                }
                let fee_range = (Amount::from_sat(1), Amount::from_sat(self.capacity));
                let node = &mut self.nodes[h];
                match node.ch.shutdown(script.clone(), fee_range, &node.signer) {
                    Ok(fx) => self.absorb(h, fx)?,
                    Err(_) => self.inject(h, Msg::Shutdown { channel_id: cid, scriptpubkey: script })?,
                }
            }
            // It stalls while blocks go by (the deadlines come).
            6 if self.rng.chance(500) => {
                for _ in 0..self.rng.range(5, 30) {
                    self.mine()?;
                }
            }
            // The honest side's estimate moves (the bounds move with it).
            6 => {
                let est = pick(&mut self.rng, &[253, 500, 1_000, 2_500, 5_000, 20_000]);
                if let Some(s) = self.hostile.as_mut() {
                    s.estimate = est;
                }
                self.feed_estimate(g)?;
            }
            _ => self.hostile_commit(h)?,
        }
        Ok(())
    }

    /// The hostile peer settles the HTLCs offered to it as its strategy says.
    pub(super) fn hostile_settle(&mut self) -> Result<(), String> {
        let Some(s) = self.hostile.as_ref() else { return Ok(()) };
        let (h, fulfil) = (s.idx, s.fulfil);
        if s.silent || fulfil == Fulfil::Never {
            return Ok(());
        }
        let tip = self.chain.height;
        let ready: Vec<(u64, PaymentHash, u32)> = self.nodes[h]
            .ch
            .htlcs()
            .iter()
            .filter(|x| x.offerer == Side::Counterparty && x.is_irrevocably_committed() && x.remove.is_none())
            .map(|x| (x.id, x.payment_hash, x.cltv_expiry))
            .collect();
        for (id, hash, expiry) in ready {
            let Some(pre) = self.preimages.get(&hash).copied() else { continue };
            let fx = match fulfil {
                // The preimage will never confirm: the HTLC is not counted as the hostile
                // peer's (the honest side is owed it back).
                Fulfil::MempoolOnly => self.nodes[h].ch.provide_preimage(id, pre),
                Fulfil::OnChainOnly => {
                    self.fulfilled[h].insert(hash);
                    let fx = self.nodes[h].ch.provide_preimage(id, pre);
                    if !fx.is_empty() {
                        self.out.hostile_moves += 1;
                    }
                    fx
                }
                Fulfil::LastMoment if expiry > tip + 2 => continue,
                _ => match self.nodes[h].ch.fulfill_htlc(id, pre) {
                    Ok(fx) => {
                        self.fulfilled[h].insert(hash);
                        self.out.payments += 1;
                        self.out.hostile_moves += u32::from(fulfil == Fulfil::LastMoment);
                        fx
                    }
                    Err(_) => continue,
                },
            };
            self.absorb(h, fx)?;
        }
        Ok(())
    }

    /// [`Fulfil::MempoolOnly`]: a broadcast of the hostile peer that reveals a preimage takes
    /// the place of whatever spends the same output in the mempool (the honest side's timeout),
    /// is reported to both sides as seen, and is evicted at once (the hostile peer double-spends
    /// its other input); once its cycles are spent it is dropped. Returns whether `tx` was
    /// taken (not to be broadcast).
    pub(super) fn hostile_mempool_only(&mut self, i: usize, tx: &bitcoin::Transaction) -> Result<bool, String> {
        let Some(s) = self.hostile.as_ref().filter(|s| s.idx == i && s.fulfil == Fulfil::MempoolOnly) else {
            return Ok(false);
        };
        let cycles_left = s.cycles_left;
        let reveals = tx.input.iter().any(|inp| {
            inp.witness
                .iter()
                .any(|e| <[u8; 32]>::try_from(e).is_ok_and(|b| self.preimages.contains_key(&PaymentPreimage(b).hash())))
        });
        if !reveals {
            return Ok(false);
        }
        if cycles_left == 0 || self.chain.replace(tx).is_err() {
            return Ok(true);
        }
        if let Some(s) = self.hostile.as_mut() {
            s.cycles_left -= 1;
        }
        self.out.hostile_moves += 1;
        self.out.mempool_reveals += 1;
        self.seen.insert(tx.compute_txid());
        self.notify(crate::driving::ChainEvent::Seen { tx })?;
        self.chain.evict(&tx.compute_txid());
        Ok(true)
    }

    /// The channel did not settle over a perfect connection: against a hostile peer the honest
    /// side's embedder closes unilaterally (anything else is a failure).
    pub(super) fn give_up(&mut self, why: String) -> Result<(), String> {
        let Some(h) = self.hostile_idx() else { return Err(why) };
        // It waits a while: an HTLC deadline may take the channel on chain first.
        for _ in 0..self.rng.range(0, 40) {
            if self.closing_on_chain() {
                return Ok(());
            }
            self.mine().map_err(|e| format!("{e} (after: {why})"))?;
        }
        if self.closing_on_chain() {
            return Ok(());
        }
        self.out.gave_up += 1;
        self.force_close(1 - h).map_err(|e| format!("{e} (after: {why})"))
    }
}
