//! Normalise-and-tokenise throughput on synthetic national records.
//! `cargo bench -p vigil-node --bench tokenise`
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vigil_identity::keys::{Identity, Phonetic};
use vigil_identity::tokens::{LinkageKey, Tokenizer};
use vigil_lab::synth;
use vigil_node::input::{self, Report};

const RECORDS: usize = 20_000;

fn extract_csv() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let params = synth::Params {
        national: RECORDS,
        forces: 1,
        staff_per_force: 100,
        delta: 0,
        applicants: 0,
        ..Default::default()
    };
    synth::generate(&params, dir.path()).expect("synth");
    std::fs::read(dir.path().join("extract.csv")).expect("read")
}

fn bench(c: &mut Criterion) {
    let csv_bytes = extract_csv();
    let mut rdr = csv::Reader::from_reader(&csv_bytes[..]);
    let rows: Vec<Vec<String>> = rdr.records().map(|r| r.expect("row").iter().map(str::to_string).collect()).collect();
    let tk = Tokenizer::new(&LinkageKey::new(1, [7; 32]));
    let mut g = c.benchmark_group("tokenise");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("fields_to_tokens", |b| {
        let mut ph = Phonetic::default();
        let mut issues = Vec::new();
        let mut out = Vec::new();
        b.iter(|| {
            let mut n = 0;
            for f in &rows {
                issues.clear();
                let raw = input::extract_identity(f);
                let id = Identity::from_raw(&raw, &mut ph, &mut issues);
                tk.tokens(&id, &mut out);
                n += out.len();
            }
            black_box(n)
        })
    });
    // The first pass every file gets before anything is sent.
    g.bench_function("csv_scan", |b| {
        b.iter(|| black_box(input::scan(&csv_bytes[..], "bench", input::Kind::Extract).expect("scan").rows))
    });
    let scan = input::scan(&csv_bytes[..], "bench", input::Kind::Extract).expect("scan");
    g.bench_function("csv_to_tokens", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            let mut report = Report::new("bench", "extract");
            let mut n = 0;
            input::read_extract(
                &csv_bytes[..],
                "bench",
                &scan,
                &mut report,
                |row| {
                    tk.tokens(&row.identity, &mut out);
                    n += out.len();
                },
                |_| {},
            )
            .expect("read");
            black_box(n)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
