//! Transport: the peer connections.
//!
//! * Spilman and duplex: each message's addressed encoding ([`Addressed`]: the channel id after
//!   the message's header, so a node with many channels routes by it), framed by a 4-byte
//!   big-endian length ([`Wire`]).
//! * Lightning: the BOLT 8 transport ([`NoiseWire`]): the Noise XK handshake with the peer's
//!   known node id, then the encrypted stream, on which [`Peer`] sends and checks BOLT 1 `init`,
//!   answers pings and hands channel messages up with their channel id.
//!
//! On every new connection each channel sends its reestablish message first.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::marker::PhantomData;
use std::net::TcpStream;
use std::time::Duration;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use paychan::core::wire::{Addressed, LayerMsg};
use paychan::driver::Transport;
use paychan::driving::ChannelId;
use paychan::network::features::Features;
use paychan::network::noise::{Handshake, InMemoryNodeSigner, ACT_ONE_LEN, ACT_THREE_LEN, ACT_TWO_LEN};
use paychan::network::peer::{Peer, PeerEvent};

use crate::Error;

/// Frames larger than this are refused (no message of these channels comes near it).
pub const MAX_FRAME: usize = 1 << 20;

/// Writes `bytes` with its 4-byte big-endian length.
pub fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame)
}

/// Reads one frame (blocking).
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "frame too large"));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads what arrived without blocking long (the socket has a short read timeout); `None` once
/// the connection is gone.
fn read_some(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => None,
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Some(Vec::new()),
        Err(_) => None,
    }
}

fn polled(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(5)))?;
    stream.set_nodelay(true)
}

/// A Spilman or duplex peer connection: addressed messages of `M`, framed by length.
pub struct Wire<M> {
    stream: Option<TcpStream>,
    inbox: Vec<u8>,
    /// The channel's ids (temporary, funded) its messages are addressed with: set from the
    /// channel before its effects are applied.
    pub ids: Option<(ChannelId, Option<ChannelId>)>,
    _msg: PhantomData<M>,
}

impl<M: LayerMsg> Wire<M> {
    pub fn new() -> Self {
        Wire { stream: None, inbox: Vec::new(), ids: None, _msg: PhantomData }
    }

    pub fn connect(&mut self, stream: TcpStream) -> std::io::Result<()> {
        polled(&stream)?;
        self.stream = Some(stream);
        self.inbox.clear();
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Sends `msg` addressed to `channel_id` (before any channel exists: the payee's offer).
    pub fn send_to(&mut self, channel_id: ChannelId, msg: M) -> std::io::Result<()> {
        let stream = self.stream.as_mut().ok_or_else(|| std::io::Error::from(ErrorKind::NotConnected))?;
        let sent = write_frame(stream, &Addressed { channel_id, msg }.encode());
        if sent.is_err() {
            self.stream = None;
        }
        sent
    }

    /// The next whole message, if one arrived; drops the connection on EOF, error or an
    /// undecodable message.
    pub fn receive(&mut self) -> Option<Addressed<M>> {
        loop {
            if self.inbox.len() >= 4 {
                let len = u32::from_be_bytes([self.inbox[0], self.inbox[1], self.inbox[2], self.inbox[3]]) as usize;
                if len > MAX_FRAME {
                    self.stream = None;
                    return None;
                }
                if self.inbox.len() >= 4 + len {
                    let frame: Vec<u8> = self.inbox.drain(..4 + len).skip(4).collect();
                    match Addressed::<M>::decode(&frame) {
                        Ok(m) => return Some(m),
                        Err(e) => {
                            eprintln!("undecodable message ({e}): disconnecting");
                            self.stream = None;
                            return None;
                        }
                    }
                }
            }
            let bytes = self.stream.as_mut().map(read_some)?;
            match bytes {
                None => {
                    self.stream = None;
                    return None;
                }
                Some(b) if b.is_empty() => return None,
                Some(b) => self.inbox.extend_from_slice(&b),
            }
        }
    }
}

impl<M: LayerMsg + Clone> Transport<M> for Wire<M> {
    type Error = std::io::Error;

    fn send(&mut self, message: &M) -> Result<(), Self::Error> {
        let (temporary, funded) = self.ids.ok_or_else(|| std::io::Error::other("no channel ids"))?;
        let addressed = Addressed::new(message.clone(), temporary, funded);
        self.send_to(addressed.channel_id, addressed.msg)
    }
}

/// The chain hash both nodes announce in `init` (regtest's genesis block).
pub const CHAIN_HASH: [u8; 32] = [
    0x06, 0x22, 0x6e, 0x46, 0x11, 0x1a, 0x0b, 0x59, 0xca, 0xaf, 0x12, 0x60, 0x43, 0xeb, 0x5b, 0xbf, 0x28, 0xc3, 0x4f,
    0x3a, 0x5e, 0x33, 0x2a, 0x1f, 0xc7, 0xb2, 0xb7, 0x3c, 0xf1, 0x88, 0x91, 0x0f,
];

/// A Lightning peer connection: BOLT 8 (encrypted, authenticated by node ids) and BOLT 1.
pub struct NoiseWire {
    stream: Option<TcpStream>,
    peer: Option<Peer>,
    ready: bool,
    events: VecDeque<PeerEvent>,
}

/// A fresh ephemeral key for a handshake (the crate draws no randomness itself).
fn ephemeral() -> SecretKey {
    SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng())
}

fn read_act(stream: &mut TcpStream, len: usize) -> Result<Vec<u8>, Error> {
    let mut act = vec![0u8; len];
    stream.read_exact(&mut act)?;
    Ok(act)
}

impl NoiseWire {
    pub fn new() -> Self {
        NoiseWire { stream: None, peer: None, ready: false, events: VecDeque::new() }
    }

