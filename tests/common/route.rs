//! A route A –Spilman→ B –duplex→ C –Lightning→ D on one simulated chain, one payment hash.
//!
//! A is a Spilman payer (the sender), B and C are [`Forwarder`]s, D is a Lightning channel (the
//! recipient). Every message crosses the wire encoding; links can be cut (messages dropped); every
//! broadcast goes through the mempool and so through Bitcoin Core's interpreter, with lock times
//! enforced; every effect is checked to persist before it sends or broadcasts.

use std::collections::VecDeque;

use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, Txid, WPubkeyHash, Witness};
use paychan::core::commitment::ChannelType;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::{BlockHeight, MilliSats, PaymentHash, PaymentPreimage};
use paychan::driving::{ChainEvent, ChainTip, Effects};
use paychan::lightning::Side;
use paychan::multihop::{
    min_final_cltv_expiry_delta, FeePolicy, ForwardEvent, ForwardState, Forwarder, ForwarderConfig, HopKind,
    HtlcChannel, HtlcSignal, HtlcTerms, Requirement, Route as RouteInstr, SafetyMargins,
};
use paychan::{duplex, lightning, spilman};

use super::chain::{Chain, Reject};

/// Node B: Spilman in, duplex out.
pub type NodeB = Forwarder<spilman::Payee, duplex::Channel>;
/// Node C: duplex in, Lightning out.
pub type NodeC = Forwarder<duplex::Channel, lightning::Channel>;

/// The chain assumptions of every node (the duplex test terms use the same `R`, `G`, `S`).
pub const MARGINS: SafetyMargins = SafetyMargins { reorg_depth: 1, grace: 2, confirm: 1 };
/// The Spilman channel's refund height.
pub const SPILMAN_EXPIRY: u32 = 1_400;
/// The Spilman payee's close margin.
pub const CLOSE_MARGIN: u32 = 6;
/// What D is paid.
pub const AMOUNT_D: u64 = 50_000_000;

/// A one-way link.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Link {
    /// A → B (Spilman).
    AB,
    /// B → A.
    BA,
    /// B → C (duplex).
    BC,
    /// C → B.
    CB,
    /// C → D (Lightning).
    CD,
    /// D → C.
    DC,
}

/// What D does with the HTLC.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Final {
    /// Fulfils it.
    Fulfill,
    /// Fails it.
    Fail,
    /// Goes silent once it holds it (the links to and from D are cut).
    Silent,
}

/// The amounts and expiries of the three HTLCs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Plan {
    /// A → B.
    pub ab: HtlcTerms,
    /// B → C.
    pub bc: HtlcTerms,
    /// C → D.
    pub cd: HtlcTerms,
}

/// The route and its chain.
pub struct Route {
    pub chain: Chain,
    pub a: spilman::Payer,
    pub sa: InMemorySigner,
    pub b: NodeB,
    pub sb_in: InMemorySigner,
    pub sb_out: InMemorySigner,
    pub c: NodeC,
    pub sc_in: InMemorySigner,
    pub sc_out: InMemorySigner,
    pub d: lightning::Channel,
    pub sd: InMemorySigner,
    pub to_b_in: VecDeque<spilman::Msg>,
    pub to_a: VecDeque<spilman::Msg>,
    pub to_c_in: VecDeque<duplex::Msg>,
    pub to_b_out: VecDeque<duplex::Msg>,
    pub to_d: VecDeque<lightning::Msg>,
    pub to_c_out: VecDeque<lightning::Msg>,
    /// Links whose messages are dropped.
    pub cut: Vec<Link>,
    /// Broadcasts not yet accepted by the mempool (not yet valid), by node letter.
    pub pending: Vec<(char, Transaction)>,
    /// Who broadcast what.
    pub broadcast_by: Vec<(bitcoin::Txid, char)>,
    /// What happened, in order (for narration and for ordering checks).
    pub log: Vec<String>,
    pub a_events: Vec<spilman::Event>,
    pub b_events: Vec<ForwardEvent>,
    pub c_events: Vec<ForwardEvent>,
    pub d_events: Vec<lightning::Event>,
    pub b_out_events: Vec<duplex::Event>,
    pub c_out_events: Vec<lightning::Event>,
    /// The records C's Lightning channel appended (onions of its HTLCs, penalty records).
    pub c_out_records: Vec<Vec<u8>>,
    pub final_mode: Final,
    /// Links cut the moment D fulfils (the preimage's way back is blocked there).
    pub cut_on_fulfil: Vec<Link>,
    /// D closes its channel on chain right after fulfilling (its fulfil message is then lost).
    pub d_goes_on_chain: bool,
    pub preimage: PaymentPreimage,
    /// Checks run after every forwarder step (the invariants of the property test).
    pub violations: Vec<String>,
}

