//! The node mempool of [`Chain`] with a policy or a market: unconfirmed chains, Bitcoin Core's
//! relay policy (replacement, TRUC, ephemeral dust, 1-parent-1-child packages) and blocks built
//! by ancestor-package feerate.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::vec::Vec;

use bitcoin::{OutPoint, Transaction, TxOut, Txid};

use super::{Chain, Reject};
use crate::testing::policy::{
    check_inputs_standard, check_standard, dust_outputs, fee_at, feerate_per_kvb, vsize, PackageReject, Policy,
    PolicyReject, RbfReject, TrucViolation, TRUC_CHILD_MAX_VSIZE, TRUC_MAX_VSIZE,
};

/// The mempool (and possibly a package transaction not yet in it) as a graph.
struct View<'a> {
    chain: &'a Chain,
    txs: Vec<&'a Transaction>,
    index: HashMap<Txid, usize>,
    spenders: HashMap<OutPoint, Vec<usize>>,
}

impl<'a> View<'a> {
    fn new(chain: &'a Chain, extra: &[&'a Transaction]) -> Self {
        let txs: Vec<&Transaction> = chain.mempool.iter().chain(extra.iter().copied()).collect();
        let mut index = HashMap::new();
        let mut spenders: HashMap<OutPoint, Vec<usize>> = HashMap::new();
        for (i, tx) in txs.iter().enumerate() {
            index.insert(tx.compute_txid(), i);
            for input in &tx.input {
                spenders.entry(input.previous_output).or_default().push(i);
            }
        }
        View { chain, txs, index, spenders }
    }

    /// A spendable output: confirmed, or an output of a view transaction (counted as confirmed
    /// in the next block).
    fn coin(&self, op: &OutPoint) -> Option<(TxOut, u32)> {
        if let Some(c) = self.chain.utxos.get(op) {
            return Some(c.clone());
        }
        let i = *self.index.get(&op.txid)?;
        let out = self.txs[i].output.get(op.vout as usize)?;
        Some((out.clone(), self.chain.height + 1))
    }

    fn fee_of(&self, tx: &Transaction) -> Option<u64> {
        let mut total = 0u64;
        for input in &tx.input {
            total = total.checked_add(self.coin(&input.previous_output)?.0.value.to_sat())?;
        }
        total.checked_sub(tx.output.iter().map(|o| o.value.to_sat()).sum())
    }

    fn fee(&self, i: usize) -> Option<u64> {
        self.fee_of(self.txs[i])
    }

    fn parents(&self, tx: &Transaction) -> BTreeSet<usize> {
        tx.input.iter().filter_map(|i| self.index.get(&i.previous_output.txid).copied()).collect()
    }

    fn ancestors(&self, tx: &Transaction) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self.parents(tx).into_iter().collect();
        while let Some(p) = todo.pop() {
            if seen.insert(p) {
                todo.extend(self.parents(self.txs[p]));
            }
        }
        seen
    }

    fn children(&self, i: usize) -> BTreeSet<usize> {
        let txid = self.txs[i].compute_txid();
        (0..self.txs[i].output.len() as u32)
            .filter_map(|vout| self.spenders.get(&OutPoint { txid, vout }))
            .flatten()
            .copied()
            .collect()
    }

    fn descendants(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self.children(i).into_iter().collect();
        while let Some(c) = todo.pop() {
            if seen.insert(c) {
                todo.extend(self.children(c));
            }
        }
        seen
    }

    fn vsize(&self, i: usize) -> u64 {
        vsize(self.txs[i])
    }
}

/// The outcome of evaluating one transaction against the mempool.
struct Eval {
    fee: u64,
    vsize: u64,
    /// Direct conflicts (view indices), a TRUC sibling to evict included.
    conflicts: BTreeSet<usize>,
    /// Everything accepting it evicts (conflicts and their descendants; empty without policy).
    evicted: BTreeSet<usize>,
}

fn policy_err(r: PolicyReject) -> Reject {
    Reject::Policy(r)
}

