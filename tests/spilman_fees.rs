//! Spilman's unilateral paths under a fee market that spikes 10× then 100× within a few blocks:
//! the payee's close (CPFP through its own output, signed by its wallet), the payer's refund (RBF
//! in the CLTV variant, CPFP through its output when pre-signed) and the HTLC claims (RBF), each
//! handed by the channel to a [`Bumper`] through `Effects::bumps`.
//!
//! The market is simulated by hand: each block has a minimum feerate, and a block includes a
//! transaction (or a parent with its child) only if it pays that rate; the embedder's estimate at
//! a tip is the minimum of the block it just saw (the estimator lags the market by one block).
//! Every transaction mined is checked by Bitcoin Core's interpreter ([`Chain`]), and each honest
//! party ends with exactly what it was owed less the fees of the transactions it paid.

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, Transaction, Txid};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::{BumpEvent, BumpMethod, BumpRequest, Bumper, FeeEstimates, Protects};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip};
use paychan::spilman::{CloseKind, Effects, Event, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
use paychan::testing::chain::Chain;
use paychan::testing::wallet::{FeeCoins, Wallet};

const START: u32 = 100;
const CAPACITY: u64 = 1_000_000;
const PAYMENT_FEE: u64 = 500;
const REFUND_FEE: u64 = 500;
const CLAIM_FEE: u64 = 300;
const CLOSE_MARGIN: u32 = 8;

const PAYER: usize = 0;
const PAYEE: usize = 1;

/// A fee market: the minimum feerate of each block.
#[derive(Clone, Copy)]
struct Market {
    /// The block at 10× (3,000 sat/kw); from the next one on, 100× (30,000 sat/kw).
    spike: u32,
    /// The block from which the market is calm again.
    calm: u32,
}

impl Market {
    fn min_rate(self, block: u32) -> FeeratePerKw {
        if block < self.spike || block >= self.calm {
            FeeratePerKw(300)
        } else if block == self.spike {
            FeeratePerKw(3_000)
        } else {
            FeeratePerKw(30_000)
        }
    }

    /// What the embedder's estimator says at `tip`: the minimum of the block it just saw.
    fn estimate(self, tip: u32) -> FeeEstimates {
        FeeEstimates::flat(self.min_rate(tip))
    }
}

struct Side {
    signer: InMemorySigner,
    wallet: FeeCoins,
    /// `None`: the embedder broadcasts what the channel gives it and never bumps.
    bumper: Option<Bumper>,
    /// Every request the channel handed over, by id.
    requests: Vec<BumpRequest>,
    /// Transactions broadcast at their fixed fee (what a side without a bumper has).
    fixed: Vec<Transaction>,
    events: Vec<Event>,
    /// Coins the bumper used, per request id (replacements must reuse them).
    coins: Vec<(Txid, Vec<OutPoint>)>,
    /// Attempts the bumper capped at what was at stake.
    capped: u32,
}

struct H {
    chain: Chain,
    market: Market,
    payer: Payer,
    payee: Payee,
    sides: [Side; 2],
    /// Fees of the confirmed transactions each side paid (broadcast), in sat.
    paid: [u64; 2],
    /// Confirmed transactions, with the side that paid for them.
    mined: Vec<(Transaction, usize)>,
    /// A side whose embedder is gone: it sees nothing and broadcasts nothing.
    offline: [bool; 2],
}

fn side(seed: u8, wallet_seed: u8, bumps: bool) -> Side {
    Side {
        signer: InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), 0)),
        wallet: FeeCoins::new(Wallet::new(wallet_seed)),
        bumper: bumps.then(Bumper::new),
        requests: vec![],
        fixed: vec![],
        events: vec![],
        coins: vec![],
        capped: 0,
    }
}

fn wire(m: &Msg) -> Msg {
    Msg::decode(&m.encode()).expect("own encoding decodes")
}

