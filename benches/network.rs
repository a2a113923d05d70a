//! The network layer against its primitives, and against LDK 0.2.7 where its public API allows,
//! in one criterion run. At the end the ratios are printed (no thresholds).
//!
//! * `primitives`: ECDH (`SharedSecret::new`), `s·G`, a public-key tweak multiplication,
//!   HMAC-SHA256 over 1,332 bytes (an onion's routing info and the payment hash), the ChaCha20
//!   keystream over 1,300 and 2,600 bytes, and ChaCha20-Poly1305 seal and open of 2 bytes (the
//!   length header) and of each message size, all from the crates the layer uses; and, outside
//!   every floor, the cost of creating a verification-only secp256k1 context.
//! * `bolt8`: a whole handshake (both ends, three acts); a message of each size encrypted by one
//!   end's `Transport` and read by the other's; a connection (handshake and `init` both ways),
//!   paychan's and LDK's (two `PeerManager`s over in-memory sockets). LDK's
//!   `PeerChannelEncryptor` is `pub(crate)` in 0.2.7 (public only under `cfg(fuzzing)`), so its
//!   handshake and message encryption cannot be timed alone: the connection is the comparison.
//! * `onion20`: building a 20-hop payment onion (19 forwards and a final hop with
//!   `payment_data`) and peeling it hop by hop, paychan's `build_onion`/`peel` and LDK's public
//!   `onion_utils::create_payment_onion`/`onion_payment::peel_payment_onion` (which also decodes
//!   and checks each hop's TLV payload against the HTLC).
//!
//! Floors: handshake = 6 ECDH + 2 `s·G`; message = seal + open of the header and of the body;
//! build = 20 × (ECDH + `s·G` + HMAC(1,332) + ChaCha20(1,300)); peel = 20 × (ECDH + tweak +
//! HMAC(1,332) + ChaCha20(2,600)).
//!
//! Run with `cargo bench --bench network` (`-- --quick` for a short run).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash, HashEngine, Hmac, HmacEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{All, PublicKey, Scalar, Secp256k1, SecretKey};
use chacha20_poly1305::chacha20::ChaCha20;
use chacha20_poly1305::{ChaCha20Poly1305, Key, Nonce};
use criterion::{criterion_group, Criterion, Throughput};
use lightning::ln::channelmanager::RecipientOnionFields;
use lightning::ln::msgs::UpdateAddHTLC;
use lightning::ln::onion_payment::peel_payment_onion;
use lightning::ln::onion_utils::create_payment_onion;
use lightning::ln::peer_handler::{IgnoringMessageHandler, PeerManager, SocketDescriptor};
use lightning::ln::types::ChannelId;
use lightning::routing::router::{Path, RouteHop};
use lightning::sign::{KeysManager, NodeSigner as _, Recipient};
use lightning::types::features::{ChannelFeatures, NodeFeatures};
use lightning::types::payment::{PaymentHash as LdkHash, PaymentSecret};
use lightning::util::logger::{Logger, Record};
use paychan::network::features::Features;
use paychan::network::noise::{Handshake, InMemoryNodeSigner, NodeSigner, Transport};
use paychan::network::onion::{build_onion, peel, Peeled};
use paychan::network::payload::HopPayload;
use paychan::network::peer::{Peer, PeerEvent};

const SIZES: [usize; 4] = [64, 1_024, 16_384, 65_535];
const HOPS: usize = 20;
const HEIGHT: u32 = 100;
const FINAL_CLTV: u32 = 40;
const HOP_CLTV: u32 = 80;
const HOP_FEE: u64 = 1_000;
const AMOUNT: u64 = 1_000_000;

fn sk(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut e = HmacEngine::<sha256::Hash>::new(key);
    e.input(data);
    Hmac::<sha256::Hash>::from_engine(e).to_byte_array()
}

