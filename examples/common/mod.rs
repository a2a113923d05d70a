//! Drivers shared by the examples: two peers of each channel type wired together through the
//! wire encodings, with every message, byte and persisted byte counted, and a small simulated
//! chain (the test suite's, `tests/common/chain.rs`) that enforces lock times and checks every
//! script with Bitcoin Core's interpreter.

#![allow(dead_code)] // each example uses a part

pub use paychan::testing::chain;

pub mod fees;

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, Effects, StateUpdate};
use paychan::{duplex, lightning, spilman};

pub type Error = Box<dyn std::error::Error>;

pub fn vsize(tx: &Transaction) -> u64 {
    tx.weight().to_vbytes_ceil()
}

pub fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

pub fn signer(seed: u8, index: u32) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), u64::from(index)))
}

/// A wallet's funding transaction paying `output` (its own input is not modelled: the chain
/// credits it).
pub fn funding_tx(output: TxOut, tag: u32) -> Transaction {
    let mut id = [0x5f; 32];
    id[..4].copy_from_slice(&tag.to_le_bytes());
    Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array(id), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![output],
    }
}

/// A tiny deterministic PRNG (xorshift64*), so every run is reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// What crossed the wire and what was handed over for persistence.
#[derive(Clone, Copy, Default, Debug)]
pub struct Meter {
    pub messages: usize,
    pub wire_bytes: usize,
    pub persisted_bytes: usize,
}

impl Meter {
    pub fn persist(&mut self, update: &Option<StateUpdate>) {
        if let Some(u) = update {
            self.persisted_bytes += u.written_bytes();
        }
    }

    fn wire(&mut self, bytes: usize) {
        self.messages += 1;
        self.wire_bytes += bytes;
    }
}

