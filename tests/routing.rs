//! Routing by channel id: several Spilman and duplex channels between the same two peers, every
//! message sent addressed ([`Addressed`]) and routed by its id alone, and a message of one
//! channel replayed into another refused with the other channel unchanged.

use bitcoin::hashes::Hash;
use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid};
use bitcoin::{WPubkeyHash, Witness};
use paychan::core::encode::DecodeError;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::wire::Addressed;
use paychan::core::BlockHeight;
use paychan::driving::{ChainEvent, ChainTip, ChannelId};
use paychan::{duplex, spilman};

const TIP: ChainTip = ChainTip::at(800_000);

fn script(n: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([n; 20]))
}

fn signer(seed: u8, index: u32) -> InMemorySigner {
    let index = u64::from(index);
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), index))
}

/// A funding transaction from a made-up segwit coin.
fn funding_tx(output: TxOut, coin: u8) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array([coin; 32]), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![output],
    }
}

// ------------------------------------------------------------------ Spilman

/// The Spilman channels between one payer node and one payee node (index `i` in each vector is
/// one channel; each uses its own key index `i`).
struct SpilmanPeers {
    payers: Vec<spilman::Payer>,
    payees: Vec<spilman::Payee>,
    payer_signers: Vec<InMemorySigner>,
    payee_signers: Vec<InMemorySigner>,
}

impl SpilmanPeers {
    /// The payee-side channel an addressed message is for, by its id alone.
    fn payee_for(&self, id: ChannelId) -> usize {
        self.payees.iter().position(|p| p.temporary_channel_id() == id || p.channel_id() == Some(id)).expect("routed")
    }

    /// The payer-side channel an addressed message is for, by its id alone.
    fn payer_for(&self, id: ChannelId) -> usize {
        self.payers.iter().position(|p| p.temporary_channel_id() == id || p.channel_id() == Some(id)).expect("routed")
    }

    /// Sends the payer's messages of channel `i` over the wire (addressed), routes each by its
    /// id, and the payee's answers back the same way.
    fn deliver(&mut self, i: usize, fx: spilman::Effects) {
        for msg in fx.send {
            let bytes = self.payers[i].address(msg).encode();
            let msg = Addressed::<spilman::Msg>::decode(&bytes).unwrap();
            let to = self.payee_for(msg.channel_id());
            let answer = self.payees[to].handle_addressed(msg, &self.payee_signers[to], TIP).unwrap();
            for msg in answer.send {
                let bytes = self.payees[to].address(msg).encode();
                let msg = Addressed::<spilman::Msg>::decode(&bytes).unwrap();
                let back = self.payer_for(msg.channel_id());
                let _ = self.payers[back].handle_addressed(msg, &self.payer_signers[back], TIP).unwrap();
            }
        }
    }

    /// Opens `n` channels, every message addressed and routed by id.
    fn open(n: u32) -> Self {
        let mut peers = SpilmanPeers {
            payers: Vec::new(),
            payees: Vec::new(),
            payer_signers: Vec::new(),
            payee_signers: Vec::new(),
        };
        for i in 0..n {
            let payee_signer = signer(2, i);
            let config = spilman::PayeeConfig {
                variant: spilman::Variant::Cltv,
                payee_script: script(2),
                expiry: BlockHeight(800_000 + 1_008),
                min_first_payment: Amount::from_sat(1_000),
                dust_limit: Amount::from_sat(546),
                payment_fee: Amount::from_sat(300),
                close_margin: 36,
                htlc_min_blocks: 24,
                min_depth: 0,
                claim_fee: Amount::from_sat(300),
            };
            let (payee, fx) = spilman::Payee::new(config, &payee_signer);
            let offer = Addressed::<spilman::Msg>::decode(&payee.address(fx.send[0].clone()).encode()).unwrap();
            assert_eq!(offer.channel_id(), payee.temporary_channel_id());
            let spilman::Msg::Offer(terms) = offer.msg else { panic!("an offer") };
            let payer_signer = signer(1, i);
            let config = spilman::PayerConfig {
                capacity: Amount::from_sat(100_000),
                payer_script: script(1),
                refund_fee: Amount::from_sat(300),
                claim_fee: Amount::from_sat(300),
                first_payment: Amount::from_sat(1_000),
                max_lifetime: 4_320,
            };
            let payer = spilman::Payer::new(terms, config, &payer_signer, TIP).unwrap();
            // Both sides compute the same temporary id from the offer.
            assert_eq!(payer.temporary_channel_id(), offer.channel_id);
            peers.payers.push(payer);
            peers.payees.push(payee);
            peers.payer_signers.push(payer_signer);
            peers.payee_signers.push(payee_signer);
            let funding = funding_tx(peers.payers[i as usize].funding_output(), 10 + i as u8);
            let fx = peers.payers[i as usize].fund(funding, &peers.payer_signers[i as usize]).unwrap();
            peers.deliver(i as usize, fx);
        }
        peers
    }
}

