//! A wallet-shaped node: a Spilman channel between two OS processes on 127.0.0.1, each persisting
//! to its own SQLite database, talking over TCP, settling on a simulated chain.
//!
//! `cargo run --example node` runs the whole demo (under a second once built): it starts a chain
//! service in a thread, spawns this binary twice (the payee, then the payer); the payer opens a
//! channel and pays 20 times, and is killed (SIGKILL) once on the way and started again from its
//! database; it then asks the payee to close; both processes exit once the close confirmed, and
//! the demo checks that each wallet holds exactly what it is owed.
//!
//! Roles (`node ROLE --flag value …`), each a process:
//! * `chain --addr-file F`: the simulated chain ([`paychan::testing::chain::Chain`]: every
//!   transaction checked by Bitcoin Core's interpreter), serving broadcasts, a faucet and block
//!   sync over TCP; a block is mined as soon as a transaction waits.
//! * `payee --db D --chain ADDR --addr-file F`: listens, writes its address to `F`.
//! * `payer --db D --chain ADDR --peer-file F --payments N --amount SAT`.
//! * `check --chain ADDR --payments N --amount SAT`: prints both wallets' balances and exits 0
//!   only if each is exactly what it is owed.
//!
//! What a wallet developer can copy:
//! * **Storage** ([`Db`]): one table of snapshots, one of records; each [`StateUpdate`] is written
//!   in ONE SQLite transaction, and [`paychan::driver::Driver`] writes it before sending or
//!   broadcasting anything of the same effects. Kill either process at any point (SIGKILL) and
//!   start it again with the same database: it restores its channel and carries on
//!   (`tests/processes.rs` does exactly that).
//! * **Transport** ([`Wire`]): each message's own `encode`/`decode`, framed by a 4-byte length.
//!   On every connection both sides send their `reestablish()` first.
//! * **Chain** ([`ChainClient`]): broadcasts go to the chain service; every confirmed transaction
//!   is reported to the channel (unrelated ones change nothing), each new tip too, and the
//!   driver's fee bumper runs on each block.
//!
//! One thing the channel alone cannot resend after a crash: the payer's `Open` (it carries the
//! funding transaction and the first payment). If the payer crashes after persisting its funded
//! state but before the payee received `Open`, a reestablish cannot help (the payee has no
//! channel yet), so the payer keeps the `Open` in its outbox, written in the same SQLite
//! transaction as the snapshot that goes with it, and sends it again on reconnection until the
//! payee acknowledges a payment.

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut};
use paychan::core::commitment::FeeratePerKw;
use paychan::core::feebump::FeeEstimates;
use paychan::core::keys::{ChannelSecrets, Seed};
use paychan::core::sign::InMemorySigner;
use paychan::core::BlockHeight;
use paychan::driver::{Chain as ChainBackend, Driver, Storage, Transport};
use paychan::driving::{Action, ChainEvent, ChainTip, RestoreCheck, StateUpdate, Watch};
use paychan::spilman::{self, Msg, Payee, PayeeConfig, Payer, PayerConfig, Variant};
use paychan::testing::chain::Chain;
use paychan::testing::wallet::{unsigned_funding, FeeCoins, Wallet};
use rusqlite::{params, Connection, OptionalExtension};

type Error = Box<dyn std::error::Error>;

// The channel's terms: the same for every run, so `check` (and the test) can say what each side
// is owed.
/// The chain's height when the chain service starts.
const START_HEIGHT: u32 = 800_000;
/// The payer's faucet coin.
const FAUCET: Amount = Amount::from_sat(1_000_000);
/// The channel's capacity.
const CAPACITY: Amount = Amount::from_sat(100_000);
/// The funding transaction's fee (paid by the payer).
const FUNDING_FEE: Amount = Amount::from_sat(1_000);
/// The first payment, sent with `Open`.
const FIRST_PAYMENT: Amount = Amount::from_sat(2_000);
/// The fee of the payment transaction that closes the channel (paid by the payee).
const PAYMENT_FEE: Amount = Amount::from_sat(1_000);
const PAYER_WALLET_SEED: u8 = 0x11;
const PAYEE_WALLET_SEED: u8 = 0x22;

