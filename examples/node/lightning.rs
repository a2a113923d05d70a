//! The Lightning (Poon–Dryja, BOLT 2/3) channel, over the BOLT 8 transport: Alice opens and
//! funds it, pays Bob HTLC by HTLC, and closes it cooperatively (`shutdown`, then
//! `closing_signed`; Alice, the funder, pays the closing fee).
//!
//! Each connection is a Noise XK handshake with the peer's known node id, then BOLT 1 `init`
//! ([`NoiseWire`]); once the peer's `init` arrived each side sends `channel_reestablish`, and
//! channel messages are routed by their channel id. On a disconnection the channel forgets the
//! peer's unsigned updates ([`Channel::handle_disconnect`]).
//!
//! Lightning writes a delta record per update and a full snapshot now and then: the store
//! appends the records and replaces the snapshot, and a restart replays the records on it
//! ([`Channel::restore_with_signer`]).
//!
//! The payment hashes stand in for Bob's invoices: both sides derive the preimage of payment
//! `i` from a shared label ([`preimage`]).
//!
//! After a restart: a channel without a signed first commitment is forgotten and opened again
//! (BOLT 2 does the same on a disconnection); Bob replaces his channel by a new `open_channel`
//! unless its funding confirmed. Alice keeps her signed funding transaction in her outbox and
//! broadcasts it again while it has not confirmed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, Transaction};
use paychan::core::commitment::ChannelType;
use paychan::core::sign::InMemorySigner;
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::driver::{Chain as _, Driver, Transport};
use paychan::driving::{Action, ChainTip, ChannelId, RestoreCheck};
use paychan::lightning::{Channel, ChannelConfig, Event, Msg, OnionPacket, OpenParams, Phase, Side};
use paychan::network::noise::{InMemoryNodeSigner, NodeSigner};
use paychan::network::peer::PeerEvent;

use crate::chain::{poll, ChainClient};
use crate::store::Db;
use crate::transport::{NoiseWire, CHAIN_HASH};
use crate::{apply, idle, signer_for, write_addr, Error, Node, FAUCET, FUNDING_FEE};

const LAYER: &str = "lightning";
/// The channel keys' index (see [`Node::new_signer`]).
const KEY_INDEX: u64 = 2;
const CAPACITY: Amount = Amount::from_sat(500_000);
/// Each payment (one HTLC).
const PAY: Amount = Amount::from_sat(2_000);
/// The closing fee: both sides offer exactly this range, so the close pays exactly this.
const CLOSE_FEE: Amount = Amount::from_sat(1_000);
/// Alice's temporary channel id (unique among her pending channels with Bob).
const TEMPORARY_ID: ChannelId = ChannelId([0x4c; 32]);

type D = Driver<Db, NoiseWire, ChainClient>;

/// What this layer leaves each wallet: Bob every payment; Alice her coin minus the funding fee,
/// the payments and the closing fee.
pub fn owed(payments: u64) -> (Amount, Amount) {
    let to_bob = PAY * payments;
    (FAUCET - FUNDING_FEE - to_bob - CLOSE_FEE, to_bob)
}

/// The node keys (BOLT 8 static keys): each node knows its own and the other's id.
fn node_signer(alice: bool) -> InMemoryNodeSigner {
    let secret = SecretKey::from_slice(&[if alice { 0x0a } else { 0x0b }; 32]).expect("a valid key");
    InMemoryNodeSigner::new(secret)
}

/// The preimage of payment `i` (a stand-in for an invoice Bob made).
fn preimage(i: u64) -> PaymentPreimage {
    let mut engine = sha256::Hash::engine();
    bitcoin::hashes::HashEngine::input(&mut engine, b"paychan examples/node invoice");
    bitcoin::hashes::HashEngine::input(&mut engine, &i.to_be_bytes());
    PaymentPreimage(sha256::Hash::from_engine(engine).to_byte_array())
}

fn config() -> ChannelConfig {
    ChannelConfig { minimum_depth: 1, ..ChannelConfig::default_for(CHAIN_HASH, ChannelType::StaticRemoteKey) }
}

/// Whether no commitment of ours is signed yet: the channel can be forgotten.
fn in_setup(ch: &Channel) -> bool {
    matches!(
        ch.phase(),
        Phase::AwaitingAccept | Phase::AwaitingFundingTx | Phase::AwaitingFundingCreated | Phase::AwaitingFundingSigned
    )
}

/// Whether the channel is over: the closing transaction agreed and confirmed.
fn done(ch: &Channel) -> bool {
    ch.phase() == Phase::Closed && ch.is_off_chain_over()
}

/// Whether nothing is in flight: every HTLC settled, every update signed and revoked.
fn quiescent(ch: &Channel) -> bool {
    ch.htlcs().is_empty() && !ch.is_awaiting_revoke() && !ch.has_unsigned_changes()
}

