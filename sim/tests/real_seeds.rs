//! Seeds of the real-server simulation (real cores, zab, storage on faulty disks, clients).

use zkd_sim::real::{run_real, RealOptions};

fn voters(seed: u64) -> usize {
    if seed % 3 == 2 {
        5
    } else {
        3
    }
}

#[test]
fn real_servers_keep_zookeepers_promises_over_many_seeds() {
    let mut failed = Vec::new();
    for seed in 0..200 {
        if let Err(v) = run_real(RealOptions::new(seed, voters(seed))) {
            println!(
                "FAILED seed {seed}: {v}\n  reproduce: zkd-sim --real --reproduce {seed} --servers {}",
                voters(seed)
            );
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failed seeds: {failed:?}");
}
