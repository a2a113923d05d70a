//! The duplex channel state machine: setup, payments and HTLCs. Resets are in `reset.rs`, closes
//! and chain events in `close.rs`.

use alloc::vec::Vec;

use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use bitcoin::sighash::EcdsaSighashType;
use bitcoin::{ecdsa, Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::close::{CoopClose, OnChain};
use super::leaf::{self, HtlcStatus, LeafChannel, PartyKeys};
use super::msgs::{Accept, FundingCreated, FundingSigned, Msg, Open};
use super::params::{Params, Terms};
use super::reset::ResetState;
use super::tree::{self, Digits};
use super::{peer_error, CommandError, Effects, Event, Misbehaviour, PeerError, Role};
use crate::core::funding::FundingRequest;
use crate::core::hashlock::{PaymentHash, PaymentPreimage};
use crate::core::keys::FundingPubkey;
use crate::core::script::{self, WitnessScript};
use crate::core::sign::{self, KeyId, KeyIdentity, SignRequest, Signer, SignerError, Tweak, WrongSigner};
use crate::core::units::BlockHeight;
use crate::driving::{ChainTip, ChannelId, RestoreCheck, RestoreError, StateUpdate, Watch};
use crate::spilman::payment::{PaymentError, PaymentHtlc, PaymentState, PaymentTemplate, UpdateRules, PAYOUT_POLICY};
use crate::spilman::Payment;

/// Where a channel is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Phase {
    /// (Initiator) [`Open`] sent; waiting for [`Accept`].
    AwaitingAccept,
    /// (Initiator) the acceptor's keys are known: give the unsigned funding transaction to
    /// [`Channel::fund`].
    AwaitingFunding,
    /// (Acceptor) [`Accept`] sent; waiting for [`FundingCreated`].
    AwaitingFundingCreated,
    /// (Initiator) [`FundingCreated`] sent; waiting for [`FundingSigned`].
    AwaitingFundingSigned,
    /// Both parties hold the signed path: payments, HTLCs, resets.
    Open,
    /// A cooperative close was signed.
    CoopClosing,
    /// The tree is being published.
    ForceClosing,
    /// Closed on chain (HTLC outputs may still be pending).
    Closed,
}

/// The split of the channel value, as the holder sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Balances {
    /// What the holder owns outright.
    pub holder: Amount,
    /// What the counterparty owns outright.
    pub counterparty: Amount,
    /// Pending HTLCs offered by the holder.
    pub offered: Amount,
    /// Pending HTLCs offered to the holder.
    pub received: Amount,
}

impl Balances {
    /// The sum of all four: the channel value (constant over the channel's life).
    pub fn total(&self) -> Option<Amount> {
        self.holder.checked_add(self.counterparty)?.checked_add(self.offered)?.checked_add(self.received)
    }
}

/// A duplex channel, as one of its two parties runs it.
///
/// # Driving
/// * Open: the initiator calls [`Channel::open`] and sends the [`Open`]; the acceptor's embedder
///   checks its terms and calls [`Channel::accept`]. On [`Accept`] the initiator's effects carry
///   a [`FundingRequest`] ([`Effects::funding`](crate::driving::Effects::funding)): its wallet
///   builds and signs a funding transaction paying it (native segwit inputs only) and gives it to
///   [`Channel::fund`] (the crate's one funding flow, [`crate::core::funding`]). The signatures on
///   the first branch and the kickoff are exchanged; once both parties hold the whole signed path
///   the channel broadcasts the funding transaction ([`Event::FundingSignable`] comes with it).
/// * Pay with [`Channel::pay`] and [`Channel::add_htlc`] once the funding transaction is
///   [`Terms::funding_depth`]` + 1` deep ([`Channel::sends_from`]); a party counts incoming
///   payments from `funding_depth` ([`Channel::receives_from`]): one block of slack for tips
///   that differ (docs/duplex.md §4, "Funding depth"). The receiver answers HTLCs with
///   [`Channel::fulfill_htlc`] or [`Channel::fail_htlc`].
/// * [`Channel::reset`] re-balances the two leaf channels (both parties must be online and
///   quiescent); [`Channel::close`] closes cooperatively; [`Channel::force_close`] publishes the
///   tree.
/// * Feed every peer message to [`Channel::handle_message`] and every chain event to
///   [`Channel::handle_chain`] (confirmations of the funding transaction, of anything spending a
///   watched outpoint, and every new tip; see [`crate::driving`] for ordering).
///
/// Every call returns [`Effects`]: persist `update` before anything else. A refused call returns
/// a typed error and leaves the channel (and its snapshot) unchanged.
#[derive(Clone, Debug)]
pub struct Channel {
    pub(super) role: Role,
    pub(super) terms: Terms,
    pub(super) holder_keys: PartyKeys,
    /// Both parties' keys, by role, once known.
    pub(super) keys: Option<[PartyKeys; 2]>,
    pub(super) phase: Phase,
    pub(super) funding: Option<OutPoint>,
    /// (Initiator) the wallet's funding transaction, from [`Channel::fund`] until it is
    /// broadcast (with [`FundingSigned`]).
    pub(super) funding_tx: Option<Transaction>,
    pub(super) funding_height: Option<BlockHeight>,
    /// The counterparty's signature on the kickoff.
    pub(super) kickoff_sig: Option<ecdsa::Signature>,
    /// Current counter digits.
    pub(super) digits: Digits,
    /// The counterparty's signatures on `N_1 … N_d` of the current branch (index `j − 1`).
    pub(super) node_sigs: Vec<ecdsa::Signature>,
    /// The leaf channels' values, by payer role.
    pub(super) values: [Amount; 2],
    /// The leaf channels, by payer role.
    pub(super) channels: [LeafChannel; 2],
    /// The highest counter value any signature was released for, and the leaf signed under it.
    pub(super) reserved: Option<(Digits, Txid)>,
    pub(super) reset: ResetState,
    pub(super) coop: Option<CoopClose>,
    /// We released our signature on a cooperative close at some point (a proposal, possibly
    /// withdrawn since): the least any such close pays us. The counterparty may hold it and
    /// publish it while the funding output is unspent, so an HTLC offered to us from then on is
    /// not enforceable (we fail it at once), and what we were paid since is not final.
    pub(super) close_released: Option<Amount>,
    /// The cooperative closes we signed and withdrew (`spend`, txid): the counterparty may still
    /// complete and publish one, and its confirmation closes the channel.
    pub(super) withdrawn_closes: Vec<(u8, Txid)>,
    /// (Payer) HTLCs of our own leaf channel that we withdrew from an unacknowledged payment on
    /// reconnection (the payee said it did not hold it): a payee that did receive it can still
    /// publish that payment, so until the leaf is superseded (a completed reset, a cooperative
    /// close) their amount stays out of what we may pay, and their failure is not final.
    pub(super) withdrawn: Vec<PaymentHtlc>,
    pub(super) chain: OnChain,
    pub(super) tip: BlockHeight,
    pub(super) update_id: u64,
    /// A [`Reestablish`](super::Reestablish) showed our data older than what we signed.
    pub(super) lost_state: bool,
    /// What identifies the holder's keys (`None` if restored from a version-2 snapshot).
    pub(super) key_identity: Option<KeyIdentity>,
    /// Scripts and the current branch, derived from the above (not persisted; rebuilt on
    /// restore).
    pub(super) derived: Derived,
    pub(super) secp: Secp256k1<VerifyOnly>,
    /// The funding-depth rule switched off ([`Channel::sabotage_funding_depth`]; not persisted).
    #[cfg(feature = "test-utils")]
    pub(super) depth_rule_off: bool,
}

