//! A tower for duplex channels. A duplex channel needs no revocation secrets: an old branch
//! loses only if the newest one is published in time, each node the moment its relative lock
//! matures. So the tower holds the newest fully signed branch (kickoff, nodes, leaf), the
//! client's best received payment and its refund, as one [`TowerPackage`] replaced at each
//! reset and payment ([`Channel::tower_package`]). Every transaction in it is complete
//! (`SIGHASH_ALL` on both sides): the tower can publish them, never alter or redirect them, and
//! it holds no key.
//!
//! [`DuplexTower`] is sans-I/O: it is shown each block's transactions and returns what to
//! broadcast. It stays silent until the kickoff confirms (the channel is being closed
//! unilaterally, by anyone); then it publishes each next transaction of the package once its
//! parent confirmed and its BIP-0068 relative lock (the input's `nSequence`) matured, again
//! every block until it confirms or its input is spent by something else. Tree transactions
//! are zero-fee TRUC transactions with a pay-to-anchor output: the tower's operator pays their
//! fee by a CPFP child of its own, exactly as the channel's embedder would; the payment and the
//! refund carry their fees. HTLCs are not covered: their claims need preimages or timeouts
//! chosen later.
//!
//! Encoding: `kind ‖ version ‖ TLV(0: funding outpoint, 2: transactions)`.

use alloc::vec::Vec;
use core::fmt;

use bitcoin::{OutPoint, Transaction, Txid};

use super::{leaf, Channel, CommandError, Role};
use crate::core::encode::{read_header, required, DecodeError, TlvWriter};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;

const KIND_PACKAGE: u8 = 0x77;
const VERSION: u8 = 1;
/// The most transactions a package may hold (a tree of depth 64, a payment and a refund).
pub const MAX_PACKAGE_TXS: usize = 67;

/// What a duplex tower holds for one channel: the funding outpoint and a chain of fully signed
/// transactions, each spending the funding output (the first, the kickoff) or an output of an
/// earlier one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TowerPackage {
    /// The channel's funding output.
    pub funding: OutPoint,
    /// Kickoff, nodes, leaf, then the client's best received payment and its refund if any.
    pub txs: Vec<Transaction>,
}

/// Why a package was refused (the tower's state is unchanged).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PackageError {
    /// The bytes do not decode.
    Decode(DecodeError),
    /// Empty, too long, or a transaction that spends neither the funding output nor an output
    /// of an earlier transaction of the package, or more than one input.
    NotAChain,
    /// A replacement for another channel (another funding output).
    OtherChannel,
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageError::Decode(e) => write!(f, "package does not decode: {e}"),
            PackageError::NotAChain => f.write_str("package is not a chain from the funding output"),
            PackageError::OtherChannel => f.write_str("package is for another channel"),
        }
    }
}

impl core::error::Error for PackageError {}

impl TowerPackage {
    /// Checks the package is a chain of single-input transactions from the funding output.
    fn check(&self) -> Result<(), PackageError> {
        if self.txs.is_empty() || self.txs.len() > MAX_PACKAGE_TXS {
            return Err(PackageError::NotAChain);
        }
        let mut txids: Vec<Txid> = Vec::with_capacity(self.txs.len());
        for (i, tx) in self.txs.iter().enumerate() {
            let [input] = tx.input.as_slice() else { return Err(PackageError::NotAChain) };
            let prev = input.previous_output;
            let ok = if i == 0 {
                prev == self.funding
            } else {
                self.txs.iter().zip(&txids).any(|(t, id)| *id == prev.txid && (prev.vout as usize) < t.output.len())
            };
            if !ok {
                return Err(PackageError::NotAChain);
            }
            txids.push(tx.compute_txid());
        }
        Ok(())
    }

    /// The versioned encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut t = TlvWriter::new(KIND_PACKAGE, VERSION);
        t.record(0, |w| {
            w.outpoint(&self.funding);
        })
        .record(2, |w| {
            w.bigsize(self.txs.len() as u64);
            for tx in &self.txs {
                w.transaction(tx);
            }
        });
        t.finish()
    }

    /// Decodes a package (and checks it is a chain from the funding output).
    ///
    /// # Errors
    /// [`PackageError::Decode`] for malformed bytes, [`PackageError::NotAChain`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PackageError> {
        let (version, tlv) = read_header(bytes, KIND_PACKAGE).map_err(PackageError::Decode)?;
        if version != VERSION {
            return Err(PackageError::Decode(DecodeError::UnknownVersion(version)));
        }
        let (mut funding, mut txs) = (None, None);
        tlv.for_each(|ty, r| {
            match ty {
                0 => funding = Some(r.outpoint()?),
                2 => {
                    let n = r.bigsize()?;
                    if n > MAX_PACKAGE_TXS as u64 {
                        return Err(DecodeError::InvalidValue("txs"));
                    }
                    let mut v = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        v.push(r.transaction("tx")?);
                    }
                    txs = Some(v);
                }
                _ => return Ok(false),
            }
            Ok(true)
        })
        .map_err(PackageError::Decode)?;
        let p = TowerPackage {
            funding: required(funding, "funding").map_err(PackageError::Decode)?,
            txs: required(txs, "txs").map_err(PackageError::Decode)?,
        };
        p.check()?;
        Ok(p)
    }
}

