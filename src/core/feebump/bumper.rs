//! The [`Bumper`]: tracks time-critical transactions and (re-)bumps them each block.

use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;

use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use super::build::{self, BuildError};
use super::schedule;
use super::{BumpMethod, BumpRequest, FeeEstimates, InputTemplate};
use crate::core::commitment::FeeratePerKw;
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;
use crate::driving::{ChainEvent, Effects, StateUpdate, Watch};

/// Blocks after which a resolved request is forgotten (a deeper reorg is not expected).
pub(crate) const FORGET_AFTER: u32 = 6;

/// A coin of the embedder's wallet that a bump may spend.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WalletCoin {
    /// The coin.
    pub outpoint: OutPoint,
    /// Its output (value and script).
    pub txout: TxOut,
    /// The serialized size of the witness that spends it, at its largest (108 or 109 for
    /// P2WPKH: item count, a signature of up to 73 bytes, a 33-byte key, with their lengths).
    pub witness_weight: u64,
}

/// Why the wallet could not help.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum WalletError {
    /// Not enough confirmed coins.
    InsufficientFunds,
    /// The wallet could not sign its inputs.
    Signing,
}

impl fmt::Display for WalletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalletError::InsufficientFunds => "not enough wallet coins",
            WalletError::Signing => "the wallet could not sign",
        })
    }
}

impl core::error::Error for WalletError {}

/// The embedder's wallet, as the bumper sees it. Coin selection is the wallet's: the bumper asks
/// for value and gets coins back (as LDK's `CoinSelectionSource`). Calls are synchronous and do
/// no I/O the bumper knows of.
pub trait FeeWallet {
    /// Confirmed coins worth at least `amount` in total, none of them in `exclude` (coins this
    /// bumper already holds). The wallet should treat the coins as reserved until
    /// [`FeeWallet::release_coins`] gives them back.
    ///
    /// # Errors
    /// [`WalletError::InsufficientFunds`] if the wallet has too little.
    fn select_coins(&mut self, amount: Amount, exclude: &[OutPoint]) -> Result<Vec<WalletCoin>, WalletError>;

    /// A script for change (the bumper asks once per request and keeps it for every
    /// replacement).
    fn change_script(&mut self) -> ScriptBuf;

    /// Signs `coins`, which are the inputs of `tx` from index `first_input` on, in order.
    ///
    /// # Errors
    /// [`WalletError::Signing`] if it cannot.
    fn sign_coins(&self, tx: &mut Transaction, first_input: usize, coins: &[WalletCoin]) -> Result<(), WalletError>;

    /// The bumper no longer needs these coins (the request they paid for is resolved): the
    /// wallet may spend or reserve them again. Coins already spent on chain are listed too.
    fn release_coins(&mut self, coins: &[OutPoint]);
}

/// What the bumper reports.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum BumpEvent {
    /// A new attempt was broadcast for request `id` at `fee` (the fee of the transaction the
    /// bumper made: the replacement, the child or the aggregate).
    Bumped {
        /// The request.
        id: Txid,
        /// The attempt's txid.
        txid: Txid,
        /// Its fee.
        fee: Amount,
    },
    /// The schedule wanted more than [`BumpRequest::at_stake`]: the attempt pays only that.
    Capped {
        /// The request.
        id: Txid,
    },
    /// No attempt could be made this block (no coins, the signer is pending, dust).
    Failed {
        /// The request.
        id: Txid,
        /// Why.
        error: BuildError,
    },
    /// The request's transaction, or one that conflicts with it, confirmed.
    Resolved {
        /// The request.
        id: Txid,
        /// The confirmed transaction.
        by: Txid,
    },
    /// The deadline passed and the request is still unconfirmed (money may be lost).
    DeadlineMissed {
        /// The request.
        id: Txid,
    },
}

