//! A wallet-shaped node: two OS processes on 127.0.0.1 open a channel of each of the crate's
//! three types — Spilman, Decker–Wattenhofer duplex, Lightning — pay through it and close it,
//! each process persisting to its own SQLite database and settling on a simulated chain.
//!
//! `cargo run --example node` runs the whole demo (a second or two once built): it starts a
//! chain service in a thread and spawns this binary twice, `bob` then `alice`. For each layer in
//! turn, Alice opens and funds the channel, the two pay, and the channel closes cooperatively;
//! Alice is killed (SIGKILL) once on the way and started again from her database. Both processes
//! exit once every close confirmed, and the demo checks that each wallet holds exactly what it
//! is owed, to the satoshi.
//!
//! | layer     | transport                                   | payments                          | close |
//! |-----------|---------------------------------------------|-----------------------------------|-------|
//! | Spilman   | length-prefixed frames, addressed messages  | Alice → Bob                       | Bob broadcasts the last payment |
//! | duplex    | length-prefixed frames, addressed messages  | Alice → Bob, a reset, Bob → Alice | cooperative, proposed by Bob |
//! | Lightning | BOLT 8 (Noise XK) + BOLT 1 `init`           | HTLCs Alice → Bob                 | `shutdown` + `closing_signed` |
//!
//! Roles (`node ROLE --flag value …`), each a process:
//! * `chain --addr-file F`: the simulated chain service ([`chain`]).
//! * `bob --dir D --chain ADDR --payments N --amount SAT [--layers L]`: listens on one port per
//!   layer, writing each address to `D/bob-LAYER.addr`.
//! * `alice --dir D --chain ADDR --payments N --amount SAT [--layers L]`: dials Bob.
//! * `check --chain ADDR --payments N --amount SAT [--layers L]`: prints both wallets' balances
//!   and exits 0 only if each is exactly what it is owed.
//!
//! `L` is a comma-separated subset of `spilman,duplex,lightning` (all by default), run in that
//! order. Each process keeps one database (`D/alice.db`, `D/bob.db`).
//!
//! What a wallet developer can copy:
//! * **Storage** ([`store`]): one table of snapshots, one of records; each state update is written
//!   in ONE SQLite transaction, and [`paychan::driver::Driver`] writes it before sending or
//!   broadcasting anything of the same effects. Kill either process at any point and start it
//!   again with the same database: it restores its channels and carries on (`tests/processes.rs`
//!   does exactly that). After a restart the signer is recreated from the key index the
//!   snapshot records ([`signer_for`]), and the restore refuses any other signer.
//! * **Transport** ([`transport`]): Spilman and duplex messages addressed by channel id over a
//!   length-prefixed framing; Lightning over the BOLT 8 encrypted transport with BOLT 1 `init`.
//! * **Chain** ([`chain`]): broadcasts go to the chain service; every confirmed transaction is
//!   reported to the channel (unrelated ones change nothing), each new tip too, and the driver's
//!   fee bumper runs on each block.
//! * **Per layer** ([`spilman`], [`duplex`], [`lightning`]): the event loop of each side.
//!
//! What the channels cannot do for the wallet after a crash, and the wallet does here:
//! * a funding transaction is handed to the channel, which broadcasts it once safe and keeps it
//!   no longer: the wallet keeps its own copy (an outbox written with the channel's update) and
//!   broadcasts it again after a restart once the channel is past the point of no return;
//! * a channel still being set up (no signed commitment yet) is forgotten after a restart and
//!   opened again (BOLT 2 does the same on a disconnection); the Spilman payer's `Open` is kept
//!   and sent again until the payee acknowledges a payment.

mod chain;
mod duplex;
mod lightning;
mod spilman;
mod store;
mod transport;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use bitcoin::{Amount, OutPoint, Transaction, TxOut};
use paychan::core::keys::Seed;
use paychan::core::sign::InMemorySigner;
use paychan::driver::{Driver, Transport};
use paychan::driving::Effects;
use paychan::testing::wallet::{unsigned_funding, Wallet};

use chain::ChainClient;
use store::Db;

type Error = Box<dyn std::error::Error>;

/// The chain's height when the chain service starts.
const START_HEIGHT: u32 = 800_000;
/// Each wallet's on-chain identity (the same script for every layer).
const ALICE_WALLET: u8 = 0x11;
const BOB_WALLET: u8 = 0x22;
/// Each node's channel key seed: the channel of layer `i` uses key index `i` (recorded in its
/// snapshots, and read back after a restart).
const ALICE_SEED: [u8; 32] = [0xa1; 32];
const BOB_SEED: [u8; 32] = [0xb1; 32];
/// Every funding spends one faucet coin of this value (paid to Alice's wallet, change back).
const FAUCET: Amount = Amount::from_sat(1_000_000);
/// Every funding transaction's fee (paid by Alice).
const FUNDING_FEE: Amount = Amount::from_sat(1_000);

