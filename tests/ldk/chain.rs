//! One simulated chain under both nodes: paychan's `testing::chain::Chain` (lock times and
//! Bitcoin Core's interpreter on every transaction) mines what either node broadcasts; each
//! block goes to LDK through its `chain::Confirm` API and to paychan's channels.
//!
//! LDK's anchor channels do not broadcast their commitment or HTLC transactions themselves: they
//! yield `BumpTransaction` events, which LDK's `BumpTransactionEventHandlerSync` turns into
//! transactions with inputs from a wallet. [`LdkWallet`] is that wallet: P2WPKH coins on the
//! simulated chain, one key.

use std::sync::{Arc, Mutex};

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, CompressedPublicKey, OutPoint, Psbt, ScriptBuf, Transaction, TxOut, Txid};
use lightning::events::bump_transaction::sync::{BumpTransactionEventHandlerSync, WalletSourceSync, WalletSync};
use lightning::events::bump_transaction::{BumpTransactionEvent, Utxo};
use lightning::events::{Event as LdkEvent, EventsProvider};
use paychan::testing::chain::{Chain, Reject};

use super::{Broadcast, Ldk, Link, Log};

/// Who broadcast a transaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Who {
    Paychan,
    Ldk,
}

/// LDK's on-chain wallet: coins paying P2WPKH of one key, read from the simulated chain.
pub struct LdkWallet {
    key: SecretKey,
    /// The wallet's unspent coins (refreshed from the chain before each event is handled).
    pub coins: Mutex<Vec<(OutPoint, TxOut)>>,
}

impl LdkWallet {
    pub fn new(b: u8) -> LdkWallet {
        LdkWallet { key: SecretKey::from_slice(&[b; 32]).unwrap(), coins: Mutex::new(vec![]) }
    }

    fn pubkey(&self) -> CompressedPublicKey {
        CompressedPublicKey(self.key.public_key(&Secp256k1::new()))
    }

    /// The wallet's script.
    pub fn script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.pubkey().wpubkey_hash())
    }
}

impl WalletSourceSync for LdkWallet {
    fn list_confirmed_utxos(&self) -> Result<Vec<Utxo>, ()> {
        let wpkh = self.pubkey().wpubkey_hash();
        Ok(self.coins.lock().unwrap().iter().map(|(op, o)| Utxo::new_v0_p2wpkh(*op, o.value, &wpkh)).collect())
    }

    fn get_change_script(&self) -> Result<ScriptBuf, ()> {
        Ok(self.script())
    }

    /// Signs the wallet's inputs (LDK signs the anchor or HTLC input itself afterwards).
    fn sign_psbt(&self, psbt: Psbt) -> Result<Transaction, ()> {
        let secp = Secp256k1::new();
        let mut tx = psbt.unsigned_tx.clone();
        let prevouts: Vec<TxOut> =
            psbt.inputs.iter().map(|i| i.witness_utxo.clone().ok_or(())).collect::<Result<_, _>>()?;
        let script = self.script();
        let mut cache = SighashCache::new(&psbt.unsigned_tx);
        for (idx, prev) in prevouts.iter().enumerate() {
            if prev.script_pubkey != script {
                continue;
            }
            let sighash =
                cache.p2wpkh_signature_hash(idx, &script, prev.value, EcdsaSighashType::All).map_err(|_| ())?;
            let sig = secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &self.key);
            let sig = bitcoin::ecdsa::Signature { signature: sig, sighash_type: EcdsaSighashType::All };
            tx.input[idx].witness = bitcoin::Witness::p2wpkh(&sig, &self.pubkey().0);
        }
        Ok(tx)
    }
}

pub type BumpHandler = BumpTransactionEventHandlerSync<
    Arc<Broadcast>,
    Arc<WalletSync<Arc<LdkWallet>, Arc<Log>>>,
    Arc<lightning::sign::KeysManager>,
    Arc<Log>,
>;