/// What each wallet holds at the end: the payee `to_payee` minus the close's fee, the payer its
/// faucet coin minus the funding fee minus `to_payee`.
fn owed(payments: u64, amount: Amount) -> (Amount, Amount) {
    let to_payee = FIRST_PAYMENT + amount * payments;
    (FAUCET - FUNDING_FEE - to_payee, to_payee - PAYMENT_FEE)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("demo") => demo(),
        Some("chain") => run_chain_role(&Flags::parse(&args[1..])),
        Some("payee") => run_payee(&Flags::parse(&args[1..])),
        Some("payer") => run_payer(&Flags::parse(&args[1..])),
        Some("check") => check(&Flags::parse(&args[1..])).map(|_| ()),
        Some(other) => Err(format!("unknown role {other}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node {}: {e}", args.first().map_or("demo", String::as_str));
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Self {
        let mut map = HashMap::new();
        for pair in args.chunks(2) {
            if let [k, v] = pair {
                map.insert(k.trim_start_matches("--").to_string(), v.clone());
            }
        }
        Flags(map)
    }
    fn get(&self, name: &str) -> Result<&str, Error> {
        self.0.get(name).map(String::as_str).ok_or_else(|| format!("missing --{name}").into())
    }
    fn num(&self, name: &str) -> Result<u64, Error> {
        Ok(self.get(name)?.parse()?)
    }
}

// ---------------------------------------------------------------------------------------------
// Framing: a 4-byte big-endian length, then the bytes.

fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame)
}

/// Frames larger than this are refused (no peer message of this channel comes near it).
const MAX_FRAME: usize = 1 << 20;

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "frame too large"));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// A peer connection read without blocking: bytes are buffered until a whole frame arrived.
struct Wire {
    stream: Option<TcpStream>,
    inbox: Vec<u8>,
}

impl Wire {
    fn new() -> Self {
        Wire { stream: None, inbox: Vec::new() }
    }

    fn connect(&mut self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_millis(5)))?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        self.inbox.clear();
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// The next whole message, if one arrived; drops the connection on EOF or error.
    fn receive(&mut self) -> Option<Msg> {
        loop {
            if self.inbox.len() >= 4 {
                let len = u32::from_be_bytes([self.inbox[0], self.inbox[1], self.inbox[2], self.inbox[3]]) as usize;
                if len > MAX_FRAME {
                    self.stream = None;
                    return None;
                }
                if self.inbox.len() >= 4 + len {
                    let frame: Vec<u8> = self.inbox.drain(..4 + len).skip(4).collect();
                    match Msg::decode(&frame) {
                        Ok(m) => return Some(m),
                        Err(e) => {
                            eprintln!("undecodable message ({e}): disconnecting");
                            self.stream = None;
                            return None;
                        }
                    }
                }
            }
            let stream = self.stream.as_mut()?;
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf) {
                Ok(0) => {
                    self.stream = None;
                    return None;
                }
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
                Err(_) => {
                    self.stream = None;
                    return None;
                }
            }
        }
    }
}

impl Transport<Msg> for Wire {
    type Error = std::io::Error;

    fn send(&mut self, message: &Msg) -> Result<(), Self::Error> {
        let stream = self.stream.as_mut().ok_or_else(|| std::io::Error::from(ErrorKind::NotConnected))?;
        let sent = write_frame(stream, &message.encode());
        if sent.is_err() {
            self.stream = None;
        }
        sent
    }
}

// ---------------------------------------------------------------------------------------------
// Storage: SQLite, one table of snapshots and one of records.

/// A node's database. Names: `channel` (the channel's snapshot and records), `bumper` (the fee
/// bumper's snapshot), `outbox` (the payer's `Open`, see the module docs).
struct Db {
    conn: Connection,
    /// Written with the next channel update, in the same transaction.
    outbox: Option<Vec<u8>>,
}