/// The stored channel, restored with the signer its snapshot names (replaying the records).
fn restore(node: &Node, d: &D) -> Result<(Option<Channel>, InMemorySigner), Error> {
    let Some((update_id, bytes)) = d.storage().snapshot()? else {
        return Ok((None, node.new_signer(KEY_INDEX)));
    };
    let records = d.storage().records()?;
    let check = RestoreCheck { channel_id: None, min_update_id: update_id };
    let signer = signer_for(node, Channel::restore_with_records(&bytes, &records, check)?.key_identity())?;
    let ch = Channel::restore_with_signer(&bytes, &records, check, &signer)?;
    Ok((Some(ch).filter(|c| !in_setup(c)), signer))
}

/// Either side's loop; `alice` dials, opens, funds and pays; Bob listens, accepts, settles.
fn run(node: &Node, alice: bool) -> Result<(), Error> {
    let mut d: D = node.driver(LAYER, NoiseWire::new())?;
    let (mut ch, signer) = restore(node, &d)?;
    let me = node_signer(alice);
    let them = node_signer(!alice).node_id();
    let mut funding: Option<Transaction> = d.storage().outbox()?.map(|b| deserialize(&b)).transpose()?;
    let mut funding_checked = false;
    let listener = if alice {
        None
    } else {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        write_addr(&node.addr_file(LAYER), &l)?;
        Some(l)
    };
    let mut last_connect = Instant::now() - Duration::from_secs(1);
    let mut connected = false;
    loop {
        let tip = match ch.as_mut() {
            Some(c) => {
                poll(&mut d, &signer, node.wallet_seed(), node.who, |e| c.handle_chain(e, &signer))?;
                if done(c) {
                    break;
                }
                ChainTip::at(d.chain().height)
            }
            None => ChainTip::at(d.chain_mut().tip()?),
        };
        // Alice's funding transaction, again, if the first commitment is signed but it never
        // confirmed.
        if let (Some(c), Some(tx), false) = (&ch, &funding, funding_checked) {
            if !in_setup(c) && Some(tx.compute_txid()) == c.funding_outpoint().map(|o| o.txid) {
                funding_checked = true;
                if !d.chain().seen.contains(&tx.compute_txid()) {
                    d.chain_mut().broadcast(tx);
                }
            }
        }
        // The connection dropped: the channel forgets the peer's unsigned updates.
        if connected && !d.transport().is_connected() {
            connected = false;
            if let Some(c) = ch.as_mut() {
                let fx = c.handle_disconnect();
                apply(&mut d, fx, node.who)?;
            }
        }
        if let Some(l) = &listener {
            if let Ok((stream, _)) = l.accept() {
                if let Err(e) = d.transport_mut().answer(stream, &me, them) {
                    eprintln!("{}: handshake failed: {e}", node.who);
                }
            }
        } else if !d.transport().is_connected() && last_connect.elapsed() > Duration::from_millis(20) {
            last_connect = Instant::now();
            let addr: Option<SocketAddr> =
                std::fs::read_to_string(node.addr_file(LAYER)).ok().and_then(|a| a.parse().ok());
            if let Some(stream) = addr.and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok()) {
                if let Err(e) = d.transport_mut().dial(stream, &me, them) {
                    eprintln!("{}: handshake failed: {e}", node.who);
                    d.transport_mut().disconnect();
                }
            }
        }
        connected |= d.transport().is_connected();
        while let Some(event) = d.transport_mut().receive() {
            let (channel_id, msg) = match event {
                PeerEvent::Ready { .. } => {
                    // The peer's `init` arrived: reestablish the channel, or open one. A channel
                    // still being set up is forgotten on a new connection (BOLT 2): opened again.
                    if ch.as_ref().is_some_and(in_setup) {
                        ch = None;
                    }
                    match ch.as_ref() {
                        Some(c) => {
                            let m = c.reestablish(&signer)?;
                            let _ = d.transport_mut().send(&m);
                        }
                        None if alice => {
                            let params = OpenParams {
                                config: config(),
                                temporary_channel_id: TEMPORARY_ID,
                                funding: CAPACITY,
                                push: MilliSats::ZERO,
                                feerate_per_kw: 1_000,
                            };
                            let (c, fx) = Channel::open(params, &signer, tip)?;
                            apply(&mut d, fx, node.who)?;
                            ch = Some(c);
                        }
                        None => {}
                    }
                    continue;
                }
                PeerEvent::Channel { channel_id, msg } => (channel_id, msg),
                _ => continue,
            };
            if let (Msg::OpenChannel(open), false) = (&msg, alice) {
                let replaceable = ch.as_ref().is_none_or(|c| {
                    in_setup(c) || c.funding_outpoint().is_some_and(|o| !d.chain().seen.contains(&o.txid))
                });
                if replaceable {
                    match Channel::accept(open, config(), &signer, tip) {
                        Ok((c, fx)) => {
                            apply(&mut d, fx, node.who)?;
                            ch = Some(c);
                        }
                        Err(e) => eprintln!("{}: open_channel refused: {e}", node.who),
                    }
                    continue;
                }
            }
            // Route by channel id (the zero id of an `error` or `warning` is for every channel).
            let Some(c) = ch.as_mut() else { continue };
            if channel_id != c.channel_id() && channel_id != ChannelId([0; 32]) {
                continue;
            }
            match c.handle_message(msg, &signer, tip) {
                Ok(fx) => {
                    for e in apply(&mut d, fx, node.who)? {
                        if e == Event::ShutdownReceived {
                            let fx = c.shutdown(node.wallet().script(), (CLOSE_FEE, CLOSE_FEE), &signer)?;
                            apply(&mut d, fx, node.who)?;
                        }
                    }
                }
                Err(e) => {
                    eprintln!("{}: lightning message refused: {e}", node.who);
                    if e.action != Action::Ignore {
                        if let Some(warning) = e.warning(c.channel_id()) {
                            let _ = d.transport_mut().send(&warning);
                        }
                        d.transport_mut().disconnect();
                    }
                }
            }
        }
        let Some(c) = ch.as_mut() else {
            idle();
            continue;
        };
        // Alice funds the channel when it asks (the crate's one funding flow); the wallet keeps
        // the signed transaction in its outbox, written with the channel's next update.
        if let Some(request) = c.funding_request() {
            let tx = node.funding_tx(d.chain_mut(), LAYER, request.output)?;
            d.storage_mut().outbox = Some(serialize(&tx));
            let fx = c.fund(tx.clone(), &signer)?;
            apply(&mut d, fx, node.who)?;
            funding = Some(tx);
            continue;
        }
        if !d.transport().is_ready() || !matches!(c.phase(), Phase::Normal | Phase::ShuttingDown) {
            idle();
            continue;
        }
        let fx = if alice { alice_turn(node, c, &signer, tip)? } else { bob_turn(node, c, &signer)? };
        match fx {
            Some(fx) => {
                apply(&mut d, fx, node.who)?;
            }
            None => idle(),
        }
    }
    println!("{}: lightning closed", node.who);
    Ok(())
}