/// Whether a package parent refused alone may be reconsidered with its child's fees (Core's
/// `TX_RECONSIDERABLE`): a TRUC transaction below the minimum relay feerate, or a replacement
/// paying too little.
fn reconsiderable(e: &Reject, parent: &Transaction) -> bool {
    match e {
        Reject::Policy(PolicyReject::BelowMinRelay { .. }) => parent.version.0 == 3,
        Reject::Policy(PolicyReject::Rbf(r)) => matches!(
            r,
            RbfReject::FeerateNotHigher { .. }
                | RbfReject::LessFeeThanEvicted { .. }
                | RbfReject::IncrementTooSmall { .. }
        ),
        _ => false,
    }
}

impl Chain {
    /// Whether the mempool is a node's (a policy or a market is on).
    pub(super) fn node_mode(&self) -> bool {
        self.policy.is_some() || self.market.is_some()
    }

    fn known(&self, txid: &Txid) -> bool {
        self.confirmed.contains_key(txid) || self.mempool.iter().any(|m| m.compute_txid() == *txid)
    }

    /// The fee `tx` pays, its inputs looked up in the chain and then in the mempool.
    pub fn fee(&self, tx: &Transaction) -> Option<bitcoin::Amount> {
        View::new(self, &[]).fee_of(tx).map(bitcoin::Amount::from_sat)
    }

    /// Evaluates `tx` (not in `view`) as Core's `PreChecks`, `PolicyScriptChecks` and, outside
    /// a package, `ReplacementChecks` would.
    fn evaluate(&self, view: &View<'_>, tx: &Transaction, in_package: bool) -> Result<Eval, Reject> {
        match &self.policy {
            Some(policy) => check_standard(tx, policy).map_err(policy_err)?,
            None => {
                // The chain's own version rule, exactly as `check` applies it.
                let probe = Transaction { input: Vec::new(), output: Vec::new(), ..tx.clone() };
                self.check(&Transaction { lock_time: bitcoin::absolute::LockTime::ZERO, ..probe })?;
            }
        }
        let (fee, spent) = self.check_coins(tx, |op| view.coin(op))?;
        let vsize = vsize(tx);
        let Some(policy) = self.policy else {
            return Ok(Eval { fee, vsize, conflicts: BTreeSet::new(), evicted: BTreeSet::new() });
        };
        check_inputs_standard(tx, &spent).map_err(policy_err)?;
        let truc = tx.version.0 == 3;
        if policy.ephemeral_dust && fee != 0 && dust_outputs(tx, &policy).next().is_some() {
            return Err(policy_err(PolicyReject::DustWithFee { fee }));
        }
        let needed = fee_at(policy.min_relay_feerate, vsize);
        if fee < needed && !(truc && in_package) {
            return Err(policy_err(PolicyReject::BelowMinRelay { fee, vsize, needed }));
        }
        let parents = view.parents(tx);
        let ancestors = view.ancestors(tx);
        let mut conflicts: BTreeSet<usize> =
            tx.input.iter().filter_map(|i| view.spenders.get(&i.previous_output)).flatten().copied().collect();
        let mut evicted = with_descendants(view, &conflicts);
        if let Some(a) = ancestors.iter().find(|a| evicted.contains(a)) {
            let txid = view.txs[*a].compute_txid();
            return Err(policy_err(PolicyReject::Rbf(RbfReject::SpendsConflicting { txid })));
        }
        self.check_chain_limits(view, &policy, tx, &ancestors, &evicted)?;
        if let Some(sibling) = self.check_truc(view, tx, vsize, &parents, &ancestors, &evicted)? {
            conflicts.insert(sibling);
            evicted = with_descendants(view, &conflicts);
        }
        if policy.ephemeral_dust {
            for p in &parents {
                let ptx = view.txs[*p];
                let ptxid = ptx.compute_txid();
                for vout in dust_outputs(ptx, &policy) {
                    let op = OutPoint { txid: ptxid, vout };
                    if !tx.input.iter().any(|i| i.previous_output == op) {
                        return Err(policy_err(PolicyReject::MissingEphemeralSpend { parent: ptxid, vout }));
                    }
                }
            }
        }
        if !conflicts.is_empty() && !in_package {
            check_replacement(view, &policy, tx, fee, vsize, &conflicts, &evicted).map_err(policy_err)?;
        }
        Ok(Eval { fee, vsize, conflicts, evicted })
    }

