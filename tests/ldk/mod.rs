//! A live LDK 0.2.7 node (its `PeerManager` and `ChannelManager` with in-memory components) and
//! a paychan node, connected by a real TCP socket on 127.0.0.1.
//!
//! Everything runs on the test's thread: LDK writes through [`Desc::send_data`], which counts the
//! bytes it wrote, and the paychan side reads exactly that many; paychan's writes are read back
//! by their length before `read_event`. So no read ever waits for bytes that are not coming and
//! no timeout is needed.

#![allow(dead_code)]

pub mod chain;

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::constants::genesis_block;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{BlockHash, CompactTarget, Network, Transaction, TxMerkleNode};
use lightning::chain::chaininterface::{BroadcasterInterface, ConfirmationTarget, FeeEstimator};
use lightning::chain::chainmonitor::{ChainMonitor, Persist};
use lightning::chain::channelmonitor::{ChannelMonitor, ChannelMonitorUpdate};
use lightning::chain::{BestBlock, ChannelMonitorUpdateStatus, Confirm, Filter};
use lightning::events::{Event as LdkEvent, EventsProvider};
use lightning::ln::channelmanager::{ChainParameters, ChannelManager};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler, PeerManager, SocketDescriptor};
use lightning::onion_message::messenger::DefaultMessageRouter;
use lightning::routing::gossip::NetworkGraph;
use lightning::routing::router::DefaultRouter;
use lightning::routing::scoring::{
    ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::sign::{InMemorySigner as LdkSigner, KeysManager, NodeSigner as _};
use lightning::util::config::UserConfig;
use lightning::util::logger::{Logger, Record};
use lightning::util::persist::MonitorName;

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, MilliSats};
use paychan::driving::{ChainEvent, ChainTip, ChannelId};
use paychan::lightning::{Channel, ChannelConfig, Effects as PcEffects, Event as PcEvent, Msg, OpenParams};
use paychan::network::features::Features;
use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner};
use paychan::network::peer::{Peer, PeerEvent};

/// Both nodes' chain: regtest (LDK derives its chain hash from the network).
pub const NETWORK: Network = Network::Regtest;

/// The regtest genesis hash, as `init`'s `networks` and `open_channel`'s `chain_hash` carry it.
pub fn chain_hash() -> [u8; 32] {
    genesis_block(NETWORK).block_hash().to_byte_array()
}

/// paychan's policy for channels with LDK: depth 1 (the test mines one block).
pub fn pc_config(channel_type: ChannelType) -> ChannelConfig {
    ChannelConfig {
        minimum_depth: 1,
        shutdown_anysegwit: true,
        ..ChannelConfig::default_for(chain_hash(), channel_type)
    }
}

/// LDK's policy: depth 1, as the test mines one block.
pub fn ldk_config(anchors: bool) -> UserConfig {
    let mut c = UserConfig::default();
    c.channel_handshake_config.minimum_depth = 1;
    c.channel_handshake_config.negotiate_anchors_zero_fee_htlc_tx = anchors;
    c.manually_accept_inbound_channels = anchors;
    c
}

/// The fee rate both nodes use (sat per 1000 weight).
pub const FEERATE: u32 = 2_500;