impl Channel {
    /// The package for a duplex tower: the fully signed kickoff and current branch, our best
    /// received payment in the peer's leaf channel (fully signed by both), and the refund of our
    /// own leaf channel (valid `T_r` blocks after the leaf). Give it to the tower after every
    /// reset and every payment received; it replaces the previous one.
    ///
    /// # Errors
    /// As [`Channel::signed_branch`]; [`CommandError::Signer`] if a payment or refund cannot be
    /// signed.
    pub fn tower_package<S: Signer + ?Sized>(&self, signer: &S) -> Result<TowerPackage, CommandError> {
        let mut txs = self.signed_branch(signer)?;
        let funding = self.funding.ok_or(CommandError::WrongPhase)?;
        let leaf_txid = self.current_leaf_txid().ok_or(CommandError::WrongPhase)?;
        let keys = self.keys.as_ref().ok_or(CommandError::WrongPhase)?;
        let them: Role = !self.role;
        let theirs = &self.channels[them.index()];
        if let (Some(sig), Some(t)) =
            (theirs.signature, leaf::leaf_template(&self.terms, keys, them, leaf_txid, self.values))
        {
            if let Ok(built) = t.build(&theirs.state) {
                txs.push(t.complete(signer, &built, &sig).map_err(CommandError::Signer)?);
            }
        }
        if let Some(t) = leaf::leaf_template(&self.terms, keys, self.role, leaf_txid, self.values) {
            if let Some(refund) = t.refund_tx(self.terms.refund_fee, BlockHeight(0)) {
                let sig = t.sign_refund(signer, &refund).map_err(CommandError::Signer)?;
                txs.extend(t.complete_refund(refund, &sig, None));
            }
        }
        Ok(TowerPackage { funding, txs })
    }
}

/// A tower for one duplex channel (see the module docs).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DuplexTower {
    package: TowerPackage,
    txids: Vec<Txid>,
    /// Confirmation height of each transaction of the package.
    confirmed: Vec<Option<BlockHeight>>,
    /// Outpoints spent on chain by transactions not in the package.
    foreign: Vec<OutPoint>,
}

impl DuplexTower {
    /// A tower holding `package` (its encoding, as the client sends it).
    ///
    /// # Errors
    /// [`PackageError`].
    pub fn new(package: &[u8]) -> Result<Self, PackageError> {
        let package = TowerPackage::decode(package)?;
        let txids: Vec<Txid> = package.txs.iter().map(Transaction::compute_txid).collect();
        Ok(DuplexTower { confirmed: alloc::vec![None; txids.len()], txids, package, foreign: Vec::new() })
    }

    /// Replaces the package with a newer one of the same channel. Confirmations already seen of
    /// transactions the new package shares (the kickoff, the unchanged nodes) are kept.
    ///
    /// # Errors
    /// [`PackageError`]; the tower is unchanged then.
    pub fn replace(&mut self, package: &[u8]) -> Result<(), PackageError> {
        let mut new = DuplexTower::new(package)?;
        if new.package.funding != self.package.funding {
            return Err(PackageError::OtherChannel);
        }
        for (i, txid) in new.txids.iter().enumerate() {
            if let Some(j) = self.txids.iter().position(|t| t == txid) {
                new.confirmed[i] = self.confirmed[j];
            }
        }
        new.foreign = core::mem::take(&mut self.foreign);
        *self = new;
        Ok(())
    }

    /// The package held.
    pub fn package(&self) -> &TowerPackage {
        &self.package
    }

    /// Shows the tower the block at `height` and its transactions; returns what to broadcast
    /// (each transaction of the package that is valid in the next block and not yet confirmed
    /// or conflicted).
    pub fn block(&mut self, height: BlockHeight, txs: &[Transaction]) -> Vec<Transaction> {
        for tx in txs {
            let txid = tx.compute_txid();
            if let Some(i) = self.txids.iter().position(|t| *t == txid) {
                if let Some(c) = self.confirmed.get_mut(i) {
                    c.get_or_insert(height);
                }
            } else {
                self.foreign.extend(tx.input.iter().map(|i| i.previous_output));
            }
        }
        // Nothing to do until the kickoff confirmed.
        if self.confirmed.first().copied().flatten().is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, tx) in self.package.txs.iter().enumerate().skip(1) {
            if self.confirmed.get(i).copied().flatten().is_some() {
                continue;
            }
            let Some(input) = tx.input.first() else { continue };
            let prev = input.previous_output;
            if self.foreign.contains(&prev) {
                continue;
            }
            let Some(parent) = self.txids.iter().position(|t| *t == prev.txid) else { continue };
            let Some(parent_height) = self.confirmed.get(parent).copied().flatten() else { continue };
            let lock = match input.sequence.to_relative_lock_time() {
                Some(bitcoin::relative::LockTime::Blocks(h)) => u32::from(h.value()),
                Some(bitcoin::relative::LockTime::Time(_)) => continue,
                None => 0,
            };
            if parent_height.checked_add(lock).is_some_and(|v| height.0.saturating_add(1) >= v.0) {
                out.push(tx.clone());
            }
        }
        out
    }
}
