//! BOLT #1 on a BOLT #8 connection against a hostile peer: what `network::peer::Peer` refuses
//! and what it answers. The hostile side writes raw messages through its own transport.

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use paychan::core::encode::Writer;
use paychan::driving::ChannelId;
use paychan::lightning::Msg;
use paychan::network::features::{Feature, Features};
use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner, Transport};
use paychan::network::peer::{Init, Peer, PeerEvent, PeerFailure, INIT, NO_PONG_FROM, PING, PONG};

const CHAIN: [u8; 32] = [0x6f; 32];

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

/// Our `Peer` and the hostile side's raw transport, after a real handshake.
fn connect() -> (Peer, Transport, Vec<u8>) {
    let (us, them) = (InMemoryNodeSigner::new(key(1)), InMemoryNodeSigner::new(key(2)));
    let (mut a, act1) = Handshake::initiator(&Secp256k1::signing_only(), &us, them.node_id(), key(3)).unwrap();
    let mut b = Handshake::responder(&Secp256k1::signing_only(), key(4));
    let act2 = b.read_act_one(&act1, &them).unwrap();
    let (ours, act3) = a.read_act_two(&act2, &us).unwrap();
    let (theirs, _) = b.read_act_three(&act3, &them).unwrap();
    let (peer, init) = Peer::new(ours, Features::ours(), CHAIN);
    (peer, theirs, init)
}

fn init_with(features: Features, networks: Option<Vec<[u8; 32]>>) -> Vec<u8> {
    Init { features, networks, remote_addr: None }.encode()
}

fn send(t: &mut Transport, m: &[u8]) -> Vec<u8> {
    t.encrypt(m).unwrap()
}

#[test]
fn a_message_before_init_closes_the_connection() {
    let (mut peer, mut them, _) = connect();
    let m = Msg::UpdateFee { channel_id: ChannelId([1; 32]), feerate_per_kw: 253 }.encode();
    assert_eq!(peer.receive(&send(&mut them, &m)), Err(PeerFailure::NoInit));
}

#[test]
fn a_peer_requiring_an_unknown_or_unsupported_feature_is_refused() {
    let (mut peer, mut them, _) = connect();
    let mut f = Features::ours();
    f.set_bit(100);
    assert_eq!(peer.receive(&send(&mut them, &init_with(f, None))), Err(PeerFailure::RequiredFeature(100)));
    // A known feature we do not implement, required: refused too.
    let (mut peer, mut them, _) = connect();
    let mut f = Features::ours();
    f.set_required(Feature::DualFund);
    assert_eq!(peer.receive(&send(&mut them, &init_with(f, None))), Err(PeerFailure::RequiredFeature(28)));
    // Offered as optional, it is fine.
    let (mut peer, mut them, _) = connect();
    let mut f = Features::ours();
    f.set_optional(Feature::DualFund);
    f.set_bit(101);
    let got = peer.receive(&send(&mut them, &init_with(f, None))).unwrap();
    assert!(matches!(got.events[..], [PeerEvent::Ready { .. }]));
}

#[test]
fn a_peer_on_another_chain_or_with_broken_dependencies_is_refused() {
    let (mut peer, mut them, _) = connect();
    assert_eq!(
        peer.receive(&send(&mut them, &init_with(Features::ours(), Some(vec![[0; 32]])))),
        Err(PeerFailure::WrongChain)
    );
    let (mut peer, mut them, _) = connect();
    let mut f = Features::ours();
    f.set_optional(Feature::ZeroConf); // without option_scid_alias
    assert_eq!(peer.receive(&send(&mut them, &init_with(f, None))), Err(PeerFailure::MissingDependency));
}

#[test]
fn pings_are_answered_by_the_rules_and_pongs_checked() {
    let (mut peer, mut them, init) = connect();
    them.read(&init, |_| {}).unwrap();
    let _ = peer.receive(&send(&mut them, &init_with(Features::ours(), Some(vec![CHAIN])))).unwrap();
    let mut ping = Writer::new();
    ping.u16(PING).u16(10).u16(3).bytes(&[0; 3]);
    let got = peer.receive(&send(&mut them, ping.as_bytes())).unwrap();
    let mut replies = Vec::new();
    them.read(&got.reply, |m| replies.push(m.to_vec())).unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(&replies[0][..4], &[0, PONG as u8, 0, 10]);
    assert_eq!(replies[0].len(), 4 + 10);
    // No pong at or above 65,532 bytes.
    let mut ping = Writer::new();
    ping.u16(PING).u16(NO_PONG_FROM).u16(0);
    assert!(peer.receive(&send(&mut them, ping.as_bytes())).unwrap().reply.is_empty());
    // A pong nobody asked for, or of the wrong length, ends the connection.
    let mut pong = Writer::new();
    pong.u16(PONG).u16(0);
    assert_eq!(peer.receive(&send(&mut them, pong.as_bytes())), Err(PeerFailure::BadPong));
    let (mut peer, mut them, init) = connect();
    them.read(&init, |_| {}).unwrap();
    let _ = peer.receive(&send(&mut them, &init_with(Features::ours(), None))).unwrap();
    let ping = peer.ping(8);
    let mut got = Vec::new();
    them.read(&ping, |m| got.push(m.to_vec())).unwrap();
    let mut pong = Writer::new();
    pong.u16(PONG).u16(7).bytes(&[0; 7]);
    assert_eq!(peer.receive(&send(&mut them, pong.as_bytes())), Err(PeerFailure::BadPong));
}

#[test]
fn unknown_odd_messages_are_ignored_and_even_ones_refused() {
    let (mut peer, mut them, init) = connect();
    let mut seen = Vec::new();
    them.read(&init, |m| seen.push(m.to_vec())).unwrap();
    assert_eq!(&seen[0][..2], &INIT.to_be_bytes(), "our init goes first");
    let _ = peer.receive(&send(&mut them, &init_with(Features::ours(), None))).unwrap();
    let odd = [0x80, 0x01, 1, 2, 3];
    assert!(peer.receive(&send(&mut them, &odd)).unwrap().events.is_empty());
    let even = [0x80, 0x02];
    assert_eq!(peer.receive(&send(&mut them, &even)), Err(PeerFailure::UnknownEvenMessage(0x8002)));
}

/// A peer sends the `channel_update` of our private channel (LDK does, right after
/// `channel_ready`): a known BOLT #7 message, handed up, not a reason to close the connection.
#[test]
fn gossip_messages_are_delivered_not_fatal() {
    let (mut peer, mut them, _) = connect();
    peer.receive(&send(&mut them, &init_with(Features::ours(), None))).unwrap();
    let mut update = Writer::new();
    update.u16(258).bytes(&[7; 130]);
    let got = peer.receive(&send(&mut them, update.as_bytes())).unwrap();
    assert_eq!(got.events, vec![PeerEvent::Gossip { msg_type: 258, payload: vec![7; 130] }]);
    // An unknown even type outside the gossip range still closes the connection.
    let mut other = Writer::new();
    other.u16(266).bytes(&[0; 4]);
    assert_eq!(peer.receive(&send(&mut them, other.as_bytes())), Err(PeerFailure::UnknownEvenMessage(266)));
}
