//! The BOLT #4 onion and failure vectors, from `tests/vectors/bolt4/`: the 5-hop onion built byte
//! for byte and peeled at every hop, and the failure packet of hop 4 wrapped, obfuscated on the
//! way back and attributed by the origin. (Route blinding, onion messages and attributable
//! errors are not implemented; their vectors are kept for when they are.)

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use paychan::network::onion::{
    build_onion, obfuscate_failure, peel, read_failure, shared_secrets, wrap_failure, Peeled,
};
use serde_json::Value;

fn load(name: &str) -> Value {
    let text = match name {
        "onion" => include_str!("vectors/bolt4/onion-test.json"),
        "error" => include_str!("vectors/bolt4/onion-error-test.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn onion_is_built_byte_for_byte_and_peeled_at_every_hop() {
    let v = load("onion");
    let g = &v["generate"];
    let session = SecretKey::from_slice(&bytes(&g["session_key"])).unwrap();
    let ad = bytes(&g["associated_data"]);
    let hops = g["hops"].as_array().unwrap();
    let route: Vec<PublicKey> = hops.iter().map(|h| PublicKey::from_slice(&bytes(&h["pubkey"])).unwrap()).collect();
    let payloads: Vec<Vec<u8>> = hops.iter().map(|h| bytes(&h["payload"])).collect();
    let (packet, secrets) = build_onion(&Secp256k1::signing_only(), &route, &payloads, &session, &ad).unwrap();
    assert_eq!(packet.as_bytes().to_vec(), bytes(&v["onion"]));
    let keys: Vec<SecretKey> =
        v["decode"].as_array().unwrap().iter().map(|k| SecretKey::from_slice(&bytes(k)).unwrap()).collect();
    let mut current = packet.clone();
    for (i, k) in keys.iter().enumerate() {
        // The payload without its BigSize length prefix (1 byte here, 3 for the 275-byte one).
        let full = &payloads[i];
        let prefix = if full[0] == 0xfd { 3 } else { 1 };
        match peel(&current, k, &ad).unwrap() {
            Peeled::Forward { payload, next, shared_secret } => {
                assert!(i < keys.len() - 1, "hop {i} forwards");
                assert_eq!(payload, full[prefix..]);
                assert_eq!(shared_secret, secrets[i]);
                current = next;
            }
            Peeled::Final { payload, shared_secret } => {
                assert_eq!(i, keys.len() - 1, "only the last hop is final");
                assert_eq!(payload, full[prefix..]);
                assert_eq!(shared_secret, secrets[i]);
            }
        }
    }
    // A flipped bit anywhere in the routing info breaks the first hop's HMAC.
    let mut bad = packet.clone();
    bad.bytes_mut()[500] ^= 1;
    assert_eq!(peel(&bad, &keys[0], &ad), Err(paychan::network::onion::OnionError::BadHmac));
    // So does another payment hash (the associated data).
    assert!(peel(&packet, &keys[0], &[0; 32]).is_err());
}

#[test]
fn failure_is_wrapped_obfuscated_and_attributed() {
    let v = load("error");
    let g = &v["generate"];
    let session = SecretKey::from_slice(&bytes(&g["session_key"])).unwrap();
    let hops = g["hops"].as_array().unwrap();
    let route: Vec<PublicKey> = hops.iter().map(|h| PublicKey::from_slice(&bytes(&h["pubkey"])).unwrap()).collect();
    let (_, secrets) = shared_secrets(&Secp256k1::signing_only(), &route, &session).unwrap();
    for (h, ss) in hops.iter().zip(&secrets) {
        assert_eq!(ss.to_vec(), bytes(&h["hop_shared_secret"]));
    }
    let message = bytes(&g["failure_message"]);
    // Hop 4 fails; hops 3..0 obfuscate on the way back.
    let mut packet = wrap_failure(&secrets[4], &message);
    for ss in secrets[..4].iter().rev() {
        obfuscate_failure(ss, &mut packet);
    }
    assert_eq!(packet, bytes(&v["errorpacket"]));
    let f = read_failure(&secrets, &packet).expect("attributed");
    assert_eq!(f.hop, 4);
    assert_eq!(f.message, message);
    assert_eq!(f.code(), Some(paychan::network::onion::failure::TEMPORARY_NODE_FAILURE));
    // A hop that garbles the packet makes it unattributable, not misattributed.
    let mut garbled = packet.clone();
    garbled[40] ^= 1;
    assert_eq!(read_failure(&secrets, &garbled), None);
}
