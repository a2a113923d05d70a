//! Regressions found by the Spilman simulator (`tests/simulate.rs`), replayed through the public
//! API on a simulated chain that checks every script with Bitcoin Core's interpreter.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid, WPubkeyHash};
use common::chain::Chain;
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::{Bumper, FeeEstimates};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, RestoreCheck, RestoreError};
use paychan::spilman::{CommandError, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
use paychan::testing::policy::Policy;
use paychan::testing::wallet::{FeeCoins, Wallet};

const START: u32 = 100;
const EXPIRY: u32 = 300;

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn wire(m: &Msg) -> Msg {
    Msg::decode(&m.encode()).expect("own encoding decodes")
}

struct Two {
    chain: Chain,
    payer: Payer,
    payee: Payee,
    signers: [InMemorySigner; 2],
    /// The payee's first persisted snapshot (from `Payee::new`, before funding).
    payee_first: Vec<u8>,
}

impl Two {
    /// An open, funded channel (`variant`), funding confirmed.
    fn open(variant: Variant) -> Two {
        let signers = [
            InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([1; 32]), 0)),
            InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([2; 32]), 0)),
        ];
        let chain = Chain::at(START);
        let (payee, fx) = Payee::new(
            PayeeConfig {
                variant,
                payee_script: p2wpkh(2),
                expiry: BlockHeight(EXPIRY),
                min_first_payment: Amount::from_sat(10_000),
                dust_limit: Amount::from_sat(546),
                payment_fee: Amount::from_sat(500),
                close_margin: 6,
                htlc_min_blocks: 12,
                min_depth: 0,
                claim_fee: Amount::from_sat(300),
            },
            &signers[1],
        );
        let Some(Msg::Offer(offer)) = fx.send.first().map(wire) else { panic!("offer") };
        let payer = Payer::new(
            offer,
            PayerConfig {
                capacity: Amount::from_sat(1_000_000),
                payer_script: p2wpkh(1),
                refund_fee: Amount::from_sat(500),
                claim_fee: Amount::from_sat(300),
                first_payment: Amount::from_sat(10_000),
                max_lifetime: 10_000,
            },
            &signers[0],
            ChainTip::at(START),
        )
        .expect("offer acceptable");
        let payee_first = fx.update.and_then(|u| u.snapshot).expect("the payee persists its offer");
        let mut two = Two { chain, payer, payee, signers, payee_first };
        let funding = common::wallet::unsigned_funding(
            OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            vec![TxOut { value: Amount::from_sat(5_000_000), script_pubkey: p2wpkh(1) }, two.payer.funding_output()],
        );
        let fx = two.payer.fund(funding.clone(), &two.signers[0]).expect("fund");
        two.deliver_to_payee(fx.send);
        two.chain.credit(&funding);
        two.chain.advance(1);
        two.confirm(&funding);
        two
    }

    fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    fn deliver_to_payee(&mut self, msgs: Vec<Msg>) {
        for m in msgs {
            let fx = self.payee.handle_message(wire(&m), &self.signers[1], self.tip()).expect("payee accepts");
            self.deliver_to_payer(fx.send);
        }
    }

    fn deliver_to_payer(&mut self, msgs: Vec<Msg>) {
        for m in msgs {
            let fx = self.payer.handle_message(wire(&m), &self.signers[0], self.tip()).expect("payer accepts");
            self.deliver_to_payee(fx.send);
        }
    }

    fn confirm(&mut self, tx: &Transaction) {
        let height = BlockHeight(self.chain.height);
        let _ = self.payer.handle_chain(ChainEvent::Confirmed { tx, height }, &self.signers[0]);
        let _ = self.payee.handle_chain(ChainEvent::Confirmed { tx, height }, &self.signers[1]);
    }
}

/// The payee went silent past its close margin while holding an HTLC; the payer refunded after
/// expiry. The payee comes back, sees the refund, and then learns the HTLC's preimage: the HTLC
/// never reached the chain, so there is nothing to claim. Before the fix the payee built a
/// "claim" spending an output of the refund, broadcast it (invalid: the refund has no such
/// output) and reported `HtlcClaimBroadcast`.
#[test]
fn payee_does_not_claim_an_htlc_after_a_refund_closed_the_channel() {
    for variant in [Variant::Cltv, Variant::PresignedRefund] {
        let mut two = Two::open(variant);
        let preimage = PaymentPreimage([7; 32]);
        let tip = two.tip();
        let (id, fx) = two
            .payer
            .add_htlc(Amount::from_sat(20_000), preimage.hash(), BlockHeight(EXPIRY - 50), &two.signers[0], tip)
            .expect("add HTLC");
        two.deliver_to_payee(fx.send);
        assert_eq!(two.payee.state().expect("held").htlcs.len(), 1);

        // The payee is offline until after expiry; the payer refunds.
        two.chain.advance(EXPIRY - two.chain.height);
        let fx = two.payer.handle_chain(ChainEvent::Tip(two.tip()), &two.signers[0]);
        let [refund] = fx.broadcast.as_slice() else { panic!("the payer refunds at expiry") };
        let refund = refund.clone();
        two.chain.mine(&refund).expect("refund valid");
        two.confirm(&refund);
        assert!(two.payee.is_closed() && two.payer.is_closed());

        let before = two.payee.snapshot();
        let got = two.payee.fulfill_htlc(id, preimage, &two.signers[1]);
        assert_eq!(got.err(), Some(CommandError::WrongPhase), "{variant:?}: nothing on chain to claim");
        assert_eq!(two.payee.snapshot(), before, "state unchanged on error");
    }
}

