//! Writes the seed corpora under `fuzz/corpus/<target>/`: real encodings (messages, snapshots,
//! penalty records and kits, shachain stores) collected from scripted runs of the state-machine
//! harnesses, and the action scripts themselves as seeds of the state-machine targets.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use paychan::bitcoin::hashes::{sha256, Hash};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::shachain::{generate_from_seed, SecretStore, MAX_INDEX};
use paychan::spilman::Variant;
use paychan_fuzz::{duplex_state, lightning_state, spilman_state, Input, Log};

/// Spilman action scripts (first byte: variant). See `spilman_state::Pair::step` for the opcodes.
const SPILMAN: &[&[u8]] = &[
    // Payments, an HTLC fulfilled, one failed, one timed out, a close mined, restarts.
    &[
        0, 0, 1, 10, 17, 1, 5, 0, 10, 17, 2, 0, 0, 17, 0, 2, 3, 17, 1, 9, 1, 20, 17, 3, 0, 17, 1, 3, 2, 4, 17, 13,
        0x85, 4, 0, 17, 16, 0, 16, 1, 6, 17, 14, 0, 17, 14, 1,
    ],
    &[1, 0, 1, 10, 17, 1, 5, 0, 10, 17, 2, 0, 0, 17, 0, 3, 0, 17, 5, 17, 14, 0, 15, 0, 17, 13, 0xff],
    // Reconnections: a dropped payment sent again, a dropped fulfilment sent again.
    &[0, 0, 1, 10, 10, 0x01, 10, 0x80, 17, 1, 5, 0, 10, 17, 2, 0, 0, 10, 0x00, 10, 0x80, 17],
    // Faults: drop, duplicate, mutate, then the refund after expiry.
    &[0, 0, 0, 200, 10, 1, 0, 1, 50, 11, 1, 17, 0, 1, 60, 12, 1, 0, 40, 0x20, 17, 13, 0xff, 13, 0xff, 14, 0],
    &[1, 1, 2, 3, 9, 1, 2, 1, 7, 9, 2, 0, 1, 8, 13, 5, 4, 0, 17, 6, 9, 14, 0, 2, 0, 0, 14, 1],
];

/// Lightning action scripts (first byte: channel type). See `lightning_state::Pair::step`.
const LIGHTNING: &[&[u8]] = &[
    // A→B HTLC fulfilled, fee update, B→A HTLC failed, an unsigned add across a reconnection,
    // cooperative close.
    &[
        0,
        0,
        1,
        10,
        0,
        20,
        31,
        127,
        0x8c,
        0,
        0,
        0x80 | 31,
        127,
        28,
        4,
        31,
        127,
        0x80,
        1,
        50,
        1,
        30,
        0x80 | 31,
        127,
        20,
        0,
        5,
        31,
        127,
        0,
        1,
        5,
        2,
        40,
        89,
        127,
        31,
        127,
        104,
        0,
        50,
        127,
        107,
        0,
    ],
    &[
        1,
        0,
        1,
        10,
        0,
        20,
        31,
        127,
        0x80,
        2,
        3,
        1,
        40,
        0x80 | 31,
        127,
        0x8c,
        0,
        0,
        26,
        0,
        0x80,
        0,
        31,
        0x80 | 31,
        127,
        106,
        107,
        0,
        95,
        0x90,
        107,
        1,
        107,
        2,
        95,
        0xff,
        107,
        3,
    ],
    // Crossed commitments, a dropped revocation healed by a reconnection, restarts.
    &[
        0,
        0,
        1,
        30,
        1,
        10,
        0x80,
        1,
        20,
        2,
        10,
        31,
        0x80 | 31,
        51,
        0x80 | 51,
        51,
        0x80 | 51,
        81,
        127,
        89,
        127,
        100,
        0xe4,
        12,
        0,
        0,
        31,
        127,
        0x80 | 110,
        0x80,
        1,
    ],
    &[1, 0, 2, 100, 3, 10, 31, 51, 0x80 | 51, 85, 0, 40, 1, 127, 89, 127, 0x80 | 104, 0, 20, 127, 83, 127, 106],
];

/// Duplex action scripts. See `duplex_state::Pair::step`.
const DUPLEX: &[&[u8]] = &[
    // Payments both ways, an HTLC each way (fulfilled, failed), resets, a cooperative close.
    &[
        0,
        1,
        10,
        127,
        0x80,
        1,
        5,
        127,
        15,
        3,
        0,
        2,
        127,
        0x80 | 25,
        0,
        0,
        127,
        38,
        127,
        0x80 | 15,
        2,
        1,
        3,
        127,
        33,
        0,
        127,
        0x80 | 38,
        127,
        47,
        127,
        98,
        0,
    ],
    // Reconnections: a dropped payment sent again, a reset interrupted at step (2) and at (3).
    &[0, 1, 10, 0x80 | 80, 103, 127, 38, 0x80 | 50, 80, 103, 127, 0x80 | 38, 50, 0x80 | 50, 80, 103, 127],
    // A reset racing a payment, a cancelled reset, a force close and its schedule.
    &[0, 2, 50, 38, 0x80, 1, 1, 127, 38, 46, 127, 15, 1, 2, 0, 127, 49, 98, 0, 88, 0x90, 98, 1, 98, 2, 88, 0xff, 98, 3],
    // Faults: drop, duplicate, mutate; restarts.
    &[0, 0, 1, 80, 0, 1, 9, 82, 127, 0x80, 1, 1, 0x80 | 84, 0, 0, 0, 50, 94, 0x80 | 94, 127, 38, 127],
];