pub struct Log(pub &'static str);
impl Logger for Log {
    fn log(&self, record: Record) {
        if std::env::var_os("LDK_LOG").is_some() {
            eprintln!("[{} {}] {}", self.0, record.level, record.args);
        }
    }
}

pub struct Fees;
impl FeeEstimator for Fees {
    fn get_est_sat_per_1000_weight(&self, _: ConfirmationTarget) -> u32 {
        FEERATE
    }
}

#[derive(Default)]
pub struct Broadcast(pub Mutex<Vec<Transaction>>);
impl BroadcasterInterface for Broadcast {
    fn broadcast_transactions(&self, txs: &[&Transaction]) {
        self.0.lock().unwrap().extend(txs.iter().map(|t| (*t).clone()));
    }
}

/// Monitors kept in memory only (the test never restarts LDK).
pub struct NoPersist;
impl Persist<LdkSigner> for NoPersist {
    fn persist_new_channel(&self, _: MonitorName, _: &ChannelMonitor<LdkSigner>) -> ChannelMonitorUpdateStatus {
        ChannelMonitorUpdateStatus::Completed
    }
    fn update_persisted_channel(
        &self,
        _: MonitorName,
        _: Option<&ChannelMonitorUpdate>,
        _: &ChannelMonitor<LdkSigner>,
    ) -> ChannelMonitorUpdateStatus {
        ChannelMonitorUpdateStatus::Completed
    }
    fn archive_persisted_channel(&self, _: MonitorName) {}
}

type Graph = NetworkGraph<Arc<Log>>;
type Scorer = ProbabilisticScorer<Arc<Graph>, Arc<Log>>;
type Router = DefaultRouter<
    Arc<Graph>,
    Arc<Log>,
    Arc<KeysManager>,
    Arc<RwLock<Scorer>>,
    ProbabilisticScoringFeeParameters,
    Scorer,
>;
type MsgRouter = DefaultMessageRouter<Arc<Graph>, Arc<Log>, Arc<KeysManager>>;
pub type Monitor = ChainMonitor<
    LdkSigner,
    Arc<dyn Filter + Send + Sync>,
    Arc<Broadcast>,
    Arc<Fees>,
    Arc<Log>,
    Arc<NoPersist>,
    Arc<KeysManager>,
>;
pub type Manager = ChannelManager<
    Arc<Monitor>,
    Arc<Broadcast>,
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<Fees>,
    Arc<Router>,
    Arc<MsgRouter>,
    Arc<Log>,
>;
pub type Pm = PeerManager<
    Desc,
    Arc<Manager>,
    Arc<IgnoringMessageHandler>,
    Arc<IgnoringMessageHandler>,
    Arc<Log>,
    Arc<IgnoringMessageHandler>,
    Arc<KeysManager>,
    Arc<IgnoringMessageHandler>,
>;

/// LDK's end of the socket: writes block until the kernel took the bytes, and count them so the
/// paychan side knows how many to read.
#[derive(Clone)]
pub struct Desc {
    id: u64,
    stream: Arc<TcpStream>,
    written: Arc<AtomicUsize>,
    pub disconnected: Arc<AtomicUsize>,
}

impl PartialEq for Desc {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
    }
}
impl Eq for Desc {}
impl Hash for Desc {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}

impl SocketDescriptor for Desc {
    fn send_data(&mut self, data: &[u8], _continue_read: bool) -> usize {
        (&*self.stream).write_all(data).expect("write to the paychan side");
        self.written.fetch_add(data.len(), Ordering::SeqCst);
        data.len()
    }
    fn disconnect_socket(&mut self) {
        self.disconnected.fetch_add(1, Ordering::SeqCst);
    }
}