/// One attempt: the transaction the bumper made, what it paid, and its actual weight (a
/// replacement's floor is computed against it, as Core does).
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Attempt {
    pub(crate) tx: Transaction,
    pub(crate) fee: Amount,
    pub(crate) weight: u64,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Entry {
    pub(crate) request: BumpRequest,
    pub(crate) attempt: Option<Attempt>,
    pub(crate) coins: Vec<WalletCoin>,
    pub(crate) change: Option<ScriptBuf>,
    pub(crate) resolved: Option<(Txid, BlockHeight)>,
    pub(crate) missed: bool,
    /// A [`BumpMethod::Child`] request resolved by its parent confirming alone: the last child
    /// does not conflict with the parent and may still confirm, so its coins stay held (and the
    /// entry is kept) until a transaction spending one of the child's inputs confirms (the child
    /// itself, or one that conflicts with it). Released earlier, a coin would go to another
    /// request whose attempt then conflicts with our own child and is lost when it confirms.
    pub(crate) child_pending: bool,
}

/// The aggregate of [`BumpMethod::AddInputs`] requests sharing one `nLockTime` (a peer's
/// `SIGHASH_SINGLE|ANYONECANPAY` signature still commits to it): one transaction with wallet coins.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct Group {
    pub(crate) lock_time: u32,
    pub(crate) members: Vec<Txid>,
    pub(crate) attempt: Option<Attempt>,
    pub(crate) coins: Vec<WalletCoin>,
    pub(crate) change: Option<ScriptBuf>,
}

/// Tracks a channel's time-critical transactions and bumps them each block (see the
/// [module docs](super)). Keep one next to each channel (its templates name that channel's keys)
/// and persist it like the channel: every call that changes it returns a
/// [`StateUpdate`] to store before broadcasting anything, and [`Bumper::decode`] restores it.
///
/// # Example
/// ```
/// use paychan::core::feebump::Bumper;
/// use paychan::driving::{ChainEvent, ChainTip};
///
/// let mut bumper = Bumper::new();
/// // Each request a channel returns goes in with `track`; each block, `bump` is called with the
/// // tip, the estimates, the wallet and the channel's signer.
/// let fx = bumper.handle_chain(&ChainEvent::Tip(ChainTip::at(100)));
/// assert!(fx.broadcast.is_empty());
/// let restored = Bumper::decode(&bumper.encode()).unwrap();
/// assert_eq!(restored, bumper);
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Bumper {
    pub(crate) update_id: u64,
    pub(crate) entries: Vec<Entry>,
    pub(crate) groups: Vec<Group>,
}

type BumpEffects = Effects<Infallible, BumpEvent>;

impl Bumper {
    /// An empty bumper.
    pub fn new() -> Self {
        Self::default()
    }

