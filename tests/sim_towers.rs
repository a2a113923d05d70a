//! Tower runs of the simulators (issue #18): in every run the honest party hands each
//! appointment (Lightning) or tower package (duplex) to a tower the simulation runs, goes offline
//! at a random step (for good, or until the cheater's relative locks expired), and the cheater
//! publishes a revoked commitment (an old branch) at a random later block. The tower alone must
//! defend the honest party: the simulators' exact accounting holds to the satoshi, the tower's
//! broadcasts pass Core's interpreter, and a party that comes back finds the breach answered.
//! `tests/sim_sabotage.rs` shows a lagging or disabled tower is reported as a loss.
//!
//! Long run: `PAYCHAN_SIM_SEEDS=2000 cargo test --release --test sim_towers -- --ignored --nocapture`.

use paychan::testing::sim::{duplex, lightning, run_many, Config, Outcome};

/// Seeds run by plain `cargo test`, per layer.
const QUICK: u64 = 40;

fn long() -> u64 {
    std::env::var("PAYCHAN_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000)
}

const TOWER: Config = Config {
    sabotage: paychan::testing::sim::Sabotage::None,
    cheater: true,
    hostile: false,
    tower: true,
    fee_spikes: false,
};

fn lightning_tower(seed: u64) -> Result<Outcome, String> {
    lightning::run_with(seed, TOWER)
}

fn duplex_tower(seed: u64) -> Result<Outcome, String> {
    duplex::run_with(seed, TOWER)
}

/// Runs the seeds; all pass, and the tower runs were not vacuous: breaches happened while the
/// honest party was offline, some with it back later, and the tower broadcast.
fn all_pass(name: &str, seeds: core::ops::Range<u64>, run: fn(u64) -> Result<Outcome, String>) -> Outcome {
    let n = seeds.end - seeds.start;
    let summary = run_many(name, seeds, run);
    assert!(summary.failed.is_empty(), "{name}: failing seeds {:?}", summary.failed);
    let t = summary.total;
    assert!(u64::from(t.tower_breaches) * 2 >= n, "breaches in only {} of {n} runs: {t:?}", t.tower_breaches);
    assert!(t.tower_returns > 0 && t.tower_returns < t.tower_breaches, "{t:?}");
    assert!(t.tower_broadcasts > 0 && t.tower_fed > 0, "{t:?}");
    t
}

#[test]
fn lightning_tower_quick() {
    all_pass("lightning tower", 0..QUICK, lightning_tower);
}

#[test]
fn duplex_tower_quick() {
    all_pass("duplex tower", 0..QUICK, duplex_tower);
}

#[test]
#[ignore = "long: run with --release -- --ignored"]
fn towers_long() {
    all_pass("lightning tower", 0..long(), lightning_tower);
    all_pass("duplex tower", 0..long(), duplex_tower);
}

/// One seed alone: `PAYCHAN_SIM_SEED=12 cargo test --test sim_towers replay -- --nocapture`.
#[test]
fn replay() {
    let Some(seed) = std::env::var("PAYCHAN_SIM_SEED").ok().and_then(|s| s.parse::<u64>().ok()) else { return };
    println!("lightning: {:?}", lightning_tower(seed));
    println!("duplex: {:?}", duplex_tower(seed));
}
