//! # paychan: Bitcoin payment channels over one sans-I/O core
//!
//! Three generations of payment channels share one core:
//!
//! * [`spilman`]: unidirectional micropayment channels (payer → payee), with the CLTV-script
//!   refund or the original pre-signed refund;
//! * [`duplex`]: Decker–Wattenhofer duplex channels on an invalidation tree of relative timelocks
//!   (BIP-0068), with two Spilman leaf channels, resets, HTLCs and both closes;
//! * [`lightning`]: Poon–Dryja channels with revocable commitments and HTLCs (BOLT 2/3/5),
//!   on and off chain, with penalties and a watchtower kit;
//! * [`multihop`]: the expiry deltas a payment needs to cross channels of different types, and a
//!   sans-I/O forwarding node over any two of them.
//!
//! [`core`] holds what they share: typed keys and BOLT #3 derivations, scripts and witnesses,
//! BIP-0143 signing with deterministic RFC6979, hashlocks, the per-commitment secret chain,
//! BOLT #3 commitment/HTLC/closing transactions and the crate's versioned encoding. Every output
//! the crate locks with a script is segwit v0 P2WSH, except a Lightning commitment's `to_remote`
//! without anchors (P2WPKH); payouts go to the standard script each party chose. The test suite runs
//! each spending path through Bitcoin Core's script interpreter. The protocol book is `docs/`.
//!
//! ## Sans-I/O
//! Nothing here touches a socket, a file, a clock or a random number generator. A channel is a
//! value; the embedder feeds it commands, peer messages and chain events, and each call returns
//! [`driving::Effects`]: persist this, then send these messages, broadcast these transactions,
//! watch these outputs, call back by this height. The crate is `#![no_std]` with `alloc`; the
//! default `std` feature changes no behaviour.
//!
//! ## The driving loop
//! ```
//! use paychan::bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Transaction, TxIn, Txid};
//! use paychan::bitcoin::{WPubkeyHash, hashes::Hash};
//! use paychan::core::keys::Seed;
//! use paychan::core::sign::InMemorySigner;
//! use paychan::core::BlockHeight;
//! use paychan::driving::ChainTip;
//! use paychan::spilman::{Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let payer_keys = InMemorySigner::from_seed(&Seed::from_bytes([1; 32]), 0);
//! let payee_keys = InMemorySigner::from_seed(&Seed::from_bytes([2; 32]), 0);
//! let tip = ChainTip::at(800_000);
//! let script = |n| ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]));
//!
//! // The payee states its terms.
//! let (mut payee, effects) = Payee::new(PayeeConfig {
//!     variant: Variant::Cltv,
//!     payee_script: script(2),
//!     expiry: BlockHeight(800_000 + 1_008),
//!     min_first_payment: Amount::from_sat(1_000),
//!     dust_limit: Amount::from_sat(546),
//!     payment_fee: Amount::from_sat(300),
//!     close_margin: 36,
//!     htlc_min_blocks: 24,
//!     min_depth: 0,
//!     claim_fee: Amount::from_sat(300),
//! }, &payee_keys);
//! let Msg::Offer(offer) = Msg::decode(&effects.send[0].encode())? else { unreachable!() };
//!
//! // The payer accepts them and asks its wallet for the funding output (the one funding flow
//! // of every layer, `core::funding`): the wallet signs a transaction paying it (from segwit
//! // inputs; the coin here is made up) and hands it over; the payer broadcasts it.
//! let (mut payer, effects) = Payer::open(offer, PayerConfig {
//!     capacity: Amount::from_sat(100_000),
//!     payer_script: script(1),
//!     refund_fee: Amount::from_sat(300),
//!     claim_fee: Amount::from_sat(300),
//!     first_payment: Amount::from_sat(1_000),
//!     max_lifetime: 4_320,
//! }, &payer_keys, tip)?;
//! let _durable = effects.update; // write it to disk first
//! let request = effects.funding.ok_or("no funding request")?;
//! let funding_tx = Transaction {
//!     version: transaction::Version::TWO,
//!     lock_time: absolute::LockTime::ZERO,
//!     input: vec![TxIn { previous_output: OutPoint::new(Txid::from_byte_array([7; 32]), 0), ..TxIn::default() }],
//!     output: vec![request.output],
//! };
//! let mut effects = payer.fund(funding_tx, &payer_keys)?;
//!
//! // The loop: persist first, then send (here straight to the peer), broadcast, watch.
//! for _ in 0..10 {
//!     let _durable = effects.update.take(); // write it to disk before going on
//!     for msg in effects.send.drain(..) {
//!         let reply = payee.handle_message(Msg::decode(&msg.encode())?, &payee_keys, tip)?;
//!         let _payee_durable = reply.update; // the payee persists before acknowledging
//!         for ack in reply.send {
//!             let _ = payer.handle_message(ack, &payer_keys, tip)?;
//!         }
//!     }
//!     effects = payer.pay(Amount::from_sat(100), &payer_keys)?;
//! }
//! assert_eq!(payee.received(), Amount::from_sat(1_900));
//! # Ok(()) }
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub extern crate bitcoin;

pub mod core;
#[cfg(feature = "std")]
pub mod driver;
pub mod driving;
pub mod duplex;
pub mod lightning;
pub mod multihop;
pub mod network;
pub mod spilman;
#[cfg(feature = "test-utils")]
pub mod testing;