/// Alice: once nothing is in flight, the next payment (how many were made is what Bob's side
/// holds), or `shutdown` after the last.
fn alice_turn(
    node: &Node,
    c: &mut Channel,
    signer: &InMemorySigner,
    tip: ChainTip,
) -> Result<Option<paychan::lightning::Effects>, Error> {
    if c.phase() != Phase::Normal || !quiescent(c) {
        return Ok(None);
    }
    let paid = c.balances(Side::Holder).counterparty.to_sat_floor() / PAY.to_sat();
    if paid < node.payments {
        let expiry = tip.height.0 + 144;
        let amount = MilliSats::from_amount(PAY).ok_or("amount")?;
        let (_, mut fx) = c.add_htlc(amount, preimage(paid).hash(), expiry, OnionPacket::zeroed())?;
        fx.merge(c.commit(signer)?);
        return Ok(Some(fx));
    }
    Ok(c.shutdown(node.wallet().script(), (CLOSE_FEE, CLOSE_FEE), signer).ok())
}

/// Bob: settles every HTLC offered to him once irrevocably committed (again after a restart:
/// an unsigned fulfilment is not persisted), and answers a `shutdown` he has not answered.
fn bob_turn(
    node: &Node,
    c: &mut Channel,
    signer: &InMemorySigner,
) -> Result<Option<paychan::lightning::Effects>, Error> {
    let mut fx = paychan::lightning::Effects::none();
    let offered: Vec<_> = c
        .htlcs()
        .iter()
        .filter(|h| h.offerer == Side::Counterparty && h.remove.is_none())
        .map(|h| (h.id, h.payment_hash))
        .collect();
    for (id, hash) in offered {
        if !c.is_htlc_irrevocably_committed(Side::Counterparty, id) {
            continue;
        }
        let Some(pre) = (0..node.payments).map(preimage).find(|p| p.hash() == hash) else { continue };
        if let Ok(f) = c.fulfill_htlc(id, pre) {
            fx.merge(f);
        }
    }
    if c.has_unsigned_changes() && !c.is_awaiting_revoke() {
        if let Ok(f) = c.commit(signer) {
            fx.merge(f);
        }
    }
    if c.phase() == Phase::ShuttingDown {
        if let Ok(f) = c.shutdown(node.wallet().script(), (CLOSE_FEE, CLOSE_FEE), signer) {
            fx.merge(f);
        }
    }
    Ok(Some(fx).filter(|f| !f.is_empty()))
}

pub fn run_opener(node: &Node) -> Result<(), Error> {
    run(node, true)
}

pub fn run_acceptor(node: &Node) -> Result<(), Error> {
    run(node, false)
}
