//! The simulators can fail: each [`Sabotage`] of the honest parties' embedders (a penalty, a
//! sweep, an HTLC claim, a close or refund never broadcast; deadlines never called back) must
//! make the simulator of every layer it applies to report a loss within a bounded number of
//! seeds, while the unsabotaged simulator passes the same seeds. A simulator that cannot fail
//! would be no evidence that the channels keep the honest party whole.
//!
//! Each check runs the seeds `0..BOUND` in order and stops at the first failing one (the seeds
//! are deterministic: the first catching seed is printed with the simulator's message).

use paychan::testing::sim::{duplex, lightning, spilman, Config, Outcome, Sabotage};

/// The most seeds a sabotage may take to be caught.
const BOUND: u64 = 500;

type Run = fn(u64, Config) -> Result<Outcome, String>;

/// Runs seeds from 0 with `sabotage` until one fails; checks the unsabotaged runs of the same
/// seeds pass; returns the first failing seed.
fn first_caught(layer: &str, run: Run, sabotage: Sabotage, cheater: bool) -> u64 {
    first_caught_with(layer, run, sabotage, Config { sabotage: Sabotage::None, cheater, ..Config::default() })
}

/// As [`first_caught`], with the other knobs of `base` (a hostile peer in every run).
fn first_caught_with(layer: &str, run: Run, sabotage: Sabotage, base: Config) -> u64 {
    let sabotaged = Config { sabotage, ..base };
    let honest = Config { sabotage: Sabotage::None, ..base };
    for seed in 0..BOUND {
        if let Err(e) = run(seed, honest) {
            panic!("{layer}: the unsabotaged simulation fails seed {seed}: {e}");
        }
        match run(seed, sabotaged) {
            Err(e) => {
                println!("{layer} {sabotage:?}: caught by seed {seed}: {e}");
                return seed;
            }
            Ok(o) => {
                let _ = o.sabotaged;
            }
        }
    }
    panic!("{layer} {sabotage:?}: no loss reported in {BOUND} seeds: the simulator cannot see this sabotage");
}

#[test]
fn lightning_drop_penalties_is_caught() {
    first_caught("lightning", lightning::run_with, Sabotage::DropPenalties, true);
}

#[test]
fn lightning_drop_sweeps_is_caught() {
    first_caught("lightning", lightning::run_with, Sabotage::DropSweeps, false);
}

#[test]
fn lightning_drop_htlc_claims_is_caught() {
    first_caught("lightning", lightning::run_with, Sabotage::DropHtlcClaims, false);
}

#[test]
fn duplex_drop_htlc_claims_is_caught() {
    first_caught("duplex", duplex::run_with, Sabotage::DropHtlcClaims, false);
}

#[test]
fn duplex_drop_close_is_caught() {
    first_caught("duplex", duplex::run_with, Sabotage::DropRefundOrClose, false);
}

#[test]
fn duplex_drop_close_against_a_cheater_is_caught() {
    first_caught("duplex", duplex::run_with, Sabotage::DropRefundOrClose, true);
}

#[test]
fn duplex_ignore_next_deadline_is_caught() {
    first_caught("duplex", duplex::run_with, Sabotage::IgnoreNextDeadline, false);
}

#[test]
fn spilman_drop_htlc_claims_is_caught() {
    first_caught("spilman", spilman::run_with, Sabotage::DropHtlcClaims, false);
}

#[test]
fn spilman_drop_refund_or_close_is_caught() {
    first_caught("spilman", spilman::run_with, Sabotage::DropRefundOrClose, false);
}

#[test]
fn spilman_ignore_next_deadline_is_caught() {
    first_caught("spilman", spilman::run_with, Sabotage::IgnoreNextDeadline, false);
}

/// Tower runs (`Config::tower`): the honest party is offline when the cheater publishes a revoked
/// commitment (an old branch), and only its tower can defend it.
const TOWER: Config =
    Config { sabotage: Sabotage::None, cheater: true, hostile: false, tower: true, fee_spikes: false };

#[test]
fn lightning_tower_lagging_is_caught() {
    first_caught_with("lightning tower", lightning::run_with, Sabotage::TowerLagging, TOWER);
}

#[test]
fn lightning_tower_disabled_is_caught() {
    first_caught_with("lightning tower", lightning::run_with, Sabotage::TowerDisabled, TOWER);
}

#[test]
fn duplex_tower_lagging_is_caught() {
    first_caught_with("duplex tower", duplex::run_with, Sabotage::TowerLagging, TOWER);
}