/// The LDK node.
pub struct Ldk {
    pub keys: Arc<KeysManager>,
    pub monitor: Arc<Monitor>,
    pub manager: Arc<Manager>,
    pub peers: Arc<Pm>,
    pub broadcast: Arc<Broadcast>,
    /// The headers of the chain both nodes see (index = height).
    pub headers: Vec<Header>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Ldk {
    /// A node with `seed` and `config`, at the regtest genesis.
    pub fn new(seed: u8, config: UserConfig) -> Ldk {
        let log = Arc::new(Log("ldk"));
        let keys = Arc::new(KeysManager::new(&[seed; 32], 1_700_000_000, 0, true));
        let broadcast = Arc::new(Broadcast::default());
        let fees = Arc::new(Fees);
        let monitor = Arc::new(ChainMonitor::new(
            None,
            broadcast.clone(),
            log.clone(),
            fees.clone(),
            Arc::new(NoPersist),
            keys.clone(),
            keys.get_peer_storage_key(),
        ));
        let graph = Arc::new(NetworkGraph::new(NETWORK, log.clone()));
        let scorer = Arc::new(RwLock::new(ProbabilisticScorer::new(
            ProbabilisticScoringDecayParameters::default(),
            graph.clone(),
            log.clone(),
        )));
        let router = Arc::new(DefaultRouter::new(
            graph.clone(),
            log.clone(),
            keys.clone(),
            scorer,
            ProbabilisticScoringFeeParameters::default(),
        ));
        let msg_router = Arc::new(DefaultMessageRouter::new(graph, keys.clone()));
        let genesis = genesis_block(NETWORK).header;
        let manager = Arc::new(ChannelManager::new(
            fees,
            monitor.clone(),
            broadcast.clone(),
            router,
            msg_router,
            log.clone(),
            keys.clone(),
            keys.clone(),
            keys.clone(),
            config,
            ChainParameters { network: NETWORK, best_block: BestBlock::new(genesis.block_hash(), 0) },
            1_700_000_000,
        ));
        let handlers = MessageHandler {
            chan_handler: manager.clone(),
            route_handler: Arc::new(IgnoringMessageHandler {}),
            onion_message_handler: Arc::new(IgnoringMessageHandler {}),
            custom_message_handler: Arc::new(IgnoringMessageHandler {}),
            send_only_message_handler: Arc::new(IgnoringMessageHandler {}),
        };
        let peers = Arc::new(PeerManager::new(handlers, 1_700_000_000, &[seed ^ 0x55; 32], log, keys.clone()));
        Ldk { keys, monitor, manager, peers, broadcast, headers: vec![genesis] }
    }

    /// LDK's node id.
    pub fn node_id(&self) -> PublicKey {
        self.manager.get_our_node_id()
    }

    /// Takes the events LDK raised.
    pub fn events(&self) -> Vec<LdkEvent> {
        let got = RefCell::new(Vec::new());
        self.manager.process_pending_events(&|e| {
            got.borrow_mut().push(e);
            Ok(())
        });
        got.into_inner()
    }

    /// Mines a block holding `txs` and tells the channel manager and the monitors.
    pub fn mine(&mut self, txs: &[Transaction]) -> u32 {
        let prev = self.headers.last().unwrap();
        let header = Header {
            version: BlockVersion::TWO,
            prev_blockhash: prev.block_hash(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: prev.time + 600,
            bits: CompactTarget::from_consensus(0x207fffff),
            nonce: self.headers.len() as u32,
        };
        self.headers.push(header);
        let height = (self.headers.len() - 1) as u32;
        let confirmed: Vec<(usize, &Transaction)> = txs.iter().enumerate().collect();
        self.manager.transactions_confirmed(&header, &confirmed, height);
        self.monitor.transactions_confirmed(&header, &confirmed, height);
        self.manager.best_block_updated(&header, height);
        self.monitor.best_block_updated(&header, height);
        height
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.headers.last().unwrap().block_hash()
    }
}

use std::cell::RefCell;

/// paychan's end of the connection: handshake, then a [`Peer`].
pub enum Conn {
    /// Initiator, waiting for act two.
    AwaitActTwo(Handshake),
    /// Responder, waiting for act one.
    AwaitActOne(Handshake),
    /// Responder, waiting for act three.
    AwaitActThree(Handshake),
    /// Connected.
    Up(Peer),
}

/// One paychan channel with its keys and what it reported.
pub struct PcChannel {
    pub ch: Channel,
    pub signer: InMemorySigner,
    pub events: Vec<PcEvent>,
    pub records: Vec<Vec<u8>>,
    pub snapshots: usize,
    /// The funding transaction, once known.
    pub funding: Option<Transaction>,
}

/// The paychan node: its channels with LDK, the chain it sees and what it broadcast.
pub struct PcNode {
    pub channels: Vec<PcChannel>,
    pub config: ChannelConfig,
    pub tip: u32,
    pub broadcast: Vec<Transaction>,
    /// Connection-level `warning`/`error` messages received (channel id zero or unknown).
    pub unrouted: Vec<Msg>,
    /// The `update_fail_htlc` messages received (their reasons are read at the origin).
    pub fails: Vec<Msg>,
    next_signer: u64,
}

impl PcNode {
    pub fn new(config: ChannelConfig) -> PcNode {
        PcNode { channels: vec![], config, tip: 0, broadcast: vec![], unrouted: vec![], fails: vec![], next_signer: 0 }
    }

    /// A fresh channel signer.
    pub fn signer(&mut self) -> InMemorySigner {
        self.next_signer += 1;
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0x5c; 32]), self.next_signer))
    }

    /// Applies a channel's effects: persists (counts), keeps events and broadcasts, returns the
    /// messages to send.
    fn absorb(&mut self, i: usize, fx: PcEffects) -> Vec<Msg> {
        // An update not covered by a `commitment_signed` yet (an add, a fulfilment, a failure)
        // stays in memory and goes with the next durable write (the persistence contract);
        // anything else sent or broadcast must follow a write.
        let in_memory = |m: &Msg| {
            matches!(
                m,
                Msg::UpdateAddHtlc { .. }
                    | Msg::UpdateFulfillHtlc { .. }
                    | Msg::UpdateFailHtlc { .. }
                    | Msg::UpdateFailMalformedHtlc { .. }
            )
        };
        if !fx.send.iter().all(in_memory) || !fx.broadcast.is_empty() {
            assert!(fx.update.is_some(), "sent or broadcast without persisting first");
        }
        let c = &mut self.channels[i];
        if let Some(u) = fx.update {
            c.snapshots += 1;
            c.records.extend(u.records);
        }
        c.events.extend(fx.events);
        self.broadcast.extend(fx.broadcast);
        fx.send
    }

    /// Routes one message from LDK to its channel (a new one for `open_channel`).
    pub fn handle(&mut self, channel_id: ChannelId, msg: Msg) -> Vec<Msg> {
        if std::env::var_os("PC_LOG").is_some() {
            eprintln!("[paychan <-] {}", msg_name(&msg));
        }
        let tip = ChainTip::at(self.tip);
        if matches!(msg, Msg::UpdateFailHtlc { .. } | Msg::UpdateFailMalformedHtlc { .. }) {
            self.fails.push(msg.clone());
        }
        if let Msg::OpenChannel(open) = &msg {
            let signer = self.signer();
            let (ch, fx) =
                Channel::accept(open, self.config.clone(), &signer, tip).expect("paychan accepts LDK's open_channel");
            self.channels.push(PcChannel { ch, signer, events: vec![], records: vec![], snapshots: 0, funding: None });
            return self.absorb(self.channels.len() - 1, fx);
        }
        let Some(i) = self.channels.iter().position(|c| c.ch.channel_id() == channel_id) else {
            self.unrouted.push(msg);
            return vec![];
        };
        let c = &mut self.channels[i];
        let fx =
            c.ch.handle_message(msg.clone(), &c.signer, tip)
                .unwrap_or_else(|e| panic!("paychan refused {msg:?}: {e:?}"));
        self.absorb(i, fx)
    }

    /// Opens a channel to LDK; returns the `open_channel`.
    pub fn open(&mut self, temporary_channel_id: [u8; 32], funding_sat: u64, push_msat: u64) -> Vec<Msg> {
        let signer = self.signer();
        let (ch, fx) = Channel::open(
            OpenParams {
                config: self.config.clone(),
                temporary_channel_id: ChannelId(temporary_channel_id),
                funding: Amount::from_sat(funding_sat),
                push: MilliSats::from_msat(push_msat),
                feerate_per_kw: FEERATE,
            },
            &signer,
            ChainTip::at(self.tip),
        )
        .expect("open");
        self.channels.push(PcChannel { ch, signer, events: vec![], records: vec![], snapshots: 0, funding: None });
        self.absorb(self.channels.len() - 1, fx)
    }

    /// Runs a command on channel `i` and returns the messages to send.
    pub fn command(&mut self, i: usize, f: impl FnOnce(&mut Channel, &InMemorySigner) -> PcEffects) -> Vec<Msg> {
        let c = &mut self.channels[i];
        let fx = f(&mut c.ch, &c.signer);
        self.absorb(i, fx)
    }

    /// A new block at the next height, holding `txs`, for every channel.
    pub fn mine(&mut self, txs: &[Transaction]) -> Vec<Msg> {
        self.tip += 1;
        let h = BlockHeight(self.tip);
        let mut out = vec![];
        for i in 0..self.channels.len() {
            for tx in txs {
                let c = &mut self.channels[i];
                let fx = c.ch.handle_chain(ChainEvent::Confirmed { tx, height: h }, &c.signer);
                out.extend(self.absorb(i, fx));
            }
            let c = &mut self.channels[i];
            let fx = c.ch.handle_chain(ChainEvent::Tip(ChainTip::at(self.tip)), &c.signer);
            out.extend(self.absorb(i, fx));
        }
        out
    }

    /// Every open channel's `channel_reestablish`, for a new connection.
    pub fn reestablish_all(&mut self) -> Vec<Msg> {
        self.channels
            .iter()
            .filter(|c| c.ch.funding_outpoint().is_some() && !c.ch.is_off_chain_over())
            .map(|c| c.ch.reestablish(&c.signer).expect("reestablish"))
            .collect()
    }

    /// The connection dropped: every channel forgets the peer's unsigned updates.
    pub fn disconnected(&mut self) {
        for i in 0..self.channels.len() {
            let fx = self.channels[i].ch.handle_disconnect();
            let sent = self.absorb(i, fx);
            assert!(sent.is_empty(), "nothing is sent on a dropped connection");
        }
    }

    /// Takes channel `i`'s events.
    pub fn events(&mut self, i: usize) -> Vec<PcEvent> {
        std::mem::take(&mut self.channels[i].events)
    }
}

