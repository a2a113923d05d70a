//! BOLT 8 and BOLT 1 on arbitrary bytes: a responder reading any act one, an initiator reading
//! any act two, `init` decoding, and an established connection fed arbitrary ciphertext never
//! panic. A decoded `init` re-encodes to one that decodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::bitcoin::secp256k1::{Secp256k1, SecretKey};
use paychan::core::encode::Reader;
use paychan::network::features::Features;
use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner};
use paychan::network::peer::{Init, Peer};

fuzz_target!(|data: &[u8]| {
    let key = |b: u8| SecretKey::from_slice(&[b; 32]).expect("key");
    let (alice, bob) = (InMemoryNodeSigner::new(key(1)), InMemoryNodeSigner::new(key(2)));
    let secp = Secp256k1::signing_only();
    let _ = Handshake::responder(&secp, key(4)).read_act_one(data, &bob);
    let (mut a, act1) = Handshake::initiator(&secp, &alice, bob.node_id(), key(3)).expect("act one");
    let _ = a.read_act_two(data, &alice);
    let mut r = Reader::new(data);
    if let Ok(init) = Init::decode_body(&mut r) {
        let bytes = init.encode();
        let mut again = Reader::new(&bytes[2..]);
        assert_eq!(Init::decode_body(&mut again).ok(), Some(init));
    }
    // A real connection, then the fuzz bytes as what the peer sends.
    let (mut a, _) = Handshake::initiator(&secp, &alice, bob.node_id(), key(3)).expect("act one");
    let mut b = Handshake::responder(&secp, key(4));
    let act2 = b.read_act_one(&act1, &bob).expect("act two");
    let (ta, act3) = a.read_act_two(&act2, &alice).expect("act three");
    let _ = b.read_act_three(&act3, &bob).expect("done");
    let (mut peer, _) = Peer::new(ta, Features::ours(), [0x6f; 32]);
    let _ = peer.receive(data);
});