impl Db {
    fn open(path: &Path) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        // WAL with full sync: a committed transaction survives a crash of the process and of
        // the machine.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS snapshots (
                 name TEXT PRIMARY KEY,
                 update_id INTEGER NOT NULL,
                 bytes BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS records (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL,
                 bytes BLOB NOT NULL
             );",
        )?;
        Ok(Db { conn, outbox: None })
    }

    /// The stored snapshot `name` and its update id.
    fn snapshot(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, Error> {
        Ok(self
            .conn
            .query_row("SELECT update_id, bytes FROM snapshots WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?)
    }

    /// The records of `name`, oldest first.
    fn records(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        let mut stmt = self.conn.prepare("SELECT bytes FROM records WHERE name = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([name], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_snapshot(tx: &rusqlite::Transaction<'_>, name: &str, u: &StateUpdate) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO snapshots (name, update_id, bytes) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET update_id = excluded.update_id, bytes = excluded.bytes",
            params![name, u.update_id as i64, u.snapshot],
        )?;
        for r in &u.records {
            tx.execute("INSERT INTO records (name, bytes) VALUES (?1, ?2)", params![name, r])?;
        }
        Ok(())
    }
}

impl Storage for Db {
    type Error = rusqlite::Error;

    fn persist_channel(&mut self, update: &StateUpdate) -> Result<(), Self::Error> {
        let tx = self.conn.transaction()?;
        Db::put_snapshot(&tx, "channel", update)?;
        if let Some(open) = &self.outbox {
            tx.execute("DELETE FROM records WHERE name = 'outbox'", [])?;
            tx.execute("INSERT INTO records (name, bytes) VALUES ('outbox', ?1)", [open])?;
        }
        tx.commit()?;
        self.outbox = None;
        Ok(())
    }

    fn persist_bumper(&mut self, update: &StateUpdate) -> Result<(), Self::Error> {
        let tx = self.conn.transaction()?;
        Db::put_snapshot(&tx, "bumper", update)?;
        tx.commit()
    }
}

// ---------------------------------------------------------------------------------------------
// The chain service and its client.

const REQ_FAUCET: u8 = 1;
const REQ_BROADCAST: u8 = 2;
const REQ_SYNC: u8 = 3;
const REQ_BALANCE: u8 = 4;

struct ChainState {
    chain: Chain,
    /// Faucet coins by label: asking twice (a restarted wallet) gets the same coin.
    faucet: HashMap<String, Transaction>,
}

/// Serves the chain on `listener` forever; mines a block whenever a transaction waits.
fn serve_chain(listener: TcpListener) {
    let state = Arc::new(Mutex::new(ChainState { chain: Chain::at(START_HEIGHT), faucet: HashMap::new() }));
    let miner = state.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(10));
        let mut s = miner.lock().unwrap_or_else(|e| e.into_inner());
        if !s.chain.mempool().is_empty() {
            s.chain.mine_block();
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
struct ChainClient {
    stream: TcpStream,
    /// Transactions already reported to the channel (since this process started).
    seen: HashSet<bitcoin::Txid>,
    /// The height synced up to.
    height: u32,
    watching: Vec<Watch>,
}

impl ChainClient {
    fn connect(addr: &str) -> Result<Self, Error> {
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

    fn faucet(&mut self, label: &str, out: &TxOut) -> Result<Transaction, Error> {
        let mut body = vec![label.len() as u8];
        body.extend_from_slice(label.as_bytes());
        body.extend(serialize(out));
        Ok(deserialize(&self.request(REQ_FAUCET, &body)?)?)
    }

    fn balance(&mut self, script: &ScriptBuf) -> Result<Amount, Error> {
        let r = self.request(REQ_BALANCE, script.as_bytes())?;
        Ok(Amount::from_sat(u64::from_be_bytes(r.as_slice().try_into()?)))
    }

    /// The tip (reports nothing).
    fn tip(&mut self) -> Result<u32, Error> {
        let r = self.request(REQ_SYNC, &u32::MAX.to_be_bytes())?;
        Ok(u32::from_be_bytes(r.get(..4).ok_or("short")?.try_into()?))
    }

    /// The tip, and the confirmed transactions not reported yet (with their heights).
    fn sync(&mut self) -> Result<(u32, Vec<(u32, Transaction)>), Error> {
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

// ---------------------------------------------------------------------------------------------
// The two parties.

type NodeDriver = Driver<Db, Wire, ChainClient>;

fn signer(seed: u8) -> InMemorySigner {
    InMemorySigner::new(ChannelSecrets::from_seed(&Seed::from_bytes([seed; 32]), 0))
}

fn estimates() -> FeeEstimates {
    FeeEstimates::flat(FeeratePerKw(253))
}

/// A restarted node's driver: its bumper restored from the database.
fn driver(db: Db, chain: ChainClient) -> Result<NodeDriver, Error> {
    let bumper = match db.snapshot("bumper")? {
        Some((_, bytes)) => paychan::core::feebump::Bumper::decode(&bytes).map_err(|e| format!("bumper: {e:?}"))?,
        None => paychan::core::feebump::Bumper::new(),
    };
    Ok(Driver::with_bumper(db, Wire::new(), chain, bumper))
}

/// Applies a channel's effects; a refused write is fatal (the channel must be restored).
/// Returns the events.
fn apply(d: &mut NodeDriver, fx: spilman::Effects, who: &str) -> Result<Vec<spilman::Event>, Error> {
    let done = d.apply(fx).map_err(|e| format!("{e}"))?;
    for e in &done.events {
        println!("{who}: {e:?}");
    }
    Ok(done.events)
}

/// Either side of the channel, as far as chain events and messages go.
trait Side {
    fn handle_chain(&mut self, e: ChainEvent<'_>, s: &InMemorySigner) -> spilman::Effects;
}
impl Side for Payer {
    fn handle_chain(&mut self, e: ChainEvent<'_>, s: &InMemorySigner) -> spilman::Effects {
        Payer::handle_chain(self, e, s)
    }
}
impl Side for Payee {
    fn handle_chain(&mut self, e: ChainEvent<'_>, s: &InMemorySigner) -> spilman::Effects {
        Payee::handle_chain(self, e, s)
    }
}

/// Reports new confirmed transactions and a new tip to the channel and its bumper.
fn poll_chain<C: Side>(
    d: &mut NodeDriver,
    ch: &mut C,
    s: &InMemorySigner,
    tip: &mut u32,
    who: &str,
) -> Result<(), Error> {
    let before = *tip;
    let (height, new) = d.chain_mut().sync()?;
    for (h, tx) in &new {
        let event = ChainEvent::Confirmed { tx, height: BlockHeight(*h) };
        d.handle_chain(&event).map_err(|e| format!("{e}"))?;
        apply(d, ch.handle_chain(event, s), who)?;
    }
    if height != before {
        *tip = height;
        let event = ChainEvent::Tip(ChainTip::at(height));
        d.handle_chain(&event).map_err(|e| format!("{e}"))?;
        apply(d, ch.handle_chain(event, s), who)?;
        let mut wallet = FeeCoins::new(Wallet::new(if who == "payer" { PAYER_WALLET_SEED } else { PAYEE_WALLET_SEED }));
        d.on_block(BlockHeight(height), &estimates(), &mut wallet, s).map_err(|e| format!("{e}"))?;
    }
    Ok(())
}

/// A refused peer message: ignored, or the connection dropped (the reestablish on the next one
/// resynchronises).
fn refused(d: &mut NodeDriver, e: spilman::PeerError, who: &str) {
    eprintln!("{who}: peer message refused: {e}");
    if e.action != Action::Ignore {
        d.transport_mut().stream = None;
    }
}

fn run_payee(flags: &Flags) -> Result<(), Error> {
    let signer = signer(0xb1);
    let db = Db::open(Path::new(flags.get("db")?))?;
    let mut chain = ChainClient::connect(flags.get("chain")?)?;
    let height = chain.tip()?;
    let stored = db.snapshot("channel")?;
    let mut d = driver(db, chain)?;
    let mut payee = match stored {
        Some((update_id, bytes)) => {
            Payee::restore(&bytes, RestoreCheck { channel_id: None, min_update_id: update_id })?
        }
        None => {
            let config = PayeeConfig {
                variant: Variant::Cltv,
                payee_script: Wallet::new(PAYEE_WALLET_SEED).script(),
                expiry: BlockHeight(height + 144 * 7),
                min_first_payment: FIRST_PAYMENT,
                dust_limit: Amount::from_sat(546),
                payment_fee: PAYMENT_FEE,
                close_margin: 36,
                htlc_min_blocks: 24,
                min_depth: 0,
                claim_fee: Amount::from_sat(300),
            };
            let (payee, fx) = Payee::new(config, &signer);
            // Persist the payee before anyone sees its offer; the offer itself is sent on each
            // connection below.
            let mut fx = fx;
            fx.send.clear();
            apply(&mut d, fx, "payee")?;
            payee
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr_file = PathBuf::from(flags.get("addr-file")?);
    let tmp = addr_file.with_extension("tmp");
    std::fs::write(&tmp, listener.local_addr()?.to_string())?;
    std::fs::rename(&tmp, &addr_file)?;
    let mut tip = 0;
    while !payee.is_closed() {
        poll_chain(&mut d, &mut payee, &signer, &mut tip, "payee")?;
        if let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(false)?;
            d.transport_mut().connect(stream)?;
            let mut hello = Vec::new();
            hello.push(Msg::Offer(payee.offer()));
            if payee.channel_id().is_some() {
                hello.push(payee.reestablish());
            }
            for m in &hello {
                let _ = d.transport_mut().send(m);
            }
        }
        while let Some(m) = d.transport_mut().receive() {
            match payee.handle_message(m, &signer, ChainTip::at(tip)) {
                Ok(fx) => {
                    let events = apply(&mut d, fx, "payee")?;
                    if events.contains(&spilman::Event::CounterpartyLostState) {
                        // The payer lost state: it will sign nothing new. Close with the best
                        // payment we hold.
                        let fx = payee.close(&signer)?;
                        apply(&mut d, fx, "payee")?;
                    }
                }
                Err(e) => refused(&mut d, e, "payee"),
            }
        }
        if !d.transport().is_connected() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    println!("payee: closed, received {} sat", payee.received().to_sat());
    Ok(())
}

fn run_payer(flags: &Flags) -> Result<(), Error> {
    let signer = signer(0xa1);
    let wallet = Wallet::new(PAYER_WALLET_SEED);
    let payments = flags.num("payments")?;
    let amount = Amount::from_sat(flags.num("amount")?);
    let peer_file = PathBuf::from(flags.get("peer-file")?);
    let db = Db::open(Path::new(flags.get("db")?))?;
    let chain = ChainClient::connect(flags.get("chain")?)?;
    let stored = db.snapshot("channel")?;
    let outbox = db.records("outbox")?.pop();
    let mut d = driver(db, chain)?;
    let mut payer = match stored {
        Some((update_id, bytes)) => {
            Some(Payer::restore(&bytes, RestoreCheck { channel_id: None, min_update_id: update_id })?)
        }
        None => None,
    };
    let mut open: Option<Msg> = outbox.map(|b| Msg::decode(&b)).transpose()?;
    if let Some(Msg::Open(o)) = &open {
        // We may have crashed before broadcasting it: harmless if it is known.
        d.chain_mut().broadcast(&o.funding_tx);
    }
    let mut tip = 0;
    let mut close_requested = false;
    let mut last_connect = Instant::now() - Duration::from_secs(1);
    loop {
        if let Some(p) = payer.as_mut() {
            poll_chain(&mut d, p, &signer, &mut tip, "payer")?;
            if p.is_closed() {
                break;
            }
        } else {
            tip = d.chain_mut().tip()?;
        }
        if !d.transport().is_connected() && last_connect.elapsed() > Duration::from_millis(20) {
            last_connect = Instant::now();
            let addr: Option<SocketAddr> = std::fs::read_to_string(&peer_file).ok().and_then(|a| a.parse().ok());
            if let Some(stream) = addr.and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok()) {
                d.transport_mut().connect(stream)?;
                close_requested = false;
                if let Some(p) = &payer {
                    let _ = d.transport_mut().send(&p.reestablish());
                }
            }
        }
        while let Some(m) = d.transport_mut().receive() {
            match (m, payer.as_mut()) {
                (Msg::Offer(offer), None) => {
                    // First contact: take the offer, fund the channel from the wallet.
                    let config = PayerConfig {
                        capacity: CAPACITY,
                        payer_script: wallet.script(),
                        refund_fee: Amount::from_sat(300),
                        claim_fee: Amount::from_sat(300),
                        first_payment: FIRST_PAYMENT,
                        max_lifetime: 144 * 30,
                    };
                    let mut p = Payer::new(offer, config, &signer, ChainTip::at(tip))?;
                    let coin_out = TxOut { value: FAUCET, script_pubkey: wallet.script() };
                    let coin = d.chain_mut().faucet("payer", &coin_out)?;
                    let change = TxOut { value: FAUCET - CAPACITY - FUNDING_FEE, script_pubkey: wallet.script() };
                    let mut funding = unsigned_funding(
                        OutPoint { txid: coin.compute_txid(), vout: 0 },
                        vec![p.funding_output(), change],
                    );
                    wallet.sign_input(&mut funding, 0, &coin_out);
                    let fx = p.fund(funding, &signer)?;
                    // Keep `Open` in the outbox, written with the funded snapshot.
                    let o = fx.send.iter().find(|m| matches!(m, Msg::Open(_))).cloned();
                    d.storage_mut().outbox = o.as_ref().map(Msg::encode);
                    open = o;
                    apply(&mut d, fx, "payer")?;
                    payer = Some(p);
                }
                (Msg::Offer(_), Some(p)) => {
                    if p.acknowledged() == 0 {
                        if let Some(o) = &open {
                            let _ = d.transport_mut().send(o);
                        }
                    }
                }
                (m, Some(p)) => match p.handle_message(m, &signer, ChainTip::at(tip)) {
                    Ok(fx) => {
                        apply(&mut d, fx, "payer")?;
                    }
                    Err(e) => refused(&mut d, e, "payer"),
                },
                (_, None) => {}
            }
        }
        let Some(p) = payer.as_mut() else { continue };
        // A payer whose data proved older than what it signed (a restored backup) signs nothing
        // new: the payee closes with the newest payment it holds; wait for that close.
        if !d.transport().is_connected() || p.acknowledged() < p.payment_number() || p.has_lost_state() {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        // One payment in flight at a time; the payment number says how many were made, so a
        // restarted payer never pays twice.
        if p.payment_number() <= payments {
            let fx = p.pay(amount, &signer)?;
            apply(&mut d, fx, "payer")?;
        } else if !close_requested {
            close_requested = true;
            let fx = p.request_close()?;
            apply(&mut d, fx, "payer")?;
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    println!("payer: closed, paid {} sat", payer.map_or(0, |p| p.state().to_payee.to_sat()));
    Ok(())
}

/// Prints both wallets' balances; an error unless each holds exactly what it is owed.
fn check(flags: &Flags) -> Result<(Amount, Amount), Error> {
    let mut chain = ChainClient::connect(flags.get("chain")?)?;
    let payments = flags.num("payments")?;
    let amount = Amount::from_sat(flags.num("amount")?);
    let payer = chain.balance(&Wallet::new(PAYER_WALLET_SEED).script())?;
    let payee = chain.balance(&Wallet::new(PAYEE_WALLET_SEED).script())?;
    println!("payer wallet {} sat, payee wallet {} sat", payer.to_sat(), payee.to_sat());
    let (payer_owed, payee_owed) = owed(payments, amount);
    if (payer, payee) != (payer_owed, payee_owed) {
        return Err(format!("owed: payer {} sat, payee {} sat", payer_owed.to_sat(), payee_owed.to_sat()).into());
    }
    Ok((payer, payee))
}

fn run_chain_role(flags: &Flags) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr_file = PathBuf::from(flags.get("addr-file")?);
    let tmp = addr_file.with_extension("tmp");
    std::fs::write(&tmp, listener.local_addr()?.to_string())?;
    std::fs::rename(&tmp, &addr_file)?;
    serve_chain(listener);
    Ok(())
}

/// Kills a child when dropped (a failed demo leaves no process behind).
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_ok(child: &mut Reaped, deadline: Instant, who: &str) -> Result<(), Error> {
    loop {
        if let Some(status) = child.0.try_wait()? {
            return if status.success() { Ok(()) } else { Err(format!("{who} exited with {status}").into()) };
        }
        if Instant::now() > deadline {
            return Err(format!("{who} did not finish in time").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn demo() -> Result<(), Error> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("paychan-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let chain = listener.local_addr()?.to_string();
    std::thread::spawn(move || serve_chain(listener));
    let me = std::env::current_exe()?;
    let (payments, amount) = ("20", "500");
    println!("chain service on {chain}; databases in {}", dir.display());
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut payee = Reaped(
        Command::new(&me)
            .args(["payee", "--db", &path("payee.db"), "--chain", &chain, "--addr-file", &path("payee.addr")])
            .spawn()?,
    );
    let spawn_payer = || {
        Command::new(&me)
            .args(["payer", "--db", &path("payer.db"), "--chain", &chain, "--peer-file", &path("payee.addr")])
            .args(["--payments", payments, "--amount", amount])
            .spawn()
    };
    let mut payer = Reaped(spawn_payer()?);
    // Pull the plug on the payer mid-way (SIGKILL: no chance to clean up), then start it again
    // from its database: it carries on where its last committed transaction left it.
    std::thread::sleep(Duration::from_millis(150));
    if payer.0.try_wait()?.is_none() {
        payer.0.kill()?;
        payer.0.wait()?;
        println!("demo: killed the payer (SIGKILL); restarting it from payer.db");
        payer = Reaped(spawn_payer()?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_ok(&mut payer, deadline, "payer")?;
    wait_ok(&mut payee, deadline, "payee")?;
    let flags = Flags::parse(&["--chain", &chain, "--payments", payments, "--amount", amount].map(String::from));
    check(&flags)?;
    println!("both sides hold exactly what they are owed ({:?})", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
