//! A payment's onion through a route: the origin builds it from hop payloads, the forwarding node
//! peels and checks its layer, the final node checks the HTLC against its invoice, and a refusal
//! travels back to the origin attributed to the right hop. Each hostile value a previous hop or
//! the sender can choose is refused with BOLT #4's code.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use paychan::network::onion::{build_onion, failure, obfuscate_failure, peel, read_failure, wrap_failure, Peeled};
use paychan::network::payload::HopPayload;

const HASH: [u8; 32] = [0x42; 32];
const SECRET: [u8; 32] = [0x5e; 32];

struct Route {
    keys: Vec<SecretKey>,
    nodes: Vec<PublicKey>,
}

fn route() -> Route {
    let secp = Secp256k1::new();
    let keys: Vec<SecretKey> = (1..=3u8).map(|b| SecretKey::from_slice(&[b; 32]).unwrap()).collect();
    let nodes = keys.iter().map(|k| PublicKey::from_secret_key(&secp, k)).collect();
    Route { keys, nodes }
}

/// Alice → Bob → Carol → Dave: 100,000 msat to Dave at expiry 800,100; Bob and Carol each take
/// 1,000 msat and 40 blocks.
fn payloads(secret: [u8; 32], final_amount: u64) -> Vec<HopPayload> {
    vec![
        HopPayload::Forward { amt_to_forward: 101_000, outgoing_cltv_value: 800_140, short_channel_id: 2 },
        HopPayload::Forward { amt_to_forward: 100_000, outgoing_cltv_value: 800_100, short_channel_id: 3 },
        HopPayload::Final {
            amt_to_forward: final_amount,
            outgoing_cltv_value: 800_100,
            payment_data: Some((secret, final_amount)),
            payment_metadata: None,
            keysend_preimage: None,
        },
    ]
}

#[test]
fn a_payment_is_forwarded_and_accepted_hop_by_hop() {
    let r = route();
    let hops = payloads(SECRET, 100_000);
    let encoded: Vec<Vec<u8>> = hops.iter().map(HopPayload::encode).collect();
    let (onion, _) =
        build_onion(&Secp256k1::signing_only(), &r.nodes, &encoded, &SecretKey::from_slice(&[9; 32]).unwrap(), &HASH)
            .unwrap();
    // Bob receives 102,000 msat at 800,180.
    let Peeled::Forward { payload, next, .. } = peel(&onion, &r.keys[0], &HASH).unwrap() else { panic!() };
    let bob = HopPayload::decode(&payload, false).unwrap();
    assert_eq!(bob, hops[0]);
    bob.check_forward(102_000, 800_180, 1_000, 0, 40).unwrap();
    let Peeled::Forward { payload, next, .. } = peel(&next, &r.keys[1], &HASH).unwrap() else { panic!() };
    let carol = HopPayload::decode(&payload, false).unwrap();
    carol.check_forward(101_000, 800_140, 1_000, 0, 40).unwrap();
    let Peeled::Final { payload, .. } = peel(&next, &r.keys[2], &HASH).unwrap() else { panic!() };
    let dave = HopPayload::decode(&payload, true).unwrap();
    dave.check_final(100_000, 800_100, &SECRET, 800_000).unwrap();
}

/// A forwarding hop is not robbed of its fee or its CLTV margin by the previous hop's HTLC.
#[test]
fn an_htlc_short_of_the_fee_or_the_delta_is_refused_by_the_forwarder() {
    let bob = &payloads(SECRET, 100_000)[0];
    assert_eq!(bob.check_forward(101_999, 800_180, 1_000, 0, 40).unwrap_err().code, failure::FEE_INSUFFICIENT);
    assert_eq!(bob.check_forward(102_000, 800_179, 1_000, 0, 40).unwrap_err().code, failure::INCORRECT_CLTV_EXPIRY);
    // A proportional fee counts too: 1,000 ppm of 101,000 msat is 101 msat.
    assert_eq!(bob.check_forward(101_100, 800_180, 0, 1_000, 40).unwrap_err().code, failure::FEE_INSUFFICIENT);
    bob.check_forward(101_101, 800_180, 0, 1_000, 40).unwrap();
}

