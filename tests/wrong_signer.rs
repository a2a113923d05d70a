//! A signer that is not the channel's (the same wallet's keys for another channel, a classic
//! embedder mix-up) is refused by every call that signs, in every layer: a typed `WrongSigner`
//! error (or, for calls that return plain effects, an effect carrying only a `WrongSigner` event),
//! the channel's snapshot byte-identical, nothing persisted, sent or broadcast. Before the check,
//! each of these calls signed with the wrong key, advanced and persisted the state and sent or
//! broadcast what the peer and the chain refuse: a payer stuck ahead of its payee, closes and
//! refunds that never confirm, a Lightning peer that force closes on a bad `commitment_signed`.
//!
//! Each test then makes the same call with the channel's own signer and checks the amounts the
//! honest party could broadcast, to the satoshi.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use common::{duplex as dx, ln, verify_spend};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::{InMemorySigner, KeyId, Signer, WrongSigner};
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{Action, ChainEvent, ChainTip};
use paychan::{duplex, lightning, spilman};

/// The error every test expects: the funding key is the first one compared, and it differs.
const WRONG: WrongSigner = WrongSigner { key: KeyId::Funding };

/// The keys the same wallet seed gives another channel: the embedder's likely mix-up.
fn another_channels_signer(seed: [u8; 32], channel_index: u64) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(seed), channel_index + 1))
}

// ====================================================================================== Spilman

const START: u32 = 100;
const EXPIRY: u32 = 1_000;
const CAPACITY: u64 = 1_000_000;
const FEE: u64 = 500;
const FIRST: u64 = 10_000;
const PAYER_SEED: [u8; 32] = [1; 32];
const PAYEE_SEED: [u8; 32] = [2; 32];

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn spilman_wire(m: &spilman::Msg) -> spilman::Msg {
    spilman::Msg::decode(&m.encode()).expect("own encoding decodes")
}

/// A Spilman payer and payee, the payer's first payment accepted and the funding confirmed.
struct Sp {
    payer: spilman::Payer,
    payee: spilman::Payee,
    ps: InMemorySigner,
    qs: InMemorySigner,
    funding: Transaction,
    tip: ChainTip,
    /// The payer's messages not delivered yet (after `funded`).
    refund_request: Option<spilman::Msg>,
}

impl Sp {
    /// The payer has funded; its first message is kept in `refund_request` (pre-signed) or
    /// delivered (CLTV, then the channel is open and confirmed).
    fn funded(variant: spilman::Variant) -> Sp {
        let ps = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(PAYER_SEED), 0));
        let qs = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(PAYEE_SEED), 0));
        let tip = ChainTip::at(START);
        let config = spilman::PayeeConfig {
            variant,
            payee_script: p2wpkh(2),
            expiry: BlockHeight(EXPIRY),
            min_first_payment: Amount::from_sat(FIRST),
            dust_limit: Amount::from_sat(546),
            payment_fee: Amount::from_sat(FEE),
            close_margin: 6,
            htlc_min_blocks: 12,
            min_depth: 1,
            claim_fee: Amount::from_sat(300),
        };
        let (payee, fx) = spilman::Payee::new(config, &qs);
        let Some(spilman::Msg::Offer(offer)) = fx.send.first().map(spilman_wire) else { panic!("offer") };
        let payer_config = spilman::PayerConfig {
            capacity: Amount::from_sat(CAPACITY),
            payer_script: p2wpkh(1),
            refund_fee: Amount::from_sat(FEE),
            claim_fee: Amount::from_sat(300),
            first_payment: Amount::from_sat(FIRST),
            max_lifetime: 10_000,
        };
        let mut payer = spilman::Payer::new(offer, payer_config, &ps, tip).expect("offer acceptable");
        let funding = Transaction {
            version: Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0x30u8; 71].as_slice(), [0x02u8; 33].as_slice()]),
            }],
            output: vec![
                TxOut { value: Amount::from_sat(5_000_000), script_pubkey: p2wpkh(1) },
                payer.funding_output(),
            ],
        };
        let fx = payer.fund(funding.clone(), &ps).expect("funding accepted");
        let mut sp = Sp { payer, payee, ps, qs, funding, tip, refund_request: None };
        match variant {
            spilman::Variant::PresignedRefund => sp.refund_request = fx.send.first().map(spilman_wire),
            spilman::Variant::Cltv => sp.confirm_open(fx),
        }
        sp
    }

    fn open() -> Sp {
        Sp::funded(spilman::Variant::Cltv)
    }

    /// Delivers the payer's `Open` (in `fx`) and confirms the funding on both sides.
    fn confirm_open(&mut self, fx: spilman::Effects) {
        self.deliver_from_payer(fx);
        let (tx, height) = (self.funding.clone(), BlockHeight(START));
        let _ = self.payee.handle_chain(ChainEvent::Confirmed { tx: &tx, height }, &self.qs);
        let _ = self.payer.handle_chain(ChainEvent::Confirmed { tx: &tx, height }, &self.ps);
        assert_eq!(self.payer.acknowledged(), 1);
    }

    fn deliver_from_payer(&mut self, fx: spilman::Effects) {
        for m in fx.send {
            let out = self.payee.handle_message(spilman_wire(&m), &self.qs, self.tip).expect("payee accepts");
            self.deliver_from_payee(out);
        }
    }

    fn deliver_from_payee(&mut self, fx: spilman::Effects) {
        for m in fx.send {
            let out = self.payer.handle_message(spilman_wire(&m), &self.ps, self.tip).expect("payer accepts");
            self.deliver_from_payer(out);
        }
    }

    fn channel_output(&self) -> TxOut {
        self.payer.funding_output()
    }

    /// The payee's closing transaction: valid for Bitcoin Core's interpreter, paying the payee
    /// `to_payee - fee` and the payer the rest, exactly.
    fn assert_close_pays(&self, to_payee: u64) {
        let tx = self.payee.closing_tx(&self.qs).expect("a payment to close with");
        verify_spend(&tx, &[self.channel_output()]).expect("the close is valid");
        let paid = |spk: &ScriptBuf| {
            tx.output.iter().filter(|o| o.script_pubkey == *spk).map(|o| o.value.to_sat()).sum::<u64>()
        };
        assert_eq!(paid(&p2wpkh(2)), to_payee - FEE);
        assert_eq!(paid(&p2wpkh(1)), CAPACITY - to_payee);
    }
}

