//! Proof that `paychan` with `default-features = false` builds and links without `std`.
//!
//! This is a `#![no_std]` static library with its own panic handler and global allocator. Were
//! `std` anywhere in the dependency graph, its `panic_impl` lang item would clash with the
//! `#[panic_handler]` below and the build would fail. [`paychan_no_std_check`] drives the core
//! end to end (key derivation, shachain, commitment building, signing and verification) so the
//! code is really compiled into the library, not just type-checked.

#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::panic::PanicInfo;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use paychan::bitcoin::hashes::Hash;
use paychan::bitcoin::{Amount, OutPoint, Txid};
use paychan::core::commitment::signatures::{sign_counterparty_commitment, verify_holder_commitment};
use paychan::core::commitment::{
    build_commitment, ChannelType, CommitmentHtlc, CommitmentKeys, CommitmentNumber, CommitmentParams, CommitmentState,
    FeeratePerKw, HtlcDirection, ObscuringFactor,
};
use paychan::core::keys::{ChannelSecrets, RevocationPubkey, Seed};
use paychan::core::shachain::{self, SecretStore};
use paychan::core::sign::{InMemorySigner, Signer};
use paychan::core::{MilliSats, PaymentPreimage};

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The precompiled `core` and `alloc` are built with `panic = "unwind"` and so refer to this
/// symbol from their unwind tables. With `panic = "abort"` nothing ever unwinds, so it is never
/// called; it exists only so the static library links into a C program (see `run.c`).
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Size of the bump allocator's arena. One call of [`paychan_no_std_check`] needs a few KiB.
const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the arena is only handed out in disjoint pieces, each claimed by one atomic
// compare-exchange of `BumpAllocator::next`.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_SIZE]));

/// A bump allocator over [`ARENA`]: allocation moves a cursor forward, deallocation does nothing,
/// and once the arena is used up every allocation fails (which aborts through the panic handler).
struct BumpAllocator {
    next: AtomicUsize,
}

unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = ARENA.0.get().cast::<u8>();
        let mut current = self.next.load(Ordering::Relaxed);
        loop {
            // `current <= HEAP_SIZE`, so the pointer stays inside (or one past) the arena.
            let unaligned = base.wrapping_add(current);
            let start = match current.checked_add(unaligned.align_offset(layout.align())) {
                Some(s) => s,
                None => return ptr::null_mut(),
            };
            let end = match start.checked_add(layout.size()) {
                Some(e) if e <= HEAP_SIZE => e,
                _ => return ptr::null_mut(),
            };
            match self.next.compare_exchange_weak(current, end, Ordering::Relaxed, Ordering::Relaxed) {
                // SAFETY: `start + size <= HEAP_SIZE`, so the range lies inside the arena, and no
                // other allocation can claim it after the successful compare-exchange.
                Ok(_) => return unsafe { base.add(start) },
                Err(actual) => current = actual,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator { next: AtomicUsize::new(0) };

/// Runs one round of the core from a 32-byte seed: derives two parties' channel keys, feeds five
/// per-commitment secrets into a shachain store and reads one back, derives a revocation key and
/// the commitment keys, builds an anchors commitment with two HTLCs, signs it as the peer,
/// verifies and finalises it. Writes the peer's compact commitment signature to `sig_out` and
/// returns 0, or a non-zero step number on failure.
#[no_mangle]
pub extern "C" fn paychan_no_std_check(seed: &[u8; 32], sig_out: &mut [u8; 64]) -> u32 {
    match run(seed) {
        Ok(sig) => {
            *sig_out = sig;
            0
        }
        Err(step) => step,
    }
}

fn run(seed: &[u8; 32]) -> Result<[u8; 64], u32> {
    let seed = Seed::from_bytes(*seed);
    let holder = InMemorySigner::new(ChannelSecrets::from_seed(&seed, 0));
    let peer = InMemorySigner::new(ChannelSecrets::from_seed(&seed, 1));
    let secp = holder.secp();
    let number = CommitmentNumber::new(4).ok_or(1u32)?;

    // Shachain: the peer reveals secrets of commitments 0..=4; the store must regenerate them.
    let peer_secrets = ChannelSecrets::from_seed(&seed, 1);
    let mut store = SecretStore::new();
    for n in 0..5u64 {
        let index = shachain::MAX_INDEX - n;
        let secret = shachain::generate_from_seed(&peer_secrets.commitment_seed, index);
        store.insert(index, &secret).map_err(|_| 2u32)?;
    }
    if store.get(number.secret_index()) != Some(peer.release_per_commitment_secret(number).map_err(|_| 3u32)?) {
        return Err(3);
    }

    let point = holder.per_commitment_point(number).map_err(|_| 4u32)?;
    let (ours, theirs) = (*holder.pubkeys(), *peer.pubkeys());
    let revocation = RevocationPubkey::derive(secp, &theirs.revocation_basepoint, &point).map_err(|_| 5u32)?;
    let keys = CommitmentKeys::derive(secp, &point, &ours, &theirs).map_err(|_| 5u32)?;
    if keys.revocation != revocation {
        return Err(5);
    }

    let params = CommitmentParams {
        channel_type: ChannelType::AnchorsZeroFeeHtlc,
        funding_outpoint: OutPoint { txid: Txid::all_zeros(), vout: 0 },
        funding_value: Amount::from_sat(1_000_000),
        broadcaster_is_funder: true,
        to_self_delay: 144,
        dust_limit: Amount::from_sat(354),
        obscuring_factor: ObscuringFactor::new(&ours.payment_basepoint, &theirs.payment_basepoint),
        broadcaster: ours,
        countersignatory: theirs,
    };
    let htlcs = [
        CommitmentHtlc::new(
            HtlcDirection::Offered,
            MilliSats::from_msat(50_000_000),
            PaymentPreimage([1; 32]).hash(),
            500_000,
        ),
        CommitmentHtlc::new(
            HtlcDirection::Received,
            MilliSats::from_msat(70_000_000),
            PaymentPreimage([2; 32]).hash(),
            500_100,
        ),
    ];
    let state = CommitmentState {
        number,
        to_broadcaster: MilliSats::from_msat(600_000_000),
        to_countersignatory: MilliSats::from_msat(280_000_000),
        feerate: FeeratePerKw(2_500),
        htlcs: &htlcs,
    };
    let commitment = build_commitment(&params, &keys, &state).map_err(|_| 6u32)?;
    let sigs = sign_counterparty_commitment(&peer, &commitment).map_err(|_| 7u32)?;
    let compact = sigs.commitment.signature.serialize_compact();
    let verified = verify_holder_commitment(secp, commitment, &theirs.funding, sigs).map_err(|_| 8u32)?;
    if verified.htlc_txs().len() != htlcs.len() {
        return Err(8);
    }
    let tx = verified.finalize(&holder).map_err(|_| 9u32)?;
    if tx.input.first().map_or(0, |i| i.witness.len()) != 4 {
        return Err(9);
    }
    noise_roundtrip()?;
    Ok(compact)
}

/// A BOLT #8 handshake and one message each way (ChaCha20-Poly1305 compiled without `std`).
fn noise_roundtrip() -> Result<(), u32> {
    use paychan::bitcoin::secp256k1::{Secp256k1, SecretKey};
    use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner};
    let key = |b: u8| SecretKey::from_slice(&[b; 32]).map_err(|_| 10u32);
    let alice = InMemoryNodeSigner::new(key(1)?);
    let bob = InMemoryNodeSigner::new(key(2)?);
    let secp = Secp256k1::signing_only();
    let (mut a, act1) = Handshake::initiator(&secp, &alice, bob.node_id(), key(3)?).map_err(|_| 10u32)?;
    let mut b = Handshake::responder(&secp, key(4)?);
    let act2 = b.read_act_one(&act1, &bob).map_err(|_| 10u32)?;
    let (mut sa, act3) = a.read_act_two(&act2, &alice).map_err(|_| 10u32)?;
    let (mut sb, _) = b.read_act_three(&act3, &bob).map_err(|_| 10u32)?;
    let wire = sa.encrypt(b"ping").map_err(|_| 11u32)?;
    let mut ok = false;
    sb.read(&wire, |m| ok = m == b"ping").map_err(|_| 11u32)?;
    let back = sb.encrypt(b"pong").map_err(|_| 11u32)?;
    let mut ok2 = false;
    sa.read(&back, |m| ok2 = m == b"pong").map_err(|_| 11u32)?;
    if ok && ok2 {
        Ok(())
    } else {
        Err(11)
    }
}
