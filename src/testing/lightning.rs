//! Two in-memory Lightning peers wired through the BOLT wire encoding, with message queues in
//! each direction so updates can cross in flight (a harness for deterministic tests; see
//! [`super::sim::lightning`] for the seeded simulation).

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use crate::core::commitment::ChannelType;
use crate::core::keys::{ChannelSecrets, Seed};
use crate::core::sign::InMemorySigner;
use crate::core::{BlockHeight, MilliSats};
use crate::driving::{ChainEvent, ChainTip, ChannelId};
use crate::lightning::{Channel, ChannelConfig, DustExposure, Effects, Event, Msg, OpenParams, Phase};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

/// One peer.
pub struct Peer {
    /// Its channel.
    pub ch: Channel,
    /// Its keys.
    pub signer: InMemorySigner,
    /// Every event it reported.
    pub events: Vec<Event>,
    /// Every state persisted, with its update id: the full snapshot of a write that carries one,
    /// or the previous state with the write's delta applied ([`stored_state`]).
    pub persisted: Vec<(u64, Vec<u8>)>,
    /// Every record appended, in order.
    pub records: Vec<Vec<u8>>,
}

/// Two peers and the wire between them.
pub struct Pair {
    /// The funder.
    pub a: Peer,
    /// The fundee.
    pub b: Peer,
    /// Messages from a to b, not yet delivered.
    pub to_b: VecDeque<Msg>,
    /// Messages from b to a, not yet delivered.
    pub to_a: VecDeque<Msg>,
    /// The funding transaction.
    pub funding: Transaction,
    /// The chain height both peers see.
    pub tip: u32,
}

/// The chain hash of the test network.
pub const CHAIN: [u8; 32] = [6; 32];

/// A channel configuration for tests: many HTLCs, a large fixed dust exposure (500,000 sat, so
/// that random fee updates over dust-heavy traffic are not refused), depth 1.
pub fn config(channel_type: ChannelType) -> ChannelConfig {
    ChannelConfig {
        max_accepted_htlcs: 483,
        max_dust_exposure: DustExposure::Fixed(MilliSats::from_msat(500_000_000)),
        minimum_depth: 1,
        ..ChannelConfig::default_for(CHAIN, channel_type)
    }
}

fn wire(m: &Msg) -> Msg {
    let bytes = m.encode();
    let back = Msg::decode(&bytes).expect("own encoding decodes");
    assert_eq!(&back, m, "wire roundtrip");
    back
}

impl Peer {
    /// Records the effects of a call (checking the persistence contract) and queues its messages.
    /// [`Peer::persisted`] gets the state the write leaves in storage (its snapshot, or its delta
    /// applied to the previous state).
    pub fn absorb(&mut self, fx: Effects, out: &mut VecDeque<Msg>) -> Vec<Transaction> {
        if !fx.broadcast.is_empty() || fx.send.iter().any(needs_write) {
            assert!(fx.update.is_some(), "sent or broadcast without persisting first");
        }
        if let Some(u) = fx.update {
            if let Some((last, _)) = self.persisted.last() {
                assert!(u.update_id > *last, "update ids strictly increase");
            }
            let state = match self.persisted.last() {
                Some((id, previous)) => stored_state(Some((*id, previous)), &u)
                    .unwrap_or_else(|e| panic!("the write does not apply to the stored state: {e}")),
                // A peer built around a channel whose first writes it was not given: the state
                // its storage would hold.
                None => u.snapshot.clone().or_else(|| self.ch.durable.clone()).expect("the channel wrote"),
            };
            self.persisted.push((u.update_id, state));
            self.records.extend(u.records);
        }
        self.events.extend(fx.events);
        out.extend(fx.send.iter().map(wire));
        fx.broadcast
    }