fn fee_of(chain: &Chain, tx: &Transaction) -> u64 {
    let ins: u64 = tx
        .input
        .iter()
        .map(|i| {
            chain
                .tx(&i.previous_output.txid)
                .and_then(|t| t.output.get(i.previous_output.vout as usize))
                .expect("input known")
                .value
                .to_sat()
        })
        .sum();
    ins - tx.output.iter().map(|o| o.value.to_sat()).sum::<u64>()
}

impl H {
    /// A funded, open channel with `paid` sat paid to the payee. Both parties' payout scripts
    /// are their wallets' (so their wallets can sign a child of their output).
    fn open(variant: Variant, expiry: u32, market: Market, bumps: [bool; 2], paid: u64) -> H {
        let mut sides = [side(1, 11, bumps[0]), side(2, 12, bumps[1])];
        let mut chain = Chain::at(START);
        let (payee, fx) = Payee::new(
            PayeeConfig {
                variant,
                payee_script: sides[PAYEE].wallet.script(),
                expiry: BlockHeight(expiry),
                min_first_payment: Amount::from_sat(10_000),
                dust_limit: Amount::from_sat(546),
                payment_fee: Amount::from_sat(PAYMENT_FEE),
                close_margin: CLOSE_MARGIN,
                htlc_min_blocks: 12,
                min_depth: 0,
                claim_fee: Amount::from_sat(CLAIM_FEE),
            },
            &sides[PAYEE].signer,
        );
        let Some(Msg::Offer(offer)) = fx.send.first().map(wire) else { panic!("the payee sends its offer") };
        let payer = Payer::new(
            offer,
            PayerConfig {
                capacity: Amount::from_sat(CAPACITY),
                payer_script: sides[PAYER].wallet.script(),
                refund_fee: Amount::from_sat(REFUND_FEE),
                claim_fee: Amount::from_sat(CLAIM_FEE),
                first_payment: Amount::from_sat(10_000),
                max_lifetime: 10_000,
            },
            &sides[PAYER].signer,
            ChainTip::at(START),
        )
        .expect("offer acceptable");
        // Each wallet has one spare coin (a bump may need more than the party's own output).
        for s in &mut sides {
            s.wallet.add_coin(&mut chain, Amount::from_sat(100_000));
        }
        let mut h = H { chain, market, payer, payee, sides, paid: [0; 2], mined: vec![], offline: [false; 2] };
        let funding = paychan::testing::wallet::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            vec![h.payer.funding_output()],
        );
        let fx = h.payer.fund(funding.clone(), &h.sides[PAYER].signer).unwrap();
        h.deliver(PAYER, fx);
        h.chain.credit(&funding);
        let height = BlockHeight(h.chain.height);
        let fx = h.payee.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &h.sides[PAYEE].signer);
        h.absorb(PAYEE, fx);
        let fx = h.payer.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &h.sides[PAYER].signer);
        h.absorb(PAYER, fx);
        if paid > 10_000 {
            let fx = h.payer.pay(Amount::from_sat(paid - 10_000), &h.sides[PAYER].signer).unwrap();
            h.deliver(PAYER, fx);
        }
        assert_eq!(h.payee.received().to_sat(), paid);
        h
    }

    /// Takes a side's effects: broadcasts go out at their fixed fee, bump requests to its bumper.
    fn absorb(&mut self, i: usize, fx: Effects) -> Vec<Msg> {
        if self.offline[i] {
            return vec![];
        }
        let s = &mut self.sides[i];
        s.events.extend(fx.events);
        for tx in fx.broadcast {
            if tx.input.iter().any(|inp| self.chain.tx(&inp.previous_output.txid).is_some()) && !s.fixed.contains(&tx) {
                s.fixed.push(tx);
            }
        }
        for r in fx.bumps {
            assert!(
                s.requests.iter().any(|x| x.id() == r.id()) || s.fixed.iter().any(|t| t.compute_txid() == r.id()),
                "a request is for a transaction the channel broadcast"
            );
            if !s.requests.iter().any(|x| x.id() == r.id()) {
                s.requests.push(r.clone());
            }
            if let Some(b) = &mut s.bumper {
                let _ = b.track(r);
            }
        }
        fx.send
    }

    /// Delivers side `i`'s effects and the replies, until quiet.
    fn deliver(&mut self, i: usize, fx: Effects) {
        let sent = self.absorb(i, fx);
        let tip = ChainTip::at(self.chain.height);
        for m in sent {
            let fx = if i == PAYER {
                self.payee.handle_message(wire(&m), &self.sides[PAYEE].signer, tip)
            } else {
                self.payer.handle_message(wire(&m), &self.sides[PAYER].signer, tip)
            };
            if let Ok(fx) = fx {
                self.deliver(1 - i, fx);
            }
        }
    }

    fn notify(&mut self, ev: ChainEvent<'_>) {
        if !self.offline[PAYER] {
            let fx = self.payer.handle_chain(ev, &self.sides[PAYER].signer);
            self.deliver(PAYER, fx);
        }
        if !self.offline[PAYEE] {
            let fx = self.payee.handle_chain(ev, &self.sides[PAYEE].signer);
            self.deliver(PAYEE, fx);
        }
        for (i, s) in self.sides.iter_mut().enumerate() {
            if let (Some(b), false) = (&mut s.bumper, self.offline[i]) {
                let _ = b.handle_chain(&ev);
            }
        }
    }

    /// One block: both sides see the tip, the bumpers bump at the estimate, and the next block
    /// includes every candidate paying its minimum feerate (a parent with its child as a
    /// package). Returns the transactions mined.
    fn block(&mut self) -> Vec<Transaction> {
        let tip = self.chain.height;
        self.notify(ChainEvent::Tip(ChainTip::at(tip)));
        // (side, package) candidates.
        let mut candidates: Vec<(usize, Vec<Transaction>)> = Vec::new();
        for i in [PAYER, PAYEE] {
            let est = self.market.estimate(tip);
            let s = &mut self.sides[i];
            let Some(b) = &mut s.bumper else {
                candidates.extend(s.fixed.iter().map(|t| (i, vec![t.clone()])));
                continue;
            };
            let fx = b.bump(BlockHeight(tip), &est, &mut s.wallet, &s.signer);
            // The bumper persists its wallet-signed templates too.
            assert_eq!(Bumper::decode(&b.encode()).as_ref(), Ok(&*b), "the bumper restores exactly");
            for e in &fx.events {
                match e {
                    BumpEvent::Bumped { id, txid, fee } => {
                        let r = s.requests.iter().find(|r| r.id() == *id).expect("a tracked request");
                        assert!(*fee <= r.at_stake, "a bump pays at most what is at stake: {fee} > {}", r.at_stake);
                        let attempt = fx.broadcast.iter().find(|t| t.compute_txid() == *txid).expect("broadcast");
                        // Wallet coins: every input that is not the request's own.
                        let own: Vec<OutPoint> = match &r.method {
                            BumpMethod::Child { anchor, .. } => vec![anchor.outpoint],
                            BumpMethod::Replace { inputs, .. } | BumpMethod::AddInputs { inputs, .. } => {
                                inputs.iter().map(|t| t.outpoint).collect()
                            }
                        };
                        let coins: Vec<OutPoint> = attempt
                            .input
                            .iter()
                            .map(|inp| inp.previous_output)
                            .filter(|op| !own.contains(op))
                            .collect();
                        match s.coins.iter_mut().find(|(x, _)| x == id) {
                            Some((_, prev)) => {
                                assert!(
                                    prev.iter().all(|c| coins.contains(c)),
                                    "a replacement spends the coins of the attempt before it"
                                );
                                *prev = coins;
                            }
                            None => s.coins.push((*id, coins)),
                        }
                    }
                    BumpEvent::Failed { error, .. } => panic!("a bump failed: {error:?}"),
                    BumpEvent::Capped { .. } => s.capped += 1,
                    _ => {}
                }
            }
            for id in b.pending().collect::<Vec<_>>() {
                candidates.push((i, b.current(&id)));
            }
        }
        let min = self.market.min_rate(tip + 1);
        let mut block: Vec<(Transaction, usize)> = Vec::new();
        let mut scratch = self.chain.clone();
        for (i, package) in candidates {
            let weight: u64 = package.iter().map(|t| t.weight().to_wu()).sum();
            let mut probe = scratch.clone();
            let mut fee = 0;
            let mut ok = true;
            for tx in &package {
                if probe.confirmation(&tx.compute_txid()).is_some() {
                    continue;
                }
                if probe.check(tx).is_err() {
                    ok = false;
                    break;
                }
                fee += fee_of(&probe, tx);
                probe.mine(tx).expect("checked");
                probe.height -= 1;
            }
            if ok && fee * 1000 >= u64::from(min.0) * weight {
                for tx in package {
                    if scratch.confirmation(&tx.compute_txid()).is_none() {
                        scratch.mine(&tx).expect("valid for Core's interpreter");
                        scratch.height -= 1;
                        block.push((tx, i));
                    }
                }
            }
        }
        // Every transaction of the block goes through the interpreter again, in the block's
        // order, at the block's height.
        let height = tip + 1;
        for (tx, i) in &block {
            self.chain.check(tx).expect("valid for Core's interpreter");
            self.paid[*i] += fee_of(&self.chain, tx);
            self.chain.mine(tx).unwrap();
            self.chain.height = tip;
            self.mined.push((tx.clone(), *i));
        }
        self.chain.height = height;
        for (tx, _) in &block {
            self.notify(ChainEvent::Confirmed { tx, height: BlockHeight(height) });
        }
        for s in &mut self.sides {
            s.wallet.sync(&self.chain);
            s.fixed.retain(|t| t.input.iter().all(|inp| self.chain.is_unspent(&inp.previous_output)));
        }
        block.into_iter().map(|(t, _)| t).collect()
    }

    /// Mines blocks until `txid`-filter `done` holds or `until` is reached.
    fn run_until(&mut self, until: u32, done: impl Fn(&H) -> bool) {
        while self.chain.height < until && !done(self) {
            self.block();
        }
    }

    fn confirmed_at(&self, pred: impl Fn(&Transaction) -> bool) -> Option<(Transaction, u32)> {
        self.mined
            .iter()
            .find(|(t, _)| pred(t))
            .map(|(t, _)| (t.clone(), self.chain.confirmation(&t.compute_txid()).expect("mined")))
    }

    fn funding(&self) -> OutPoint {
        self.payer.template().expect("funded").outpoint
    }

    fn request(&self, i: usize, protects: Protects) -> BumpRequest {
        self.sides[i].requests.iter().find(|r| r.protects == protects).cloned().expect("the channel asked for a bump")
    }

    /// What side `i`'s wallet gained since it was funded with its 100,000 sat coin.
    fn gained(&self, i: usize) -> i64 {
        self.sides[i].wallet.balance().to_sat() as i64 - 100_000
    }
}

