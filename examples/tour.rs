//! A guided tour of paychan: `cargo run --example tour`.
//!
//! 1. Channel keys from a seed, and a BOLT #3 commitment transaction with HTLCs, signed by the
//!    peer, completed, and checked by Bitcoin Core's script interpreter.
//! 2. A Spilman channel: open, stream 1,000 payments, close, and its on-chain footprint.

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use paychan::core::commitment::signatures::{sign_counterparty_commitment, verify_holder_commitment};
use paychan::core::commitment::{
    build_commitment, ChannelType, CommitmentHtlc, CommitmentKeys, CommitmentNumber, CommitmentParams, CommitmentState,
    FeeratePerKw, HtlcDirection, ObscuringFactor, OutputRole,
};
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::{InMemorySigner, Signer};
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip};
use paychan::spilman::{self, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    println!("paychan tour\n============\n");
    commitment_section()?;
    spilman_section()?;
    Ok(())
}

fn vsize(tx: &Transaction) -> u64 {
    tx.weight().to_vbytes_ceil()
}

fn commitment_section() -> Result<(), Error> {
    println!("1. Keys and a BOLT #3 commitment\n");
    let alice = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xa1; 32]), 0));
    let bob = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0));
    println!("   alice's funding key  {}", alice.pubkeys().funding.public_key());
    println!("   bob's funding key    {}", bob.pubkeys().funding.public_key());
    println!("   secrets print as     {:?}\n", ChannelSecrets::from_seed(&Seed::from_bytes([0xa1; 32]), 0));

    let secp = alice.secp();
    let number = CommitmentNumber::new(42).ok_or("number")?;
    let point = alice.per_commitment_point(number)?;
    let keys = CommitmentKeys::derive(secp, &point, alice.pubkeys(), bob.pubkeys())?;
    let params = CommitmentParams {
        channel_type: ChannelType::AnchorsZeroFeeHtlc,
        funding_outpoint: OutPoint { txid: Txid::from_byte_array([7; 32]), vout: 0 },
        funding_value: Amount::from_sat(1_000_000),
        broadcaster_is_funder: true,
        to_self_delay: 144,
        dust_limit: Amount::from_sat(354),
        obscuring_factor: ObscuringFactor::new(&alice.pubkeys().payment_basepoint, &bob.pubkeys().payment_basepoint),
        broadcaster: *alice.pubkeys(),
        countersignatory: *bob.pubkeys(),
    };
    let preimages: Vec<PaymentPreimage> = (1..=4u8).map(|i| PaymentPreimage([i; 32])).collect();
    let htlcs: Vec<CommitmentHtlc> = preimages
        .iter()
        .enumerate()
        .map(|(i, p)| CommitmentHtlc {
            direction: if i % 2 == 0 { HtlcDirection::Offered } else { HtlcDirection::Received },
            amount: MilliSats::from_msat(if i == 3 { 200_000 } else { 20_000_000 + i as u64 * 1_000_000 }),
            payment_hash: p.hash(),
            cltv_expiry: 800_000 + i as u32,
        })
        .collect();
    let in_htlcs: u64 = htlcs.iter().map(|h| h.amount.to_msat()).sum();
    let state = CommitmentState {
        number,
        to_broadcaster: MilliSats::from_msat(600_000_000 - in_htlcs),
        to_countersignatory: MilliSats::from_msat(400_000_000),
        feerate: FeeratePerKw(2_500),
        htlcs: &htlcs,
    };
    let built = build_commitment(&params, &keys, &state)?;
    // Bob signs Alice's commitment and its HTLC transactions; Alice checks and completes it.
    let sigs = sign_counterparty_commitment(&bob, &built)?;
    let verified = verify_holder_commitment(secp, built, &bob.pubkeys().funding, sigs)?;
    let tx = verified.finalize(&alice)?;
    let funding = TxOut { value: params.funding_value, script_pubkey: params.funding_script().to_p2wsh() };
    tx.verify(|_| Some(funding.clone()))?;

    println!("   commitment #{} txid {}", number.to_u64(), tx.compute_txid());
    println!("   accepted by Bitcoin Core's interpreter: yes");
    println!("   weight {} wu ({} vB), fee {} sat", tx.weight().to_wu(), vsize(&tx), verified.commitment().actual_fee().to_sat());
    for (vout, (out, role)) in tx.output.iter().zip(verified.commitment().outputs()).enumerate() {
        let role = match role.role {
            OutputRole::ToBroadcaster => "to_local (alice, delayed, revocable)".to_string(),
            OutputRole::ToCountersignatory => "to_remote (bob)".to_string(),
            OutputRole::BroadcasterAnchor => "anchor (alice)".to_string(),
            OutputRole::CountersignatoryAnchor => "anchor (bob)".to_string(),
            OutputRole::Htlc(i) => format!("{:?} HTLC #{i}", htlcs[i].direction).to_lowercase(),
        };
        println!("     [{vout}] {:>9} sat  {role}", out.value.to_sat());
    }
    println!("   HTLC #3 (200 sat) is below dust and trimmed into the fee.");
    for (position, h) in verified.htlc_txs().iter().enumerate() {
        let preimage = preimages.get(h.htlc_index);
        if let Some(second) = verified.finalize_htlc_tx(&alice, position, preimage)? {
            second.verify(|_| Some(tx.output[h.vout as usize].clone()))?;
            let kind = if h.direction == HtlcDirection::Offered { "HTLC-timeout" } else { "HTLC-success" };
            println!("   {kind} for output {} verified, {} vB", h.vout, vsize(&second));
        }
    }
    println!();
    Ok(())
}

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn spilman_section() -> Result<(), Error> {
    println!("2. A Spilman channel (CLTV variant)\n");
    let payer_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xc1; 32]), 0));
    let payee_signer = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xd1; 32]), 0));
    let tip = ChainTip::at(800_000);
    let (mut payee, fx) = Payee::new(
        PayeeConfig {
            variant: Variant::Cltv,
            payee_script: p2wpkh(2),
            expiry: BlockHeight(800_000 + 144 * 7),
            min_first_payment: Amount::from_sat(1_000),
            dust_limit: Amount::from_sat(546),
            payment_fee: Amount::from_sat(300),
            close_margin: 36,
            htlc_min_blocks: 24,
            min_depth: 0,
            claim_fee: Amount::from_sat(300),
        },
        &payee_signer,
    );
    let Some(Msg::Offer(offer)) = fx.send.into_iter().next() else { return Err("no offer".into()) };
    let mut payer = Payer::new(
        offer,
        PayerConfig {
            capacity: Amount::from_sat(100_000),
            payer_script: p2wpkh(1),
            refund_fee: Amount::from_sat(300),
            claim_fee: Amount::from_sat(300),
            first_payment: Amount::from_sat(1_000),
            max_lifetime: 144 * 30,
        },
        &payer_signer,
        tip,
    )?;
    let funding = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([5; 32]), vout: 1 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![payer.funding_output()],
    };
    let mut messages = 0usize;
    let mut bytes = 0usize;
    let mut deliver = |fx: spilman::Effects, payer: &mut Payer, payee: &mut Payee| -> Result<(), Error> {
        for m in fx.send {
            let wire = m.encode();
            messages += 1;
            bytes += wire.len();
            let back = payee.handle_message(Msg::decode(&wire)?, &payee_signer, tip)?;
            for m in back.send {
                let wire = m.encode();
                messages += 1;
                bytes += wire.len();
                let _ = payer.handle_message(Msg::decode(&wire)?, &payer_signer, tip)?;
            }
        }
        Ok(())
    };
    deliver(payer.fund(funding.clone(), &payer_signer)?, &mut payer, &mut payee)?;
    let started = std::time::Instant::now();
    for _ in 0..1_000 {
        deliver(payer.pay(Amount::from_sat(50), &payer_signer)?, &mut payer, &mut payee)?;
    }
    let elapsed = started.elapsed();
    println!("   1,000 payments of 50 sat: {:?} ({:?} per payment, sign + verify + persist)", elapsed, elapsed / 1_000);
    println!("   {messages} messages, {bytes} bytes on the wire; payee snapshot {} bytes", payee.snapshot().len());
    let fx = payee.close(&payee_signer)?;
    let close = fx.broadcast.first().ok_or("no close")?;
    close.verify(|_| Some(funding.output[0].clone()))?;
    println!("   payee closes: {} sat to the payee (after fee), {} sat change to the payer",
        close.output.iter().filter(|o| o.script_pubkey == p2wpkh(2)).map(|o| o.value.to_sat()).sum::<u64>(),
        close.output.iter().filter(|o| o.script_pubkey == p2wpkh(1)).map(|o| o.value.to_sat()).sum::<u64>());
    println!("   on-chain footprint: funding output + one {} vB closing transaction for 1,001 payments", vsize(close));
    let refund = payer.refund_tx(&payer_signer)?;
    refund.verify(|_| Some(funding.output[0].clone()))?;
    println!("   the payer's refund ({} vB) was valid from height {} had the payee vanished", vsize(&refund), payer.refund_height().0);
    let _ = payer.handle_chain(ChainEvent::Confirmed { tx: close, height: BlockHeight(800_001) }, &payer_signer);
    println!("   payer sees the close: closed = {}\n", payer.is_closed());
    Ok(())
}
