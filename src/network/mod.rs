//! Reaching real Lightning nodes, sans-I/O like the channels: the embedder owns the socket and
//! moves bytes between it and these state machines.
//!
//! | module | BOLT | concern |
//! |---|---|---|
//! | [`invoice`] | 11 | invoices (LDK's `lightning-invoice`) with the payer's checks |
//! | [`noise`] | 8 | the encrypted, authenticated transport and its handshake |
//! | [`features`] | 9 | feature bits and their negotiation |
//! | [`mpp`] | 4 | holding the parts of a multi-part payment until they add up |
//! | [`onion`] | 4 | Sphinx onions: build, peel, failures |
//! | [`payload`] | 4 | hop payloads and the forwarding and final-hop checks |
//! | [`peer`] | 1 | `init`, `ping`/`pong`, routing channel messages by channel id |
//! | [`receive`] | 4 | the payee's checks of a received HTLC and how to fail it back |
//! | [`relay`] | 4 | a forwarding node's layer of the onion and the failures it relays |

pub mod features;
pub mod invoice;
pub mod mpp;
pub mod noise;
pub mod onion;
pub mod payload;
pub mod peer;
pub mod receive;
pub mod relay;