    /// The ancestor and descendant count limits, with Core's CPFP carve-out: a non-TRUC
    /// transaction of at most 10,000 vB with a single unconfirmed ancestor may be one
    /// descendant over the limit (so each party of a channel can always attach one child).
    fn check_chain_limits(
        &self,
        view: &View<'_>,
        policy: &Policy,
        tx: &Transaction,
        ancestors: &BTreeSet<usize>,
        evicted: &BTreeSet<usize>,
    ) -> Result<(), Reject> {
        if ancestors.len() + 1 > policy.max_chain {
            return Err(policy_err(PolicyReject::TooLongChain));
        }
        let carve_out = ancestors.len() == 1 && tx.version.0 != 3 && vsize(tx) <= TRUC_MAX_VSIZE;
        let max_descendants = policy.max_chain + usize::from(carve_out);
        for a in ancestors {
            let staying = view.descendants(*a).difference(evicted).count();
            if staying + 2 > max_descendants {
                return Err(policy_err(PolicyReject::TooLongChain));
            }
        }
        Ok(())
    }

    /// Core's `SingleTRUCChecks`; returns a sibling to evict, if any.
    fn check_truc(
        &self,
        view: &View<'_>,
        tx: &Transaction,
        vsize: u64,
        parents: &BTreeSet<usize>,
        ancestors: &BTreeSet<usize>,
        evicted: &BTreeSet<usize>,
    ) -> Result<Option<usize>, Reject> {
        let truc = tx.version.0 == 3;
        let err = |v| Err(policy_err(PolicyReject::Truc(v)));
        if truc && vsize > TRUC_MAX_VSIZE {
            return err(TrucViolation::TooLarge { vsize });
        }
        for p in parents {
            let parent = view.txs[*p].compute_txid();
            match (truc, view.txs[*p].version.0 == 3) {
                (true, false) => return err(TrucViolation::SpendsNonTruc { parent }),
                (false, true) => return err(TrucViolation::NonTrucSpendsTruc { parent }),
                _ => {}
            }
        }
        if !truc || parents.is_empty() {
            return Ok(None);
        }
        if ancestors.len() > 1 {
            return err(TrucViolation::TooManyAncestors { ancestors: ancestors.len() });
        }
        if vsize > TRUC_CHILD_MAX_VSIZE {
            return err(TrucViolation::ChildTooLarge { vsize });
        }
        let p = *parents.iter().next().expect("one parent");
        let others: Vec<usize> = view.children(p).difference(evicted).copied().collect();
        match others.as_slice() {
            [] => Ok(None),
            // Sibling eviction: the parent's only child, with no child of its own, competes
            // with this one under the replacement rules.
            [sibling] if view.descendants(*sibling).is_empty() => Ok(Some(*sibling)),
            _ => err(TrucViolation::TooManyDescendants { parent: view.txs[p].compute_txid() }),
        }
    }

    pub(super) fn submit_node(&mut self, tx: &Transaction) -> Result<(), Reject> {
        if self.known(&tx.compute_txid()) {
            return Ok(());
        }
        let view = View::new(self, &[]);
        let eval = self.evaluate(&view, tx, false)?;
        let evicted: Vec<Txid> = eval.evicted.iter().map(|i| view.txs[*i].compute_txid()).collect();
        drop(view);
        self.mempool.retain(|m| !evicted.contains(&m.compute_txid()));
        self.mempool.push(tx.clone());
        Ok(())
    }