/// A funding transaction paying `value` to `script` (its input is made up, with a witness so
/// LDK takes it as signed segwit).
pub fn funding_tx(script: ScriptBuf, value: Amount, salt: u8) -> Transaction {
    Transaction {
        version: TxVersion::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([salt; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[1u8; 72].as_slice(), [2u8; 33].as_slice()]),
        }],
        output: vec![TxOut { value, script_pubkey: script }],
    }
}

/// A TCP connection between the two nodes, with paychan's side of it.
pub struct Link {
    pub ldk_desc: Desc,
    pc_stream: TcpStream,
    pub conn: Option<Conn>,
    /// paychan's node key.
    pub pc_node: InMemoryNodeSigner,
    /// What paychan's `Peer` delivered, in order, other than channel messages (routed to the
    /// channels) and gossip.
    pub events: VecDeque<PeerEvent>,
    /// The node id the responder learnt from act three.
    pub learnt_initiator: Option<PublicKey>,
    /// paychan's channels.
    pub pc: PcNode,
    /// How many more channel messages may cross (either way) before the connection is cut:
    /// later ones are lost, as when a connection drops mid-dance. `None`: no limit.
    pub budget: Option<usize>,
    /// What paychan's `Peer` delivered and the harness has not routed yet.
    incoming: VecDeque<PeerEvent>,
    /// Gossip messages LDK sent (type, payload).
    pub gossip: Vec<(u16, Vec<u8>)>,
    /// Channel messages are kept in [`Link::diverted`] instead of going to [`Link::pc`]'s
    /// channels (for a channel driven elsewhere, e.g. by a forwarder).
    pub divert: bool,
    /// The channel messages kept while [`Link::divert`] is set.
    pub diverted: VecDeque<Msg>,
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (b, _) = listener.accept().expect("accept");
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

impl Link {
    fn new(pc_node: InMemoryNodeSigner, conn: Conn) -> Link {
        let (ldk_stream, pc_stream) = tcp_pair();
        let ldk_desc = Desc {
            id: NEXT_ID.fetch_add(1, Ordering::SeqCst),
            stream: Arc::new(ldk_stream),
            written: Arc::new(AtomicUsize::new(0)),
            disconnected: Arc::new(AtomicUsize::new(0)),
        };
        Link {
            ldk_desc,
            pc_stream,
            conn: Some(conn),
            pc_node,
            events: VecDeque::new(),
            learnt_initiator: None,
            incoming: VecDeque::new(),
            budget: None,
            gossip: vec![],
            divert: false,
            diverted: VecDeque::new(),
            pc: PcNode::new(pc_config(paychan::core::commitment::ChannelType::StaticRemoteKey)),
        }
    }