/// The layers, in the order they run.
const LAYERS: [&str; 3] = ["spilman", "duplex", "lightning"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = Flags::parse(args.get(1..).unwrap_or_default());
    let result = match args.first().map(String::as_str) {
        None | Some("demo") => demo(),
        Some("chain") => run_chain_role(&flags),
        Some(who @ ("alice" | "bob")) => run_node(who, &flags),
        Some("check") => check(&flags).map(|_| ()),
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
    fn layers(&self) -> Result<Vec<&'static str>, Error> {
        let Some(list) = self.0.get("layers") else { return Ok(LAYERS.to_vec()) };
        let wanted: Vec<&str> = list.split(',').collect();
        if let Some(bad) = wanted.iter().find(|l| !LAYERS.contains(l)) {
            return Err(format!("unknown layer {bad}").into());
        }
        Ok(LAYERS.iter().copied().filter(|l| wanted.contains(l)).collect())
    }
}

/// What one node process needs to run its channels.
pub struct Node {
    /// `alice` or `bob`.
    pub who: &'static str,
    pub dir: PathBuf,
    pub chain: String,
    pub payments: u64,
    pub amount: Amount,
}

impl Node {
    fn is_alice(&self) -> bool {
        self.who == "alice"
    }
    /// The node's database, for the channel of `layer`.
    pub fn db(&self, layer: &'static str) -> Result<Db, Error> {
        Db::open(&self.dir.join(format!("{}.db", self.who)), layer)
    }
    /// Where Bob writes his listening address for `layer`.
    pub fn addr_file(&self, layer: &str) -> PathBuf {
        self.dir.join(format!("bob-{layer}.addr"))
    }
    pub fn wallet(&self) -> Wallet {
        Wallet::new(if self.is_alice() { ALICE_WALLET } else { BOB_WALLET })
    }
    pub fn wallet_seed(&self) -> u8 {
        if self.is_alice() {
            ALICE_WALLET
        } else {
            BOB_WALLET
        }
    }
    /// The signer of a new channel of layer `index`.
    pub fn new_signer(&self, index: u64) -> InMemorySigner {
        InMemorySigner::from_seed(&Seed::from_bytes(if self.is_alice() { ALICE_SEED } else { BOB_SEED }), index)
    }
    /// A driver for the channel of `layer`: its storage, a fresh chain connection, `transport`,
    /// its bumper restored from the database.
    pub fn driver<T>(&self, layer: &'static str, transport: T) -> Result<Driver<Db, T, ChainClient>, Error> {
        let db = self.db(layer)?;
        match db.snapshot()? {
            Some((update_id, _)) => println!("{}: {layer}: restoring (update {update_id})", self.who),
            None => println!("{}: {layer}: new channel", self.who),
        }
        let bumper = match db.bumper()? {
            Some(bytes) => paychan::core::feebump::Bumper::decode(&bytes).map_err(|e| format!("bumper: {e:?}"))?,
            None => paychan::core::feebump::Bumper::new(),
        };
        Ok(Driver::with_bumper(db, transport, ChainClient::connect(&self.chain)?, bumper))
    }
    /// Alice's funding transaction for `layer`: her faucet coin of that layer, `output` to the
    /// channel, the change back to her wallet, signed.
    pub fn funding_tx(&self, chain: &mut ChainClient, layer: &str, output: TxOut) -> Result<Transaction, Error> {
        let wallet = self.wallet();
        let coin_out = TxOut { value: FAUCET, script_pubkey: wallet.script() };
        let coin = chain.faucet(&format!("alice-{layer}"), &coin_out)?;
        let change = (FAUCET - output.value).checked_sub(FUNDING_FEE).ok_or("faucet too small")?;
        let change = TxOut { value: change, script_pubkey: wallet.script() };
        let mut tx = unsigned_funding(OutPoint { txid: coin.compute_txid(), vout: 0 }, vec![output, change]);
        wallet.sign_input(&mut tx, 0, &coin_out);
        Ok(tx)
    }
}

/// The signer a restored channel was made with: the key index its snapshot records (its
/// `key_identity()`), recreated from the node's seed. `restore_with_signer` then refuses the
/// signer unless its keys are the recorded ones.
pub fn signer_for(node: &Node, identity: Option<paychan::core::sign::KeyIdentity>) -> Result<InMemorySigner, Error> {
    let index = identity.and_then(|k| k.index).ok_or("the snapshot names no key index")?;
    Ok(node.new_signer(index))
}

