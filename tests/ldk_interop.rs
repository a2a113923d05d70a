//! The acceptance test of the network layer: a paychan node and a live LDK 0.2.7 node
//! (`PeerManager` + `ChannelManager`) over a real TCP socket on 127.0.0.1.

mod ldk;

use bitcoin::secp256k1::SecretKey;
use ldk::{Ldk, Link};
use lightning::util::config::UserConfig;
use paychan::network::features::{Feature, Features};
use paychan::network::noise::{InMemoryNodeSigner, NodeSigner};
use paychan::network::peer::PeerEvent;

fn pc_node() -> InMemoryNodeSigner {
    InMemoryNodeSigner::new(SecretKey::from_slice(&[0x42; 32]).unwrap())
}

fn ready_features(link: &mut Link) -> Features {
    match link.events.pop_front() {
        Some(PeerEvent::Ready { features }) => features,
        other => panic!("expected LDK's init, got {other:?}"),
    }
}

/// LDK lists paychan as connected, with the features paychan's `init` carried.
fn ldk_sees_paychan(ldk: &Ldk, pc: &InMemoryNodeSigner) {
    let details = ldk.peers.peer_by_node_id(&pc.node_id()).expect("LDK lists paychan as a peer");
    assert!(details.init_features.supports_static_remote_key());
    assert!(details.init_features.supports_anchors_zero_fee_htlc_tx());
    assert!(details.init_features.supports_payment_secret());
}

#[test]
fn handshake_init_and_ping_with_paychan_as_initiator() {
    let ldk = Ldk::new(1, UserConfig::default());
    let mut link = Link::paychan_dials(&ldk, pc_node(), 3);
    let theirs = ready_features(&mut link);
    assert!(theirs.supports(Feature::StaticRemoteKey) && theirs.supports(Feature::PaymentSecret));
    ldk_sees_paychan(&ldk, &link.pc_node);
    // paychan pings, LDK pongs with exactly the bytes asked.
    let ping = link.peer().ping(12);
    link.deliver(&ldk, &ping);
    link.pump(&ldk);
    assert_eq!(link.events.pop_front(), Some(PeerEvent::Pong));
    // LDK pings on its timer; paychan answers and LDK keeps the connection.
    ldk.peers.timer_tick_occurred();
    assert!(link.pending_to_paychan() > 0, "LDK's ping");
    link.pump(&ldk);
    ldk.peers.timer_tick_occurred();
    link.pump(&ldk);
    assert_eq!(link.ldk_desc.disconnected.load(std::sync::atomic::Ordering::SeqCst), 0);
    ldk_sees_paychan(&ldk, &link.pc_node);
    assert!(link.events.is_empty(), "{:?}", link.events);
}