    /// paychan dials LDK (paychan is the BOLT 8 initiator).
    pub fn paychan_dials(ldk: &Ldk, pc_node: InMemoryNodeSigner, ephemeral: u8) -> Link {
        let pc = PcNode::new(pc_config(ChannelType::StaticRemoteKey));
        Link::paychan_dials_with(ldk, pc_node, ephemeral, pc)
    }

    /// The connection drops (both sides learn it) and paychan dials again with `ephemeral`,
    /// keeping its channels; they reestablish.
    pub fn reconnect(self, ldk: &Ldk, ephemeral: u8) -> Link {
        ldk.peers.socket_disconnected(&self.ldk_desc);
        let Link { mut pc, pc_node, .. } = self;
        pc.disconnected();
        Link::paychan_dials_with(ldk, pc_node, ephemeral, pc)
    }

    /// As [`Link::paychan_dials`], with paychan's channels.
    pub fn paychan_dials_with(ldk: &Ldk, pc_node: InMemoryNodeSigner, ephemeral: u8, pc: PcNode) -> Link {
        let (hs, act1) =
            Handshake::initiator(&Secp256k1::signing_only(), &pc_node, ldk.node_id(), key(ephemeral)).expect("act one");
        let mut link = Link::new(pc_node, Conn::AwaitActTwo(hs));
        link.pc = pc;
        ldk.peers.new_inbound_connection(link.ldk_desc.clone(), None).expect("LDK takes the connection");
        link.deliver(ldk, &act1);
        link.pump(ldk);
        link
    }

