//! Two in-memory Lightning peers for the benchmarks (`lightning.rs` under criterion,
//! `lightning_count.rs` under callgrind): open, deliver through the wire encoding, and one HTLC's
//! whole life.
#![allow(dead_code)]

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, ChannelId};
use paychan::lightning::{Channel, ChannelConfig, DustExposure, Effects, Event, Msg, OnionPacket, OpenParams};

#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) ch: Channel,
    pub(crate) signer: InMemorySigner,
}

#[derive(Clone)]
pub(crate) struct Pair {
    pub(crate) a: Peer,
    pub(crate) b: Peer,
}

pub(crate) fn deliver(fx: Effects, to: &mut Peer) -> Vec<Effects> {
    let mut out = Vec::new();
    for m in fx.send {
        let m = Msg::decode(&m.encode()).expect("decode");
        out.push(to.ch.handle_message(m, &to.signer, ChainTip::at(1_000)).expect("accepted"));
    }
    out
}

/// Delivers `fx` from `from_a` and every answer, back and forth, until quiet.
pub(crate) fn run(p: &mut Pair, fx: Effects, from_a: bool) {
    let mut queue = vec![(fx, from_a)];
    while let Some((fx, from_a)) = queue.pop() {
        let to = if from_a { &mut p.b } else { &mut p.a };
        for answer in deliver(fx, to) {
            queue.push((answer, !from_a));
        }
    }
}

pub(crate) fn config() -> ChannelConfig {
    ChannelConfig {
        max_accepted_htlcs: 483,
        minimum_depth: 1,
        max_dust_exposure: DustExposure::Fixed(MilliSats::from_msat(u64::MAX / 2)),
        ..ChannelConfig::default_for([6; 32], ChannelType::AnchorsZeroFeeHtlc)
    }
}

pub(crate) fn open() -> Pair {
    let sa = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0));
    let sb = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0));
    let tip = ChainTip::at(1_000);
    let params = OpenParams {
        config: config(),
        temporary_channel_id: ChannelId([7; 32]),
        funding: Amount::from_sat(100_000_000),
        push: MilliSats::from_msat(50_000_000_000),
        feerate_per_kw: 1_000,
    };
    let (mut a, fx) = Channel::open(params, &sa, tip).expect("open");
    let Some(Msg::OpenChannel(open)) = fx.send.into_iter().next() else { panic!("open") };
    let (b, fx) = Channel::accept(&open, config(), &sb, tip).expect("accept");
    let mut fx_a = Vec::new();
    for m in fx.send {
        fx_a.push(a.handle_message(m, &sa, tip).expect("accept_channel"));
    }
    let (script, value) = fx_a
        .iter()
        .flat_map(|f| f.events.iter())
        .find_map(|e| match e {
            Event::FundingGenerationReady { script_pubkey, value } => Some((script_pubkey.clone(), *value)),
            _ => None,
        })
        .expect("funding");
    let funding = Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value, script_pubkey: script }],
    };
    let mut p = Pair { a: Peer { ch: a, signer: sa }, b: Peer { ch: b, signer: sb } };
    let fx = p.a.ch.funding_tx(funding.clone(), &p.a.signer).expect("funding");
    run(&mut p, fx, true);
    let h = paychan::core::BlockHeight(1_001);
    let fa = p.a.ch.handle_chain(ChainEvent::Confirmed { tx: &funding, height: h }, &p.a.signer);
    let fb = p.b.ch.handle_chain(ChainEvent::Confirmed { tx: &funding, height: h }, &p.b.signer);
    run(&mut p, fa, true);
    run(&mut p, fb, false);
    p
}

pub(crate) fn lifecycle(p: &mut Pair, n: u64) {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    let pre = PaymentPreimage(bytes);
    let (id, fx) =
        p.a.ch.add_htlc(MilliSats::from_msat(5_000_000), pre.hash(), 2_000, OnionPacket::zeroed()).expect("add");
    run(p, fx, true);
    let fx = p.a.ch.commit(&p.a.signer).expect("commit");
    run(p, fx, true);
    let fx = p.b.ch.fulfill_htlc(id, pre).expect("fulfill");
    run(p, fx, false);
    let fx = p.b.ch.commit(&p.b.signer).expect("commit");
    run(p, fx, false);
}

/// A pair with `n` HTLCs announced by A and delivered to B, not yet signed.
pub(crate) fn with_announced(n: u64) -> Pair {
    let mut base = open();
    for i in 0..n {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(1_000_000 + i).to_be_bytes());
        let (_, fx) = base
            .a
            .ch
            .add_htlc(MilliSats::from_msat(5_000_000), PaymentPreimage(bytes).hash(), 2_000, OnionPacket::zeroed())
            .expect("add");
        let _ = deliver(fx, &mut base.b);
    }
    base
}
