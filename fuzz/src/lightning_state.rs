//! The Lightning state-machine target: an open channel between A (funder) and B, driven by a
//! fuzz-chosen sequence of HTLC updates, fee updates, commitments, deliveries, wire faults,
//! reconnections, blocks, closes and restarts.
//!
//! Checked after every step: no panic; a refused call (`Err`) leaves the snapshot byte for byte
//! unchanged; a persisted update carries the state after the call with an increasing id; a
//! snapshot restores to the same state; `LostState` never happens (no party ever loses data
//! here). At quiescent points (nothing in flight) each party's view of each commitment
//! conserves value: holder + counterparty + HTLCs offered + HTLCs received == capacity (msat),
//! and, unless a corrupted or duplicated message was accepted (`Deviation::ActedOnCorruptMessage`,
//! the only deviation this target accepts), when A's latest commitment is the one B signed last
//! (and vice versa) both describe it with the same balances. A party that force-closed keeps
//! receiving messages and commands: the channel must refuse them.

use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::transaction::Version;
use paychan::bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, MilliSats};
use paychan::driving::{ChainEvent, ChainTip, ChannelId, RestoreCheck};
use paychan::lightning::{
    Balances, Channel, ChannelConfig, DustExposure, Effects, Event, Msg, OnionPacket, OpenParams, PenaltyRecord, Phase,
    Record, Side,
};

use crate::{
    check_update, mutate, p2wpkh, pool_add, preimage, preimage_for, signer, Deviation, Input, Log, Wire, MAX_ACTIONS,
};

/// Chain of the test channels.
pub const CHAIN: [u8; 32] = [6; 32];
/// Capacity in sat.
pub const CAPACITY: u64 = 1_000_000;
/// Pushed to B at open, msat.
pub const PUSH_MSAT: u64 = 400_000_000;
/// Height at open.
pub const START: u32 = 1_000;

const A: usize = 0;
const B: usize = 1;

/// The policy both sides use.
pub fn config(channel_type: ChannelType) -> ChannelConfig {
    ChannelConfig {
        max_accepted_htlcs: 30,
        max_dust_exposure: DustExposure::Fixed(MilliSats::from_msat(50_000_000)),
        minimum_depth: 1,
        ..ChannelConfig::default_for(CHAIN, channel_type)
    }
}

/// Two peers, the wire between them and a toy chain.
#[derive(Clone)]
pub struct Pair {
    /// A (funder) and B.
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
    /// Penalty records each party appended.
    pub records: [Vec<PenaltyRecord>; 2],
    /// Every record each party appended, as bytes (what a restore reads).
    pub raw_records: [Vec<Vec<u8>>; 2],
    /// A corrupted or duplicated message was accepted and changed a party
    /// ([`Deviation::ActedOnCorruptMessage`]): the peers may legitimately disagree from now on.
    pub corrupt: bool,
    /// After a reconnection, a party sends nothing but its `channel_reestablish` until it has
    /// received the peer's (BOLT #2): commands on it are skipped until then.
    pub awaiting_reestablish: [bool; 2],
    /// The funding output A's wallet was asked for.
    pub funding_request: Option<(ScriptBuf, Amount)>,
    /// The last few snapshots each party persisted (what a hostile peer's stale
    /// `channel_reestablish` is built from).
    pub past: [Vec<Vec<u8>>; 2],
    /// The next delivery is of a message the hostile peer crafted (not its channel's).
    pub crafted: bool,
    /// Every message and snapshot produced, encoded (the corpus generator collects them).
    pub log: Option<Log>,
}