    /// Submits a package as Bitcoin Core 28's `submitpackage` does: one transaction, or a
    /// parent and a child that spends it (the child's other inputs confirmed). Each is first
    /// tried alone; a parent refused alone only for its feerate (a TRUC parent below the
    /// minimum relay feerate, such as a zero-fee one with a pay-to-anchor output, or a
    /// replacement paying too little) is then evaluated with its child, the package's fee on
    /// the package's vsize meeting the minimum relay feerate and, for a package replacing
    /// mempool transactions, Core 28's package replacement rules. A non-TRUC parent must still
    /// pay the minimum relay feerate alone, as in Core 28 and 29.
    ///
    /// Without a policy the transactions are submitted one after the other.
    ///
    /// # Errors
    /// The shape of the package ([`PackageReject`]) or the first rule a transaction breaks; on
    /// error nothing of the package entered the mempool unless the parent was accepted alone.
    pub fn submit_package(&mut self, txs: &[Transaction]) -> Result<(), Reject> {
        let shape = |r| Err(policy_err(PolicyReject::Package(r)));
        let (parent, child) = match txs {
            [tx] => return self.submit(tx),
            [parent, child] => (parent, child),
            _ => return shape(PackageReject::NotChildWithParent),
        };
        let ptxid = parent.compute_txid();
        let ctxid = child.compute_txid();
        if !child.input.iter().any(|i| i.previous_output.txid == ptxid)
            || parent.input.iter().any(|i| i.previous_output.txid == ctxid)
        {
            return shape(PackageReject::NotChildWithParent);
        }
        let parent_spends: HashSet<OutPoint> = parent.input.iter().map(|i| i.previous_output).collect();
        if child.input.iter().any(|i| parent_spends.contains(&i.previous_output)) {
            return shape(PackageReject::Conflicting);
        }
        for (input, i) in child.input.iter().enumerate() {
            let op = i.previous_output;
            if op.txid != ptxid
                && !self.utxos.contains_key(&op)
                && self.mempool.iter().any(|m| m.compute_txid() == op.txid)
            {
                return shape(PackageReject::ChildHasOtherUnconfirmedParent { input });
            }
        }
        if self.policy.is_none() {
            self.submit(parent)?;
            return self.submit(child);
        }
        if !self.known(&ptxid) {
            match self.submit_node(parent) {
                Ok(()) => {}
                Err(e) if reconsiderable(&e, parent) => return self.submit_pair(parent, child),
                Err(e) => return Err(e),
            }
        }
        self.submit_node(child)
    }

    /// The package evaluation of a parent refused alone for its feerate and its child.
    fn submit_pair(&mut self, parent: &Transaction, child: &Transaction) -> Result<(), Reject> {
        let policy = self.policy.expect("package evaluation only with a policy");
        let base = View::new(self, &[]);
        let pe = self.evaluate(&base, parent, true)?;
        let with_parent = View::new(self, &[parent]);
        let ce = self.evaluate(&with_parent, child, true)?;
        let fee = pe.fee + ce.fee;
        let vsize = pe.vsize + ce.vsize;
        let needed = fee_at(policy.min_relay_feerate, vsize);
        if fee < needed {
            return Err(policy_err(PolicyReject::BelowMinRelay { fee, vsize, needed }));
        }
        let mempool_len = self.mempool.len();
        let conflicts: BTreeSet<usize> =
            pe.conflicts.union(&ce.conflicts).copied().filter(|i| *i < mempool_len).collect();
        let evicted = with_descendants(&base, &conflicts);
        if !conflicts.is_empty() {
            check_package_replacement(&base, &policy, parent, (pe.fee, pe.vsize), (fee, vsize), &conflicts, &evicted)
                .map_err(policy_err)?;
        }
        let evicted: Vec<Txid> = evicted.iter().map(|i| base.txs[*i].compute_txid()).collect();
        drop(base);
        drop(with_parent);
        self.mempool.retain(|m| !evicted.contains(&m.compute_txid()));
        self.mempool.push(parent.clone());
        self.mempool.push(child.clone());
        Ok(())
    }

