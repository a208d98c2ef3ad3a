//! What this machine itself does from 100k to 1M rows, with none of
//! channel-sync's code: the floor under the growth of `detect`'s phases that
//! look rows up by id or scan the opportunities (issue 14: each phase within
//! 13x from 100k to 1M opportunities).
//!
//!   cargo run --release --example probe_floor          # 9 rounds
//!   cargo run --release --example probe_floor -- 21    # more rounds
//!
//! Each round times, on one core and at both sizes (alternating, so that a
//! change in the shared machine's speed weighs on both):
//! - `map build`: a hash map of the accounts' ids (a fifth of the
//!   opportunities, as in the generated programs), keyed as `link` keys it
//!   (foldhash, ids inline in `CompactString`);
//! - `map probe`: every opportunity's account id looked up in it, in
//!   opportunity order (as `link` and the context do);
//! - `partitioned join`: the same answers from a radix-partitioned hash join
//!   (both sides hashed and split by the hash's top bits into shards of 256
//!   keys, each shard joined in cache, then each answer checked against the
//!   id in opportunity order), the textbook way around a map bigger than the
//!   cache;
//! - `id index build` and `id index probe`: the same with channel-sync's own
//!   `IdIndex` (`src/id_index.rs`, compiled in here), which `link` and the
//!   context use: each probe's line asked for 16 probes ahead, so that the
//!   trips to memory overlap;
//! - `scan, one line a row` and `scan, two lines a row`: one pass over
//!   288-byte rows (the size of an `Opportunity`) reading two fields on the
//!   same cache line, then two fields 144 bytes apart: what a pass over the
//!   opportunities costs by the lines it touches.
//!
//! It prints the medians and their ratio. A ratio above 10 is the machine's:
//! the code does ten times the work. Apart from the id index, none of
//! channel-sync's code runs here.

use std::hash::BuildHasher;
use std::time::Instant;

use compact_str::CompactString;

#[allow(dead_code)]
#[path = "../src/id_index.rs"]
mod id_index;

type Map = std::collections::HashMap<CompactString, u32, foldhash::fast::RandomState>;

/// Account ids as the generator writes them, and the opportunities' account
/// ids: each a random account's.
fn program(opportunities: usize) -> (Vec<String>, Vec<String>) {
    let accounts = opportunities / 5;
    let ids: Vec<String> = (0..accounts).map(|i| format!("A-{i:06}")).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ opportunities as u64;
    let probes = (0..opportunities)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ids[(seed >> 33) as usize % accounts].clone()
        })
        .collect();
    (ids, probes)
}

