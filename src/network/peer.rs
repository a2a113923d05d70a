//! BOLT #1 on one connection: `init` with feature negotiation, `ping`/`pong`, connection-level
//! `warning`/`error`, and the channel messages of the Lightning layer routed by channel id.
//!
//! A [`Peer`] owns the BOLT #8 [`Transport`] of one connection. It sends our `init` first,
//! refuses everything before the peer's `init`, checks the peer's features and chains, answers
//! pings, and hands every channel message up with its channel id, so the embedder routes it to
//! that channel's `handle_message`. On every new connection each channel then sends its
//! `channel_reestablish` (the [`driving`](crate::driving) rule).
//!
//! ```
//! use paychan::bitcoin::secp256k1::{Secp256k1, SecretKey};
//! use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner};
//! use paychan::network::peer::{Peer, PeerEvent};
//! use paychan::network::features::Features;
//! use paychan::lightning::Msg;
//! use paychan::driving::ChannelId;
//!
//! let key = |b| SecretKey::from_slice(&[b; 32]).unwrap();
//! let (alice, bob) = (InMemoryNodeSigner::new(key(1)), InMemoryNodeSigner::new(key(2)));
//! let secp = Secp256k1::signing_only();
//! let (mut a, act1) = Handshake::initiator(&secp, &alice, bob.node_id(), key(3)).unwrap();
//! let mut b = Handshake::responder(&secp, key(4));
//! let act2 = b.read_act_one(&act1, &bob).unwrap();
//! let (ta, act3) = a.read_act_two(&act2, &alice).unwrap();
//! let (tb, _) = b.read_act_three(&act3, &bob).unwrap();
//! let chain = [0x6f; 32];
//! let (mut pa, a_init) = Peer::new(ta, Features::ours(), chain);
//! let (mut pb, b_init) = Peer::new(tb, Features::ours(), chain);
//! assert!(matches!(pb.receive(&a_init).unwrap().events[..], [PeerEvent::Ready { .. }]));
//! assert!(matches!(pa.receive(&b_init).unwrap().events[..], [PeerEvent::Ready { .. }]));
//! let bytes = pa.send(&Msg::UpdateFee { channel_id: ChannelId([9; 32]), feerate_per_kw: 500 }).unwrap();
//! let got = pb.receive(&bytes).unwrap();
//! assert!(matches!(got.events[..], [PeerEvent::Channel { channel_id: ChannelId([9, ..]), .. }]));
//! ```

use alloc::vec::Vec;
use core::fmt;

use super::features::Features;
use super::noise::{NoiseError, Transport};
use crate::core::encode::{DecodeError, Reader, TlvReader, Writer};
use crate::driving::ChannelId;
use crate::lightning::Msg;

/// `init` (16).
pub const INIT: u16 = 16;
/// `ping` (18).
pub const PING: u16 = 18;
/// `pong` (19).
pub const PONG: u16 = 19;
/// The BOLT #7 gossip message types ([`PeerEvent::Gossip`]).
pub const GOSSIP_TYPES: core::ops::RangeInclusive<u16> = 256..=265;
/// A `ping` asking for this many bytes or more gets no `pong` (BOLT #1).
pub const NO_PONG_FROM: u16 = 65_532;

/// The `init` message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Init {
    /// `globalfeatures` ∪ `features` (read as one vector; we send all bits in `features`).
    pub features: Features,
    /// The `networks` TLV: chain hashes the sender is interested in (`None`: all).
    pub networks: Option<Vec<[u8; 32]>>,
    /// The `remote_addr` TLV, as received (the address the sender sees us at).
    pub remote_addr: Option<Vec<u8>>,
}