    /// We dialled: acts one to three as initiator, to the node `their_id`, then our `init`.
    pub fn dial(&mut self, mut stream: TcpStream, node: &InMemoryNodeSigner, their_id: PublicKey) -> Result<(), Error> {
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let (mut handshake, act1) = Handshake::initiator(&Secp256k1::new(), node, their_id, ephemeral())?;
        stream.write_all(&act1)?;
        let act2 = read_act(&mut stream, ACT_TWO_LEN)?;
        let (transport, act3) = handshake.read_act_two(&act2, node)?;
        stream.write_all(&act3)?;
        self.start(stream, transport)
    }

    /// They dialled: acts one to three as responder; refuses any node but `their_id`.
    pub fn answer(
        &mut self,
        mut stream: TcpStream,
        node: &InMemoryNodeSigner,
        their_id: PublicKey,
    ) -> Result<(), Error> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut handshake = Handshake::responder(&Secp256k1::new(), ephemeral());
        let act1 = read_act(&mut stream, ACT_ONE_LEN)?;
        let act2 = handshake.read_act_one(&act1, node)?;
        stream.write_all(&act2)?;
        let act3 = read_act(&mut stream, ACT_THREE_LEN)?;
        let (transport, remote) = handshake.read_act_three(&act3, node)?;
        if remote != their_id {
            return Err(format!("unknown node {remote} dialled in").into());
        }
        self.start(stream, transport)
    }

    fn start(&mut self, mut stream: TcpStream, transport: paychan::network::noise::Transport) -> Result<(), Error> {
        let (peer, init) = Peer::new(transport, Features::ours(), CHAIN_HASH);
        stream.write_all(&init)?;
        polled(&stream)?;
        self.stream = Some(stream);
        self.peer = Some(peer);
        self.ready = false;
        self.events.clear();
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.stream = None;
        self.peer = None;
        self.ready = false;
    }

    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether the peer's `init` arrived (channel messages may flow).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The next event of the connection, if one arrived; drops the connection on EOF, error or
    /// a BOLT 1 failure.
    pub fn receive(&mut self) -> Option<PeerEvent> {
        loop {
            if let Some(e) = self.events.pop_front() {
                if matches!(e, PeerEvent::Ready { .. }) {
                    self.ready = true;
                }
                return Some(e);
            }
            let (stream, peer) = (self.stream.as_mut()?, self.peer.as_mut()?);
            let bytes = match read_some(stream) {
                None => {
                    self.disconnect();
                    return None;
                }
                Some(b) if b.is_empty() => return None,
                Some(b) => b,
            };
            match peer.receive(&bytes) {
                Ok(received) => {
                    if !received.reply.is_empty() && stream.write_all(&received.reply).is_err() {
                        self.disconnect();
                        return None;
                    }
                    self.events.extend(received.events);
                }
                Err(e) => {
                    eprintln!("peer connection failed ({e}): disconnecting");
                    self.disconnect();
                    return None;
                }
            }
        }
    }
}

impl Transport<paychan::lightning::Msg> for NoiseWire {
    type Error = std::io::Error;

    fn send(&mut self, message: &paychan::lightning::Msg) -> Result<(), Self::Error> {
        let (Some(stream), Some(peer)) = (self.stream.as_mut(), self.peer.as_mut()) else {
            return Err(ErrorKind::NotConnected.into());
        };
        let bytes = peer.send(message).map_err(std::io::Error::other)?;
        let sent = stream.write_all(&bytes);
        if sent.is_err() {
            self.disconnect();
        }
        sent
    }
}