/// The payee's close, co-signed `SIGHASH_ALL` at a fee fixed at signing, confirms before the
/// refund becomes valid because its child (spending the payee's own output, signed by its
/// wallet) follows the spike: the payee keeps exactly its payment less the close's fee and the
/// child's.
fn payee_close_is_bumped_through_its_output(variant: Variant) {
    let expiry = 130;
    let close_by = expiry - CLOSE_MARGIN;
    // The market rises 10× the block after the payee closes, 100× two blocks later.
    let market = Market { spike: close_by + 1, calm: u32::MAX };
    let paid = 200_000;
    let mut h = H::open(variant, expiry, market, [true, true], paid);
    h.run_until(expiry + 5, |h| h.payee.is_closed());
    let close = h.request(PAYEE, Protects::SpilmanClose);
    assert_eq!(close.deadline, BlockHeight(expiry), "the close must confirm before the refund can");
    assert_eq!(close.at_stake, Amount::from_sat(paid - PAYMENT_FEE), "it protects the payee's output");
    let BumpMethod::Child { anchor, parent_fee } = &close.method else { panic!("a CPFP request") };
    assert_eq!(*parent_fee, Amount::from_sat(PAYMENT_FEE));
    assert_eq!(anchor.key, None, "the payee's output pays its wallet's script: the wallet signs");
    let (_, at) = h.confirmed_at(|t| t.compute_txid() == close.id()).expect("the close confirmed");
    assert!(at <= expiry, "confirmed at {at}, by its deadline {expiry}");
    assert!(at >= market.spike + 2, "it confirmed in the 100× spike (at {at}): the test exercises the spike");
    assert!(h.sides[PAYEE].events.contains(&Event::Closed { txid: close.id(), kind: CloseKind::Payment }));
    // The child spent the payee's output (and no wallet coin: the output covered the fee).
    let (child, _) = h.confirmed_at(|t| t.input.iter().any(|i| i.previous_output.txid == close.id())).unwrap();
    assert_eq!(child.input.len(), 1);
    let child_fee = fee_of(&h.chain, &child);
    assert!(child_fee > 10_000, "the child paid for the spike: {child_fee}");
    // To the satoshi: the payment, less the fee of the close and of the child it paid.
    assert_eq!(h.gained(PAYEE), (paid - PAYMENT_FEE - child_fee) as i64);
    assert_eq!(h.paid[PAYEE], PAYMENT_FEE + child_fee);
    // The payer gets its change; its refund never became valid.
    assert_eq!(h.gained(PAYER), (CAPACITY - paid) as i64);
    assert!(h.payer.is_closed());
    assert!(h.sides[PAYER].requests.is_empty(), "the payer never had to refund");
}