#[test]
fn spilman_channels_sharing_a_connection_are_routed_by_channel_id_alone() {
    let mut peers = SpilmanPeers::open(2);
    for (i, amount) in [(0, 2_000), (1, 5_000), (0, 3_000)] {
        let fx = peers.payers[i].pay(Amount::from_sat(amount), &peers.payer_signers[i]).unwrap();
        // After funding a payment goes to the id of the funding outpoint (BOLT 2's way).
        let outpoint = peers.payers[i].template().unwrap().outpoint;
        assert_eq!(peers.payers[i].address(fx.send[0].clone()).channel_id(), ChannelId::from_funding(&outpoint));
        peers.deliver(i, fx);
    }
    assert_eq!(peers.payees[0].received(), Amount::from_sat(1_000 + 2_000 + 3_000));
    assert_eq!(peers.payees[1].received(), Amount::from_sat(1_000 + 5_000));
    assert_ne!(peers.payees[0].channel_id(), peers.payees[1].channel_id());
    assert_ne!(peers.payees[0].temporary_channel_id(), peers.payees[1].temporary_channel_id());
}

#[test]
fn spilman_peer_replaying_a_payment_of_channel_a_into_channel_b_is_refused() {
    let mut peers = SpilmanPeers::open(2);
    let (a, b) = (0, 1);
    let fx = peers.payers[a].pay(Amount::from_sat(40_000), &peers.payer_signers[a]).unwrap();
    let payment_of_a = peers.payers[a].address(fx.send[0].clone());
    let before = peers.payees[b].snapshot();
    let close_before = peers.payees[b].closing_tx(&peers.payee_signers[b]).unwrap();

    let err = peers.payees[b].handle_addressed(payment_of_a.clone(), &peers.payee_signers[b], TIP).unwrap_err();
    assert_eq!(err.kind, spilman::Misbehaviour::WrongChannel);
    // Channel B is byte-identical and would close for exactly what it held: 1,000 sat.
    assert_eq!(peers.payees[b].snapshot(), before);
    assert_eq!(peers.payees[b].received(), Amount::from_sat(1_000));
    let close_after = peers.payees[b].closing_tx(&peers.payee_signers[b]).unwrap();
    assert_eq!(close_after, close_before);
    assert_eq!(
        close_after.output.iter().filter(|o| o.script_pubkey == script(2)).map(|o| o.value).sum::<Amount>(),
        Amount::from_sat(700)
    );
    // The same message under B's id (relabelled) is refused by B's own checks, also unchanged.
    let relabelled = Addressed { channel_id: peers.payees[b].channel_id().unwrap(), msg: payment_of_a.msg.clone() };
    assert!(peers.payees[b].handle_addressed(relabelled, &peers.payee_signers[b], TIP).is_err());
    assert_eq!(peers.payees[b].snapshot(), before);
    // Channel A takes it.
    let _ = peers.payees[a].handle_addressed(payment_of_a, &peers.payee_signers[a], TIP).unwrap();
    assert_eq!(peers.payees[a].received(), Amount::from_sat(41_000));
}

#[test]
fn spilman_payer_refuses_an_ack_addressed_to_another_channel() {
    let mut peers = SpilmanPeers::open(2);
    let fx = peers.payers[0].pay(Amount::from_sat(1_000), &peers.payer_signers[0]).unwrap();
    let answer = peers.payees[0].handle_message(fx.send[0].clone(), &peers.payee_signers[0], TIP).unwrap();
    let ack_of_a = peers.payees[0].address(answer.send[0].clone());
    let before = peers.payers[1].snapshot();
    let err = peers.payers[1].handle_addressed(ack_of_a, &peers.payer_signers[1], TIP).unwrap_err();
    assert_eq!(err.kind, spilman::Misbehaviour::WrongChannel);
    assert_eq!(peers.payers[1].snapshot(), before);
}