/// For each probe, its key's row, from a partitioned hash join.
fn partitioned_join(keys: &[String], probes: &[String]) -> Vec<u32> {
    let state = foldhash::fast::RandomState::default();
    let bits = (keys.len() / 256)
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .min(12);
    let shard = |h: u64| h.checked_shr(64 - bits).unwrap_or(0) as usize;
    // (hash, row) of every row, grouped by shard: `out[starts[s]..starts[s + 1]]`.
    let partition = |ids: &[String]| {
        let hashes: Vec<u64> = ids.iter().map(|id| state.hash_one(id.as_str())).collect();
        let mut starts = vec![0usize; (1 << bits) + 1];
        for &h in &hashes {
            starts[shard(h) + 1] += 1;
        }
        for s in 1..starts.len() {
            starts[s] += starts[s - 1];
        }
        let mut fill = starts.clone();
        let mut out = vec![(0u64, 0u32); hashes.len()];
        for (row, &h) in hashes.iter().enumerate() {
            out[fill[shard(h)]] = (h, row as u32);
            fill[shard(h)] += 1;
        }
        (out, starts)
    };
    let (keyed, key_starts) = partition(keys);
    let (probed, probe_starts) = partition(probes);
    let mut rows = vec![u32::MAX; probes.len()];
    for s in 0..1usize << bits {
        let shard_keys = &keyed[key_starts[s]..key_starts[s + 1]];
        let mask = (shard_keys.len() * 2).next_power_of_two().max(2) - 1;
        let mut table = vec![u32::MAX; mask + 1];
        for (i, &(h, _)) in shard_keys.iter().enumerate() {
            let mut slot = h as usize & mask;
            while table[slot] != u32::MAX {
                slot = (slot + 1) & mask;
            }
            table[slot] = i as u32;
        }
        for &(h, row) in &probed[probe_starts[s]..probe_starts[s + 1]] {
            let mut slot = h as usize & mask;
            while table[slot] != u32::MAX {
                let (kh, key_row) = shard_keys[table[slot] as usize];
                if kh == h {
                    rows[row as usize] = key_row;
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
    }
    // Equal hashes are not equal ids: each answer is checked.
    for (row, probe) in rows.iter_mut().zip(probes) {
        if *row != u32::MAX && keys[*row as usize] != *probe {
            *row = u32::MAX;
        }
    }
    rows
}

/// A row the size of an `Opportunity`.
#[derive(Clone)]
#[repr(C, align(8))]
struct Row {
    head: u64,
    middle: [u64; 17],
    tail: u64,
    rest: [u64; 17],
}

const STEPS: [&str; 7] = [
    "map build",
    "map probe",
    "partitioned join",
    "id index build",
    "id index probe",
    "scan, one line a row",
    "scan, two lines a row",
];

/// One round at one size: each step's time in ms.
fn round(keys: &[String], probes: &[String], rows: &[Row]) -> [f64; 7] {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut map = Map::with_capacity_and_hasher(keys.len(), Default::default());
    for (i, k) in keys.iter().enumerate() {
        map.insert(CompactString::new(k), i as u32);
    }
    let build = ms(t);
    let t = Instant::now();
    let found: Vec<u32> = probes
        .iter()
        .map(|p| map.get(p.as_str()).copied().unwrap_or(u32::MAX))
        .collect();
    let probe = ms(t);
    let t = Instant::now();
    let joined = partitioned_join(keys, probes);
    let join = ms(t);
    assert_eq!(found, joined, "the join and the map disagree");
    let t = Instant::now();
    let index = id_index::IdIndex::build(keys.iter().map(String::as_str));
    let index_build = ms(t);
    let t = Instant::now();
    let mut indexed = Vec::with_capacity(probes.len());
    index.rows_of(probes.iter(), |p| p.as_str(), |_, row| indexed.push(row));
    let index_probe = ms(t);
    assert_eq!(found, indexed, "the id index and the map disagree");
    let t = Instant::now();
    let near = rows
        .iter()
        .fold(0u64, |s, r| s.wrapping_add(r.head ^ r.middle[0]));
    let one_line = ms(t);
    let t = Instant::now();
    let far = rows
        .iter()
        .fold(0u64, |s, r| s.wrapping_add(r.head ^ r.tail));
    let two_lines = ms(t);
    std::hint::black_box((found, joined, indexed, near, far));
    [
        build,
        probe,
        join,
        index_build,
        index_probe,
        one_line,
        two_lines,
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(9);
    let sizes = [100_000usize, 1_000_000];
    let data: Vec<_> = sizes
        .iter()
        .map(|&n| {
            let (keys, probes) = program(n);
            let row = Row {
                head: 1,
                middle: [3; 17],
                tail: 2,
                rest: [0; 17],
            };
            (keys, probes, vec![row; n])
        })
        .collect();
    // times[size][step] over the rounds.
    let mut times = vec![vec![Vec::new(); STEPS.len()]; sizes.len()];
    for _ in 0..rounds {
        for (z, (keys, probes, rows)) in data.iter().enumerate() {
            for (step, t) in round(keys, probes, rows).into_iter().enumerate() {
                times[z][step].push(t);
            }
        }
    }
    println!("| on one core, median of {rounds} | 100k (ms) | 1M (ms) | 1M / 100k |");
    println!("|---|---:|---:|---:|");
    for (step, name) in STEPS.iter().enumerate() {
        let small = median(times[0][step].clone());
        let large = median(times[1][step].clone());
        println!(
            "| {name} | {small:.2} | {large:.2} | {:.1} |",
            large / small
        );
    }
}
