//! A guided tour of paychan: `cargo run --example tour` (a few seconds).
//!
//! 1. Channel keys from a seed, and a BOLT #3 commitment transaction with HTLCs, signed by the
//!    peer, completed, and checked by Bitcoin Core's script interpreter.
//! 2. A Spilman channel: open, stream 1,000 payments, close, its on-chain footprint and picture.
//! 3. A Lightning channel: open, HTLC payments both ways, a cheater punished, cooperative close.
//! 4. A duplex channel: the tree's parameters, payments both ways, resets (one completed after
//!    a reconnection), picture, closes.
//! 5. Persistence and hostile input: restore, a stale snapshot refused, a forged message refused
//!    with the state unchanged.
//! 6. One payment hash across a Spilman, a duplex and a Lightning channel: success, failure, and
//!    the preimage recovered from the chain (`examples/multihop.rs`).
//! 7. The three constructions side by side on one workload (`examples/compare.rs`).
//!
//! The pictures (Graphviz DOT) are written to `$TMPDIR/paychan-tour/`.

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

#[path = "compare.rs"]
#[allow(dead_code)]
mod compare;
#[path = "multihop.rs"]
#[allow(dead_code)]
mod multihop;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    println!("paychan tour\n============\n");
    commitment_section()?;
    spilman_section()?;
    lightning_section()?;
    duplex_section()?;
    persistence_section()?;
    println!("6. One payment across all three channel types (examples/multihop.rs)\n");
    multihop::main();
    println!("\n7. The three side by side (examples/compare.rs; a small workload here)\n");
    print!("{}", compare::table(&compare::run(40, 1)?));
    println!("\n   `cargo run --release --example compare` runs 10,000 payments.");
    Ok(())
}

