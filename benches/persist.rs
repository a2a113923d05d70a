//! What a Lightning channel writes to storage: bytes and durable writes per payment, per batch
//! of k HTLCs, the live state after many payments, and the time a restore takes when the log was
//! never compacted. A plain program printing numbers (no timing loop, no thresholds):
//!
//! ```sh
//! cargo bench --bench persist
//! ```
//!
//! Each peer's storage is modelled as the persistence contract says (`driving`, *Persistence*):
//! one snapshot, replaced by a write that carries one, and an append-only log of records. A
//! "write" is one [`StateUpdate`]; its bytes are its snapshot (if any) and every record.
use std::time::Instant;

use paychan::core::{MilliSats, PaymentPreimage};
use paychan::driving::{ChainTip, RestoreCheck, StateUpdate, FULL_SNAPSHOT_INTERVAL};
use paychan::lightning::{Channel, Effects, Msg, OnionPacket};

#[path = "common/ln_pair.rs"]
mod ln_pair;
use ln_pair::{open, Pair, Peer};

#[derive(Clone, Default)]
struct Store {
    snapshot: Vec<u8>,
    log: Vec<Vec<u8>>,
    writes: u64,
    bytes: u64,
    full_writes: u64,
}

impl Store {
    fn persist(&mut self, update: Option<StateUpdate>) {
        let Some(u) = update else { return };
        self.writes += 1;
        self.bytes += u.written_bytes() as u64;
        self.log.extend(u.records);
        if let Some(s) = u.snapshot {
            self.snapshot = s;
            self.full_writes += 1;
        }
    }
}

struct Node {
    peer: Peer,
    store: Store,
}

struct Net {
    a: Node,
    b: Node,
}

impl Net {
    fn new(mut p: Pair, interval: u32) -> Self {
        p.a.ch.set_full_snapshot_interval(interval);
        p.b.ch.set_full_snapshot_interval(interval);
        let mut net =
            Net { a: Node { peer: p.a, store: Store::default() }, b: Node { peer: p.b, store: Store::default() } };
        // The storage starts from a full snapshot of the open channel.
        let fx = net.a.peer.ch.compact();
        net.a.store.persist(fx.update);
        let fx = net.b.peer.ch.compact();
        net.b.store.persist(fx.update);
        net
    }