#[test]
fn cltv_payee_close_is_bumped_through_its_output_and_beats_the_refund() {
    payee_close_is_bumped_through_its_output(Variant::Cltv);
}

#[test]
fn presigned_payee_close_is_bumped_through_its_output_and_beats_the_refund() {
    payee_close_is_bumped_through_its_output(Variant::PresignedRefund);
}

/// The attack the bumper stops: without it the payee's close stays below the market, the payer
/// refunds the whole capacity at expiry, and the payee loses every satoshi it was paid.
#[test]
fn without_a_bumper_the_payee_close_misses_and_the_refund_takes_its_payment() {
    let expiry = 130;
    let market = Market { spike: expiry - CLOSE_MARGIN + 1, calm: u32::MAX };
    let paid = 200_000;
    // The payer bumps (its refund follows the market); the payee's embedder does not.
    let mut h = H::open(Variant::Cltv, expiry, market, [true, false], paid);
    h.run_until(expiry + 10, |h| h.payer.is_closed());
    let funding = h.funding();
    let (spend, at) = h.confirmed_at(|t| t.input.iter().any(|i| i.previous_output == funding)).unwrap();
    assert_eq!(at, expiry + 1, "the refund confirmed as soon as it could");
    assert!(h.sides[PAYER].events.iter().any(|e| matches!(e, Event::Closed { kind: CloseKind::Refund, .. })));
    assert_eq!(h.gained(PAYEE), 0, "the payee lost its {paid} sat payment");
    assert_eq!(h.gained(PAYER), (CAPACITY - fee_of(&h.chain, &spend)) as i64);
}