/// The final node is not paid less or later than the sender meant (a previous hop skimming the
/// amount or shortening the expiry), and a prober without the invoice's secret learns nothing.
#[test]
fn the_final_node_refuses_underpayment_short_expiry_and_probing() {
    let dave = &payloads(SECRET, 100_000)[2];
    let e = dave.check_final(99_999, 800_100, &SECRET, 800_000).unwrap_err();
    assert_eq!(e.code, failure::FINAL_INCORRECT_HTLC_AMOUNT);
    let e = dave.check_final(100_000, 800_099, &SECRET, 800_000).unwrap_err();
    assert_eq!(e.code, failure::FINAL_INCORRECT_CLTV_EXPIRY);
    let probe = &payloads([0; 32], 100_000)[2];
    let e = probe.check_final(100_000, 800_100, &SECRET, 800_000).unwrap_err();
    assert_eq!(e.code, failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS);
    assert_eq!(e.data, [100_000u64.to_be_bytes().as_slice(), 800_000u32.to_be_bytes().as_slice()].concat());
    let no_secret = HopPayload::Final {
        amt_to_forward: 100_000,
        outgoing_cltv_value: 800_100,
        payment_data: None,
        payment_metadata: None,
        keysend_preimage: None,
    };
    assert_eq!(
        no_secret.check_final(100_000, 800_100, &SECRET, 800_000).unwrap_err().code,
        failure::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
    );
}

/// Payloads that do not decode, miss a field or carry an unknown even type are refused with
/// `invalid_onion_payload`.
#[test]
fn malformed_payloads_are_refused() {
    let good = payloads(SECRET, 100_000)[0].encode();
    let body = &good[1..];
    // Missing short_channel_id on a forwarding hop.
    let final_body = payloads(SECRET, 100_000)[2].encode();
    assert_eq!(HopPayload::decode(&final_body[1..], false).unwrap_err().code, failure::INVALID_ONION_PAYLOAD);
    // short_channel_id on a final hop.
    assert_eq!(HopPayload::decode(body, true).unwrap_err().code, failure::INVALID_ONION_PAYLOAD);
    // An unknown even type.
    let mut even = body.to_vec();
    even.extend([0x0a, 0x00]);
    assert_eq!(HopPayload::decode(&even, false).unwrap_err().code, failure::INVALID_ONION_PAYLOAD);
    // A non-minimal amount.
    let bad = [0x02, 0x02, 0x00, 0x01, 0x04, 0x01, 0x01, 0x06, 0x08, 0, 0, 0, 0, 0, 0, 0, 1];
    assert!(HopPayload::decode(&bad, false).is_err());
    // keysend_preimage (type 5482373484, even) on a forwarding hop, and a short one on a final hop.
    let mut keysend = body.to_vec();
    keysend.extend([0xff, 0, 0, 0, 1, 0x46, 0xc6, 0x61, 0x6c, 0x20]);
    keysend.extend([7; 32]);
    assert_eq!(HopPayload::decode(&keysend, false).unwrap_err().code, failure::INVALID_ONION_PAYLOAD);
    let mut short = final_body[1..].to_vec();
    short.extend([0xff, 0, 0, 0, 1, 0x46, 0xc6, 0x61, 0x6c, 0x1f]);
    short.extend([7; 31]);
    assert_eq!(HopPayload::decode(&short, true).unwrap_err().code, failure::INVALID_ONION_PAYLOAD);
    let mut whole = final_body[1..].to_vec();
    whole.extend([0xff, 0, 0, 0, 1, 0x46, 0xc6, 0x61, 0x6c, 0x20]);
    whole.extend([7; 32]);
    let decoded = HopPayload::decode(&whole, true).expect("a final keysend decodes");
    assert_eq!(decoded.encode()[1..], whole[..], "and encodes back byte for byte");
}

#[test]
fn a_refusal_reaches_the_origin_attributed_to_its_hop() {
    let r = route();
    let hops = payloads(SECRET, 100_000);
    let encoded: Vec<Vec<u8>> = hops.iter().map(HopPayload::encode).collect();
    let (onion, secrets) =
        build_onion(&Secp256k1::signing_only(), &r.nodes, &encoded, &SecretKey::from_slice(&[9; 32]).unwrap(), &HASH)
            .unwrap();
    let Peeled::Forward { next, shared_secret: bob_ss, .. } = peel(&onion, &r.keys[0], &HASH).unwrap() else {
        panic!()
    };
    let Peeled::Forward { next, shared_secret: carol_ss, .. } = peel(&next, &r.keys[1], &HASH).unwrap() else {
        panic!()
    };
    let Peeled::Final { payload, shared_secret: dave_ss } = peel(&next, &r.keys[2], &HASH).unwrap() else { panic!() };
    // Carol skimmed 1 msat: Dave refuses.
    let refusal =
        HopPayload::decode(&payload, true).unwrap().check_final(99_999, 800_100, &SECRET, 800_000).unwrap_err();
    let mut packet = wrap_failure(&dave_ss, &refusal.message());
    obfuscate_failure(&carol_ss, &mut packet);
    obfuscate_failure(&bob_ss, &mut packet);
    let f = read_failure(&secrets, &packet).unwrap();
    assert_eq!(f.hop, 2, "Dave, the third hop");
    assert_eq!(f.code(), Some(failure::FINAL_INCORRECT_HTLC_AMOUNT));
}
