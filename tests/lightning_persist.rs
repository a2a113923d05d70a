//! What a Lightning channel writes, and when (`driving`, *Persistence*): durable writes only
//! where the protocol needs them, deltas instead of snapshots, their replay on restore, and
//! crashes that lose what was not written yet. Every crash test ends with the same commitments,
//! to the satoshi, as a run of the same payments without the crash.

mod common;

use bitcoin::Transaction;
use common::ln::{onion, Pair};
use paychan::core::commitment::ChannelType;
use paychan::core::delta::{is_delta, DeltaRecord};
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::driving::{RestoreCheck, RestoreError};
use paychan::lightning::{Channel, Event, OnionPacket, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];
const CAPACITY: u64 = 1_000_000;
const PUSH: u64 = 200_000_000;

/// A pays B `amount_msat` (add, sign, fulfil, sign), settled.
fn pay(p: &mut Pair, amount_msat: u64, n: u8) {
    let pre = PaymentPreimage([n; 32]);
    let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(amount_msat), pre.hash(), 2_000, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    p.settle();
}

/// Both sides' latest commitments (what each could broadcast) and balances.
fn outcome(p: &Pair) -> (Transaction, Transaction, MilliSats, MilliSats) {
    (
        p.a.ch.holder_commitment_tx(&p.a.signer).unwrap(),
        p.b.ch.holder_commitment_tx(&p.b.signer).unwrap(),
        p.a.ch.balances(Side::Holder).holder,
        p.b.ch.balances(Side::Holder).holder,
    )
}

/// The run without crash: the same payments on a fresh pair.
fn control(ct: ChannelType, payments: &[(u64, u8)]) -> (Transaction, Transaction, MilliSats, MilliSats) {
    let mut q = Pair::open(ct, CAPACITY, PUSH);
    for &(amount, n) in payments {
        pay(&mut q, amount, n);
    }
    outcome(&q)
}

fn check_whole(p: &Pair, ct: ChannelType, payments: &[(u64, u8)]) {
    p.verify_commitments();
    let paid: u64 = payments.iter().map(|(a, _)| a).sum();
    let got = outcome(p);
    assert_eq!(got.2, MilliSats::from_msat(CAPACITY * 1_000 - PUSH - paid), "A's balance");
    assert_eq!(got.3, MilliSats::from_msat(PUSH + paid), "B's balance");
    assert!(got == control(ct, payments), "the commitments of a run without the crash");
    assert!(p.a.ch.htlcs().is_empty() && p.b.ch.htlcs().is_empty());
}

/// An add not covered by a `commitment_signed` is in memory only: a crash of the sender loses
/// it, the receiver drops it at the reconnection (BOLT #2), and the sender's next HTLC takes its
/// id. Nothing of it is paid.
#[test]
fn a_crash_loses_an_unsigned_add_and_reestablish_recovers() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let writes = (p.a.persisted.len(), p.b.persisted.len());
        let lost = PaymentPreimage([1; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(70_000_000), lost.hash(), 2_000, onion()).unwrap();
        assert!(fx.update.is_none(), "an unsigned add is not written");
        p.a.absorb_pub(fx, &mut p.to_b);
        p.run();
        assert_eq!(p.b.ch.htlcs().len(), 1, "B has it, in memory");
        assert_eq!((p.a.persisted.len(), p.b.persisted.len()), writes, "neither side wrote");
        p.a.restart();
        assert!(p.a.ch.htlcs().is_empty(), "the crash lost it");
        p.reconnect();
        assert!(p.b.ch.htlcs().is_empty(), "B dropped it at the reconnection");
        let pre = PaymentPreimage([2; 32]);
        let (again, fx) = p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), pre.hash(), 2_000, onion()).unwrap();
        assert_eq!(again, id, "the id of the lost add is taken again");
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        check_whole(&p, ct, &[(30_000_000, 2)]);
    }
}