    /// Builds the next block by ancestor-package feerate above the market's minimum.
    pub(super) fn mine_block_node(&mut self) -> Vec<Transaction> {
        let block_height = self.height + 1;
        let min = self.market.as_ref().map(|m| m.min_feerate(block_height));
        let mut mined = Vec::new();
        loop {
            let view = View::new(self, &[]);
            let mut candidates: Vec<(u64, u64, Vec<usize>)> = Vec::new();
            for i in 0..view.txs.len() {
                let mut package: Vec<usize> = view.ancestors(view.txs[i]).into_iter().collect();
                package.push(i);
                let fees: Option<u64> = package.iter().map(|p| view.fee(*p)).sum();
                let Some(fee) = fees else { continue };
                let size: u64 = package.iter().map(|p| view.vsize(*p)).sum();
                if min.is_some_and(|m| fee < fee_at(m, size)) {
                    continue;
                }
                candidates.push((fee, size, topological(&view, package)));
            }
            // Highest feerate first (exact, by cross-multiplication); ties in arrival order.
            candidates.sort_by(|a, b| {
                (u128::from(b.0) * u128::from(a.1))
                    .cmp(&(u128::from(a.0) * u128::from(b.1)))
                    .then_with(|| a.2.last().cmp(&b.2.last()))
            });
            let chosen = candidates.into_iter().find_map(|(_, _, package)| {
                let txs: Vec<Transaction> = package.iter().map(|p| view.txs[*p].clone()).collect();
                self.package_valid(&txs).then_some(txs)
            });
            drop(view);
            let Some(txs) = chosen else { break };
            for tx in txs {
                let txid = tx.compute_txid();
                for input in &tx.input {
                    self.utxos.remove(&input.previous_output);
                }
                for (vout, out) in tx.output.iter().enumerate() {
                    self.utxos.insert(OutPoint { txid, vout: vout as u32 }, (out.clone(), block_height));
                }
                self.confirmed.insert(txid, (tx.clone(), block_height));
                self.mempool.retain(|m| m.compute_txid() != txid);
                mined.push(tx);
            }
        }
        self.height = block_height;
        self.blocks.push((block_height, mined.iter().map(Transaction::compute_txid).collect()));
        self.evict_invalid();
        mined
    }

    /// Whether `txs`, in order, are valid by consensus in the next block.
    fn package_valid(&self, txs: &[Transaction]) -> bool {
        let next = self.height + 1;
        let mut created: HashMap<OutPoint, (TxOut, u32)> = HashMap::new();
        let mut spent: HashSet<OutPoint> = HashSet::new();
        for tx in txs {
            let lookup = |op: &OutPoint| {
                if spent.contains(op) {
                    return None;
                }
                created.get(op).cloned().or_else(|| self.utxos.get(op).cloned())
            };
            if self.check_coins(tx, lookup).is_err() {
                return false;
            }
            let txid = tx.compute_txid();
            spent.extend(tx.input.iter().map(|i| i.previous_output));
            for (vout, out) in tx.output.iter().enumerate() {
                created.insert(OutPoint { txid, vout: vout as u32 }, (out.clone(), next));
            }
        }
        true
    }

    /// Drops from the mempool what is confirmed or can no longer be valid: a transaction with
    /// an input neither unspent on chain nor created by a mempool transaction (its parent was
    /// double-spent by a block), then its descendants.
    pub(super) fn evict_invalid(&mut self) {
        loop {
            let confirmed = &self.confirmed;
            let utxos = &self.utxos;
            let outputs: HashMap<Txid, usize> = self
                .mempool
                .iter()
                .filter(|m| !confirmed.contains_key(&m.compute_txid()))
                .map(|m| (m.compute_txid(), m.output.len()))
                .collect();
            let before = self.mempool.len();
            self.mempool.retain(|tx| {
                !confirmed.contains_key(&tx.compute_txid())
                    && tx.input.iter().all(|i| {
                        utxos.contains_key(&i.previous_output)
                            || outputs
                                .get(&i.previous_output.txid)
                                .is_some_and(|n| (i.previous_output.vout as usize) < *n)
                    })
            });
            if self.mempool.len() == before {
                break;
            }
        }
    }
}

fn with_descendants(view: &View<'_>, set: &BTreeSet<usize>) -> BTreeSet<usize> {
    let mut all = set.clone();
    for c in set {
        all.extend(view.descendants(*c));
    }
    all
}

/// `package` (view indices, closed under ancestors) with parents before children.
fn topological(view: &View<'_>, package: Vec<usize>) -> Vec<usize> {
    let members: BTreeSet<usize> = package.iter().copied().collect();
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    fn visit(
        view: &View<'_>,
        i: usize,
        members: &BTreeSet<usize>,
        placed: &mut BTreeSet<usize>,
        order: &mut Vec<usize>,
    ) {
        if !placed.insert(i) {
            return;
        }
        for p in view.parents(view.txs[i]) {
            if members.contains(&p) {
                visit(view, p, members, placed, order);
            }
        }
        order.push(i);
    }
    for i in package {
        visit(view, i, &members, &mut placed, &mut order);
    }
    order
}