/// The CLTV refund is signed by the payer alone: each block it is re-signed at the estimate
/// (RBF), its fee taken from the refund, and confirms in the first block it can.
#[test]
fn cltv_refund_is_replaced_at_rising_feerates_and_confirms_at_expiry() {
    let expiry = 130;
    // The market spikes while the payer waits for expiry; the payee has vanished.
    let market = Market { spike: expiry - 3, calm: u32::MAX };
    let paid = 150_000;
    let mut h = H::open(Variant::Cltv, expiry, market, [true, true], paid);
    // The payee's embedder is gone: it never closes.
    h.offline[PAYEE] = true;
    h.run_until(expiry + 5, |h| h.payer.is_closed());
    let refund = h.request(PAYER, Protects::SpilmanRefund);
    assert_eq!(refund.deadline, BlockHeight(expiry + 1), "payments need no lock: the race starts at once");
    assert_eq!(refund.at_stake, Amount::from_sat(paid), "the most a payment the payee holds gives it");
    let BumpMethod::Replace { inputs, lock_time, .. } = &refund.method else { panic!("an RBF request") };
    assert_eq!(*lock_time, expiry);
    assert_eq!(inputs[0].outpoint, h.funding());
    let funding = h.funding();
    let (tx, at) = h.confirmed_at(|t| t.input.iter().any(|i| i.previous_output == funding)).unwrap();
    assert_eq!(at, expiry + 1, "by its deadline");
    assert_ne!(tx.compute_txid(), refund.id(), "a replacement confirmed, not the fixed-fee refund");
    // Both sides know the replacement for the refund it is.
    for i in [PAYER, PAYEE] {
        let closed = Event::Closed { txid: tx.compute_txid(), kind: CloseKind::Refund };
        assert!(h.offline[i] || h.sides[i].events.contains(&closed), "side {i} saw the refund");
    }
    assert_eq!(tx.input.len(), 1, "no wallet coin: the fee comes from the refund");
    let fee = fee_of(&h.chain, &tx);
    assert!(fee * 1000 >= 30_000 * tx.weight().to_wu(), "it paid the 100× rate");
    assert!(fee <= paid);
    assert_eq!(h.gained(PAYER), (CAPACITY - fee) as i64, "the payer's capacity less its refund's fee");
    assert_eq!(h.gained(PAYEE), 0);
}