/// Values derived from the keys, terms, funding outpoint, digits and leaf values, cached because
/// every payment and reset needs them.
#[derive(Clone, Debug, Default)]
pub(super) struct Derived {
    /// The 2-of-2 script of every tree output (and of the funding output).
    pub node_ws: Option<WitnessScript>,
    /// Its P2WSH scriptPubKey.
    pub node_spk: ScriptBuf,
    /// The leaf channels' scriptPubKeys, by payer role.
    pub leaf_spks: [ScriptBuf; 2],
    /// Value of each tree transaction's 2-of-2 output, by level (0 = kickoff).
    pub node_values: Vec<Amount>,
    /// The current branch, unsigned (index 0 = kickoff), and its txids.
    pub branch: BuiltBranch,
}

/// An unsigned branch and the txid of each of its transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct BuiltBranch {
    /// Index 0 = kickoff, `j` = `N_j`.
    pub txs: Vec<Transaction>,
    pub txids: Vec<Txid>,
}

impl BuiltBranch {
    pub fn leaf_txid(&self) -> Option<Txid> {
        self.txids.last().copied()
    }
}

impl PartialEq for Channel {
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

impl Channel {
    fn blank(
        role: Role,
        terms: Terms,
        holder_keys: PartyKeys,
        key_identity: KeyIdentity,
        tip: ChainTip,
    ) -> Option<Self> {
        let value = terms.channel_value();
        let values = [value.checked_sub(terms.push)?, terms.push];
        Some(Channel {
            role,
            digits: tree::first(&terms.params),
            terms,
            holder_keys,
            keys: None,
            phase: Phase::AwaitingAccept,
            funding: None,
            funding_tx: None,
            funding_height: None,
            kickoff_sig: None,
            node_sigs: Vec::new(),
            values,
            channels: [LeafChannel::new(), LeafChannel::new()],
            reserved: None,
            reset: ResetState::Idle,
            coop: None,
            close_released: None,
            withdrawn_closes: Vec::new(),
            withdrawn: Vec::new(),
            chain: OnChain::default(),
            tip: tip.height,
            update_id: 0,
            lost_state: false,
            key_identity: Some(key_identity),
            derived: Derived::default(),
            secp: Secp256k1::verification_only(),
            #[cfg(feature = "test-utils")]
            depth_rule_off: false,
        })
    }

    fn own_keys<S: Signer + ?Sized>(signer: &S, payout_script: ScriptBuf) -> PartyKeys {
        let k = signer.pubkeys();
        PartyKeys { funding: *k.funding.public_key(), htlc: *k.htlc_basepoint.public_key(), payout: payout_script }
    }

