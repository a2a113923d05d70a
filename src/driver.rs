//! A small driver for `std` embedders: applies a channel's [`Effects`] to the embedder's storage,
//! transport and chain backend, in the order the [`driving`](crate::driving) contract demands,
//! and runs the channel's fee [`Bumper`] (as quinn is to quinn-proto: the channels stay
//! sans-I/O; this is the loop every embedder would otherwise write).
//!
//! One [`Driver`] per channel. After each call on the channel, hand its effects to
//! [`Driver::apply`]; on each new block, call [`Driver::on_block`] with the channel's signer,
//! the wallet and the current fee estimates, then the channel's own `handle_chain`.
//!
//! What `apply` guarantees:
//! 1. the state update is persisted first; if that fails, **nothing** is sent, broadcast or
//!    watched and the error is returned (treat the channel as crashed: restore it from storage);
//! 2. then every message is sent, in order; a failed send (the connection dropped) is reported
//!    but does not stop the rest — broadcasts protect money and must go out regardless;
//! 3. then transactions are broadcast, the bump requests are given to the bumper (whose own
//!    state is persisted before anything it returns is broadcast), and watches are registered;
//! 4. the events and the next deadline are returned.
//!
//! # Example
//! ```
//! use paychan::driver::{Chain, Driver, Storage, Transport};
//! use paychan::driving::{Effects, StateUpdate, Watch};
//! use paychan::bitcoin::Transaction;
//!
//! #[derive(Default)]
//! struct Memory { channel: Vec<StateUpdate>, bumper: Vec<StateUpdate> }
//! impl Storage for Memory {
//!     type Error = std::convert::Infallible;
//!     fn persist_channel(&mut self, u: &StateUpdate) -> Result<(), Self::Error> { self.channel.push(u.clone()); Ok(()) }
//!     fn persist_bumper(&mut self, u: &StateUpdate) -> Result<(), Self::Error> { self.bumper.push(u.clone()); Ok(()) }
//! }
//! #[derive(Default)]
//! struct Outbox(Vec<String>);
//! impl Transport<String> for Outbox {
//!     type Error = std::io::Error;
//!     fn send(&mut self, m: &String) -> Result<(), Self::Error> { self.0.push(m.clone()); Ok(()) }
//! }
//! #[derive(Default)]
//! struct Node { sent: Vec<Transaction>, watching: Vec<Watch> }
//! impl Chain for Node {
//!     fn broadcast(&mut self, tx: &Transaction) { self.sent.push(tx.clone()) }
//!     fn watch(&mut self, w: Watch) { self.watching.push(w) }
//! }
//!
//! let mut driver = Driver::new(Memory::default(), Outbox::default(), Node::default());
//! let mut fx: Effects<String, &str> = Effects::none();
//! fx.update = Some(StateUpdate::snapshot(1, vec![1, 2, 3]));
//! fx.send.push("hello".to_string());
//! fx.events.push("something happened");
//! let done = driver.apply(fx).unwrap();
//! assert_eq!(done.events, ["something happened"]);
//! assert_eq!(driver.storage().channel.len(), 1);
//! assert_eq!(driver.transport().0, ["hello"]);
//! ```

use std::fmt;
use std::vec::Vec;

use bitcoin::Transaction;

use crate::core::feebump::{BumpEvent, Bumper, FeeEstimates, FeeWallet};
use crate::core::sign::Signer;
use crate::core::units::BlockHeight;
use crate::driving::{ChainEvent, Effects, StateUpdate, Watch};

/// Durable storage of one channel and its bumper.
pub trait Storage {
    /// Why a write failed.
    type Error;

    /// Durably stores the channel's `update` in one atomic write, returning only once it is
    /// durable: appends its records (in order) and, if it carries one, replaces the snapshot (a
    /// Lightning update is usually a delta record only; see the
    /// [persistence contract](crate::driving)).
    ///
    /// # Errors
    /// If the write failed (the driver then acts on nothing of the effects).
    fn persist_channel(&mut self, update: &StateUpdate) -> Result<(), Self::Error>;

    /// Durably stores the bumper's snapshot (same rules).
    ///
    /// # Errors
    /// If the write failed.
    fn persist_bumper(&mut self, update: &StateUpdate) -> Result<(), Self::Error>;
}

/// The connection to the peer.
pub trait Transport<M> {
    /// Why a send failed.
    type Error;

    /// Sends one message.
    ///
    /// # Errors
    /// If the connection is gone (the channel will resend what the peer missed when they
    /// reconnect and exchange reestablish messages).
    fn send(&mut self, message: &M) -> Result<(), Self::Error>;
}

/// The embedder's view of the chain.
pub trait Chain {
    /// Broadcasts a transaction (again if already broadcast: must be harmless).
    fn broadcast(&mut self, tx: &Transaction);

    /// Starts watching; matching transactions are to be reported to the channel (and to
    /// [`Driver::handle_chain`]).
    fn watch(&mut self, watch: Watch);
}

/// What the channel's effects leave for the embedder after the driver applied them.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied<E, TE> {
    /// The channel's events.
    pub events: Vec<E>,
    /// Call the channel's `handle_chain` by this height at the latest.
    pub next_deadline: Option<BlockHeight>,
    /// Sends that failed (the connection is gone; reconnect and reestablish).
    pub send_errors: Vec<TE>,
    /// What the bumper reported.
    pub bump_events: Vec<BumpEvent>,
}