    /// LDK dials paychan (LDK is the BOLT 8 initiator).
    pub fn ldk_dials(ldk: &Ldk, pc_node: InMemoryNodeSigner, ephemeral: u8) -> Link {
        let link =
            Link::new(pc_node, Conn::AwaitActOne(Handshake::responder(&Secp256k1::signing_only(), key(ephemeral))));
        let node_id = link.pc_node.node_id();
        let act1 = ldk.peers.new_outbound_connection(node_id, link.ldk_desc.clone(), None).expect("act one");
        let mut link = link;
        // LDK returns act one instead of writing it.
        let mut d = link.ldk_desc.clone();
        d.send_data(&act1, true);
        link.pump(ldk);
        link
    }

    /// Bytes LDK wrote that paychan has not read yet.
    pub fn pending_to_paychan(&self) -> usize {
        self.ldk_desc.written.load(Ordering::SeqCst)
    }

    /// Writes paychan's bytes to the socket and has LDK read them.
    pub fn deliver(&mut self, ldk: &Ldk, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pc_stream.write_all(bytes).expect("write to LDK");
        let mut buf = vec![0u8; bytes.len()];
        (&*self.ldk_desc.stream).read_exact(&mut buf).expect("LDK's side reads");
        let mut d = self.ldk_desc.clone();
        ldk.peers.read_event(&mut d, &buf).expect("LDK accepts paychan's bytes");
        ldk.peers.process_events();
    }