#[test]
fn handshake_init_and_ping_with_ldk_as_initiator() {
    let ldk = Ldk::new(2, UserConfig::default());
    let mut link = Link::ldk_dials(&ldk, pc_node(), 4);
    assert_eq!(link.learnt_initiator, Some(ldk.node_id()), "act three carries LDK's node id");
    let theirs = ready_features(&mut link);
    assert!(theirs.supports(Feature::VarOnionOptin));
    ldk_sees_paychan(&ldk, &link.pc_node);
    let ping = link.peer().ping(0);
    link.deliver(&ldk, &ping);
    link.pump(&ldk);
    assert_eq!(link.events.pop_front(), Some(PeerEvent::Pong));
    ldk.peers.timer_tick_occurred();
    assert!(link.pending_to_paychan() > 0, "LDK's ping");
    link.pump(&ldk);
    ldk.peers.timer_tick_occurred();
    link.pump(&ldk);
    assert_eq!(link.ldk_desc.disconnected.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(link.events.is_empty(), "{:?}", link.events);
}

use bitcoin::Transaction;
use ldk::{funding_tx, ldk_config, pc_config};
use lightning::events::Event as LdkEvent;
use paychan::core::commitment::ChannelType;
use paychan::lightning::{Event, Phase, Side};

const CAPACITY: u64 = 1_000_000;
const PUSH_MSAT: u64 = 200_000_000;

/// paychan and LDK connected (paychan dialing), paychan with `channel_type`'s policy.
fn connected(channel_type: ChannelType, seed: u8) -> (Ldk, Link) {
    let ldk = Ldk::new(seed, ldk_config(channel_type == ChannelType::AnchorsZeroFeeHtlc));
    let mut link = Link::paychan_dials(&ldk, pc_node(), seed.wrapping_add(100));
    link.pc.config = pc_config(channel_type);
    assert!(matches!(link.events.pop_front(), Some(PeerEvent::Ready { .. })));
    (ldk, link)
}

/// Accepts LDK's pending inbound channel requests (LDK asks for anchor channels).
fn ldk_accepts(ldk: &Ldk) {
    for e in ldk.events() {
        if let LdkEvent::OpenChannelRequest { temporary_channel_id, counterparty_node_id, .. } = e {
            ldk.manager
                .accept_inbound_channel(&temporary_channel_id, &counterparty_node_id, 0, None)
                .expect("LDK accepts");
        } else {
            panic!("unexpected LDK event {e:?}");
        }
    }
}

/// Mines the funding in one block seen by both nodes and runs the `channel_ready` exchange.
fn confirm(ldk: &mut Ldk, link: &mut Link, funding: &Transaction) {
    ldk.mine(std::slice::from_ref(funding));
    let msgs = link.pc.mine(std::slice::from_ref(funding));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
}

/// LDK opens a channel of `CAPACITY` pushing `PUSH_MSAT` to paychan; returns paychan's channel index.
fn ldk_opens(ldk: &mut Ldk, link: &mut Link) -> usize {
    let pc_id = link.pc_node.node_id();
    ldk.manager.create_channel(pc_id, CAPACITY, PUSH_MSAT, 7, None, None).expect("LDK opens");
    link.pump(ldk);
    let i = link.pc.channels.len() - 1;
    let (temp, script) = ldk
        .events()
        .into_iter()
        .find_map(|e| match e {
            LdkEvent::FundingGenerationReady {
                temporary_channel_id, output_script, channel_value_satoshis, ..
            } => {
                assert_eq!(channel_value_satoshis, CAPACITY);
                Some((temporary_channel_id, output_script))
            }
            _ => None,
        })
        .expect("LDK asks for the funding after paychan's accept_channel");
    let funding = funding_tx(script, bitcoin::Amount::from_sat(CAPACITY), 0x11);
    ldk.manager.funding_transaction_generated(temp, pc_id, funding.clone()).expect("funding");
    link.pump(ldk);
    assert!(ldk.broadcast.0.lock().unwrap().contains(&funding), "LDK broadcasts after paychan's funding_signed");
    confirm(ldk, link, &funding);
    i
}

/// paychan opens a channel of `CAPACITY` pushing `PUSH_MSAT` to LDK; returns its index.
fn paychan_opens(ldk: &mut Ldk, link: &mut Link) -> usize {
    let open = link.pc.open([0x77; 32], CAPACITY, PUSH_MSAT);
    link.send_all(ldk, &open);
    if link.pc.config.channel_type == ChannelType::AnchorsZeroFeeHtlc {
        ldk_accepts(ldk);
    }
    link.pump(ldk);
    let i = link.pc.channels.len() - 1;
    let (script, value) = link
        .pc
        .events(i)
        .into_iter()
        .find_map(|e| match e {
            Event::FundingGenerationReady { script_pubkey, value } => Some((script_pubkey, value)),
            _ => None,
        })
        .expect("paychan asks for the funding after LDK's accept_channel");
    let funding = funding_tx(script, value, 0x22);
    let msgs = link.pc.command(i, |ch, s| ch.funding_tx(funding.clone(), s).expect("funding_tx"));
    link.send_all(ldk, &msgs);
    link.pump(ldk);
    assert!(link.pc.broadcast.contains(&funding), "paychan broadcasts after LDK's funding_signed");
    confirm(ldk, link, &funding);
    i
}

/// Both sides see the channel ready with the same balances.
fn check_ready(ldk: &Ldk, link: &mut Link, i: usize, paychan_is_funder: bool) {
    let c = &link.pc.channels[i];
    assert_eq!(c.ch.phase(), Phase::Normal);
    assert!(c.events.iter().any(|e| matches!(e, Event::ChannelReady { .. })));
    let id = c.ch.channel_id();
    let details = ldk
        .manager
        .list_channels()
        .into_iter()
        .find(|d| d.channel_id.0 == id.0)
        .expect("LDK knows the channel by the same id");
    assert!(details.is_channel_ready && details.is_usable, "{details:?}");
    assert_eq!(details.is_outbound, !paychan_is_funder);
    assert_eq!(details.channel_value_satoshis, CAPACITY);
    let anchors = c.ch.channel_type() == ChannelType::AnchorsZeroFeeHtlc;
    assert_eq!(details.channel_type.expect("negotiated").supports_anchors_zero_fee_htlc_tx(), anchors);
    let b = c.ch.balances(Side::Holder);
    let (pc_msat, ldk_msat) = if paychan_is_funder {
        (CAPACITY * 1000 - PUSH_MSAT, PUSH_MSAT)
    } else {
        (PUSH_MSAT, CAPACITY * 1000 - PUSH_MSAT)
    };
    assert_eq!((b.holder.to_msat(), b.counterparty.to_msat()), (pc_msat, ldk_msat));
    // LDK gives the private channel's forwarding terms in a `channel_update` to its peer.
    assert!(link.gossip.iter().any(|(t, _)| *t == 258), "LDK's channel_update");
    assert!(ldk.events().iter().any(|e| matches!(e, LdkEvent::ChannelReady { .. })));
}

#[test]
fn ldk_opens_a_static_remotekey_channel_to_paychan() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 11);
    let i = ldk_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, false);
}

#[test]
fn paychan_opens_a_static_remotekey_channel_to_ldk() {
    let (mut ldk, mut link) = connected(ChannelType::StaticRemoteKey, 12);
    let i = paychan_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, true);
}

#[test]
fn ldk_opens_an_anchors_channel_to_paychan() {
    let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 13);
    let i = ldk_opens(&mut ldk, &mut link);
    assert_eq!(link.pc.channels[i].ch.channel_type(), ChannelType::AnchorsZeroFeeHtlc);
    check_ready(&ldk, &mut link, i, false);
}

#[test]
fn paychan_opens_an_anchors_channel_to_ldk() {
    let (mut ldk, mut link) = connected(ChannelType::AnchorsZeroFeeHtlc, 14);
    let i = paychan_opens(&mut ldk, &mut link);
    check_ready(&ldk, &mut link, i, true);
}
