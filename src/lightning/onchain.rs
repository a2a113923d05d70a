//! The channel on chain (BOLT #5): force close, recognising whatever spent the funding output,
//! claiming every output that is ours at the right height, punishing revoked commitments, learning
//! preimages from witnesses, and undoing all of it on a reorg.
//!
//! Every claim is broadcast as soon as it is valid (its `nLockTime` or relative lock reached) and
//! again after a reorg, at the channel's sweep feerate ([`Channel::set_sweep_policy`]) or, for
//! pre-signed transactions, at the fee they were signed with; each time-critical one comes with a
//! [`BumpRequest`](crate::core::feebump::BumpRequest) in
//! [`Effects::bumps`](crate::driving::Effects::bumps) so that a
//! [`Bumper`](crate::core::feebump::Bumper) gets it confirmed by its deadline whatever the fee
//! market does (see [`super::fees`] for what is bumped how, and what cannot be).

use alloc::vec::Vec;

use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, Txid};

use super::channel::{Channel, Phase};
use super::fees::Claimed;
use super::htlc::Side;
use super::penalty::PenaltyKit;
use super::records::PenaltyRecord;
use super::{CommandError, Effects, Event, HtlcFailure};
use crate::core::commitment::{CommitmentNumber, FeeratePerKw};
use crate::core::hashlock::PaymentPreimage;
use crate::core::keys::{HtlcPubkey, PerCommitmentPoint, RevocationPubkey};
use crate::core::script::{self, WitnessScript};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;
use crate::driving::{ChainEvent, Watch};

/// Which transaction spent the funding output.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ClosingKind {
    /// Our commitment number `n`.
    Holder(u64),
    /// The peer's current (or still unrevoked previous) commitment number `n`.
    Counterparty(u64),
    /// A revoked peer commitment number `n`: punished.
    Revoked(u64),
    /// The cooperative closing transaction.
    Cooperative,
    /// Something we cannot interpret (a peer commitment newer than we know: we lost state).
    Unknown,
}

/// What one tracked output is, and how we claim it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum ClaimKind {
    /// Our `to_local` on our commitment `n`: ours after the delay.
    HolderToLocal { n: u64, script: WitnessScript },
    /// An HTLC of our commitment, spent by its second-stage transaction at `position`.
    HolderHtlc { position: usize, offerer: Side, id: u64, cltv_expiry: u32 },
    /// The output of our HTLC transaction of commitment `n`: ours after the delay.
    HolderSecondStage { n: u64, script: WitnessScript },
    /// Our `to_remote` on a peer commitment.
    ToRemote,
    /// An HTLC output of peer commitment `n` (offered by `offerer`).
    RemoteHtlc { n: u64, offerer: Side, id: u64, cltv_expiry: u32, script: WitnessScript },
    /// Swept by a penalty.
    Penalty,
}

/// One output we track after close.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Claim {
    pub outpoint: OutPoint,
    pub value: Amount,
    pub kind: ClaimKind,
    /// Height of the transaction that created the output.
    pub created: BlockHeight,
    /// Our claim's txid once broadcast.
    pub claim_txid: Option<Txid>,
    /// Spent on chain (by us or the peer).
    pub spent_by: Option<Txid>,
}

/// The on-chain state once the funding output is spent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct OnChain {
    pub closing_tx: Transaction,
    pub kind: ClosingKind,
    pub height: BlockHeight,
    pub claims: Vec<Claim>,
}

impl Channel {
    /// Where sweeps pay (by default P2WPKH of our payment basepoint, a key we hold).
    pub fn sweep_destination(&self) -> ScriptBuf {
        self.sweep_destination
            .clone()
            .unwrap_or_else(|| script::to_remote_p2wpkh(self.holder.pubkeys.payment_basepoint.public_key()))
    }

    /// Sets where sweeps pay and their fee rate.
    pub fn set_sweep_policy(&mut self, destination: ScriptBuf, feerate: FeeratePerKw) -> Effects {
        self.sweep_destination = Some(destination);
        self.sweep_feerate = feerate.0;
        self.persist()
    }

    /// How the channel was closed on chain, if it was.
    pub fn closing_kind(&self) -> Option<ClosingKind> {
        self.onchain.as_ref().map(|o| o.kind)
    }

    /// Whether every output we could claim is claimed and confirmed.
    pub fn is_fully_resolved(&self) -> bool {
        self.onchain.as_ref().is_some_and(|o| o.claims.iter().all(|c| c.spent_by.is_some()))
    }