    /// Sends an encrypted message from paychan.
    /// Takes one message from the budget; `false` once the connection is cut.
    fn spend_budget(&mut self) -> bool {
        match self.budget.as_mut() {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    pub fn send(&mut self, ldk: &Ldk, msg: &Msg) {
        if !self.spend_budget() {
            return;
        }
        if std::env::var_os("PC_LOG").is_some() {
            eprintln!("[paychan ->] {}", msg_name(msg));
        }
        let Some(Conn::Up(peer)) = self.conn.as_mut() else { panic!("not connected") };
        let bytes = peer.send(msg).expect("encrypt");
        self.deliver(ldk, &bytes);
    }

    /// Moves bytes both ways until neither side has anything to say.
    pub fn pump(&mut self, ldk: &Ldk) {
        loop {
            ldk.peers.process_events();
            let n = self.ldk_desc.written.swap(0, Ordering::SeqCst);
            if n == 0 {
                return;
            }
            let mut buf = vec![0u8; n];
            self.pc_stream.read_exact(&mut buf).expect("paychan's side reads");
            let reply = self.paychan_reads(&buf);
            self.deliver(ldk, &reply);
            self.route(ldk);
        }
    }

    /// Hands the channel messages paychan's `Peer` delivered to the channels and sends their
    /// answers.
    fn route(&mut self, ldk: &Ldk) {
        let mut keep = std::mem::take(&mut self.events);
        while let Some(e) = self.incoming.pop_front() {
            match e {
                PeerEvent::Channel { channel_id, msg } => {
                    if !self.spend_budget() {
                        continue;
                    }
                    if self.divert {
                        self.diverted.push_back(msg);
                        continue;
                    }
                    let answers = self.pc.handle(channel_id, msg);
                    self.send_all(ldk, &answers);
                }
                PeerEvent::Gossip { msg_type, payload } => self.gossip.push((msg_type, payload)),
                PeerEvent::Ready { features } => {
                    // The driving rule: on every new connection each channel sends its
                    // `channel_reestablish` first.
                    let msgs = self.pc.reestablish_all();
                    self.send_all(ldk, &msgs);
                    keep.push_back(PeerEvent::Ready { features });
                }
                other => keep.push_back(other),
            }
        }
        self.events = keep;
    }

    /// Sends paychan's messages and moves everything that follows.
    pub fn send_all(&mut self, ldk: &Ldk, msgs: &[Msg]) {
        for m in msgs {
            self.send(ldk, m);
        }
    }

    /// paychan's state machines take bytes from the socket; returns what to write back.
    fn paychan_reads(&mut self, mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            if bytes.is_empty() && !matches!(self.conn, Some(Conn::Up(_))) {
                return out;
            }
            match self.conn.take().expect("connection") {
                Conn::AwaitActTwo(mut hs) => {
                    let (act2, rest) = bytes.split_at(paychan::network::noise::ACT_TWO_LEN);
                    let (transport, act3) = hs.read_act_two(act2, &self.pc_node).expect("act two");
                    out.extend(act3);
                    let (peer, init) = Peer::new(transport, Features::ours(), chain_hash());
                    out.extend(init);
                    self.conn = Some(Conn::Up(peer));
                    bytes = rest;
                }
                Conn::AwaitActOne(mut hs) => {
                    let (act1, rest) = bytes.split_at(paychan::network::noise::ACT_ONE_LEN);
                    out.extend(hs.read_act_one(act1, &self.pc_node).expect("act one"));
                    self.conn = Some(Conn::AwaitActThree(hs));
                    bytes = rest;
                }
                Conn::AwaitActThree(mut hs) => {
                    let (act3, rest) = bytes.split_at(paychan::network::noise::ACT_THREE_LEN);
                    let (transport, theirs) = hs.read_act_three(act3, &self.pc_node).expect("act three");
                    self.learnt_initiator = Some(theirs);
                    let (peer, init) = Peer::new(transport, Features::ours(), chain_hash());
                    out.extend(init);
                    self.conn = Some(Conn::Up(peer));
                    bytes = rest;
                }
                Conn::Up(mut peer) => {
                    let got = peer.receive(bytes).expect("paychan accepts LDK's bytes");
                    out.extend(got.reply);
                    self.incoming.extend(got.events);
                    self.conn = Some(Conn::Up(peer));
                    return out;
                }
            }
        }
    }

    /// paychan's `Peer`, once connected.
    pub fn peer(&mut self) -> &mut Peer {
        match self.conn.as_mut() {
            Some(Conn::Up(p)) => p,
            _ => panic!("handshake not done"),
        }
    }
}

fn msg_name(m: &Msg) -> String {
    let s = format!("{m:?}");
    s.chars().take_while(|c| c.is_alphanumeric()).collect()
}
