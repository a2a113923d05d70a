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
