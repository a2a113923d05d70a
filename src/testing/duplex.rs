//! A two-party duplex channel driven over the simulated chain: every message crosses the wire
//! encoding, every update is checked to come before what it guards and to restore byte for byte,
//! and every broadcast transaction goes through the mempool (so through Bitcoin Core's script
//! interpreter) and is checked not to be valid a block before the height the channel states.

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use crate::core::feebump::BumpRequest;
use crate::core::keys::{ChannelSecrets, Seed};
use crate::core::sign::InMemorySigner;
use crate::core::{BlockHeight, PaymentPreimage};
use crate::driving::{ChainEvent, ChainTip, RestoreCheck};
use crate::duplex::{Channel, Effects, Event, Msg, Params, Phase, Role, Terms};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid, WPubkeyHash};

use super::chain::{Chain, Reject};

/// Chain height when the channel opens.
pub const START: u32 = 1_000;
/// Channel capacity.
pub const CAPACITY: u64 = 1_000_000;
/// Payment fee (paid by the payee of a leaf payment).
pub const PAYMENT_FEE: u64 = 300;
/// Refund fee.
pub const REFUND_FEE: u64 = 400;
/// HTLC claim fee.
pub const CLAIM_FEE: u64 = 350;
/// Dust limit.
pub const DUST: u64 = 546;

/// The P2WPKH script `[n; 20]`.
pub fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

/// The payout script of a role.
pub fn payout(role: Role) -> ScriptBuf {
    match role {
        Role::Initiator => p2wpkh(0xa1),
        Role::Acceptor => p2wpkh(0xb1),
    }
}

/// Test terms with radix `radix`, step 4, refund delay 6, S = R = 1, push 200k.
pub fn terms(radix: Vec<u32>) -> Terms {
    Terms {
        params: Params::new(radix, 4, 6).expect("valid params"),
        capacity: Amount::from_sat(CAPACITY),
        push: Amount::from_sat(200_000),
        payment_fee: Amount::from_sat(PAYMENT_FEE),
        refund_fee: Amount::from_sat(REFUND_FEE),
        claim_fee: Amount::from_sat(CLAIM_FEE),
        dust_limit: Amount::from_sat(DUST),
        confirm_blocks: 1,
        reorg_blocks: 1,
        htlc_grace_blocks: 2,
        max_htlc_expiry_delta: 2_000,
        reset_warning: 3,
        funding_depth: 2,
    }
}

/// The signer of a role.
pub fn signer(role: Role) -> InMemorySigner {
    let n = match role {
        Role::Initiator => 0xa0,
        Role::Acceptor => 0xb0,
    };
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 7))
}

/// Every message crosses the wire encoding.
pub fn wire(m: &Msg) -> Msg {
    let back = Msg::decode(&m.encode()).expect("own encoding decodes");
    assert_eq!(&back, m);
    back
}

/// One party.
pub struct Party {
    /// Its channel.
    pub ch: Channel,
    /// Its keys.
    pub signer: InMemorySigner,
    /// Every event it reported.
    pub events: Vec<Event>,
    /// Transactions it broadcast that were not yet given to the chain.
    pub pending: Vec<Transaction>,
    /// Every transaction it broadcast, with the tip height at the time.
    pub broadcast_log: Vec<(u32, Transaction)>,
    /// Ignores messages and the chain.
    pub offline: bool,
    /// Fee-bump requests the channel handed over ([`Effects::bumps`]), not yet taken by a
    /// bumper.
    pub bumps: Vec<BumpRequest>,
}

/// Two parties, a chain, and the messages between them.
pub struct Pair {
    /// By role.
    pub parties: [Party; 2],
    /// The chain.
    pub chain: Chain,
    /// The funding transaction.
    pub funding: Transaction,
    /// Messages in flight: (recipient, message).
    pub queue: VecDeque<(Role, Msg)>,
}

impl Pair {
    /// Opens a channel with `terms`, confirms its funding and mines until both parties may pay
    /// ([`Channel::sends_from`]).
    pub fn open(terms: Terms) -> Pair {
        Self::open_on(terms, Chain::at(START), [payout(Role::Initiator), payout(Role::Acceptor)])
    }

