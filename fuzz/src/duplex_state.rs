//! The duplex state-machine target: an open Decker–Wattenhofer channel between A (initiator)
//! and B, driven by a fuzz-chosen sequence of payments, HTLCs, resets, closes, deliveries, wire
//! faults, blocks and restarts.
//!
//! A reconnection action drops what is in flight and exchanges `Reestablish` (then each side
//! sends again what the other missed); a message dropped without one is simply lost.
//!
//! Checked after every step: no panic; a refused call (`Err`) leaves the snapshot byte for byte
//! unchanged; a persisted update carries the state after the call with an increasing id; a
//! snapshot restores to the same state. At quiescent points (nothing in flight) each party's
//! balances add up to the channel value, and, if no message was lost or refused since the last
//! reconnection and no corrupted or duplicated message was accepted, both parties see the same
//! balances when no reset is in progress. Every input ends with a clean reconnection after which
//! they must agree ([`Pair::settle`]): no channel may be wedged off chain.

use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck};
use paychan::duplex::{Balances, Channel, Effects, Msg, Params, Phase, Role, Terms};

use crate::{
    check_update, mutate, p2wpkh, pool_add, preimage, preimage_for, signer, Deviation, Input, Log, Wire, MAX_ACTIONS,
};

/// Height at open.
pub const START: u32 = 1_000;
/// Capacity in sat.
pub const CAPACITY: u64 = 1_000_000;

const A: usize = 0;
const B: usize = 1;

/// The channel terms: a 3×3 tree (8 resets), step 4, refund delay 6.
pub fn terms() -> Terms {
    Terms {
        params: Params::new(vec![3, 3], 4, 6).expect("valid params"),
        capacity: Amount::from_sat(CAPACITY),
        push: Amount::from_sat(200_000),
        payment_fee: Amount::from_sat(300),
        refund_fee: Amount::from_sat(400),
        claim_fee: Amount::from_sat(350),
        dust_limit: Amount::from_sat(546),
        confirm_blocks: 1,
        reorg_blocks: 1,
        htlc_grace_blocks: 2,
        max_htlc_expiry_delta: 2_000,
        reset_warning: 3,
        funding_depth: 2,
    }
}

fn payout(who: usize) -> ScriptBuf {
    p2wpkh(if who == A { 0xa1 } else { 0xb1 })
}

