//! HTLC deadlines of a Lightning channel on its own (no forwarder): a peer that leaves an HTLC in
//! the commitments past its deadline gets the channel closed and the HTLC resolved on chain, on
//! a simulated chain that checks lock times and runs Bitcoin Core's interpreter; HTLCs too close
//! to their expiry are neither accepted, offered nor fulfilled. Every attack ends with the honest
//! side holding its whole balance and the HTLC's value on chain, to the satoshi, less the fees of
//! the transactions it broadcast.

mod common;

use std::collections::{HashMap, HashSet};

use bitcoin::{Amount, OutPoint, Transaction, Txid};
use common::chain::Chain;
use common::ln::{onion, Pair, Peer};
use paychan::core::commitment::ChannelType;
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip};
use paychan::lightning::{CommandError, Event, HtlcDeadlines, HtlcRefusal, Side};

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];
const CAPACITY: u64 = 10_000_000;
const PUSH_MSAT: u64 = 4_000_000_000;
const HTLC_SAT: u64 = 400_000;
const EXPIRY: u32 = 1_100;
/// The chain starts here (the channel was funded at 1_001).
const START: u32 = 1_050;

fn deadlines() -> HtlcDeadlines {
    HtlcDeadlines::default()
}

/// A committed HTLC of [`HTLC_SAT`] expiring at [`EXPIRY`], offered by A to B.
fn pair_with_htlc(ct: ChannelType, pre: PaymentPreimage) -> (Pair, u64) {
    let mut p = Pair::open(ct, CAPACITY, PUSH_MSAT);
    let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(HTLC_SAT * 1_000), pre.hash(), EXPIRY, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    assert!(p.b.ch.is_htlc_irrevocably_committed(Side::Counterparty, id));
    (p, id)
}

/// Gives `peer` the tip at `height`; returns the effects' broadcasts, events and next deadline.
fn tip(peer: &mut Peer, height: u32) -> (Vec<Transaction>, Vec<Event>, Option<BlockHeight>) {
    let fx = peer.ch.handle_chain(ChainEvent::Tip(ChainTip::at(height)), &peer.signer);
    assert!(fx.broadcast.is_empty() || fx.update.is_some(), "broadcast before persisting");
    (fx.broadcast, fx.events, fx.next_deadline)
}

/// Both channels watching one chain: every block, what confirmed and the new tip go to both, and
/// what each broadcasts goes to the mempool (the honest side's transactions must all be valid).
struct World {
    chain: Chain,
    /// Txids each side broadcast (0: A, 1: B).
    sent: [HashSet<Txid>; 2],
    events: [Vec<Event>; 2],
    /// Height at which each transaction confirmed.
    mined: HashMap<Txid, u32>,
}

impl World {
    fn new(p: &Pair) -> World {
        let mut chain = Chain::at(START);
        chain.credit(&p.funding);
        World { chain, sent: [HashSet::new(), HashSet::new()], events: [Vec::new(), Vec::new()], mined: HashMap::new() }
    }

    fn submit(&mut self, side: usize, txs: Vec<Transaction>, honest: usize) {
        for tx in txs {
            self.sent[side].insert(tx.compute_txid());
            let r = self.chain.submit(&tx);
            if side == honest {
                r.unwrap_or_else(|e| panic!("the honest side broadcast an invalid transaction: {e:?}"));
            }
        }
    }

    /// Mines blocks (feeding both channels) until `height`.
    fn run_to(&mut self, p: &mut Pair, height: u32, honest: usize) {
        while self.chain.height < height {
            let block = self.chain.mine_block();
            let h = self.chain.height;
            for tx in &block {
                self.mined.insert(tx.compute_txid(), h);
                for side in 0..2 {
                    let peer = if side == 0 { &mut p.a } else { &mut p.b };
                    let fx = peer.ch.handle_chain(ChainEvent::Confirmed { tx, height: BlockHeight(h) }, &peer.signer);
                    self.events[side].extend(fx.events);
                    self.submit(side, fx.broadcast, honest);
                }
            }
            for side in 0..2 {
                let peer = if side == 0 { &mut p.a } else { &mut p.b };
                let (b, e, _) = tip(peer, h);
                self.events[side].extend(e);
                self.submit(side, b, honest);
            }
        }
    }

