//! Damaged or mutated snapshots and penalty records.

use super::*;

/// Where each TLV record of a snapshot starts and ends (after the kind and version bytes).
fn record_bounds(snap: &[u8]) -> Vec<usize> {
    fn bigsize(b: &[u8], at: &mut usize) -> usize {
        let first = b[*at];
        let (n, width) = match first {
            0xfd => (u64::from(u16::from_be_bytes([b[*at + 1], b[*at + 2]])), 3),
            0xfe => (u64::from(u32::from_be_bytes(b[*at + 1..*at + 5].try_into().unwrap())), 5),
            0xff => (u64::from_be_bytes(b[*at + 1..*at + 9].try_into().unwrap()), 9),
            n => (u64::from(n), 1),
        };
        *at += width;
        n as usize
    }
    let mut at = 2;
    let mut bounds = vec![at];
    while at < snap.len() {
        bigsize(snap, &mut at);
        let len = bigsize(snap, &mut at);
        at += len;
        bounds.push(at);
    }
    assert_eq!(at, snap.len());
    bounds
}

#[track_caller]
fn assert_prefix_refused(snap: &[u8], len: usize) {
    match Channel::restore(&snap[..len], RestoreCheck::default()) {
        Err(RestoreError::Decode(_)) => {}
        other => panic!("prefix of {len}/{} bytes: {:?}", snap.len(), other.map(|c| c.update_id())),
    }
}