/// Most seeds per target: evenly spaced over what a script produced (keeps the corpus small).
const MAX_SEEDS: usize = 40;

fn write_all(dir: &Path, items: impl IntoIterator<Item = Vec<u8>>) -> usize {
    fs::create_dir_all(dir).expect("mkdir");
    let mut seen = BTreeSet::new();
    let mut unique: Vec<Vec<u8>> = Vec::new();
    for item in items {
        if seen.insert(sha256::Hash::hash(&item).to_byte_array()) {
            unique.push(item);
        }
    }
    let step = unique.len().div_ceil(MAX_SEEDS).max(1);
    seen.clear();
    for item in unique.into_iter().step_by(step) {
        let h = sha256::Hash::hash(&item).to_byte_array();
        if seen.insert(h) {
            let name: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
            fs::write(dir.join(format!("seed-{name}")), &item).expect("write");
        }
    }
    seen.len()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let dir = |t: &str| root.join(t);

    // Spilman.
    let mut log = Log::default();
    for script in SPILMAN {
        let variant = if script[0] & 1 == 0 { Variant::Cltv } else { Variant::PresignedRefund };
        let mut p = spilman_state::Pair::open(variant, true);
        let mut input = Input::new(&script[1..]);
        while !input.is_empty() {
            p.step(&mut input);
        }
        let l = p.log.take().expect("log");
        log.msgs.extend(l.msgs);
        log.snapshots.extend(l.snapshots);
        log.snapshots.push(p.payer.snapshot());
        log.snapshots.push(p.payee.snapshot());
    }
    println!("decode_spilman_msg: {}", write_all(&dir("decode_spilman_msg"), log.msgs));
    println!("decode_spilman_snapshot: {}", write_all(&dir("decode_spilman_snapshot"), log.snapshots));
    println!("spilman_state: {}", write_all(&dir("spilman_state"), SPILMAN.iter().map(|s| s.to_vec())));

    // Lightning.
    let mut log = Log::default();
    let mut kits = Vec::new();
    let mut stores = Vec::new();
    let rev = ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0).revocation_base;
    for script in LIGHTNING {
        let t = if script[0] & 1 == 0 { ChannelType::StaticRemoteKey } else { ChannelType::AnchorsZeroFeeHtlc };
        let mut p = lightning_state::Pair::open(t, true);
        let mut input = Input::new(&script[1..]);
        let mut steps = 0;
        while !input.is_empty() {
            p.step(&mut input);
            steps += 1;
            if steps % 4 == 0 {
                for who in 0..2 {
                    if let Some(k) = p.ch[who].watchtower_kit(Some(rev.clone()), &p.records[who]) {
                        stores.push(k.secrets.encode().to_vec());
                        kits.push(k.encode());
                    }
                }
            }
        }
        for who in 0..2 {
            if let Some(k) = p.ch[who].watchtower_kit(None, &p.records[who]) {
                kits.push(k.encode());
            }
        }
        let l = p.log.take().expect("log");
        log.msgs.extend(l.msgs);
        log.snapshots.extend(l.snapshots);
        log.records.extend(l.records);
    }
    println!("decode_lightning_msg: {}", write_all(&dir("decode_lightning_msg"), log.msgs));
    println!("decode_lightning_snapshot: {}", write_all(&dir("decode_lightning_snapshot"), log.snapshots));
    println!("decode_penalty: {}", write_all(&dir("decode_penalty"), log.records.into_iter().chain(kits)));
    println!("lightning_state: {}", write_all(&dir("lightning_state"), LIGHTNING.iter().map(|s| s.to_vec())));

    // Shachain stores: from the channels above and from a seed, at several fill levels.
    let seed = Seed::from_bytes([0x42; 32]);
    for n in [0u64, 1, 2, 3, 4, 5, 8, 17, 64, 300, 1025] {
        let mut store = SecretStore::new();
        for i in 0..n {
            store.insert(MAX_INDEX - i, &generate_from_seed(&seed, MAX_INDEX - i)).expect("in order");
        }
        stores.push(store.encode().to_vec());
    }
    println!("decode_shachain: {}", write_all(&dir("decode_shachain"), stores));

    // Duplex.
    let mut log = Log::default();
    for script in DUPLEX {
        let mut p = duplex_state::Pair::open(true);
        let mut input = Input::new(script);
        while !input.is_empty() {
            p.step(&mut input);
        }
        let l = p.log.take().expect("log");
        log.msgs.extend(l.msgs);
        log.snapshots.extend(l.snapshots);
    }
    println!("decode_duplex_msg: {}", write_all(&dir("decode_duplex_msg"), log.msgs));
    println!("decode_duplex_snapshot: {}", write_all(&dir("decode_duplex_snapshot"), log.snapshots));
    println!("duplex_state: {}", write_all(&dir("duplex_state"), DUPLEX.iter().map(|s| s.to_vec())));
}