    /// The value of a confirmed transaction's inputs minus its outputs.
    fn fee(&self, tx: &Transaction) -> u64 {
        let inputs: u64 = tx
            .input
            .iter()
            .map(|i| {
                self.chain.tx(&i.previous_output.txid).expect("parent confirmed").output
                    [i.previous_output.vout as usize]
                    .value
                    .to_sat()
            })
            .sum();
        inputs - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
    }

    /// The confirmed transactions `side` broadcast.
    fn confirmed_by(&self, side: usize) -> Vec<Transaction> {
        self.chain
            .confirmed_txs()
            .into_iter()
            .filter(|t| self.sent[side].contains(&t.compute_txid()))
            .cloned()
            .collect()
    }

    /// What is left unspent on `script`.
    fn unspent_to(&self, script: &bitcoin::ScriptBuf) -> u64 {
        let mut total = 0;
        for tx in self.chain.confirmed_txs() {
            let txid = tx.compute_txid();
            for (vout, o) in tx.output.iter().enumerate() {
                if o.script_pubkey == *script && self.chain.is_unspent(&OutPoint { txid, vout: vout as u32 }) {
                    total += o.value.to_sat();
                }
            }
        }
        total
    }
}

/// The anchors a funder's commitment carries (paid out of the funder's balance, not a fee).
fn anchors(ct: ChannelType) -> u64 {
    if ct.has_anchors() {
        660
    } else {
        0
    }
}

#[test]
fn peer_never_removes_offered_htlc_channel_times_it_out_on_chain() {
    for ct in TYPES {
        let pre = PaymentPreimage([0x11; 32]);
        let (mut p, id) = pair_with_htlc(ct, pre);
        // A's whole off-chain value: its balance and the HTLC it offered.
        let before = p.a.ch.balances(Side::Holder);
        assert_eq!(before.offered, MilliSats::from_msat(HTLC_SAT * 1_000));
        let owed = before.holder.to_msat() / 1_000 + HTLC_SAT;
        // B (hostile) never fails nor fulfils the HTLC. A watches the chain.
        let mut w = World::new(&p);
        let due = EXPIRY + deadlines().offered_grace;
        for h in START..due {
            w.chain.height = h;
            let (b, e, next) = tip(&mut p.a, h);
            assert!(b.is_empty() && e.is_empty(), "{h}: nothing to do before the deadline");
            assert_eq!(next, Some(BlockHeight(due)), "{h}: A tells when to call back");
        }
        // At expiry + grace A reports the deadline, then force closes.
        w.chain.height = due;
        let fx = p.a.ch.handle_chain(ChainEvent::Tip(ChainTip::at(due)), &p.a.signer);
        assert_eq!(
            fx.events.first(),
            Some(&Event::HtlcDeadline { offerer: Side::Holder, id, cltv_expiry: EXPIRY }),
            "{:?}",
            fx.events
        );
        assert!(fx.update.is_some());
        assert_eq!(fx.broadcast.len(), 1, "A's commitment");
        assert_eq!(fx.next_deadline, None, "on chain now: resolved by the claims");
        let commitment = fx.broadcast[0].clone();
        w.submit(0, fx.broadcast, 0);
        // The chain goes on until everything of A's is swept (to_self_delay 144 on its outputs).
        w.run_to(&mut p, due + 400, 0);
        assert!(p.a.ch.is_fully_resolved(), "A left something unclaimed");
        assert!(w.mined.contains_key(&commitment.compute_txid()));
        assert!(
            w.events[0].iter().any(|e| matches!(e, Event::HtlcFailed { id: i, .. } if *i == id)),
            "the HTLC timed out back to A: {:?}",
            w.events[0]
        );
        // To the satoshi: A's balance plus the HTLC, less the fees of what A broadcast (its
        // commitment's fee included: A is the funder) and its anchors.
        let fees: u64 = w.confirmed_by(0).iter().map(|t| w.fee(t)).sum();
        let got = w.unspent_to(&p.a.ch.sweep_destination());
        assert_eq!(got, owed - fees - anchors(ct), "{ct:?}: A got {got}, owed {owed}, fees {fees}");
        assert!(fees < 20_000, "fees {fees}");
    }
}