fn p2wpkh(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

/// A's and B's payout scripts on the Spilman channel.
pub fn spilman_script(payer: bool) -> ScriptBuf {
    if payer {
        p2wpkh(0x1a)
    } else {
        p2wpkh(0x1b)
    }
}

fn signer(seed: u8, index: u64) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), index))
}

fn sp_wire(m: &spilman::Msg) -> spilman::Msg {
    spilman::Msg::decode(&m.encode()).expect("own encoding decodes")
}

fn dx_wire(m: &duplex::Msg) -> duplex::Msg {
    duplex::Msg::decode(&m.encode()).expect("own encoding decodes")
}

fn ln_wire(m: &lightning::Msg) -> lightning::Msg {
    lightning::Msg::decode(&m.encode()).expect("own encoding decodes")
}

/// The persistence contract of one channel's effects: anything broadcast, and any message
/// `needs_write` says must be, comes with an update, and the update is the channel's state now
/// (a full snapshot; or a delta of that update yielding a state of that size).
fn check_fx<M, E>(fx: &Effects<M, E>, snapshot: Vec<u8>, what: &str, needs_write: fn(&M) -> bool) {
    if fx.send.iter().any(needs_write) || !fx.broadcast.is_empty() {
        assert!(fx.update.is_some(), "{what}: sent or broadcast without persisting first");
    }
    if let Some(u) = &fx.update {
        match &u.snapshot {
            Some(full) => assert_eq!(full, &snapshot, "{what}: the update is the channel's state"),
            None => {
                let delta = paychan::core::delta::DeltaRecord::decode(u.records.last().expect("a delta"))
                    .expect("the last record is a delta");
                assert_eq!(delta.update_id(), u.update_id, "{what}: the delta is of the update");
                assert_eq!(delta.result_len(), snapshot.len() as u64, "{what}: the delta yields the state");
            }
        }
    }
}

fn always<M>(_: &M) -> bool {
    true
}

/// The payee terms of [`open_spilman`]: CLTV variant, refundable at `expiry`.
pub fn spilman_payee_config(expiry: u32) -> spilman::PayeeConfig {
    spilman::PayeeConfig {
        variant: spilman::Variant::Cltv,
        payee_script: spilman_script(false),
        expiry: BlockHeight(expiry),
        min_first_payment: Amount::from_sat(10_000),
        dust_limit: Amount::from_sat(546),
        payment_fee: Amount::from_sat(500),
        close_margin: CLOSE_MARGIN,
        htlc_min_blocks: 12,
        min_depth: 0,
        claim_fee: Amount::from_sat(300),
    }
}

/// The payer choices of [`open_spilman`]: 1,000,000 sat, a first payment of 10,000.
pub fn spilman_payer_config() -> spilman::PayerConfig {
    spilman::PayerConfig {
        capacity: Amount::from_sat(1_000_000),
        payer_script: spilman_script(true),
        refund_fee: Amount::from_sat(500),
        claim_fee: Amount::from_sat(300),
        first_payment: Amount::from_sat(10_000),
        max_lifetime: 10_000,
    }
}

