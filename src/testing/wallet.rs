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
