//! The cost of an oblivious evaluation on each side, against one
//! ristretto255 scalar multiplication measured in the same run (issue 11's
//! yardstick): `cargo bench -p vigil-oprf`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use curve25519_dalek::{RistrettoPoint, Scalar};
use std::hint::black_box;
use vigil_oprf::{ServerKey, blind, finalize, info};

const BATCH: usize = 256;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("oprf");
    let mut rng = rand_core_compat::rng();
    let p = RistrettoPoint::random(&mut rng);
    let s = Scalar::random(&mut rng);
    g.bench_function("one scalar multiplication", |b| b.iter(|| black_box(p) * black_box(s)));

    let key = ServerKey::derive(&[7; 32], 1).expect("key");
    let pk = key.public_key();
    let info = info(14, 1);
    let inputs: Vec<Vec<u8>> = (0..BATCH).map(|i| format!("name_dob:{i:08}").into_bytes()).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("node: blind, per batch of 256", |b| b.iter(|| blind(black_box(&refs)).expect("blind")));
    let blinded = blind(&refs).expect("blind");
    g.bench_function("key service: evaluate and prove, per batch of 256", |b| {
        b.iter(|| key.evaluate(black_box(&blinded.elements), &info).expect("evaluate"))
    });
    let (evaluated, proof) = key.evaluate(&blinded.elements, &info).expect("evaluate");
    g.bench_function("node: verify and unblind, per batch of 256", |b| {
        b.iter_batched(
            || (),
            |_| finalize(&refs, &blinded, &evaluated, &proof, &pk, &info).expect("finalize"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

mod rand_core_compat {
    /// The operating system's generator, as curve25519-dalek's `rand_core` wants it.
    pub fn rng() -> rand_core::OsRng {
        rand_core::OsRng
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