impl Init {
    /// Encodes the message (type included).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let f = self.features.to_wire();
        w.u16(INIT).u16(0).u16(f.len() as u16).bytes(&f);
        if let Some(n) = &self.networks {
            let mut v = Writer::new();
            for c in n {
                v.bytes(c);
            }
            w.bigsize(1).var_bytes(v.as_bytes());
        }
        if let Some(a) = &self.remote_addr {
            w.bigsize(3).var_bytes(a);
        }
        w.into_bytes()
    }

    /// Decodes an `init` body (after the type).
    ///
    /// # Errors
    /// [`DecodeError`] for truncation, an invalid TLV stream or an unknown even TLV type.
    pub fn decode_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let gl = r.u16()?;
        let global = r.take(usize::from(gl))?;
        let fl = r.u16()?;
        let local = r.take(usize::from(fl))?;
        let features = Features::from_wire(global).union(&Features::from_wire(local));
        let mut networks = None;
        let mut remote_addr = None;
        let rest = r.take(r.remaining())?;
        TlvReader::new(rest).for_each(|ty, v| {
            match ty {
                1 => {
                    let bytes = v.take(v.remaining())?;
                    if bytes.len() % 32 != 0 {
                        return Err(DecodeError::InvalidValue("networks"));
                    }
                    networks =
                        Some(bytes.chunks(32).map(|c| <[u8; 32]>::try_from(c).unwrap_or([0; 32])).collect::<Vec<_>>());
                }
                3 => remote_addr = Some(v.take(v.remaining())?.to_vec()),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Init { features, networks, remote_addr })
    }
}

/// Why a connection must be closed.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PeerFailure {
    /// The transport failed (a message did not authenticate).
    Transport(NoiseError),
    /// A message did not decode.
    Decode(DecodeError),
    /// A message other than `init` came first.
    NoInit,
    /// The peer requires a feature bit we do not support.
    RequiredFeature(usize),
    /// The peer's features lack a dependency.
    MissingDependency,
    /// The peer is on none of our chains.
    WrongChain,
    /// An unknown even message type.
    UnknownEvenMessage(u16),
    /// A `pong` we did not ask for, or of the wrong length.
    BadPong,
}

impl fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerFailure::Transport(e) => write!(f, "transport: {e}"),
            PeerFailure::Decode(e) => write!(f, "message: {e}"),
            PeerFailure::NoInit => f.write_str("message before init"),
            PeerFailure::RequiredFeature(b) => write!(f, "peer requires unsupported feature bit {b}"),
            PeerFailure::MissingDependency => f.write_str("peer features miss a dependency"),
            PeerFailure::WrongChain => f.write_str("peer is on another chain"),
            PeerFailure::UnknownEvenMessage(t) => write!(f, "unknown even message type {t}"),
            PeerFailure::BadPong => f.write_str("unexpected pong"),
        }
    }
}

impl core::error::Error for PeerFailure {}

/// Something the connection delivered.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PeerEvent {
    /// The peer's `init` arrived and is acceptable; channel messages may flow (each channel
    /// now sends its reestablish message).
    Ready {
        /// The peer's features.
        features: Features,
    },
    /// A channel message, for the channel `channel_id` (a temporary id while opening; the zero
    /// id for a `warning`/`error` about every channel).
    Channel {
        /// Where to route it.
        channel_id: ChannelId,
        /// The message.
        msg: Msg,
    },
    /// The `pong` to our last `ping` arrived.
    Pong,
    /// A BOLT #7 gossip message (types 256 to 265), undecoded: this crate does no gossip, but
    /// the messages are known ones and must not close the connection. A peer sends the
    /// `channel_update` (258) of a private channel this way: its fees and `cltv_expiry_delta`
    /// are what an invoice's route hint for that channel carries.
    Gossip {
        /// The message type.
        msg_type: u16,
        /// The message after its type.
        payload: Vec<u8>,
    },
}

/// What [`Peer::receive`] produced.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct Received {
    /// Delivered in order.
    pub events: Vec<PeerEvent>,
    /// Bytes to write to the socket (our `pong`s).
    pub reply: Vec<u8>,
}

/// One connection after the BOLT #8 handshake (see the [module docs](self)).
#[derive(Debug)]
pub struct Peer {
    transport: Transport,
    ours: Features,
    chain: [u8; 32],
    theirs: Option<Features>,
    awaiting_pong: Option<u16>,
}

impl Peer {
    /// A connection over `transport` for `chain` (its genesis hash, as in `networks`); returns
    /// the encrypted `init` to write first.
    pub fn new(mut transport: Transport, ours: Features, chain: [u8; 32]) -> (Self, Vec<u8>) {
        let init = Init { features: ours.clone(), networks: Some(alloc::vec![chain]), remote_addr: None };
        // An `init` is far below the length limit.
        let bytes = transport.encrypt(&init.encode()).unwrap_or_default();
        (Peer { transport, ours, chain, theirs: None, awaiting_pong: None }, bytes)
    }