#[test]
fn spilman_messages_without_a_channel_id_are_refused_by_version() {
    let plain = spilman::Msg::Ack { number: 1 }.encode();
    assert_eq!(Addressed::<spilman::Msg>::decode(&plain), Err(DecodeError::UnknownVersion(1)));
    let id = ChannelId([3; 32]);
    let addressed = Addressed { channel_id: id, msg: spilman::Msg::Ack { number: 1 } }.encode();
    assert_eq!(spilman::Msg::decode(&addressed), Err(DecodeError::UnknownVersion(2)));
    let back = Addressed::<spilman::Msg>::decode(&addressed).unwrap();
    assert_eq!((back.channel_id(), back.msg), (id, spilman::Msg::Ack { number: 1 }));
    assert_eq!(Addressed::<spilman::Msg>::decode(&addressed[..10]), Err(DecodeError::Truncated));
}

// ------------------------------------------------------------------ duplex

/// Duplex channels between two nodes: `ch[i][0]` the initiator's side of channel `i`, `ch[i][1]`
/// the acceptor's.
struct DuplexPeers {
    ch: Vec<[duplex::Channel; 2]>,
    signers: Vec<[InMemorySigner; 2]>,
}

impl DuplexPeers {
    /// The channel (of node `node`) an addressed message is for, by its id alone.
    fn route(&self, node: usize, id: ChannelId) -> usize {
        self.ch
            .iter()
            .position(|c| c[node].temporary_channel_id() == id || c[node].channel_id() == Some(id))
            .expect("routed")
    }

    /// Carries addressed messages from node `from` until both nodes are quiet.
    fn deliver(&mut self, mut from: usize, mut msgs: Vec<Addressed<duplex::Msg>>) {
        while !msgs.is_empty() {
            let to = 1 - from;
            let mut replies = Vec::new();
            for msg in msgs {
                let msg = Addressed::<duplex::Msg>::decode(&msg.encode()).unwrap();
                let i = self.route(to, msg.channel_id());
                let fx = self.ch[i][to].handle_addressed(msg, &self.signers[i][to], TIP).unwrap();
                replies.extend(fx.send.into_iter().map(|m| self.ch[i][to].address(m)));
            }
            msgs = replies;
            from = to;
        }
    }