    /// Opens a channel as initiator with these terms; returns the [`Open`] to send.
    /// `payout_script` must be a standard payout script (the Spilman leaves' rule,
    /// [`PAYOUT_POLICY`](crate::spilman::payment::PAYOUT_POLICY)).
    ///
    /// # Errors
    /// [`CommandError::BadTerms`] if the terms are inconsistent; [`CommandError::NonStandardScript`]
    /// if `payout_script` is not standard (no node would relay a leaf or close paying it).
    pub fn open<S: Signer + ?Sized>(
        terms: Terms,
        payout_script: ScriptBuf,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(Self, Effects), CommandError> {
        terms.validate().map_err(CommandError::BadTerms)?;
        if !PAYOUT_POLICY.allows(&payout_script) {
            return Err(CommandError::NonStandardScript);
        }
        let keys = Self::own_keys(signer, payout_script);
        let mut ch = Self::blank(Role::Initiator, terms, keys, KeyIdentity::of(signer), tip)
            .ok_or(CommandError::InvalidAmount)?;
        let mut fx = ch.persist();
        fx.send.push(Msg::Open(Open {
            terms: ch.terms.clone(),
            funding_key: ch.holder_keys.funding,
            htlc_key: ch.holder_keys.htlc,
            payout_script: ch.holder_keys.payout.clone(),
        }));
        Ok((ch, fx))
    }

    /// Accepts an [`Open`] as acceptor; returns the [`Accept`] to send. The embedder decides
    /// beforehand whether the terms suit it (capacity, push, fees, tree shape, HTLC policy).
    ///
    /// # Errors
    /// [`Misbehaviour::BadTerms`] if the terms are inconsistent; [`Misbehaviour::NonStandardScript`]
    /// if the initiator's payout script is not a standard payout script
    /// ([`PAYOUT_POLICY`](crate::spilman::payment::PAYOUT_POLICY)); [`Misbehaviour::OwnNonStandardScript`]
    /// if ours (`payout_script`) is not (nothing to tell the peer: the refusal is ours).
    pub fn accept<S: Signer + ?Sized>(
        open: Open,
        payout_script: ScriptBuf,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(Self, Effects), PeerError> {
        open.terms.validate().map_err(|e| peer_error(Misbehaviour::BadTerms(e)))?;
        if !PAYOUT_POLICY.allows(&open.payout_script) {
            return Err(peer_error(Misbehaviour::NonStandardScript));
        }
        if !PAYOUT_POLICY.allows(&payout_script) {
            return Err(peer_error(Misbehaviour::OwnNonStandardScript));
        }
        let holder = Self::own_keys(signer, payout_script);
        let initiator = PartyKeys { funding: open.funding_key, htlc: open.htlc_key, payout: open.payout_script };
        if initiator.funding == holder.funding {
            return Err(peer_error(Misbehaviour::WrongFunding));
        }
        let mut ch = Self::blank(Role::Acceptor, open.terms, holder.clone(), KeyIdentity::of(signer), tip)
            .ok_or(peer_error(Misbehaviour::BadTerms(super::TermsError::Capacity)))?;
        ch.keys = Some([initiator, holder]);
        ch.refresh_scripts();
        ch.phase = Phase::AwaitingFundingCreated;
        let mut fx = ch.persist();
        fx.send.push(Msg::Accept(Accept {
            funding_key: ch.holder_keys.funding,
            htlc_key: ch.holder_keys.htlc,
            payout_script: ch.holder_keys.payout.clone(),
        }));
        Ok((ch, fx))
    }

    // ------------------------------------------------------------------ getters

    /// Which side this party is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The agreed terms.
    pub fn terms(&self) -> &Terms {
        &self.terms
    }

    /// The tree parameters.
    pub fn params(&self) -> &Params {
        &self.terms.params
    }

    /// Where the channel is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current counter digits (level 1 first).
    pub fn digits(&self) -> &[u16] {
        &self.digits
    }

    /// Resets left before the counter is exhausted.
    pub fn resets_left(&self) -> u64 {
        let used = match &self.reserved {
            Some((r, _)) if tree::compare(r, &self.digits).is_gt() => r.as_slice(),
            _ => self.digits.as_slice(),
        };
        tree::resets_left(&self.terms.params, used)
    }

    /// The funding outpoint, once known.
    pub fn funding_outpoint(&self) -> Option<OutPoint> {
        self.funding
    }

    /// Confirmations of the funding transaction at `tip` on the holder's view of the chain: 0
    /// while unconfirmed (or un-confirmed by a reorg), 1 in the block that confirmed it.
    pub fn funding_confirmations(&self, tip: ChainTip) -> u32 {
        self.funding_height.map_or(0, |h| tip.height.0.checked_sub(h.0).map_or(0, |d| d.saturating_add(1)))
    }

    /// The tip height from which the holder counts incoming payments and HTLCs: the funding
    /// transaction has [`Terms::funding_depth`] confirmations (`n`). `None` while it is
    /// unconfirmed.
    pub fn receives_from(&self) -> Option<BlockHeight> {
        let depth = u32::from(self.terms.funding_depth);
        self.funding_height?.checked_add(depth.saturating_sub(1))
    }

    /// The tip height from which the holder sends payments and HTLCs ([`Channel::pay`],
    /// [`Channel::add_htlc`]): one block after [`Channel::receives_from`] (`n + 1`
    /// confirmations), so a counterparty whose tip is one block behind ours counts them too.
    /// `None` while the funding is unconfirmed.
    pub fn sends_from(&self) -> Option<BlockHeight> {
        self.funding_height?.checked_add(u32::from(self.terms.funding_depth))
    }

    /// (Tests only, feature `test-utils`) switches the funding-depth rule off for this channel
    /// object, both halves (not persisted: a restored channel has it again). The sabotage that
    /// shows the tests of the rule can fail (`tests/duplex_depth.rs`); never in production.
    #[cfg(feature = "test-utils")]
    pub fn sabotage_funding_depth(&mut self) {
        self.depth_rule_off = true;
    }

    /// The channel id, once the funding outpoint is known.
    pub fn channel_id(&self) -> Option<ChannelId> {
        self.funding.as_ref().map(ChannelId::from_funding)
    }

    /// The last update id handed out.
    pub fn update_id(&self) -> u64 {
        self.update_id
    }

    /// The current balances.
    pub fn balances(&self) -> Balances {
        let raw = leaf::balances(self.values, [&self.channels[0].state, &self.channels[1].state]).unwrap_or_default();
        let (h, c) = (self.role.index(), (!self.role).index());
        Balances { holder: raw.own[h], counterparty: raw.own[c], offered: raw.offered[h], received: raw.offered[c] }
    }

    /// The value of the leaf channel paid by `payer`.
    pub fn leaf_value(&self, payer: Role) -> Amount {
        self.values[payer.index()]
    }

    /// The newest payment state of the leaf channel paid by `payer` (what its payee can publish).
    pub fn leaf_state(&self, payer: Role) -> &PaymentState {
        &self.channels[payer.index()].state
    }

    /// What the holder can still pay in its own leaf channel without a reset.
    pub fn available(&self) -> Amount {
        let i = self.role.index();
        let ch = &self.channels[i];
        self.values[i]
            .checked_sub(ch.state.to_payee)
            .and_then(|v| v.checked_sub(ch.state.htlc_total()?))
            .and_then(|v| v.checked_sub(self.withdrawn_total()?))
            .unwrap_or(Amount::ZERO)
    }

    /// The least that a cooperative close the holder signed pays it, if it ever proposed one
    /// ([`Channel::close`]) that the counterparty may still hold (a withdrawn proposal,
    /// [`Event::CloseWithdrawn`], is one: the counterparty can complete and publish it while the
    /// funding output is unspent). Payments received since are not final beyond this amount:
    /// the holder may end with as little as `min(balances().holder, this)`, so do not deliver
    /// against them before the channel closes. HTLCs offered to the holder from then on are
    /// failed at once (no such close pays them).
    pub fn released_close_floor(&self) -> Option<Amount> {
        self.close_released
    }

    /// The total of the HTLCs we withdrew that a payment the payee may still hold carries.
    pub(super) fn withdrawn_total(&self) -> Option<Amount> {
        self.withdrawn.iter().try_fold(Amount::ZERO, |acc, h| acc.checked_add(h.amount))
    }

    /// HTLCs the holder offered and withdrew from an unacknowledged payment on reconnection
    /// (the counterparty's [`Reestablish`](super::Reestablish) showed it did not hold that
    /// payment): [`Event::HtlcFailed`] was given for each, and their failure becomes final
    /// ([`Event::HtlcFailIrrevocable`]) once the leaf is superseded (a completed reset, or a
    /// cooperative close). Until then their amount is not part of [`Channel::available`].
    pub fn withdrawn_htlcs(&self) -> &[PaymentHtlc] {
        &self.withdrawn
    }

    /// Pending HTLCs: `(offerer, htlc)`.
    pub fn htlcs(&self) -> Vec<(Role, PaymentHtlc)> {
        let mut out = Vec::new();
        for payer in [Role::Initiator, Role::Acceptor] {
            out.extend(self.channels[payer.index()].state.htlcs.iter().map(|h| (payer, *h)));
        }
        out
    }

    /// The id the holder's next HTLC will carry (ids increase from 0 in each leaf channel, across
    /// resets).
    pub fn next_htlc_id(&self) -> u64 {
        self.channels[self.role.index()].next_htlc_id
    }

    /// Whether an HTLC the holder offered was failed by the receiver and waits for a reset to
    /// drop it (its failure is irrevocable only then: [`Event::HtlcFailIrrevocable`]).
    pub fn has_failed_htlcs(&self) -> bool {
        self.channels[self.role.index()].status.iter().any(|(_, s)| matches!(s, HtlcStatus::Failed))
    }

    /// Whether a reset is in progress.
    pub fn is_resetting(&self) -> bool {
        !matches!(self.reset, ResetState::Idle)
    }

    /// The output the funding transaction must create: P2WSH of the 2-of-2 of both funding keys,
    /// `capacity` sats. `None` until the acceptor's keys are known.
    pub fn funding_output(&self) -> Option<TxOut> {
        self.node_script()?;
        Some(TxOut { value: self.terms.capacity, script_pubkey: self.derived.node_spk.clone() })
    }

    /// (Initiator) what the wallet must fund, while the channel waits for its funding
    /// transaction (after [`Accept`]; `None` before and once [`Channel::fund`] took one).
    pub fn funding_request(&self) -> Option<FundingRequest> {
        if self.phase != Phase::AwaitingFunding || self.role != Role::Initiator {
            return None;
        }
        Some(FundingRequest::new(self.funding_output()?, self.temporary_channel_id()))
    }

    // ------------------------------------------------------------------ tree helpers

    pub(super) fn node_script(&self) -> Option<&WitnessScript> {
        self.derived.node_ws.as_ref()
    }

    /// Recomputes the derived scripts; call once both parties' keys are known.
    pub(super) fn refresh_scripts(&mut self) {
        let Some(k) = self.keys.as_ref() else { return };
        let ws = script::funding(
            &FundingPubkey::from_public_key(k[0].funding),
            &FundingPubkey::from_public_key(k[1].funding),
        );
        let delay = self.terms.params.refund_delay();
        self.derived.node_spk = ws.to_p2wsh();
        self.derived.node_ws = Some(ws);
        self.derived.leaf_spks =
            [leaf::channel_spk(k, Role::Initiator, delay), leaf::channel_spk(k, Role::Acceptor, delay)];
        // Tree transactions pay no fee: every 2-of-2 output carries the whole capacity.
        self.derived.node_values = alloc::vec![self.terms.channel_value(); self.terms.params.depth()];
    }

    /// Rebuilds the cached current branch from scratch (after the funding outpoint is known, or
    /// on restore).
    pub(super) fn refresh_branch(&mut self) {
        self.derived.branch = self.build_from(0, &self.digits, self.values).unwrap_or_default();
    }

    /// The value spent by the tree transaction at `level` (0 = kickoff).
    pub(super) fn tree_input_value(&self, level: usize) -> Option<Amount> {
        if level == 0 {
            Some(self.terms.capacity)
        } else {
            self.derived.node_values.get(level - 1).copied()
        }
    }

    /// The unsigned branch for `digits` with leaf channel values `values`. Transactions the
    /// current branch shares (the kickoff, and every node above the first level whose digit
    /// differs) are taken from the cache; only the new ones are built and hashed.
    pub(super) fn build_path(&self, digits: &[u16], values: [Amount; 2]) -> Option<BuiltBranch> {
        let d = self.terms.params.depth();
        let cached = self.derived.branch.txs.len() == d + 1 && self.digits.len() == d;
        let shared = if cached { tree::first_difference(digits, &self.digits).unwrap_or(d).min(d) } else { 0 };
        self.build_from(shared, digits, values)
    }

    /// Builds the branch, reusing the cached current branch below level `shared`.
    fn build_from(&self, shared: usize, digits: &[u16], values: [Amount; 2]) -> Option<BuiltBranch> {
        let params = &self.terms.params;
        let d = params.depth();
        if !tree::is_valid(params, digits) || self.derived.node_values.len() != d {
            return None;
        }
        let mut txs = Vec::with_capacity(d + 1);
        let mut txids = Vec::with_capacity(d + 1);
        for level in 0..shared.max(1) {
            if level < shared {
                txs.push(self.derived.branch.txs.get(level)?.clone());
                txids.push(*self.derived.branch.txids.get(level)?);
            }
        }
        if shared == 0 {
            let k = tree::kickoff_tx(self.funding?, *self.derived.node_values.first()?, &self.derived.node_spk);
            txids.push(k.compute_txid());
            txs.push(k);
        }
        for level in shared.max(1)..=d {
            let parent = OutPoint { txid: *txids.last()?, vout: 0 };
            let lock = params.lock(level, u32::from(*digits.get(level - 1)?))?;
            let tx = if level == d {
                let [ab, ba] = &self.derived.leaf_spks;
                tree::leaf_tx(parent, lock, tree::leaf_outputs(values[0], values[1], ab, ba))
            } else {
                tree::node_tx(parent, lock, *self.derived.node_values.get(level)?, &self.derived.node_spk)
            };
            txids.push(tx.compute_txid());
            txs.push(tx);
        }
        Some(BuiltBranch { txs, txids })
    }

    /// The current branch, unsigned: index 0 is the kickoff, index `j` is `N_j`.
    pub fn current_branch(&self) -> Option<Vec<Transaction>> {
        (!self.derived.branch.txs.is_empty()).then(|| self.derived.branch.txs.clone())
    }

    pub(super) fn current_leaf_txid(&self) -> Option<Txid> {
        self.derived.branch.leaf_txid()
    }

    /// The template of the leaf channel paid by `payer` in the current leaf.
    pub fn template(&self, payer: Role) -> Option<PaymentTemplate> {
        let leaf = self.current_leaf_txid()?;
        leaf::leaf_template(&self.terms, self.keys.as_ref()?, payer, leaf, self.values)
    }

    pub(super) fn sign_tree<S: Signer + ?Sized>(
        &self,
        signer: &S,
        tx: &Transaction,
        level: usize,
    ) -> Result<ecdsa::Signature, SignerError> {
        let ws = self.node_script().ok_or(SignerError::Sighash)?;
        let value = self.tree_input_value(level).ok_or(SignerError::Sighash)?;
        signer.sign(&SignRequest {
            tx,
            input: 0,
            script_code: ws.as_script(),
            p2wpkh: false,
            value,
            sighash_type: EcdsaSighashType::All,
            key: KeyId::Funding,
            tweak: Tweak::None,
        })
    }

    /// Checks the counterparty's signature on the tree transaction at `level`.
    pub(super) fn verify_tree(&self, tx: &Transaction, level: usize, sig: &ecdsa::Signature) -> Result<(), PeerError> {
        let key = self.counterparty_keys().map(|k| k.funding);
        self.verify_tree_by(tx, level, sig, key)
    }

    /// Checks `key`'s signature on the tree transaction at `level`.
    pub(super) fn verify_tree_by(
        &self,
        tx: &Transaction,
        level: usize,
        sig: &ecdsa::Signature,
        key: Option<bitcoin::secp256k1::PublicKey>,
    ) -> Result<(), PeerError> {
        let bad = || peer_error(Misbehaviour::NodeSignature { level });
        let ws = self.node_script().ok_or_else(bad)?;
        let value = self.tree_input_value(level).ok_or_else(bad)?;
        let key = key.ok_or_else(bad)?;
        let msg = sign::p2wsh_sighash(tx, 0, ws.as_script(), value, EcdsaSighashType::All).map_err(|_| bad())?;
        let _valid = sign::verify(&self.secp, &msg, sig, &key, EcdsaSighashType::All).map_err(|_| bad())?;
        Ok(())
    }

    /// Puts both signatures on a tree transaction (or a cooperative close spending a 2-of-2).
    pub(super) fn complete_2of2(
        &self,
        mut tx: Transaction,
        ours: &ecdsa::Signature,
        theirs: &ecdsa::Signature,
    ) -> Transaction {
        let (Some(ws), Some(cp)) = (self.node_script(), self.counterparty_keys()) else { return tx };
        let w = script::funding_witness(
            ws,
            (&FundingPubkey::from_public_key(self.holder_keys.funding), ours),
            (&FundingPubkey::from_public_key(cp.funding), theirs),
        );
        if let Some(input) = tx.input.first_mut() {
            input.witness = w;
        }
        tx
    }

    pub(super) fn counterparty_keys(&self) -> Option<&PartyKeys> {
        self.keys.as_ref()?.get((!self.role).index())
    }

    /// The fully signed kickoff and current branch (index 0 = kickoff, `j` = `N_j`): what a
    /// unilateral close publishes, level by level.
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] before the path is signed; [`CommandError::Signer`];
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    pub fn signed_branch<S: Signer + ?Sized>(&self, signer: &S) -> Result<Vec<Transaction>, CommandError> {
        self.check_signer(signer)?;
        let path = self.current_branch().ok_or(CommandError::WrongPhase)?;
        let kick = self.kickoff_sig.as_ref().ok_or(CommandError::WrongPhase)?;
        let mut out = Vec::with_capacity(path.len());
        for (level, tx) in path.into_iter().enumerate() {
            let theirs =
                if level == 0 { kick } else { self.node_sigs.get(level - 1).ok_or(CommandError::WrongPhase)? };
            let ours = self.sign_tree(signer, &tx, level)?;
            out.push(self.complete_2of2(tx, &ours, theirs));
        }
        Ok(out)
    }

    /// Checks that `signer` is the one this channel was opened with: its funding and HTLC base
    /// public keys are the holder's keys in the channel. Every call that signs makes this check
    /// first and refuses a wrong signer with nothing changed.
    ///
    /// # Errors
    /// [`WrongSigner`] naming the first key that differs.
    pub fn check_signer<S: Signer + ?Sized>(&self, signer: &S) -> Result<(), WrongSigner> {
        let k = &self.holder_keys;
        sign::check_signer(signer, &[(KeyId::Funding, &k.funding), (KeyId::Htlc, &k.htlc)])
    }

    // ------------------------------------------------------------------ persistence

    pub(super) fn persist(&mut self) -> Effects {
        self.update_id += 1;
        let mut fx = Effects::none();
        fx.update = Some(StateUpdate::snapshot(self.update_id, self.snapshot()));
        fx.next_deadline = self.next_deadline();
        fx
    }

    /// Encodes the full state (see [`Channel::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        super::snapshot::encode(self)
    }