/// Spilman fee-spike seed 212 (a hostile payer): the payee revealed the preimage of a 546-sat
/// HTLC (the channel's dust limit) that the payer never folded into a payment, and closed. Its
/// on-chain claim at the fixed 300-sat claim fee pays 246 sat to a P2WPKH script: dust, so no
/// node relays it (Core's dust rule). Before the fix the bumper took that claim's fee as the
/// floor a replacement must beat, and since no replacement leaving a non-dust output can pay
/// more than 300 sat, it rebroadcast the unrelayable claim every block: the payee lost the
/// HTLC, though a claim at 1 sat/vB (about 140 sat) was worth making. Now the bumper replaces it.
#[test]
fn a_small_htlc_claim_whose_output_would_be_dust_is_replaced_and_confirms() {
    for variant in [Variant::Cltv, Variant::PresignedRefund] {
        let mut two = Two::open(variant);
        two.chain = two.chain.clone().with_policy(Policy::CORE_29);
        let preimage = PaymentPreimage([8; 32]);
        let tip = two.tip();
        let htlc = Amount::from_sat(546);
        let (id, fx) = two
            .payer
            .add_htlc(htlc, preimage.hash(), BlockHeight(EXPIRY - 50), &two.signers[0], tip)
            .expect("add HTLC");
        two.deliver_to_payee(fx.send);
        // The payee reveals the preimage; the payer never folds the HTLC in (the message is
        // withheld), so the payee closes and claims on chain.
        let fx = two.payee.fulfill_htlc(id, preimage, &two.signers[1]).expect("fulfill");
        assert!(matches!(fx.send.as_slice(), [Msg::Fulfill { .. }]));
        let fx = two.payee.close(&two.signers[1]).expect("close");
        let [close] = fx.broadcast.as_slice() else { panic!("the payee broadcasts its close") };
        let close = close.clone();
        two.chain.submit(&close).expect("the close relays");
        two.chain.mine_block();
        let height = BlockHeight(two.chain.height);
        let fx = two.payee.handle_chain(ChainEvent::Confirmed { tx: &close, height }, &two.signers[1]);
        let [claim] = fx.broadcast.as_slice() else { panic!("the payee claims the HTLC") };
        assert!(two.chain.submit(claim).is_err(), "{variant:?}: the claim at the fixed fee leaves a dust output");
        let [request] = fx.bumps.as_slice() else { panic!("the claim comes with a bump request") };

        let mut bumper = Bumper::new();
        let _ = bumper.track(request.clone());
        let mut wallet = FeeCoins::new(Wallet::new(0x72));
        let tip = BlockHeight(two.chain.height);
        let fx = bumper.bump(tip, &FeeEstimates::flat(FeeratePerKw(253)), &mut wallet, &two.signers[1]);
        let [replacement] = fx.broadcast.as_slice() else { panic!("one claim to broadcast") };
        assert_ne!(replacement.compute_txid(), claim.compute_txid(), "{variant:?}: the bumper replaces the claim");
        two.chain.submit(replacement).expect("the replacement relays");
        two.chain.mine_block();
        assert!(two.chain.confirmation(&replacement.compute_txid()).is_some());
        let paid = replacement.output.iter().filter(|o| o.script_pubkey == p2wpkh(2)).map(|o| o.value).sum::<Amount>();
        let fee = htlc - paid;
        // At 1 sat/vB: the payee keeps the HTLC less the claim's own fee, charged to it.
        assert!(
            fee.to_sat() <= replacement.vsize() as u64 + 10,
            "{variant:?}: fee {fee} for {} vB",
            replacement.vsize()
        );
    }
}

/// Spilman fee-spike seed 228 (a payee losing writes): the payee restarted from its very first
/// snapshot (written by `Payee::new`, before funding), learned the channel again, then crashed.
/// Its embedder checked the first snapshot against the channel id and the newest update id: it
/// was refused, but as `WrongChannel` ("another channel's") rather than `Stale`, sending the
/// embedder after the wrong fault (its storage lost writes; it did not mix channels up).
#[test]
fn the_payee_snapshot_from_before_funding_is_refused_as_stale() {
    let two = Two::open(Variant::PresignedRefund);
    let first = Payee::restore(&two.payee_first, RestoreCheck::default()).expect("the first snapshot restores");
    assert_eq!(first.channel_id(), None, "written before the channel had an id");
    let check = RestoreCheck { channel_id: two.payee.channel_id(), min_update_id: two.payee.update_id() };
    assert!(check.channel_id.is_some() && first.update_id() < check.min_update_id);
    assert_eq!(
        Payee::restore(&two.payee_first, check).err(),
        Some(RestoreError::Stale { snapshot: first.update_id(), expected_at_least: two.payee.update_id() })
    );
}