/// Runs a chain until quiet: every transaction broadcast is submitted (again each block until
/// valid), each block is announced to every party, and their new broadcasts join in. Returns the
/// confirmed transactions in order and the height at which the last one confirmed.
pub fn settle_on_chain(
    chain: &mut chain::Chain,
    mut pending: Vec<Transaction>,
    max_blocks: u32,
    mut feed: impl FnMut(ChainEvent<'_>) -> Vec<Transaction>,
) -> Result<(Vec<Transaction>, u32), Error> {
    let mut confirmed = Vec::new();
    let mut last = chain.height;
    for _ in 0..max_blocks {
        for tx in &pending {
            let _ = chain.submit(tx);
        }
        let block = chain.mine_block();
        let height = BlockHeight(chain.height);
        let mut more = Vec::new();
        for tx in &block {
            more.extend(feed(ChainEvent::Confirmed { tx, height }));
        }
        more.extend(feed(ChainEvent::Tip(ChainTip { height })));
        if !block.is_empty() {
            last = chain.height;
        }
        let mined: Vec<Txid> = block.iter().map(Transaction::compute_txid).collect();
        pending.retain(|t| !mined.contains(&t.compute_txid()));
        pending.retain(|t| {
            t.input
                .iter()
                .all(|i| chain.is_unspent(&i.previous_output) || chain.confirmation(&i.previous_output.txid).is_none())
        });
        confirmed.extend(block);
        for tx in more {
            if !pending.contains(&tx) && chain.confirmation(&tx.compute_txid()).is_none() {
                pending.push(tx);
            }
        }
    }
    if !pending.is_empty() {
        return Err(format!("{} transaction(s) never confirmed", pending.len()).into());
    }
    Ok((confirmed, last))
}

// ------------------------------------------------------------------------------------- Spilman

/// A Spilman payer and payee.
pub struct SpilmanPair {
    pub payer: spilman::Payer,
    pub payee: spilman::Payee,
    pub payer_signer: InMemorySigner,
    pub payee_signer: InMemorySigner,
    pub funding: Transaction,
    pub tip: ChainTip,
    pub meter: Meter,
}

impl SpilmanPair {
    /// Opens a CLTV-variant channel of `capacity` at `height`, expiring `lifetime` blocks later;
    /// `index` picks fresh keys.
    pub fn open(capacity: Amount, height: u32, lifetime: u32, index: u32) -> Result<Self, Error> {
        let payer_signer = signer(0xc1, index);
        let payee_signer = signer(0xd1, index);
        let tip = ChainTip::at(height);
        let fee = Amount::from_sat(300);
        let (payee, fx) = spilman::Payee::new(
            spilman::PayeeConfig {
                variant: spilman::Variant::Cltv,
                payee_script: p2wpkh(2),
                expiry: BlockHeight(height + lifetime),
                min_first_payment: Amount::from_sat(1),
                dust_limit: Amount::from_sat(546),
                payment_fee: fee,
                close_margin: 36,
                htlc_min_blocks: 24,
                min_depth: 0,
                claim_fee: fee,
            },
            &payee_signer,
        );
        let mut meter = Meter::default();
        meter.persist(&fx.update);
        let Some(spilman::Msg::Offer(offer)) = fx.send.into_iter().next() else { return Err("no offer".into()) };
        meter.wire(spilman::Msg::Offer(offer.clone()).encode().len());
        let (payer, opened) = spilman::Payer::open(
            offer,
            spilman::PayerConfig {
                capacity,
                payer_script: p2wpkh(1),
                refund_fee: fee,
                claim_fee: fee,
                first_payment: Amount::from_sat(1_000),
                max_lifetime: lifetime + 1,
            },
            &payer_signer,
            tip,
        )?;
        meter.persist(&opened.update);
        let funding = funding_tx(opened.funding.ok_or("no funding request")?.output, 0x5000 + index);
        let mut pair = SpilmanPair { payer, payee, payer_signer, payee_signer, funding, tip, meter };
        let fx = pair.payer.fund(pair.funding.clone(), &pair.payer_signer)?;
        pair.deliver_from_payer(fx)?;
        Ok(pair)
    }

    /// Delivers the payer's messages (and the answers) through the wire encoding.
    pub fn deliver_from_payer(&mut self, fx: spilman::Effects) -> Result<(), Error> {
        self.meter.persist(&fx.update);
        for m in fx.send {
            let wire = m.encode();
            self.meter.wire(wire.len());
            let back = self.payee.handle_message(spilman::Msg::decode(&wire)?, &self.payee_signer, self.tip)?;
            self.deliver_from_payee(back)?;
        }
        Ok(())
    }

    pub fn deliver_from_payee(&mut self, fx: spilman::Effects) -> Result<(), Error> {
        self.meter.persist(&fx.update);
        for m in fx.send {
            let wire = m.encode();
            self.meter.wire(wire.len());
            let back = self.payer.handle_message(spilman::Msg::decode(&wire)?, &self.payer_signer, self.tip)?;
            self.deliver_from_payer(back)?;
        }
        Ok(())
    }

    /// One payment; `Ok(false)` if the channel cannot carry it.
    pub fn pay(&mut self, amount: Amount) -> Result<bool, Error> {
        match self.payer.pay(amount, &self.payer_signer) {
            Ok(fx) => self.deliver_from_payer(fx).map(|()| true),
            Err(_) => Ok(false),
        }
    }
}

// ----------------------------------------------------------------------------------- Lightning

/// Two Lightning peers, `a` the funder.
pub struct LnPair {
    pub a: lightning::Channel,
    pub b: lightning::Channel,
    pub sa: InMemorySigner,
    pub sb: InMemorySigner,
    pub funding: Transaction,
    pub tip: ChainTip,
    pub meter: Meter,
    pub events: Vec<(bool, lightning::Event)>,
    next_preimage: u64,
}

impl LnPair {
    /// Opens and funds a channel of `capacity`, pushing `push` to `b`, at `height`.
    pub fn open(channel_type: ChannelType, capacity: Amount, push: MilliSats, height: u32) -> Result<Self, Error> {
        let sa = signer(0xe1, 0);
        let sb = signer(0xf1, 0);
        let tip = ChainTip::at(height);
        let config = lightning::ChannelConfig {
            minimum_depth: 1,
            ..lightning::ChannelConfig::default_for([6; 32], channel_type)
        };
        let params = lightning::OpenParams {
            config: config.clone(),
            temporary_channel_id: paychan::driving::ChannelId([9; 32]),
            funding: capacity,
            push,
            feerate_per_kw: 1_000,
        };
        let (a, fx) = lightning::Channel::open(params, &sa, tip)?;
        let Some(lightning::Msg::OpenChannel(open)) = fx.send.first().cloned() else { return Err("no open".into()) };
        let (b, fxb) = lightning::Channel::accept(&open, config, &sb, tip)?;
        let funding = funding_tx(TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new() }, 0x1000);
        let mut p =
            LnPair { a, b, sa, sb, funding, tip, meter: Meter::default(), events: Vec::new(), next_preimage: 0 };
        p.meter.persist(&fx.update);
        p.meter.wire(fx.send.iter().map(|m| m.encode().len()).sum());
        p.deliver(fxb, false)?;
        // `accept_channel` asked the wallet for the funding (`Effects::funding`, asked again by
        // `funding_request()`); the channel broadcasts it once `funding_signed` arrives.
        let request = p.a.funding_request().ok_or("no funding request")?;
        p.funding = funding_tx(request.output, 0x1000);
        let fx = p.a.fund(p.funding.clone(), &p.sa)?;
        p.deliver(fx, true)?;
        let height = BlockHeight(height + 1);
        let funding = p.funding.clone();
        let fx = p.a.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &p.sa);
        p.deliver(fx, true)?;
        let fx = p.b.handle_chain(ChainEvent::Confirmed { tx: &funding, height }, &p.sb);
        p.deliver(fx, false)?;
        p.tip = ChainTip { height };
        Ok(p)
    }

    /// Delivers effects from `a` (`from_a`) or `b`, and every answer, until both are quiet.
    pub fn deliver(&mut self, first: lightning::Effects, from_a: bool) -> Result<Vec<Transaction>, Error> {
        let mut broadcast = Vec::new();
        let mut queue = std::collections::VecDeque::from([(first, from_a)]);
        while let Some((fx, from_a)) = queue.pop_front() {
            self.meter.persist(&fx.update);
            self.events.extend(fx.events.into_iter().map(|e| (from_a, e)));
            broadcast.extend(fx.broadcast);
            for m in fx.send {
                let wire = m.encode();
                self.meter.wire(wire.len());
                let m = lightning::Msg::decode(&wire)?;
                let answer = if from_a {
                    self.b.handle_message(m, &self.sb, self.tip)?
                } else {
                    self.a.handle_message(m, &self.sa, self.tip)?
                };
                queue.push_back((answer, !from_a));
            }
        }
        Ok(broadcast)
    }

    /// One payment as an HTLC: add and commit, then fulfil and commit. `Ok(false)` if the payer
    /// cannot afford it.
    pub fn pay(&mut self, from_a: bool, amount: MilliSats) -> Result<bool, Error> {
        self.next_preimage += 1;
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.next_preimage.to_le_bytes());
        let pre = PaymentPreimage(bytes);
        let expiry = self.tip.height.0 + 100;
        let (payer, ps) = if from_a { (&mut self.a, &self.sa) } else { (&mut self.b, &self.sb) };
        let Ok((id, mut fx)) = payer.add_htlc(amount, pre.hash(), expiry, lightning::OnionPacket::zeroed()) else {
            return Ok(false);
        };
        fx.merge(payer.commit(ps)?);
        self.deliver(fx, from_a)?;
        let (payee, qs) = if from_a { (&mut self.b, &self.sb) } else { (&mut self.a, &self.sa) };
        let mut fx = payee.fulfill_htlc(id, pre)?;
        fx.merge(payee.commit(qs)?);
        self.deliver(fx, !from_a)?;
        Ok(true)
    }
}