    /// Closes unilaterally: broadcasts our latest commitment. Claims follow from
    /// [`Channel::handle_chain`] as it confirms and matures. With anchors the effects carry the
    /// commitment's [`BumpMethod::Child`](crate::core::feebump::BumpMethod::Child) request (CPFP
    /// through our anchor, deadline and value at stake from its HTLCs, see [`super::fees`]);
    /// a `static_remotekey` commitment cannot be bumped and comes without one.
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] before we hold a signed commitment or once the funding proved
    /// invalid ([`Channel::has_invalid_funding`]); [`CommandError::StateLost`] once the peer proved
    /// our state stale (our commitment is revoked: never broadcast it); [`CommandError::WrongSigner`]
    /// if `signer` is not the channel's ([`Channel::check_signer`]).
    pub fn force_close<S: Signer + ?Sized>(&mut self, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        if self.lost_state {
            return Err(CommandError::StateLost);
        }
        if self.funding_invalid {
            return Err(CommandError::WrongPhase);
        }
        let tx = self.holder_commitment_tx(signer)?;
        self.force_closed = true;
        let mut fx = self.persist();
        if let Some(op) = self.funding_outpoint {
            fx.watch.push(Watch::Spend(op));
        }
        fx.watch.push(Watch::Tx(tx.compute_txid()));
        fx.bumps.extend(self.commitment_bump(&tx, signer));
        fx.broadcast.push(tx);
        Ok(fx)
    }

    /// On a new block after [`Channel::force_close`] (ours, the peer's `error`, or an HTLC
    /// deadline) while nothing spent the funding output: our commitment again, with its
    /// fee-bump request (a bumper takes a request it tracks already only if it is tighter: a
    /// preimage given since, [`Channel::provide_preimage`], makes an HTLC urgent). The embedder
    /// persists the force close before broadcasting it: a crash between the two lost the
    /// broadcast, and the restored channel, over off chain, would otherwise never publish
    /// anything (a close the channel decided itself, at an HTLC deadline, is not decided again).
    pub(crate) fn rebroadcast_commitment<S: Signer + ?Sized>(&mut self, signer: &S) -> Effects {
        if self.lost_state || self.funding_invalid || self.onchain.is_some() {
            return Effects::none();
        }
        let Ok(tx) = self.holder_commitment_tx(signer) else { return Effects::none() };
        let mut fx = self.persist();
        fx.bumps.extend(self.commitment_bump(&tx, signer));
        fx.broadcast.push(tx);
        fx
    }

    /// The kit a watchtower needs to punish any revoked commitment of this channel (see
    /// [`PenaltyKit`]); `revocation_base` is our revocation base secret, which only the signer
    /// holds. Its size grows with the number of HTLCs ever offered, not with updates.
    pub fn watchtower_kit(
        &self,
        revocation_base: Option<crate::core::keys::RevocationBaseSecret>,
        records: &[PenaltyRecord],
    ) -> Option<PenaltyKit> {
        let params = self.commitment_params(Side::Counterparty)?;
        let cp = self.counterparty.as_ref()?;
        let mut htlcs: Vec<PenaltyRecord> = records.to_vec();
        htlcs.extend(self.live_records());
        Some(PenaltyKit {
            channel_type: self.channel_type,
            obscuring_factor: params.obscuring_factor,
            funding_outpoint: self.funding_outpoint?,
            revocation_basepoint: self.holder.pubkeys.revocation_basepoint,
            holder_htlc_basepoint: self.holder.pubkeys.htlc_basepoint,
            counterparty_delayed_basepoint: cp.pubkeys.delayed_payment_basepoint,
            counterparty_htlc_basepoint: cp.pubkeys.htlc_basepoint,
            counterparty_to_self_delay: self.holder.to_self_delay,
            secrets: self.secrets.clone(),
            htlcs,
            destination: self.sweep_destination(),
            revocation_base,
        })
    }

    /// Records for the HTLCs still live (their range ends at the peer's latest commitment).
    fn live_records(&self) -> Vec<PenaltyRecord> {
        self.htlcs
            .iter()
            .filter_map(|h| {
                let first = h.first_remote_commitment?;
                let last = h.removed_from_remote.map_or(self.counterparty_commitment, |g| g.saturating_sub(1));
                Some(PenaltyRecord {
                    offerer: h.offerer,
                    id: h.id,
                    amount: h.amount,
                    payment_hash: h.payment_hash,
                    cltv_expiry: h.cltv_expiry,
                    first_commitment: first,
                    last_commitment: last,
                })
            })
            .collect()
    }

    /// Handles chain events after the funding output is spent (called by `handle_chain`).
    pub(crate) fn handle_onchain<S: Signer + ?Sized>(
        &mut self,
        event: ChainEvent<'_>,
        records: &[PenaltyRecord],
        signer: &S,
    ) -> Option<Effects> {
        match event {
            ChainEvent::Confirmed { tx, height } => {
                let funding = self.funding_outpoint?;
                if self.onchain.is_none() && tx.input.iter().any(|i| i.previous_output == funding) {
                    return Some(self.on_funding_spent(tx, height, records, signer));
                }
                let spends_claim = self.onchain.as_ref().is_some_and(|o| {
                    tx.input
                        .iter()
                        .any(|i| o.claims.iter().any(|c| c.outpoint == i.previous_output && c.spent_by.is_none()))
                });
                spends_claim.then(|| self.on_claim_spent(tx, height, records, signer))
            }
            ChainEvent::Tip(t) => {
                self.onchain.as_ref()?;
                let new_block = t.height > self.tip;
                self.tip = self.tip.max(t.height);
                // Those broadcast before first, then those due now (not broadcast twice).
                let mut fx = if new_block { self.rebroadcast_claims(records, signer) } else { Effects::none() };
                fx.merge(self.claim_due(records, signer, Vec::new()));
                Some(fx)
            }
            ChainEvent::Seen { tx } => {
                self.onchain.as_ref()?;
                Some(self.on_claim_seen(tx))
            }
            ChainEvent::Unconfirmed(txid) => {
                let on = self.onchain.as_ref()?;
                if on.closing_tx.compute_txid() == txid {
                    // The close left the chain: forget it; a force close is broadcast again.
                    self.onchain = None;
                    if self.phase == Phase::Closed && self.shutdown.closing_tx.is_none() {
                        self.phase = Phase::Normal;
                    }
                    let mut fx = self.persist();
                    if self.force_closed {
                        if let Ok(tx) = self.holder_commitment_tx(signer) {
                            fx.bumps.extend(self.commitment_bump(&tx, signer));
                            fx.broadcast.push(tx);
                        }
                    }
                    if let Some(tx) = self.shutdown.closing_tx.clone() {
                        fx.broadcast.push(tx);
                    }
                    return Some(fx);
                }
                let mut changed = false;
                if let Some(on) = self.onchain.as_mut() {
                    // A claim (ours or the peer's) left the chain: it is open again.
                    let second_stage_parent = |c: &Claim| c.outpoint.txid == txid;
                    let before = on.claims.len();
                    on.claims.retain(|c| !second_stage_parent(c));
                    changed |= before != on.claims.len();
                    for c in &mut on.claims {
                        if c.spent_by == Some(txid) || c.claim_txid == Some(txid) {
                            c.spent_by = None;
                            c.claim_txid = None;
                            changed = true;
                        }
                    }
                }
                changed.then(|| self.claim_due(records, signer, Vec::new()))
            }
        }
    }

    /// Whether `txid` is a cooperative closing transaction we signed: the agreed one, or the one
    /// we last proposed (the peer may have agreed and broadcast it while its answer was lost).
    fn is_our_closing_tx(&self, txid: Txid) -> bool {
        self.shutdown.closing_tx.as_ref().is_some_and(|c| c.compute_txid() == txid)
            || self
                .shutdown
                .last_fee_sent
                .and_then(|fee| self.closing_tx_with_fee(fee))
                .is_some_and(|c| c.compute_txid() == txid)
    }

    fn on_funding_spent<S: Signer + ?Sized>(
        &mut self,
        tx: &Transaction,
        height: BlockHeight,
        records: &[PenaltyRecord],
        signer: &S,
    ) -> Effects {
        let txid = tx.compute_txid();
        self.tip = self.tip.max(height);
        let mut events = Vec::new();
        let mut claims = Vec::new();
        let kind = if self.is_our_closing_tx(txid) {
            ClosingKind::Cooperative
        } else if let Some(n) = self.holder_match(tx, signer) {
            claims = self.holder_claims(tx, n, height, signer);
            ClosingKind::Holder(n)
        } else {
            let number = self
                .commitment_params(Side::Counterparty)
                .and_then(|p| tx.input.first().and_then(|i| p.obscuring_factor.decode(tx.lock_time, i.sequence)))
                .map(CommitmentNumber::to_u64);
            match number {
                Some(n) if self.secrets.get(crate::core::shachain::MAX_INDEX - n).is_some() => {
                    claims = self.penalty_claims(tx, height, records);
                    claims.extend(self.to_remote_claim(tx, height));
                    ClosingKind::Revoked(n)
                }
                Some(n) if n <= self.counterparty_commitment => {
                    let point = if n == self.counterparty_commitment {
                        self.counterparty_point
                    } else {
                        self.counterparty_prev_point
                    };
                    if let Some(point) = point {
                        claims = self.remote_claims(tx, n, &point, height, records);
                    }
                    claims.extend(self.to_remote_claim(tx, height));
                    ClosingKind::Counterparty(n)
                }
                _ => {
                    claims.extend(self.to_remote_claim(tx, height));
                    events.push(Event::LostState);
                    ClosingKind::Unknown
                }
            }
        };
        self.phase = Phase::Closed;
        self.onchain = Some(OnChain { closing_tx: tx.clone(), kind, height, claims });
        let mut fx = self.claim_due(records, signer, events);
        if fx.update.is_none() {
            let persisted = self.persist();
            fx.update = persisted.update;
        }
        if let Some(on) = &self.onchain {
            fx.watch.extend(on.claims.iter().map(|c| Watch::Spend(c.outpoint)));
        }
        fx
    }

    /// Whether `tx` is our own commitment: its number decodes to ours and it is our latest.
    fn holder_match<S: Signer + ?Sized>(&self, tx: &Transaction, signer: &S) -> Option<u64> {
        let ours = self.holder_commitment_tx(signer).ok()?;
        (ours.compute_txid() == tx.compute_txid()).then_some(self.holder_commitment)
    }

    fn holder_claims<S: Signer + ?Sized>(
        &self,
        tx: &Transaction,
        n: u64,
        height: BlockHeight,
        signer: &S,
    ) -> Vec<Claim> {
        let mut claims = Vec::new();
        let Ok(verified) = self.holder_commitment(signer) else { return claims };
        let txid = tx.compute_txid();
        let built = verified.commitment();
        for (vout, (out, info)) in tx.output.iter().zip(built.outputs()).enumerate() {
            let outpoint = OutPoint { txid, vout: vout as u32 };
            let kind = match info.role {
                crate::core::commitment::OutputRole::ToBroadcaster => {
                    ClaimKind::HolderToLocal { n, script: built.to_local_script().clone() }
                }
                crate::core::commitment::OutputRole::Htlc(i) => {
                    let Some(position) = verified.htlc_txs().iter().position(|h| h.vout == vout as u32) else {
                        continue;
                    };
                    let view = self.view(Side::Holder);
                    let Some(&(offerer, id)) = view.ids.get(i) else { continue };
                    let cltv_expiry = built.htlcs().get(i).map_or(0, |h| h.cltv_expiry());
                    ClaimKind::HolderHtlc { position, offerer, id, cltv_expiry }
                }
                _ => continue,
            };
            claims.push(Claim { outpoint, value: out.value, kind, created: height, claim_txid: None, spent_by: None });
        }
        claims
    }

    fn to_remote_claim(&self, tx: &Transaction, height: BlockHeight) -> Option<Claim> {
        let key = self.holder.pubkeys.payment_basepoint.public_key();
        let spk = if self.channel_type.has_anchors() {
            script::to_remote_anchored(key).to_p2wsh()
        } else {
            script::to_remote_p2wpkh(key)
        };
        let vout = tx.output.iter().position(|o| o.script_pubkey == spk)?;
        Some(Claim {
            outpoint: OutPoint { txid: tx.compute_txid(), vout: vout as u32 },
            value: tx.output.get(vout)?.value,
            kind: ClaimKind::ToRemote,
            created: height,
            claim_txid: None,
            spent_by: None,
        })
    }

    fn penalty_claims(&self, tx: &Transaction, height: BlockHeight, records: &[PenaltyRecord]) -> Vec<Claim> {
        let Some(kit) = self.watchtower_kit(None, records) else { return Vec::new() };
        kit.revoked_outputs(tx, &[])
            .into_iter()
            .map(|(outpoint, value, _)| Claim {
                outpoint,
                value,
                kind: ClaimKind::Penalty,
                created: height,
                claim_txid: None,
                spent_by: None,
            })
            .collect()
    }

    fn remote_claims(
        &self,
        tx: &Transaction,
        n: u64,
        point: &bitcoin::secp256k1::PublicKey,
        height: BlockHeight,
        records: &[PenaltyRecord],
    ) -> Vec<Claim> {
        let Some(params) = self.commitment_params(Side::Counterparty) else { return Vec::new() };
        let p = PerCommitmentPoint::from_public_key(*point);
        let secp = &self.secp;
        let (Ok(rev), Ok(theirs), Ok(ours)) = (
            RevocationPubkey::derive(secp, &params.countersignatory.revocation_basepoint, &p),
            HtlcPubkey::derive(secp, &params.broadcaster.htlc_basepoint, &p),
            HtlcPubkey::derive(secp, &params.countersignatory.htlc_basepoint, &p),
        ) else {
            return Vec::new();
        };
        let anchors = self.channel_type.has_anchors();
        let txid = tx.compute_txid();
        let mut used = alloc::vec![false; tx.output.len()];
        let mut claims = Vec::new();
        for r in records.iter().cloned().chain(self.live_records()) {
            if r.first_commitment > n || r.last_commitment < n {
                continue;
            }
            let ws = match r.offerer {
                Side::Counterparty => script::offered_htlc(&rev, &theirs, &ours, &r.payment_hash, anchors),
                Side::Holder => script::received_htlc(&rev, &theirs, &ours, &r.payment_hash, r.cltv_expiry, anchors),
            };
            let spk = ws.to_p2wsh();
            let value = r.amount.to_amount_floor();
            let found =
                tx.output.iter().zip(used.iter()).position(|(o, u)| !*u && o.script_pubkey == spk && o.value == value);
            if let Some(vout) = found {
                if let Some(u) = used.get_mut(vout) {
                    *u = true;
                }
                claims.push(Claim {
                    outpoint: OutPoint { txid, vout: vout as u32 },
                    value,
                    kind: ClaimKind::RemoteHtlc {
                        n,
                        offerer: r.offerer,
                        id: r.id,
                        cltv_expiry: r.cltv_expiry,
                        script: ws,
                    },
                    created: height,
                    claim_txid: None,
                    spent_by: None,
                });
            }
        }
        claims
    }

    /// The preimage we know for the HTLC `id` offered by `offerer`, if we fulfilled it.
    pub(crate) fn known_preimage(&self, offerer: Side, id: u64) -> Option<PaymentPreimage> {
        let h = self.find_htlc(offerer, id)?;
        h.preimage().copied().or_else(|| self.preimages.iter().find(|(o, i, _)| *o == offerer && *i == id).map(|x| x.2))
    }

    /// Tells the channel a preimage learnt elsewhere (downstream) for an HTLC offered to us, so it
    /// can claim on chain.
    pub fn provide_preimage(&mut self, id: u64, preimage: PaymentPreimage) -> Effects {
        let ok = self.find_htlc(Side::Counterparty, id).is_some_and(|h| h.payment_hash.is_unlocked_by(&preimage));
        if !ok || self.preimages.iter().any(|(o, i, _)| *o == Side::Counterparty && *i == id) {
            return Effects::none();
        }
        self.preimages.push((Side::Counterparty, id, preimage));
        // If our commitment is out and unconfirmed, its request goes again with the next block
        // (`rebroadcast_commitment`), with this HTLC's deadline.
        self.persist()
    }

    /// Builds and signs every claim that is due at the current tip and not yet broadcast.
    fn claim_due<S: Signer + ?Sized>(&mut self, records: &[PenaltyRecord], signer: &S, events: Vec<Event>) -> Effects {
        let Some(on) = self.onchain.clone() else { return Effects::none() };
        let mut claimed: Vec<Claimed> = Vec::new();
        // Penalties: one transaction for everything still open on the revoked commitment, with
        // the HTLC outputs the cheater could race split off (see `fees`).
        if let ClosingKind::Revoked(_) = on.kind {
            let open: Vec<&Claim> = on
                .claims
                .iter()
                .filter(|c| c.kind == ClaimKind::Penalty && c.spent_by.is_none() && c.claim_txid.is_none())
                .collect();
            if !open.is_empty() {
                claimed.extend(self.penalty_claims_due(&on.closing_tx, on.height, &open, records, signer));
            }
        }
        let holder = if on.claims.iter().any(|c| matches!(c.kind, ClaimKind::HolderHtlc { .. })) {
            self.holder_commitment(signer).ok()
        } else {
            None
        };
        for c in on.claims.iter().filter(|c| c.spent_by.is_none() && c.claim_txid.is_none()) {
            claimed.extend(self.claim_for(c, holder.as_ref(), signer));
        }
        if claimed.is_empty() && events.is_empty() {
            return Effects::none();
        }
        if let Some(on) = self.onchain.as_mut() {
            for cl in &claimed {
                let txid = cl.tx.compute_txid();
                for op in &cl.outpoints {
                    if let Some(c) = on.claims.iter_mut().find(|c| c.outpoint == *op) {
                        c.claim_txid = Some(txid);
                    }
                }
            }
        }
        let mut fx = self.persist();
        for cl in claimed {
            fx.watch.push(Watch::Tx(cl.tx.compute_txid()));
            fx.broadcast.push(cl.tx);
            fx.bumps.extend(cl.request);
        }
        fx.events = events;
        fx
    }

    /// The claim of `c` due now (with its fee-bump request), if any; penalties are built together
    /// in `claim_due`. `holder` is our verified commitment when `c` is one of its HTLC outputs.
    fn claim_for<S: Signer + ?Sized>(
        &self,
        c: &Claim,
        holder: Option<&crate::core::commitment::signatures::VerifiedCommitment>,
        signer: &S,
    ) -> Option<Claimed> {
        let next_height = self.tip.0.saturating_add(1);
        let matured = |c: &Claim, delay: u16| next_height >= c.created.0.saturating_add(u32::from(delay));
        let delay_ours = self.counterparty.as_ref().map_or(0, |c| c.to_self_delay);
        let anchors = self.channel_type.has_anchors();
        match &c.kind {
            ClaimKind::HolderToLocal { n, script } | ClaimKind::HolderSecondStage { n, script } => {
                if !matured(c, delay_ours) {
                    return None;
                }
                self.sweep_delayed(c, *n, script, delay_ours, signer)
            }
            ClaimKind::HolderHtlc { position, offerer, id, cltv_expiry } => {
                let preimage = match offerer {
                    Side::Holder => {
                        if next_height <= *cltv_expiry {
                            return None;
                        }
                        None
                    }
                    Side::Counterparty => match self.known_preimage(Side::Counterparty, *id) {
                        Some(p) => Some(p),
                        None => return None,
                    },
                };
                if anchors && !matured(c, 1) {
                    return None;
                }
                holder
                    .as_ref()
                    .and_then(|v| self.holder_htlc_claim(v, *position, preimage.as_ref(), *cltv_expiry, signer))
                    .map(|(tx, request)| Claimed { tx, request, outpoints: alloc::vec![c.outpoint] })
            }
            ClaimKind::ToRemote => {
                if anchors && !matured(c, 1) {
                    return None;
                }
                self.sweep_to_remote(c, signer)
            }
            ClaimKind::RemoteHtlc { n, offerer, id, cltv_expiry, script } => {
                if anchors && !matured(c, 1) {
                    return None;
                }
                match offerer {
                    // Ours: take it back after expiry through their "received" script.
                    Side::Holder => {
                        if next_height <= *cltv_expiry {
                            return None;
                        }
                        self.sweep_remote_htlc(c, *n, script, None, *cltv_expiry, signer)
                    }
                    Side::Counterparty => match self.known_preimage(Side::Counterparty, *id) {
                        Some(p) => self.sweep_remote_htlc(c, *n, script, Some(&p), *cltv_expiry, signer),
                        None => None,
                    },
                }
            }
            ClaimKind::Penalty => None,
        }
    }

    /// On a new block: broadcasts again every claim of ours (sweeps, HTLC claims, penalties)
    /// that is not confirmed while its output is unspent on chain, with its fee-bump request (a
    /// [`Bumper`](crate::core::feebump::Bumper) ignores a request it tracks already). Two reasons:
    /// * the peer may have evicted an HTLC claim from the mempools with a conflicting spend that
    ///   it then replaced in turn (replacement cycling): the output is ours to take as long as
    ///   nobody's spend of it confirmed;
    /// * the embedder persists a claim before broadcasting it (docs/persistence.md §1): a crash
    ///   between the two loses the broadcast and the request, and the restored channel holds the
    ///   claim as broadcast. Nothing else would ever send it (a `to_remote` or `to_local` sweep
    ///   lost this way left the party's whole balance on chain unclaimed).
    ///
    /// Each claim is built again (the same transaction unless the sweep policy changed, in which
    /// case the new one replaces it); a penalty from the outputs its transaction claimed.
    fn rebroadcast_claims<S: Signer + ?Sized>(&mut self, records: &[PenaltyRecord], signer: &S) -> Effects {
        let Some(on) = self.onchain.clone() else { return Effects::none() };
        let pending: Vec<&Claim> =
            on.claims.iter().filter(|c| c.spent_by.is_none() && c.claim_txid.is_some()).collect();
        if pending.is_empty() {
            return Effects::none();
        }
        let holder = if pending.iter().any(|c| matches!(c.kind, ClaimKind::HolderHtlc { .. })) {
            self.holder_commitment(signer).ok()
        } else {
            None
        };
        let mut again: Vec<Claimed> = Vec::new();
        // Penalties are built together: each transaction again from the outputs it claimed.
        let mut penalties: Vec<Txid> = Vec::new();
        for c in pending.iter().filter(|c| c.kind == ClaimKind::Penalty) {
            if let Some(t) = c.claim_txid.filter(|t| !penalties.contains(t)) {
                penalties.push(t);
            }
        }
        for t in penalties {
            let group: Vec<&Claim> =
                pending.iter().copied().filter(|c| c.kind == ClaimKind::Penalty && c.claim_txid == Some(t)).collect();
            again.extend(self.penalty_claims_due(&on.closing_tx, on.height, &group, records, signer));
        }
        for c in pending.iter().filter(|c| c.kind != ClaimKind::Penalty) {
            again.extend(self.claim_for(c, holder.as_ref(), signer));
        }
        if again.is_empty() {
            return Effects::none();
        }
        if let Some(on) = self.onchain.as_mut() {
            for cl in &again {
                let txid = cl.tx.compute_txid();
                for op in &cl.outpoints {
                    if let Some(c) = on.claims.iter_mut().find(|c| c.outpoint == *op) {
                        c.claim_txid = Some(txid);
                    }
                }
            }
        }
        let mut fx = self.persist();
        for cl in again {
            fx.watch.push(Watch::Tx(cl.tx.compute_txid()));
            fx.broadcast.push(cl.tx);
            fx.bumps.extend(cl.request);
        }
        fx
    }

    /// An unconfirmed transaction spending one of our tracked outputs ([`ChainEvent::Seen`]):
    /// the preimage of an HTLC we offered, if its witness reveals it, is learnt at once
    /// ([`Event::HtlcFulfilled`], as when such a spend confirms). Nothing is marked spent: our
    /// claims stay due and are broadcast again on each block until a spend confirms.
    fn on_claim_seen(&mut self, tx: &Transaction) -> Effects {
        let Some(on) = self.onchain.as_ref() else { return Effects::none() };
        let mut learnt = Vec::new();
        for input in &tx.input {
            let Some(c) = on.claims.iter().find(|c| c.outpoint == input.previous_output && c.spent_by.is_none()) else {
                continue;
            };
            let id = match &c.kind {
                ClaimKind::HolderHtlc { offerer: Side::Holder, id, .. }
                | ClaimKind::RemoteHtlc { offerer: Side::Holder, id, .. } => *id,
                _ => continue,
            };
            let Some(h) = self.find_htlc(Side::Holder, id) else { continue };
            let Some(preimage) = h.payment_hash.find_preimage_in(&input.witness) else { continue };
            let known = self.preimages.iter().any(|(o, i, _)| *o == Side::Holder && *i == id)
                || learnt.iter().any(|(i, _, _)| *i == id);
            if !known {
                learnt.push((id, h.payment_hash, preimage));
            }
        }
        if learnt.is_empty() {
            return Effects::none();
        }
        for (id, _, preimage) in &learnt {
            self.preimages.push((Side::Holder, *id, *preimage));
        }
        let mut fx = self.persist();
        fx.events.extend(learnt.into_iter().map(|(id, payment_hash, preimage)| Event::HtlcFulfilled {
            id,
            payment_hash,
            preimage,
        }));
        fx
    }

    /// A transaction spending one of our tracked outputs confirmed.
    fn on_claim_spent<S: Signer + ?Sized>(
        &mut self,
        tx: &Transaction,
        height: BlockHeight,
        records: &[PenaltyRecord],
        signer: &S,
    ) -> Effects {
        let txid = tx.compute_txid();
        let Some(on) = self.onchain.clone() else { return Effects::none() };
        // The script our HTLC transactions pay (that of our commitment's `to_local`), and its P2WSH.
        let second_stage = if on.claims.iter().any(|c| matches!(c.kind, ClaimKind::HolderHtlc { .. })) {
            self.holder_commitment(signer).ok().map(|v| {
                let script = v.commitment().to_local_script().clone();
                let spk = script.to_p2wsh();
                (script, spk)
            })
        } else {
            None
        };
        let mut events = Vec::new();
        let mut new_claims = Vec::new();
        let destination = self.sweep_destination();
        for (index, input) in tx.input.iter().enumerate() {
            let Some(c) = on.claims.iter().find(|c| c.outpoint == input.previous_output && c.spent_by.is_none()) else {
                continue;
            };
            // Ours: the transaction we broadcast or a replacement the bumper made (it pays our
            // sweep destination); for an HTLC output of our commitment, any transaction paying our
            // delayed second-stage script at the input's index (the HTLC transaction aggregated
            // with others and fee inputs, whose peer signature is `SINGLE|ANYONECANPAY`).
            let ours = match c.kind {
                ClaimKind::HolderHtlc { .. } => tx
                    .output
                    .get(index)
                    .is_some_and(|o| second_stage.as_ref().is_some_and(|(_, spk)| o.script_pubkey == *spk)),
                _ => c.claim_txid == Some(txid) || tx.output.iter().any(|o| o.script_pubkey == destination),
            };
            // A preimage in the witness settles the HTLC we offered, whoever spent it.
            let htlc = match &c.kind {
                ClaimKind::HolderHtlc { offerer, id, .. } | ClaimKind::RemoteHtlc { offerer, id, .. } => {
                    Some((*offerer, *id))
                }
                _ => None,
            };
            if let Some((Side::Holder, id)) = htlc {
                if let Some(h) = self.find_htlc(Side::Holder, id) {
                    let known = self.preimages.iter().any(|(o, i, _)| *o == Side::Holder && *i == id);
                    if let Some(preimage) = h.payment_hash.find_preimage_in(&input.witness) {
                        if !known {
                            events.push(Event::HtlcFulfilled { id, payment_hash: h.payment_hash, preimage });
                        }
                    } else if known {
                        // Our timeout confirmed after the peer revealed the preimage in a spend
                        // that did not (`ChainEvent::Seen`): the HTLC was reported fulfilled
                        // then, and stays so; the output came back to us.
                    } else if ours || matches!(c.kind, ClaimKind::HolderHtlc { .. }) {
                        events.push(Event::HtlcFailed {
                            id,
                            payment_hash: h.payment_hash,
                            failure: HtlcFailure::OnChain,
                        });
                    }
                }
            }
            if let (ClaimKind::HolderHtlc { .. }, true) = (&c.kind, ours) {
                // Our second-stage transaction: its output is ours after the delay.
                if let (Some((script, _)), Some(out)) = (&second_stage, tx.output.get(index)) {
                    new_claims.push(Claim {
                        outpoint: OutPoint { txid, vout: index as u32 },
                        value: out.value,
                        kind: ClaimKind::HolderSecondStage { n: self.holder_commitment, script: script.clone() },
                        created: height,
                        claim_txid: None,
                        spent_by: None,
                    });
                }
            }
            if let (ClaimKind::Penalty, false) = (&c.kind, ours) {
                // The cheater took an HTLC output through its second stage: punish that too.
                // (`claim_due` below builds the penalty and its request.)
                if let Some(kit) = self.watchtower_kit(None, records) {
                    for (op, value) in kit.second_stage_outputs(&on.closing_tx, tx) {
                        if new_claims.iter().any(|c: &Claim| c.outpoint == op) {
                            continue;
                        }
                        new_claims.push(Claim {
                            outpoint: op,
                            value,
                            kind: ClaimKind::Penalty,
                            created: height,
                            claim_txid: None,
                            spent_by: None,
                        });
                    }
                }
            }
        }
        for (o, i, p) in events.iter().filter_map(|e| match e {
            Event::HtlcFulfilled { id, preimage, .. } => Some((Side::Holder, *id, *preimage)),
            _ => None,
        }) {
            self.preimages.push((o, i, p));
        }
        if let Some(on) = self.onchain.as_mut() {
            let mut invalidated = Vec::new();
            for input in &tx.input {
                if let Some(c) = on.claims.iter_mut().find(|c| c.outpoint == input.previous_output) {
                    c.spent_by = Some(txid);
                    if let Some(ours) = c.claim_txid.filter(|t| *t != txid) {
                        invalidated.push(ours);
                    }
                }
            }
            // Our transaction that also spent this output can never confirm: build the others again.
            for c in on.claims.iter_mut() {
                if c.spent_by.is_none() && c.claim_txid.is_some_and(|t| invalidated.contains(&t)) {
                    c.claim_txid = None;
                }
            }
            on.claims.extend(new_claims);
        }
        let mut fx = self.claim_due(records, signer, events);
        if fx.update.is_none() {
            let persisted = self.persist();
            fx.update = persisted.update;
        }
        if let Some(on) = &self.onchain {
            fx.watch.extend(on.claims.iter().filter(|c| c.spent_by.is_none()).map(|c| Watch::Spend(c.outpoint)));
        }
        fx
    }
}