#[test]
fn peer_never_acks_fulfil_channel_claims_on_chain_before_expiry() {
    for ct in TYPES {
        let pre = PaymentPreimage([0x22; 32]);
        let (mut p, id) = pair_with_htlc(ct, pre);
        let before = p.b.ch.balances(Side::Holder);
        let owed = before.holder.to_msat() / 1_000 + HTLC_SAT;
        // B reveals the preimage; A (hostile) takes it and never signs the removal.
        let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.to_a.clear();
        let mut w = World::new(&p);
        // Fewer than `claim_margin` blocks left: B goes on chain.
        let due = EXPIRY - deadlines().claim_margin + 1;
        for h in START..due {
            w.chain.height = h;
            let (b, e, next) = tip(&mut p.b, h);
            assert!(b.is_empty() && e.is_empty(), "{h}: nothing to do before the deadline");
            assert_eq!(next, Some(BlockHeight(due)), "{h}: B tells when to call back");
        }
        w.chain.height = due;
        let fx = p.b.ch.handle_chain(ChainEvent::Tip(ChainTip::at(due)), &p.b.signer);
        assert_eq!(
            fx.events.first(),
            Some(&Event::HtlcDeadline { offerer: Side::Counterparty, id, cltv_expiry: EXPIRY }),
            "{:?}",
            fx.events
        );
        assert_eq!(fx.broadcast.len(), 1, "B's commitment");
        w.submit(1, fx.broadcast, 1);
        // A watches too: it would time the HTLC out on chain from EXPIRY on, and lose the race.
        w.run_to(&mut p, due + 400, 1);
        assert!(p.b.ch.is_fully_resolved(), "B left something unclaimed");
        // B's HTLC-success confirmed before the HTLC could be timed out.
        let success = w
            .confirmed_by(1)
            .into_iter()
            .find(|t| t.input.iter().any(|i| i.witness.iter().any(|e| e == &pre.0[..])))
            .expect("B claimed with the preimage");
        assert!(w.mined[&success.compute_txid()] <= EXPIRY, "claimed at {}", w.mined[&success.compute_txid()]);
        // To the satoshi: B's balance plus the HTLC, less the fees of what B broadcast except its
        // commitment's (the funder, A, pays that one).
        let fees: u64 = w
            .confirmed_by(1)
            .iter()
            .filter(|t| t.input[0].previous_output.txid != p.funding.compute_txid())
            .map(|t| w.fee(t))
            .sum();
        let got = w.unspent_to(&p.b.ch.sweep_destination());
        assert_eq!(got, owed - fees, "{ct:?}: B got {got}, owed {owed}, fees {fees}");
        assert!(fees < 20_000, "fees {fees}");
    }
}

