//! BOLT 4 on arbitrary bytes: peeling any 1,366-byte packet, decoding any hop payload (as a
//! forwarding and as a final hop) and reading any failure packet never panics; a decoded payload
//! re-encodes to a payload that decodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::bitcoin::secp256k1::SecretKey;
use paychan::lightning::msgs::ONION_PACKET_LEN;
use paychan::lightning::OnionPacket;
use paychan::network::onion::{peel, read_failure};
use paychan::network::payload::HopPayload;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_slice(&[0x41; 32]).expect("key");
    let mut packet = [0u8; ONION_PACKET_LEN];
    let n = data.len().min(ONION_PACKET_LEN);
    packet[..n].copy_from_slice(&data[..n]);
    let _ = peel(&OnionPacket::new(packet), &key, &[0x42; 32]);
    for is_final in [false, true] {
        if let Ok(p) = HopPayload::decode(data, is_final) {
            let bytes = p.encode();
            // Skip the BigSize length prefix the encoding adds.
            let prefix = match bytes.first() {
                Some(0xfd) => 3,
                _ => 1,
            };
            assert_eq!(HopPayload::decode(&bytes[prefix..], is_final).ok(), Some(p));
        }
    }
    let _ = read_failure(&[[1; 32], [2; 32]], data);
});