/// Opens a Spilman channel (CLTV variant, 1,000,000 sat) from `payer_keys` to `payee_keys`,
/// refundable at `expiry`, through the wire encoding. Returns the payer, the payee and the funding
/// transaction (not yet on any chain).
pub fn open_spilman(
    payer_keys: &InMemorySigner,
    payee_keys: &InMemorySigner,
    expiry: u32,
    tip: ChainTip,
) -> (spilman::Payer, spilman::Payee, Transaction) {
    let (mut payee, fx) = spilman::Payee::new(spilman_payee_config(expiry), payee_keys);
    let Some(spilman::Msg::Offer(offer)) = fx.send.first().map(sp_wire) else { panic!("offer") };
    let mut payer = spilman::Payer::new(offer, spilman_payer_config(), payer_keys, tip).expect("offer acceptable");
    let funding = paychan::testing::wallet::unsigned_funding(
        OutPoint { txid: Txid::from_byte_array([0x51; 32]), vout: 0 },
        vec![payer.funding_output()],
    );
    let fx = payer.fund(funding.clone(), payer_keys).expect("fund");
    for m in fx.send {
        let reply = payee.handle_message(sp_wire(&m), payee_keys, tip).expect("payee opens");
        for r in reply.send {
            let _ack = payer.handle_message(sp_wire(&r), payer_keys, tip).expect("payer takes ack");
        }
    }
    (payer, payee, funding)
}

/// Sum of `fee(out)` plus `out`, rounded up to whole satoshis (what a sender puts on a
/// satoshi-denominated channel).
pub fn with_fee_sat(out: MilliSats, fee: FeePolicy) -> MilliSats {
    let total = out.to_msat() + fee.fee(out).expect("fee").to_msat();
    MilliSats::from_msat(total.div_ceil(1_000) * 1_000)
}

/// The fee policy of B and C.
pub fn fee_policy() -> FeePolicy {
    FeePolicy { base: MilliSats::from_msat(1_000), proportional_millionths: 1_000 }
}

impl Route {
    /// Opens the three channels on one chain (Spilman A→B, duplex B↔C with B having paid C
    /// 1,000 sat, Lightning C↔D funded by C) and wraps B and C in forwarders.
    pub fn open(final_mode: Final) -> Route {
        // Duplex B (initiator) ↔ C (acceptor); its chain becomes the route's chain.
        let mut dx = super::duplex::Pair::open(super::duplex::terms(vec![2, 2]));
        dx.pay(duplex::Role::Initiator, 1_000);
        let mut chain = dx.chain.clone();
        let [pb, pc] = dx.parties;

        // Spilman A (payer) → B (payee).
        let (sa, sb_in) = (signer(0x1a, 0), signer(0x1b, 0));
        let tip = ChainTip::at(chain.height);
        let (payer, payee, funding) = open_spilman(&sa, &sb_in, SPILMAN_EXPIRY, tip);
        chain.credit(&funding);

        // Lightning C (funder) ↔ D.
        // Its HTLC deadlines on the same (short) chain assumptions as the forwarders'.
        let config = lightning::ChannelConfig {
            htlc_deadlines: lightning::HtlcDeadlines {
                offered_grace: MARGINS.grace,
                claim_margin: min_final_cltv_expiry_delta(HopKind::Lightning, MARGINS),
            },
            ..super::ln::config(ChannelType::StaticRemoteKey)
        };
        let ln = super::ln::Pair::open_with(config.clone(), config, 1_000_000, 100_000_000, 2_500);
        chain.advance(1);
        chain.credit(&ln.funding);
        let (lc, ld) = (ln.a, ln.b);

        let config = ForwarderConfig { margins: MARGINS, fee: fee_policy(), cltv_expiry_delta: 0 };
        let tip = ChainTip::at(chain.height);
        let b = Forwarder::new(payee, pb.ch, config, tip);
        let c = Forwarder::new(pc.ch, lc.ch, config, tip);
        let mut route = Route {
            chain,
            a: payer,
            sa,
            b,
            sb_in,
            sb_out: pb.signer,
            c,
            sc_in: pc.signer,
            sc_out: lc.signer,
            d: ld.ch,
            sd: ld.signer,
            to_b_in: VecDeque::new(),
            to_a: VecDeque::new(),
            to_c_in: VecDeque::new(),
            to_b_out: VecDeque::new(),
            to_d: VecDeque::new(),
            to_c_out: VecDeque::new(),
            cut: Vec::new(),
            pending: Vec::new(),
            broadcast_by: Vec::new(),
            log: Vec::new(),
            a_events: Vec::new(),
            b_events: Vec::new(),
            c_events: Vec::new(),
            d_events: Vec::new(),
            b_out_events: Vec::new(),
            c_out_events: Vec::new(),
            c_out_records: Vec::new(),
            final_mode,
            cut_on_fulfil: Vec::new(),
            d_goes_on_chain: false,
            preimage: PaymentPreimage([0x77; 32]),
            violations: Vec::new(),
        };
        route.tip_all();
        route.log.clear();
        route
    }