fn primitives(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let (a, b) = (sk(1), sk(2));
    let pb = PublicKey::from_secret_key(&secp, &b);
    let tweak = Scalar::from_be_bytes([7; 32]).unwrap();
    let mut g = c.benchmark_group("primitives");
    g.bench_function("ecdh", |bn| bn.iter(|| black_box(SharedSecret::new(black_box(&pb), &a))));
    g.bench_function("s_g", |bn| bn.iter(|| black_box(PublicKey::from_secret_key(&secp, black_box(&a)))));
    g.bench_function("tweak_mul", |bn| bn.iter(|| black_box(black_box(pb).mul_tweak(&secp, &tweak).unwrap())));
    // Not in any floor: what creating a context costs (with the `rand` feature rust-secp256k1
    // randomizes every new context, an `s·G`); a caller that creates one per operation pays it.
    g.bench_function("context_verification_only", |bn| bn.iter(|| black_box(Secp256k1::verification_only())));
    let data = vec![0x5a; 1_332];
    g.bench_function("hmac_1332", |bn| bn.iter(|| black_box(hmac(&[3; 32], black_box(&data)))));
    for n in [1_300usize, 2_600] {
        let mut buf = vec![0u8; n];
        g.bench_function(format!("chacha20_{n}"), |bn| {
            bn.iter(|| ChaCha20::new(Key::new([9; 32]), Nonce::new([0; 12]), 0).apply_keystream(black_box(&mut buf)))
        });
    }
    for n in std::iter::once(2).chain(SIZES) {
        // Seal then open the same buffer in place (no allocation, no setup in the loop).
        let mut buf = vec![0x11u8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("seal_open_{n}"), |bn| {
            bn.iter(|| {
                let tag =
                    ChaCha20Poly1305::new(Key::new([4; 32]), Nonce::new([0; 12])).encrypt(black_box(&mut buf), None);
                ChaCha20Poly1305::new(Key::new([4; 32]), Nonce::new([0; 12])).decrypt(&mut buf, tag, None).unwrap();
            })
        });
    }
    g.finish();
}

/// One whole handshake; returns both ends' transports.
fn handshake(secp: &Secp256k1<All>, i: &InMemoryNodeSigner, r: &InMemoryNodeSigner) -> (Transport, Transport) {
    let (mut hi, act1) = Handshake::initiator(secp, i, r.node_id(), sk(0x31)).unwrap();
    let mut hr = Handshake::responder(secp, sk(0x32));
    let act2 = hr.read_act_one(&act1, r).unwrap();
    let (ti, act3) = hi.read_act_two(&act2, i).unwrap();
    let (tr, _) = hr.read_act_three(&act3, r).unwrap();
    (ti, tr)
}

/// LDK's end of an in-memory socket: what LDK writes is kept for the other `PeerManager`.
#[derive(Clone)]
struct MemDesc {
    id: u64,
    out: Arc<Mutex<Vec<u8>>>,
}
impl PartialEq for MemDesc {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
    }
}
impl Eq for MemDesc {}
impl std::hash::Hash for MemDesc {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}
impl SocketDescriptor for MemDesc {
    fn send_data(&mut self, data: &[u8], _continue_read: bool) -> usize {
        self.out.lock().unwrap().extend_from_slice(data);
        data.len()
    }
    fn disconnect_socket(&mut self) {}
}

struct NoLog;
impl Logger for NoLog {
    fn log(&self, _: Record) {}
}