    /// The requests not yet resolved, by id.
    pub fn pending(&self) -> impl Iterator<Item = Txid> + '_ {
        self.entries.iter().filter(|e| e.resolved.is_none()).map(|e| e.request.id())
    }

    /// The latest transactions of request `id` to broadcast (the parent and the current child,
    /// the current replacement, or the current aggregate), if it is pending.
    pub fn current(&self, id: &Txid) -> Vec<Transaction> {
        let Some(e) = self.entries.iter().find(|e| e.request.id() == *id && e.resolved.is_none()) else {
            return Vec::new();
        };
        self.broadcasts(e)
    }

    fn broadcasts(&self, e: &Entry) -> Vec<Transaction> {
        match (&e.request.method, &e.attempt) {
            (BumpMethod::Child { .. }, Some(a)) => alloc::vec![e.request.tx.clone(), a.tx.clone()],
            (BumpMethod::Child { .. }, None) => alloc::vec![e.request.tx.clone()],
            (BumpMethod::Replace { .. }, Some(a)) => alloc::vec![a.tx.clone()],
            (BumpMethod::AddInputs { .. }, _) => {
                match self.groups.iter().find(|g| g.members.contains(&e.request.id())).and_then(|g| g.attempt.as_ref())
                {
                    Some(a) => alloc::vec![a.tx.clone()],
                    None => alloc::vec![e.request.tx.clone()],
                }
            }
            _ => alloc::vec![e.request.tx.clone()],
        }
    }

    fn persist(&mut self, fx: &mut BumpEffects) {
        self.update_id += 1;
        fx.update = Some(StateUpdate::snapshot(self.update_id, self.encode()));
    }

    /// Starts tracking `request`. A repeated request (same transaction) only tightens the
    /// pending one: an earlier deadline or more at stake is taken (e.g. a preimage learnt after
    /// the commitment was broadcast makes it urgent), anything else is ignored. A request
    /// spending the same outputs as a pending one replaces it and keeps its coins and attempts.
    pub fn track(&mut self, request: BumpRequest) -> BumpEffects {
        let mut fx = BumpEffects::none();
        let id = request.id();
        if let Some(e) = self.entries.iter_mut().find(|e| e.request.id() == id) {
            let tighter = e.request.deadline > request.deadline || e.request.at_stake < request.at_stake;
            if e.resolved.is_none() && tighter {
                e.request.deadline = e.request.deadline.min(request.deadline);
                e.request.at_stake = e.request.at_stake.max(request.at_stake);
                self.persist(&mut fx);
            }
            return fx;
        }
        let outs = request.resolving_outpoints();
        for op in &outs {
            fx.watch.push(Watch::Spend(*op));
        }
        fx.watch.push(Watch::Tx(id));
        let same = self.entries.iter_mut().find(|e| {
            e.resolved.is_none()
                && core::mem::discriminant(&e.request.method) == core::mem::discriminant(&request.method)
                && e.request.resolving_outpoints() == outs
        });
        match same {
            Some(e) => {
                let old = e.request.id();
                e.request = request;
                for g in &mut self.groups {
                    if let Some(m) = g.members.iter_mut().find(|m| **m == old) {
                        *m = id;
                    }
                }
            }
            None => self.entries.push(Entry {
                request,
                attempt: None,
                coins: Vec::new(),
                change: None,
                resolved: None,
                missed: false,
                child_pending: false,
            }),
        }
        self.persist(&mut fx);
        fx
    }

    /// Feeds a chain event: a confirmed transaction resolves the requests it confirms or
    /// conflicts with (their coins are released at the next [`Bumper::bump`]); an unconfirmed
    /// one reopens them; requests resolved six blocks deep are forgotten at the next
    /// [`Bumper::bump`].
    pub fn handle_chain(&mut self, event: &ChainEvent<'_>) -> BumpEffects {
        let mut fx = BumpEffects::none();
        let mut changed = false;
        match event {
            ChainEvent::Confirmed { tx, height } => {
                let txid = tx.compute_txid();
                // A child left pending by its parent's confirmation is settled once anything
                // spending one of its inputs confirms: the child, or a conflict of it.
                for e in self.entries.iter_mut().filter(|e| e.child_pending) {
                    let spends_child_input = e.attempt.as_ref().is_some_and(|a| {
                        a.tx.input.iter().any(|ci| tx.input.iter().any(|i| i.previous_output == ci.previous_output))
                    });
                    if spends_child_input {
                        e.child_pending = false;
                        changed = true;
                    }
                }
                changed |= self.drop_coins_spent_elsewhere(tx, txid);
                for e in self.entries.iter_mut().filter(|e| e.resolved.is_none()) {
                    let outs = e.request.resolving_outpoints();
                    let hit = e.request.id() == txid || tx.input.iter().any(|i| outs.contains(&i.previous_output));
                    if hit {
                        e.resolved = Some((txid, *height));
                        // The parent itself confirmed: our child (if any) is still valid.
                        e.child_pending = e.request.id() == txid
                            && matches!(e.request.method, BumpMethod::Child { .. })
                            && e.attempt.is_some()
                            && !e.coins.is_empty();
                        if e.child_pending {
                            // The embedder reports what spends the child's inputs.
                            let child = e.attempt.as_ref().map(|a| a.tx.input.as_slice()).unwrap_or_default();
                            fx.watch.extend(child.iter().map(|i| Watch::Spend(i.previous_output)));
                        }
                        fx.events.push(BumpEvent::Resolved { id: e.request.id(), by: txid });
                        changed = true;
                    }
                }
            }
            ChainEvent::Unconfirmed(txid) => {
                for e in self.entries.iter_mut() {
                    if e.resolved.is_some_and(|(by, _)| by == *txid) {
                        e.resolved = None;
                        e.child_pending = false;
                        changed = true;
                    }
                }
            }
            // A spend seen only in a mempool resolves nothing: it may be replaced (replacement
            // cycling), so the request keeps being bumped until a spend confirms.
            ChainEvent::Tip(_) | ChainEvent::Seen { .. } => {}
        }
        if changed {
            self.persist(&mut fx);
        }
        fx.next_deadline = self.next_deadline_after(None);
        fx
    }

    /// A confirmed transaction `tx` that is not the current attempt of a pending request (or of
    /// an aggregate) but spends one of its coins (an older version of the aggregate with other
    /// members, or a wallet that spent a reserved coin) leaves that attempt invalid for good:
    /// the spent coins are dropped, and so is the attempt (it can never confirm, so a
    /// replacement need not beat it), and the next [`Bumper::bump`] builds a new one with fresh
    /// coins instead of broadcasting the dead one until the deadline passes. Whether anything
    /// changed.
    fn drop_coins_spent_elsewhere(&mut self, tx: &Transaction, txid: Txid) -> bool {
        let spends = |c: &WalletCoin| tx.input.iter().any(|i| i.previous_output == c.outpoint);
        let mut changed = false;
        let pending = self.entries.iter_mut().filter(|e| e.resolved.is_none()).map(|e| (&mut e.coins, &mut e.attempt));
        let groups = self.groups.iter_mut().map(|g| (&mut g.coins, &mut g.attempt));
        for (coins, attempt) in pending.chain(groups) {
            let ours = attempt.as_ref().is_some_and(|a| a.tx.compute_txid() == txid);
            if !ours && coins.iter().any(spends) {
                coins.retain(|c| !spends(c));
                *attempt = None;
                changed = true;
            }
        }
        changed
    }

    fn next_deadline_after(&self, tip: Option<BlockHeight>) -> Option<BlockHeight> {
        if self.entries.iter().any(|e| e.resolved.is_none()) {
            tip.map(|t| BlockHeight(t.0.saturating_add(1)))
        } else {
            None
        }
    }

    fn held_coins(&self) -> Vec<OutPoint> {
        self.entries
            .iter()
            .flat_map(|e| e.coins.iter())
            .chain(self.groups.iter().flat_map(|g| g.coins.iter()))
            .map(|c| c.outpoint)
            .collect()
    }

    /// The block work: with the chain at `tip` and the embedder's `estimates`, makes a new
    /// attempt for every pending request whose current one pays less than the schedule wants
    /// (see [`schedule`]), and returns every pending request's transactions to broadcast
    /// (unchanged attempts are broadcast again: a mempool may have dropped them). Template
    /// inputs are signed by `signer` (the channel's), wallet coins by `wallet`.
    pub fn bump<S: Signer + ?Sized, W: FeeWallet + ?Sized>(
        &mut self,
        tip: BlockHeight,
        estimates: &FeeEstimates,
        wallet: &mut W,
        signer: &S,
    ) -> BumpEffects {
        let mut fx = BumpEffects::none();
        let mut changed = self.forget(tip, wallet);
        for i in 0..self.entries.len() {
            let Some(e) = self.entries.get(i) else { break };
            if e.resolved.is_some() || matches!(e.request.method, BumpMethod::AddInputs { .. }) {
                continue;
            }
            let id = e.request.id();
            if tip >= e.request.deadline && !e.missed {
                if let Some(e) = self.entries.get_mut(i) {
                    e.missed = true;
                }
                fx.events.push(BumpEvent::DeadlineMissed { id });
                changed = true;
            }
            match self.attempt_single(i, tip, estimates, wallet, signer) {
                Ok(Some((attempt, capped))) => {
                    fx.events.push(BumpEvent::Bumped { id, txid: attempt.tx.compute_txid(), fee: attempt.fee });
                    if capped {
                        fx.events.push(BumpEvent::Capped { id });
                    }
                    if let Some(e) = self.entries.get_mut(i) {
                        e.attempt = Some(attempt);
                    }
                    changed = true;
                }
                Ok(None) => {}
                Err(error) => fx.events.push(BumpEvent::Failed { id, error }),
            }
            if let Some(e) = self.entries.get(i) {
                fx.broadcast.extend(self.broadcasts(e));
            }
        }
        changed |= self.bump_groups(tip, estimates, wallet, signer, &mut fx);
        if changed {
            self.persist(&mut fx);
        }
        fx.next_deadline = self.next_deadline_after(Some(tip));
        fx
    }

    /// Gives the coins of resolved requests back to the wallet at once, and drops requests
    /// resolved deep enough.
    ///
    /// The coins are not kept until the request is forgotten: the resolving transaction either
    /// spent them (our own attempt confirmed: they are gone) or conflicts with every attempt
    /// that spends them (the parent confirmed with someone else's child, or a conflicting
    /// transaction did), so they are free. Holding them for [`FORGET_AFTER`] blocks starves the
    /// next request of a wallet with one coin: a duplex tree's next node is broadcast one block
    /// after its parent confirmed, with a deadline `S` blocks later. A request reopened by a
    /// reorg asks the wallet for coins again (its last attempt is kept as the fee floor a
    /// replacement must beat).
    ///
    /// The exception is a parent that paid enough to confirm alone (a Lightning commitment's own
    /// fee) while our child waits in the mempool: the child still spends the coins and may
    /// confirm, so they stay held, and the entry kept, until a transaction spending one of the
    /// child's inputs confirms (`Entry::child_pending`).
    fn forget<W: FeeWallet + ?Sized>(&mut self, tip: BlockHeight, wallet: &mut W) -> bool {
        let before = self.entries.len();
        let mut released = Vec::new();
        let mut changed = false;
        for e in self.entries.iter_mut().filter(|e| e.resolved.is_some() && !e.child_pending && !e.coins.is_empty()) {
            released.extend(e.coins.drain(..).map(|c| c.outpoint));
            changed = true;
        }
        self.entries.retain(|e| {
            e.child_pending || !matches!(e.resolved, Some((_, h)) if tip.0 >= h.0.saturating_add(FORGET_AFTER))
        });
        if !released.is_empty() {
            wallet.release_coins(&released);
        }
        changed || before != self.entries.len()
    }

    /// A new attempt for a `Replace` or `Child` entry, or `None` if the current one suffices.
    fn attempt_single<S: Signer + ?Sized, W: FeeWallet + ?Sized>(
        &mut self,
        i: usize,
        tip: BlockHeight,
        estimates: &FeeEstimates,
        wallet: &mut W,
        signer: &S,
    ) -> Result<Option<(Attempt, bool)>, BuildError> {
        let held = self.held_coins();
        let Some(e) = self.entries.get_mut(i) else { return Ok(None) };
        let blocks_left = e.request.deadline.0.saturating_sub(tip.0);
        let feerate = schedule::target_feerate(estimates, blocks_left);
        let previous = e.attempt.as_ref().map(|a| (a.fee, a.weight));
        match &e.request.method {
            BumpMethod::Replace { inputs, destination, lock_time } => {
                let templates: Vec<&InputTemplate> = inputs.iter().collect();
                let total = build::input_value(&templates, &[]).ok_or(BuildError::Amount)?;
                let out = TxOut { value: Amount::ZERO, script_pubkey: destination.clone() };
                let mut tx = build::assemble(&templates, &[], alloc::vec![out], *lock_time, Version::TWO);
                let weight = build::signed_weight(&tx, &templates, &[]);
                let dust = destination.minimal_non_dust();
                let cap = e.request.at_stake.min(total.checked_sub(dust).ok_or(BuildError::Amount)?);
                // Before the first attempt, the transaction the channel broadcast is what a
                // replacement must beat (if it spends the same outputs: its fee is known), unless
                // an output of it is dust: no mempool took it (Core's dust rule), so there is
                // nothing to replace, and taking its fee as the floor would keep it for good (a
                // Spilman claim of a small HTLC at the channel's fixed claim fee).
                let previous = previous.or_else(|| {
                    let relays = e.request.tx.output.iter().all(|o| o.value >= o.script_pubkey.minimal_non_dust());
                    let same = relays
                        && e.request.tx.input.len() == inputs.len()
                        && e.request.tx.input.iter().zip(inputs.iter()).all(|(i, t)| i.previous_output == t.outpoint);
                    let out: Option<Amount> =
                        e.request.tx.output.iter().try_fold(Amount::ZERO, |a, o| a.checked_add(o.value));
                    let fee = out.and_then(|o| total.checked_sub(o));
                    fee.filter(|_| same).map(|f| (f, e.request.tx.weight().to_wu()))
                });
                let Some((fee, capped)) =
                    schedule::next_fee(schedule::fee_for_vsize(feerate, weight), weight, previous, cap)
                else {
                    return Ok(None);
                };
                if previous.is_some_and(|(p, _)| fee <= p) {
                    // Capped below what a replacement needs: keep the current attempt.
                    return Ok(None);
                }
                let value = total.checked_sub(fee).ok_or(BuildError::Amount)?;
                if let Some(o) = tx.output.last_mut() {
                    o.value = value;
                }
                build::sign(&mut tx, &templates, &[], signer, wallet)?;
                let weight = tx.weight().to_wu();
                Ok(Some((Attempt { tx, fee, weight }, capped)))
            }
            BumpMethod::Child { anchor, parent_fee } => {
                let parent_weight = e.request.tx.weight().to_wu();
                let version = if e.request.tx.version == Version(3) { Version(3) } else { Version::TWO };
                let change = match &e.change {
                    Some(c) => c.clone(),
                    None => {
                        let c = wallet.change_script();
                        e.change = Some(c.clone());
                        c
                    }
                };
                let dust = change.minimal_non_dust();
                let templates = [anchor];
                // At most three rounds of adding coins.
                for _ in 0..3 {
                    let out = TxOut { value: Amount::ZERO, script_pubkey: change.clone() };
                    let mut tx = build::assemble(&templates, &e.coins, alloc::vec![out], 0, version);
                    let weight = build::signed_weight(&tx, &templates, &e.coins);
                    // Core checks the package's fee on the sum of the virtual sizes.
                    let package = schedule::fee_for_vsize(feerate, parent_weight)
                        .checked_add(schedule::fee_for_vsize(feerate, weight))
                        .ok_or(BuildError::Amount)?;
                    let wanted = package
                        .checked_sub(*parent_fee)
                        .unwrap_or(Amount::ZERO)
                        .max(schedule::fee_for_vsize(FeeratePerKw::MIN_RELAY, weight));
                    let Some((fee, capped)) = schedule::next_fee(wanted, weight, previous, e.request.at_stake) else {
                        return Ok(None);
                    };
                    if previous.is_some_and(|(p, _)| fee <= p) {
                        return Ok(None);
                    }
                    let have = build::input_value(&templates, &e.coins).ok_or(BuildError::Amount)?;
                    match have.checked_sub(fee).filter(|v| *v >= dust) {
                        Some(value) => {
                            if let Some(o) = tx.output.last_mut() {
                                o.value = value;
                            }
                            build::sign(&mut tx, &templates, &e.coins, signer, wallet)?;
                            let weight = tx.weight().to_wu();
                            return Ok(Some((Attempt { tx, fee, weight }, capped)));
                        }
                        None => {
                            // Coins are added, never swapped: every replacement spends the
                            // earlier ones too. Ask for the shortfall plus room for the new input.
                            let short = fee
                                .checked_add(dust)
                                .and_then(|v| v.checked_add(feerate.fee_for_weight(4 * 41 + 110)))
                                .ok_or(BuildError::Amount)?;
                            let need = short.checked_sub(have).unwrap_or(dust);
                            let mut more = wallet.select_coins(need, &held)?;
                            if more.is_empty() {
                                return Err(BuildError::Wallet(WalletError::InsufficientFunds));
                            }
                            e.coins.append(&mut more);
                        }
                    }
                }
                Err(BuildError::Wallet(WalletError::InsufficientFunds))
            }
            BumpMethod::AddInputs { .. } => Ok(None),
        }
    }

    /// Rebuilds each aggregate of ready `AddInputs` requests (one per `nLockTime`) whose
    /// membership changed or for which the schedule wants more; broadcasts them.
    fn bump_groups<S: Signer + ?Sized, W: FeeWallet + ?Sized>(
        &mut self,
        tip: BlockHeight,
        estimates: &FeeEstimates,
        wallet: &mut W,
        signer: &S,
        fx: &mut BumpEffects,
    ) -> bool {
        let mut locks: Vec<u32> = self
            .entries
            .iter()
            .filter(|e| e.resolved.is_none())
            .filter_map(|e| match e.request.method {
                BumpMethod::AddInputs { lock_time, .. } if lock_time <= tip.0 => Some(lock_time),
                _ => None,
            })
            .collect();
        locks.sort_unstable();
        locks.dedup();
        let mut changed = false;
        // Groups left without a ready member give their coins back.
        let before = self.groups.len();
        let mut released = Vec::new();
        self.groups.retain(|g| {
            let keep = locks.contains(&g.lock_time);
            if !keep {
                released.extend(g.coins.iter().map(|c| c.outpoint));
            }
            keep
        });
        if !released.is_empty() {
            wallet.release_coins(&released);
        }
        changed |= before != self.groups.len();
        for lock in locks {
            if !self.groups.iter().any(|g| g.lock_time == lock) {
                self.groups.push(Group { lock_time: lock, ..Group::default() });
            }
            changed |= self.bump_group(lock, tip, estimates, wallet, signer, fx);
        }
        changed
    }

    /// Rebuilds the aggregate of ready `AddInputs` requests with `nLockTime` `lock_time` if its
    /// membership changed or the schedule wants more; broadcasts it.
    fn bump_group<S: Signer + ?Sized, W: FeeWallet + ?Sized>(
        &mut self,
        lock_time: u32,
        tip: BlockHeight,
        estimates: &FeeEstimates,
        wallet: &mut W,
        signer: &S,
        fx: &mut BumpEffects,
    ) -> bool {
        let ready: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.resolved.is_none()
                    && matches!(e.request.method, BumpMethod::AddInputs { lock_time: l, .. } if l == lock_time)
            })
            .map(|(i, _)| i)
            .collect();
        let members: Vec<Txid> = ready.iter().filter_map(|&i| self.entries.get(i)).map(|e| e.request.id()).collect();
        let Some(gi) = self.groups.iter().position(|g| g.lock_time == lock_time) else { return false };
        let mut changed = false;
        for &i in &ready {
            if let Some(e) = self.entries.get_mut(i) {
                if tip >= e.request.deadline && !e.missed {
                    e.missed = true;
                    fx.events.push(BumpEvent::DeadlineMissed { id: e.request.id() });
                    changed = true;
                }
            }
        }
        let deadline = ready.iter().filter_map(|&i| self.entries.get(i)).map(|e| e.request.deadline).min();
        let deadline = deadline.unwrap_or(tip);
        let cap = ready
            .iter()
            .filter_map(|&i| self.entries.get(i))
            .fold(Amount::ZERO, |a, e| a.checked_add(e.request.at_stake).unwrap_or(Amount::MAX));
        let feerate = schedule::target_feerate(estimates, deadline.0.saturating_sub(tip.0));
        let same_members = self.groups[gi].members == members;
        let previous = self.groups[gi].attempt.as_ref().map(|a| (a.fee, a.weight));
        let held = self.held_coins();
        let result = (|| -> Result<Option<(Attempt, bool)>, BuildError> {
            let templates: Vec<&InputTemplate> = ready
                .iter()
                .filter_map(|&i| self.entries.get(i))
                .flat_map(|e| match &e.request.method {
                    BumpMethod::AddInputs { inputs, .. } => inputs.iter().collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .collect();
            let paired: Amount = templates
                .iter()
                .filter_map(|t| t.paired_output.as_ref())
                .fold(Amount::ZERO, |a, o| a.checked_add(o.value).unwrap_or(Amount::MAX));
            let template_value = build::input_value(&templates, &[]).ok_or(BuildError::Amount)?;
            let surplus = template_value.checked_sub(paired).unwrap_or(Amount::ZERO);
            let change = match &self.groups[gi].change {
                Some(c) => c.clone(),
                None => {
                    let c = wallet.change_script();
                    self.groups[gi].change = Some(c.clone());
                    c
                }
            };
            let dust = change.minimal_non_dust();
            for _ in 0..3 {
                let out = TxOut { value: Amount::ZERO, script_pubkey: change.clone() };
                let mut tx =
                    build::assemble(&templates, &self.groups[gi].coins, alloc::vec![out], lock_time, Version::TWO);
                let weight = build::signed_weight(&tx, &templates, &self.groups[gi].coins);
                let wanted = schedule::fee_for_vsize(feerate, weight);
                // A new membership conflicts with the previous aggregate through its coins: it
                // must replace it even at the same feerate.
                let decided = if same_members {
                    schedule::next_fee(wanted, weight, previous, cap)
                } else {
                    let floor = previous.map_or(Amount::ZERO, |(f, w)| schedule::replacement_floor(f, w, weight));
                    let fee = wanted.max(floor);
                    Some(if fee > cap { (cap, true) } else { (fee, false) })
                };
                let Some((fee, capped)) = decided else { return Ok(None) };
                if same_members && previous.is_some_and(|(p, _)| fee <= p) {
                    return Ok(None);
                }
                let coins_value = build::input_value(&[], &self.groups[gi].coins).ok_or(BuildError::Amount)?;
                let have = coins_value.checked_add(surplus).ok_or(BuildError::Amount)?;
                match have.checked_sub(fee).filter(|v| *v >= dust) {
                    Some(value) => {
                        if let Some(o) = tx.output.last_mut() {
                            o.value = value;
                        }
                        build::sign(&mut tx, &templates, &self.groups[gi].coins, signer, wallet)?;
                        let weight = tx.weight().to_wu();
                        return Ok(Some((Attempt { tx, fee, weight }, capped)));
                    }
                    None => {
                        let short = fee
                            .checked_add(dust)
                            .and_then(|v| v.checked_add(feerate.fee_for_weight(4 * 41 + 110)))
                            .ok_or(BuildError::Amount)?;
                        let need = short.checked_sub(have).unwrap_or(dust);
                        let mut more = wallet.select_coins(need, &held)?;
                        if more.is_empty() {
                            return Err(BuildError::Wallet(WalletError::InsufficientFunds));
                        }
                        self.groups[gi].coins.append(&mut more);
                    }
                }
            }
            Err(BuildError::Wallet(WalletError::InsufficientFunds))
        })();
        match result {
            Ok(Some((attempt, capped))) => {
                let txid = attempt.tx.compute_txid();
                for id in &members {
                    fx.events.push(BumpEvent::Bumped { id: *id, txid, fee: attempt.fee });
                    if capped {
                        fx.events.push(BumpEvent::Capped { id: *id });
                    }
                }
                self.groups[gi].attempt = Some(attempt);
                self.groups[gi].members = members;
                changed = true;
            }
            Ok(None) => {}
            Err(error) => {
                for id in &members {
                    fx.events.push(BumpEvent::Failed { id: *id, error });
                }
            }
        }
        if let Some(a) = &self.groups[gi].attempt {
            fx.broadcast.push(a.tx.clone());
        }
        changed
    }
}