    /// The payment hash.
    pub fn hash(&self) -> PaymentHash {
        self.preimage.hash()
    }

    /// The current tip.
    pub fn tip(&self) -> ChainTip {
        ChainTip::at(self.chain.height)
    }

    /// The route a sender builds from the tip: D gets [`AMOUNT_D`] with `final_slack` blocks more
    /// than D's minimum; each hop gets its fee and the smallest expiry delta its two channel types
    /// allow (docs/multihop.md §2) plus `slack`.
    pub fn plan(&self, final_slack: u32, slack: u32) -> Plan {
        self.plan_with(final_slack, slack as i32, slack as i32)
    }

    /// As [`Route::plan`], with C's and B's expiry deltas off their minimum by `c_slack` and
    /// `b_slack` blocks (negative: too small, the hop must refuse).
    pub fn plan_with(&self, final_slack: u32, c_slack: i32, b_slack: i32) -> Plan {
        let tip = self.chain.height;
        let cd = HtlcTerms {
            amount: MilliSats::from_msat(AMOUNT_D),
            expiry: BlockHeight(tip + min_final_cltv_expiry_delta(HopKind::Lightning, MARGINS) + final_slack),
        };
        let delta = |r: Requirement| match r {
            Requirement::Delta(d) => d,
            Requirement::AtLeast(_) => panic!("no Spilman outgoing hop on this route"),
        };
        let bc = HtlcTerms {
            amount: with_fee_sat(cd.amount, fee_policy()),
            expiry: BlockHeight(
                cd.expiry.0.checked_add_signed(delta(self.c.requirement()) as i32 + c_slack).expect("height"),
            ),
        };
        let ab = HtlcTerms {
            amount: with_fee_sat(bc.amount, fee_policy()),
            expiry: BlockHeight(
                bc.expiry.0.checked_add_signed(delta(self.b.requirement()) as i32 + b_slack).expect("height"),
            ),
        };
        Plan { ab, bc, cd }
    }

    /// Hands the forwarding instructions to B and C (what the onion would carry).
    pub fn install(&mut self, plan: &Plan) {
        let h = self.hash();
        self.b.add_route(RouteInstr { payment_hash: h, outgoing: plan.bc });
        self.c.add_route(RouteInstr { payment_hash: h, outgoing: plan.cd });
    }

    /// A offers the first HTLC.
    pub fn send(&mut self, plan: &Plan) {
        let tip = self.tip();
        let hash = self.hash();
        let (id, fx) = HtlcChannel::offer_htlc(&mut self.a, plan.ab.amount, hash, plan.ab.expiry, &self.sa, tip)
            .expect("A offers the HTLC");
        self.log.push(format!("A offers HTLC {id}: {} expiring at {}", plan.ab.amount, plan.ab.expiry));
        self.absorb_a(fx);
    }

    fn push<M>(cut: &[Link], link: Link, q: &mut VecDeque<M>, msgs: Vec<M>, log: &mut Vec<String>) {
        if cut.contains(&link) {
            if !msgs.is_empty() {
                log.push(format!("  ({} message(s) on {link:?} lost)", msgs.len()));
            }
            return;
        }
        q.extend(msgs);
    }

    fn absorb_a(&mut self, fx: spilman::Effects) {
        check_fx(&fx, self.a.snapshot(), "A", always);
        for e in &fx.events {
            self.log.push(format!("A: {e:?}"));
        }
        self.a_events.extend(fx.events);
        self.pending.extend(fx.broadcast.into_iter().map(|t| ('A', t)));
        Self::push(&self.cut, Link::AB, &mut self.to_b_in, fx.send, &mut self.log);
    }

