//! The chain: a simulated chain service ([`paychan::testing::chain::Chain`], every transaction
//! checked by Bitcoin Core's interpreter) serving broadcasts, a faucet, block sync and balances
//! over TCP, mining a block as soon as a transaction waits; and each node's client of it, which
//! is the driver's [`ChainBackend`].

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::FeeEstimates;
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driver::{Chain as ChainBackend, Driver, Transport};
use paychan::driving::{ChainEvent, ChainTip, Effects, Watch};
use paychan::testing::chain::Chain;
use paychan::testing::wallet::{unsigned_funding, FeeCoins, Wallet};

use crate::store::Db;
use crate::transport::{read_frame, write_frame};
use crate::{Error, START_HEIGHT};

const REQ_FAUCET: u8 = 1;
const REQ_BROADCAST: u8 = 2;
const REQ_SYNC: u8 = 3;
const REQ_BALANCE: u8 = 4;

struct ChainState {
    chain: Chain,
    /// Faucet coins by label: asking twice (a restarted wallet) gets the same coin.
    faucet: HashMap<String, Transaction>,
}

/// Blocks mined after each block with transactions, empty if nothing else waits: enough for the
/// duplex funding depth (the sender waits for `funding_depth + 1` confirmations).
const BURY: u32 = 8;

/// Serves the chain on `listener` forever; mines a block whenever a transaction waits, and
/// [`BURY`] more after it.
pub fn serve_chain(listener: TcpListener) {
    let state = Arc::new(Mutex::new(ChainState { chain: Chain::at(START_HEIGHT), faucet: HashMap::new() }));
    let miner = state.clone();
    std::thread::spawn(move || {
        let mut last_with_txs = START_HEIGHT;
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let mut s = miner.lock().unwrap_or_else(|e| e.into_inner());
            if !s.chain.mempool().is_empty() {
                s.chain.mine_block();
                last_with_txs = s.chain.height;
            } else if s.chain.height < last_with_txs + BURY {
                s.chain.mine_block();
            }
        }
    });
    for stream in listener.incoming().flatten() {
        let state = state.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            while let Ok(request) = read_frame(&mut stream) {
                let reply = answer(&state, &request).unwrap_or_else(|e| {
                    let mut r = vec![1u8];
                    r.extend_from_slice(e.to_string().as_bytes());
                    r
                });
                if write_frame(&mut stream, &reply).is_err() {
                    break;
                }
            }
        });
    }
}

/// One request: a kind byte, then its payload. A reply starts with 0 (ok) or 1 (refused, then
/// the reason).
fn answer(state: &Mutex<ChainState>, request: &[u8]) -> Result<Vec<u8>, Error> {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let (&kind, body) = request.split_first().ok_or("empty request")?;
    let mut reply = vec![0u8];
    match kind {
        REQ_FAUCET => {
            // label length, label, then the output's value and script.
            let (&n, rest) = body.split_first().ok_or("short")?;
            let (label, rest) = rest.split_at_checked(n as usize).ok_or("short")?;
            let out: TxOut = deserialize(rest)?;
            let label = String::from_utf8_lossy(label).into_owned();
            let height = s.chain.height;
            let ChainState { chain, faucet } = &mut *s;
            let tx = faucet
                .entry(label)
                .or_insert_with(|| {
                    // A coin out of thin air (the wallet's history is not modelled), unique by
                    // height so two labels never collide.
                    let mut tx = unsigned_funding(OutPoint::null(), vec![out]);
                    tx.input[0].previous_output.vout = height;
                    tx.lock_time = bitcoin::absolute::LockTime::from_consensus(chain.confirmed_txs().len() as u32);
                    chain.credit(&tx);
                    tx
                })
                .clone();
            reply.extend(serialize(&tx));
        }
        REQ_BROADCAST => {
            let tx: Transaction = deserialize(body)?;
            if let Err(e) = s.chain.submit(&tx) {
                return Err(format!("{e:?}").into());
            }
        }
        REQ_SYNC => {
            // Every confirmed transaction at or above `from`, and the tip.
            let from = u32::from_be_bytes(body.try_into()?);
            reply.extend(s.chain.height.to_be_bytes());
            let mut txs: Vec<(u32, &Transaction)> = s
                .chain
                .confirmed_txs()
                .into_iter()
                .filter_map(|t| s.chain.confirmation(&t.compute_txid()).map(|h| (h, t)))
                .filter(|(h, _)| *h >= from)
                .collect();
            txs.sort_by_key(|(h, _)| *h);
            for (h, t) in txs {
                let bytes = serialize(t);
                reply.extend(h.to_be_bytes());
                reply.extend((bytes.len() as u32).to_be_bytes());
                reply.extend(bytes);
            }
        }
        REQ_BALANCE => {
            // The confirmed unspent value paying this script.
            let script = ScriptBuf::from_bytes(body.to_vec());
            let mut total = 0u64;
            for t in s.chain.confirmed_txs() {
                let txid = t.compute_txid();
                for (vout, o) in t.output.iter().enumerate() {
                    if o.script_pubkey == script && s.chain.is_unspent(&OutPoint { txid, vout: vout as u32 }) {
                        total += o.value.to_sat();
                    }
                }
            }
            reply.extend(total.to_be_bytes());
        }
        _ => return Err("unknown request".into()),
    }
    Ok(reply)
}