    /// Restores a channel from [`Channel::snapshot`] bytes, checking it against `check`.
    ///
    /// # Errors
    /// [`RestoreError`] if the bytes are invalid, of another channel, or stale.
    pub fn restore(bytes: &[u8], check: RestoreCheck) -> Result<Self, RestoreError> {
        let ch = super::snapshot::decode(bytes)?;
        check.check(ch.channel_id(), ch.update_id)?;
        Ok(ch)
    }

    /// [`Channel::restore`], refusing a `signer` that does not hold the holder's keys (the one
    /// to recreate is named by [`Channel::key_identity`] of the restored channel).
    ///
    /// # Errors
    /// As [`Channel::restore`]; [`RestoreError::WrongSigner`] for another signer.
    pub fn restore_with_signer<S: Signer + ?Sized>(
        bytes: &[u8],
        check: RestoreCheck,
        signer: &S,
    ) -> Result<Self, RestoreError> {
        let ch = Self::restore(bytes, check)?;
        KeyIdentity::check_restored(ch.key_identity, ch.check_signer(signer), signer)?;
        Ok(ch)
    }

    /// What identifies the holder's keys, recorded in its snapshots: the key index its signer
    /// told ([`Signer::key_index`]) and the fingerprint of its public keys. `None` for a
    /// channel restored from a version-2 snapshot.
    pub fn key_identity(&self) -> Option<KeyIdentity> {
        self.key_identity
    }