/// The chain both nodes see, with what each broadcast and what confirmed.
pub struct Sim {
    pub chain: Chain,
    /// Broadcast transactions not yet in the mempool (waiting for a parent or a lock), with who
    /// sent them.
    waiting: Vec<(Who, Transaction)>,
    /// How much of paychan's broadcast list was taken.
    pc_seen: usize,
    /// Every confirmed transaction with who broadcast it, in block order.
    pub mined: Vec<(Who, Transaction, u32)>,
    pub wallet: Arc<LdkWallet>,
    pub bumper: BumpHandler,
    /// LDK's `SpendableOutputs` (what it may sweep with its own wallet).
    pub ldk_spendable: Vec<lightning::sign::SpendableOutputDescriptor>,
    /// Every other event LDK raised (manager and monitors).
    pub ldk_events: Vec<LdkEvent>,
}

impl Sim {
    /// Starts at the height both nodes are at, with `funding` confirmed and `coins` coins of
    /// 100,000 sat in LDK's wallet.
    pub fn new(ldk: &Ldk, link: &Link, funding: &Transaction, coins: u8) -> Sim {
        let height = (ldk.headers.len() - 1) as u32;
        assert_eq!(height, link.pc.tip, "both nodes at the same height");
        let mut chain = Chain::at(height);
        chain.credit(funding);
        let wallet = Arc::new(LdkWallet::new(0x3c));
        let coin_tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![],
            output: (0..coins)
                .map(|_| TxOut { value: Amount::from_sat(100_000), script_pubkey: wallet.script() })
                .collect(),
        };
        chain.credit(&coin_tx);
        let log = Arc::new(Log("ldk-bump"));
        let source = Arc::new(WalletSync::new(wallet.clone(), log.clone()));
        let bumper = BumpTransactionEventHandlerSync::new(ldk.broadcast.clone(), source, ldk.keys.clone(), log);
        // What LDK broadcast before (the funding, a closing transaction) is not news.
        ldk.broadcast.0.lock().unwrap().clear();
        Sim {
            chain,
            waiting: vec![],
            pc_seen: link.pc.broadcast.len(),
            mined: vec![],
            wallet,
            bumper,
            ldk_spendable: vec![],
            ldk_events: vec![],
        }
    }

    fn refresh_wallet(&self) {
        let script = self.wallet.script();
        let mut coins = vec![];
        for tx in self.chain.confirmed_txs() {
            let txid = tx.compute_txid();
            for (vout, o) in tx.output.iter().enumerate() {
                let op = OutPoint { txid, vout: vout as u32 };
                if o.script_pubkey == script && self.chain.is_unspent(&op) {
                    coins.push((op, o.clone()));
                }
            }
        }
        // Not those a waiting transaction already spends.
        coins.retain(|(op, _)| {
            !self
                .chain
                .mempool()
                .iter()
                .chain(self.waiting.iter().map(|(_, t)| t))
                .any(|t| t.input.iter().any(|i| i.previous_output == *op))
        });
        *self.wallet.coins.lock().unwrap() = coins;
    }

    /// Takes LDK's events (manager and monitors); `BumpTransaction` events are handled with
    /// LDK's wallet.
    pub fn ldk_events(&mut self, ldk: &Ldk) {
        for e in ldk.events() {
            self.ldk_events.push(e);
        }
        let got = std::cell::RefCell::new(Vec::new());
        ldk.monitor.process_pending_events(&|e| {
            got.borrow_mut().push(e);
            Ok(())
        });
        for e in got.into_inner() {
            match e {
                LdkEvent::BumpTransaction(b) => {
                    self.refresh_wallet();
                    self.bumper.handle_event(&b);
                    if let BumpTransactionEvent::ChannelClose { .. } = b {
                        self.ldk_events.push(LdkEvent::BumpTransaction(b));
                    }
                }
                LdkEvent::SpendableOutputs { outputs, .. } => self.ldk_spendable.extend(outputs),
                other => self.ldk_events.push(other),
            }
        }
    }

    /// Queues what both nodes broadcast since the last call, paychan's first, and moves every
    /// queued transaction that is valid in the next block into the mempool. A transaction whose
    /// input was already spent by a confirmed transaction lost a race and is dropped; one that
    /// spends an output not confirmed yet waits. paychan promises to broadcast only what is
    /// valid: a lock not reached is a failure for paychan (LDK may broadcast early, it waits).
    /// Core's interpreter refusing anything is a failure.
    fn take_broadcasts(&mut self, ldk: &Ldk, link: &Link) {
        for tx in &link.pc.broadcast[self.pc_seen..] {
            self.waiting.push((Who::Paychan, tx.clone()));
        }
        self.pc_seen = link.pc.broadcast.len();
        for tx in ldk.broadcast.0.lock().unwrap().drain(..) {
            self.waiting.push((Who::Ldk, tx));
        }
        let mut keep = vec![];
        for (who, tx) in std::mem::take(&mut self.waiting) {
            let txid = tx.compute_txid();
            if self.chain.confirmation(&txid).is_some() {
                continue;
            }
            match self.chain.submit(&tx) {
                Ok(()) => {}
                Err(Reject::MissingOrSpent(op)) => {
                    if self.chain.confirmation(&op.txid).is_none() {
                        keep.push((who, tx)); // its parent is not confirmed yet
                    }
                    // Otherwise: the output was spent by a confirmed transaction (a lost race).
                }
                Err(e @ (Reject::NonFinal { .. } | Reject::RelativeLock { .. })) => {
                    assert_eq!(who, Who::Ldk, "paychan broadcast {txid} before it was valid: {e:?}");
                    keep.push((who, tx));
                }
                Err(e) => panic!("{who:?}'s {txid} refused by the chain: {e:?}\n{tx:?}"),
            }
        }
        self.waiting = keep;
    }

    /// Mines one block with every valid broadcast transaction and gives it to both nodes.
    pub fn block(&mut self, ldk: &mut Ldk, link: &mut Link) -> Vec<Transaction> {
        self.ldk_events(ldk);
        self.take_broadcasts(ldk, link);
        let txs = self.chain.mine_block();
        let height = self.chain.height;
        for tx in &txs {
            let txid = tx.compute_txid();
            let who = if link.pc.broadcast.iter().any(|t| t.compute_txid() == txid) { Who::Paychan } else { Who::Ldk };
            self.mined.push((who, tx.clone(), height));
        }
        assert_eq!(ldk.mine(&txs), height);
        // A closed channel sends nothing.
        let msgs = link.pc.mine(&txs);
        assert!(msgs.is_empty(), "{msgs:?}");
        assert_eq!(link.pc.tip, height);
        self.ldk_events(ldk);
        txs
    }

    /// The transactions `who` got confirmed.
    pub fn mined_by(&self, who: Who) -> Vec<&Transaction> {
        self.mined.iter().filter(|(w, ..)| *w == who).map(|(_, t, _)| t).collect()
    }

    /// The confirmed output at `op`, from a mined or credited transaction.
    pub fn output(&self, op: &OutPoint) -> Option<TxOut> {
        self.chain.tx(&op.txid).and_then(|t| t.output.get(op.vout as usize).cloned())
    }

    /// The fee of a confirmed transaction.
    pub fn fee(&self, tx: &Transaction) -> Amount {
        let ins: Amount = tx.input.iter().map(|i| self.output(&i.previous_output).expect("input known").value).sum();
        ins - tx.output.iter().map(|o| o.value).sum::<Amount>()
    }

    /// The transaction that spent `op` on chain, if any.
    pub fn spender(&self, op: &OutPoint) -> Option<(Who, &Transaction)> {
        self.mined.iter().find(|(_, t, _)| t.input.iter().any(|i| i.previous_output == *op)).map(|(w, t, _)| (*w, t))
    }

    pub fn txid_confirmed(&self, txid: &Txid) -> bool {
        self.chain.confirmation(txid).is_some()
    }
}
