//! A forwarder whose incoming channel is Lightning and whose outgoing channel is Spilman (the
//! route X –Lightning→ Y –Spilman→ Z): the payment settles with Y's exact fee; and when X goes
//! silent after Y fulfils upstream, Y's incoming claim deadline sends the Lightning channel on
//! chain and Y claims the HTLC with the preimage before it expires, every transaction through
//! the simulated chain (lock times, Bitcoin Core's interpreter).

mod common;

use bitcoin::{Amount, Transaction};
use common::chain::Chain;
use common::ln::{onion, Pair};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, MilliSats, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip};
use paychan::lightning;
use paychan::multihop::{FeePolicy, ForwardEvent, Forwarder, ForwarderConfig, HtlcTerms, Requirement, Route};
use paychan::multihop::{NodeEffects, SafetyMargins};
use paychan::spilman::{self, Payee, Payer};

type Y = Forwarder<lightning::Channel, Payer>;

struct Route3 {
    x: lightning::Channel,
    x_keys: InMemorySigner,
    y: Y,
    y_in_keys: InMemorySigner,
    y_out_keys: InMemorySigner,
    z: Payee,
    z_keys: InMemorySigner,
    funding: Transaction,
    tip: ChainTip,
    /// Messages Y sent X that are not delivered (X silent).
    to_x_held: Vec<lightning::Msg>,
    x_silent: bool,
    events: Vec<ForwardEvent>,
}

impl Route3 {
    fn new(ct: ChannelType) -> Route3 {
        let p = Pair::open(ct, 1_000_000, 100_000_000);
        let tip = ChainTip::at(p.tip);
        let keys = |n| InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([n; 32]), 0));
        let (y_out_keys, z_keys) = (keys(0x33), keys(0x34));
        let (y_out, z, _funding) = common::route::open_spilman(&y_out_keys, &z_keys, p.tip + 1_008, tip);
        let config = ForwarderConfig {
            margins: SafetyMargins::default(),
            fee: FeePolicy { base: MilliSats::from_msat(1_000), proportional_millionths: 0 },
            cltv_expiry_delta: 40,
        };
        let y = Forwarder::new(p.b.ch, y_out, config, tip);
        Route3 {
            x: p.a.ch,
            x_keys: p.a.signer,
            y,
            y_in_keys: p.b.signer,
            y_out_keys,
            z,
            z_keys,
            funding: p.funding,
            tip,
            to_x_held: Vec::new(),
            x_silent: false,
            events: Vec::new(),
        }
    }

    /// Delivers Y's effects (and every answer) until the three are quiet.
    fn absorb_y(&mut self, nfx: NodeEffects<lightning::Channel, Payer>) {
        let mut queue = vec![nfx];
        while let Some(nfx) = queue.pop() {
            if !nfx.incoming.send.is_empty() || !nfx.outgoing.send.is_empty() {
                assert!(
                    nfx.incoming.update.is_some() || nfx.outgoing.update.is_some() || nfx.state.is_some(),
                    "Y persists before it sends"
                );
            }
            self.events.extend(nfx.events);
            for m in nfx.outgoing.send {
                let m = spilman::Msg::decode(&m.encode()).expect("wire");
                let fx = self.z.handle_message(m, &self.z_keys, self.tip).expect("Z takes Y's message");
                for back in fx.send {
                    let back = spilman::Msg::decode(&back.encode()).expect("wire");
                    let n = self.y.handle_outgoing_message(back, &self.y_in_keys, &self.y_out_keys, self.tip);
                    queue.push(n.expect("Y takes Z's answer"));
                }
            }
            for m in nfx.incoming.send {
                if self.x_silent {
                    self.to_x_held.push(m);
                    continue;
                }
                let m = lightning::Msg::decode(&m.encode()).expect("wire");
                let fx = self.x.handle_message(m, &self.x_keys, self.tip).expect("X takes Y's message");
                let mut answers = fx.send;
                if self.x.has_unsigned_changes() && !self.x.is_awaiting_revoke() {
                    answers.extend(self.x.commit(&self.x_keys).expect("X signs").send);
                }
                for back in answers {
                    let back = lightning::Msg::decode(&back.encode()).expect("wire");
                    let n = self.y.handle_incoming_message(back, &self.y_in_keys, &self.y_out_keys, self.tip);
                    queue.push(n.expect("Y takes X's message"));
                }
            }
        }
    }

    /// X pays `amount` (plus Y's fee) through Y to Z; Y's route is known to it. Returns the
    /// preimage and the incoming HTLC's expiry.
    fn pay(&mut self, amount: MilliSats) -> (PaymentPreimage, u32) {
        let preimage = PaymentPreimage([0x5e; 32]);
        let Requirement::AtLeast(floor) = self.y.requirement() else { panic!("Spilman out: an absolute floor") };
        let out = HtlcTerms { amount, expiry: BlockHeight(self.tip.height.0 + 900) };
        self.y.add_route(Route { payment_hash: preimage.hash(), outgoing: out });
        let with_fee = MilliSats::from_msat(amount.to_msat() + 1_000);
        let (_, mut fx) = self.x.add_htlc(with_fee, preimage.hash(), floor.0, onion()).expect("X offers");
        fx.merge(self.x.commit(&self.x_keys).expect("X signs"));
        for m in fx.send {
            let m = lightning::Msg::decode(&m.encode()).expect("wire");
            let n = self.y.handle_incoming_message(m, &self.y_in_keys, &self.y_out_keys, self.tip).expect("Y takes");
            self.absorb_y(n);
        }
        assert!(self.events.iter().any(|e| matches!(e, ForwardEvent::Forwarded { .. })), "{:?}", self.events);
        (preimage, floor.0)
    }

    /// Z, the recipient, fulfils over Spilman; Y learns the preimage.
    fn z_fulfils(&mut self, preimage: PaymentPreimage) {
        let fx = self.z.fulfill_htlc(0, preimage, &self.z_keys).expect("Z fulfils");
        for m in fx.send {
            let m = spilman::Msg::decode(&m.encode()).expect("wire");
            let n = self.y.handle_outgoing_message(m, &self.y_in_keys, &self.y_out_keys, self.tip).expect("Y takes");
            self.absorb_y(n);
        }
    }
}