#[test]
fn expired_incoming_htlc_is_not_accepted() {
    for ct in TYPES {
        // B sees the chain at 1_090; A offers HTLCs at its own (older) tip: one already expired,
        // one expiring in 10 blocks, one with exactly `claim_margin` blocks left.
        let mut p = Pair::open(ct, CAPACITY, PUSH_MSAT);
        let b_tip = 1_090;
        let _ = tip(&mut p.b, b_tip);
        let a_before = p.a.ch.balances(Side::Holder);
        let b_before = p.b.ch.balances(Side::Holder);
        let margin = deadlines().claim_margin;
        let expiries = [1_080, b_tip + 10, b_tip + margin];
        let mut ids = Vec::new();
        for (i, expiry) in expiries.iter().enumerate() {
            let pre = PaymentPreimage([i as u8 + 1; 32]);
            let (id, fx) =
                p.a.ch.add_htlc(MilliSats::from_msat(HTLC_SAT * 1_000), pre.hash(), *expiry, onion()).unwrap();
            p.a.absorb_pub(fx, &mut p.to_b);
            ids.push(id);
        }
        p.settle();
        let events = p.b.take_events();
        let received: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::HtlcReceived { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(received, vec![ids[2]], "only the HTLC with enough time left is received: {events:?}");
        for (id, _expiry) in ids.iter().zip(expiries).take(2) {
            assert!(
                events.iter().any(|e| matches!(e, Event::HtlcRefused { id: i, reason: HtlcRefusal::ExpiryTooSoon, .. }
                    if i == id)),
                "{events:?}"
            );
            // Failed back and gone on both sides.
            assert!(p.b.ch.is_htlc_removed(Side::Counterparty, *id));
            assert!(p.a.ch.is_htlc_removed(Side::Holder, *id));
            assert!(p.a.events.iter().any(|e| matches!(e, Event::HtlcFailed { id: i, .. } if i == id)));
        }
        // To the satoshi: only the accepted HTLC left A's balance; B's is untouched.
        let a_after = p.a.ch.balances(Side::Holder);
        assert_eq!(a_after.holder, a_before.holder.saturating_sub(MilliSats::from_msat(HTLC_SAT * 1_000)));
        assert_eq!(a_after.offered, MilliSats::from_msat(HTLC_SAT * 1_000));
        assert_eq!(p.b.ch.balances(Side::Holder).holder, b_before.holder);
        p.verify_commitments();
    }
}

#[test]
fn own_htlc_expiring_too_soon_is_not_offered() {
    for ct in TYPES {
        let mut p = Pair::open(ct, CAPACITY, PUSH_MSAT);
        let now = 1_090;
        let _ = tip(&mut p.a, now);
        let margin = deadlines().claim_margin;
        let hash = PaymentPreimage([9; 32]).hash();
        let amount = MilliSats::from_msat(HTLC_SAT * 1_000);
        let before = p.a.ch.snapshot();
        for expiry in [0, 1_000, now, now + margin - 1] {
            assert_eq!(
                p.a.ch.add_htlc(amount, hash, expiry, onion()).unwrap_err(),
                CommandError::HtlcExpiry,
                "{expiry}"
            );
            assert_eq!(p.a.ch.snapshot(), before, "state unchanged");
        }
        assert!(p.a.ch.add_htlc(amount, hash, now + margin, onion()).is_ok());
    }
}

#[test]
fn fulfil_refused_once_htlc_can_be_timed_out() {
    for ct in TYPES {
        let pre = PaymentPreimage([0x33; 32]);
        let (mut p, id) = pair_with_htlc(ct, pre);
        let margin = deadlines().claim_margin;
        // One block past the fulfilment deadline: the preimage is not revealed.
        let late = EXPIRY - margin + 1;
        let (b, _, next) = tip(&mut p.b, late);
        assert!(b.is_empty(), "no preimage known: nothing to claim");
        assert_eq!(next, None);
        let before = p.b.ch.snapshot();
        assert_eq!(p.b.ch.fulfill_htlc(id, pre).unwrap_err(), CommandError::HtlcExpiry);
        assert_eq!(p.b.ch.snapshot(), before, "state unchanged");
        assert!(p.to_a.is_empty(), "nothing sent");
        // B fails it instead: A gets its value back, to the satoshi.
        let a_before = p.a.ch.balances(Side::Holder);
        let fx = p.b.ch.fail_htlc(id, vec![0x40, 0x0f]).unwrap();
        p.b.absorb_pub(fx, &mut p.to_a);
        p.settle();
        let a_after = p.a.ch.balances(Side::Holder);
        assert_eq!(a_after.holder, a_before.holder.saturating_add(MilliSats::from_msat(HTLC_SAT * 1_000)));
        assert_eq!(a_after.offered, MilliSats::ZERO);

        // With `claim_margin` blocks left the fulfilment is still accepted.
        let pre = PaymentPreimage([0x34; 32]);
        let (mut p, id) = pair_with_htlc(ct, pre);
        let _ = tip(&mut p.b, EXPIRY - margin);
        assert!(p.b.ch.fulfill_htlc(id, pre).is_ok());
    }
}

/// The sum check above counts fees from the transactions; this keeps the arithmetic honest on a
/// transaction with a known fee.
#[test]
fn fee_of_a_transaction_is_inputs_minus_outputs() {
    let p = Pair::open(ChannelType::StaticRemoteKey, CAPACITY, PUSH_MSAT);
    let w = World::new(&p);
    let commitment = p.a.ch.holder_commitment_tx(&p.a.signer).unwrap();
    let outputs: u64 = commitment.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(w.fee(&commitment), CAPACITY - outputs);
    assert!(w.fee(&commitment) > 0 && Amount::from_sat(w.fee(&commitment)) < Amount::from_sat(10_000));
}

/// A forwarder (through the `HtlcChannel` adapter) learns the preimage downstream when fewer than
/// `claim_margin` blocks are left on its incoming Lightning HTLC: it must not hand the preimage
/// to the upstream peer off chain (which could take it and time the HTLC out), but claim on chain
/// at once, and it gets the HTLC's value before the expiry.
#[test]
fn preimage_learnt_too_late_is_claimed_on_chain_not_revealed_off_chain() {
    use paychan::lightning::Msg;
    use paychan::multihop::HtlcChannel;
    for ct in TYPES {
        let pre = PaymentPreimage([0x44; 32]);
        let (mut p, id) = pair_with_htlc(ct, pre);
        let owed = p.b.ch.balances(Side::Holder).holder.to_msat() / 1_000 + HTLC_SAT;
        let mut w = World::new(&p);
        let late = EXPIRY - deadlines().claim_margin + 1;
        for h in START..=late {
            w.chain.height = h;
            let (b, _, _) = tip(&mut p.b, h);
            assert!(b.is_empty());
        }
        let fx = HtlcChannel::fulfill_htlc(&mut p.b.ch, id, pre, &p.b.signer, ChainTip::at(late)).unwrap();
        assert!(
            !fx.send.iter().any(|m| matches!(m, Msg::UpdateFulfillHtlc { .. })),
            "revealed off chain: {:?}",
            fx.send
        );
        assert!(fx.events.contains(&Event::HtlcDeadline { offerer: Side::Counterparty, id, cltv_expiry: EXPIRY }));
        assert!(fx.update.is_some());
        assert_eq!(fx.broadcast.len(), 1, "B's commitment");
        w.submit(1, fx.broadcast, 1);
        w.run_to(&mut p, late + 400, 1);
        assert!(p.b.ch.is_fully_resolved(), "B left something unclaimed");
        let success = w
            .confirmed_by(1)
            .into_iter()
            .find(|t| t.input.iter().any(|i| i.witness.iter().any(|e| e == &pre.0[..])))
            .expect("B claimed with the preimage");
        assert!(w.mined[&success.compute_txid()] <= EXPIRY);
        let fees: u64 = w
            .confirmed_by(1)
            .iter()
            .filter(|t| t.input[0].previous_output.txid != p.funding.compute_txid())
            .map(|t| w.fee(t))
            .sum();
        assert_eq!(w.unspent_to(&p.b.ch.sweep_destination()), owed - fees, "{ct:?}");
    }
}

/// Spilman counterpart: the payee revealed an HTLC's preimage and the payer (hostile) never folds
/// it into a newer payment. The payee closes `close_margin` blocks before the HTLC's expiry
/// (its `next_deadline` says when), claims the HTLC with the preimage before the payer's timeout
/// path opens, and holds everything it was paid plus the HTLC, less the fees of its payment
/// transaction and its claim. (This behaviour predates the Lightning deadlines: the payee already
/// tracked it; the test covers it end to end on the chain.)
#[test]
fn spilman_payer_never_folds_fulfilled_htlc_payee_claims_on_chain() {
    use common::route::{open_spilman, spilman_script, CLOSE_MARGIN};
    use paychan::core::keys::{ChannelSecrets, Seed};
    use paychan::core::sign::InMemorySigner;
    use paychan::spilman::{Event as SpEvent, Msg as SpMsg};
    let keys = |n| InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0));
    let (payer_keys, payee_keys) = (keys(0x71), keys(0x72));
    let start = 100;
    let mut chain = Chain::at(start);
    let (mut payer, mut payee, funding) = open_spilman(&payer_keys, &payee_keys, 1_000, ChainTip::at(start));
    chain.credit(&funding);
    let pre = PaymentPreimage([0x55; 32]);
    let htlc_expiry = start + 100;
    let sats = 50_000;
    let (id, fx) = payer
        .add_htlc(Amount::from_sat(sats), pre.hash(), BlockHeight(htlc_expiry), &payer_keys, ChainTip::at(start))
        .unwrap();
    for m in fx.send {
        for ack in payee.handle_message(m, &payee_keys, ChainTip::at(start)).unwrap().send {
            let _ = payer.handle_message(ack, &payer_keys, ChainTip::at(start)).unwrap();
        }
    }
    let paid = payee.received().to_sat();
    // The payee reveals the preimage; the payer takes it and never folds the HTLC in.
    let fx = payee.fulfill_htlc(id, pre, &payee_keys).unwrap();
    assert!(matches!(fx.send.as_slice(), [SpMsg::Fulfill { .. }]));
    let due = htlc_expiry - CLOSE_MARGIN;
    assert_eq!(fx.next_deadline, Some(BlockHeight(due)));
    let _ = payer.handle_message(fx.send[0].clone(), &payer_keys, ChainTip::at(start)).unwrap();
    let mut payee_sent: HashSet<Txid> = HashSet::new();
    let mut mined_at: HashMap<Txid, u32> = HashMap::new();
    let mut close_at = None;
    while chain.height < htlc_expiry + 20 {
        let block = chain.mine_block();
        let h = chain.height;
        let mut out: Vec<(bool, Transaction)> = Vec::new();
        for tx in &block {
            mined_at.insert(tx.compute_txid(), h);
            let ev = ChainEvent::Confirmed { tx, height: BlockHeight(h) };
            out.extend(payee.handle_chain(ev, &payee_keys).broadcast.into_iter().map(|t| (true, t)));
            out.extend(payer.handle_chain(ev, &payer_keys).broadcast.into_iter().map(|t| (false, t)));
        }
        let fx = payee.handle_chain(ChainEvent::Tip(ChainTip::at(h)), &payee_keys);
        if !fx.broadcast.is_empty() && close_at.is_none() {
            close_at = Some(h);
            assert!(fx.events.iter().any(|e| matches!(e, SpEvent::CloseBroadcast { .. })));
        }
        out.extend(fx.broadcast.into_iter().map(|t| (true, t)));
        out.extend(
            payer.handle_chain(ChainEvent::Tip(ChainTip::at(h)), &payer_keys).broadcast.into_iter().map(|t| (false, t)),
        );
        for (by_payee, tx) in out {
            let r = chain.submit(&tx);
            if by_payee {
                payee_sent.insert(tx.compute_txid());
                r.unwrap_or_else(|e| panic!("the payee broadcast an invalid transaction: {e:?}"));
            }
        }
    }
    assert_eq!(close_at, Some(due), "the payee closed at its deadline");
    let ours: Vec<&Transaction> =
        chain.confirmed_txs().into_iter().filter(|t| payee_sent.contains(&t.compute_txid())).collect();
    let claim = ours
        .iter()
        .find(|t| t.input.iter().any(|i| i.witness.iter().any(|e| e == &pre.0[..])))
        .expect("the payee claimed with the preimage");
    assert!(mined_at[&claim.compute_txid()] < htlc_expiry, "claimed before the timeout path opens");
    let fee = |tx: &Transaction| -> u64 {
        let inputs: u64 = tx
            .input
            .iter()
            .map(|i| chain.tx(&i.previous_output.txid).unwrap().output[i.previous_output.vout as usize].value.to_sat())
            .sum();
        inputs - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
    };
    let fees: u64 = ours.iter().map(|t| fee(t)).sum();
    let script = spilman_script(false);
    let mut got = 0;
    for tx in chain.confirmed_txs() {
        let txid = tx.compute_txid();
        for (vout, o) in tx.output.iter().enumerate() {
            if o.script_pubkey == script && chain.is_unspent(&OutPoint { txid, vout: vout as u32 }) {
                got += o.value.to_sat();
            }
        }
    }
    assert_eq!(got, paid + sats - fees, "paid {paid} + HTLC {sats} - fees {fees}");
}