    fn absorb_d(&mut self, fx: lightning::Effects) {
        check_fx(&fx, self.d.snapshot(), "D", paychan::testing::lightning::needs_write);
        let received: Vec<(u64, BlockHeight)> = fx
            .events
            .iter()
            .filter_map(|e| match lightning::Channel::signal(e) {
                Some(HtlcSignal::Received { id, expiry, .. }) => Some((id, expiry)),
                _ => None,
            })
            .collect();
        self.d_events.extend(fx.events);
        self.pending.extend(fx.broadcast.into_iter().map(|t| ('D', t)));
        Self::push(&self.cut, Link::DC, &mut self.to_c_out, fx.send, &mut self.log);
        for (id, expiry) in received {
            let final_ok = expiry.0 >= self.chain.height + min_final_cltv_expiry_delta(HopKind::Lightning, MARGINS);
            let tip = self.tip();
            if self.final_mode == Final::Silent {
                self.log.push(format!("D: HTLC {id} irrevocably received; D goes silent"));
                self.cut.extend([Link::CD, Link::DC]);
                continue;
            }
            let fx = if self.final_mode == Final::Fulfill && final_ok {
                self.log.push(format!("D: HTLC {id} irrevocably received; fulfils it with the preimage"));
                self.cut.extend(self.cut_on_fulfil.iter().copied());
                let mut fx =
                    HtlcChannel::fulfill_htlc(&mut self.d, id, self.preimage, &self.sd, tip).expect("D fulfils");
                if self.d_goes_on_chain {
                    self.cut.push(Link::DC);
                    self.log.push("D: its fulfil is lost; D force-closes to claim on chain".to_string());
                    fx.merge(HtlcChannel::go_on_chain(&mut self.d, &self.sd));
                }
                fx
            } else {
                self.log.push(format!("D: HTLC {id} irrevocably received; fails it"));
                HtlcChannel::fail_htlc(&mut self.d, id, &self.sd).expect("D fails")
            };
            self.absorb_d(fx);
        }
    }

    fn absorb_b(&mut self, fx: paychan::multihop::NodeEffects<spilman::Payee, duplex::Channel>) {
        check_fx(&fx.incoming, self.b.incoming().snapshot(), "B incoming", always);
        check_fx(&fx.outgoing, self.b.outgoing().snapshot(), "B outgoing", always);
        if let Some(st) = &fx.state {
            assert_eq!(st, &self.b.snapshot(), "B's state update is its state");
            let back = Forwarder::restore(self.b.incoming().clone(), self.b.outgoing().clone(), *self.b.config(), st)
                .expect("B restores");
            assert_eq!(&back.snapshot(), st);
        }
        assert!(fx.events.is_empty() || fx.state.is_some(), "B persists what it did");
        self.b_out_events.extend(fx.outgoing.events.iter().cloned());
        for e in &fx.events {
            self.log.push(format!("B: {e:?}"));
            if let ForwardEvent::FailedUpstream { incoming_id, .. } = e {
                self.check_b_fail(*incoming_id);
            }
        }
        self.check_forwarded_deltas();
        self.b_events.extend(fx.events);
        self.pending.extend(fx.incoming.broadcast.into_iter().map(|t| ('B', t)));
        self.pending.extend(fx.outgoing.broadcast.into_iter().map(|t| ('B', t)));
        Self::push(&self.cut, Link::BA, &mut self.to_a, fx.incoming.send, &mut self.log);
        Self::push(&self.cut, Link::BC, &mut self.to_c_in, fx.outgoing.send, &mut self.log);
    }

    fn absorb_c(&mut self, fx: paychan::multihop::NodeEffects<duplex::Channel, lightning::Channel>) {
        check_fx(&fx.incoming, self.c.incoming().snapshot(), "C incoming", always);
        check_fx(&fx.outgoing, self.c.outgoing().snapshot(), "C outgoing", paychan::testing::lightning::needs_write);
        if let Some(st) = &fx.state {
            assert_eq!(st, &self.c.snapshot(), "C's state update is its state");
            let back = Forwarder::restore(self.c.incoming().clone(), self.c.outgoing().clone(), *self.c.config(), st)
                .expect("C restores");
            assert_eq!(&back.snapshot(), st);
        }
        assert!(fx.events.is_empty() || fx.state.is_some(), "C persists what it did");
        self.c_out_events.extend(fx.outgoing.events.iter().cloned());
        if let Some(u) = &fx.outgoing.update {
            self.c_out_records.extend(u.records.iter().cloned());
        }
        for e in &fx.events {
            self.log.push(format!("C: {e:?}"));
            if let ForwardEvent::FailedUpstream { incoming_id, .. } = e {
                self.check_c_fail(*incoming_id);
            }
        }
        self.check_forwarded_deltas();
        self.c_events.extend(fx.events);
        self.pending.extend(fx.incoming.broadcast.into_iter().map(|t| ('C', t)));
        self.pending.extend(fx.outgoing.broadcast.into_iter().map(|t| ('C', t)));
        Self::push(&self.cut, Link::CB, &mut self.to_b_out, fx.incoming.send, &mut self.log);
        Self::push(&self.cut, Link::CD, &mut self.to_d, fx.outgoing.send, &mut self.log);
    }