impl Pair {
    /// Opens a channel of `channel_type` and runs it to `Normal`.
    pub fn open(channel_type: ChannelType, log: bool) -> Pair {
        let sa = signer(0xa0, 0);
        let sb = signer(0xb0, 0);
        let tip = ChainTip::at(START);
        let (cha, fxa) = Channel::open(
            OpenParams {
                config: config(channel_type),
                temporary_channel_id: ChannelId([7; 32]),
                funding: Amount::from_sat(CAPACITY),
                push: MilliSats::from_msat(PUSH_MSAT),
                feerate_per_kw: 2_500,
            },
            sa,
            tip,
        )
        .expect("open");
        let Some(Msg::OpenChannel(open)) = fxa.send.first().cloned() else { panic!("open_channel") };
        let (chb, fxb) = Channel::accept(&open, config(channel_type), sb, tip).expect("accept");
        let mut p = Pair {
            ch: [cha, chb],
            signers: [sa, sb],
            wire: Wire::default(),
            tip: START,
            pool: Vec::new(),
            mined: Vec::new(),
            last_id: [0, 0],
            stored: [None, None],
            records: [Vec::new(), Vec::new()],
            raw_records: [Vec::new(), Vec::new()],
            corrupt: false,
            awaiting_reestablish: [false, false],
            funding_request: None,
            past: [Vec::new(), Vec::new()],
            crafted: false,
            log: log.then(Log::default),
        };
        p.last_id[A] = p.ch[A].update_id();
        p.stored[A] = Some(p.ch[A].snapshot());
        if let Some(l) = &mut p.log {
            l.msgs.extend(fxa.send.iter().map(Msg::encode));
        }
        p.absorb(B, fxb);
        p.run_until_quiet(64);
        let (script_pubkey, value) = p.funding_request.clone().expect("funding requested after accept_channel");
        let funding = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value, script_pubkey }],
        };
        let fx = p.ch[A].funding_tx(funding.clone(), sa).expect("funding tx");
        p.absorb(A, fx);
        p.run_until_quiet(64);
        p.tip += 1;
        let h = BlockHeight(p.tip);
        p.chain_event(ChainEvent::Confirmed { tx: &funding, height: h });
        p.run_until_quiet(64);
        assert_eq!(p.ch[A].phase(), Phase::Normal);
        assert_eq!(p.ch[B].phase(), Phase::Normal);
        p.pool.clear();
        p
    }

    /// Records a successful call's effects.
    fn absorb(&mut self, who: usize, fx: Effects) {
        let ch = &self.ch[who];
        let who_name = if who == A { "A" } else { "B" };
        let stored =
            check_update(fx.update.as_ref(), || ch.snapshot(), &mut self.last_id[who], &mut self.stored[who], who_name);
        if !self.corrupt {
            assert!(!fx.events.iter().any(|e| matches!(e, Event::LostState)), "LostState without any data loss");
        }
        for e in &fx.events {
            if let Event::FundingGenerationReady { script_pubkey, value } = e {
                self.funding_request = Some((script_pubkey.clone(), *value));
            }
        }
        if let (Some(u), Some(state)) = (&fx.update, stored) {
            let past = &mut self.past[who];
            if past.len() >= 4 {
                past.remove(0);
            }
            past.push(state.clone());
            for r in &u.records {
                match Record::decode(r).expect("own record decodes") {
                    Record::Penalty(rec) => self.records[who].push(rec),
                    Record::Onion(_) | Record::Delta(_) => {}
                    _ => unreachable!("a record kind this harness does not know"),
                }
                self.raw_records[who].push(r.clone());
            }
            if let Some(l) = &mut self.log {
                l.snapshots.push(state);
                l.records.extend(u.records.iter().cloned());
            }
        }
        if let Some(l) = &mut self.log {
            l.msgs.extend(fx.send.iter().map(Msg::encode));
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
                if crate::trace() {
                    eprintln!("  {} ok: sends {:?}", NAMES[who], fx.send.iter().map(short).collect::<Vec<_>>());
                }
                self.absorb(who, fx);
                Some(t)
            }
            Err(e) => {
                if crate::trace() {
                    eprintln!("  {} refused: {e:?}", NAMES[who]);
                }
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
        let suspicious = mutation.is_some() || duplicate || std::mem::take(&mut self.crafted);
        if mutation.is_some() {
            // The original message is lost (replaced by the corrupted one, or by nothing): the
            // connection is as good as dead until the next reconnection.
            self.wire.q[to].clear();
            self.wire.broken[to] = true;
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
        let reestablish = matches!(m, Msg::ChannelReestablish { .. });
        if crate::trace() {
            eprintln!("  deliver to {}: {}", NAMES[to], short(&m));
        }
        match self.ch[to].handle_message(m, self.signers[to], tip) {
            Ok(fx) => {
                if crate::trace() {
                    eprintln!(
                        "    ok: sends {:?} events {:?}",
                        fx.send.iter().map(short).collect::<Vec<_>>(),
                        fx.events
                    );
                }
                if reestablish {
                    self.awaiting_reestablish[to] = false;
                }
                if suspicious
                    && (self.ch[to].snapshot() != before || !fx.events.is_empty() || !fx.send.is_empty())
                    && crate::accepted(Deviation::ActedOnCorruptMessage)
                {
                    self.corrupt = true;
                }
                self.absorb(to, fx);
            }
            Err(e) => {
                if crate::trace() {
                    eprintln!("    refused: {e:?}");
                }
                assert!(self.ch[to].snapshot() == before, "refused message ({e:?}) changed the state");
                // A careful embedder disconnects after a refusal (`Action::Warn` and worse): what
                // follows on this connection may build on the refused message.
                if e.action != paychan::driving::Action::Ignore {
                    self.wire.q[to].clear();
                    self.wire.broken[to] = true;
                }
            }
        }
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
            let fx = self.ch[who].handle_chain_with_history(ev, &self.records[who], self.signers[who]);
            if crate::trace() && !fx.is_empty() {
                eprintln!("  chain event to {}: broadcasts {}, events {:?}", NAMES[who], fx.broadcast.len(), fx.events);
            }
            self.absorb(who, fx);
        }
    }

    /// An HTLC id offered to `who` (or a raw small id).
    fn incoming_id(&self, who: usize, pick: u8) -> u64 {
        let ids: Vec<u64> =
            self.ch[who].htlcs().iter().filter(|h| h.offerer == Side::Counterparty).map(|h| h.id).collect();
        if pick & 0x80 == 0 && !ids.is_empty() {
            ids[usize::from(pick) % ids.len()]
        } else {
            u64::from(pick & 7)
        }
    }

    fn disconnect(&mut self) {
        if crate::trace() {
            eprintln!("  disconnect");
        }
        for who in [A, B] {
            let fx = self.ch[who].handle_disconnect();
            self.absorb(who, fx);
        }
        self.wire.reconnect();
        self.awaiting_reestablish = [true, true];
        for who in [A, B] {
            if let Ok(m) = self.ch[who].reestablish(self.signers[who]) {
                if let Some(l) = &mut self.log {
                    l.msgs.push(m.encode());
                }
                self.wire.q[1 - who].push_back(m);
            }
        }
    }

    /// A restart from what the party's storage holds. Updates the channel kept in memory (not
    /// covered by a `commitment_signed` yet, so never written) are gone: the restart then comes
    /// with a new connection, whose reestablish must repair it.
    fn restore(&mut self, who: usize) {
        let Some(stored) = self.stored[who].clone() else { return };
        let check = RestoreCheck { channel_id: Some(self.ch[who].channel_id()), min_update_id: self.last_id[who] };
        let r =
            Channel::restore_with_records(&stored, &self.raw_records[who], check).expect("own stored state restores");
        assert!(r.snapshot() == stored, "restore round trip");
        let lost = r.snapshot() != self.ch[who].snapshot();
        self.ch[who] = r;
        if lost {
            self.disconnect();
        }
    }

    /// Value conservation (and agreement, when it must hold) at a quiescent point.
    fn check_quiescent(&self) {
        if !self.wire.is_quiet() {
            return;
        }
        let cap = CAPACITY * 1_000;
        for (who, c) in self.ch.iter().enumerate() {
            for owner in [Side::Holder, Side::Counterparty] {
                let b = c.balances(owner);
                let total = [b.holder, b.counterparty, b.offered, b.received].iter().map(|m| m.to_msat()).sum::<u64>();
                assert_eq!(total, cap, "party {who}, {owner:?} commitment: {b:?} does not add up to the capacity");
            }
        }
        if self.corrupt {
            return;
        }
        let [a, b] = &self.ch;
        if a.holder_commitment_number() == b.counterparty_commitment_number() {
            assert!(
                mirrored(a.balances(Side::Holder), b.balances(Side::Counterparty)),
                "A's latest commitment {:?} != what B signed {:?}",
                a.balances(Side::Holder),
                b.balances(Side::Counterparty)
            );
        }
        if b.holder_commitment_number() == a.counterparty_commitment_number() {
            assert!(
                mirrored(b.balances(Side::Holder), a.balances(Side::Counterparty)),
                "B's latest commitment {:?} != what A signed {:?}",
                b.balances(Side::Holder),
                a.balances(Side::Counterparty)
            );
        }
    }

    /// Runs one action chosen by the input.
    pub fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8();
        let who = usize::from(op >> 7);
        let tip = ChainTip::at(self.tip);
        if crate::trace() {
            eprintln!("op {op:#04x}: {} action {}", NAMES[who], op & 0x7f);
        }
        // Commands (actions 0..=50 and 104..=105) wait for the peer's `channel_reestablish`.
        let command = matches!(op & 0x7f, 0..=50 | 104 | 105);
        if command && self.awaiting_reestablish[who] {
            if crate::trace() {
                eprintln!("  skipped: {} awaits channel_reestablish", NAMES[who]);
            }
            return;
        }
        match op & 0x7f {
            0..=11 => {
                let (kind, x, k, e) = (input.u8(), input.u8(), input.u8(), input.u8());
                let amount = match kind % 4 {
                    0 => u64::from(x) * 1_000 + 1,
                    1 => (u64::from(x) + 1) * 100_000,
                    2 => (u64::from(x) + 1) * 2_000_000,
                    _ => self.ch[who].available_to_send().to_msat().saturating_sub(u64::from(x)),
                };
                let cltv = if e == 0xff { 500_000_000 } else { self.tip + u32::from(e) * 2 };
                let hash = preimage(k % 4).hash();
                self.guarded(who, |c, _| c.add_htlc(MilliSats::from_msat(amount), hash, cltv, OnionPacket::zeroed()));
            }
            12..=19 => {
                let (pick, k) = (input.u8(), input.u8());
                let id = self.incoming_id(who, pick);
                let h = self.ch[who].htlcs().iter().find(|h| h.offerer == Side::Counterparty && h.id == id).cloned();
                let pre = match h {
                    Some(h) if k & 1 == 0 => preimage_for(&h.payment_hash).unwrap_or(preimage(k)),
                    _ => preimage(k),
                };
                self.guarded(who, |c, _| c.fulfill_htlc(id, pre).map(|fx| ((), fx)));
            }
            20..=25 => {
                let (pick, len) = (input.u8(), input.u8());
                let id = self.incoming_id(who, pick);
                self.guarded(who, |c, _| c.fail_htlc(id, vec![len; usize::from(len)]).map(|fx| ((), fx)));
            }
            26 | 27 => {
                let (pick, code) = (input.u8(), input.u16());
                let id = self.incoming_id(who, pick);
                self.guarded(who, |c, _| c.fail_malformed_htlc(id, [code as u8; 32], code).map(|fx| ((), fx)));
            }
            28..=30 => {
                let x = input.u8();
                let rate = match x % 8 {
                    0 => 253,
                    1 => 252,
                    2 => 1_000,
                    3 => 2_500,
                    4 => 10_000,
                    5 => 100_000,
                    6 => 1_000_000,
                    _ => 253 + u32::from(x) * 97,
                };
                self.guarded(who, |c, _| c.update_fee(rate).map(|fx| ((), fx)));
            }
            31..=50 => {
                self.guarded(who, |c, s| c.commit(s).map(|fx| ((), fx)));
            }
            51..=80 => self.deliver(who, None, false),
            81 | 82 => {
                self.wire.drop_next(who);
            }
            83 | 84 => self.deliver(who, None, true),
            85..=88 => {
                let (pos, xor) = (input.u16(), input.u8());
                self.deliver(who, Some((pos, xor)), false);
            }
            89..=94 => self.disconnect(),
            95..=99 => {
                let b = input.u8();
                let n = if b & 0x80 == 0 { u32::from(b % 16) + 1 } else { u32::from(b & 0x7f) * 8 };
                self.tip = self.tip.saturating_add(n).min(499_999_999);
                self.chain_event(ChainEvent::Tip(ChainTip::at(self.tip)));
            }
            100..=103 => self.restore(who),
            104 | 105 => {
                let (lo, hi) = (input.u8(), input.u8());
                let range = (Amount::from_sat(u64::from(lo) * 10), Amount::from_sat(u64::from(hi) * 100));
                let script = if lo == 0xff { ScriptBuf::new() } else { p2wpkh(0x30 + who as u8) };
                self.guarded(who, |c, s| c.shutdown(script, range, s).map(|fx| ((), fx)));
            }
            106 => {
                self.guarded(who, |c, s| c.force_close(s).map(|fx| ((), fx)));
            }
            107 | 108 => {
                let i = input.u8();
                if !self.pool.is_empty() {
                    let tx = self.pool[usize::from(i) % self.pool.len()].clone();
                    self.tip += 1;
                    let height = BlockHeight(self.tip);
                    self.mined.push(tx.compute_txid());
                    self.chain_event(ChainEvent::Confirmed { tx: &tx, height });
                }
            }
            109 => {
                let i = input.u8();
                if !self.mined.is_empty() {
                    let txid = self.mined.remove(usize::from(i) % self.mined.len());
                    self.chain_event(ChainEvent::Unconfirmed(txid));
                }
            }
            110 => {
                let (pick, k) = (input.u8(), input.u8());
                let id = self.incoming_id(who, pick);
                let fx = self.ch[who].provide_preimage(id, preimage(k));
                self.absorb(who, fx);
            }
            111..=118 => self.hostile(who, op & 0x7f, input),
            _ => self.run_until_quiet(24),
        }
        self.check_quiescent();
        let _ = tip;
    }

    /// Delivers `m`, which the hostile party `from` crafted (its own channel would not send
    /// it), to the other party at once. Acting on it is [`Deviation::ActedOnCorruptMessage`]:
    /// it carries data the crafting side's channel does not share.
    fn deliver_crafted(&mut self, from: usize, m: Msg) {
        let to = 1 - from;
        if self.wire.broken[to] {
            return;
        }
        if let Some(l) = &mut self.log {
            l.msgs.push(m.encode());
        }
        self.wire.q[to].push_front(m);
        self.crafted = true;
        self.deliver(to, None, false);
        self.crafted = false;
    }

    /// A move of the hostile-but-valid peer (the values of `paychan::testing::hostile`, as the
    /// Lightning simulator's hostile peer picks them): `update_fee` at the bounds of the peer's
    /// acceptance (crafted when its own channel refuses the rate), `shutdown` to a payout script
    /// at the edge of standardness (crafted likewise), an HTLC expiring at the edge of the peer's
    /// `claim_margin`, a stale `channel_reestablish` from an older snapshot, and a transaction
    /// shown only unconfirmed (`ChainEvent::Seen`: nothing may be taken as spent or confirmed).
    fn hostile(&mut self, who: usize, action: u8, input: &mut Input<'_>) {
        use paychan::testing::hostile;
        let tip = ChainTip::at(self.tip);
        let cid = self.ch[who].channel_id();
        let ct = self.ch[who].channel_type();
        if crate::trace() {
            eprintln!("  hostile move {action}");
        }
        match action {
            111 | 112 => {
                let x = input.u8();
                let rates = hostile::lightning_fee_edges(2_500, &config(ct));
                let rate = rates[usize::from(x) % rates.len()];
                if self.awaiting_reestablish[who] {
                    return;
                }
                if self.guarded(who, |c, _| c.update_fee(rate).map(|fx| ((), fx))).is_none() {
                    self.deliver_crafted(who, Msg::UpdateFee { channel_id: cid, feerate_per_kw: rate });
                }
            }
            113 => {
                let k = input.u8();
                let script = hostile::edge_script(u64::from(k));
                if self.awaiting_reestablish[who] {
                    return;
                }
                let range = (Amount::from_sat(1), Amount::from_sat(CAPACITY));
                let ours = script.clone();
                if self.guarded(who, |c, s| c.shutdown(ours, range, s).map(|fx| ((), fx))).is_none() {
                    self.deliver_crafted(who, Msg::Shutdown { channel_id: cid, scriptpubkey: script });
                }
            }
            114 | 115 => {
                let (x, k, d) = (input.u8(), input.u8(), input.u8());
                if self.awaiting_reestablish[who] {
                    return;
                }
                let margin = config(ct).htlc_deadlines.claim_margin;
                let deltas = hostile::edge_expiry_deltas(margin);
                let cltv = self.tip + deltas[usize::from(d) % deltas.len()];
                let amount = (u64::from(x) + 1) * 100_000;
                let hash = preimage(k % 4).hash();
                self.guarded(who, |c, _| c.add_htlc(MilliSats::from_msat(amount), hash, cltv, OnionPacket::zeroed()));
            }
            116 => {
                let k = input.u8();
                let past = &self.past[who];
                let Some(old) = past.get(usize::from(k) % past.len().max(1)).cloned() else { return };
                let check = RestoreCheck { channel_id: Some(cid), min_update_id: 0 };
                // Without the deltas: replayed, they would bring the old state forward.
                let records = self.raw_records[who].iter().filter(|r| !paychan::core::delta::is_delta(r));
                let Ok(old) = Channel::restore_with_records(&old, records, check) else { return };
                if let Ok(m) = old.reestablish(self.signers[who]) {
                    self.deliver_crafted(who, m);
                }
            }
            _ => {
                // A pool transaction shown only unconfirmed to both parties.
                let i = input.u8();
                let Some(tx) = self.pool.get(usize::from(i) % self.pool.len().max(1)).cloned() else { return };
                let before: Vec<_> =
                    self.ch.iter().map(|c| (c.closing_kind(), c.is_fully_resolved(), c.phase())).collect();
                self.chain_event(ChainEvent::Seen { tx: &tx });
                let after: Vec<_> =
                    self.ch.iter().map(|c| (c.closing_kind(), c.is_fully_resolved(), c.phase())).collect();
                assert_eq!(before, after, "an unconfirmed transaction changed what a party takes as on chain");
            }
        }
        let _ = tip;
    }
}

