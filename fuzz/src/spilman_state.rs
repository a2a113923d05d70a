//! The Spilman state-machine target: a funded payer/payee pair (either variant) driven by a
//! fuzz-chosen sequence of commands, deliveries, faults (a dropped message is lost until the
//! next reconnection, which exchanges `Reestablish`), blocks and restarts.
//!
//! Checked after every step: no panic; a refused call (`Err`) leaves the snapshot byte for byte
//! unchanged; a persisted update carries the state after the call with an increasing id; a
//! snapshot restores to the same state. At quiescent points (nothing in flight) the payee's best
//! payment transaction, and the payer's newest, spend exactly the capacity: outputs + fee.

use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid};
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck};
use paychan::spilman::{Effects, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};

use crate::{check_update, mutate, p2wpkh, pool_add, preimage, preimage_for, signer, Input, Log, Wire, MAX_ACTIONS};

/// Height at which the channel opens.
pub const START: u32 = 100;
/// The payee's expiry.
pub const EXPIRY: u32 = 1_000;
/// Channel capacity.
pub const CAPACITY: Amount = Amount::from_sat(1_000_000);
const FEE: Amount = Amount::from_sat(500);

/// Party indices on the wire.
const PAYER: usize = 0;
const PAYEE: usize = 1;

/// A funded pair and everything around it.
#[derive(Clone)]
pub struct Pair {
    /// The payer.
    pub payer: Payer,
    /// The payee.
    pub payee: Payee,
    /// Payer keys.
    pub payer_signer: &'static InMemorySigner,
    /// Payee keys.
    pub payee_signer: &'static InMemorySigner,
    /// Messages in flight (index [`PAYER`] = to the payer).
    pub wire: Wire<Msg>,
    /// Chain height.
    pub tip: u32,
    /// Broadcast transactions the fuzzer may mine.
    pub pool: Vec<Transaction>,
    /// Transactions mined (for reorgs).
    pub mined: Vec<Txid>,
    /// Last update id seen per party.
    pub last_id: [u64; 2],
    /// The state each party's storage holds (last snapshot with its deltas replayed).
    pub stored: [Option<Vec<u8>>; 2],
    /// Every message and snapshot produced (the corpus generator collects them).
    pub log: Option<Log>,
    /// The last few snapshots each side persisted (what a hostile side's stale `Reestablish` is
    /// built from).
    pub past: [Vec<Vec<u8>>; 2],
}

fn payee_config(variant: Variant) -> PayeeConfig {
    PayeeConfig {
        variant,
        payee_script: p2wpkh(2),
        expiry: BlockHeight(EXPIRY),
        min_first_payment: Amount::from_sat(10_000),
        dust_limit: Amount::from_sat(546),
        payment_fee: FEE,
        close_margin: 6,
        htlc_min_blocks: 12,
        min_depth: 1,
        claim_fee: Amount::from_sat(300),
    }
}

fn payer_config() -> PayerConfig {
    PayerConfig {
        capacity: CAPACITY,
        payer_script: p2wpkh(1),
        refund_fee: FEE,
        claim_fee: Amount::from_sat(300),
        first_payment: Amount::from_sat(10_000),
        max_lifetime: 10_000,
    }
}