    // ------------------------------------------------------------------ setup

    /// (Initiator) takes the wallet's **signed** funding transaction (the crate's one funding
    /// flow, [`crate::core::funding`]: the same call in every layer), signs the first branch and
    /// the kickoff, and sends them with the funding outpoint (not the transaction). The channel
    /// broadcasts the funding transaction itself once the acceptor's signatures on the whole
    /// branch arrive ([`FundingSigned`]; [`Event::FundingSignable`] comes with it), not before:
    /// do not broadcast it yourself.
    ///
    /// # Errors
    /// [`CommandError::WrongPhase`] unless [`Channel::funding_request`] asks for one;
    /// [`CommandError::NoFundingOutput`] unless exactly one output pays [`Channel::funding_output`];
    /// [`CommandError::MalleableFunding`] if an input carries a `scriptSig`;
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    /// The channel is unchanged.
    pub fn fund<S: Signer + ?Sized>(&mut self, funding_tx: Transaction, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        let request = self.funding_request().ok_or(CommandError::WrongPhase)?;
        let outpoint = request.check(&funding_tx)?;
        let mut next = self.clone();
        next.funding = Some(outpoint);
        next.funding_tx = Some(funding_tx);
        next.refresh_branch();
        let (node_sigs, kickoff_sig) = next.sign_first_path(signer)?;
        next.phase = Phase::AwaitingFundingSigned;
        *self = next;
        let mut fx = self.persist();
        fx.send.push(Msg::FundingCreated(FundingCreated { funding_outpoint: outpoint, node_sigs, kickoff_sig }));
        Ok(fx)
    }

    /// Signs `N_d … N_1` then `K` of the first branch.
    fn sign_first_path<S: Signer + ?Sized>(
        &self,
        signer: &S,
    ) -> Result<(Vec<ecdsa::Signature>, ecdsa::Signature), CommandError> {
        let path = self.current_branch().ok_or(CommandError::WrongPhase)?;
        let mut sigs = Vec::with_capacity(path.len());
        for level in (1..path.len()).rev() {
            let tx = path.get(level).ok_or(CommandError::WrongPhase)?;
            sigs.push(self.sign_tree(signer, tx, level)?);
        }
        let kick = self.sign_tree(signer, path.first().ok_or(CommandError::WrongPhase)?, 0)?;
        Ok((sigs, kick))
    }

    /// Verifies the counterparty's bottom-up signatures on the first branch and the kickoff;
    /// returns them in level order (`N_1` first).
    fn verify_first_path(
        &self,
        node_sigs: &[ecdsa::Signature],
        kickoff_sig: &ecdsa::Signature,
    ) -> Result<Vec<ecdsa::Signature>, PeerError> {
        let path = self.current_branch().ok_or(peer_error(Misbehaviour::WrongFunding))?;
        let d = self.terms.params.depth();
        if node_sigs.len() != d {
            return Err(peer_error(Misbehaviour::SignatureCount));
        }
        // node_sigs[0] is N_d.
        for (i, sig) in node_sigs.iter().enumerate() {
            let level = d - i;
            let tx = path.get(level).ok_or(peer_error(Misbehaviour::SignatureCount))?;
            self.verify_tree(tx, level, sig)?;
        }
        self.verify_tree(path.first().ok_or(peer_error(Misbehaviour::SignatureCount))?, 0, kickoff_sig)?;
        Ok(node_sigs.iter().rev().copied().collect())
    }

    fn watch_funding(&self, fx: &mut Effects) {
        if let Some(f) = self.funding {
            fx.watch.push(Watch::Tx(f.txid));
            fx.watch.push(Watch::Spend(f));
        }
    }