fn payer_wrong() -> InMemorySigner {
    another_channels_signer(PAYER_SEED, 0)
}

fn payee_wrong() -> InMemorySigner {
    another_channels_signer(PAYEE_SEED, 0)
}

#[test]
fn spilman_payer_pay_with_another_channels_signer_is_refused() {
    let mut sp = Sp::open();
    let before = sp.payer.snapshot();
    let err = sp.payer.pay(Amount::from_sat(5_000), &payer_wrong()).unwrap_err();
    assert_eq!(err, spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(sp.payer.snapshot(), before, "nothing signed, persisted or sent");
    assert_eq!(sp.payer.payment_number(), 1);

    let fx = sp.payer.pay(Amount::from_sat(5_000), &sp.ps).expect("the channel's signer pays");
    sp.deliver_from_payer(fx);
    assert_eq!(sp.payer.acknowledged(), 2);
    assert_eq!(sp.payee.received(), Amount::from_sat(FIRST + 5_000));
    sp.assert_close_pays(FIRST + 5_000);
}

#[test]
fn spilman_payer_add_htlc_with_another_channels_signer_is_refused() {
    let mut sp = Sp::open();
    let hash = PaymentPreimage([7; 32]).hash();
    let before = sp.payer.snapshot();
    let err = sp.payer.add_htlc(Amount::from_sat(3_000), hash, BlockHeight(500), &payer_wrong(), sp.tip).unwrap_err();
    assert_eq!(err, spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(sp.payer.snapshot(), before);

    let (id, fx) = sp.payer.add_htlc(Amount::from_sat(3_000), hash, BlockHeight(500), &sp.ps, sp.tip).unwrap();
    assert_eq!(id, 0, "the refused attempt used no HTLC id");
    sp.deliver_from_payer(fx);
    let state = sp.payee.state().expect("payment held").clone();
    assert_eq!((state.to_payee, state.htlcs.len()), (Amount::from_sat(FIRST), 1));
    assert_eq!(state.htlcs[0].amount, Amount::from_sat(3_000));
}

#[test]
fn spilman_payer_timeout_htlc_with_another_channels_signer_is_refused() {
    let mut sp = Sp::open();
    let hash = PaymentPreimage([7; 32]).hash();
    let (id, fx) = sp.payer.add_htlc(Amount::from_sat(3_000), hash, BlockHeight(500), &sp.ps, sp.tip).unwrap();
    sp.deliver_from_payer(fx);
    let late = ChainTip::at(500);
    let before = sp.payer.snapshot();
    let err = sp.payer.timeout_htlc(id, &payer_wrong(), late).unwrap_err();
    assert_eq!(err, spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(sp.payer.snapshot(), before);

    let fx = sp.payer.timeout_htlc(id, &sp.ps, late).expect("the channel's signer times it out");
    sp.tip = late;
    sp.deliver_from_payer(fx);
    assert!(sp.payee.state().expect("held").htlcs.is_empty());
    sp.assert_close_pays(FIRST);
}

#[test]
fn spilman_payer_fund_with_another_channels_signer_is_refused() {
    // Before the funding, only the offer is known: build a fresh payer and fund it wrongly.
    let sp = Sp::open();
    let offer = sp.payee.offer();
    let config = spilman::PayerConfig {
        capacity: Amount::from_sat(CAPACITY),
        payer_script: p2wpkh(1),
        refund_fee: Amount::from_sat(FEE),
        claim_fee: Amount::from_sat(300),
        first_payment: Amount::from_sat(FIRST),
        max_lifetime: 10_000,
    };
    let mut payer = spilman::Payer::new(offer, config, &sp.ps, sp.tip).unwrap();
    let before = payer.snapshot();
    let err = payer.fund(sp.funding.clone(), &payer_wrong()).unwrap_err();
    assert_eq!(err, spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(payer.snapshot(), before, "no first payment signed, nothing to broadcast");

    let fx = payer.fund(sp.funding.clone(), &sp.ps).expect("the channel's signer funds");
    assert_eq!(fx.broadcast, vec![sp.funding.clone()]);
    let Some(spilman::Msg::Open(open)) = fx.send.first() else { panic!("open") };
    assert_eq!(open.first_payment.to_payee, Amount::from_sat(FIRST));
}

#[test]
fn spilman_payer_refund_tx_with_another_channels_signer_is_refused() {
    let sp = Sp::open();
    assert_eq!(sp.payer.refund_tx(&payer_wrong()).unwrap_err(), spilman::CommandError::WrongSigner(WRONG));
    let refund = sp.payer.refund_tx(&sp.ps).expect("the channel's signer refunds");
    verify_spend(&refund, &[sp.channel_output()]).expect("the refund is valid");
    assert_eq!(refund.output[0].value.to_sat(), CAPACITY - FEE);
}

#[test]
fn spilman_payer_handle_message_with_another_channels_signer_is_ignored_not_blamed() {
    // Pre-signed variant: the payer's answer to the payee's refund signature signs its first
    // payment (the `Open`).
    let mut sp = Sp::funded(spilman::Variant::PresignedRefund);
    let request = sp.refund_request.clone().expect("refund request");
    let signed = sp.payee.handle_message(request, &sp.qs, sp.tip).unwrap().send.remove(0);
    let before = sp.payer.snapshot();
    let err = sp.payer.handle_message(signed.clone(), &payer_wrong(), sp.tip).unwrap_err();
    assert_eq!(err.kind, spilman::Misbehaviour::WrongSigner(WRONG));
    assert_eq!(err.action, Action::Ignore, "the payee did nothing wrong");
    assert_eq!(sp.payer.snapshot(), before);

    let fx = sp.payer.handle_message(signed, &sp.ps, sp.tip).expect("the channel's signer takes it");
    assert_eq!(fx.broadcast, vec![sp.funding.clone()], "the funding goes out only now");
    sp.confirm_open(fx);
    sp.assert_close_pays(FIRST);
    let refund = sp.payer.refund_tx(&sp.ps).unwrap();
    verify_spend(&refund, &[sp.channel_output()]).expect("the 2-of-2 refund is valid");
}

#[test]
fn spilman_payer_handle_chain_with_another_channels_signer_changes_nothing() {
    // At the refund height the payer broadcasts its refund by itself.
    let mut sp = Sp::open();
    let tip = ChainEvent::Tip(ChainTip::at(EXPIRY));
    let before = sp.payer.snapshot();
    let fx = sp.payer.handle_chain(tip, &payer_wrong());
    assert!(fx.update.is_none() && fx.send.is_empty() && fx.broadcast.is_empty() && fx.watch.is_empty());
    assert_eq!(fx.events, vec![spilman::Event::WrongSigner(WRONG)]);
    assert_eq!(sp.payer.snapshot(), before);

    let fx = sp.payer.handle_chain(tip, &sp.ps);
    assert_eq!(fx.broadcast.len(), 1, "the refund");
    verify_spend(&fx.broadcast[0], &[sp.channel_output()]).expect("the refund is valid");
    assert_eq!(fx.broadcast[0].output[0].value.to_sat(), CAPACITY - FEE);
}

#[test]
fn spilman_payee_close_with_another_channels_signer_is_refused() {
    let mut sp = Sp::open();
    let fx = sp.payer.pay(Amount::from_sat(20_000), &sp.ps).unwrap();
    sp.deliver_from_payer(fx);
    let before = sp.payee.snapshot();
    assert_eq!(sp.payee.close(&payee_wrong()).unwrap_err(), spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(sp.payee.closing_tx(&payee_wrong()).unwrap_err(), spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(sp.payee.snapshot(), before, "no closing txid recorded, nothing broadcast");
    assert!(!sp.payee.is_closed());

    let fx = sp.payee.close(&sp.qs).expect("the channel's signer closes");
    assert_eq!(fx.broadcast.len(), 1);
    verify_spend(&fx.broadcast[0], &[sp.channel_output()]).expect("the close is valid");
    sp.assert_close_pays(FIRST + 20_000);
}

#[test]
fn spilman_payee_handle_message_with_another_channels_signer_is_ignored_not_blamed() {
    // Pre-signed variant: the payee answers the refund request with its signature.
    let mut sp = Sp::funded(spilman::Variant::PresignedRefund);
    let request = sp.refund_request.clone().expect("refund request");
    let before = sp.payee.snapshot();
    let err = sp.payee.handle_message(request.clone(), &payee_wrong(), sp.tip).unwrap_err();
    assert_eq!(err.kind, spilman::Misbehaviour::WrongSigner(WRONG));
    assert_eq!(err.action, Action::Ignore, "the payer did nothing wrong");
    assert_eq!(sp.payee.snapshot(), before);

    let fx = sp.payee.handle_message(request, &sp.qs, sp.tip).expect("the channel's signer signs the refund");
    sp.deliver_from_payee(fx);
    let refund = sp.payer.refund_tx(&sp.ps).expect("the payer holds a valid refund");
    verify_spend(&refund, &[sp.channel_output()]).expect("the 2-of-2 refund is valid");
    assert_eq!(refund.output[0].value.to_sat(), CAPACITY - FEE);
}

#[test]
fn spilman_payee_handle_chain_with_another_channels_signer_changes_nothing() {
    // At `close_by` the payee closes by itself with its best payment.
    let mut sp = Sp::open();
    let fx = sp.payer.pay(Amount::from_sat(20_000), &sp.ps).unwrap();
    sp.deliver_from_payer(fx);
    let tip = ChainEvent::Tip(ChainTip { height: sp.payee.close_by() });
    let before = sp.payee.snapshot();
    let fx = sp.payee.handle_chain(tip, &payee_wrong());
    assert!(fx.update.is_none() && fx.send.is_empty() && fx.broadcast.is_empty());
    assert_eq!(fx.events, vec![spilman::Event::WrongSigner(WRONG)]);
    assert_eq!(fx.next_deadline, Some(sp.payee.close_by()), "the deadline still stands");
    assert_eq!(sp.payee.snapshot(), before);

    let fx = sp.payee.handle_chain(tip, &sp.qs);
    assert_eq!(fx.broadcast.len(), 1, "the close");
    verify_spend(&fx.broadcast[0], &[sp.channel_output()]).expect("the close is valid");
    sp.assert_close_pays(FIRST + 20_000);
}

// ====================================================================================== duplex

fn duplex_pair() -> dx::Pair {
    let mut p = dx::Pair::open(dx::terms(vec![3, 3]));
    p.pay(duplex::Role::Initiator, 10_000);
    p
}

/// The initiator's keys for another channel (the harness seeds signers with index 7).
fn duplex_wrong() -> InMemorySigner {
    another_channels_signer([0xa0; 32], 7)
}

fn assert_duplex_refused(p: &dx::Pair, before: &[u8], err: duplex::CommandError) {
    assert_eq!(err, duplex::CommandError::WrongSigner(WRONG));
    assert_eq!(p.a().snapshot(), before);
}

#[test]
fn duplex_pay_with_another_channels_signer_is_refused() {
    let mut p = duplex_pair();
    let start = p.a().balances();
    let before = p.a().snapshot();
    let err = p.parties[0].ch.pay(Amount::from_sat(7_000), &duplex_wrong()).unwrap_err();
    assert_duplex_refused(&p, &before, err);

    p.pay(duplex::Role::Initiator, 7_000);
    p.assert_views_agree();
    let now = p.a().balances();
    assert_eq!(now.holder, start.holder - Amount::from_sat(7_000));
    assert_eq!(now.counterparty, start.counterparty + Amount::from_sat(7_000));
}

#[test]
fn duplex_add_htlc_with_another_channels_signer_is_refused() {
    let mut p = duplex_pair();
    let tip = p.tip();
    let hash = PaymentPreimage([5; 32]).hash();
    let expiry = BlockHeight(tip.height.0 + 200);
    let before = p.a().snapshot();
    let err = p.parties[0].ch.add_htlc(Amount::from_sat(4_000), hash, expiry, &duplex_wrong(), tip).unwrap_err();
    assert_duplex_refused(&p, &before, err);

    let id = p.add_htlc(duplex::Role::Initiator, 4_000, PaymentPreimage([5; 32]), 200);
    assert_eq!(id, 0);
    assert_eq!(p.b().balances().received, Amount::from_sat(4_000));
    p.assert_views_agree();
}

#[test]
fn duplex_fulfill_htlc_with_another_channels_signer_is_refused() {
    let mut p = duplex_pair();
    p.pay(duplex::Role::Acceptor, 10_000);
    let pre = PaymentPreimage([5; 32]);
    let id = p.add_htlc(duplex::Role::Acceptor, 4_000, pre, 200);
    let before = p.a().snapshot();
    let err = p.parties[0].ch.fulfill_htlc(id, pre, &duplex_wrong()).unwrap_err();
    assert_duplex_refused(&p, &before, err);

    let start = p.a().balances();
    p.fulfill(duplex::Role::Initiator, id, pre);
    p.assert_views_agree();
    assert_eq!(p.a().balances().holder, start.holder + Amount::from_sat(4_000));
}

#[test]
fn duplex_reset_with_another_channels_signer_is_refused() {
    let mut p = duplex_pair();
    let (tip, digits) = (p.tip(), p.a().digits().to_vec());
    let before = p.a().snapshot();
    let err = p.parties[0].ch.reset(&duplex_wrong(), tip).unwrap_err();
    assert_duplex_refused(&p, &before, err);
    assert_eq!(p.a().digits(), digits.as_slice(), "no counter value used");

    let start = p.a().balances();
    p.reset(duplex::Role::Initiator);
    p.assert_views_agree();
    let now = p.a().balances();
    assert_eq!((now.holder, now.counterparty), (start.holder, start.counterparty), "a reset moves no money");
}

#[test]
fn duplex_close_with_another_channels_signer_is_refused() {
    let mut p = duplex_pair();
    let before = p.a().snapshot();
    let err = p.parties[0].ch.close(&duplex_wrong()).unwrap_err();
    assert_duplex_refused(&p, &before, err);

    let balances = p.a().balances();
    let fx = p.parties[0].ch.close(&p.parties[0].signer).expect("the channel's signer proposes");
    p.absorb(duplex::Role::Initiator, fx);
    p.run();
    let close = p.parties[1].pending.first().or(p.parties[0].pending.first()).expect("close broadcast").clone();
    verify_spend(&close, &[p.funding.output[1].clone()]).expect("the cooperative close is valid");
    let paid = |role| {
        let spk = dx::payout(role);
        close.output.iter().filter(|o| o.script_pubkey == spk).map(|o| o.value).sum::<Amount>()
    };
    assert_eq!(paid(duplex::Role::Initiator), balances.holder, "each side gets its balance exactly");
    assert_eq!(paid(duplex::Role::Acceptor), balances.counterparty);
}

#[test]
fn duplex_force_close_with_another_channels_signer_changes_nothing() {
    let mut p = duplex_pair();
    let before = p.a().snapshot();
    let fx = p.parties[0].ch.force_close(&duplex_wrong());
    assert!(fx.update.is_none() && fx.send.is_empty() && fx.broadcast.is_empty());
    assert_eq!(fx.events, vec![duplex::Event::WrongSigner(WRONG)]);
    assert_eq!(p.a().snapshot(), before);
    assert_eq!(p.a().phase(), duplex::Phase::Open);

    let fx = p.parties[0].ch.force_close(&p.parties[0].signer);
    assert_eq!(fx.broadcast.len(), 1, "the kickoff");
    let branch = p.a().signed_branch(&p.parties[0].signer).expect("signed branch");
    assert_eq!(fx.broadcast[0], branch[0]);
    verify_spend(&branch[0], &[p.funding.output[1].clone()]).expect("the kickoff is valid");
    assert_eq!(p.a().signed_branch(&duplex_wrong()).unwrap_err(), duplex::CommandError::WrongSigner(WRONG));
}

#[test]
fn duplex_handle_message_with_another_channels_signer_is_ignored_not_blamed() {
    // The acceptor answers a reset proposal by signing the new branch.
    let mut p = duplex_pair();
    let tip = p.tip();
    let fx = p.parties[0].ch.reset(&p.parties[0].signer, tip).unwrap();
    let propose = fx.send[0].clone();
    p.absorb(duplex::Role::Initiator, fx);
    p.queue.clear();
    let wrong_b = another_channels_signer([0xb0; 32], 7);
    let before = p.b().snapshot();
    let err = p.parties[1].ch.handle_message(propose.clone(), &wrong_b, tip).unwrap_err();
    assert_eq!(err.kind, duplex::Misbehaviour::WrongSigner(WRONG));
    assert_eq!(err.action, Action::Ignore, "the initiator did nothing wrong");
    assert_eq!(p.b().snapshot(), before);

    let start = p.b().balances();
    let fx = p.parties[1].ch.handle_message(propose, &p.parties[1].signer, tip).expect("the channel's signer");
    p.absorb(duplex::Role::Acceptor, fx);
    p.run();
    assert_eq!(p.a().digits(), p.b().digits(), "the reset completed");
    let now = p.b().balances();
    assert_eq!((now.holder, now.counterparty), (start.holder, start.counterparty));
}

#[test]
fn duplex_handle_chain_with_another_channels_signer_changes_nothing() {
    // After a force close, each new tip publishes the next tree transaction.
    let mut p = duplex_pair();
    let fx = p.parties[0].ch.force_close(&p.parties[0].signer);
    p.absorb(duplex::Role::Initiator, fx);
    p.mine();
    let tip = ChainEvent::Tip(ChainTip::at(p.chain.height + 20));
    let before = p.a().snapshot();
    let fx = p.parties[0].ch.handle_chain(tip, &duplex_wrong());
    assert!(fx.update.is_none() && fx.send.is_empty() && fx.broadcast.is_empty());
    assert_eq!(fx.events, vec![duplex::Event::WrongSigner(WRONG)]);
    assert_eq!(fx.next_deadline, p.a().next_deadline());
    assert_eq!(p.a().snapshot(), before);

    let fx = p.parties[0].ch.handle_chain(tip, &p.parties[0].signer);
    let branch = p.a().signed_branch(&p.parties[0].signer).unwrap();
    assert_eq!(fx.broadcast.first(), branch.get(1), "the first node, signed by the channel's key");
}

// ==================================================================================== Lightning

fn ln_pair() -> ln::Pair {
    let mut p = ln::Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 200_000_000);
    let (id, fx) =
        p.a.ch.add_htlc(MilliSats::from_msat(30_000_000), PaymentPreimage([3; 32]).hash(), 2_000, ln::onion()).unwrap();
    assert_eq!(id, 0);
    p.a.absorb(fx, &mut p.to_b);
    p.run();
    p
}

/// a's keys for another channel (the harness seeds signers with index 0).
fn ln_wrong() -> InMemorySigner {
    another_channels_signer([0xa0; 32], 0)
}

/// Both sides' latest commitments, checked by Bitcoin Core's interpreter, and their balances.
fn assert_ln_settled(p: &ln::Pair, a_msat: u64, htlc_msat: u64) {
    p.verify_commitments();
    let b = p.a.ch.balances(lightning::Side::Holder);
    assert_eq!((b.holder.to_msat(), b.offered.to_msat()), (a_msat, htlc_msat));
    let b = p.b.ch.balances(lightning::Side::Holder);
    assert_eq!((b.holder.to_msat(), b.received.to_msat()), (1_000_000_000 - a_msat - htlc_msat, htlc_msat));
}

#[test]
fn lightning_commit_with_another_channels_signer_is_refused() {
    let mut p = ln_pair();
    let before = p.a.ch.snapshot();
    assert_eq!(p.a.ch.commit(&ln_wrong()).unwrap_err(), lightning::CommandError::WrongSigner(WRONG));
    assert_eq!(p.a.ch.snapshot(), before, "no commitment_signed sent, not awaiting a revocation");
    assert!(!p.a.ch.is_awaiting_revoke());

    p.settle();
    assert_ln_settled(&p, 770_000_000, 30_000_000);
}

#[test]
fn lightning_handle_message_with_another_channels_signer_is_ignored_not_blamed() {
    // b's answer to a's `commitment_signed` is its `revoke_and_ack` (and its own commitment).
    let mut p = ln_pair();
    let fx = p.a.ch.commit(&p.a.signer).unwrap();
    p.a.absorb(fx, &mut p.to_b);
    let msg = p.to_b.pop_front().expect("commitment_signed");
    let wrong_b = another_channels_signer([0xb0; 32], 0);
    let tip = ChainTip::at(p.tip);
    let before = p.b.ch.snapshot();
    let err = p.b.ch.handle_message(msg.clone(), &wrong_b, tip).unwrap_err();
    assert_eq!(err.kind, lightning::Misbehaviour::WrongSigner(WRONG));
    assert_eq!(err.action, Action::Ignore, "a did nothing wrong: no force close");
    assert_eq!(p.b.ch.snapshot(), before);

    // The connection stays usable: the same message with the channel's signer goes through.
    let fx = p.b.ch.handle_message(msg, &p.b.signer, tip).expect("the channel's signer takes it");
    p.b.absorb(fx, &mut p.to_a);
    p.settle();
    assert_ln_settled(&p, 770_000_000, 30_000_000);
}

#[test]
fn lightning_force_close_with_another_channels_signer_is_refused() {
    let mut p = ln_pair();
    p.settle();
    let before = p.a.ch.snapshot();
    assert_eq!(p.a.ch.force_close(&ln_wrong()).unwrap_err(), lightning::CommandError::WrongSigner(WRONG));
    assert_eq!(p.a.ch.holder_commitment_tx(&ln_wrong()).unwrap_err(), lightning::CommandError::WrongSigner(WRONG));
    assert_eq!(p.a.ch.snapshot(), before);
    assert!(!p.a.ch.is_off_chain_over());

    let fx = p.a.ch.force_close(&p.a.signer).expect("the channel's signer");
    assert_eq!(fx.broadcast.len(), 1);
    verify_spend(&fx.broadcast[0], &[p.funding_output()]).expect("the commitment is valid");
    assert_ln_settled(&p, 770_000_000, 30_000_000);
}

#[test]
fn lightning_shutdown_with_another_channels_signer_is_refused() {
    let mut p = ln::Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 200_000_000);
    let range = (Amount::from_sat(200), Amount::from_sat(5_000));
    let before = p.a.ch.snapshot();
    let err = p.a.ch.shutdown(ln::p2wpkh_script(), range, &ln_wrong()).unwrap_err();
    assert_eq!(err, lightning::CommandError::WrongSigner(WRONG));
    assert_eq!(p.a.ch.snapshot(), before);

    let fx = p.a.ch.shutdown(ln::p2wpkh_script(), range, &p.a.signer).expect("the channel's signer");
    p.a.absorb(fx, &mut p.to_b);
    let fx = p.b.ch.shutdown(ln::p2wpkh_script(), range, &p.b.signer).expect("b answers");
    p.b.absorb(fx, &mut p.to_a);
    let broadcast = p.run();
    let close = p.a.ch.closing_transaction().expect("agreed").clone();
    assert!(broadcast.contains(&close));
    verify_spend(&close, &[p.funding_output()]).expect("the closing transaction is valid");
    let to_b: u64 = close.output.iter().filter(|o| o.value.to_sat() == 200_000).count() as u64;
    assert_eq!(to_b, 1, "b gets its 200,000 sat exactly (the funder pays the fee)");
}

#[test]
fn lightning_reestablish_with_another_channels_signer_is_refused() {
    let mut p = ln_pair();
    p.settle();
    assert_eq!(p.a.ch.reestablish(&ln_wrong()).unwrap_err(), lightning::CommandError::WrongSigner(WRONG));
    p.reconnect();
    p.run();
    assert_ln_settled(&p, 770_000_000, 30_000_000);
}

#[test]
fn lightning_handle_chain_with_another_channels_signer_changes_nothing() {
    // b broadcasts its commitment; a's channel claims its outputs when it sees it.
    let mut p = ln_pair();
    p.settle();
    let theirs = p.b.ch.holder_commitment_tx(&p.b.signer).unwrap();
    let seen = ChainEvent::Confirmed { tx: &theirs, height: BlockHeight(p.tip + 1) };
    let before = p.a.ch.snapshot();
    let fx = p.a.ch.handle_chain(seen, &ln_wrong());
    assert!(fx.update.is_none() && fx.send.is_empty() && fx.broadcast.is_empty() && fx.watch.is_empty());
    assert_eq!(fx.events, vec![lightning::Event::WrongSigner(WRONG)]);
    assert_eq!(p.a.ch.snapshot(), before);
    assert!(p.a.ch.closing_kind().is_none(), "the close is not recorded without the claims");

    let fx = p.a.ch.handle_chain(seen, &p.a.signer);
    assert!(fx.update.is_some());
    assert!(p.a.ch.closing_kind().is_some());
    // a funds the channel, so a's output on b's commitment is its balance less the commitment
    // fee (one HTLC) and both anchors.
    let ty = ChannelType::AnchorsZeroFeeHtlc;
    let a_out = 770_000 - 2_500 * ty.commitment_weight(1) / 1_000 - 2 * ty.anchor_value().to_sat();
    let to_remote: Vec<_> = theirs.output.iter().filter(|o| o.value.to_sat() == a_out).collect();
    assert_eq!(to_remote.len(), 1, "a's output on b's commitment, to the satoshi");
}

// ===================================================================================== multihop

#[test]
fn multihop_adapter_offer_with_another_channels_signer_is_refused_before_any_change() {
    use paychan::multihop::{HtlcChannel, HtlcError};
    // Lightning's `add_htlc` takes no signer; the adapter signs right after it. A wrong signer
    // must be refused before the HTLC is added, not leave it unsigned in the channel.
    let mut p = ln::Pair::open(ChannelType::AnchorsZeroFeeHtlc, 1_000_000, 200_000_000);
    let hash = PaymentPreimage([3; 32]).hash();
    let tip = ChainTip::at(p.tip);
    let before = p.a.ch.snapshot();
    let err = HtlcChannel::offer_htlc(
        &mut p.a.ch,
        MilliSats::from_msat(30_000_000),
        hash,
        BlockHeight(2_000),
        &ln_wrong(),
        tip,
    )
    .unwrap_err();
    assert_eq!(err, HtlcError::WrongSigner(WRONG));
    assert_eq!(p.a.ch.snapshot(), before);
    assert!(p.a.ch.htlcs().is_empty());

    let signer = p.a.signer.clone();
    let (id, fx) =
        HtlcChannel::offer_htlc(&mut p.a.ch, MilliSats::from_msat(30_000_000), hash, BlockHeight(2_000), &signer, tip)
            .unwrap();
    assert_eq!(id, 0);
    p.a.absorb(fx, &mut p.to_b);
    p.settle();
    assert_ln_settled(&p, 770_000_000, 30_000_000);
}

#[test]
fn signer_check_compares_recorded_keys_only() {
    let right = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes(PAYER_SEED), 0));
    let keys = *right.pubkeys();
    let recorded = [(KeyId::Funding, keys.funding.public_key()), (KeyId::Htlc, keys.htlc_basepoint.public_key())];
    assert_eq!(paychan::core::sign::check_signer(&right, &recorded), Ok(()));
    assert_eq!(paychan::core::sign::check_signer(&payer_wrong(), &recorded), Err(WRONG));
    assert_eq!(paychan::core::sign::check_signer_pubkeys(&right, &keys), Ok(()));
    // The funding key matches, the other four do not: the first of them is named.
    let mut other = *payer_wrong().pubkeys();
    other.funding = keys.funding;
    assert_eq!(
        paychan::core::sign::check_signer_pubkeys(&right, &other),
        Err(WrongSigner { key: KeyId::RevocationBase })
    );
}

#[test]
fn multihop_forwarder_with_another_channels_signer_refuses_without_failing_upstream() {
    use common::route::{Final, Route};
    use paychan::multihop::ForwardEvent;
    // B forwards A's Spilman HTLC onto its duplex channel. With the duplex channel's signer
    // mixed up, B must neither accept the incoming HTLC (it could not forward it) nor fail it
    // upstream (A did nothing wrong): refuse, change nothing, and let the embedder retry.
    let mut r = Route::open(Final::Fulfill);
    let plan = r.plan(6, 0);
    r.install(&plan);
    let start = r.positions();
    r.send(&plan);
    let msg = r.to_b_in.front().cloned().expect("A's HTLC payment");
    let wrong_out = another_channels_signer([0xa0; 32], 7);
    let wrong_in = another_channels_signer([0x1b; 32], 0);
    let snapshots = |r: &Route| (r.b.snapshot(), r.b.incoming().snapshot(), r.b.outgoing().snapshot());
    let before = snapshots(&r);
    let err = r.b.handle_incoming_message(msg, &r.sb_in, &wrong_out, r.tip()).unwrap_err();
    assert_eq!(err.kind, spilman::Misbehaviour::WrongSigner(WRONG));
    assert_eq!(err.action, Action::Ignore);
    assert_eq!(snapshots(&r), before);

    let nfx = r.b.handle_chain(ChainEvent::Tip(r.tip()), &wrong_in, &r.sb_out);
    assert!(nfx.incoming.is_empty() && nfx.outgoing.is_empty() && nfx.state.is_none());
    assert_eq!(nfx.events, vec![ForwardEvent::WrongSigner { incoming: true, error: WRONG }]);
    assert_eq!(snapshots(&r), before);

    // The same message with the right signers: the payment goes through, each hop paid exactly.
    r.run();
    assert!(r.sender_has_preimage());
    let now = r.positions();
    let (ab, bc, cd) =
        (plan.ab.amount.to_msat() as i128, plan.bc.amount.to_msat() as i128, plan.cd.amount.to_msat() as i128);
    let gains: Vec<i128> = now.iter().zip(start).map(|(n, s)| n - s).collect();
    assert_eq!(gains, vec![-ab, ab - bc, bc - cd, cd]);
}

#[test]
fn lightning_funding_tx_with_another_channels_signer_is_refused() {
    use lightning::{Channel, Msg, OpenParams};
    let (sa, sb) = (
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0)),
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0)),
    );
    let tip = ChainTip::at(1_000);
    let config = ln::config(ChannelType::AnchorsZeroFeeHtlc);
    let params = OpenParams {
        config: config.clone(),
        temporary_channel_id: paychan::driving::ChannelId([7; 32]),
        funding: Amount::from_sat(1_000_000),
        push: MilliSats::from_msat(200_000_000),
        feerate_per_kw: 2_500,
    };
    let (mut a, fx) = Channel::open(params, &sa, tip).unwrap();
    let Msg::OpenChannel(open) = fx.send[0].clone() else { panic!("open_channel") };
    let (mut b, fx) = Channel::accept(&open, config, &sb, tip).unwrap();
    let fx = a.handle_message(fx.send[0].clone(), &sa, tip).unwrap();
    let Some(lightning::Event::FundingGenerationReady { script_pubkey, value }) = fx.events.first().cloned() else {
        panic!("funding requested")
    };
    let funding = common::wallet::unsigned_funding(
        OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 },
        vec![TxOut { value, script_pubkey }],
    );
    let before = a.snapshot();
    let err = a.funding_tx(funding.clone(), &ln_wrong()).unwrap_err();
    assert_eq!(err, lightning::CommandError::WrongSigner(WRONG));
    assert_eq!(a.snapshot(), before, "no funding_created with a signature b would refuse");

    let fx = a.funding_tx(funding.clone(), &sa).expect("the channel's signer");
    let fx = b.handle_message(fx.send[0].clone(), &sb, tip).expect("b takes funding_created");
    let fx = a.handle_message(fx.send[0].clone(), &sa, tip).expect("a takes funding_signed");
    assert_eq!(fx.broadcast, vec![funding.clone()], "the funding goes out once a holds b's signature");
    let commitment = a.holder_commitment_tx(&sa).unwrap();
    verify_spend(&commitment, &[funding.output[0].clone()]).expect("a's first commitment is valid");
    let ty = ChannelType::AnchorsZeroFeeHtlc;
    let a_out = 800_000 - 2_500 * ty.commitment_weight(0) / 1_000 - 2 * ty.anchor_value().to_sat();
    let mut values: Vec<u64> = commitment.output.iter().map(|o| o.value.to_sat()).collect();
    values.sort_unstable();
    assert_eq!(values, vec![330, 330, 200_000, a_out], "b's push and a's balance less fees, exactly");
}