    /// B failed upstream: the duplex HTLC it offered must be irrevocably gone (dropped by a
    /// completed reset, or resolved on chain without a preimage).
    fn check_b_fail(&mut self, incoming_id: u64) {
        let t = self.b.tracked().iter().find(|t| t.incoming_id == incoming_id).copied();
        let Some(out) = t.and_then(|t| t.outgoing) else { return };
        let ch = self.b.outgoing();
        let still = ch.leaf_state(duplex::Role::Initiator).htlcs.iter().any(|h| h.expiry == out.expiry);
        let irrevocable = self.b_out_events.iter().any(|e| matches!(e, duplex::Event::HtlcFailIrrevocable { .. }));
        if (still && ch.phase() == duplex::Phase::Open) || !irrevocable {
            self.violations.push(format!("B failed upstream before the duplex failure was irrevocable ({t:?})"));
        }
    }

    /// C failed upstream: the Lightning HTLC it offered must be irrevocably removed.
    fn check_c_fail(&mut self, incoming_id: u64) {
        let t = self.c.tracked().iter().find(|t| t.incoming_id == incoming_id).copied();
        if t.and_then(|t| t.outgoing).is_none() {
            return;
        }
        let ln = self.c.outgoing();
        let offered: Vec<u64> = ln.htlcs().iter().filter(|h| h.offerer == Side::Holder).map(|h| h.id).collect();
        let removed = offered.iter().all(|id| ln.is_htlc_removed(Side::Holder, *id)) || ln.closing_kind().is_some();
        if !removed {
            self.violations.push(format!("C failed upstream before the Lightning removal was irrevocable ({t:?})"));
        }
    }

    /// Every forwarded HTLC left at least the docs/multihop.md §2 delta.
    fn check_forwarded_deltas(&mut self) {
        for (name, req, tracked) in
            [("B", self.b.requirement(), self.b.tracked()), ("C", self.c.requirement(), self.c.tracked())]
        {
            for t in tracked {
                let Some(out) = t.outgoing else { continue };
                let ok = match req {
                    Requirement::Delta(d) => t.incoming.expiry.0 >= out.expiry.0 + d,
                    Requirement::AtLeast(h) => t.incoming.expiry >= h,
                };
                if !ok {
                    self.violations.push(format!("{name} forwarded with too small a delta: {t:?}"));
                }
            }
        }
    }

    /// B and C crash and come back from what they persisted: each channel from its snapshot, each
    /// forwarder from its state.
    pub fn restart_forwarders(&mut self) {
        use paychan::driving::RestoreCheck;
        let any = RestoreCheck::default();
        let b_in = spilman::Payee::restore(&self.b.incoming().snapshot(), any).expect("B's Spilman side restores");
        let b_out = duplex::Channel::restore(&self.b.outgoing().snapshot(), any).expect("B's duplex side restores");
        self.b = Forwarder::restore(b_in, b_out, *self.b.config(), &self.b.snapshot()).expect("B restores");
        let c_in = duplex::Channel::restore(&self.c.incoming().snapshot(), any).expect("C's duplex side restores");
        let c_out = lightning::Channel::restore_with_records(&self.c.outgoing().snapshot(), &self.c_out_records, any)
            .expect("C's Lightning side restores");
        self.c = Forwarder::restore(c_in, c_out, *self.c.config(), &self.c.snapshot()).expect("C restores");
    }