#[test]
fn duplex_tower_disabled_is_caught() {
    first_caught_with("duplex tower", duplex::run_with, Sabotage::TowerDisabled, TOWER);
}

/// Duplex tower runs with fee spikes: the tower's zero-fee tree transactions relay only with the
/// operator's CPFP child. A tower that never broadcasts, or whose operator's bumper is off (as
/// the offline client's), leaves the old branch unopposed.
#[test]
fn duplex_tower_in_fee_spikes_disabled_or_unbumped_is_caught() {
    let spikes = Config { fee_spikes: true, ..TOWER };
    first_caught_with("duplex tower fee spikes", duplex::run_with, Sabotage::TowerDisabled, spikes);
    first_caught_with("duplex tower fee spikes", duplex::run_with, Sabotage::DisableBumper, spikes);
}

/// The accounting stays live against a hostile-but-valid peer: a sabotaged honest party is
/// caught there too (the hostile runs' passing is evidence).
#[test]
fn sabotage_against_a_hostile_peer_is_caught() {
    let hostile = Config { hostile: true, ..Config::default() };
    first_caught_with("lightning hostile", lightning::run_with, Sabotage::DropSweeps, hostile);
    first_caught_with("spilman hostile", spilman::run_with, Sabotage::DropRefundOrClose, hostile);
    first_caught_with("duplex hostile", duplex::run_with, Sabotage::DropRefundOrClose, hostile);
}

/// A hostile peer and fee spikes together (where the accounting lets a channel without anchors
/// lose an HTLC its commitment could not confirm in time at any fee the honest side controls):
/// an honest party that drops its HTLC claims is still caught.
#[test]
fn dropped_htlc_claims_against_a_hostile_peer_in_fee_spikes_are_caught() {
    let both = Config { hostile: true, fee_spikes: true, ..Config::default() };
    first_caught_with("lightning hostile fee spikes", lightning::run_with, Sabotage::DropHtlcClaims, both);
}

/// Runs with fee spikes (`Config::fee_spikes`: Core 29's policy, a market spiking 10× or 100×):
/// an honest embedder whose fee bumper is off leaves its close or refund at the fee it was
/// signed with, which a spike keeps out of blocks past the deadline.
#[test]
fn spilman_disable_bumper_in_fee_spikes_is_caught() {
    let spikes = Config { fee_spikes: true, ..Config::default() };
    first_caught_with("spilman fee spikes", spilman::run_with, Sabotage::DisableBumper, spikes);
}

/// Duplex with fee spikes: a zero-fee tree transaction relays only with a child, so an honest
/// party whose bumper is off can neither publish its branch nor outrun an old one; its leaf
/// payment stays at its signed fee while the refund it races is replaced.
#[test]
fn duplex_disable_bumper_in_fee_spikes_is_caught() {
    let spikes = Config { fee_spikes: true, ..Config::default() };
    let seed = first_caught_with("duplex fee spikes", duplex::run_with, Sabotage::DisableBumper, spikes);
    assert_eq!(seed, DUPLEX_SPIKES_CAUGHT, "the first seed catching it moved");
}

/// Lightning with fee spikes: an honest peer whose bumper is off leaves its commitment, HTLC
/// transactions and sweeps at their signed feerates through the spike.
#[test]
fn lightning_disable_bumper_in_fee_spikes_is_caught() {
    let spikes = Config { fee_spikes: true, ..Config::default() };
    let seed = first_caught_with("lightning fee spikes", lightning::run_with, Sabotage::DisableBumper, spikes);
    assert_eq!(seed, LIGHTNING_SPIKES_CAUGHT, "the first seed catching it moved");
}

/// The first seeds catching [`Sabotage::DisableBumper`] under fee spikes (pinned: a change that
/// moves them is looked at).
const DUPLEX_SPIKES_CAUGHT: u64 = 1;
const LIGHTNING_SPIKES_CAUGHT: u64 = 167;

/// Every sabotage a layer lists is tested above.
#[test]
fn every_listed_sabotage_is_tested() {
    use Sabotage::*;
    assert_eq!(
        lightning::SABOTAGES,
        &[DropPenalties, DropSweeps, DropHtlcClaims, TowerLagging, TowerDisabled, DisableBumper]
    );
    assert_eq!(
        duplex::SABOTAGES,
        &[DropHtlcClaims, DropRefundOrClose, IgnoreNextDeadline, TowerLagging, TowerDisabled, DisableBumper]
    );
    assert_eq!(spilman::SABOTAGES, &[DropHtlcClaims, DropRefundOrClose, IgnoreNextDeadline, DisableBumper]);
}