    /// The snapshot the peer's storage holds: the state of its last write that carried a full
    /// snapshot (the one update of [`Peer::persisted`] without a delta in [`Peer::records`]).
    pub fn stored_snapshot(&self) -> Option<&[u8]> {
        let deltas: std::collections::HashSet<u64> = self
            .records
            .iter()
            .filter(|r| crate::core::delta::is_delta(r))
            .filter_map(|r| crate::core::delta::DeltaRecord::decode(r).ok())
            .map(|d| d.update_id())
            .collect();
        self.persisted.iter().rev().find(|(id, _)| !deltas.contains(id)).map(|(_, s)| s.as_slice())
    }

    /// A crash and restart: the channel in memory is lost and restored from the storage (its
    /// snapshot and log, replayed), which must give exactly the last state written.
    pub fn restart(&mut self) {
        let (latest, state) = self.persisted.last().cloned().expect("a write");
        let check = crate::driving::RestoreCheck { channel_id: Some(self.ch.channel_id()), min_update_id: latest };
        let snapshot = self.stored_snapshot().expect("a full snapshot").to_vec();
        let restored = Channel::restore_with_records(&snapshot, &self.records, check).expect("restores");
        assert!(restored.snapshot() == state, "the restored channel is the last state written");
        self.ch = restored;
    }

    /// Records the effects of a command and queues its messages.
    pub fn absorb_pub(&mut self, fx: Effects, out: &mut VecDeque<Msg>) -> Vec<Transaction> {
        self.absorb(fx, out)
    }

    /// Takes the events reported so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

impl Pair {
    /// Opens a channel of `capacity` sat (a funds it, pushing `push_msat` to b) and runs it to
    /// `Normal`.
    pub fn open(channel_type: ChannelType, capacity: u64, push_msat: u64) -> Pair {
        Self::open_with(config(channel_type), config(channel_type), capacity, push_msat, 2_500)
    }