/// Two parties, the wire between them and a toy chain.
#[derive(Clone)]
pub struct Pair {
    /// A (initiator) and B.
    pub ch: [Channel; 2],
    /// Their keys.
    pub signers: [&'static InMemorySigner; 2],
    /// Messages in flight (`q[i]`: to party `i`).
    pub wire: Wire<Msg>,
    /// Chain height.
    pub tip: u32,
    /// Broadcast transactions the fuzzer may mine.
    pub pool: Vec<Transaction>,
    /// Mined transactions (for reorgs).
    pub mined: Vec<Txid>,
    /// Last update id per party.
    pub last_id: [u64; 2],
    /// The state each party's storage holds (last snapshot with its deltas replayed).
    pub stored: [Option<Vec<u8>>; 2],
    /// A message was dropped, or one was refused ([`Deviation::DuplexRefusedMessage`]): the
    /// agreement check waits for the next reconnection, which must repair it.
    pub lossy: bool,
    /// How many messages at the front of `wire.q[i]` a party sent again in answer to the
    /// peer's `Reestablish` (for the trace: refusing one is a refused message like any other; a
    /// wedge shows in [`Pair::settle`]).
    pub resent: [usize; 2],
    /// The final clean reconnection ([`Pair::settle`]) is under way: no refusal is excused.
    pub settling: bool,
    /// A corrupted or duplicated message was acted on ([`Deviation::ActedOnCorruptMessage`]): the
    /// parties may disagree from now on.
    pub corrupt: bool,
    /// The last few snapshots each party persisted (what a hostile party's stale `Reestablish`
    /// is built from).
    pub past: [Vec<Vec<u8>>; 2],
    /// Every message and snapshot produced (the corpus generator collects them).
    pub log: Option<Log>,
}

impl Pair {
    /// Opens a channel, funds it and confirms the funding.
    pub fn open(log: bool) -> Pair {
        let sa = signer(0xa0, 7);
        let sb = signer(0xb0, 7);
        let tip = ChainTip::at(START);
        let (a, fxa) = Channel::open(terms(), payout(A), sa, tip).expect("open");
        let Some(Msg::Open(open)) = fxa.send.first().cloned() else { panic!("Open sent") };
        let (b, fxb) = Channel::accept(open, payout(B), sb, tip).expect("accept");
        let mut p = Pair {
            ch: [a, b],
            signers: [sa, sb],
            wire: Wire::default(),
            tip: START,
            pool: Vec::new(),
            mined: Vec::new(),
            last_id: [0, 0],
            stored: [None, None],
            lossy: false,
            resent: [0, 0],
            settling: false,
            corrupt: false,
            past: [Vec::new(), Vec::new()],
            log: log.then(Log::default),
        };
        p.last_id[A] = p.ch[A].update_id();
        p.stored[A] = Some(p.ch[A].snapshot());
        if let Some(l) = &mut p.log {
            l.msgs.extend(fxa.send.iter().map(Msg::encode));
        }
        p.absorb(B, fxb);
        p.run_until_quiet(64);
        assert_eq!(p.ch[A].phase(), Phase::AwaitingFunding);
        let funding = crate::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([0x42; 32]), vout: 3 },
            vec![
                TxOut { value: Amount::from_sat(4_000_000), script_pubkey: p2wpkh(0xa2) },
                p.ch[A].funding_output().expect("keys known"),
            ],
        );
        let fx = p.ch[A].fund(funding.clone(), sa).expect("fund");
        p.absorb(A, fx);
        p.run_until_quiet(64);
        assert_eq!(p.ch[A].phase(), Phase::Open);
        assert_eq!(p.ch[B].phase(), Phase::Open);
        p.tip += 1;
        let height = BlockHeight(p.tip);
        p.chain_event(ChainEvent::Confirmed { tx: &funding, height });
        // Payments are sent once the funding is `funding_depth + 1` deep.
        p.tip += u32::from(terms().funding_depth);
        p.chain_event(ChainEvent::Tip(ChainTip::at(p.tip)));
        p.run_until_quiet(64);
        p.pool.clear();
        p
    }

    /// Records a successful call's effects.
    fn absorb(&mut self, who: usize, fx: Effects) {
        let ch = &self.ch[who];
        let who_name = if who == A { "A" } else { "B" };
        let stored =
            check_update(fx.update.as_ref(), || ch.snapshot(), &mut self.last_id[who], &mut self.stored[who], who_name);
        if let Some(l) = &mut self.log {
            l.msgs.extend(fx.send.iter().map(Msg::encode));
            l.snapshots.extend(stored.clone());
        }
        if let Some(state) = stored {
            let past = &mut self.past[who];
            if past.len() >= 4 {
                past.remove(0);
            }
            past.push(state);
        }
        self.wire.send(1 - who, fx.send);
        pool_add(&mut self.pool, fx.broadcast);
    }

    /// Runs a fallible call on one party; on `Err` checks that nothing changed.
    fn guarded<T, E: std::fmt::Debug>(
        &mut self,
        who: usize,
        f: impl FnOnce(&mut Channel, &'static InMemorySigner) -> Result<(T, Effects), E>,
    ) -> Option<T> {
        let before = self.ch[who].snapshot();
        let s = self.signers[who];
        match f(&mut self.ch[who], s) {
            Ok((t, fx)) => {
                self.absorb(who, fx);
                Some(t)
            }
            Err(e) => {
                assert!(self.ch[who].snapshot() == before, "refused call ({e:?}) changed the state");
                None
            }
        }
    }

    /// Delivers one message to `to`, optionally mutated first or left in the queue again.
    fn deliver(&mut self, to: usize, mutation: Option<(u16, u8)>, duplicate: bool) {
        let Some(m) = self.wire.q[to].pop_front() else { return };
        if duplicate {
            self.wire.q[to].push_front(m.clone());
        }
        let suspicious = mutation.is_some() || duplicate;
        let resent = !suspicious && self.resent[to] > 0;
        if !duplicate {
            self.resent[to] = self.resent[to].saturating_sub(1);
        }
        if mutation.is_some() {
            // The original message is lost (replaced by the corrupted one, or by nothing).
            self.lossy = true;
        }
        let m = match mutation {
            None => m,
            Some((pos, xor)) => match Msg::decode(&mutate(m.encode(), pos, xor)) {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        let tip = ChainTip::at(self.tip);
        let before = self.ch[to].snapshot();
        let name = if crate::trace() { short(&m) } else { String::new() };
        let outcome = self.ch[to].handle_message(m, self.signers[to], tip);
        if crate::trace() {
            let who = if to == A { "A" } else { "B" };
            match &outcome {
                Ok(fx) => eprintln!("  {who} takes {name}: events {:?}", fx.events),
                Err(e) => eprintln!("  {who} refuses {name}: {e:?} (resent: {resent})"),
            }
        }
        match outcome {
            Ok(fx) => {
                if suspicious
                    && (self.ch[to].snapshot() != before || !fx.send.is_empty() || !fx.events.is_empty())
                    && crate::accepted(Deviation::ActedOnCorruptMessage)
                {
                    self.corrupt = true;
                }
                self.absorb(to, fx);
            }
            Err(e) => {
                assert!(self.ch[to].snapshot() == before, "refused message ({e:?}) changed the state");
                // Nothing is excused while settling: the channel must not be wedged.
                if !self.settling && crate::accepted(Deviation::DuplexRefusedMessage) {
                    self.lossy = true;
                }
            }
        }
    }

    /// A new connection: what is in flight is lost; both parties send `Reestablish` first.
    fn reconnect(&mut self) {
        if !self.wire.q[A].is_empty() || !self.wire.q[B].is_empty() {
            self.lossy = true;
        }
        self.wire.q[A].clear();
        self.wire.q[B].clear();
        self.resent = [0, 0];
        let msgs = [self.ch[A].reestablish(), self.ch[B].reestablish()];
        if let Some(l) = &mut self.log {
            l.msgs.extend(msgs.iter().map(Msg::encode));
        }
        for (from, m) in msgs.into_iter().enumerate() {
            let to = 1 - from;
            self.wire.q[to].push_front(m);
            self.deliver(to, None, false);
        }
        // What each side sent in answer to the other's `Reestablish` (B's answers went out
        // before A's `Reestablish` was queued in front of them, and were not counted).
        self.resent = [self.wire.q[A].len(), self.wire.q[B].len()];
        // Losses are what reconnection repairs: while both channels run off chain (no close
        // started), from here on they must agree again once quiet.
        let off_chain = self.ch.iter().all(|c| c.phase() == Phase::Open);
        if off_chain {
            self.lossy = false;
        }
    }

    /// The end of every input: one clean reconnection (nothing lost, nothing else happening)
    /// and every message delivered. Whatever a refused message left behind (a payment or close
    /// proposal refused, even when sent again after a reconnection), this exchange must repair
    /// it: while both channels run off chain, no reset is in progress and no corrupted message
    /// was acted on, both parties must then agree. A channel wedged off chain (an update its
    /// peer refuses on every connection) fails here.
    pub fn settle(&mut self) {
        if !self.wire.is_quiet() {
            return;
        }
        self.settling = true;
        self.reconnect();
        self.run_until_quiet(64);
        self.check_quiescent();
        self.settling = false;
    }

    /// Delivers messages until none is in flight (at most `limit`).
    pub fn run_until_quiet(&mut self, limit: usize) {
        for _ in 0..limit {
            if !self.wire.q[B].is_empty() {
                self.deliver(B, None, false);
            } else if !self.wire.q[A].is_empty() {
                self.deliver(A, None, false);
            } else {
                return;
            }
        }
    }

    fn chain_event(&mut self, ev: ChainEvent<'_>) {
        for who in [A, B] {
            let fx = self.ch[who].handle_chain(ev, self.signers[who]);
            self.absorb(who, fx);
        }
    }

    /// An HTLC id offered to `who` (or a raw small id).
    fn incoming_id(&self, who: usize, pick: u8) -> u64 {
        let them = if who == A { Role::Acceptor } else { Role::Initiator };
        let ids: Vec<u64> = self.ch[who].htlcs().iter().filter(|(r, _)| *r == them).map(|(_, h)| h.id).collect();
        if pick & 0x80 == 0 && !ids.is_empty() {
            ids[usize::from(pick) % ids.len()]
        } else {
            u64::from(pick & 7)
        }
    }

    fn restore(&mut self, who: usize) {
        let snap = self.ch[who].snapshot();
        let check = RestoreCheck { channel_id: self.ch[who].channel_id(), min_update_id: self.ch[who].update_id() };
        let r = Channel::restore(&snap, check).expect("own snapshot restores");
        assert!(r.snapshot() == snap, "restore round trip");
        self.ch[who] = r;
    }

    /// Value conservation (and agreement, when it must hold) at a quiescent point.
    fn check_quiescent(&self) {
        if !self.wire.is_quiet() {
            return;
        }
        let value = terms().channel_value();
        for (who, c) in self.ch.iter().enumerate() {
            let b = c.balances();
            assert_eq!(b.total(), Some(value), "party {who}: {b:?} does not add up to the channel value");
        }
        if self.corrupt || self.lossy {
            return;
        }
        let [a, b] = &self.ch;
        if a.phase() == Phase::Open && b.phase() == Phase::Open && !a.is_resetting() && !b.is_resetting() {
            assert!(mirrored(a.balances(), b.balances()), "A sees {:?}, B sees {:?}", a.balances(), b.balances());
        }
    }

    /// Runs one action chosen by the input.
    pub fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8();
        let who = usize::from(op >> 7);
        let tip = ChainTip::at(self.tip);
        if crate::trace() {
            eprintln!("{} op {} at tip {}", if who == A { "A" } else { "B" }, op & 0x7f, self.tip);
        }
        match op & 0x7f {
            0..=14 => {
                let (kind, x) = (input.u8(), input.u8());
                let amount = match kind % 4 {
                    0 => u64::from(x) + 1,
                    1 => (u64::from(x) + 1) * 100,
                    2 => (u64::from(x) + 1) * 3_000,
                    _ => self.ch[who].available().to_sat().saturating_sub(u64::from(x)),
                };
                self.guarded(who, |c, s| c.pay(Amount::from_sat(amount), s).map(|fx| ((), fx)));
            }
            15..=24 => {
                let (a, k, e) = (input.u8(), input.u8(), input.u8());
                let amount = Amount::from_sat((u64::from(a) + 1) * 500);
                let (earliest, _) = self.ch[who].htlc_expiry_window(tip);
                let base = earliest.map_or(self.tip, |h| h.0);
                let expiry = BlockHeight(if e == 0xff { self.tip } else { base + u32::from(e) * 8 });
                let hash = preimage(k % 4).hash();
                self.guarded(who, |c, s| c.add_htlc(amount, hash, expiry, s, tip));
            }
            25..=32 => {
                let (pick, k) = (input.u8(), input.u8());
                let id = self.incoming_id(who, pick);
                let them = if who == A { Role::Acceptor } else { Role::Initiator };
                let h = self.ch[who].htlcs().into_iter().find(|(r, h)| *r == them && h.id == id);
                let pre = match h {
                    Some((_, h)) if k & 1 == 0 => preimage_for(&h.payment_hash).unwrap_or(preimage(k)),
                    _ => preimage(k),
                };
                self.guarded(who, |c, s| c.fulfill_htlc(id, pre, s).map(|fx| ((), fx)));
            }
            33..=37 => {
                let id = self.incoming_id(who, input.u8());
                self.guarded(who, |c, _| c.fail_htlc(id).map(|fx| ((), fx)));
            }
            38..=45 => {
                self.guarded(who, |c, s| c.reset(s, tip).map(|fx| ((), fx)));
            }
            46 => {
                self.guarded(who, |c, _| c.cancel_reset().map(|fx| ((), fx)));
            }
            47 | 48 => {
                self.guarded(who, |c, s| c.close(s).map(|fx| ((), fx)));
            }
            49 => {
                let fx = self.ch[who].force_close(self.signers[who]);
                self.absorb(who, fx);
            }
            50..=79 => self.deliver(who, None, false),
            80 | 81 => {
                if self.wire.q[who].pop_front().is_some() {
                    self.resent[who] = self.resent[who].saturating_sub(1);
                    self.lossy = true;
                }
            }
            82 | 83 => self.deliver(who, None, true),
            84..=87 => {
                let (pos, xor) = (input.u16(), input.u8());
                self.deliver(who, Some((pos, xor)), false);
            }
            88..=93 => {
                let b = input.u8();
                let n = if b & 0x80 == 0 { u32::from(b % 16) + 1 } else { u32::from(b & 0x7f) * 8 };
                self.tip = self.tip.saturating_add(n).min(499_999_999);
                self.chain_event(ChainEvent::Tip(ChainTip::at(self.tip)));
            }
            94..=97 => self.restore(who),
            98..=101 => {
                let i = input.u8();
                if !self.pool.is_empty() {
                    let tx = self.pool[usize::from(i) % self.pool.len()].clone();
                    self.tip += 1;
                    let height = BlockHeight(self.tip);
                    self.mined.push(tx.compute_txid());
                    self.chain_event(ChainEvent::Confirmed { tx: &tx, height });
                }
            }
            102 => {
                let i = input.u8();
                if !self.mined.is_empty() {
                    let txid = self.mined.remove(usize::from(i) % self.mined.len());
                    self.chain_event(ChainEvent::Unconfirmed(txid));
                }
            }
            103 | 104 => self.reconnect(),
            105..=110 => self.hostile(who, op & 0x7f, input),
            _ => self.run_until_quiet(24),
        }
        self.check_quiescent();
    }

    /// A move of the hostile-but-valid party (the values of `paychan::testing::hostile`, as the
    /// duplex simulator's hostile party picks them): a payment at the extremes of its balance, an
    /// HTLC at the edges of the expiry window, a reset that tries to move money it does not own
    /// (or claims the peer's channel older than it is), a stale `Reestablish` from an older
    /// snapshot, and a transaction shown only unconfirmed (`ChainEvent::Seen`: nothing may be
    /// taken as on chain). The honest party must refuse what is not its due; a refusal is
    /// checked as any other (state unchanged; `Deviation::DuplexRefusedMessage`).
    fn hostile(&mut self, who: usize, action: u8, input: &mut Input<'_>) {
        use paychan::testing::hostile;
        let tip = ChainTip::at(self.tip);
        let x = input.u8();
        match action {
            105 => {
                let amounts = hostile::edge_amounts(self.ch[who].available().to_sat());
                let amount = amounts[usize::from(x) % amounts.len()].max(1);
                self.guarded(who, |c, s| c.pay(Amount::from_sat(amount), s).map(|fx| ((), fx)));
            }
            106 => {
                let (Some(earliest), latest) = self.ch[who].htlc_expiry_window(tip) else { return };
                let edges = hostile::edge_expiries(earliest.0, latest.0);
                let expiry = BlockHeight(edges[usize::from(x) % edges.len()]);
                let amount = if x & 0x80 == 0 { 1 } else { self.ch[who].available().to_sat().max(1) };
                let hash = preimage(x % 4).hash();
                self.guarded(who, |c, s| c.add_htlc(Amount::from_sat(amount), hash, expiry, s, tip));
            }
            107 | 108 => {
                let before = self.ch[who].snapshot();
                match self.ch[who].reset(self.signers[who], tip) {
                    Ok(mut fx) => {
                        let shift = [1, 546, 10_000][usize::from(x) % 3];
                        hostile::duplex_hostile_reset(&mut fx.send, 1 - who, shift, x & 0x80 != 0);
                        self.absorb(who, fx);
                    }
                    Err(e) => assert!(self.ch[who].snapshot() == before, "refused reset ({e:?}) changed the state"),
                }
            }
            109 => {
                let past = &self.past[who];
                let Some(old) = past.get(usize::from(x) % past.len().max(1)).cloned() else { return };
                let check = RestoreCheck { channel_id: self.ch[who].channel_id(), min_update_id: 0 };
                let Ok(old) = Channel::restore(&old, check) else { return };
                let m = old.reestablish();
                if let Some(l) = &mut self.log {
                    l.msgs.push(m.encode());
                }
                self.wire.q[1 - who].push_front(m);
                self.deliver(1 - who, None, false);
            }
            _ => {
                let Some(tx) = self.pool.get(usize::from(x) % self.pool.len().max(1)).cloned() else { return };
                let before: Vec<_> = self.ch.iter().map(|c| c.phase()).collect();
                self.chain_event(ChainEvent::Seen { tx: &tx });
                let after: Vec<_> = self.ch.iter().map(|c| c.phase()).collect();
                assert_eq!(before, after, "an unconfirmed transaction changed a party's phase");
            }
        }
    }
}

/// A message's kind and first fields, for `PAYCHAN_FUZZ_TRACE`.
fn short(m: &Msg) -> String {
    let mut s = format!("{m:?}");
    s.truncate(160);
    s
}

fn mirrored(x: Balances, y: Balances) -> bool {
    x.holder == y.counterparty && x.counterparty == y.holder && x.offered == y.received && x.received == y.offered
}

thread_local! {
    static BASE: Pair = Pair::open(false);
}

/// The fuzz entry point: the bytes are actions.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut p = BASE.with(Pair::clone);
    for _ in 0..MAX_ACTIONS {
        if input.is_empty() {
            break;
        }
        p.step(&mut input);
    }
    p.run_until_quiet(64);
    p.check_quiescent();
    p.settle();
}
