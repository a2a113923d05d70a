#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60), one after the other.
#
#   fuzz/run-all.sh 300                 # 5 minutes per target
#   RUNS=1000000 fuzz/run-all.sh        # an exact number of executions per target instead
#   TARGETS="decode_penalty lightning_state" fuzz/run-all.sh 60
#
# Each target reads the committed seeds in fuzz/corpus/<target>/ and writes what it learns to
# fuzz/work/<target>/ (git-ignored), so the committed corpus stays small. Crashes land in
# fuzz/artifacts/<target>/ (git-ignored); reproduce one with
#
#   cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/crash-...
#
# An exact number of executions of one target, by hand:
#
#   cargo +nightly fuzz run -s none <target> fuzz/work/<target> fuzz/corpus/<target> -- -runs=N
#
# Every check is on: the state harnesses relax a check only for the deviations listed (each with
# its reason) in `Deviation` in fuzz/src/lib.rs; a known issue of src/ is never stepped around.
# PAYCHAN_FUZZ_DENY=all (or a comma-separated list of `Deviation` names) turns those few
# relaxations into failures too, to see what they hide.
#
# The crate forbids `unsafe`, so the default here is no sanitizer (`-s none`, about twice the
# executions per second); SANITIZER=address brings AddressSanitizer back. Other environment:
# CARGO_TARGET_DIR (build directory), NICE (niceness, default 19), EXTRA (more libFuzzer flags).
#
# libFuzzer's exec/s is per wall-clock second. At niceness 19 a target gets almost no CPU while
# jobs at niceness 0 run in the same session (Linux autogroups: niceness only weighs against
# processes of the same session): one busy loop on its core cut duplex_state from about 2,000
# exec/s to 8 (0.65 s of CPU in 125 s). So each run also prints the CPU time it got; compare
# executions per CPU second, or run with NICE=0 on an idle machine, before calling a target slow.
# `cargo run --release --example replay -- <state target> ROUNDS DIR` times a fixed corpus.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
sanitizer="${SANITIZER:-none}"
nice_level="${NICE:-19}"
all_targets=$(cargo +nightly fuzz list)
targets="${TARGETS:-$all_targets}"

if [[ -n "${RUNS:-}" ]]; then
    limit="-runs=${RUNS}"
else
    limit="-max_total_time=${seconds}"
fi

cargo +nightly fuzz build -s "$sanitizer"

failed=()
for t in $targets; do
    mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
    echo "=== $t ($limit)"
    TIMEFORMAT="=== $t: %R s wall, %U s user CPU"
    # shellcheck disable=SC2086
    if ! time nice -n "$nice_level" cargo +nightly fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
        "$limit" -artifact_prefix="artifacts/$t/" -print_final_stats=1 ${EXTRA:-}; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "targets with findings: ${failed[*]} (see fuzz/artifacts/)"
    exit 1
fi
echo "all targets ran clean"