    fn node(&mut self, a: bool) -> &mut Node {
        if a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Persists `fx` for its node, then delivers its messages and every answer until quiet; each
    /// answer is persisted as it is produced (the writes of a node stay in order).
    fn run(&mut self, mut fx: Effects, from_a: bool) {
        self.node(from_a).store.persist(fx.update.take());
        let mut queue = std::collections::VecDeque::from([(fx, from_a)]);
        while let Some((fx, from_a)) = queue.pop_front() {
            for m in fx.send {
                let m = Msg::decode(&m.encode()).expect("decode");
                let to = self.node(!from_a);
                let mut answer = to.peer.ch.handle_message(m, &to.peer.signer, ChainTip::at(1_000)).expect("accepted");
                to.store.persist(answer.update.take());
                queue.push_back((answer, !from_a));
            }
        }
    }

    fn totals(&self) -> (u64, u64) {
        (self.a.store.writes + self.b.store.writes, self.a.store.bytes + self.b.store.bytes)
    }

    /// A adds `k` HTLCs of `msat` and signs them; B fulfils them all and signs.
    fn batch(&mut self, k: u64, n: &mut u64, msat: u64) {
        let mut ids = Vec::new();
        for _ in 0..k {
            *n += 1;
            let pre = preimage(*n);
            let (id, fx) =
                self.a.peer.ch.add_htlc(MilliSats::from_msat(msat), pre.hash(), 2_000, onion(*n)).expect("add");
            ids.push((id, pre));
            self.run(fx, true);
        }
        let fx = self.a.peer.ch.commit(&self.a.peer.signer).expect("commit");
        self.run(fx, true);
        for (id, pre) in ids {
            let fx = self.b.peer.ch.fulfill_htlc(id, pre).expect("fulfil");
            self.run(fx, false);
        }
        let fx = self.b.peer.ch.commit(&self.b.peer.signer).expect("commit");
        self.run(fx, false);
        assert!(self.a.peer.ch.htlcs().is_empty() && self.b.peer.ch.htlcs().is_empty(), "settled");
    }
}

fn preimage(n: u64) -> PaymentPreimage {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    PaymentPreimage(bytes)
}

/// A onion of random-looking bytes (a real one does not compress).
fn onion(n: u64) -> OnionPacket {
    let mut o = OnionPacket::zeroed();
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in o.bytes_mut().iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    o
}

fn restore_time(store: &Store, id: paychan::driving::ChannelId) -> (f64, Channel) {
    let check = RestoreCheck { channel_id: Some(id), min_update_id: 0 };
    let t = Instant::now();
    let ch = Channel::restore_with_records(&store.snapshot, &store.log, check).expect("restores");
    (t.elapsed().as_secs_f64() * 1e3, ch)
}

fn main() {
    let base = open();
    let mut n = 0u64;

    // One payment, both sides, in the steady state (a few payments first).
    let mut net = Net::new(base.clone(), FULL_SNAPSHOT_INTERVAL);
    for _ in 0..3 {
        net.batch(1, &mut n, 5_000_000);
    }
    let (w0, b0) = net.totals();
    let (wa, ba, wb, bb) = (net.a.store.writes, net.a.store.bytes, net.b.store.writes, net.b.store.bytes);
    net.batch(1, &mut n, 5_000_000);
    let (w1, b1) = net.totals();
    println!("1-HTLC payment (add, commit, revoke, fulfil, commit, revoke), both sides:");
    println!(
        "  {} durable writes, {} bytes (payer {} writes / {} bytes, payee {} writes / {} bytes)",
        w1 - w0,
        b1 - b0,
        net.a.store.writes - wa,
        net.a.store.bytes - ba,
        net.b.store.writes - wb,
        net.b.store.bytes - bb
    );
    let onions = 2 * (OnionPacket::zeroed().as_bytes().len() as u64 + 14);
    println!("  of which the two onion records (one per side): {onions} bytes");
    let snap = net.a.peer.ch.snapshot().len() as u64 + net.b.peer.ch.snapshot().len() as u64;
    println!(
        "  amortised full snapshots (one per {} writes per side): +{:.1} bytes per payment",
        FULL_SNAPSHOT_INTERVAL,
        snap as f64 * (w1 - w0) as f64 / 2.0 / f64::from(FULL_SNAPSHOT_INTERVAL)
    );
    let mut old = Net::new(base.clone(), 0);
    old.batch(1, &mut n, 5_000_000);
    let (w0, b0) = old.totals();
    old.batch(1, &mut n, 5_000_000);
    let (w1, b1) = old.totals();
    println!("  (a full snapshot on every write, interval 0: {} writes, {} bytes)", w1 - w0, b1 - b0);

    println!("batches of k HTLCs (A adds k and signs, B fulfils k and signs), both sides:");
    for k in [1u64, 10, 100] {
        let mut net = Net::new(base.clone(), FULL_SNAPSHOT_INTERVAL);
        net.batch(1, &mut n, 5_000_000);
        let (w0, b0) = net.totals();
        net.batch(k, &mut n, 5_000_000);
        let (w1, b1) = net.totals();
        println!(
            "  k = {k:>3}: {:>3} writes, {:>7} bytes ({:.0} bytes per HTLC)",
            w1 - w0,
            b1 - b0,
            (b1 - b0) as f64 / k as f64
        );
    }

    let payments = 10_000;
    for (name, interval) in [("never (only the opening snapshot)", u32::MAX), ("default", FULL_SNAPSHOT_INTERVAL)] {
        let mut net = Net::new(base.clone(), interval);
        let t = Instant::now();
        for _ in 0..payments {
            // 2,000 sat each (above the dust limit: an output with its HTLC signatures).
            net.batch(1, &mut n, 2_000_000);
        }
        let elapsed = t.elapsed().as_secs_f64();
        println!("after {payments} payments, full snapshots {name}, log never compacted ({elapsed:.1} s to run):");
        println!(
            "  live state (no HTLC in flight): payer {} bytes, payee {} bytes",
            net.a.peer.ch.snapshot().len(),
            net.b.peer.ch.snapshot().len()
        );
        for (side, node) in [("payer", &net.a), ("payee", &net.b)] {
            let (ms, restored) = restore_time(&node.store, node.peer.ch.channel_id());
            assert!(restored == node.peer.ch, "restored exactly");
            let log: usize = node.store.log.iter().map(Vec::len).sum();
            println!(
                "  {side}: restore {ms:.1} ms from a {} byte snapshot and a log of {} records ({} bytes), {} writes ({} full)",
                node.store.snapshot.len(),
                node.store.log.len(),
                log,
                node.store.writes,
                node.store.full_writes
            );
        }
    }
}