#[test]
fn duplex_fund_with_another_channels_signer_is_refused() {
    use duplex::{Channel, Role};
    let (sa, sb) = (dx::signer(Role::Initiator), dx::signer(Role::Acceptor));
    let tip = ChainTip::at(500);
    let (mut a, fx) = Channel::open(dx::terms(vec![3, 3]), dx::payout(Role::Initiator), &sa, tip).unwrap();
    let duplex::Msg::Open(open) = fx.send[0].clone() else { panic!("open") };
    let (mut b, fx) = Channel::accept(open, dx::payout(Role::Acceptor), &sb, tip).unwrap();
    let _ = a.handle_message(fx.send[0].clone(), &sa, tip).expect("a takes accept");
    let funding = common::wallet::unsigned_funding(
        OutPoint { txid: Txid::from_byte_array([0x42; 32]), vout: 3 },
        vec![a.funding_output().expect("keys known")],
    );
    let before = a.snapshot();
    let err = a.fund(&funding, &duplex_wrong()).unwrap_err();
    assert_eq!(err, duplex::CommandError::WrongSigner(WRONG));
    assert_eq!(a.snapshot(), before, "no tree signatures b would refuse");

    let mut to_b = a.fund(&funding, &sa).expect("the channel's signer").send;
    let mut signable = false;
    while !to_b.is_empty() {
        let mut to_a = Vec::new();
        for m in to_b.drain(..) {
            to_a.extend(b.handle_message(m, &sb, tip).expect("b takes it").send);
        }
        for m in to_a {
            let fx = a.handle_message(m, &sa, tip).expect("a takes it");
            signable |= fx.events.iter().any(|e| matches!(e, duplex::Event::FundingSignable { .. }));
            to_b.extend(fx.send);
        }
    }
    assert!(signable, "a may sign the funding now");
    assert_eq!((a.phase(), b.phase()), (duplex::Phase::Open, duplex::Phase::Open));
    let branch = a.signed_branch(&sa).unwrap();
    verify_spend(&branch[0], &[funding.output[0].clone()]).expect("the kickoff is valid");
    let bal = a.balances();
    assert_eq!(
        (bal.holder, bal.counterparty),
        (a.terms().channel_value() - Amount::from_sat(200_000), Amount::from_sat(200_000))
    );
}