// -------------------------------------------------------------------------------------- duplex

/// Two duplex peers: `ch[0]` the initiator (funder), `ch[1]` the acceptor.
pub struct DuplexPair {
    pub ch: [duplex::Channel; 2],
    pub signers: [InMemorySigner; 2],
    pub funding: Transaction,
    pub tip: ChainTip,
    pub meter: Meter,
}

impl DuplexPair {
    /// Opens and funds a channel with these terms at `height`; its funding confirms at
    /// `height + 1` and the tip moves on until both may pay ([`duplex::Channel::sends_from`]).
    pub fn open(terms: duplex::Terms, height: u32, index: u32) -> Result<Self, Error> {
        let signers = [signer(0xa7, index), signer(0xb7, index)];
        let tip = ChainTip::at(height);
        let (alice, fx) = duplex::Channel::open(terms, fees::payout(0xa1), &signers[0], tip)?;
        let Some(duplex::Msg::Open(open)) = fx.send.first().cloned() else { return Err("no open".into()) };
        let (bob, fxb) = duplex::Channel::accept(open, fees::payout(0xb1), &signers[1], tip)?;
        let mut p = DuplexPair {
            ch: [alice, bob],
            signers,
            funding: funding_tx(TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new() }, 0x2000 + index),
            tip,
            meter: Meter::default(),
        };
        p.meter.persist(&fx.update);
        p.meter.wire(fx.send.iter().map(|m| m.encode().len()).sum());
        p.deliver(fxb, duplex::Role::Acceptor)?;
        p.funding = funding_tx(p.ch[0].funding_request().ok_or("no funding request")?.output, 0x2000 + index);
        let funding = p.funding.clone();
        let fx = p.ch[0].fund(funding.clone(), &p.signers[0])?;
        p.deliver(fx, duplex::Role::Initiator)?;
        // The funding confirms in the next block; payments wait until it is deep enough
        // (`funding_depth` confirmations for the receiver, one more for the sender).
        let roles = [duplex::Role::Initiator, duplex::Role::Acceptor];
        let confirmed = BlockHeight(height + 1);
        for role in roles {
            let i = role.index();
            let fx = p.ch[i].handle_chain(ChainEvent::Confirmed { tx: &funding, height: confirmed }, &p.signers[i]);
            p.deliver(fx, role)?;
        }
        p.tip = ChainTip { height: p.ch[0].sends_from().ok_or("funding unconfirmed")? };
        for role in roles {
            let i = role.index();
            let fx = p.ch[i].handle_chain(ChainEvent::Tip(p.tip), &p.signers[i]);
            p.deliver(fx, role)?;
        }
        Ok(p)
    }

    /// Delivers effects of `from`, and every answer, until both are quiet.
    pub fn deliver(&mut self, first: duplex::Effects, from: duplex::Role) -> Result<Vec<Transaction>, Error> {
        let mut broadcast = Vec::new();
        let mut queue = std::collections::VecDeque::from([(first, from)]);
        while let Some((fx, from)) = queue.pop_front() {
            self.meter.persist(&fx.update);
            broadcast.extend(fx.broadcast);
            let to = !from;
            for m in fx.send {
                let wire = m.encode();
                self.meter.wire(wire.len());
                let answer = self.ch[to.index()].handle_message(
                    duplex::Msg::decode(&wire)?,
                    &self.signers[to.index()],
                    self.tip,
                )?;
                queue.push_back((answer, to));
            }
        }
        Ok(broadcast)
    }

    /// One payment from `from`, resetting first if its leaf channel is dry. `Ok(None)` if its
    /// balance cannot cover it, `Ok(Some(false))` if it needs a reset and none is left.
    pub fn pay(&mut self, from: duplex::Role, amount: Amount) -> Result<Option<bool>, Error> {
        let i = from.index();
        for _ in 0..2 {
            match self.ch[i].pay(amount, &self.signers[i]) {
                Ok(fx) => {
                    self.deliver(fx, from)?;
                    return Ok(Some(true));
                }
                Err(duplex::CommandError::ResetNeeded) => match self.ch[i].reset(&self.signers[i], self.tip) {
                    Ok(fx) => {
                        self.deliver(fx, from)?;
                    }
                    Err(duplex::CommandError::Exhausted) => return Ok(Some(false)),
                    Err(e) => return Err(e.into()),
                },
                Err(_) => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// Effects of any layer carry the same fields; this takes the broadcasts out.
pub fn broadcasts<M, E>(fx: Effects<M, E>) -> Vec<Transaction> {
    fx.broadcast
}