/// Writes a channel's transaction graph (Graphviz DOT) next to the build output and says how to
/// render it.
fn write_picture(name: &str, dot: &str) -> Result<(), Error> {
    let dir = std::env::temp_dir().join("paychan-tour");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.dot"));
    std::fs::write(&path, dot)?;
    println!(
        "   picture: {} ({} nodes; render with `dot -Tsvg {} -o {name}.svg`)",
        path.display(),
        dot.lines().filter(|l| l.contains("[label=")).count(),
        path.display()
    );
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
        .map(|(i, p)| {
            CommitmentHtlc::new(
                if i % 2 == 0 { HtlcDirection::Offered } else { HtlcDirection::Received },
                MilliSats::from_msat(if i == 3 { 200_000 } else { 20_000_000 + i as u64 * 1_000_000 }),
                p.hash(),
                800_000 + i as u32,
            )
        })
        .collect();
    let in_htlcs: u64 = htlcs.iter().map(|h| h.amount().to_msat()).sum();
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
    println!(
        "   weight {} wu ({} vB), fee {} sat",
        tx.weight().to_wu(),
        vsize(&tx),
        verified.commitment().actual_fee().to_sat()
    );
    for (vout, (out, role)) in tx.output.iter().zip(verified.commitment().outputs()).enumerate() {
        let role = match role.role {
            OutputRole::ToBroadcaster => "to_local (alice, delayed, revocable)".to_string(),
            OutputRole::ToCountersignatory => "to_remote (bob)".to_string(),
            OutputRole::BroadcasterAnchor => "anchor (alice)".to_string(),
            OutputRole::CountersignatoryAnchor => "anchor (bob)".to_string(),
            OutputRole::Htlc(i) => format!("{:?} HTLC #{i}", htlcs[i].direction()).to_lowercase(),
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
    // The payer's first effects ask its wallet for the funding output (the one funding flow).
    let (mut payer, opened) = Payer::open(
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
        output: vec![opened.funding.ok_or("no funding request")?.output],
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
    write_picture("spilman", &payee.to_dot())?;
    let fx = payee.close(&payee_signer)?;
    let close = fx.broadcast.first().ok_or("no close")?;
    close.verify(|_| Some(funding.output[0].clone()))?;
    println!(
        "   payee closes: {} sat to the payee (after fee), {} sat change to the payer",
        close.output.iter().filter(|o| o.script_pubkey == p2wpkh(2)).map(|o| o.value.to_sat()).sum::<u64>(),
        close.output.iter().filter(|o| o.script_pubkey == p2wpkh(1)).map(|o| o.value.to_sat()).sum::<u64>()
    );
    println!("   on-chain footprint: funding output + one {} vB closing transaction for 1,001 payments", vsize(close));
    let refund = payer.refund_tx(&payer_signer)?;
    refund.verify(|_| Some(funding.output[0].clone()))?;
    println!(
        "   the payer's refund ({} vB) was valid from height {} had the payee vanished",
        vsize(&refund),
        payer.refund_height().0
    );
    let _ = payer.handle_chain(ChainEvent::Confirmed { tx: close, height: BlockHeight(800_001) }, &payer_signer);
    println!("   payer sees the close: closed = {}\n", payer.is_closed());
    Ok(())
}

/// Delivers messages back and forth between two Lightning peers until both are quiet.
fn ln_run(
    a: &mut paychan::lightning::Channel,
    sa: &InMemorySigner,
    b: &mut paychan::lightning::Channel,
    sb: &InMemorySigner,
    first: paychan::lightning::Effects,
    from_a: bool,
    log: &mut Vec<paychan::lightning::Event>,
) -> Result<Vec<Transaction>, Error> {
    let tip = ChainTip::at(800_000);
    let mut broadcast = Vec::new();
    let mut queue = vec![(first, from_a)];
    while let Some((fx, from_a)) = queue.pop() {
        log.extend(fx.events);
        broadcast.extend(fx.broadcast);
        for m in fx.send {
            let m = paychan::lightning::Msg::decode(&m.encode())?;
            let answer = if from_a { b.handle_message(m, sb, tip)? } else { a.handle_message(m, sa, tip)? };
            queue.push((answer, !from_a));
        }
    }
    Ok(broadcast)
}

fn lightning_section() -> Result<(), Error> {
    use paychan::lightning::{Channel, ChannelConfig, Msg as LnMsg, OnionPacket, OpenParams, Side};
    println!("3. A Lightning channel (anchors, zero-fee HTLC transactions)\n");
    let sa = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xe1; 32]), 0));
    let sb = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xf1; 32]), 0));
    let tip = ChainTip::at(800_000);
    let config =
        ChannelConfig { minimum_depth: 1, ..ChannelConfig::default_for([6; 32], ChannelType::AnchorsZeroFeeHtlc) };
    let params = OpenParams {
        config: config.clone(),
        temporary_channel_id: paychan::driving::ChannelId([9; 32]),
        funding: Amount::from_sat(2_000_000),
        push: MilliSats::from_msat(500_000_000),
        feerate_per_kw: 1_000,
    };
    let mut log = Vec::new();
    let (mut a, fx) = Channel::open(params, &sa, tip)?;
    let Some(LnMsg::OpenChannel(open)) = fx.send.into_iter().next() else { return Err("no open".into()) };
    let (mut b, fx) = Channel::accept(&open, config, &sb, tip)?;
    ln_run(&mut a, &sa, &mut b, &sb, fx, false, &mut log)?;
    // `accept_channel` asked Alice's wallet for the funding (`Effects::funding`; the channel
    // asks again with `funding_request()`): it signs a transaction paying it, the channel
    // broadcasts it once Bob signed Alice's first commitment.
    let request = a.funding_request().ok_or("no funding request")?;
    let funding = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([8; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![request.output],
    };
    let fx = a.fund(funding.clone(), &sa)?;
    ln_run(&mut a, &sa, &mut b, &sb, fx, true, &mut log)?;
    let h = BlockHeight(800_001);
    let fx = a.handle_chain(ChainEvent::Confirmed { tx: &funding, height: h }, &sa);
    ln_run(&mut a, &sa, &mut b, &sb, fx, true, &mut log)?;
    let fx = b.handle_chain(ChainEvent::Confirmed { tx: &funding, height: h }, &sb);
    ln_run(&mut a, &sa, &mut b, &sb, fx, false, &mut log)?;
    println!("   opened: {:?}, capacity {} sat, {:?}", a.phase(), a.capacity().to_sat(), a.channel_id());
    // Bob's first commitment: Bob will try to cheat with it later.
    let old_bob = b.holder_commitment_tx(&sb)?;

    // Payments both ways, each an HTLC added, committed, fulfilled and committed.
    for i in 0..6u8 {
        let pre = PaymentPreimage([0x40 + i; 32]);
        let amount = MilliSats::from_msat(25_000_000 + u64::from(i) * 1_000_000);
        let a_pays = i % 2 == 0;
        let ((payer, ps), (payee, qs)) =
            if a_pays { ((&mut a, &sa), (&mut b, &sb)) } else { ((&mut b, &sb), (&mut a, &sa)) };
        let (id, fx) = payer.add_htlc(amount, pre.hash(), 800_200, OnionPacket::zeroed())?;
        let mut fx2 = payer.commit(ps)?;
        fx2.send.splice(0..0, fx.send);
        if a_pays {
            ln_run(payer, ps, payee, qs, fx2, true, &mut log)?;
        } else {
            ln_run(payee, qs, payer, ps, fx2, false, &mut log)?;
        }
        let fx = payee.fulfill_htlc(id, pre)?;
        let mut fx2 = payee.commit(qs)?;
        fx2.send.splice(0..0, fx.send);
        if a_pays {
            ln_run(payer, ps, payee, qs, fx2, false, &mut log)?;
        } else {
            ln_run(payee, qs, payer, ps, fx2, true, &mut log)?;
        }
        println!(
            "   {} pays {} sat through HTLC #{id}: preimage back, HTLC settled",
            if a_pays { "alice" } else { "bob" },
            amount.to_sat_floor()
        );
    }
    let bal = a.balances(Side::Holder);
    println!(
        "   balances: alice {} sat, bob {} sat; {} commitments each",
        bal.holder.to_sat_floor(),
        bal.counterparty.to_sat_floor(),
        a.holder_commitment_number()
    );
    for tx in [a.holder_commitment_tx(&sa)?, b.holder_commitment_tx(&sb)?] {
        tx.verify(|_| Some(funding.output[0].clone()))?;
    }
    println!("   both latest commitments accepted by Bitcoin Core's interpreter");
    write_picture("lightning", &a.to_dot(&sa))?;
    println!(
        "   alice's persisted live state: {} bytes (no HTLC in flight; constant whatever the history)",
        a.snapshot().len()
    );

    // The cheating scene, on a copy of Alice: Bob publishes his first (revoked) commitment.
    let mut alice = a.clone();
    let fx = alice.handle_chain(ChainEvent::Confirmed { tx: &old_bob, height: BlockHeight(800_010) }, &sa);
    println!("\n   Bob cheats: broadcasts revoked commitment {} ({} vB)", old_bob.compute_txid(), vsize(&old_bob));
    for o in &old_bob.output {
        println!("     output {:>9} sat", o.value.to_sat());
    }
    for t in &fx.broadcast {
        let prevouts: Vec<TxOut> =
            t.input.iter().map(|i| old_bob.output[i.previous_output.vout as usize].clone()).collect();
        t.verify(|op| prevouts.get(t.input.iter().position(|i| i.previous_output == *op)?).cloned())?;
        let swept: u64 = prevouts.iter().map(|o| o.value.to_sat()).sum();
        let what = if t.input.iter().all(|i| i.witness.len() == 3) {
            "penalty (revocation key)"
        } else {
            "sweep of her own output"
        };
        println!(
            "   Alice broadcasts {what} {}: {} sat swept, {} sat after fees, verified",
            t.compute_txid(),
            swept,
            t.output[0].value.to_sat()
        );
    }
    println!("   Bob's own balance went to the penalty: he loses everything in the channel.");

    // The real channel closes cooperatively.
    let dest_a = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0xa1; 20]));
    let dest_b = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0xb1; 20]));
    let fx = a.shutdown(dest_a, (Amount::from_sat(200), Amount::from_sat(2_000)), &sa)?;
    ln_run(&mut a, &sa, &mut b, &sb, fx, true, &mut log)?;
    let fx = b.shutdown(dest_b, (Amount::from_sat(100), Amount::from_sat(1_500)), &sb)?;
    ln_run(&mut a, &sa, &mut b, &sb, fx, false, &mut log)?;
    let close = a.closing_transaction().ok_or("no closing transaction")?;
    close.verify(|_| Some(funding.output[0].clone()))?;
    println!("\n   cooperative close {} ({} vB), verified:", close.compute_txid(), vsize(close));
    for o in &close.output {
        println!("     {:>9} sat", o.value.to_sat());
    }
    println!();
    Ok(())
}