/// The pre-signed refund is co-signed: the payer bumps it through its own output.
#[test]
fn presigned_refund_is_bumped_through_the_payer_output() {
    let expiry = 130;
    let market = Market { spike: expiry - 3, calm: u32::MAX };
    let paid = 150_000;
    let mut h = H::open(Variant::PresignedRefund, expiry, market, [true, true], paid);
    h.offline[PAYEE] = true;
    h.run_until(expiry + 5, |h| h.payer.is_closed());
    let refund = h.request(PAYER, Protects::SpilmanRefund);
    assert_eq!(refund.deadline, BlockHeight(expiry + 1));
    let BumpMethod::Child { anchor, parent_fee } = &refund.method else { panic!("a CPFP request") };
    assert_eq!(anchor.outpoint, OutPoint { txid: refund.id(), vout: 0 });
    assert_eq!(*parent_fee, Amount::from_sat(REFUND_FEE));
    let (_, at) = h.confirmed_at(|t| t.compute_txid() == refund.id()).expect("the refund confirmed");
    assert_eq!(at, expiry + 1);
    let (child, _) = h.confirmed_at(|t| t.input.iter().any(|i| i.previous_output.txid == refund.id())).unwrap();
    let child_fee = fee_of(&h.chain, &child);
    assert!(child_fee <= paid);
    assert_eq!(h.gained(PAYER), (CAPACITY - REFUND_FEE - child_fee) as i64);
    assert_eq!(h.paid[PAYER], REFUND_FEE + child_fee);
}