    /// The peer's features once its `init` arrived.
    pub fn their_features(&self) -> Option<&Features> {
        self.theirs.as_ref()
    }

    /// Encrypts a channel message for the socket.
    ///
    /// # Errors
    /// [`NoiseError::TooLong`] for a message over 65,535 bytes.
    pub fn send(&mut self, msg: &Msg) -> Result<Vec<u8>, NoiseError> {
        self.transport.encrypt(&msg.encode())
    }

    /// A `ping` asking for `num_pong_bytes` bytes back (the answer must have exactly that many).
    pub fn ping(&mut self, num_pong_bytes: u16) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(PING).u16(num_pong_bytes).u16(0);
        if num_pong_bytes < NO_PONG_FROM {
            self.awaiting_pong = Some(num_pong_bytes);
        }
        self.transport.encrypt(w.as_bytes()).unwrap_or_default()
    }

    /// Feeds bytes read from the socket.
    ///
    /// # Errors
    /// [`PeerFailure`]: close the connection (after sending an `error` where BOLT #1 says so).
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Received, PeerFailure> {
        let mut plain = Vec::new();
        self.transport.read(bytes, |m| plain.push(m.to_vec())).map_err(PeerFailure::Transport)?;
        let mut out = Received::default();
        for m in plain {
            self.message(&m, &mut out)?;
        }
        Ok(out)
    }

    fn message(&mut self, m: &[u8], out: &mut Received) -> Result<(), PeerFailure> {
        let mut r = Reader::new(m);
        let ty = r.u16().map_err(PeerFailure::Decode)?;
        if self.theirs.is_none() && ty != INIT {
            return Err(PeerFailure::NoInit);
        }
        match ty {
            INIT => {
                let init = Init::decode_body(&mut r).map_err(PeerFailure::Decode)?;
                if let Some(bit) = init.features.unknown_required().or(init.features.required_unsupported(&self.ours)) {
                    return Err(PeerFailure::RequiredFeature(bit));
                }
                if init.features.missing_dependency().is_some() {
                    return Err(PeerFailure::MissingDependency);
                }
                if init.networks.as_ref().is_some_and(|n| !n.contains(&self.chain)) {
                    return Err(PeerFailure::WrongChain);
                }
                self.theirs = Some(init.features.clone());
                out.events.push(PeerEvent::Ready { features: init.features });
            }
            PING => {
                let num_pong_bytes = r.u16().map_err(PeerFailure::Decode)?;
                let len = r.u16().map_err(PeerFailure::Decode)?;
                r.take(usize::from(len)).map_err(PeerFailure::Decode)?;
                if num_pong_bytes < NO_PONG_FROM {
                    let mut w = Writer::new();
                    w.u16(PONG).u16(num_pong_bytes).bytes(&alloc::vec![0u8; usize::from(num_pong_bytes)]);
                    let bytes = self.transport.encrypt(w.as_bytes()).map_err(PeerFailure::Transport)?;
                    out.reply.extend(bytes);
                }
            }
            PONG => {
                let len = r.u16().map_err(PeerFailure::Decode)?;
                r.take(usize::from(len)).map_err(PeerFailure::Decode)?;
                if self.awaiting_pong.take() != Some(len) {
                    return Err(PeerFailure::BadPong);
                }
                out.events.push(PeerEvent::Pong);
            }
            t if GOSSIP_TYPES.contains(&t) => {
                out.events.push(PeerEvent::Gossip { msg_type: t, payload: r.take_rest().to_vec() });
            }
            _ => match Msg::decode(m) {
                Ok(msg) => out.events.push(PeerEvent::Channel { channel_id: msg.channel_id(), msg }),
                // BOLT #1: ignore unknown odd types, fail on unknown even ones.
                Err(DecodeError::UnknownMessageType(t)) if t % 2 == 1 => {}
                Err(DecodeError::UnknownMessageType(t)) => return Err(PeerFailure::UnknownEvenMessage(t)),
                Err(e) => return Err(PeerFailure::Decode(e)),
            },
        }
        Ok(())
    }
}