    /// As [`Pair::open`] with each side's own policy and the initial fee rate.
    pub fn open_with(
        a_config: ChannelConfig,
        b_config: ChannelConfig,
        capacity: u64,
        push_msat: u64,
        feerate_per_kw: u32,
    ) -> Pair {
        let sa = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xa0; 32]), 0));
        let sb = InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([0xb0; 32]), 0));
        let tip = ChainTip::at(1_000);
        let (cha, fx) = Channel::open(
            OpenParams {
                config: a_config,
                temporary_channel_id: ChannelId([7; 32]),
                funding: Amount::from_sat(capacity),
                push: MilliSats::from_msat(push_msat),
                feerate_per_kw,
            },
            &sa,
            tip,
        )
        .expect("open");
        let Msg::OpenChannel(open) = wire(&fx.send[0]) else { panic!("open_channel") };
        let (chb, fxb) = Channel::accept(&open, b_config, &sb, tip).expect("accept");
        let mut a = Peer { ch: cha, signer: sa, events: vec![], persisted: vec![], records: vec![] };
        a.absorb(Effects { send: vec![], ..fx }, &mut VecDeque::new());
        let mut b = Peer { ch: chb, signer: sb, events: vec![], persisted: vec![], records: vec![] };
        let mut to_a = VecDeque::new();
        b.absorb(fxb, &mut to_a);
        let mut pair = Pair {
            a,
            b,
            to_b: VecDeque::new(),
            to_a,
            funding: Transaction {
                version: Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![],
                output: vec![],
            },
            tip: 1_000,
        };
        pair.run();
        let script = pair
            .a
            .events
            .iter()
            .find_map(|e| match e {
                Event::FundingGenerationReady { script_pubkey, value } => Some((script_pubkey.clone(), *value)),
                _ => None,
            })
            .expect("funding requested");
        let funding = Transaction {
            version: Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([3; 32]), vout: 0 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut { value: script.1, script_pubkey: script.0 }],
        };
        let fx = pair.a.ch.funding_tx(funding.clone(), &pair.a.signer).expect("funding tx");
        let broadcast = pair.a.absorb(fx, &mut pair.to_b);
        assert!(broadcast.is_empty(), "the funding is not broadcast before funding_signed");
        let broadcast = pair.run();
        assert_eq!(broadcast, vec![funding.clone()], "funding broadcast after funding_signed");
        pair.funding = funding;
        pair.confirm_funding();
        assert_eq!(pair.a.ch.phase(), Phase::Normal);
        assert_eq!(pair.b.ch.phase(), Phase::Normal);
        pair
    }

    /// Confirms the funding in the next block for both peers and runs the messages.
    pub fn confirm_funding(&mut self) {
        let tx = self.funding.clone();
        self.tip += 1;
        let h = BlockHeight(self.tip);
        let fx = self.a.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: h }, &self.a.signer);
        self.a.absorb(fx, &mut self.to_b);
        let fx = self.b.ch.handle_chain(ChainEvent::Confirmed { tx: &tx, height: h }, &self.b.signer);
        self.b.absorb(fx, &mut self.to_a);
        self.run();
    }

    /// Delivers one message to b, if any.
    pub fn deliver_to_b(&mut self) -> bool {
        let Some(m) = self.to_b.pop_front() else { return false };
        let fx = self
            .b
            .ch
            .handle_message(m.clone(), &self.b.signer, ChainTip::at(self.tip))
            .unwrap_or_else(|e| panic!("b refused {m:?}: {e:?}"));
        self.b.absorb(fx, &mut self.to_a);
        true
    }

    /// Delivers one message to a, if any.
    pub fn deliver_to_a(&mut self) -> bool {
        let Some(m) = self.to_a.pop_front() else { return false };
        let fx = self
            .a
            .ch
            .handle_message(m.clone(), &self.a.signer, ChainTip::at(self.tip))
            .unwrap_or_else(|e| panic!("a refused {m:?}: {e:?}"));
        self.a.absorb(fx, &mut self.to_b);
        true
    }

    /// Delivers everything in both directions until quiet; returns broadcasts.
    pub fn run(&mut self) -> Vec<Transaction> {
        let mut out = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(m) = self.to_b.pop_front() {
                let fx = self
                    .b
                    .ch
                    .handle_message(m.clone(), &self.b.signer, ChainTip::at(self.tip))
                    .unwrap_or_else(|e| panic!("b refused {m:?}: {e:?}"));
                out.extend(self.b.absorb(fx, &mut self.to_a));
                progressed = true;
            }
            while let Some(m) = self.to_a.pop_front() {
                let fx = self
                    .a
                    .ch
                    .handle_message(m.clone(), &self.a.signer, ChainTip::at(self.tip))
                    .unwrap_or_else(|e| panic!("a refused {m:?}: {e:?}"));
                out.extend(self.a.absorb(fx, &mut self.to_b));
                progressed = true;
            }
            if !progressed {
                return out;
            }
        }
    }

    /// The funding output (for interpreter checks).
    pub fn funding_output(&self) -> TxOut {
        self.funding.output[0].clone()
    }

    /// Both sides' latest commitments pass Bitcoin Core's interpreter.
    pub fn verify_commitments(&self) {
        let spent = self.funding_output();
        for p in [&self.a, &self.b] {
            let tx = p.ch.holder_commitment_tx(&p.signer).expect("commitment");
            super::consensus::verify_spend(&tx, std::slice::from_ref(&spent))
                .unwrap_or_else(|e| panic!("commitment rejected: {e}"));
        }
    }
}

/// Whether a message may only be sent after a durable write ([persistence
/// contract](crate::driving#persistence)): everything but an update not yet covered by a
/// `commitment_signed`, a `warning` and `channel_reestablish`.
pub fn needs_write(m: &Msg) -> bool {
    !matches!(
        m,
        Msg::UpdateAddHtlc { .. }
            | Msg::UpdateFulfillHtlc { .. }
            | Msg::UpdateFailHtlc { .. }
            | Msg::UpdateFailMalformedHtlc { .. }
            | Msg::UpdateFee { .. }
            | Msg::Warning { .. }
            | Msg::ChannelReestablish { .. }
    )
}