/// BIP125 rules 6, 5, 2, 3 and 4 in Core 28's order.
fn check_replacement(
    view: &View<'_>,
    policy: &Policy,
    tx: &Transaction,
    fee: u64,
    vsize: u64,
    conflicts: &BTreeSet<usize>,
    evicted: &BTreeSet<usize>,
) -> Result<(), PolicyReject> {
    let rbf = |r| Err(PolicyReject::Rbf(r));
    let feerate = feerate_per_kvb(fee, vsize);
    for c in conflicts {
        let conflict_feerate = feerate_per_kvb(view.fee(*c).unwrap_or(0), view.vsize(*c));
        if feerate <= conflict_feerate {
            let conflict = view.txs[*c].compute_txid();
            return rbf(RbfReject::FeerateNotHigher { conflict, feerate, conflict_feerate });
        }
    }
    if evicted.len() > policy.max_replacements {
        return rbf(RbfReject::TooManyReplacements { evicted: evicted.len() });
    }
    let parents_of_conflicts: HashSet<Txid> =
        conflicts.iter().flat_map(|c| view.txs[*c].input.iter().map(|i| i.previous_output.txid)).collect();
    for (input, i) in tx.input.iter().enumerate() {
        let txid = i.previous_output.txid;
        if !parents_of_conflicts.contains(&txid) && view.index.contains_key(&txid) {
            return rbf(RbfReject::AddsUnconfirmed { input });
        }
    }
    pays_for_replacement(view, policy, fee, vsize, evicted)
}

/// Rules 3 and 4: at least the evicted fees, plus the incremental relay feerate on `vsize`.
fn pays_for_replacement(
    view: &View<'_>,
    policy: &Policy,
    fee: u64,
    vsize: u64,
    evicted: &BTreeSet<usize>,
) -> Result<(), PolicyReject> {
    let evicted_fee: u64 = evicted.iter().map(|e| view.fee(*e).unwrap_or(0)).sum();
    if fee < evicted_fee {
        return Err(PolicyReject::Rbf(RbfReject::LessFeeThanEvicted { fee, evicted_fee }));
    }
    let additional = fee - evicted_fee;
    let needed = fee_at(policy.incremental_relay_feerate, vsize);
    if additional < needed {
        return Err(PolicyReject::Rbf(RbfReject::IncrementTooSmall { additional, needed }));
    }
    Ok(())
}

/// Core 28's package replacement: conflicts in clusters of at most two, no in-mempool
/// ancestors, rules 5, 3 and 4 on the package's fee and vsize, a package feerate above the
/// parent's own, and (for the feerate diagram) above each evicted cluster's.
fn check_package_replacement(
    view: &View<'_>,
    policy: &Policy,
    parent: &Transaction,
    (parent_fee, parent_vsize): (u64, u64),
    (fee, vsize): (u64, u64),
    conflicts: &BTreeSet<usize>,
    evicted: &BTreeSet<usize>,
) -> Result<(), PolicyReject> {
    let shape = Err(PolicyReject::Rbf(RbfReject::PackageShape));
    if !view.parents(parent).is_empty() {
        return shape;
    }
    if evicted.len() > policy.max_replacements {
        return Err(PolicyReject::Rbf(RbfReject::TooManyReplacements { evicted: evicted.len() }));
    }
    for e in evicted {
        let cluster = view.ancestors(view.txs[*e]).len() + view.descendants(*e).len() + 1;
        if cluster > 2 {
            return shape;
        }
    }
    pays_for_replacement(view, policy, fee, vsize, evicted)?;
    let package_feerate = feerate_per_kvb(fee, vsize);
    if package_feerate <= feerate_per_kvb(parent_fee, parent_vsize) {
        return shape;
    }
    for c in conflicts {
        let mut cluster = view.ancestors(view.txs[*c]);
        cluster.extend(view.descendants(*c));
        cluster.insert(*c);
        let cluster_fee: u64 = cluster.iter().map(|i| view.fee(*i).unwrap_or(0)).sum();
        let cluster_vsize: u64 = cluster.iter().map(|i| view.vsize(*i)).sum();
        let conflict_feerate = feerate_per_kvb(cluster_fee, cluster_vsize);
        if package_feerate <= conflict_feerate {
            let conflict = view.txs[*c].compute_txid();
            return Err(PolicyReject::Rbf(RbfReject::FeerateNotHigher {
                conflict,
                feerate: package_feerate,
                conflict_feerate,
            }));
        }
    }
    Ok(())
}