/// A Decker–Wattenhofer duplex channel: what the tree parameters imply, payments both ways in the
/// leaf's two Spilman channels, resets that re-balance them on a new branch, the DOT picture of
/// the tree, the unilateral close schedule, and a cooperative close.
fn duplex_section() -> Result<(), Error> {
    use paychan::duplex::{self, Channel, Params, Role, Terms};

    println!("4. A duplex channel (Decker–Wattenhofer, relative-timelock invalidation tree)\n");
    let params = Params::uniform(3, 3, 144, 144)?;
    let s = 6; // blocks to get a transaction confirmed
    println!(
        "   d=3, k=3, Δ=144, T_r=144: {} states, {} resets, a unilateral close puts {} transactions on chain,",
        params.states(),
        params.resets(),
        params.unilateral_close_txs(0)
    );
    println!(
        "   the leaf confirms at most {} blocks after deciding to close (S={s}); HTLCs need {} blocks",
        params.max_close_delay(s),
        params.htlc_receive_blocks(s)
    );
    let terms = Terms {
        params,
        capacity: Amount::from_sat(1_000_000),
        push: Amount::from_sat(300_000),
        payment_fee: Amount::from_sat(300),
        refund_fee: Amount::from_sat(300),
        claim_fee: Amount::from_sat(300),
        dust_limit: Amount::from_sat(546),
        confirm_blocks: 6,
        reorg_blocks: 6,
        htlc_grace_blocks: 6,
        max_htlc_expiry_delta: 2_016,
        reset_warning: 5,
        funding_depth: 7,
    };
    let signers = [
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xe1; 32]), 0)),
        InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xf1; 32]), 0)),
    ];
    let tip = std::cell::Cell::new(ChainTip::at(800_000));
    let (alice, fx) = Channel::open(terms, p2wpkh(0xa1), &signers[0], tip.get())?;
    let Some(duplex::Msg::Open(open)) = fx.send.into_iter().next() else { return Err("no open".into()) };
    let (bob, fx) = Channel::accept(open, p2wpkh(0xb1), &signers[1], tip.get())?;
    let mut ch = [alice, bob];
    let mut bytes = 0usize;
    // Delivers messages (through the wire encoding) until both sides are quiet.
    let mut deliver = |ch: &mut [Channel; 2], mut to: Role, mut msgs: Vec<duplex::Msg>| -> Result<(), Error> {
        while !msgs.is_empty() {
            let mut replies = Vec::new();
            for m in msgs {
                let wire = m.encode();
                bytes += wire.len();
                let fx = ch[to.index()].handle_message(duplex::Msg::decode(&wire)?, &signers[to.index()], tip.get())?;
                replies.extend(fx.send);
            }
            msgs = replies;
            to = !to;
        }
        Ok(())
    };
    deliver(&mut ch, Role::Initiator, fx.send)?;
    let funding = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![ch[0].funding_request().ok_or("no funding request")?.output],
    };
    let fx = ch[0].fund(funding.clone(), &signers[0])?;
    deliver(&mut ch, Role::Acceptor, fx.send)?;
    println!("   opened: both sides hold the signed kickoff and first branch before the funding is broadcast");
    // The funding confirms in the next block. A payment counts once the funding has
    // `funding_depth` (7) confirmations on the receiver's view and is sent at 8, so a funder
    // cannot pay and then double-spend its funding inputs.
    for (c, s) in ch.iter_mut().zip(&signers) {
        let _ = c.handle_chain(ChainEvent::Confirmed { tx: &funding, height: BlockHeight(800_001) }, s);
    }
    tip.set(ChainTip::at(ch[0].sends_from().ok_or("funding unconfirmed")?.0));
    for (c, s) in ch.iter_mut().zip(&signers) {
        let _ = c.handle_chain(ChainEvent::Tip(tip.get()), s);
    }
    println!("   the funding is {} blocks deep: payments may start", ch[0].funding_confirmations(tip.get()));

    let show = |ch: &[Channel; 2], what: &str| {
        let b = ch[0].balances();
        println!(
            "   {what:<34} alice {:>7} sat, bob {:>7} sat; counter {:?}, {} resets left",
            b.holder.to_sat(),
            b.counterparty.to_sat(),
            ch[0].digits(),
            ch[0].resets_left()
        );
    };
    show(&ch, "start:");
    for _ in 0..100 {
        let fx = ch[0].pay(Amount::from_sat(1_000), &signers[0])?;
        deliver(&mut ch, Role::Acceptor, fx.send)?;
    }
    for _ in 0..50 {
        let fx = ch[1].pay(Amount::from_sat(900), &signers[1])?;
        deliver(&mut ch, Role::Initiator, fx.send)?;
    }
    show(&ch, "150 payments both ways:");
    // Bob has received more than his own leaf channel holds: a reset moves it over.
    let too_much = ch[1].available() + Amount::from_sat(10_000);
    if let Err(e) = ch[1].pay(too_much, &signers[1]) {
        println!("   bob pays {} sat: refused ({e}); his leaf channel is dry", too_much.to_sat());
    }
    for i in 0..4 {
        let who = if i % 2 == 0 { Role::Acceptor } else { Role::Initiator };
        let fx = ch[who.index()].reset(&signers[who.index()], tip.get())?;
        deliver(&mut ch, !who, fx.send)?;
        show(&ch, &format!("reset by {}:", who.letter()));
        let fx = ch[0].pay(Amount::from_sat(2_000), &signers[0])?;
        deliver(&mut ch, Role::Acceptor, fx.send)?;
    }
    let fx = ch[1].pay(too_much, &signers[1])?;
    deliver(&mut ch, Role::Initiator, fx.send)?;
    show(&ch, "now bob pays it:");
    // The connection drops in the middle of a reset: alice holds the new branch, bob never gets
    // step (3). On the new connection both send `Reestablish` first; alice sends step (3) again.
    let fx = ch[0].reset(&signers[0], tip.get())?;
    let mut accepted = Vec::new();
    for m in fx.send {
        accepted.extend(ch[1].handle_message(m, &signers[1], tip.get())?.send);
    }
    let mut lost = 0;
    for m in accepted {
        lost += ch[0].handle_message(m, &signers[0], tip.get())?.send.len();
    }
    println!(
        "   connection lost with {lost} message in flight: bob still waits for the reset ({})",
        ch[1].is_resetting()
    );
    let (from_alice, from_bob) = (ch[0].reestablish(), ch[1].reestablish());
    let again = ch[0].handle_message(from_bob, &signers[0], tip.get())?.send;
    let _ = ch[1].handle_message(from_alice, &signers[1], tip.get())?;
    deliver(&mut ch, Role::Acceptor, again)?;
    show(&ch, "reconnected, step (3) sent again:");
    println!("   bob's counter {:?}, still waiting: {}", ch[1].digits(), ch[1].is_resetting());
    println!("   {} bytes on the wire; alice's snapshot is {} bytes\n", bytes, ch[0].snapshot().len());

    write_picture("duplex", &ch[0].to_dot())?;
    let branch = ch[0].signed_branch(&signers[0])?;
    let locks: Vec<u32> = branch.iter().skip(1).map(|t| t.input[0].sequence.0).collect();
    println!(
        "\n   unilateral close: kickoff + {} nodes ({} vB in all), node locks {:?} blocks after each parent",
        branch.len() - 1,
        branch.iter().map(vsize).sum::<u64>(),
        locks
    );
    let anchored = branch.iter().all(|t| {
        t.version.0 == 3
            && t.output.iter().filter(|o| paychan::core::script::is_p2a(&o.script_pubkey)).count() == 1
            && t.output.iter().map(|o| o.value).sum::<Amount>() == ch[0].terms().capacity
    });
    println!(
        "   each of them version 3, zero fee, one pay-to-anchor output: {anchored} (the publisher pays the fee then, by CPFP)"
    );
    let fx = ch[0].close(&signers[0])?;
    let mut close = None;
    for m in fx.send {
        let back = ch[1].handle_message(m, &signers[1], tip.get())?;
        close = back.broadcast.into_iter().next();
        for m in back.send {
            let _ = ch[0].handle_message(m, &signers[0], tip.get())?;
        }
    }
    let close = close.ok_or("no close")?;
    close.verify(|_| Some(funding.output[0].clone()))?;
    println!(
        "   cooperative close: one {} vB transaction from the funding output paying {} and {} sat\n",
        vsize(&close),
        close.output[0].value.to_sat(),
        close.output.get(1).map_or(0, |o| o.value.to_sat())
    );
    Ok(())
}