/// The state a write leaves in storage after `previous` (the update id and state the storage
/// held): its full snapshot, or its deltas (one per update it merges) replayed on `previous`.
///
/// # Errors
/// [`RestoreError`](crate::driving::RestoreError) if the write carries neither, or its deltas
/// do not apply or do not bring `update_id`.
pub fn stored_state(
    previous: Option<(u64, &[u8])>,
    update: &crate::driving::StateUpdate,
) -> Result<Vec<u8>, crate::driving::RestoreError> {
    use crate::core::encode::DecodeError;
    if let Some(s) = &update.snapshot {
        return Ok(s.clone());
    }
    let missing = crate::driving::RestoreError::Decode(DecodeError::MissingField("delta"));
    let (id, bytes) = previous.ok_or(missing)?;
    let (state, reached) = crate::core::delta::replay(bytes, id, &update.records)?;
    if reached != update.update_id {
        return Err(missing);
    }
    Ok(state)
}

/// An onion placeholder.
pub fn onion() -> crate::lightning::OnionPacket {
    crate::lightning::OnionPacket::zeroed()
}

/// The onion records a channel's HTLCs in flight refer to, as the channel appended them: what
/// [`Channel::restore_with_records`] needs beside a snapshot taken from `ch` itself.
pub fn onion_records(ch: &Channel) -> Vec<Vec<u8>> {
    ch.htlcs()
        .iter()
        .filter_map(|h| {
            let onion = h.onion.clone()?;
            Some(crate::lightning::OnionRecord { offerer: h.offerer, id: h.id, onion }.encode())
        })
        .collect()
}

pub use super::rng::Rng;

impl Pair {
    /// Drops every message in flight, tells both sides the connection dropped, and exchanges
    /// `channel_reestablish`; the retransmissions are queued.
    pub fn reconnect(&mut self) {
        self.to_a.clear();
        self.to_b.clear();
        let fx = self.a.ch.handle_disconnect();
        self.a.absorb(fx, &mut self.to_b);
        let fx = self.b.ch.handle_disconnect();
        self.b.absorb(fx, &mut self.to_a);
        let ra = self.a.ch.reestablish(&self.a.signer).expect("reestablish a");
        let rb = self.b.ch.reestablish(&self.b.signer).expect("reestablish b");
        let tip = ChainTip::at(self.tip);
        let fx = self.b.ch.handle_message(wire(&ra), &self.b.signer, tip).expect("b takes reestablish");
        self.b.absorb(fx, &mut self.to_a);
        let fx = self.a.ch.handle_message(wire(&rb), &self.a.signer, tip).expect("a takes reestablish");
        self.a.absorb(fx, &mut self.to_b);
    }

    /// Signs pending changes on both sides and delivers until nothing is left to do.
    pub fn settle(&mut self) {
        for _ in 0..20 {
            self.run();
            let mut acted = false;
            for side in [0, 1] {
                let (peer, out) = if side == 0 { (&mut self.a, &mut self.to_b) } else { (&mut self.b, &mut self.to_a) };
                if peer.ch.has_unsigned_changes() && !peer.ch.is_awaiting_revoke() {
                    let fx = peer.ch.commit(&peer.signer).expect("commit");
                    peer.absorb(fx, out);
                    acted = true;
                }
            }
            if !acted && self.to_a.is_empty() && self.to_b.is_empty() {
                return;
            }
        }
        panic!("the channel did not settle");
    }
}

/// A P2WPKH script of a fixed key hash (a wallet's change script in tests).
pub fn p2wpkh_script() -> bitcoin::ScriptBuf {
    use bitcoin::hashes::Hash;
    bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([0x99; 20]))
}
