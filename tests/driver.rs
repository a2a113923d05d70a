//! The std driver applies effects in the contract's order: persist, send, broadcast (with the
//! bumper's own state persisted before its broadcasts), watch; a failed write acts on nothing.

use std::cell::RefCell;
use std::rc::Rc;

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use paychan::core::feebump::{BumpMethod, BumpRequest, Bumper, InputTemplate, Protects, WitnessPart};
use paychan::core::sign::{KeyId, Tweak};
use paychan::core::units::BlockHeight;
use paychan::driver::{Chain, Driver, Storage, Transport};
use paychan::driving::{Effects, StateUpdate, Watch};

type Log = Rc<RefCell<Vec<String>>>;

struct Store {
    log: Log,
    fail: bool,
    bumper: Vec<StateUpdate>,
}
impl Storage for Store {
    type Error = &'static str;
    fn persist_channel(&mut self, u: &StateUpdate) -> Result<(), Self::Error> {
        if self.fail {
            return Err("disk full");
        }
        self.log.borrow_mut().push(format!("persist channel {}", u.update_id));
        Ok(())
    }
    fn persist_bumper(&mut self, u: &StateUpdate) -> Result<(), Self::Error> {
        if self.fail {
            return Err("disk full");
        }
        self.log.borrow_mut().push(format!("persist bumper {}", u.update_id));
        self.bumper.push(u.clone());
        Ok(())
    }
}

struct Wire {
    log: Log,
    down: bool,
}
impl Transport<u8> for Wire {
    type Error = &'static str;
    fn send(&mut self, m: &u8) -> Result<(), Self::Error> {
        if self.down {
            return Err("connection reset");
        }
        self.log.borrow_mut().push(format!("send {m}"));
        Ok(())
    }
}

struct Node {
    log: Log,
}
impl Chain for Node {
    fn broadcast(&mut self, tx: &Transaction) {
        self.log.borrow_mut().push(format!("broadcast {}", tx.output.len()));
    }
    fn watch(&mut self, w: Watch) {
        self.log.borrow_mut().push(format!("watch {}", matches!(w, Watch::Spend(_))));
    }
}

fn tx(outputs: usize) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::from_sat(1_000), script_pubkey: ScriptBuf::new() }; outputs],
    }
}

fn driver(log: &Log, fail: bool, down: bool) -> Driver<Store, Wire, Node> {
    Driver::new(
        Store { log: log.clone(), fail, bumper: Vec::new() },
        Wire { log: log.clone(), down },
        Node { log: log.clone() },
    )
}

fn effects() -> Effects<u8, &'static str> {
    let mut fx = Effects::none();
    fx.update = Some(StateUpdate::snapshot(7, vec![7]));
    fx.send = vec![1, 2];
    fx.broadcast = vec![tx(3)];
    fx.watch = vec![Watch::Tx(tx(3).compute_txid())];
    fx.events = vec!["done"];
    fx.next_deadline = Some(BlockHeight(50));
    let op = OutPoint { txid: tx(3).compute_txid(), vout: 0 };
    fx.bumps = vec![BumpRequest {
        tx: tx(3),
        deadline: BlockHeight(60),
        at_stake: Amount::from_sat(1_000),
        protects: Protects::Sweep,
        method: BumpMethod::Replace {
            inputs: vec![InputTemplate {
                outpoint: op,
                value: Amount::from_sat(1_000),
                script_code: ScriptBuf::new(),
                p2wpkh: false,
                sequence: Sequence::MAX,
                key: Some((KeyId::Funding, Tweak::None)),
                witness: vec![WitnessPart::Signature],
                paired_output: None,
            }],
            destination: ScriptBuf::new(),
            lock_time: 0,
        },
    }];
    fx
}

#[test]
fn effects_are_applied_in_the_contract_order() {
    let log = Log::default();
    let mut d = driver(&log, false, false);
    let done = d.apply(effects()).unwrap();
    assert_eq!(done.events, ["done"]);
    assert_eq!(done.next_deadline, Some(BlockHeight(50)));
    assert_eq!(
        *log.borrow(),
        [
            "persist channel 7",
            "send 1",
            "send 2",
            "broadcast 3",
            // The bumper's tracking is persisted, then its watches registered.
            "persist bumper 1",
            "watch true",
            "watch false",
            "watch false",
        ]
    );
    assert_eq!(d.bumper().pending().count(), 1);
    let restored = Bumper::decode(d.storage().bumper[0].snapshot.as_deref().unwrap()).unwrap();
    assert_eq!(&restored, d.bumper());
}

/// A crash between persisting and sending is safe; sending before persisting is not: a failed
/// write must stop everything (a sent signature the restored channel does not know could lose
/// money).
#[test]
fn a_failed_write_sends_and_broadcasts_nothing() {
    let log = Log::default();
    let mut d = driver(&log, true, false);
    assert!(d.apply(effects()).is_err());
    assert!(log.borrow().is_empty(), "nothing acted on: {:?}", log.borrow());
    assert_eq!(d.bumper().pending().count(), 0);
}

/// A dropped connection must not stop a broadcast that protects money.
#[test]
fn a_dropped_connection_still_broadcasts_and_watches() {
    let log = Log::default();
    let mut d = driver(&log, false, true);
    let done = d.apply(effects()).unwrap();
    assert_eq!(done.send_errors, ["connection reset", "connection reset"]);
    assert!(log.borrow().iter().any(|l| l == "broadcast 3"));
    assert_eq!(log.borrow().iter().filter(|l| l.starts_with("watch")).count(), 3);
}

/// An embedder polls its chain backend and writes its own bookkeeping through the driver it
/// handed them to, without taking the driver apart.
#[test]
fn the_embedder_reaches_its_storage_and_chain_through_the_driver() {
    let log = Log::default();
    let mut d = driver(&log, false, false);
    d.storage_mut().fail = true;
    assert!(d.apply(effects()).is_err(), "the storage the driver uses is the one changed");
    d.storage_mut().fail = false;
    d.chain_mut().log.borrow_mut().push("polled".to_string());
    assert!(d.apply(effects()).is_ok());
    assert_eq!(log.borrow()[0], "polled");
    assert_eq!(log.borrow()[1], "persist channel 7");
}