/// HTLC outputs of the payee's close: the payee's preimage claim must confirm by the HTLC's
/// expiry, the payer's timeout claim in the first block it can; both are replaced as the
/// market spikes, and each side gets exactly its HTLC less its claim's fee.
#[test]
fn htlc_claims_are_replaced_through_the_spike_and_confirm_by_their_deadlines() {
    let expiry = 300;
    let htlc_expiry = 160;
    // The spike starts while the payee's claim is pending.
    let market = Market { spike: 141, calm: u32::MAX };
    let paid = 200_000;
    let mut h = H::open(Variant::Cltv, expiry, market, [true, true], paid);
    let preimage = PaymentPreimage([7; 32]);
    let other = PaymentPreimage([8; 32]);
    let tip = ChainTip::at(h.chain.height);
    let (a, fx) = h
        .payer
        .add_htlc(Amount::from_sat(50_000), preimage.hash(), BlockHeight(htlc_expiry), &h.sides[PAYER].signer, tip)
        .unwrap();
    h.deliver(PAYER, fx);
    let (_b, fx) = h
        .payer
        .add_htlc(Amount::from_sat(40_000), other.hash(), BlockHeight(htlc_expiry), &h.sides[PAYER].signer, tip)
        .unwrap();
    h.deliver(PAYER, fx);
    // The payee closes now (the market is calm) with both HTLCs pending.
    let fx = h.payee.close(&h.sides[PAYEE].signer).unwrap();
    h.deliver(PAYEE, fx);
    h.run_until(140, |h| h.payee.is_closed());
    assert!(h.payee.is_closed() && h.payer.is_closed());
    while h.chain.height < 140 {
        h.block();
    }
    // The payee claims HTLC a with its preimage at 140, just before the spike.
    let fx = h.payee.fulfill_htlc(a, preimage, &h.sides[PAYEE].signer).unwrap();
    h.deliver(PAYEE, fx);
    let claim = h.request(PAYEE, Protects::HtlcClaim);
    assert_eq!(claim.deadline, BlockHeight(htlc_expiry));
    assert_eq!(claim.at_stake, Amount::from_sat(50_000));
    h.run_until(htlc_expiry + 10, |h| h.sides[PAYER].requests.iter().any(|r| r.protects == Protects::HtlcClaim));
    let timeout = h.request(PAYER, Protects::HtlcClaim);
    assert_eq!(timeout.deadline, BlockHeight(htlc_expiry + 1));
    assert_eq!(timeout.at_stake, Amount::from_sat(40_000));
    h.run_until(htlc_expiry + 10, |h| h.sides.iter().all(|s| s.bumper.as_ref().unwrap().pending().count() == 0));
    let spends = |r: &BumpRequest| {
        let BumpMethod::Replace { inputs, .. } = &r.method else { panic!("an RBF request") };
        inputs[0].outpoint
    };
    let (success, at) = h.confirmed_at(|t| t.input[0].previous_output == spends(&claim)).unwrap();
    assert!(at <= htlc_expiry && at >= market.spike + 2, "in the 100× spike, by the expiry (at {at})");
    let (refund, at) = h.confirmed_at(|t| t.input[0].previous_output == spends(&timeout)).unwrap();
    assert_eq!(at, htlc_expiry + 1);
    let (s_fee, t_fee) = (fee_of(&h.chain, &success), fee_of(&h.chain, &refund));
    assert!(s_fee > CLAIM_FEE && t_fee > CLAIM_FEE, "both paid more than their signed fee");
    let (close, _) = h.confirmed_at(|t| t.input[0].previous_output == h.funding()).unwrap();
    let close_child_fee: u64 = h
        .mined
        .iter()
        .filter(|(t, _)| t.input.iter().any(|i| i.previous_output.txid == close.compute_txid()))
        .filter(|(t, i)| *i == PAYEE && t.input.len() == 1 && t.input[0].previous_output != spends(&claim))
        .map(|(t, _)| fee_of(&h.chain, t))
        .sum();
    let payee_paid = PAYMENT_FEE + close_child_fee + s_fee;
    assert_eq!(h.paid[PAYEE], payee_paid);
    assert_eq!(h.gained(PAYEE), (paid + 50_000 - payee_paid) as i64);
    assert_eq!(h.gained(PAYER), (CAPACITY - paid - 90_000 + 40_000 - t_fee) as i64);
    assert_eq!(h.paid[PAYER], t_fee);
}