    /// Delivers one message from the queue `q` (0..6), if any; returns whether one was delivered.
    pub fn deliver(&mut self, q: usize) -> bool {
        let tip = self.tip();
        match q {
            0 => {
                let Some(m) = self.to_b_in.pop_front() else { return false };
                let fx = self
                    .b
                    .handle_incoming_message(sp_wire(&m), &self.sb_in, &self.sb_out, tip)
                    .expect("B takes A's message");
                self.absorb_b(fx);
            }
            1 => {
                let Some(m) = self.to_a.pop_front() else { return false };
                let fx = self.a.handle_message(sp_wire(&m), &self.sa, tip).expect("A takes B's message");
                self.absorb_a(fx);
            }
            2 => {
                let Some(m) = self.to_c_in.pop_front() else { return false };
                let fx = self
                    .c
                    .handle_incoming_message(dx_wire(&m), &self.sc_in, &self.sc_out, tip)
                    .expect("C takes B's message");
                self.absorb_c(fx);
            }
            3 => {
                let Some(m) = self.to_b_out.pop_front() else { return false };
                let fx = self
                    .b
                    .handle_outgoing_message(dx_wire(&m), &self.sb_in, &self.sb_out, tip)
                    .expect("B takes C's message");
                self.absorb_b(fx);
            }
            4 => {
                let Some(m) = self.to_d.pop_front() else { return false };
                let fx =
                    HtlcChannel::handle_message(&mut self.d, ln_wire(&m), &self.sd, tip).expect("D takes C's message");
                self.absorb_d(fx);
            }
            _ => {
                let Some(m) = self.to_c_out.pop_front() else { return false };
                let fx = self
                    .c
                    .handle_outgoing_message(ln_wire(&m), &self.sc_in, &self.sc_out, tip)
                    .expect("C takes D's message");
                self.absorb_c(fx);
            }
        }
        true
    }