/// A fulfilment not covered by a `commitment_signed` is in memory only: the payee crashes after
/// sending it, the payer (which saw the preimage) drops it at the reconnection, and the payee's
/// embedder fulfils again after the restart (driving: it keeps the preimage until the HTLC is
/// resolved). The payee is paid in full.
#[test]
fn a_crash_loses_an_unsigned_fulfil_and_the_embedder_fulfils_again() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        let pre = PaymentPreimage([3; 32]);
        let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(40_000_000), pre.hash(), 2_000, onion()).unwrap();
        p.a.absorb_pub(fx, &mut p.to_b);
        p.settle();
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        assert!(fx.update.is_none(), "an unsigned fulfil is not written");
        p.b.absorb_pub(fx, &mut p.to_a);
        assert!(p.deliver_to_a());
        let learnt = |p: &mut Pair| {
            p.a.take_events()
                .iter()
                .filter(|e| matches!(e, Event::HtlcFulfilled { preimage, .. } if *preimage == pre))
                .count()
        };
        assert_eq!(learnt(&mut p), 1);
        p.b.restart();
        assert!(p.b.ch.htlcs().iter().all(|h| h.remove.is_none()), "the crash lost the fulfilment");
        p.reconnect();
        assert!(p.a.ch.htlcs().iter().all(|h| h.remove.is_none()), "A dropped it at the reconnection");
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        assert_eq!(learnt(&mut p), 1, "told again");
        check_whole(&p, ct, &[(40_000_000, 3)]);
    }
}

/// The write before `commitment_signed` carries the add (and its onion); a crash before the
/// messages go out, or with them lost, restores it, and the reconnection sends the add (the
/// same onion, from the log) and the signature again. A crash in the middle of that write (the
/// onion record appended, the delta not) leaves the state before it: the add is gone as in
/// the first test.
#[test]
fn a_crash_around_the_write_before_commitment_signed() {
    for ct in TYPES {
        for torn in [false, true] {
            let mut p = Pair::open(ct, CAPACITY, PUSH);
            let pre = PaymentPreimage([4; 32]);
            let mut o = OnionPacket::zeroed();
            o.bytes_mut()[7] = 0x77;
            let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(25_000_000), pre.hash(), 2_000, o.clone()).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            let fx = p.a.ch.commit(&p.a.signer).unwrap();
            let mut update = fx.update.clone().expect("written before `commitment_signed`");
            assert!(update.snapshot.is_none() && is_delta(update.records.last().unwrap()));
            if torn {
                // Only the onion record reached the storage; then the crash.
                update.records.pop();
                p.a.records.extend(update.records);
            } else {
                p.a.absorb_pub(fx, &mut p.to_b);
            }
            p.to_b.clear();
            p.a.restart();
            assert_eq!(p.a.ch.htlcs().len(), usize::from(!torn));
            p.reconnect();
            if torn {
                let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(25_000_000), pre.hash(), 2_000, o.clone()).unwrap();
                p.a.absorb_pub(fx, &mut p.to_b);
            } else {
                let resent = p.to_b.iter().find_map(|m| match m {
                    paychan::lightning::Msg::UpdateAddHtlc { onion_routing_packet, .. } => Some(onion_routing_packet),
                    _ => None,
                });
                assert_eq!(resent, Some(&o), "the add again, with its onion from the log");
            }
            p.settle();
            let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
            p.settle();
            check_whole(&p, ct, &[(25_000_000, 4)]);
        }
    }
}

/// Writes and bytes of one 1-HTLC payment, both sides, from the writes the pair recorded.
fn measure(p: &mut Pair, f: impl FnOnce(&mut Pair)) -> (usize, usize) {
    let before = (p.a.persisted.len() + p.b.persisted.len(), p.a.records.len(), p.b.records.len());
    f(p);
    let writes = p.a.persisted.len() + p.b.persisted.len() - before.0;
    let new_records = p.a.records[before.1..].iter().chain(&p.b.records[before.2..]);
    let deltas = new_records.clone().filter(|r| is_delta(r)).count();
    assert_eq!(deltas, writes, "every write is a delta (no full snapshot in between)");
    (writes, new_records.map(Vec::len).sum())
}