/// The anchor child is built by the fee-bumping engine from the force close's request: with
/// another channel's signer the close (and so the request) is refused; with the channel's, the
/// child's anchor input carries a valid signature of the channel's funding key.
#[test]
fn lightning_anchor_bump_with_another_channels_signer_is_refused() {
    use paychan::core::feebump::{Bumper, FeeEstimates};
    let mut p = ln_pair();
    p.settle();
    let before = p.a.ch.snapshot();
    let err = p.a.ch.force_close(&ln_wrong()).unwrap_err();
    assert_eq!(err, lightning::CommandError::WrongSigner(WRONG));
    assert_eq!(p.a.ch.snapshot(), before, "nothing changed");
    let fx = p.a.ch.force_close(&p.a.signer).unwrap();
    let commitment = fx.broadcast[0].clone();
    assert_eq!(fx.bumps.len(), 1, "the anchors commitment comes with its bump request");
    let mut chain = common::chain::Chain::at(100);
    let mut wallet = common::wallet::FeeCoins::new(common::wallet::Wallet::new(0x31));
    wallet.add_coin(&mut chain, Amount::from_sat(100_000));
    let mut bumper = Bumper::new();
    let _ = bumper.track(fx.bumps[0].clone());
    let feerate = paychan::core::commitment::FeeratePerKw(5_000);
    let out = bumper.bump(BlockHeight(100), &FeeEstimates::flat(feerate), &mut wallet, &p.a.signer);
    assert_eq!(out.broadcast[0], commitment);
    let child = out.broadcast[1].clone();
    let anchor = child.input[0].previous_output;
    let spent = commitment.output[anchor.vout as usize].clone();
    assert_eq!(spent.value.to_sat(), 330);
    // The anchor input carries a valid signature of the channel's funding key.
    let funding = p.a.signer.pubkeys().funding;
    let ws = paychan::core::script::anchor(&funding);
    let all = bitcoin::sighash::EcdsaSighashType::All;
    let msg = paychan::core::sign::p2wsh_sighash(&child, 0, ws.as_script(), spent.value, all).unwrap();
    let sig = bitcoin::ecdsa::Signature::from_slice(child.input[0].witness.nth(0).expect("signature")).unwrap();
    let _valid = paychan::core::sign::verify(&common::secp(), &msg, &sig, funding.public_key(), all)
        .expect("valid anchor signature");
    assert_eq!(child.input[0].witness.nth(1), Some(ws.as_bytes()));
}