    /// Delivers every message until quiet.
    pub fn run(&mut self) {
        loop {
            let mut any = false;
            for q in 0..6 {
                while self.deliver(q) {
                    any = true;
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Tells every node the tip.
    fn tip_all(&mut self) {
        let tip = self.tip();
        let fx = self.a.handle_chain(ChainEvent::Tip(tip), &self.sa);
        self.absorb_a(fx);
        let fx = self.b.handle_chain(ChainEvent::Tip(tip), &self.sb_in, &self.sb_out);
        self.absorb_b(fx);
        let fx = self.c.handle_chain(ChainEvent::Tip(tip), &self.sc_in, &self.sc_out);
        self.absorb_c(fx);
        let fx = HtlcChannel::handle_chain(&mut self.d, ChainEvent::Tip(tip), &self.sd);
        self.absorb_d(fx);
    }

    /// Mines one block: pending broadcasts go to the mempool (those not valid yet wait; any other
    /// refusal is a bug), the block is mined, every node sees its transactions and the new tip,
    /// and messages are delivered.
    pub fn mine(&mut self) -> Vec<Transaction> {
        self.mine_with(|_| {})
    }

    /// As [`Route::mine`], with `before_block` run once the pending broadcasts reached the
    /// mempool and before the block is mined (what a third party does to the mempool meanwhile).
    pub fn mine_with(&mut self, before_block: impl FnOnce(&mut Route)) -> Vec<Transaction> {
        let pending = std::mem::take(&mut self.pending);
        for (who, tx) in &pending {
            let txid = tx.compute_txid();
            if !self.broadcast_by.contains(&(txid, *who)) {
                self.broadcast_by.push((txid, *who));
            }
        }
        for (who, tx) in pending {
            match self.chain.submit(&tx) {
                Ok(()) => {}
                Err(Reject::NonFinal { .. } | Reject::RelativeLock { .. }) => self.pending.push((who, tx)),
                // A parent not mined yet (it waits in the mempool), or already spent by a
                // conflicting transaction that won.
                Err(Reject::MissingOrSpent(op)) => {
                    if self.chain.mempool().iter().any(|m| m.compute_txid() == op.txid)
                        || self.pending.iter().any(|(_, p)| p.compute_txid() == op.txid)
                    {
                        self.pending.push((who, tx));
                    }
                }
                Err(e) => panic!("{who} broadcast an invalid transaction {}: {e:?}", tx.compute_txid()),
            }
        }
        before_block(self);
        let mined = self.chain.mine_block();
        let height = BlockHeight(self.chain.height);
        for tx in &mined {
            let txid = tx.compute_txid();
            let who: Vec<String> =
                self.broadcast_by.iter().filter(|(t, _)| *t == txid).map(|(_, w)| w.to_string()).collect();
            let who = who.join(" and ");
            let reveals = tx.input.iter().any(|i| self.hash().find_preimage_in(&i.witness).is_some());
            self.log.push(format!(
                "block {}: {txid} confirmed ({} in, {} out, broadcast by {who}{})",
                height.0,
                tx.input.len(),
                tx.output.len(),
                if reveals { "; its witness reveals the preimage" } else { "" }
            ));
            let ev = ChainEvent::Confirmed { tx, height };
            let fx = self.a.handle_chain(ev, &self.sa);
            self.absorb_a(fx);
            let fx = self.b.handle_chain(ev, &self.sb_in, &self.sb_out);
            self.absorb_b(fx);
            let fx = self.c.handle_chain(ev, &self.sc_in, &self.sc_out);
            self.absorb_c(fx);
            let fx = HtlcChannel::handle_chain(&mut self.d, ev, &self.sd);
            self.absorb_d(fx);
        }
        self.tip_all();
        self.run();
        mined
    }

    /// Every node's embedder saw `tx` unconfirmed in its mempool ([`ChainEvent::Seen`]); messages
    /// are delivered.
    pub fn seen(&mut self, tx: &Transaction) {
        self.log.push(format!("mempool: {} seen unconfirmed", tx.compute_txid()));
        let ev = ChainEvent::Seen { tx };
        let fx = self.a.handle_chain(ev, &self.sa);
        self.absorb_a(fx);
        let fx = self.b.handle_chain(ev, &self.sb_in, &self.sb_out);
        self.absorb_b(fx);
        let fx = self.c.handle_chain(ev, &self.sc_in, &self.sc_out);
        self.absorb_c(fx);
        let fx = HtlcChannel::handle_chain(&mut self.d, ev, &self.sd);
        self.absorb_d(fx);
        self.run();
    }

    /// Mines until `done` holds (at most `max` blocks); panics otherwise.
    pub fn mine_until(&mut self, max: u32, what: &str, done: impl Fn(&Route) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.mine();
        }
        assert!(done(self), "{what}: not reached within {max} blocks (height {})", self.chain.height);
    }

    /// Whether B's tracked HTLC is fulfilled, C's likewise.
    pub fn settled(&self, node: char) -> bool {
        let tracked = if node == 'B' { self.b.tracked() } else { self.c.tracked() };
        tracked.iter().any(|t| matches!(t.state, ForwardState::Fulfilled { .. }))
    }

    /// Whether A learnt the preimage.
    pub fn sender_has_preimage(&self) -> bool {
        self.a_events
            .iter()
            .any(|e| matches!(e, spilman::Event::HtlcFulfilled { preimage, .. } if *preimage == self.preimage))
    }

    /// Sum of confirmed outputs paying `spk`.
    pub fn paid_on_chain(&self, spk: &ScriptBuf) -> u64 {
        self.chain
            .confirmed_txs()
            .iter()
            .flat_map(|t| t.output.iter())
            .filter(|o| &o.script_pubkey == spk)
            .map(|o| o.value.to_sat())
            .sum()
    }

    /// Every node's off-chain position, in msat: A's Spilman change, B's Spilman receipts plus its
    /// duplex holder balance, C's duplex holder balance plus its Lightning balance, D's
    /// Lightning balance. HTLCs in flight are counted with their offerer.
    pub fn positions(&self) -> [i128; 4] {
        let msat = |a: Amount| i128::from(a.to_sat()) * 1_000;
        let a_paid = msat(self.a.state().to_payee);
        let b_in = msat(self.b.incoming().received());
        let bd = self.b.outgoing().balances();
        let cd = self.c.incoming().balances();
        let cl = self.c.outgoing().balances(Side::Holder);
        let dl = self.d.balances(Side::Holder);
        let m = |x: MilliSats| i128::from(x.to_msat());
        [
            -a_paid,
            b_in + msat(bd.holder) + msat(bd.offered),
            msat(cd.holder) + msat(cd.offered) + m(cl.holder) + m(cl.offered),
            m(dl.holder) + m(dl.offered),
        ]
    }
}