    fn on_accept(&mut self, a: Accept) -> Result<Effects, PeerError> {
        if self.phase != Phase::AwaitingAccept {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if a.funding_key == self.holder_keys.funding {
            return Err(peer_error(Misbehaviour::WrongFunding));
        }
        if !PAYOUT_POLICY.allows(&a.payout_script) {
            return Err(peer_error(Misbehaviour::NonStandardScript));
        }
        let acceptor = PartyKeys { funding: a.funding_key, htlc: a.htlc_key, payout: a.payout_script };
        self.keys = Some([self.holder_keys.clone(), acceptor]);
        self.refresh_scripts();
        self.phase = Phase::AwaitingFunding;
        let mut fx = self.persist();
        fx.funding = self.funding_request();
        Ok(fx)
    }

    fn on_funding_created<S: Signer + ?Sized>(&mut self, f: FundingCreated, signer: &S) -> Result<Effects, PeerError> {
        if self.phase != Phase::AwaitingFundingCreated {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let mut next = self.clone();
        next.funding = Some(f.funding_outpoint);
        next.refresh_branch();
        let theirs = next.verify_first_path(&f.node_sigs, &f.kickoff_sig)?;
        let (node_sigs, kickoff_sig) = next.sign_first_path(signer).map_err(|e| match e {
            CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
            _ => peer_error(Misbehaviour::WrongFunding),
        })?;
        next.node_sigs = theirs;
        next.kickoff_sig = Some(f.kickoff_sig);
        next.phase = Phase::Open;
        *self = next;
        let mut fx = self.persist();
        fx.send.push(Msg::FundingSigned(FundingSigned { node_sigs, kickoff_sig }));
        self.watch_funding(&mut fx);
        fx.events.push(Event::ChannelReady);
        Ok(fx)
    }

    fn on_funding_signed(&mut self, f: FundingSigned) -> Result<Effects, PeerError> {
        if self.phase != Phase::AwaitingFundingSigned {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let theirs = self.verify_first_path(&f.node_sigs, &f.kickoff_sig)?;
        self.node_sigs = theirs;
        self.kickoff_sig = Some(f.kickoff_sig);
        self.phase = Phase::Open;
        let funding_tx = self.funding_tx.take();
        let mut fx = self.persist();
        fx.broadcast.extend(funding_tx);
        self.watch_funding(&mut fx);
        if let Some(outpoint) = self.funding {
            fx.events.push(Event::FundingSignable { txid: outpoint.txid });
        }
        fx.events.push(Event::ChannelReady);
        Ok(fx)
    }

    // ------------------------------------------------------------------ messages

    /// Handles a message from the counterparty. On error nothing changed.
    ///
    /// # Errors
    /// [`PeerError`] describing the misbehaviour and what to do about it;
    /// [`Misbehaviour::WrongSigner`] (not the peer's fault,
    /// [`Action::Ignore`](crate::driving::Action::Ignore)) if `signer` is not the channel's: feed
    /// the message again with the right one.
    pub fn handle_message<S: Signer + ?Sized>(
        &mut self,
        msg: Msg,
        signer: &S,
        tip: ChainTip,
    ) -> Result<Effects, PeerError> {
        self.check_signer(signer)?;
        if self.lost_state && !matches!(msg, Msg::Reestablish(_)) {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        match msg {
            Msg::Accept(a) => self.on_accept(a),
            Msg::FundingCreated(f) => self.on_funding_created(f, signer),
            Msg::FundingSigned(f) => self.on_funding_signed(f),
            Msg::Payment(p) => self.on_payment(p, tip),
            Msg::Ack { number } => self.on_ack(number),
            Msg::Fulfill { id, preimage } => self.on_fulfill(id, preimage, signer),
            Msg::Fail { id } => self.on_fail(id),
            Msg::ResetPropose(p) => self.on_reset_propose(p, signer, tip),
            Msg::ResetAccept(a) => self.on_reset_accept(a, signer),
            Msg::ResetFinish(f) => self.on_reset_finish(f, signer),
            Msg::CloseProposal(c) => self.on_close_proposal(c, signer),
            Msg::CloseSigned(c) => self.on_close_signed(c, signer),
            Msg::Reestablish(r) => self.on_reestablish(r, signer, tip),
            Msg::Open(_) => Err(peer_error(Misbehaviour::UnexpectedMessage)),
        }
    }

    // ------------------------------------------------------------------ payments

    /// The expiry window for new HTLCs at `tip` (docs/multihop.md §2): from `tip + E_in + R` to
    /// `tip + max_htlc_expiry_delta`.
    pub fn htlc_expiry_window(&self, tip: ChainTip) -> (Option<BlockHeight>, BlockHeight) {
        let earliest = tip.height.checked_add(self.terms.min_htlc_expiry_delta());
        let latest = tip
            .height
            .checked_add(self.terms.max_htlc_expiry_delta)
            .unwrap_or(BlockHeight::MAX_LOCKTIME)
            .min(BlockHeight::MAX_LOCKTIME);
        (earliest, latest)
    }

    fn ready_to_pay(&self) -> Result<(), CommandError> {
        if self.lost_state {
            return Err(CommandError::LostState);
        }
        if self.phase != Phase::Open || self.coop.is_some() {
            return Err(CommandError::WrongPhase);
        }
        if self.is_resetting() {
            return Err(CommandError::ResetInProgress);
        }
        Ok(())
    }

    /// The sender's half of the funding-depth rule (docs/duplex.md §3): pay only once the
    /// funding is `n + 1` deep at `tip`.
    fn deep_enough_to_send(&self, tip: BlockHeight) -> Result<(), CommandError> {
        #[cfg(feature = "test-utils")]
        if self.depth_rule_off {
            return Ok(());
        }
        match self.sends_from() {
            Some(from) if tip >= from => Ok(()),
            _ => Err(CommandError::FundingNotDeep),
        }
    }

    /// The receiver's half: count a payment only once the funding is `n` deep at `tip`.
    fn deep_enough_to_receive(&self, tip: ChainTip) -> Result<(), PeerError> {
        #[cfg(feature = "test-utils")]
        if self.depth_rule_off {
            return Ok(());
        }
        match self.receives_from() {
            Some(from) if tip.height >= from => Ok(()),
            _ => Err(peer_error(Misbehaviour::FundingNotDeep { confirmations: self.funding_confirmations(tip) })),
        }
    }

    /// Signs `state` as the next payment of the holder's own leaf channel.
    pub(super) fn sign_own<S: Signer + ?Sized>(
        &self,
        state: &PaymentState,
        extra: Amount,
        signer: &S,
    ) -> Result<Payment, CommandError> {
        let i = self.role.index();
        let Some(template) = self.template(self.role) else {
            return Err(self.shortfall_error(extra));
        };
        let refused = |e| match e {
            PaymentError::ExceedsCapacity => self.shortfall_error(extra),
            other => CommandError::Payment(other),
        };
        // A payment the payee may still hold carries the HTLCs we withdrew: never promise that
        // amount a second time, and keep every state payable with them put back (a later
        // `Reestablish` showing them held puts them back on top of this state).
        if !self.withdrawn.is_empty() {
            let mut with = state.clone();
            with.htlcs.extend(self.withdrawn.iter().filter(|w| !state.htlcs.iter().any(|h| h.id == w.id)));
            with.htlcs.sort_by_key(|h| h.id);
            template.check(&with).map_err(refused)?;
        }
        let built = template.build(state).map_err(refused)?;
        let signature = template.sign(signer, &built)?;
        let number = self.channels[i].number.checked_add(1).ok_or(CommandError::InvalidAmount)?;
        Ok(Payment { number, to_payee: state.to_payee, htlcs: state.htlcs.clone(), signature })
    }

    /// Our own leaf channel cannot pay `extra` more: would a reset help, or is our balance short?
    fn shortfall_error(&self, extra: Amount) -> CommandError {
        if extra <= self.balances().holder {
            CommandError::ResetNeeded
        } else {
            CommandError::InsufficientBalance
        }
    }

    fn commit_own(&mut self, payment: Payment) -> Effects {
        let i = self.role.index();
        let ch = &mut self.channels[i];
        ch.number = payment.number;
        ch.state = PaymentState { to_payee: payment.to_payee, htlcs: payment.htlcs.clone() };
        ch.sync_status();
        let mut fx = self.persist();
        fx.send.push(Msg::Payment(payment));
        fx
    }

    /// Pays `amount` to the counterparty in the holder's own leaf channel.
    ///
    /// A leaf payment always carries the payee's output (the Spilman template), so in a fresh
    /// leaf channel the first payment must give the payee at least `payment_fee + dust_limit`;
    /// later ones may be as small as one satoshi.
    ///
    /// # Errors
    /// [`CommandError::ResetNeeded`] if our leaf channel is dry but our balance is not;
    /// [`CommandError::InsufficientBalance`]; [`CommandError::Payment`] if the result is not
    /// payable (the payee's first amount must cover the payment fee plus dust; our change must be
    /// zero or above dust); [`CommandError::ResetInProgress`], [`CommandError::WrongPhase`];
    /// [`CommandError::FundingNotDeep`] before [`Channel::sends_from`] (the last tip given to
    /// [`Channel::handle_chain`]); [`CommandError::WrongSigner`] if `signer` is not the
    /// channel's ([`Channel::check_signer`]).
    pub fn pay<S: Signer + ?Sized>(&mut self, amount: Amount, signer: &S) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        self.ready_to_pay()?;
        self.deep_enough_to_send(self.tip)?;
        if amount == Amount::ZERO {
            return Err(CommandError::InvalidAmount);
        }
        let ch = &self.channels[self.role.index()];
        let to_payee = ch.state.to_payee.checked_add(amount).ok_or(CommandError::InvalidAmount)?;
        let state = PaymentState { to_payee, htlcs: ch.state.htlcs.clone() };
        let payment = self.sign_own(&state, amount, signer)?;
        Ok(self.commit_own(payment))
    }

    /// Offers an HTLC of `amount` locked to `payment_hash`, refundable from `expiry`, in the
    /// holder's own leaf channel. Returns its id. The HTLC rides on a payment, so the leaf
    /// channel must already pay the counterparty at least `payment_fee + dust_limit` (see
    /// [`Channel::pay`]); a reset that carries HTLCs keeps that much with the payee.
    ///
    /// # Errors
    /// [`CommandError::HtlcExpiry`] outside [`Channel::htlc_expiry_window`];
    /// [`CommandError::InvalidAmount`] if no HTLC id is left; [`CommandError::FundingNotDeep`]
    /// before [`Channel::sends_from`] at `tip`; otherwise as [`Channel::pay`].
    pub fn add_htlc<S: Signer + ?Sized>(
        &mut self,
        amount: Amount,
        payment_hash: PaymentHash,
        expiry: BlockHeight,
        signer: &S,
        tip: ChainTip,
    ) -> Result<(u64, Effects), CommandError> {
        self.check_signer(signer)?;
        self.ready_to_pay()?;
        self.deep_enough_to_send(tip.height)?;
        let (earliest, latest) = self.htlc_expiry_window(tip);
        if earliest.is_none_or(|e| expiry < e) || expiry > latest {
            return Err(CommandError::HtlcExpiry);
        }
        let ch = &self.channels[self.role.index()];
        // An id without a successor is never used (the counterparty refuses it): ids are never
        // reused.
        if ch.next_htlc_id.checked_add(1).is_none() {
            return Err(CommandError::InvalidAmount);
        }
        let htlc = PaymentHtlc { id: ch.next_htlc_id, amount, payment_hash, expiry };
        let mut state = ch.state.clone();
        state.htlcs.push(htlc);
        let payment = self.sign_own(&state, amount, signer)?;
        Ok((htlc.id, self.commit_own(payment)))
    }

    fn on_payment(&mut self, p: Payment, tip: ChainTip) -> Result<Effects, PeerError> {
        // Our own cooperative close proposal, not signed by the counterparty yet, does not stop a
        // payment to us that crossed it: it only raises our balance, so we take it and withdraw
        // the proposal (below), rather than both sides refusing each other forever.
        if self.phase != Phase::Open || self.coop.is_some_and(|k| k.complete) {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if matches!(self.reset, ResetState::AwaitingFinish { .. }) {
            return Err(peer_error(Misbehaviour::NotQuiescent));
        }
        // A payment counts only in a funding transaction that cannot vanish any more.
        self.deep_enough_to_receive(tip)?;
        let payer = !self.role;
        let ch = &self.channels[payer.index()];
        let Some(template) = self.template(payer) else {
            return Err(peer_error(Misbehaviour::Payment(crate::spilman::payment::UpdateError::Payment(
                PaymentError::ExceedsCapacity,
            ))));
        };
        let (earliest_expiry, latest_expiry) = self.htlc_expiry_window(tip);
        let rules = UpdateRules {
            is_fulfilled: &|id| matches!(ch.status_of(id), Some(HtlcStatus::Fulfilled(_))),
            is_failed: &|id| matches!(ch.status_of(id), Some(HtlcStatus::Failed)),
            next_htlc_id: ch.next_htlc_id,
            tip: tip.height,
            earliest_expiry,
            latest_expiry,
        };
        let state = PaymentState { to_payee: p.to_payee, htlcs: p.htlcs };
        let new_htlcs = template
            .check_update(&self.secp, (ch.number, &ch.state), (p.number, &state, &p.signature), &rules)
            .map_err(|e| peer_error(Misbehaviour::Payment(e)))?;
        let removed: Vec<u64> =
            ch.state.htlcs.iter().filter(|h| !state.htlcs.iter().any(|n| n.id == h.id)).map(|h| h.id).collect();
        let mut events = Vec::new();
        if matches!(self.reset, ResetState::Proposed(_)) {
            // The counterparty paid before seeing our proposal: the proposal nets stale numbers.
            self.reset = ResetState::Idle;
            events.push(Event::ResetAbandoned);
        }
        events.extend(self.withdraw_close());
        // While a close we signed may still be published, an HTLC offered to us is not
        // enforceable (that close pays no HTLC): fail it at once, so nobody forwards it.
        let (offered, refused): (Vec<PaymentHtlc>, Vec<PaymentHtlc>) =
            new_htlcs.into_iter().partition(|_| self.close_released.is_none());
        let ch = &mut self.channels[payer.index()];
        ch.number = p.number;
        ch.state = state;
        ch.signature = Some(p.signature);
        ch.sync_status();
        for h in &refused {
            ch.set_status(h.id, HtlcStatus::Failed);
        }
        let to_holder = ch.state.to_payee;
        let mut fx = self.persist();
        fx.send.push(Msg::Ack { number: p.number });
        fx.send.extend(refused.iter().map(|h| Msg::Fail { id: h.id }));
        fx.events.extend(events);
        fx.events.push(Event::PaymentReceived { number: p.number, to_holder });
        fx.events.extend(offered.into_iter().map(Event::HtlcOffered));
        fx.events.extend(removed.into_iter().map(|id| Event::HtlcRemoved { id }));
        Ok(fx)
    }

    /// Withdraws our cooperative close proposal that the counterparty has not signed (a payment
    /// or a reset proposal of the counterparty crossed it): the channel is open again, and we may
    /// propose again. The signature we released stays usable by the counterparty
    /// (`close_released` keeps what it pays us). Returns the event to report.
    pub(super) fn withdraw_close(&mut self) -> Option<Event> {
        match self.coop {
            Some(k) if !k.complete && self.phase == Phase::Open => {
                self.coop = None;
                if !self.withdrawn_closes.contains(&(k.spend, k.txid)) {
                    self.withdrawn_closes.push((k.spend, k.txid));
                }
                Some(Event::CloseWithdrawn)
            }
            _ => None,
        }
    }

    fn on_ack(&mut self, number: u64) -> Result<Effects, PeerError> {
        let ch = &self.channels[self.role.index()];
        if !matches!(self.phase, Phase::Open) || number > ch.number {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        if number == ch.acked && number == ch.number {
            // Our newest payment, acknowledged again (it was sent again on reconnection).
            return Ok(Effects::none());
        }
        if number <= ch.acked {
            return Err(peer_error(Misbehaviour::Payment(crate::spilman::payment::UpdateError::Replay)));
        }
        self.channels[self.role.index()].acked = number;
        let mut fx = self.persist();
        fx.events.push(Event::PaymentAcknowledged { number });
        Ok(fx)
    }

    // ------------------------------------------------------------------ HTLCs

    /// (Receiver) reveals the preimage of an HTLC offered to us; the offerer folds it into our
    /// amount with its next payment. If the channel is closing and the HTLC output is on chain,
    /// claims it there instead.
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`], [`CommandError::WrongPreimage`];
    /// [`CommandError::WrongSigner`] if `signer` is not the channel's ([`Channel::check_signer`]).
    pub fn fulfill_htlc<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
    ) -> Result<Effects, CommandError> {
        self.check_signer(signer)?;
        let payer = !self.role;
        let htlc = self.known_htlc(payer, id).ok_or(CommandError::UnknownHtlc)?;
        if !htlc.payment_hash.is_unlocked_by(&preimage) {
            return Err(CommandError::WrongPreimage);
        }
        if matches!(self.channels[payer.index()].status_of(id), Some(HtlcStatus::Fulfilled(_))) {
            return Ok(Effects::none());
        }
        self.channels[payer.index()].set_status(id, HtlcStatus::Fulfilled(preimage));
        self.chain.learn_preimage(payer, id, preimage);
        let claims = self.due_claims(signer);
        let mut fx = self.persist();
        if matches!(self.phase, Phase::Open | Phase::CoopClosing) {
            fx.send.push(Msg::Fulfill { id, preimage });
        }
        Self::emit_claims(&mut fx, claims);
        Ok(fx)
    }

    /// An HTLC of the channel paid by `payer`, in the current state or on chain.
    fn known_htlc(&self, payer: Role, id: u64) -> Option<PaymentHtlc> {
        if let Some(h) = self.channels[payer.index()].htlc(id) {
            return Some(*h);
        }
        self.reset.pending_htlc(payer, id).or_else(|| self.chain.htlc(payer, id))
    }

    /// (Receiver) gives an HTLC offered to us up; the next reset drops it.
    ///
    /// # Errors
    /// [`CommandError::UnknownHtlc`] if there is no such live HTLC; [`CommandError::WrongPhase`].
    pub fn fail_htlc(&mut self, id: u64) -> Result<Effects, CommandError> {
        if self.phase != Phase::Open {
            return Err(CommandError::WrongPhase);
        }
        let ch = &mut self.channels[(!self.role).index()];
        match ch.status_of(id) {
            Some(HtlcStatus::Live) => {}
            Some(HtlcStatus::Failed) => return Ok(Effects::none()),
            _ => return Err(CommandError::UnknownHtlc),
        }
        ch.set_status(id, HtlcStatus::Failed);
        let mut fx = self.persist();
        fx.send.push(Msg::Fail { id });
        Ok(fx)
    }

    fn on_fulfill<S: Signer + ?Sized>(
        &mut self,
        id: u64,
        preimage: PaymentPreimage,
        signer: &S,
    ) -> Result<Effects, PeerError> {
        let me = self.role;
        let htlc = self.known_htlc(me, id).ok_or(peer_error(Misbehaviour::UnknownHtlc))?;
        if !htlc.payment_hash.is_unlocked_by(&preimage) {
            return Err(peer_error(Misbehaviour::WrongPreimage));
        }
        if matches!(self.channels[me.index()].status_of(id), Some(HtlcStatus::Fulfilled(_)))
            || self.chain.knows_preimage(me, id)
        {
            return Err(peer_error(Misbehaviour::UnexpectedMessage));
        }
        let mut next = self.clone();
        next.channels[me.index()].set_status(id, HtlcStatus::Fulfilled(preimage));
        next.chain.learn_preimage(me, id, preimage);
        let fold = next.fold_payment(signer).map_err(|e| match e {
            CommandError::Signer(s) => peer_error(Misbehaviour::Signer(s)),
            _ => peer_error(Misbehaviour::UnexpectedMessage),
        })?;
        *self = next;
        let mut fx = match fold {
            Some(payment) => self.commit_own(payment),
            None => self.persist(),
        };
        fx.events.insert(0, Event::HtlcFulfilled { id, payment_hash: htlc.payment_hash, preimage });
        Ok(fx)
    }

    /// The payment folding every fulfilled HTLC of our own channel into the payee's amount, if
    /// any and if the channel can pay now.
    pub(super) fn fold_payment<S: Signer + ?Sized>(&self, signer: &S) -> Result<Option<Payment>, CommandError> {
        if self.ready_to_pay().is_err() {
            return Ok(None);
        }
        let ch = &self.channels[self.role.index()];
        let mut state = ch.state.clone();
        let mut folded = false;
        for (id, status) in &ch.status {
            if let HtlcStatus::Fulfilled(_) = status {
                if let Some(pos) = state.htlcs.iter().position(|h| h.id == *id) {
                    let h = state.htlcs.remove(pos);
                    state.to_payee = state.to_payee.checked_add(h.amount).ok_or(CommandError::InvalidAmount)?;
                    folded = true;
                }
            }
        }
        if !folded {
            return Ok(None);
        }
        self.sign_own(&state, Amount::ZERO, signer).map(Some)
    }

    fn on_fail(&mut self, id: u64) -> Result<Effects, PeerError> {
        let ch = &mut self.channels[self.role.index()];
        if self.phase != Phase::Open || ch.status_of(id) != Some(HtlcStatus::Live) {
            return Err(peer_error(Misbehaviour::UnknownHtlc));
        }
        ch.set_status(id, HtlcStatus::Failed);
        let mut fx = self.persist();
        fx.events.push(Event::HtlcFailed { id });
        Ok(fx)
    }
}