const TYPES: [ChannelType; 2] = [ChannelType::StaticRemoteKey, ChannelType::AnchorsZeroFeeHtlc];

#[test]
fn a_payment_from_lightning_to_spilman_settles_with_the_fee() {
    for ct in TYPES {
        let mut r = Route3::new(ct);
        let x_before = r.x.balances(lightning::Side::Holder).holder;
        let (preimage, _) = r.pay(MilliSats::from_msat(50_000_000));
        r.z_fulfils(preimage);
        assert!(r
            .events
            .iter()
            .any(|e| matches!(e, ForwardEvent::Settled { fee, .. } if *fee == MilliSats::from_msat(1_000))));
        // X's side is settled off chain: it paid the amount plus the fee, and holds no HTLC.
        assert!(r.x.htlcs().is_empty() && r.y.incoming().htlcs().is_empty(), "{:?}", r.x.htlcs());
        assert_eq!(x_before.to_msat() - r.x.balances(lightning::Side::Holder).holder.to_msat(), 50_001_000);
        assert!(r.y.outgoing().state().htlcs.is_empty(), "the Spilman HTLC is settled into Z's balance");
    }
}

#[test]
fn silent_upstream_sends_the_lightning_channel_on_chain_before_the_incoming_expiry() {
    for ct in TYPES {
        let mut r = Route3::new(ct);
        let (preimage, expiry) = r.pay(MilliSats::from_msat(50_000_000));
        // X goes silent: Y's fulfil (and everything after it) never arrives.
        r.x_silent = true;
        r.z_fulfils(preimage);
        assert!(r.events.iter().any(|e| matches!(e, ForwardEvent::Settled { .. })), "Y fulfilled upstream");
        assert!(!r.to_x_held.is_empty());
        // Blocks go by; Y goes on chain once the incoming HTLC's claim window is reached.
        let mut chain = Chain::at(r.tip.height.0);
        chain.credit(&r.funding);
        let mut broadcast = Vec::new();
        let mut went = None;
        for h in r.tip.height.0 + 1..expiry {
            chain.height = h;
            r.tip = ChainTip::at(h);
            let n = r.y.handle_chain(ChainEvent::Tip(r.tip), &r.y_in_keys, &r.y_out_keys);
            if n.events.iter().any(|e| matches!(e, ForwardEvent::WentOnChain { incoming: true })) {
                assert!(went.is_none(), "on chain once");
                went = Some(h);
            }
            broadcast.extend(n.incoming.broadcast);
            if went.is_some() {
                break;
            }
        }
        let went = went.expect("Y went on chain before the expiry");
        assert!(expiry - went >= SafetyMargins::default().reorg_depth, "in time: at {went}, expiry {expiry}");
        // Y's commitment confirms; Y claims the HTLC with the preimage (HTLC-success).
        let commitment = broadcast
            .iter()
            .find(|t| t.input[0].previous_output.txid == r.funding.compute_txid())
            .cloned()
            .expect("Y broadcast its commitment");
        chain.mine(&commitment).expect("commitment valid");
        let fx =
            r.y.handle_chain(
                ChainEvent::Confirmed { tx: &commitment, height: BlockHeight(chain.height) },
                &r.y_in_keys,
                &r.y_out_keys,
            )
            .incoming;
        let (mut claims, mut bumps) = (fx.broadcast, fx.bumps);
        chain.height += 1;
        let fx = r.y.handle_chain(ChainEvent::Tip(ChainTip::at(chain.height)), &r.y_in_keys, &r.y_out_keys).incoming;
        claims.extend(fx.broadcast);
        bumps.extend(fx.bumps);
        let success = claims
            .iter()
            .find(|t| {
                t.input.iter().any(|i| {
                    i.previous_output.txid == commitment.compute_txid()
                        && preimage.hash().find_preimage_in(&i.witness) == Some(preimage)
                })
            })
            .cloned()
            .expect("Y claims the HTLC with the preimage");
        if ct == ChannelType::AnchorsZeroFeeHtlc {
            // Zero-fee: Y's bumper pays for it with a wallet input.
            let mut wallet = common::wallet::FeeCoins::new(common::wallet::Wallet::new(0x61));
            wallet.add_coin(&mut chain, Amount::from_sat(20_000));
            let mut bumper = paychan::core::feebump::Bumper::new();
            for b in bumps.iter().filter(|b| b.tx == success) {
                let _ = bumper.track(b.clone());
            }
            let est = paychan::core::feebump::FeeEstimates::flat(paychan::core::commitment::FeeratePerKw(1_000));
            let out = bumper.bump(BlockHeight(chain.height), &est, &mut wallet, &r.y_in_keys);
            let bumped = out.broadcast.first().cloned().expect("the aggregate");
            chain.mine(&bumped).expect("bumped HTLC-success valid");
        } else {
            chain.mine(&success).expect("HTLC-success valid");
        }
        assert!(chain.height < expiry, "claimed at {} before the expiry {expiry}", chain.height);
        eprintln!("{ct:?}: Y went on chain at {went}, claimed at {}, incoming expiry {expiry}", chain.height);
    }
}