/// Persistence and hostile input, on a Lightning channel: what the embedder stores, restoring
/// from it, a stale snapshot refused, and a forged message refused with the state unchanged.
fn persistence_section() -> Result<(), Error> {
    use paychan::driving::{RestoreCheck, RestoreError};
    use paychan::lightning::{Channel, Msg as LnMsg, OnionPacket};

    println!("5. Persistence and hostile input (a Lightning channel)\n");
    let mut p = compare::common::LnPair::open(
        ChannelType::StaticRemoteKey,
        Amount::from_sat(500_000),
        MilliSats::from_msat(100_000_000),
        800_000,
    )?;
    let old = (p.b.update_id(), p.b.snapshot());
    for _ in 0..3 {
        p.pay(true, MilliSats::from_msat(5_000_000))?;
    }
    let (id, snap) = (p.b.update_id(), p.b.snapshot());
    println!("   after 3 payments bob's last persisted update is #{id}: a {}-byte snapshot", snap.len());
    let check = RestoreCheck { channel_id: Some(p.b.channel_id()), min_update_id: id };
    let restored = Channel::restore(&snap, check)?;
    println!(
        "   restored from it: balances {:?} (same as before: {})",
        restored.balances(paychan::lightning::Side::Holder).holder,
        restored == p.b
    );
    match Channel::restore(&old.1, check) {
        Err(RestoreError::Stale { snapshot, expected_at_least }) => println!(
            "   restoring an older copy (update #{snapshot}) is refused: expected at least #{expected_at_least}"
        ),
        other => return Err(format!("a stale snapshot was not refused: {other:?}").into()),
    }
    // Alice offers an HTLC; her commitment_signed is forged on the way.
    let pre = PaymentPreimage([0x77; 32]);
    let (_, mut fx) = p.a.add_htlc(MilliSats::from_msat(7_000_000), pre.hash(), 800_200, OnionPacket::zeroed())?;
    fx.merge(p.a.commit(&p.sa)?);
    for m in fx.send {
        let wire = m.encode();
        if !matches!(m, LnMsg::CommitmentSigned { .. }) {
            let fx = p.b.handle_message(LnMsg::decode(&wire)?, &p.sb, p.tip)?;
            p.deliver(fx, false)?;
            continue;
        }
        let before = p.b.snapshot();
        let mut forged = wire.clone();
        forged[40] ^= 1; // a bit of the signature
        let err = p.b.handle_message(LnMsg::decode(&forged)?, &p.sb, p.tip).expect_err("forged");
        println!(
            "   a forged commitment_signed: refused ({:?}, advice {:?}); bob's state byte-identical: {}",
            err.kind,
            err.action,
            p.b.snapshot() == before
        );
        let err = p.b.handle_message(LnMsg::decode(&wire)?, &p.sb, p.tip).expect_err("after a refusal");
        println!("   the genuine one on the same connection: refused too ({:?}): the connection is done", err.kind);
    }
    // The embedder drops the connection; on the next one both sides resynchronise.
    let (fa, fb) = (p.a.handle_disconnect(), p.b.handle_disconnect());
    p.meter.persist(&fa.update);
    p.meter.persist(&fb.update);
    let (ra, rb) = (p.a.reestablish(&p.sa)?, p.b.reestablish(&p.sb)?);
    let fx = p.b.handle_message(ra, &p.sb, p.tip)?;
    p.deliver(fx, false)?;
    let fx = p.a.handle_message(rb, &p.sa, p.tip)?;
    p.deliver(fx, true)?;
    println!(
        "   after a reconnection alice retransmits, and the genuine messages go through: {} HTLC(s) in flight\n",
        p.b.htlcs().len()
    );
    Ok(())
}