#[test]
fn spilman_payee_fulfill_htlc_on_chain_with_another_channels_signer_is_refused() {
    // After the close confirmed, fulfilling an HTLC signs its on-chain claim.
    let mut sp = Sp::open();
    let pre = PaymentPreimage([7; 32]);
    let (id, fx) = sp.payer.add_htlc(Amount::from_sat(3_000), pre.hash(), BlockHeight(500), &sp.ps, sp.tip).unwrap();
    sp.deliver_from_payer(fx);
    let close = sp.payee.close(&sp.qs).unwrap().broadcast.remove(0);
    let _ = sp.payee.handle_chain(ChainEvent::Confirmed { tx: &close, height: BlockHeight(START + 1) }, &sp.qs);
    assert!(sp.payee.is_closed());
    let before = sp.payee.snapshot();
    let err = sp.payee.fulfill_htlc(id, pre, &payee_wrong()).unwrap_err();
    assert_eq!(err, spilman::CommandError::WrongSigner(WRONG));
    assert_eq!(sp.payee.snapshot(), before, "no claim recorded or broadcast");

    let fx = sp.payee.fulfill_htlc(id, pre, &sp.qs).expect("the channel's signer claims");
    assert_eq!(fx.broadcast.len(), 1);
    let claim = &fx.broadcast[0];
    let vout = claim.input[0].previous_output.vout as usize;
    let htlc_out = close.output[vout].clone();
    assert_eq!(htlc_out.value.to_sat(), 3_000);
    verify_spend(claim, &[htlc_out]).expect("the claim is valid");
    assert_eq!(claim.output[0].value.to_sat(), 3_000 - 300, "the HTLC less the claim fee");
    assert_eq!(claim.output[0].script_pubkey, p2wpkh(2));
}