/// LDK 0.2.7 with its `MonitorUpdatingPersister`, measured for the same payment (issue 19):
/// 10 monitor updates, 4,473 bytes. A full snapshot on every write was 14 writes, 44,416 bytes.
#[test]
fn one_payment_writes_no_more_than_ldk() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH);
        pay(&mut p, 10_000_000, 1);
        let (writes, bytes) = measure(&mut p, |p| pay(p, 10_000_000, 2));
        assert!(writes <= 10, "{ct:?}: {writes} writes");
        assert!(bytes <= 4_473, "{ct:?}: {bytes} bytes");
    }
}

/// A batch of k HTLCs writes O(k) bytes: each write carries the HTLCs that changed, not the
/// whole history of the batch (the snapshot-per-update scheme wrote O(k²)).
#[test]
fn a_batch_writes_bytes_linear_in_its_size() {
    let batch = |p: &mut Pair, k: u8| {
        let mut ids = Vec::new();
        for n in 0..k {
            let pre = PaymentPreimage([n; 32]);
            let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(1_000_000), pre.hash(), 2_000, onion()).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            ids.push((id, pre));
        }
        p.settle();
        for (id, pre) in ids {
            let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
            p.b.absorb_pub(fx, &mut p.to_a);
        }
        p.settle();
    };
    let mut sizes = Vec::new();
    for k in [10u8, 100] {
        let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, 10_000_000, PUSH);
        let (writes, bytes) = measure(&mut p, |p| batch(p, k));
        assert!(writes <= 12, "k = {k}: {writes} writes");
        sizes.push(bytes);
    }
    assert!(sizes[1] <= 11 * sizes[0], "10 and 100 HTLCs: {sizes:?}");
}

/// The deltas of a log replay in order; one missing is refused, so is a damaged one or a log
/// replayed on another snapshot, and a state older than the embedder knows it wrote.
#[test]
fn incomplete_damaged_or_stale_logs_are_refused() {
    let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, CAPACITY, PUSH);
    let first = p.a.stored_snapshot().unwrap().to_vec();
    pay(&mut p, 10_000_000, 1);
    pay(&mut p, 10_000_000, 2);
    let latest = p.a.ch.update_id();
    let check = RestoreCheck { channel_id: Some(p.a.ch.channel_id()), min_update_id: latest };
    let log = p.a.records.clone();
    let restored = Channel::restore_with_records(&first, &log, check).unwrap();
    assert!(restored.snapshot() == p.a.persisted.last().unwrap().1);
    // A delta missing in the middle.
    let deltas: Vec<usize> = (0..log.len()).filter(|&k| is_delta(&log[k])).collect();
    let mut gap = log.clone();
    gap.remove(deltas[deltas.len() / 2]);
    assert!(matches!(Channel::restore_with_records(&first, &gap, check), Err(RestoreError::MissingDelta { .. })));
    // The log ending early: an older state, refused as stale.
    let short = &log[..deltas[deltas.len() - 2] + 1];
    assert!(matches!(Channel::restore_with_records(&first, short, check), Err(RestoreError::Stale { .. })));
    // Every byte of a delta damaged: refused, or the same state (a byte the patch does not use).
    let k = deltas[deltas.len() - 1];
    for at in 0..log[k].len() {
        let mut damaged = log.clone();
        damaged[k][at] ^= 0x21;
        if let Ok(c) = Channel::restore_with_records(&first, &damaged, check) {
            assert!(c == restored, "byte {at}: another state");
        }
    }
    // B's log on A's snapshot.
    assert!(Channel::restore_with_records(&first, &p.b.records, RestoreCheck::default()).is_err());
    let deltas_only: Vec<_> = log.iter().filter(|r| is_delta(r)).collect();
    let d = DeltaRecord::decode(deltas_only[0]).unwrap();
    assert!(d.apply(&p.b.persisted[0].1).is_err(), "a delta applies to its own base only");
}

