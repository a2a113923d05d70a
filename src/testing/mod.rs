//! Test utilities for the crate's own tests and for embedders' (feature `test-utils`).
//!
//! * [`rng`]: a small deterministic PRNG, so every simulation is reproducible from a seed;
//! * [`consensus`]: script verification by Bitcoin Core's interpreter with every pre-taproot
//!   consensus flag;
//! * [`chain`]: a simulated chain (UTXO set, absolute and BIP-0068 relative lock times,
//!   double-spends, value conservation, Core's interpreter, a mempool, reorgs);
//! * [`policy`]: Bitcoin Core 28/29's relay policy (standardness, dust, minimum relay feerate,
//!   replacement, TRUC, ephemeral dust, packages), applied by a chain built
//!   [`with_policy`](chain::Chain::with_policy);
//! * [`market`]: a fee market (each block's minimum feerate from a fee curve, with spikes, and
//!   fee estimates), followed by a chain built [`with_market`](chain::Chain::with_market);
//! * [`net`]: a seeded network that drops, duplicates, reorders and delays messages;
//! * [`lightning`], [`duplex`]: two-peer harnesses that drive a channel over the wire encoding
//!   and check the persistence contract on every step;
//! * [`invariants`]: the checks every simulation runs (funds conserved and owned, honest
//!   balances protected, broadcasts valid);
//! * [`wallet`]: a one-key P2WPKH wallet for fee inputs;
//! * [`sim`]: seeded whole-channel simulations of each layer with crashes, stale restores, a
//!   faulty network and reorgs, run by the `simulate` test (see its docs for the long run).
//!
//! Everything here panics on a broken expectation: it is meant for tests only.
//!
//! # Example
//!
//! An embedder's test can run the crate's seeded simulations (the same ones `tests/simulate.rs`
//! runs) and use the simulated chain for its own transactions:
//!
//! ```
//! use paychan::testing::{chain::Chain, sim};
//!
//! let summary = sim::run_many("spilman", 0..3, sim::spilman::run);
//! assert!(summary.failed.is_empty(), "failing seeds: {:?}", summary.failed);
//!
//! let mut chain = Chain::at(800_000);
//! assert!(chain.mine_block().is_empty());
//! assert_eq!(chain.height, 800_001);
//! ```
//!
//! With the `proptest` feature, `strategies` holds proptest strategies for the crate's public
//! inputs.

pub mod chain;
pub mod consensus;
pub mod duplex;
pub mod hostile;
pub mod invariants;
pub mod lightning;
pub mod market;
pub mod net;
pub mod policy;
pub mod rng;
pub mod sim;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod wallet;