    /// Opens a channel with `terms` on `chain` (at [`START`]; it may run a relay policy and a fee
    /// market), each party paid to its script in `payouts` (by role), and confirms its funding.
    pub fn open_on(terms: Terms, chain: Chain, payouts: [ScriptBuf; 2]) -> Pair {
        let tip = ChainTip::at(chain.height);
        let (sa, sb) = (signer(Role::Initiator), signer(Role::Acceptor));
        let [pa, pb] = payouts;
        let (a, fx_a) = Channel::open(terms, pa, &sa, tip).expect("open");
        let Some(Msg::Open(open)) = fx_a.send.first().map(wire) else { panic!("Open sent") };
        let (b, fx_b) = Channel::accept(open, pb, &sb, tip).expect("accept");
        let party = |ch, signer| Party {
            ch,
            signer,
            events: Vec::new(),
            pending: Vec::new(),
            broadcast_log: Vec::new(),
            offline: false,
            bumps: Vec::new(),
        };
        let mut pair = Pair {
            parties: [party(a, sa), party(b, sb)],
            chain,
            funding: Transaction {
                version: Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![],
                output: vec![],
            },
            queue: VecDeque::new(),
        };
        pair.absorb(Role::Acceptor, fx_b);
        pair.run();
        assert_eq!(pair.a().phase(), Phase::AwaitingFunding);
        // The wallet builds the funding transaction (native segwit input; its signature is
        // simulated: the chain credits it below).
        let funding = super::wallet::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([0x42; 32]), vout: 3 },
            vec![
                TxOut { value: Amount::from_sat(4_000_000), script_pubkey: p2wpkh(0xa2) },
                pair.a().funding_output().expect("keys known"),
            ],
        );
        let fx = pair.parties[0].ch.fund(funding.clone(), &pair.parties[0].signer).expect("fund");
        pair.absorb(Role::Initiator, fx);
        pair.run();
        assert!(
            pair.parties[0]
                .events
                .iter()
                .any(|e| matches!(e, Event::FundingSignable { txid } if *txid == funding.compute_txid())),
            "the funding is broadcast only now"
        );
        assert_eq!(pair.a().phase(), Phase::Open);
        assert_eq!(pair.b().phase(), Phase::Open);
        // The channel broadcast it once both held the signed tree; it confirms (its made-up
        // input is credited, not checked).
        let pending = &mut pair.parties[0].pending;
        assert_eq!(pending.iter().filter(|tx| **tx == funding).count(), 1, "the initiator broadcasts the funding");
        pending.retain(|tx| *tx != funding);
        pair.chain.credit(&funding);
        pair.funding = funding.clone();
        let height = BlockHeight(pair.chain.height);
        for role in [Role::Initiator, Role::Acceptor] {
            let p = &mut pair.parties[role.index()];
            let fx = p.ch.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &p.signer);
            pair.absorb(role, fx);
        }
        // Payments count once the funding is `funding_depth` deep, and are sent a block later
        // (docs/duplex.md §3): mine to that depth before the tests pay.
        let sends_from = pair.a().sends_from().expect("funding confirmed");
        while pair.chain.height < sends_from.0 {
            pair.mine();
        }
        pair
    }

    /// The initiator's channel.
    pub fn a(&self) -> &Channel {
        &self.parties[0].ch
    }

    /// The acceptor's channel.
    pub fn b(&self) -> &Channel {
        &self.parties[1].ch
    }

    /// A party's channel.
    pub fn ch(&self, role: Role) -> &Channel {
        &self.parties[role.index()].ch
    }

    /// The current tip.
    pub fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    /// Takes a party's effects: checks the persistence contract, records events and broadcasts,
    /// queues messages.
    pub fn absorb(&mut self, who: Role, fx: Effects) {
        if !fx.send.is_empty() || !fx.broadcast.is_empty() {
            assert!(fx.update.is_some(), "anything sent or broadcast is persisted first");
        }
        let party = &mut self.parties[who.index()];
        if let Some(update) = &fx.update {
            // Duplex writes a full snapshot on every update (driving: persistence).
            let snapshot = update.snapshot.as_deref().expect("a full snapshot");
            assert_eq!(snapshot, party.ch.snapshot(), "the update is the channel's state");
            let check = RestoreCheck { channel_id: party.ch.channel_id(), min_update_id: update.update_id };
            let restored = Channel::restore(snapshot, check).expect("own snapshot restores");
            assert_eq!(restored.snapshot(), snapshot, "restore is byte-identical");
        }
        party.events.extend(fx.events);
        party.bumps.extend(fx.bumps);
        for tx in fx.broadcast {
            party.broadcast_log.push((self.chain.height, tx.clone()));
            party.pending.push(tx);
        }
        for m in fx.send {
            self.queue.push_back((!who, m));
        }
    }

    /// Delivers every queued message (and the replies), panicking on a refusal.
    pub fn run(&mut self) {
        while let Some((to, m)) = self.queue.pop_front() {
            self.deliver(to, &m);
        }
    }

    /// Delivers `m` to `to` (unless it is offline), panicking on a refusal.
    fn deliver(&mut self, to: Role, m: &Msg) {
        let tip = self.tip();
        let p = &mut self.parties[to.index()];
        if p.offline {
            return;
        }
        let fx = p.ch.handle_message(wire(m), &p.signer, tip).unwrap_or_else(|e| panic!("{to:?} refused {m:?}: {e}"));
        self.absorb(to, fx);
    }

    /// A new connection: drops every message in flight and exchanges [`Msg::Reestablish`]; the
    /// retransmissions are queued (deliver them with [`Pair::run`]).
    pub fn reconnect(&mut self) {
        self.queue.clear();
        let msgs = [self.a().reestablish(), self.b().reestablish()];
        for (from, m) in [Role::Initiator, Role::Acceptor].into_iter().zip(msgs) {
            self.deliver(!from, &m);
        }
    }

    /// `from` pays `sats`.
    pub fn pay(&mut self, from: Role, sats: u64) {
        let p = &mut self.parties[from.index()];
        let fx = p.ch.pay(Amount::from_sat(sats), &p.signer).unwrap_or_else(|e| panic!("{from:?} pays {sats}: {e}"));
        self.absorb(from, fx);
        self.run();
    }

    /// `from` runs a reset to completion; returns the level that changed.
    pub fn reset(&mut self, from: Role) -> usize {
        let tip = self.tip();
        let p = &mut self.parties[from.index()];
        let fx = p.ch.reset(&p.signer, tip).unwrap_or_else(|e| panic!("{from:?} resets: {e}"));
        self.absorb(from, fx);
        self.run();
        let level = self.parties[from.index()]
            .events
            .iter()
            .rev()
            .find_map(|e| match *e {
                Event::ResetCompleted { level, .. } => Some(level),
                _ => None,
            })
            .expect("reset completed");
        assert_eq!(self.a().digits(), self.b().digits());
        level
    }

    /// `from` offers an HTLC of `sats` on `preimage`'s hash expiring `blocks` after the tip.
    pub fn add_htlc(&mut self, from: Role, sats: u64, preimage: PaymentPreimage, blocks: u32) -> u64 {
        let tip = self.tip();
        let p = &mut self.parties[from.index()];
        let (id, fx) =
            p.ch.add_htlc(Amount::from_sat(sats), preimage.hash(), BlockHeight(tip.height.0 + blocks), &p.signer, tip)
                .unwrap_or_else(|e| panic!("{from:?} adds an HTLC: {e}"));
        self.absorb(from, fx);
        self.run();
        id
    }

    /// The receiver `to` fulfils HTLC `id`.
    pub fn fulfill(&mut self, to: Role, id: u64, preimage: PaymentPreimage) {
        let p = &mut self.parties[to.index()];
        let fx = p.ch.fulfill_htlc(id, preimage, &p.signer).expect("fulfil");
        self.absorb(to, fx);
        self.run();
    }

    /// The receiver `to` fails HTLC `id`.
    pub fn fail(&mut self, to: Role, id: u64) {
        let fx = self.parties[to.index()].ch.fail_htlc(id).expect("fail");
        self.absorb(to, fx);
        self.run();
    }

    /// Both parties see the same balances (when no message is in flight).
    pub fn assert_views_agree(&self) {
        let (a, b) = (self.a().balances(), self.b().balances());
        assert_eq!(
            (a.holder, a.counterparty, a.offered, a.received),
            (b.counterparty, b.holder, b.received, b.offered)
        );
        let value = self.a().terms().channel_value();
        assert_eq!(a.total(), Some(value), "channel value conserved");
    }

    /// Gives every online party's pending broadcasts to the mempool, checking each is valid now
    /// and — for transactions with a stated height — not one block earlier.
    pub fn submit_broadcasts(&mut self) {
        for role in [Role::Initiator, Role::Acceptor] {
            let txs: Vec<Transaction> = std::mem::take(&mut self.parties[role.index()].pending);
            if self.parties[role.index()].offline {
                continue;
            }
            for tx in txs {
                if let Some(valid_from) = self.stated_height(role, &tx) {
                    assert!(valid_from <= self.chain.height + 1, "broadcast before the stated height");
                    let mut earlier = self.chain.clone();
                    earlier.height = valid_from - 2;
                    match earlier.check(&tx) {
                        Err(Reject::RelativeLock { .. } | Reject::NonFinal { .. }) => {}
                        other => panic!(
                            "{} valid a block before its stated height {valid_from}: {other:?}",
                            tx.compute_txid()
                        ),
                    }
                }
                match self.chain.submit(&tx) {
                    Ok(()) => {}
                    // Already spent by a conflicting transaction of the counterparty (both
                    // publish the same tree transaction, or the coop close raced a node).
                    Err(Reject::MissingOrSpent(_)) => {}
                    Err(e) => panic!("{role:?} broadcast an invalid transaction {}: {e:?}", tx.compute_txid()),
                }
            }
        }
    }

    /// The height from which the channel of `role` says `tx` is valid, if it is a tree node, a
    /// refund or an HTLC timeout (transactions with a lock).
    fn stated_height(&self, role: Role, tx: &Transaction) -> Option<u32> {
        let ch = self.ch(role);
        let txid = tx.compute_txid();
        if let Some(s) = ch.close_schedule().iter().find(|s| s.txid == txid && s.level > 0) {
            return Some(s.valid_from.expect("parent confirmed").0);
        }
        let seq = tx.input.first()?.sequence.0;
        if seq == u32::from(ch.params().refund_delay()) {
            return Some(ch.refund_valid_from().expect("leaf confirmed").0);
        }
        let lt = tx.lock_time.to_consensus_u32();
        (lt > 0).then_some(lt + 1)
    }

    /// Mines one block: pending broadcasts go to the mempool (after `extra`, e.g. a cheater's
    /// transactions), the block is mined, and both parties see every transaction (twice: the
    /// second delivery must change nothing) and the new tip.
    pub fn mine_with(&mut self, extra: &[Transaction]) -> Vec<Transaction> {
        for tx in extra {
            let _ = self.chain.submit(tx);
        }
        self.submit_broadcasts();
        let mined = self.chain.mine_block();
        let height = BlockHeight(self.chain.height);
        for tx in &mined {
            for role in [Role::Initiator, Role::Acceptor] {
                if self.parties[role.index()].offline {
                    continue;
                }
                let p = &mut self.parties[role.index()];
                let fx = p.ch.handle_chain(ChainEvent::Confirmed { tx, height }, &p.signer);
                self.absorb(role, fx);
                let p = &mut self.parties[role.index()];
                let before = p.ch.snapshot();
                let again = p.ch.handle_chain(ChainEvent::Confirmed { tx, height }, &p.signer);
                assert!(again.is_empty() && again.update.is_none(), "a repeated confirmation changes nothing");
                assert_eq!(before, p.ch.snapshot());
            }
        }
        let tip = self.tip();
        for role in [Role::Initiator, Role::Acceptor] {
            if self.parties[role.index()].offline {
                continue;
            }
            let p = &mut self.parties[role.index()];
            let fx = p.ch.handle_chain(ChainEvent::Tip(tip), &p.signer);
            self.absorb(role, fx);
        }
        self.run();
        mined
    }

    /// Mines one block.
    pub fn mine(&mut self) -> Vec<Transaction> {
        self.mine_with(&[])
    }

    /// Sum of the outputs to `role`'s payout script confirmed on chain.
    pub fn paid_to(&self, role: Role) -> u64 {
        let spk = payout(role);
        self.chain
            .confirmed_txs()
            .iter()
            .flat_map(|t| t.output.iter())
            .filter(|o| o.script_pubkey == spk)
            .map(|o| o.value.to_sat())
            .sum()
    }
}
