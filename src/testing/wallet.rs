//! A one-key P2WPKH wallet: funds outputs on the simulated [`Chain`] and
//! signs its inputs, for the fee inputs an anchors channel's transactions need.

use std::vec;

use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

use super::chain::Chain;

/// What an embedder's wallet hands a channel to fund: version 2, one native segwit input
/// spending `prevout` (empty `scriptSig`, so the txid is final before signing), `outputs` in
/// order. Unsigned: the channel only needs its txid and outputs.
pub fn unsigned_funding(prevout: OutPoint, outputs: std::vec::Vec<TxOut>) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: prevout,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: outputs,
    }
}

/// A wallet of one key.
pub struct Wallet {
    secp: Secp256k1<All>,
    key: SecretKey,
    public: CompressedPublicKey,
    funded: u32,
}

impl core::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Wallet").field("public", &self.public).finish_non_exhaustive()
    }
}

impl Wallet {
    /// The wallet whose secret key is 32 bytes of `seed` (not zero).
    pub fn new(seed: u8) -> Self {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[seed.max(1); 32]).expect("a valid key");
        let public = CompressedPublicKey(key.public_key(&secp));
        Wallet { secp, key, public, funded: 0 }
    }

    /// Its P2WPKH script.
    pub fn script(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.public.wpubkey_hash())
    }

    /// An output of `value` to the wallet, confirmed on `chain` (by a transaction out of thin air).
    pub fn fund(&mut self, chain: &mut Chain, value: Amount) -> (OutPoint, TxOut) {
        self.funded += 1;
        let out = TxOut { value, script_pubkey: self.script() };
        let tx = Transaction {
            version: Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()),
                    vout: self.funded,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![out.clone()],
        };
        chain.credit(&tx);
        (OutPoint { txid: tx.compute_txid(), vout: 0 }, out)
    }

    /// Signs input `index` of `tx`, which spends `prevout` (a wallet output), `SIGHASH_ALL`.
    pub fn sign_input(&self, tx: &mut Transaction, index: usize, prevout: &TxOut) {
        let sighash = SighashCache::new(&*tx)
            .p2wpkh_signature_hash(index, &prevout.script_pubkey, prevout.value, EcdsaSighashType::All)
            .expect("a P2WPKH input");
        let sig = self.secp.sign_ecdsa(&Message::from(sighash), &self.key);
        let sig = bitcoin::ecdsa::Signature { signature: sig, sighash_type: EcdsaSighashType::All };
        tx.input[index].witness = Witness::p2wpkh(&sig, &self.public.0);
    }
}

/// A [`FeeWallet`](crate::core::feebump::FeeWallet) over a [`Wallet`]'s coins on the simulated
/// chain: it hands out its largest unreserved coins first, signs them, and keeps them reserved
/// until released. Call [`FeeCoins::sync`] each block to forget coins spent on chain and pick up
/// the change the bumps paid back.
#[derive(Debug)]
pub struct FeeCoins {
    wallet: Wallet,
    coins: std::vec::Vec<(OutPoint, TxOut)>,
    reserved: std::vec::Vec<OutPoint>,
    /// How many times `select_coins` was asked (tests check that replacements reuse coins).
    pub selections: u32,
}

impl FeeCoins {
    /// A wallet of one key, with no coins yet.
    pub fn new(wallet: Wallet) -> Self {
        FeeCoins { wallet, coins: std::vec::Vec::new(), reserved: std::vec::Vec::new(), selections: 0 }
    }

    /// Funds a coin of `value` on `chain`.
    pub fn add_coin(&mut self, chain: &mut Chain, value: Amount) -> OutPoint {
        let (op, out) = self.wallet.fund(chain, value);
        self.coins.push((op, out));
        op
    }

    /// The wallet's script (change goes there).
    pub fn script(&self) -> ScriptBuf {
        self.wallet.script()
    }

    /// Drops coins no longer unspent on `chain` and adopts unspent outputs to the wallet's script
    /// created by confirmed transactions it has not seen.
    pub fn sync(&mut self, chain: &Chain) {
        self.coins.retain(|(op, _)| chain.is_unspent(op));
        self.reserved.retain(|op| chain.is_unspent(op));
        let script = self.wallet.script();
        for tx in chain.confirmed_txs() {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                let op = OutPoint { txid, vout: vout as u32 };
                if out.script_pubkey == script && chain.is_unspent(&op) && !self.coins.iter().any(|(c, _)| *c == op) {
                    self.coins.push((op, out.clone()));
                }
            }
        }
    }

    /// Total value of the coins it holds (reserved or not).
    pub fn balance(&self) -> Amount {
        self.coins.iter().map(|(_, o)| o.value).sum()
    }

    /// The coins currently reserved by a bumper.
    pub fn reserved(&self) -> &[OutPoint] {
        &self.reserved
    }
}

impl crate::core::feebump::FeeWallet for FeeCoins {
    fn select_coins(
        &mut self,
        amount: Amount,
        exclude: &[OutPoint],
    ) -> Result<std::vec::Vec<crate::core::feebump::WalletCoin>, crate::core::feebump::WalletError> {
        self.selections += 1;
        let mut free: std::vec::Vec<&(OutPoint, TxOut)> =
            self.coins.iter().filter(|(op, _)| !self.reserved.contains(op) && !exclude.contains(op)).collect();
        free.sort_by_key(|c| core::cmp::Reverse(c.1.value));
        let mut picked = std::vec::Vec::new();
        let mut total = Amount::ZERO;
        for (op, out) in free {
            if total >= amount {
                break;
            }
            total += out.value;
            picked.push(crate::core::feebump::WalletCoin { outpoint: *op, txout: out.clone(), witness_weight: 109 });
        }
        if total < amount {
            return Err(crate::core::feebump::WalletError::InsufficientFunds);
        }
        self.reserved.extend(picked.iter().map(|c| c.outpoint));
        Ok(picked)
    }

    fn change_script(&mut self) -> ScriptBuf {
        self.wallet.script()
    }

    fn sign_coins(
        &self,
        tx: &mut Transaction,
        first_input: usize,
        coins: &[crate::core::feebump::WalletCoin],
    ) -> Result<(), crate::core::feebump::WalletError> {
        for (i, c) in coins.iter().enumerate() {
            if tx.input.get(first_input + i).is_none() {
                return Err(crate::core::feebump::WalletError::Signing);
            }
            self.wallet.sign_input(tx, first_input + i, &c.txout);
        }
        Ok(())
    }

    fn release_coins(&mut self, coins: &[OutPoint]) {
        self.reserved.retain(|op| !coins.contains(op));
    }
}
