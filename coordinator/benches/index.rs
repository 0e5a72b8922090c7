//! Index build and probe throughput, and memory per national token.
//! `cargo bench -p vigil-coordinator --bench index`
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vigil_coordinator::index::{IndexKey, TokenIndex};
use vigil_coordinator::matcher::{Hit, Matcher};
use vigil_proto::KeyKind;

const N: usize = 10_000_000;
const PROBES: usize = 1_000_000;
const TOKENS_PER_RECORD: usize = 11;

fn key(i: u64) -> IndexKey {
    // splitmix64: stands in for peppered BLAKE3 output, which is uniform.
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    IndexKey { hi: z ^ (z >> 31) }
}

fn bench(c: &mut Criterion) {
    let keys: Vec<IndexKey> = (0..N as u64).map(key).collect();
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("build_10M", |b| {
        b.iter(|| {
            let mut ix = TokenIndex::with_capacity(N);
            for (i, k) in keys.iter().enumerate() {
                ix.insert(*k, (i / TOKENS_PER_RECORD) as u32);
            }
            black_box(ix.len())
        })
    });
    g.bench_function("build_10M_growing", |b| {
        b.iter(|| {
            let mut ix = TokenIndex::default();
            for (i, k) in keys.iter().enumerate() {
                ix.insert(*k, (i / TOKENS_PER_RECORD) as u32);
            }
            black_box(ix.len())
        })
    });

    let mut ix = TokenIndex::with_capacity(N);
    for (i, k) in keys.iter().enumerate() {
        ix.insert(*k, (i / TOKENS_PER_RECORD) as u32);
    }
    eprintln!(
        "index memory: {} bytes for {} tokens = {:.1} bytes/token",
        ix.memory_bytes(),
        ix.len(),
        ix.memory_bytes() as f64 / ix.len() as f64
    );
    // Half the probes hit, half miss.
    let probes: Vec<IndexKey> =
        (0..PROBES as u64).map(|i| if i % 2 == 0 { keys[(i as usize * 7) % N] } else { key(u64::MAX - i) }).collect();
    g.throughput(Throughput::Elements(PROBES as u64));
    g.bench_function("probe_1M_in_10M_batched", |b| {
        let mut counts = Vec::with_capacity(PROBES);
        b.iter(|| {
            ix.count_many(&probes, &mut counts);
            black_box(counts.iter().sum::<u32>())
        })
    });
    g.bench_function("probe_1M_in_10M", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for p in &probes {
                hits += ix.count(*p);
            }
            black_box(hits)
        })
    });

    // The matcher as the coordinator uses it: records of 11 tokens each.
    let records = N / TOKENS_PER_RECORD;
    let rec_keys: Vec<Vec<(KeyKind, IndexKey)>> = (0..records)
        .map(|r| {
            (0..TOKENS_PER_RECORD).map(|t| (vigil_proto::kinds::ALL[t % 9], keys[r * TOKENS_PER_RECORD + t])).collect()
        })
        .collect();
    g.throughput(Throughput::Elements((records * TOKENS_PER_RECORD) as u64));
    g.bench_function("matcher_add_records_10M_tokens", |b| {
        b.iter(|| {
            let mut m = Matcher::with_capacity(N, 0);
            for (r, k) in rec_keys.iter().enumerate() {
                m.add_record(r as u32, k);
            }
            black_box(m.national_tokens())
        })
    });
    let mut m = Matcher::with_capacity(N, 0);
    for (r, k) in rec_keys.iter().enumerate() {
        m.add_record(r as u32, k);
    }
    eprintln!(
        "matcher national memory: {:.1} bytes/token",
        m.national_memory_bytes() as f64 / m.national_tokens() as f64
    );
    // A roster of subjects probed against the national side: 10% of subjects
    // are national records, so their tokens hit.
    let subjects: Vec<Vec<(KeyKind, IndexKey)>> = (0..PROBES / TOKENS_PER_RECORD)
        .map(|s| {
            if s % 10 == 0 {
                rec_keys[(s * 13) % records].clone()
            } else {
                (0..TOKENS_PER_RECORD)
                    .map(|t| (vigil_proto::kinds::ALL[t % 9], key(u64::MAX - (s * 16 + t) as u64)))
                    .collect()
            }
        })
        .collect();
    g.throughput(Throughput::Elements((subjects.len() * TOKENS_PER_RECORD) as u64));
    g.bench_function("matcher_probe_subjects_1M_tokens", |b| {
        let mut hits: Vec<Hit> = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for s in &subjects {
                m.probe_national(s, &mut hits);
                n += hits.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(15));
    targets = bench
}
criterion_main!(benches);
