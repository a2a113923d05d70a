//! Every BOLT #8 test vector (Appendix A), from the JSON copies in `tests/vectors/bolt8/`: the
//! handshake seen from each side with every failure case, and the message encryption with the
//! key rotations at messages 500 and 1000.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use paychan::network::noise::{Handshake, InMemoryNodeSigner, NoiseError, Transport};
use serde_json::Value;

fn load(name: &str) -> Value {
    let text = match name {
        "handshake" => include_str!("vectors/bolt8/handshake.json"),
        "messages" => include_str!("vectors/bolt8/message_encryption.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn key(v: &Value) -> SecretKey {
    SecretKey::from_slice(&bytes(v)).unwrap()
}

fn act(case: &Value, n: u64) -> Vec<u8> {
    let a = case["acts"].as_array().unwrap().iter().find(|a| a["act"].as_u64() == Some(n)).unwrap();
    bytes(&a["bytes"])
}

/// The spec's error label for our error.
fn label(e: NoiseError) -> String {
    match e {
        NoiseError::ActLength { act } => format!("ACT{act}_READ_FAILED"),
        NoiseError::BadVersion { act, .. } => format!("ACT{act}_BAD_VERSION"),
        NoiseError::BadPubkey { act } => format!("ACT{act}_BAD_PUBKEY"),
        NoiseError::BadTag { act } => format!("ACT{act}_BAD_TAG"),
        NoiseError::BadCiphertext => "ACT3_BAD_CIPHERTEXT".into(),
        other => format!("{other:?}"),
    }
}

fn check_ok(case: &Value, t: &Transport) {
    let (sk, rk) = t.keys();
    assert_eq!(sk.to_vec(), bytes(&case["expected"]["sk"]), "{}", case["name"]);
    assert_eq!(rk.to_vec(), bytes(&case["expected"]["rk"]), "{}", case["name"]);
}

#[test]
fn initiator_vectors() {
    let v = load("handshake");
    let cases = v["initiator"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let k = &case["keys"];
        let local = InMemoryNodeSigner::new(key(&k["ls_priv"]));
        let remote = PublicKey::from_slice(&bytes(&k["rs_pub"])).unwrap();
        let (mut hs, act1) =
            Handshake::initiator(&Secp256k1::signing_only(), &local, remote, key(&k["e_priv"])).unwrap();
        assert_eq!(act1.to_vec(), act(case, 1), "{}: act one", case["name"]);
        let result = hs.read_act_two(&act(case, 2), &local);
        match case["expected"]["outcome"].as_str().unwrap() {
            "ok" => {
                let (t, act3) = result.unwrap();
                assert_eq!(act3.to_vec(), act(case, 3), "{}: act three", case["name"]);
                check_ok(case, &t);
            }
            _ => {
                let e = result.expect_err(case["name"].as_str().unwrap());
                assert_eq!(label(e), case["expected"]["error"].as_str().unwrap(), "{}", case["name"]);
                // A failed handshake cannot be continued.
                assert_eq!(hs.read_act_two(&act(case, 2), &local).unwrap_err(), NoiseError::WrongState);
            }
        }
    }
}

#[test]
fn responder_vectors() {
    let v = load("handshake");
    let cases = v["responder"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let k = &case["keys"];
        let local = InMemoryNodeSigner::new(key(&k["ls_priv"]));
        let mut hs = Handshake::responder(&Secp256k1::signing_only(), key(&k["e_priv"]));
        let expected = &case["expected"];
        let failing = expected["failing_act"].as_u64();
        let r1 = hs.read_act_one(&act(case, 1), &local);
        if failing == Some(1) {
            assert_eq!(label(r1.unwrap_err()), expected["error"].as_str().unwrap(), "{}", case["name"]);
            continue;
        }
        assert_eq!(r1.unwrap().to_vec(), act(case, 2), "{}: act two", case["name"]);
        let r3 = hs.read_act_three(&act(case, 3), &local);
        if failing == Some(3) {
            assert_eq!(label(r3.unwrap_err()), expected["error"].as_str().unwrap(), "{}", case["name"]);
            continue;
        }
        let (t, remote) = r3.unwrap();
        check_ok(case, &t);
        // The successful responder case's initiator is the initiator vectors' static key.
        let init = &v["initiator"][0]["keys"];
        assert_eq!(remote.serialize().to_vec(), bytes(&init["ls_pub"]));
    }
}

/// The initiator of the successful handshake sends "hello" 1,002 times; the listed outputs must
/// match, including those after the rotations at 500 and 1000; the responder decrypts them all,
/// fed in awkward chunks.
#[test]
fn message_encryption_and_key_rotation() {
    let v = load("handshake");
    let init = &v["initiator"][0];
    let resp = &v["responder"][0];
    let a_keys = &init["keys"];
    let alice = InMemoryNodeSigner::new(key(&a_keys["ls_priv"]));
    let bob = InMemoryNodeSigner::new(key(&resp["keys"]["ls_priv"]));
    let remote = PublicKey::from_slice(&bytes(&a_keys["rs_pub"])).unwrap();
    let (mut a, act1) =
        Handshake::initiator(&Secp256k1::signing_only(), &alice, remote, key(&a_keys["e_priv"])).unwrap();
    let mut b = Handshake::responder(&Secp256k1::signing_only(), key(&resp["keys"]["e_priv"]));
    let act2 = b.read_act_one(&act1, &bob).unwrap();
    let (mut sender, act3) = a.read_act_two(&act2, &alice).unwrap();
    let (mut receiver, _) = b.read_act_three(&act3, &bob).unwrap();

    let m = load("messages");
    let vector = &m["vector"];
    let plaintext = bytes(&vector["message_plaintext"]);
    let outputs: Vec<(u64, Vec<u8>)> = vector["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["index"].as_u64().unwrap(), bytes(&o["ciphertext"])))
        .collect();
    assert_eq!(outputs.len(), 6);
    let mut wire = Vec::new();
    for i in 0..1002u64 {
        let c = sender.encrypt(&plaintext).unwrap();
        if let Some((_, expected)) = outputs.iter().find(|(n, _)| *n == i) {
            assert_eq!(&c, expected, "message {i}");
        }
        wire.extend(c);
    }
    let mut got = 0;
    for chunk in wire.chunks(7) {
        receiver
            .read(chunk, |msg| {
                assert_eq!(msg, &plaintext[..]);
                got += 1;
            })
            .unwrap();
    }
    assert_eq!(got, 1002);
}

#[test]
fn a_tampered_message_ends_the_stream() {
    let alice = InMemoryNodeSigner::new(SecretKey::from_slice(&[1; 32]).unwrap());
    let bob = InMemoryNodeSigner::new(SecretKey::from_slice(&[2; 32]).unwrap());
    let (mut a, act1) = Handshake::initiator(
        &Secp256k1::signing_only(),
        &alice,
        paychan::network::noise::NodeSigner::node_id(&bob),
        SecretKey::from_slice(&[3; 32]).unwrap(),
    )
    .unwrap();
    let mut b = Handshake::responder(&Secp256k1::signing_only(), SecretKey::from_slice(&[4; 32]).unwrap());
    let act2 = b.read_act_one(&act1, &bob).unwrap();
    let (mut s, act3) = a.read_act_two(&act2, &alice).unwrap();
    let (mut r, _) = b.read_act_three(&act3, &bob).unwrap();
    let mut c = s.encrypt(b"update_add_htlc").unwrap();
    let last = c.len() - 1;
    c[last] ^= 1;
    assert_eq!(r.read(&c, |_| panic!("no message from a tampered body")), Err(NoiseError::BadMessage));
    assert!(s.encrypt(&vec![0; 65_536]).is_err(), "over the length limit");
}