/// A node's connection to the chain service: the driver's [`ChainBackend`], and block sync.
pub struct ChainClient {
    stream: TcpStream,
    /// Transactions already reported to the channel (since this process started).
    pub seen: HashSet<bitcoin::Txid>,
    /// The height synced up to.
    pub height: u32,
    watching: Vec<Watch>,
}

impl ChainClient {
    pub fn connect(addr: &str) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(ChainClient { stream, seen: HashSet::new(), height: 0, watching: Vec::new() })
    }

    fn request(&mut self, kind: u8, body: &[u8]) -> Result<Vec<u8>, Error> {
        let mut req = vec![kind];
        req.extend_from_slice(body);
        write_frame(&mut self.stream, &req)?;
        let reply = read_frame(&mut self.stream)?;
        match reply.split_first() {
            Some((0, rest)) => Ok(rest.to_vec()),
            Some((_, why)) => Err(String::from_utf8_lossy(why).into_owned().into()),
            None => Err("empty reply".into()),
        }
    }

    pub fn faucet(&mut self, label: &str, out: &TxOut) -> Result<Transaction, Error> {
        let mut body = vec![label.len() as u8];
        body.extend_from_slice(label.as_bytes());
        body.extend(serialize(out));
        Ok(deserialize(&self.request(REQ_FAUCET, &body)?)?)
    }

    pub fn balance(&mut self, script: &ScriptBuf) -> Result<Amount, Error> {
        let r = self.request(REQ_BALANCE, script.as_bytes())?;
        Ok(Amount::from_sat(u64::from_be_bytes(r.as_slice().try_into()?)))
    }

    /// The tip (reports nothing).
    pub fn tip(&mut self) -> Result<u32, Error> {
        let r = self.request(REQ_SYNC, &u32::MAX.to_be_bytes())?;
        Ok(u32::from_be_bytes(r.get(..4).ok_or("short")?.try_into()?))
    }

    /// The tip, and the confirmed transactions not reported yet (with their heights).
    pub fn sync(&mut self) -> Result<(u32, Vec<(u32, Transaction)>), Error> {
        let r = self.request(REQ_SYNC, &self.height.to_be_bytes())?;
        let tip = u32::from_be_bytes(r.get(..4).ok_or("short")?.try_into()?);
        let mut rest = &r[4..];
        let mut new = Vec::new();
        while !rest.is_empty() {
            let h = u32::from_be_bytes(rest.get(..4).ok_or("short")?.try_into()?);
            let n = u32::from_be_bytes(rest.get(4..8).ok_or("short")?.try_into()?) as usize;
            let tx: Transaction = deserialize(rest.get(8..8 + n).ok_or("short")?)?;
            rest = &rest[8 + n..];
            if self.seen.insert(tx.compute_txid()) {
                new.push((h, tx));
            }
        }
        self.height = tip;
        Ok((tip, new))
    }
}

impl ChainBackend for ChainClient {
    fn broadcast(&mut self, tx: &Transaction) {
        // Refused broadcasts are normal here: the peer already broadcast the same funding, a
        // spent output after a restart. The channel broadcasts again what still matters.
        if let Err(e) = self.request(REQ_BROADCAST, &serialize(tx)) {
            eprintln!("broadcast {} refused: {e}", tx.compute_txid());
        }
    }

    fn watch(&mut self, watch: Watch) {
        // Every confirmed transaction is reported to the channel (unrelated ones change
        // nothing); a node with a real chain backend filters by these.
        self.watching.push(watch);
    }
}

/// The fee estimates the bumpers use (the simulated chain has no fee market).
pub fn estimates() -> FeeEstimates {
    FeeEstimates::flat(FeeratePerKw(253))
}

/// Reports the chain to a channel and its driver's bumper: each confirmed transaction not
/// reported yet (`feed` gives it to the channel; unrelated ones change nothing), then the new
/// tip if it moved, then the bumper's block work. Returns the channel's events.
pub fn poll<M, E: Debug, T: Transport<M>>(
    d: &mut Driver<Db, T, ChainClient>,
    signer: &InMemorySigner,
    wallet_seed: u8,
    who: &str,
    mut feed: impl FnMut(ChainEvent<'_>) -> Effects<M, E>,
) -> Result<Vec<E>, Error> {
    let before = d.chain().height;
    let (height, new) = d.chain_mut().sync()?;
    let mut events = Vec::new();
    for (h, tx) in &new {
        let event = ChainEvent::Confirmed { tx, height: BlockHeight(*h) };
        d.handle_chain(&event).map_err(|e| format!("{e}"))?;
        events.extend(crate::apply(d, feed(event), who)?);
    }
    if height != before {
        let event = ChainEvent::Tip(ChainTip::at(height));
        d.handle_chain(&event).map_err(|e| format!("{e}"))?;
        events.extend(crate::apply(d, feed(event), who)?);
        let mut wallet = FeeCoins::new(Wallet::new(wallet_seed));
        d.on_block(BlockHeight(height), &estimates(), &mut wallet, signer).map_err(|e| format!("{e}"))?;
    }
    Ok(events)
}
