//! `SecretStore::decode` on the first `ENCODED_LEN` bytes of the input (zero-padded). The
//! encoding is fixed-size and canonical, so a store that decodes must encode back to the same
//! bytes. The rest of the input drives a few `insert`/`get` calls on the decoded store.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paychan::core::keys::PerCommitmentSecret;
use paychan::core::shachain::{SecretStore, MAX_INDEX};

fuzz_target!(|data: &[u8]| {
    let mut bytes = [0u8; SecretStore::ENCODED_LEN];
    let n = data.len().min(bytes.len());
    bytes[..n].copy_from_slice(&data[..n]);
    let Ok(mut store) = SecretStore::decode(&bytes) else { return };
    assert_eq!(store.encode(), bytes, "canonical encoding");
    assert_eq!(SecretStore::decode(&store.encode()).as_ref(), Ok(&store));
    // Extra operations: (index delta: 1 byte, secret byte: 1 byte) pairs.
    for op in data[n..].chunks_exact(2).take(16) {
        let index = store.next_index().wrapping_sub(u64::from(op[0] & 3)) & MAX_INDEX;
        let before = store.clone();
        let secret = PerCommitmentSecret::from_bytes([op[1]; 32]);
        if store.insert(index, &secret).is_err() {
            assert!(store == before, "a refused insert changes nothing");
        }
        let _ = store.get(index);
        let _ = store.get(u64::from(op[1]) << 40);
    }
});