/// A compaction (the restored state as the snapshot, then only the records it keeps) restores
/// the same channel; `compact` writes a full snapshot whatever the interval.
#[test]
fn compaction_keeps_what_the_channel_needs() {
    let mut p = Pair::open(ChannelType::StaticRemoteKey, CAPACITY, PUSH);
    pay(&mut p, 10_000_000, 1);
    let pre = PaymentPreimage([9; 32]);
    let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    p.b.restart();
    let kept: Vec<Vec<u8>> = p.b.records.iter().filter(|r| p.b.ch.keeps_record(r)).cloned().collect();
    assert!(kept.iter().all(|r| !is_delta(r)) && kept.len() < p.b.records.len());
    let again = Channel::restore_with_records(&p.b.ch.snapshot(), &kept, RestoreCheck::default()).unwrap();
    assert!(again == p.b.ch && again.htlcs()[0].onion.is_some());
    let fx = p.b.ch.compact();
    let u = fx.update.expect("a write");
    assert_eq!(u.update_id, again.update_id() + 1);
    let full = u.snapshot.expect("a full snapshot");
    let kept: Vec<Vec<u8>> = p.b.records.iter().filter(|r| p.b.ch.keeps_record(r)).cloned().collect();
    assert!(Channel::restore_with_records(&full, &kept, RestoreCheck::default()).unwrap() == p.b.ch);
}

/// A stored state (snapshot and log with deltas) written by this version, committed as a
/// fixture: later versions must still restore it. Regenerate (only on purpose) with
/// `PAYCHAN_WRITE_FIXTURES=1 cargo test --test lightning_persist -- --ignored`.
const FIXTURE: &str = "tests/vectors/snapshots/lightning_v2_store.bin";

fn fixture_store() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut p = Pair::open(ChannelType::AnchorsZeroFeeHtlc, CAPACITY, PUSH);
    pay(&mut p, 10_000_000, 1);
    let mut o = OnionPacket::zeroed();
    o.bytes_mut()[0] = 0x42;
    let pre = PaymentPreimage([5; 32]);
    let (_, fx) = p.a.ch.add_htlc(MilliSats::from_msat(20_000_000), pre.hash(), 2_000, o).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    // The payee's storage: it keeps the HTLC's onion (to forward it).
    (p.b.stored_snapshot().unwrap().to_vec(), p.b.records.clone())
}

fn encode_store(snapshot: &[u8], log: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in std::iter::once(snapshot).chain(log.iter().map(Vec::as_slice)) {
        out.extend_from_slice(&(item.len() as u32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out
}

#[test]
#[ignore = "writes the fixture"]
fn write_the_store_fixture() {
    if std::env::var_os("PAYCHAN_WRITE_FIXTURES").is_some() {
        let (snapshot, log) = fixture_store();
        std::fs::write(FIXTURE, encode_store(&snapshot, &log)).unwrap();
    }
}

#[test]
fn stored_states_of_this_version_still_restore() {
    let bytes = include_bytes!("vectors/snapshots/lightning_v2_store.bin");
    let mut items = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        items.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    let (snapshot, log) = (items[0].clone(), items[1..].to_vec());
    assert_eq!(snapshot[..2], [0x4c, 2], "a version-2 Lightning snapshot");
    assert!(log.iter().filter(|r| is_delta(r)).count() >= 10, "and a log of deltas");
    let c = Channel::restore_with_records(&snapshot, &log, RestoreCheck::default()).expect("restores");
    assert_eq!(c.htlcs().len(), 1);
    let h = &c.htlcs()[0];
    let expected = (Side::Counterparty, MilliSats::from_msat(20_000_000), PaymentPreimage([5; 32]).hash());
    assert_eq!((h.offerer, h.amount, h.payment_hash), expected);
    assert!(h.is_irrevocably_committed());
    assert_eq!(h.onion.as_ref().map(|o| o.as_bytes()[0]), Some(0x42));
    assert_eq!(c.balances(Side::Holder).holder, MilliSats::from_msat(PUSH + 10_000_000));
    // The code of today writes the same store for the same channel (a change of the encoding
    // must keep reading the fixture, and then this line is the one to update).
    let (snapshot_now, log_now) = fixture_store();
    assert!(encode_store(&snapshot_now, &log_now) == bytes, "the encoding changed: keep reading the old one");
}