const NAMES: [&str; 2] = ["A", "B"];

/// A message in one line (the onion left out).
fn short(m: &Msg) -> String {
    match m {
        Msg::UpdateAddHtlc { id, amount_msat, cltv_expiry, .. } => {
            format!("update_add_htlc(id {id}, {} msat, cltv {cltv_expiry})", amount_msat.to_msat())
        }
        Msg::CommitmentSigned { htlc_signatures, .. } => {
            format!("commitment_signed({} htlc sigs)", htlc_signatures.len())
        }
        Msg::RevokeAndAck { .. } => "revoke_and_ack".into(),
        other => {
            let s = format!("{other:?}");
            s.chars().take(160).collect()
        }
    }
}

fn mirrored(x: Balances, y: Balances) -> bool {
    x.holder == y.counterparty && x.counterparty == y.holder && x.offered == y.received && x.received == y.offered
}

thread_local! {
    static BASE: [Pair; 2] = [Pair::open(ChannelType::StaticRemoteKey, false), Pair::open(ChannelType::AnchorsZeroFeeHtlc, false)];
}

/// The fuzz entry point: first byte picks the channel type, the rest are actions.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let t = usize::from(input.u8() & 1);
    let mut p = BASE.with(|b| b[t].clone());
    for _ in 0..MAX_ACTIONS {
        if input.is_empty() {
            break;
        }
        p.step(&mut input);
    }
    p.run_until_quiet(64);
    p.check_quiescent();
}