/// Deadlines other than the defaults are part of the channel's snapshot: a restarted channel
/// keeps acting on them.
#[test]
fn custom_deadlines_survive_a_restart() {
    use paychan::driving::RestoreCheck;
    let custom = HtlcDeadlines { offered_grace: 7, claim_margin: 30 };
    let config = paychan::lightning::ChannelConfig { htlc_deadlines: custom, ..common::ln::config(TYPES[0]) };
    let mut p = Pair::open_with(config.clone(), config, CAPACITY, PUSH_MSAT, 2_500);
    let pre = PaymentPreimage([0x66; 32]);
    let (id, fx) = p.a.ch.add_htlc(MilliSats::from_msat(HTLC_SAT * 1_000), pre.hash(), EXPIRY, onion()).unwrap();
    p.a.absorb_pub(fx, &mut p.to_b);
    p.settle();
    let fx = p.b.ch.fulfill_htlc(id, pre).unwrap();
    p.b.absorb_pub(fx, &mut p.to_a);
    assert_eq!(p.a.ch.next_deadline(), Some(BlockHeight(EXPIRY + 7)));
    assert_eq!(p.b.ch.next_deadline(), Some(BlockHeight(EXPIRY - 30 + 1)));
    for peer in [&p.a, &p.b] {
        let check = RestoreCheck { channel_id: Some(peer.ch.channel_id()), min_update_id: 0 };
        let records = common::ln::onion_records(&peer.ch);
        let restored = paychan::lightning::Channel::restore_with_records(&peer.ch.snapshot(), &records, check).unwrap();
        assert_eq!(restored.next_deadline(), peer.ch.next_deadline());
    }
}