/// A close worth less than the spike would cost to confirm: the bumper pays at most the payee's
/// output (adding a wallet coin, the same one in every attempt, since the output alone would
/// leave the child's change below dust) and no more; the payee loses the payment it could not
/// afford to defend, never its wallet coin.
#[test]
fn a_close_worth_less_than_its_bump_pays_at_most_what_is_at_stake() {
    let expiry = 130;
    // The spike lasts until three blocks after expiry.
    let market = Market { spike: expiry - CLOSE_MARGIN + 1, calm: expiry + 3 };
    let paid = 10_000;
    let mut h = H::open(Variant::Cltv, expiry, market, [true, true], paid);
    h.run_until(expiry + 12, |_| false);
    let close = h.request(PAYEE, Protects::SpilmanClose);
    assert_eq!(close.at_stake, Amount::from_sat(paid - PAYMENT_FEE));
    assert!(h.sides[PAYEE].capped > 0, "the schedule wanted more than was at stake");
    let coins = &h.sides[PAYEE].coins.iter().find(|(id, _)| *id == close.id()).expect("bumped").1;
    assert_eq!(coins.len(), 1, "one wallet coin, kept by every attempt after it was added");
    assert_eq!(h.sides[PAYEE].wallet.selections, 1, "coins were selected once");
    assert!(h.confirmed_at(|t| t.compute_txid() == close.id()).is_none(), "the close could not confirm");
    // The payer's refund, also capped at what it protects, confirms once the market calms (the
    // block takes the payer's candidates first; had the close won instead, its child would have
    // spent the whole payee output on fees: the payee gains nothing either way).
    let funding = h.funding();
    let (refund, at) = h.confirmed_at(|t| t.input.iter().any(|i| i.previous_output == funding)).unwrap();
    assert_eq!(at, expiry + 3);
    assert!(fee_of(&h.chain, &refund) <= paid);
    assert_eq!(h.gained(PAYEE), 0, "the payee keeps its wallet coin, and loses the payment");
    assert_eq!(h.gained(PAYER), (CAPACITY - fee_of(&h.chain, &refund)) as i64);
    // Six blocks after the refund resolved the close, the bumper gives the coin back.
    assert!(h.sides[PAYEE].wallet.reserved().is_empty(), "the coin is released");
}

/// A payee that revealed a preimage the payer has not folded in must get its close confirmed
/// early enough for the claim to confirm by the HTLC's expiry: the close's deadline leaves the
/// claim half the close margin, and the HTLC counts in what the close protects.
#[test]
fn a_revealed_htlc_brings_the_close_deadline_forward() {
    let expiry = 300;
    let market = Market { spike: 1_000, calm: u32::MAX };
    let mut h = H::open(Variant::PresignedRefund, expiry, market, [true, true], 100_000);
    let preimage = PaymentPreimage([5; 32]);
    let tip = ChainTip::at(h.chain.height);
    let (id, fx) = h
        .payer
        .add_htlc(Amount::from_sat(30_000), preimage.hash(), BlockHeight(160), &h.sides[PAYER].signer, tip)
        .unwrap();
    h.deliver(PAYER, fx);
    // The payer never hears of the preimage (it never folds the HTLC in).
    let fx = h.payee.fulfill_htlc(id, preimage, &h.sides[PAYEE].signer).unwrap();
    let _ = h.absorb(PAYEE, fx);
    assert_eq!(h.payee.close_deadline(), BlockHeight(160 - CLOSE_MARGIN / 2));
    h.run_until(200, |h| h.payee.is_closed());
    let close = h.request(PAYEE, Protects::SpilmanClose);
    assert_eq!(close.deadline, BlockHeight(160 - CLOSE_MARGIN / 2));
    assert_eq!(close.at_stake, Amount::from_sat(100_000 - PAYMENT_FEE + 30_000));
    let (_, at) = h.confirmed_at(|t| t.compute_txid() == close.id()).expect("the close confirmed");
    assert!(at <= 160 - CLOSE_MARGIN / 2);
    let claim = h.request(PAYEE, Protects::HtlcClaim);
    assert_eq!(claim.deadline, BlockHeight(160));
    h.run_until(200, |h| h.sides[PAYEE].bumper.as_ref().unwrap().pending().count() == 0);
    let (_, at) = h
        .confirmed_at(|t| {
            t.input[0].previous_output.txid == close.id()
                && t.input.len() == 1
                && t.output[0].value < Amount::from_sat(30_000)
        })
        .expect("claimed");
    assert!(at <= 160);
}