    fn open(n: u32) -> Self {
        let mut peers = DuplexPeers { ch: Vec::new(), signers: Vec::new() };
        for i in 0..n {
            let terms = duplex::Terms {
                params: duplex::Params::uniform(2, 3, 144, 144).unwrap(),
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
            let signers = [signer(0xa1, i), signer(0xb1, i)];
            let (alice, fx) = duplex::Channel::open(terms, script(0xa1), &signers[0], TIP).unwrap();
            let open = alice.address(fx.send[0].clone());
            assert_eq!(open.channel_id(), alice.temporary_channel_id());
            let duplex::Msg::Open(terms) = open.msg else { panic!("an open") };
            let (bob, fx) = duplex::Channel::accept(terms, script(0xb1), &signers[1], TIP).unwrap();
            assert_eq!(bob.temporary_channel_id(), open.channel_id);
            let accept: Vec<_> = fx.send.into_iter().map(|m| bob.address(m)).collect();
            peers.ch.push([alice, bob]);
            peers.signers.push(signers);
            let i = i as usize;
            peers.deliver(1, accept);
            let funding = funding_tx(peers.ch[i][0].funding_output().unwrap(), 20 + i as u8);
            let fx = peers.ch[i][0].fund(funding.clone(), &peers.signers[i][0]).unwrap();
            let created = fx.send.into_iter().map(|m| peers.ch[i][0].address(m)).collect();
            peers.deliver(0, created);
            assert_eq!(peers.ch[i][1].phase(), peers.ch[i][0].phase());
            // The funding confirmed `funding_depth` blocks before `TIP`: both may pay at `TIP`.
            let height = BlockHeight(TIP.height.0 - 7);
            for j in 0..2 {
                let event = ChainEvent::Confirmed { tx: &funding, height };
                let _ = peers.ch[i][j].handle_chain(event, &peers.signers[i][j]);
            }
            assert_eq!(peers.ch[i][0].sends_from(), Some(TIP.height));
        }
        peers
    }

    fn pay(&mut self, i: usize, from: usize, sat: u64) {
        let fx = self.ch[i][from].pay(Amount::from_sat(sat), &self.signers[i][from]).unwrap();
        let msgs = fx.send.into_iter().map(|m| self.ch[i][from].address(m)).collect();
        self.deliver(from, msgs);
    }
}

#[test]
fn duplex_channels_sharing_a_connection_are_routed_by_channel_id_alone() {
    let mut peers = DuplexPeers::open(2);
    peers.pay(0, 0, 10_000);
    peers.pay(1, 1, 7_000);
    peers.pay(0, 1, 2_000);
    assert_eq!(peers.ch[0][1].balances().holder, Amount::from_sat(308_000));
    assert_eq!(peers.ch[1][1].balances().holder, Amount::from_sat(293_000));
    // Reconnection, addressed too.
    for i in 0..2 {
        let (from_a, from_b) = (peers.ch[i][0].reestablish(), peers.ch[i][1].reestablish());
        let (from_a, from_b) = (peers.ch[i][0].address(from_a), peers.ch[i][1].address(from_b));
        peers.deliver(0, vec![from_a]);
        peers.deliver(1, vec![from_b]);
    }
    assert_eq!(peers.ch[1][0].balances().holder, Amount::from_sat(707_000));
}

#[test]
fn duplex_peer_replaying_a_payment_of_channel_a_into_channel_b_is_refused() {
    let mut peers = DuplexPeers::open(2);
    let (a, b) = (0, 1);
    let fx = peers.ch[a][0].pay(Amount::from_sat(50_000), &peers.signers[a][0]).unwrap();
    let payment_of_a = peers.ch[a][0].address(fx.send[0].clone());
    let before = peers.ch[b][1].snapshot();
    let err = peers.ch[b][1].handle_addressed(payment_of_a.clone(), &peers.signers[b][1], TIP).unwrap_err();
    assert_eq!(err.kind, duplex::Misbehaviour::WrongChannel);
    assert_eq!(peers.ch[b][1].snapshot(), before);
    let balances = peers.ch[b][1].balances();
    assert_eq!((balances.holder, balances.counterparty), (Amount::from_sat(300_000), Amount::from_sat(700_000)));
    // Channel A takes it.
    let _ = peers.ch[a][1].handle_addressed(payment_of_a, &peers.signers[a][1], TIP).unwrap();
    assert_eq!(peers.ch[a][1].balances().holder, Amount::from_sat(350_000));
}

#[test]
fn duplex_messages_without_a_channel_id_are_refused_by_version() {
    let plain = duplex::Msg::Ack { number: 1 }.encode();
    assert_eq!(Addressed::<duplex::Msg>::decode(&plain), Err(DecodeError::UnknownVersion(2)));
    let id = ChannelId([4; 32]);
    let addressed = Addressed { channel_id: id, msg: duplex::Msg::Ack { number: 1 } }.encode();
    assert_eq!(duplex::Msg::decode(&addressed), Err(DecodeError::UnknownVersion(3)));
    let back = Addressed::<duplex::Msg>::decode(&addressed).unwrap();
    assert_eq!((back.channel_id(), back.msg), (id, duplex::Msg::Ack { number: 1 }));
}

#[test]
fn spilman_peer_replaying_a_fail_of_channel_a_into_channel_b_cannot_fail_b_htlc() {
    // Both channels carry an HTLC with id 0. Fail messages carry no signature: under the plain
    // `handle_message` nothing tells a `Fail { id: 0 }` of A from one of B. Addressed, A's is
    // refused by B, whose HTLC stays live (its payee can still claim it with the preimage).
    let mut peers = SpilmanPeers::open(2);
    let hash = paychan::core::PaymentPreimage([9; 32]).hash();
    for i in 0..2 {
        let (id, fx) = peers.payers[i]
            .add_htlc(Amount::from_sat(10_000), hash, BlockHeight(800_100), &peers.payer_signers[i], TIP)
            .unwrap();
        assert_eq!(id, 0);
        peers.deliver(i, fx);
    }
    let fx = peers.payees[0].fail_htlc(0).unwrap();
    let fail_of_a = peers.payees[0].address(fx.send[0].clone());
    let before = peers.payers[1].snapshot();
    // Unaddressed, B's payer would take it as the failure of its own HTLC.
    let mut unaddressed = peers.payers[1].clone();
    let fx = unaddressed.handle_message(fail_of_a.msg.clone(), &peers.payer_signers[1], TIP).unwrap();
    assert!(fx.update.is_some());
    assert_ne!(unaddressed.snapshot(), before);
    let err = peers.payers[1].handle_addressed(fail_of_a, &peers.payer_signers[1], TIP).unwrap_err();
    assert_eq!(err.kind, spilman::Misbehaviour::WrongChannel);
    assert_eq!(peers.payers[1].snapshot(), before);
    let htlcs = &peers.payers[1].state().htlcs;
    assert_eq!((htlcs.len(), htlcs[0].id, htlcs[0].amount), (1, 0, Amount::from_sat(10_000)));
}
