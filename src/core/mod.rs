//! The shared core: pure functions and value types that all three channel layers stand on.
//!
//! Nothing in here does I/O, reads a clock or draws randomness. Every function takes what it
//! needs as arguments and returns values; the channel layers (`spilman`, `duplex`,
//! `lightning`) drive these functions from their state machines.
//!
//! | module | concern |
//! |---|---|
//! | [`units`] | [`MilliSats`], overflow-checked amount arithmetic, block heights |
//! | [`keys`] | typed keys and basepoints, BOLT #3 key derivations, channel keys from a seed |
//! | [`shachain`] | per-commitment secret generation and the compact 49-slot receiver store |
//! | [`hashlock`] | payment hash / preimage, preimage extraction from witnesses |
//! | [`script`] | witness scripts and witnesses for every spending path the crate uses |
//! | [`sign`] | BIP-0143 sighashes, deterministic RFC6979 signing, verification, the [`sign::Signer`] seam |
//! | [`standard`] | which payout scripts are standard (Bitcoin Core's output templates), one policy for every layer |
//! | [`commitment`] | BOLT #3 commitment, HTLC-timeout/-success and closing transactions |
//! | [`encode`] | the crate's own versioned binary encoding (snapshots and messages) |
//! | [`delta`] | delta records: a state's changes as a patch of its encoding, and their replay |
//! | [`wire`] | the one codec of the Spilman and duplex messages (header, one-record messages, counted lists) |
//! | [`feebump`] | deadline-aware fee bumping (RBF, CPFP, aggregation) shared by every layer |

mod bip143;
pub mod commitment;
pub mod delta;
pub mod encode;
pub mod feebump;
pub mod hashlock;
pub mod keys;
pub mod script;
pub mod shachain;
pub mod sign;
pub mod standard;
pub mod tower;
pub mod units;
pub mod wire;

pub use hashlock::{PaymentHash, PaymentPreimage};
pub use units::{BlockHeight, MilliSats};