/// Truncated, extended, foreign and stale snapshots; truncated records.
///
/// Decoding parses a dozen public keys, which libsecp256k1 does slowly in a debug build
/// (~0.1 ms each): every prefix length is tried on two snapshots (a quiescent channel and one
/// with an HTLC in flight), and on every other snapshot of the run the prefixes within 3 bytes
/// of each TLV record boundary (a cut anywhere inside a record fails at that record's header).
fn damaged_snapshots_and_records_are_refused(ct: ChannelType) {
    let log = scenario(ct);
    // Each snapshot with the onion records its HTLCs in flight refer to.
    let mut snapshots: Vec<(Vec<u8>, Vec<Vec<u8>>)> =
        log.iter().filter_map(|d| d.receiver.as_ref().map(|c| (c.snapshot(), onion_records(c)))).collect();
    snapshots.sort();
    snapshots.dedup();
    assert!(snapshots.iter().any(|(_, r)| !r.is_empty()), "some snapshots refer to onion records");
    assert!(snapshots.len() >= 20, "{}", snapshots.len());
    let normal = |r: &&Delivered| r.receiver.as_ref().is_some_and(|c| c.phase() == Phase::Normal);
    let quiescent = log.iter().filter(normal).find(|d| d.receiver.as_ref().unwrap().htlcs().is_empty()).unwrap();
    let one_htlc = log.iter().filter(normal).find(|d| d.receiver.as_ref().unwrap().htlcs().len() == 1).unwrap();
    for d in [quiescent, one_htlc] {
        let snap = d.receiver.as_ref().unwrap().snapshot();
        for len in 0..snap.len() {
            assert_prefix_refused(&snap, len);
        }
    }
    for (snap, records) in &snapshots {
        let restored = Channel::restore_with_records(snap, records, RestoreCheck::default()).expect("valid snapshot");
        assert!(restored.snapshot() == *snap, "restore is exact");
        if let Some(last) = records.last() {
            // An incomplete or damaged log is refused, not restored without the onion.
            let all_but_one = &records[..records.len() - 1];
            assert_eq!(
                Channel::restore_with_records(snap, all_but_one, RestoreCheck::default()).err(),
                Some(RestoreError::MissingRecord)
            );
            assert_eq!(Channel::restore(snap, RestoreCheck::default()).err(), Some(RestoreError::MissingRecord));
            let damaged: Vec<Vec<u8>> = all_but_one.iter().cloned().chain([last[..last.len() - 1].to_vec()]).collect();
            assert!(matches!(
                Channel::restore_with_records(snap, &damaged, RestoreCheck::default()),
                Err(RestoreError::Decode(_))
            ));
        }
        for bound in record_bounds(snap) {
            for len in bound.saturating_sub(3)..(bound + 4).min(snap.len()) {
                assert_prefix_refused(snap, len);
            }
        }
        // One more byte is a truncated record (or an out-of-order type), whatever the byte.
        for b in [0x00, 0x01, 0x18, 0x19, 0x1a, 0x7f, 0xfc, 0xfd, 0xfe, 0xff] {
            let mut longer = snap.clone();
            longer.push(b);
            assert!(
                matches!(Channel::restore(&longer, RestoreCheck::default()), Err(RestoreError::Decode(_))),
                "+{b:#04x}"
            );
        }
        // Identity and freshness.
        let id = restored.channel_id();
        let update_id = restored.update_id();
        let wrong = RestoreCheck { channel_id: Some(OTHER_ID), min_update_id: 0 };
        assert_eq!(Channel::restore_with_records(snap, records, wrong).err(), Some(RestoreError::WrongChannel));
        let newer = RestoreCheck { channel_id: Some(id), min_update_id: update_id + 1 };
        assert_eq!(
            Channel::restore_with_records(snap, records, newer).err(),
            Some(RestoreError::Stale { snapshot: update_id, expected_at_least: update_id + 1 })
        );
        let exact = RestoreCheck { channel_id: Some(id), min_update_id: update_id };
        assert!(Channel::restore_with_records(snap, records, exact).is_ok());
    }
    // Every byte value appended to one snapshot.
    let snap = quiescent.receiver.as_ref().unwrap().snapshot();
    for b in 0..=255u8 {
        let mut longer = snap.clone();
        longer.push(b);
        assert!(
            matches!(Channel::restore(&longer, RestoreCheck::default()), Err(RestoreError::Decode(_))),
            "+{b:#04x}"
        );
    }
    // Records: per HTLC one onion record and one penalty record (besides the deltas), refused
    // when truncated or extended.
    let mut p = Pair::open(ct, CAPACITY, PUSH);
    pay(&mut p, 10_000_000, 1);
    let not_deltas =
        |r: &[Vec<u8>]| -> Vec<Vec<u8>> { r.iter().filter(|r| !paychan::core::delta::is_delta(r)).cloned().collect() };
    let (records_a, records_b) = (not_deltas(&p.a.records), not_deltas(&p.b.records));
    assert_eq!((records_a.len(), records_b.len()), (2, 2));
    let onion_record = records_a[0].clone();
    assert!(matches!(Record::decode(&onion_record), Ok(Record::Onion(_))));
    for len in 0..onion_record.len() {
        assert!(Record::decode(&onion_record[..len]).is_err(), "onion record prefix {len}");
    }
    for b in [0x00, 0x01, 0x7f, 0xff] {
        let mut longer = onion_record.clone();
        longer.push(b);
        assert!(Record::decode(&longer).is_err(), "onion record +{b:#04x}");
    }
    let record = records_a[1].clone();
    assert!(matches!(
        Channel::restore(&record, RestoreCheck::default()),
        Err(RestoreError::Decode(DecodeError::WrongKind { .. }))
    ));
    let decoded = PenaltyRecord::decode(&record).expect("record decodes");
    assert_eq!(decoded.encode(), record);
    assert_eq!((decoded.offerer, decoded.amount), (Side::Holder, MilliSats::from_msat(10_000_000)));
    for len in 0..record.len() {
        assert!(PenaltyRecord::decode(&record[..len]).is_err(), "record prefix {len}");
    }
    for b in 0..=255u8 {
        let mut longer = record.clone();
        longer.push(b);
        assert!(PenaltyRecord::decode(&longer).is_err(), "record +{b:#04x}");
    }
    assert!(matches!(PenaltyRecord::decode(&p.a.ch.snapshot()), Err(DecodeError::WrongKind { .. })));
}

#[test]
fn damaged_snapshots_and_records_are_refused_static_remotekey() {
    damaged_snapshots_and_records_are_refused(ChannelType::StaticRemoteKey);
}

#[test]
fn damaged_snapshots_and_records_are_refused_anchors() {
    damaged_snapshots_and_records_are_refused(ChannelType::AnchorsZeroFeeHtlc);
}

#[test]
fn mutated_snapshots_never_panic() {
    let log = scenario(ChannelType::AnchorsZeroFeeHtlc);
    let ch = log.iter().rev().find_map(|d| d.receiver.as_ref().filter(|r| r.htlcs().len() >= 2)).unwrap();
    let (snap, records) = (ch.snapshot(), onion_records(ch));
    let mut rng = Rng(0x05ee_d5a9);
    let mut restored = 0;
    for _ in 0..500 {
        let mut bytes = snap.clone();
        let i = rng.below(bytes.len() as u64) as usize;
        bytes[i] ^= 1 + rng.below(255) as u8;
        if let Ok(ch) = Channel::restore_with_records(&bytes, &records, RestoreCheck::default()) {
            // Whatever restores, re-encodes and answers questions without panicking.
            let _ = ch.snapshot();
            let _ = ch.balances(Side::Holder);
            let _ = ch.counterparty_commitment();
            restored += 1;
        }
    }
    assert!(restored > 0);
}
