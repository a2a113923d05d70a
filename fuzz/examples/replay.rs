//! Replays a state target over corpus files and times each input (for profiling a harness:
//! the slowest inputs and the cost per execution, independent of libFuzzer's mutations and of its
//! coverage instrumentation). Times are wall clock: on a shared machine run it under
//! `/usr/bin/time` and divide the executions by the user CPU seconds.
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --example replay -- duplex_state ROUNDS FILE_OR_DIR...
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("target: spilman_state, lightning_state or duplex_state");
    let rounds: usize = args.next().expect("rounds").parse().expect("a number of rounds");
    let run: fn(&[u8]) = match target.as_str() {
        "spilman_state" => paychan_fuzz::spilman_state::run,
        "lightning_state" => paychan_fuzz::lightning_state::run,
        "duplex_state" => paychan_fuzz::duplex_state::run,
        t => panic!("unknown target {t}"),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(&p).expect("dir").map(|e| e.expect("entry").path()).collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p);
        }
    }
    let inputs: Vec<(PathBuf, Vec<u8>)> =
        files.into_iter().map(|f| (f.clone(), std::fs::read(&f).expect("read"))).collect();
    // The per-process setup (the cached pair) is not timed.
    run(&[]);
    let mut per: Vec<(Duration, &PathBuf)> = inputs.iter().map(|(f, _)| (Duration::ZERO, f)).collect();
    let start = Instant::now();
    for _ in 0..rounds {
        for (i, (_, data)) in inputs.iter().enumerate() {
            let t = Instant::now();
            run(data);
            per[i].0 += t.elapsed();
        }
    }
    let total = start.elapsed();
    let n = rounds * inputs.len();
    println!("{n} executions in {:.3} s: {:.0} exec/s", total.as_secs_f64(), n as f64 / total.as_secs_f64());
    per.sort_by_key(|p| std::cmp::Reverse(p.0));
    for (d, f) in per.iter().take(5) {
        println!("  {:>9.3} ms/exec  {}", d.as_secs_f64() * 1e3 / rounds as f64, f.display());
    }
}