fn bolt8(c: &mut Criterion) {
    // The node's context, created once (as an embedder keeps one).
    let secp = Secp256k1::new();
    let (i, r) = (InMemoryNodeSigner::new(sk(0x21)), InMemoryNodeSigner::new(sk(0x22)));
    let mut g = c.benchmark_group("bolt8");
    g.bench_function("handshake", |bn| bn.iter(|| black_box(handshake(&secp, &i, &r))));
    let (mut ti, mut tr) = handshake(&secp, &i, &r);
    for n in SIZES {
        let msg = vec![0x42u8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("message_{n}"), |bn| {
            bn.iter(|| {
                let wire = ti.encrypt(black_box(&msg)).unwrap();
                let mut got = 0;
                tr.read(&wire, |m| got += m.len()).unwrap();
                assert_eq!(got, n);
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let chain = [6; 32];
    g.bench_function("connection_paychan", |bn| {
        bn.iter(|| {
            let (ti, tr) = handshake(&secp, &i, &r);
            let (mut pi, init_i) = Peer::new(ti, Features::ours(), chain);
            let (mut pr, init_r) = Peer::new(tr, Features::ours(), chain);
            let a = pi.receive(&init_r).unwrap();
            let b = pr.receive(&init_i).unwrap();
            assert!(matches!(a.events[..], [PeerEvent::Ready { .. }]));
            assert!(matches!(b.events[..], [PeerEvent::Ready { .. }]));
        })
    });
    let (ka, kb) =
        (Arc::new(KeysManager::new(&[0xa1; 32], 1, 0, true)), Arc::new(KeysManager::new(&[0xb1; 32], 1, 0, true)));
    let b_id = kb.get_node_id(Recipient::Node).unwrap();
    let pa = PeerManager::new_routing_only(Arc::new(IgnoringMessageHandler {}), 1, &[0xa2; 32], Arc::new(NoLog), ka);
    let pb = PeerManager::new_routing_only(Arc::new(IgnoringMessageHandler {}), 1, &[0xb2; 32], Arc::new(NoLog), kb);
    let mut next_id = 0u64;
    g.bench_function("connection_ldk", |bn| {
        bn.iter(|| {
            next_id += 2;
            let mut da = MemDesc { id: next_id, out: Arc::new(Mutex::new(vec![])) };
            let mut db = MemDesc { id: next_id + 1, out: Arc::new(Mutex::new(vec![])) };
            let act1 = pa.new_outbound_connection(b_id, da.clone(), None).unwrap();
            pb.new_inbound_connection(db.clone(), None).unwrap();
            pb.read_event(&mut db, &act1).unwrap();
            pb.process_events();
            loop {
                let to_a = std::mem::take(&mut *db.out.lock().unwrap());
                if !to_a.is_empty() {
                    pa.read_event(&mut da, &to_a).unwrap();
                }
                pa.process_events();
                let to_b = std::mem::take(&mut *da.out.lock().unwrap());
                if !to_b.is_empty() {
                    pb.read_event(&mut db, &to_b).unwrap();
                }
                pb.process_events();
                if to_a.is_empty() && to_b.is_empty() {
                    break;
                }
            }
            assert!(pa.peer_by_node_id(&b_id).is_some(), "LDK connected");
            pa.socket_disconnected(&da);
            pb.socket_disconnected(&db);
        })
    });
    g.finish();
}

/// The 20 nodes of the route (LDK key managers, so LDK's peel can use them).
fn nodes() -> Vec<KeysManager> {
    (0..HOPS).map(|n| KeysManager::new(&[n as u8 + 1; 32], 1, 0, true)).collect()
}

/// paychan's payloads for the route: each forward pays the next hop's fees on top.
fn payloads() -> Vec<Vec<u8>> {
    (0..HOPS)
        .map(|n| {
            let after = (HOPS - 1 - n) as u64; // hops after this one's successor
            if n == HOPS - 1 {
                HopPayload::Final {
                    amt_to_forward: AMOUNT,
                    outgoing_cltv_value: HEIGHT + FINAL_CLTV,
                    payment_data: Some(([0x5e; 32], AMOUNT)),
                    payment_metadata: None,
                    keysend_preimage: None,
                }
            } else {
                HopPayload::Forward {
                    amt_to_forward: AMOUNT + HOP_FEE * (after - 1),
                    outgoing_cltv_value: HEIGHT + FINAL_CLTV + HOP_CLTV * (after as u32 - 1),
                    short_channel_id: n as u64 + 2,
                }
            }
            .encode()
        })
        .collect()
}

/// LDK's path over the same nodes: hop `n` is reached through channel `n + 1`.
fn ldk_path(ids: &[PublicKey]) -> Path {
    let hops = ids
        .iter()
        .enumerate()
        .map(|(n, pk)| RouteHop {
            pubkey: *pk,
            node_features: NodeFeatures::empty(),
            short_channel_id: n as u64 + 1,
            channel_features: ChannelFeatures::empty(),
            fee_msat: if n == HOPS - 1 { AMOUNT } else { HOP_FEE },
            cltv_expiry_delta: if n == HOPS - 1 { FINAL_CLTV } else { HOP_CLTV },
            maybe_announced_channel: true,
        })
        .collect();
    Path { hops, blinded_tail: None }
}

fn onion20(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let nodes = nodes();
    let secrets: Vec<SecretKey> = nodes.iter().map(|k| k.get_node_secret_key()).collect();
    let ids: Vec<PublicKey> = secrets.iter().map(|s| PublicKey::from_secret_key(&secp, s)).collect();
    let hash = [0x77; 32];
    let session = sk(0x44);
    let payloads = payloads();
    let mut g = c.benchmark_group("onion20");
    g.bench_function("build_paychan", |bn| {
        bn.iter(|| black_box(build_onion(&secp, &ids, black_box(&payloads), &session, &hash).unwrap()))
    });
    let (packet, _) = build_onion(&secp, &ids, &payloads, &session, &hash).unwrap();
    g.bench_function("peel_paychan", |bn| {
        bn.iter(|| {
            let mut p = packet.clone();
            for (n, s) in secrets.iter().enumerate() {
                match peel(&p, s, &hash).unwrap() {
                    Peeled::Forward { next, .. } => p = next,
                    Peeled::Final { .. } => assert_eq!(n, HOPS - 1),
                }
            }
        })
    });
    let path = ldk_path(&ids);
    let fields = RecipientOnionFields::secret_only(PaymentSecret([0x5e; 32]));
    let ldk_build = || {
        create_payment_onion(&secp, &path, &session, AMOUNT, &fields, HEIGHT + 1, &LdkHash(hash), &None, None, [3; 32])
            .unwrap()
    };
    g.bench_function("build_ldk", |bn| bn.iter(|| black_box(ldk_build())));
    let (packet, amount, cltv) = ldk_build();
    let first = UpdateAddHTLC {
        channel_id: ChannelId([0; 32]),
        htlc_id: 0,
        amount_msat: amount,
        payment_hash: LdkHash(hash),
        cltv_expiry: cltv,
        skimmed_fee_msat: None,
        onion_routing_packet: packet,
        blinding_point: None,
        hold_htlc: None,
    };
    g.bench_function("peel_ldk", |bn| {
        bn.iter(|| {
            let mut add = first.clone();
            for (n, node) in nodes.iter().enumerate() {
                let info = peel_payment_onion(&add, node, &NoLog, &secp, HEIGHT, false).unwrap();
                match info.routing {
                    lightning::ln::channelmanager::PendingHTLCRouting::Forward { onion_packet, .. } => {
                        add.onion_routing_packet = onion_packet;
                        add.amount_msat = info.outgoing_amt_msat;
                        add.cltv_expiry = info.outgoing_cltv_value;
                    }
                    _ => assert_eq!(n, HOPS - 1),
                }
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = primitives, bolt8, onion20
}

/// Where criterion wrote its estimates.
fn criterion_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        // The bench binary runs from target/release/deps.
        std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_path_buf()
    });
    target.join("criterion")
}

/// The point estimate (ns) of `group/name` from this run, if it ran.
fn ns(group: &str, name: &str) -> Option<f64> {
    let p = criterion_dir().join(group).join(name).join("new").join("estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    let e = v.get("slope").filter(|s| !s.is_null()).or_else(|| v.get("mean"))?;
    e.get("point_estimate")?.as_f64()
}

fn print_ratios() {
    let p = |n: &str| ns("primitives", n);
    println!("\nratios (this run's point estimates; no thresholds)");
    if let (Some(h), Some(e), Some(g)) = (ns("bolt8", "handshake"), p("ecdh"), p("s_g")) {
        let floor = 6.0 * e + 2.0 * g;
        println!(
            "  bolt8 handshake          {:>9.1} µs / floor (6 ECDH + 2 s·G) {:>7.1} µs = {:.2}",
            h / 1e3,
            floor / 1e3,
            h / floor
        );
    }
    for n in SIZES {
        let (Some(m), Some(h), Some(body)) =
            (ns("bolt8", &format!("message_{n}")), p("seal_open_2"), p(&format!("seal_open_{n}")))
        else {
            continue;
        };
        let floor = h + body;
        println!(
            "  bolt8 message {n:>6} B   {:>9.2} µs ({:>6.0} MB/s) / floor (seal+open of header and body) {:>7.2} µs = {:.2}",
            m / 1e3,
            n as f64 / m * 1e3,
            floor / 1e3,
            m / floor
        );
    }
    if let (Some(a), Some(b)) = (ns("bolt8", "connection_paychan"), ns("bolt8", "connection_ldk")) {
        println!("  connection (handshake + init both ways): paychan {:.1} µs, LDK PeerManager {:.1} µs, paychan/LDK = {:.2}", a / 1e3, b / 1e3, a / b);
    }
    let hops = HOPS as f64;
    if let (Some(e), Some(g), Some(t), Some(h), Some(c1), Some(c2)) =
        (p("ecdh"), p("s_g"), p("tweak_mul"), p("hmac_1332"), p("chacha20_1300"), p("chacha20_2600"))
    {
        let build_floor = hops * (e + g + h + c1);
        let peel_floor = hops * (e + t + h + c2);
        for (what, floor) in [("build", build_floor), ("peel", peel_floor)] {
            let ours = ns("onion20", &format!("{what}_paychan"));
            let ldk = ns("onion20", &format!("{what}_ldk"));
            if let Some(o) = ours {
                print!(
                    "  onion 20 hops {what:<5}     {:>9.1} µs / floor {:>7.1} µs = {:.2}",
                    o / 1e3,
                    floor / 1e3,
                    o / floor
                );
                if let Some(l) = ldk {
                    print!("; LDK {:.1} µs = {:.2} of floor, paychan/LDK = {:.2}", l / 1e3, l / floor, o / l);
                }
                println!();
            }
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