impl Pair {
    /// Opens and funds a channel of `variant`, confirms the funding, and delivers everything.
    pub fn open(variant: Variant, log: bool) -> Pair {
        let payer_signer = signer(1, 0);
        let payee_signer = signer(2, 0);
        let tip = ChainTip::at(START);
        let (payee, fx) = Payee::new(payee_config(variant), payee_signer);
        let Some(Msg::Offer(offer)) = fx.send.first().cloned() else { panic!("the payee sends its offer") };
        let payer = Payer::new(offer, payer_config(), payer_signer, tip).expect("offer acceptable");
        let mut p = Pair {
            payer,
            payee,
            payer_signer,
            payee_signer,
            wire: Wire::default(),
            tip: START,
            pool: Vec::new(),
            mined: Vec::new(),
            last_id: [0, 0],
            stored: [None, None],
            log: log.then(Log::default),
            past: [Vec::new(), Vec::new()],
        };
        p.last_id[PAYEE] = p.payee.update_id();
        p.stored[PAYEE] = Some(p.payee.snapshot());
        if let Some(l) = &mut p.log {
            l.msgs.extend(fx.send.iter().map(Msg::encode));
        }
        let funding = crate::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            vec![TxOut { value: Amount::from_sat(5_000_000), script_pubkey: p2wpkh(1) }, p.payer.funding_output()],
        );
        let fx = p.payer.fund(funding.clone(), p.payer_signer).expect("fund");
        p.absorb(PAYER, fx);
        p.run_until_quiet(64);
        p.tip += 1;
        let h = BlockHeight(p.tip);
        let fx = p.payee.handle_chain(ChainEvent::Confirmed { tx: &funding, height: h }, p.payee_signer);
        p.absorb(PAYEE, fx);
        let fx = p.payer.handle_chain(ChainEvent::Confirmed { tx: &funding, height: h }, p.payer_signer);
        p.absorb(PAYER, fx);
        p.run_until_quiet(64);
        assert!(p.payee.received() > Amount::ZERO, "the first payment arrived");
        p.pool.clear();
        p
    }

    fn snapshot(&self, who: usize) -> Vec<u8> {
        if who == PAYER {
            self.payer.snapshot()
        } else {
            self.payee.snapshot()
        }
    }

    /// Records a successful call's effects: persistence contract, messages, broadcasts.
    fn absorb(&mut self, who: usize, fx: Effects) {
        let (payer, payee) = (&self.payer, &self.payee);
        let snapshot = || if who == PAYER { payer.snapshot() } else { payee.snapshot() };
        let stored = check_update(
            fx.update.as_ref(),
            snapshot,
            &mut self.last_id[who],
            &mut self.stored[who],
            if who == PAYER { "payer" } else { "payee" },
        );
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
        f: impl FnOnce(&mut Pair) -> Result<(T, Effects), E>,
    ) -> Option<T> {
        let before = self.snapshot(who);
        match f(self) {
            Ok((t, fx)) => {
                self.absorb(who, fx);
                Some(t)
            }
            Err(e) => {
                assert!(self.snapshot(who) == before, "refused call ({e:?}) changed the state");
                None
            }
        }
    }

    /// Delivers one message to `to`, optionally mutated first.
    fn deliver(&mut self, to: usize, mutation: Option<(u16, u8)>, duplicate: bool) {
        let Some(m) = self.wire.q[to].pop_front() else { return };
        if duplicate {
            self.wire.q[to].push_front(m.clone());
        }
        let m = match mutation {
            None => m,
            Some((pos, xor)) => match Msg::decode(&mutate(m.encode(), pos, xor)) {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        let tip = ChainTip::at(self.tip);
        self.guarded(to, |p| {
            let r = if to == PAYER {
                p.payer.handle_message(m, p.payer_signer, tip)
            } else {
                p.payee.handle_message(m, p.payee_signer, tip)
            };
            r.map(|fx| ((), fx))
        });
    }

    /// A new connection: what is in flight is lost; both sides send `Reestablish` first.
    fn reconnect(&mut self) {
        self.wire.q[PAYER].clear();
        self.wire.q[PAYEE].clear();
        let msgs = [(PAYEE, self.payer.reestablish()), (PAYER, self.payee.reestablish())];
        if let Some(l) = &mut self.log {
            l.msgs.extend(msgs.iter().map(|(_, m)| m.encode()));
        }
        for (to, m) in msgs {
            self.wire.q[to].push_front(m);
            self.deliver(to, None, false);
        }
    }

    /// Delivers messages until none is in flight (at most `limit`).
    pub fn run_until_quiet(&mut self, limit: usize) {
        for _ in 0..limit {
            if !self.wire.q[PAYEE].is_empty() {
                self.deliver(PAYEE, None, false);
            } else if !self.wire.q[PAYER].is_empty() {
                self.deliver(PAYER, None, false);
            } else {
                return;
            }
        }
    }

    fn chain_event(&mut self, ev: ChainEvent<'_>) {
        let fx = self.payer.handle_chain(ev, self.payer_signer);
        self.absorb(PAYER, fx);
        let fx = self.payee.handle_chain(ev, self.payee_signer);
        self.absorb(PAYEE, fx);
    }

    fn htlc_id(&self, pick: u8) -> u64 {
        let held: Vec<u64> = self.payer.state().htlcs.iter().map(|h| h.id).collect();
        if pick & 0x80 == 0 && !held.is_empty() {
            held[usize::from(pick) % held.len()]
        } else {
            u64::from(pick & 0x0f)
        }
    }

    fn restore(&mut self, who: usize) {
        let snap = self.snapshot(who);
        if who == PAYER {
            let r = Payer::restore(
                &snap,
                RestoreCheck { channel_id: self.payer.channel_id(), min_update_id: self.payer.update_id() },
            )
            .expect("own payer snapshot restores");
            assert!(r.snapshot() == snap, "payer restore round trip");
            self.payer = r;
        } else {
            let r = Payee::restore(
                &snap,
                RestoreCheck { channel_id: self.payee.channel_id(), min_update_id: self.payee.update_id() },
            )
            .expect("own payee snapshot restores");
            assert!(r.snapshot() == snap, "payee restore round trip");
            self.payee = r;
        }
    }

    /// Value conservation at a quiescent point.
    fn check_quiescent(&self) {
        if !self.wire.q[0].is_empty() || !self.wire.q[1].is_empty() {
            return;
        }
        if let (Some(t), Some(state)) = (self.payee.template(), self.payee.state()) {
            assert_eq!(t.capacity, CAPACITY, "payee template capacity");
            let built = t.build(state).expect("the payee's best payment is payable");
            let out: u64 = built.tx.output.iter().map(|o| o.value.to_sat()).sum();
            assert_eq!(out + t.fee.to_sat(), CAPACITY.to_sat(), "payee: outputs + fee == capacity");
        }
        if let Some(t) = self.payer.template() {
            if self.payer.payment_number() > 0 {
                let built = t.build(self.payer.state()).expect("the payer's newest payment is payable");
                let out: u64 = built.tx.output.iter().map(|o| o.value.to_sat()).sum();
                assert_eq!(out + t.fee.to_sat(), CAPACITY.to_sat(), "payer: outputs + fee == capacity");
            }
        }
        assert!(self.payee.received() <= CAPACITY, "payee holds more than the capacity");
    }

    /// Runs one action chosen by the input.
    pub fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8();
        let tip = ChainTip::at(self.tip);
        if op >= 238 {
            // One op value of each of the 18 actions below goes to the hostile moves.
            self.hostile(op - 238, input);
            self.check_quiescent();
            return;
        }
        match op % 18 {
            0 => {
                let (kind, x) = (input.u8(), input.u8());
                let amount = match kind % 4 {
                    0 => u64::from(x) + 1,
                    1 => (u64::from(x) + 1) * 100,
                    2 => (u64::from(x) + 1) * 3_000,
                    _ => CAPACITY.to_sat().saturating_sub(self.payer.state().to_payee.to_sat()),
                };
                let s = self.payer_signer;
                self.guarded(PAYER, |p| p.payer.pay(Amount::from_sat(amount), s).map(|fx| ((), fx)));
            }
            1 => {
                let (a, k, e) = (input.u8(), input.u8(), input.u8());
                let amount = Amount::from_sat((u64::from(a) + 1) * 500);
                let expiry = BlockHeight(self.tip + u32::from(e) * 4);
                let s = self.payer_signer;
                self.guarded(PAYER, |p| p.payer.add_htlc(amount, preimage(k % 4).hash(), expiry, s, tip));
            }
            2 => {
                let (pick, k) = (input.u8(), input.u8());
                let id = self.htlc_id(pick);
                let pre = match self.payee.state().and_then(|s| s.htlcs.iter().find(|h| h.id == id)) {
                    Some(h) if k & 1 == 0 => preimage_for(&h.payment_hash).unwrap_or(preimage(k)),
                    _ => preimage(k),
                };
                let s = self.payee_signer;
                self.guarded(PAYEE, |p| p.payee.fulfill_htlc(id, pre, s).map(|fx| ((), fx)));
            }
            3 => {
                let id = self.htlc_id(input.u8());
                self.guarded(PAYEE, |p| p.payee.fail_htlc(id).map(|fx| ((), fx)));
            }
            4 => {
                let id = self.htlc_id(input.u8());
                let s = self.payer_signer;
                self.guarded(PAYER, |p| p.payer.timeout_htlc(id, s, tip).map(|fx| ((), fx)));
            }
            5 => {
                self.guarded(PAYER, |p| p.payer.request_close().map(|fx| ((), fx)));
            }
            6 => {
                let s = self.payee_signer;
                self.guarded(PAYEE, |p| p.payee.close(s).map(|fx| ((), fx)));
            }
            7..=9 => self.deliver(usize::from(op & 1), None, false),
            10 => {
                let b = input.u8();
                if b & 0x80 == 0 {
                    // A dropped message, lost until the next reconnection.
                    self.wire.q[usize::from(b & 1)].pop_front();
                } else {
                    self.reconnect();
                }
            }
            11 => self.deliver(usize::from(input.u8() & 1), None, true),
            12 => {
                let (to, pos, xor) = (input.u8(), input.u16(), input.u8());
                self.deliver(usize::from(to & 1), Some((pos, xor)), false);
            }
            13 => {
                let b = input.u8();
                let n = if b & 0x80 == 0 { u32::from(b % 16) + 1 } else { u32::from(b & 0x7f) * 8 };
                self.tip = self.tip.saturating_add(n).min(499_999_999);
                self.chain_event(ChainEvent::Tip(ChainTip::at(self.tip)));
            }
            14 => {
                let i = input.u8();
                if !self.pool.is_empty() {
                    let tx = self.pool[usize::from(i) % self.pool.len()].clone();
                    self.tip += 1;
                    let height = BlockHeight(self.tip);
                    self.mined.push(tx.compute_txid());
                    self.chain_event(ChainEvent::Confirmed { tx: &tx, height });
                }
            }
            15 => {
                let i = input.u8();
                if !self.mined.is_empty() {
                    let txid = self.mined.remove(usize::from(i) % self.mined.len());
                    self.chain_event(ChainEvent::Unconfirmed(txid));
                }
            }
            16 => self.restore(usize::from(input.u8() & 1)),
            _ => self.run_until_quiet(16),
        }
        self.check_quiescent();
    }

    /// A move of the hostile-but-valid side (the values of `paychan::testing::hostile`, as the
    /// Spilman simulator's hostile side picks them): the payer pays at the extremes of what is
    /// available, or offers an HTLC at the edges of the payee's window (`tip + htlc_min_blocks`
    /// and `expiry - close_margin`, one block inside and outside); either side claims a stale
    /// state (a `Reestablish` from an older snapshot of its own); a transaction is shown only
    /// unconfirmed (`ChainEvent::Seen`: nothing may be taken as on chain).
    fn hostile(&mut self, action: u8, input: &mut Input<'_>) {
        use paychan::testing::hostile;
        let tip = ChainTip::at(self.tip);
        let x = input.u8();
        let s = self.payer_signer;
        match action {
            0..=5 => {
                let amounts = hostile::edge_amounts(self.payer.available().to_sat());
                let amount = amounts[usize::from(x) % amounts.len()].max(1);
                self.guarded(PAYER, |p| p.payer.pay(Amount::from_sat(amount), s).map(|fx| ((), fx)));
            }
            6..=10 => {
                let config = payee_config(Variant::Cltv);
                let earliest = self.tip.saturating_add(config.htlc_min_blocks);
                let latest = self.payer.refund_height().0.saturating_sub(config.close_margin);
                let edges = hostile::edge_expiries(earliest, latest);
                let expiry = BlockHeight(edges[usize::from(x) % edges.len()]);
                let amount = if x & 0x80 == 0 { 1 } else { self.payer.available().to_sat().max(1) };
                let hash = preimage(x % 4).hash();
                self.guarded(PAYER, |p| p.payer.add_htlc(Amount::from_sat(amount), hash, expiry, s, tip));
            }
            11..=13 => {
                let who = usize::from(x & 1);
                let past = &self.past[who];
                let Some(old) = past.get(usize::from(x >> 1) % past.len().max(1)).cloned() else { return };
                let m = if who == PAYER {
                    let check = RestoreCheck { channel_id: self.payer.channel_id(), min_update_id: 0 };
                    Payer::restore(&old, check).map(|o| o.reestablish())
                } else {
                    let check = RestoreCheck { channel_id: self.payee.channel_id(), min_update_id: 0 };
                    Payee::restore(&old, check).map(|o| o.reestablish())
                };
                let Ok(m) = m else { return };
                if let Some(l) = &mut self.log {
                    l.msgs.push(m.encode());
                }
                self.wire.q[1 - who].push_front(m);
                self.deliver(1 - who, None, false);
            }
            _ => {
                let Some(tx) = self.pool.get(usize::from(x) % self.pool.len().max(1)).cloned() else { return };
                let before = (self.payer.is_closed(), self.payee.is_closed());
                self.chain_event(ChainEvent::Seen { tx: &tx });
                let after = (self.payer.is_closed(), self.payee.is_closed());
                assert_eq!(before, after, "an unconfirmed transaction closed a side");
            }
        }
    }
}

thread_local! {
    static BASE: [Pair; 2] = [Pair::open(Variant::Cltv, false), Pair::open(Variant::PresignedRefund, false)];
}

/// The fuzz entry point: first byte picks the variant, the rest are actions.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let variant = usize::from(input.u8() & 1);
    let mut p = BASE.with(|b| b[variant].clone());
    for _ in 0..MAX_ACTIONS {
        if input.is_empty() {
            break;
        }
        p.step(&mut input);
    }
    p.run_until_quiet(64);
    p.check_quiescent();
}