/// The storage refused a write: nothing of the effects was acted on.
#[derive(PartialEq, Eq)]
pub struct PersistFailed<SE>(pub SE);

impl<SE> fmt::Debug for PersistFailed<SE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Storage errors may quote the bytes they failed to write: keep them out.
        f.write_str("PersistFailed(..)")
    }
}

impl<SE> fmt::Display for PersistFailed<SE> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("persisting a state update failed; nothing was sent or broadcast")
    }
}

impl<SE> std::error::Error for PersistFailed<SE> {}

/// What [`Driver::apply`] returns.
pub type ApplyResult<E, TE, SE> = Result<Applied<E, TE>, PersistFailed<SE>>;

/// Applies one channel's effects and runs its bumper (see the [module docs](self)).
#[derive(Debug)]
pub struct Driver<S, T, C> {
    storage: S,
    transport: T,
    chain: C,
    bumper: Bumper,
}

impl<S: Storage, T, C: Chain> Driver<S, T, C> {
    /// A driver with an empty bumper.
    pub fn new(storage: S, transport: T, chain: C) -> Self {
        Driver { storage, transport, chain, bumper: Bumper::new() }
    }

    /// A driver whose bumper was restored (from [`Bumper::decode`] of the last bumper snapshot).
    pub fn with_bumper(storage: S, transport: T, chain: C, bumper: Bumper) -> Self {
        Driver { storage, transport, chain, bumper }
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, for the embedder's own writes (an outbox, its bookkeeping) and reads
    /// between calls. Anything it persists outside [`Storage::persist_channel`] is outside the
    /// driver's ordering guarantee.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, to replace a dropped connection.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The chain backend.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// The chain backend, to poll it for new blocks and the transactions it watches (the
    /// driver only broadcasts through it and registers watches).
    pub fn chain_mut(&mut self) -> &mut C {
        &mut self.chain
    }

    /// The bumper.
    pub fn bumper(&self) -> &Bumper {
        &self.bumper
    }

    /// Applies `fx` in the contract's order.
    ///
    /// # Errors
    /// [`PersistFailed`] if the storage refused the channel's or the bumper's update; nothing
    /// after it was acted on.
    pub fn apply<M, E>(&mut self, fx: Effects<M, E>) -> ApplyResult<E, <T as Transport<M>>::Error, S::Error>
    where
        T: Transport<M>,
    {
        if let Some(update) = &fx.update {
            self.storage.persist_channel(update).map_err(PersistFailed)?;
        }
        let mut send_errors = Vec::new();
        for m in &fx.send {
            if let Err(e) = self.transport.send(m) {
                send_errors.push(e);
            }
        }
        for tx in &fx.broadcast {
            self.chain.broadcast(tx);
        }
        let mut bump_events = Vec::new();
        for request in fx.bumps {
            let bfx = self.bumper.track(request);
            self.apply_bumper(bfx, &mut bump_events)?;
        }
        for w in fx.watch {
            self.chain.watch(w);
        }
        Ok(Applied { events: fx.events, next_deadline: fx.next_deadline, send_errors, bump_events })
    }

    fn apply_bumper(
        &mut self,
        bfx: Effects<core::convert::Infallible, BumpEvent>,
        events: &mut Vec<BumpEvent>,
    ) -> Result<(), PersistFailed<S::Error>> {
        if let Some(update) = &bfx.update {
            self.storage.persist_bumper(update).map_err(PersistFailed)?;
        }
        for tx in &bfx.broadcast {
            self.chain.broadcast(tx);
        }
        for w in bfx.watch {
            self.chain.watch(w);
        }
        events.extend(bfx.events);
        Ok(())
    }

    /// The block work of the bumper: with the chain at `tip` and the current `estimates`,
    /// (re-)broadcasts every pending time-critical transaction at the fee its deadline needs.
    /// Call it on every new block, with the channel's signer.
    ///
    /// # Errors
    /// [`PersistFailed`] if the bumper's snapshot could not be stored (nothing was broadcast).
    pub fn on_block<G: Signer + ?Sized, W: FeeWallet + ?Sized>(
        &mut self,
        tip: BlockHeight,
        estimates: &FeeEstimates,
        wallet: &mut W,
        signer: &G,
    ) -> Result<Vec<BumpEvent>, PersistFailed<S::Error>> {
        let bfx = self.bumper.bump(tip, estimates, wallet, signer);
        let mut events = Vec::new();
        self.apply_bumper(bfx, &mut events)?;
        Ok(events)
    }

    /// Tells the bumper of a chain event (a confirmation resolves requests; a reorg reopens
    /// them). Give the channel the same event.
    ///
    /// # Errors
    /// [`PersistFailed`] if the bumper's snapshot could not be stored.
    pub fn handle_chain(&mut self, event: &ChainEvent<'_>) -> Result<Vec<BumpEvent>, PersistFailed<S::Error>> {
        let bfx = self.bumper.handle_chain(event);
        let mut events = Vec::new();
        self.apply_bumper(bfx, &mut events)?;
        Ok(events)
    }

    /// Takes the parts back.
    pub fn into_parts(self) -> (S, T, C, Bumper) {
        (self.storage, self.transport, self.chain, self.bumper)
    }
}