/// Applies a channel's effects through its driver (persist, send, broadcast, bump, watch);
/// a refused write is fatal (the process exits and restarts from its database). Returns the
/// events, which are printed.
pub fn apply<M, E: Debug, T: Transport<M>>(
    d: &mut Driver<Db, T, ChainClient>,
    fx: Effects<M, E>,
    who: &str,
) -> Result<Vec<E>, Error> {
    let done = d.apply(fx).map_err(|e| format!("{e}"))?;
    for e in &done.events {
        println!("{who}: {e:?}");
    }
    Ok(done.events)
}

/// Sleeps a little when nothing happened (the loops poll their sockets and the chain).
pub fn idle() {
    std::thread::sleep(Duration::from_millis(2));
}

/// Runs the layers in order, each until its channel closed on chain.
fn run_node(who: &str, flags: &Flags) -> Result<(), Error> {
    let node = Node {
        who: if who == "alice" { "alice" } else { "bob" },
        dir: PathBuf::from(flags.get("dir")?),
        chain: flags.get("chain")?.to_string(),
        payments: flags.num("payments")?,
        amount: Amount::from_sat(flags.num("amount")?),
    };
    for layer in flags.layers()? {
        match (layer, node.is_alice()) {
            ("spilman", true) => spilman::run_payer(&node)?,
            ("spilman", false) => spilman::run_payee(&node)?,
            ("duplex", true) => duplex::run(&node, paychan::duplex::Role::Initiator)?,
            ("duplex", false) => duplex::run(&node, paychan::duplex::Role::Acceptor)?,
            ("lightning", true) => lightning::run_opener(&node)?,
            _ => lightning::run_acceptor(&node)?,
        }
    }
    Ok(())
}

/// What each wallet holds at the end: the sum over the layers of what each layer leaves it
/// (each layer's `owed`: Alice's faucet coin minus the funding fee, what she paid and her
/// fees; Bob what he was paid minus his fees).
fn owed(layers: &[&str], payments: u64, amount: Amount) -> (Amount, Amount) {
    let (mut alice, mut bob) = (Amount::ZERO, Amount::ZERO);
    for layer in layers {
        let (a, b) = match *layer {
            "spilman" => spilman::owed(payments, amount),
            "duplex" => duplex::owed(payments),
            _ => lightning::owed(payments),
        };
        alice += a;
        bob += b;
    }
    (alice, bob)
}

/// Prints both wallets' balances; an error unless each holds exactly what it is owed.
fn check(flags: &Flags) -> Result<(Amount, Amount), Error> {
    let mut chain = ChainClient::connect(flags.get("chain")?)?;
    let payments = flags.num("payments")?;
    let amount = Amount::from_sat(flags.num("amount")?);
    let alice = chain.balance(&Wallet::new(ALICE_WALLET).script())?;
    let bob = chain.balance(&Wallet::new(BOB_WALLET).script())?;
    println!("alice wallet {} sat, bob wallet {} sat", alice.to_sat(), bob.to_sat());
    let (alice_owed, bob_owed) = owed(&flags.layers()?, payments, amount);
    if (alice, bob) != (alice_owed, bob_owed) {
        return Err(format!("owed: alice {} sat, bob {} sat", alice_owed.to_sat(), bob_owed.to_sat()).into());
    }
    Ok((alice, bob))
}

fn run_chain_role(flags: &Flags) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    write_addr(Path::new(flags.get("addr-file")?), &listener)?;
    chain::serve_chain(listener);
    Ok(())
}

/// Writes a listener's address to `file` atomically (the peer polls the file).
pub fn write_addr(file: &Path, listener: &TcpListener) -> Result<(), Error> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, listener.local_addr()?.to_string())?;
    std::fs::rename(&tmp, file)?;
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
    std::thread::spawn(move || chain::serve_chain(listener));
    let me = std::env::current_exe()?;
    let (payments, amount) = ("20", "500");
    println!("chain service on {chain}; databases in {}", dir.display());
    let d = dir.to_string_lossy().into_owned();
    let spawn = |who: &str| {
        Command::new(&me)
            .args([who, "--dir", &d, "--chain", &chain, "--payments", payments, "--amount", amount])
            .spawn()
    };
    let mut bob = Reaped(spawn("bob")?);
    let mut alice = Reaped(spawn("alice")?);
    // Pull the plug on Alice mid-way (SIGKILL: no chance to clean up), then start her again from
    // her database: she carries on where her last committed transaction left her.
    std::thread::sleep(Duration::from_millis(150));
    if alice.0.try_wait()?.is_none() {
        alice.0.kill()?;
        alice.0.wait()?;
        println!("demo: killed alice (SIGKILL); restarting her from alice.db");
        alice = Reaped(spawn("alice")?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_ok(&mut alice, deadline, "alice")?;
    wait_ok(&mut bob, deadline, "bob")?;
    let flags = Flags::parse(&["--chain", &chain, "--payments", payments, "--amount", amount].map(String::from));
    check(&flags)?;
    println!("both sides hold exactly what they are owed ({:?})", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
