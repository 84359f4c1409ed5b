//! Codec throughput: XML and WBXML, decode and encode, of the sample messages in
//! `support` (a package 1, 50 commands, 64 KiB of Results, 2,000 Replaces).
//! `cargo bench -p gwmo-proto --bench codec`

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gwmo_proto::Encoding;

fn codec(c: &mut Criterion) {
    let messages = support::samples();
    for encoding in [Encoding::Xml, Encoding::Wbxml] {
        let mut decode = c.benchmark_group(format!("decode/{}", encoding.name()));
        for (name, message) in &messages {
            let bytes = encoding.encode(message).unwrap();
            decode.throughput(Throughput::Bytes(bytes.len() as u64));
            decode.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
                b.iter(|| encoding.decode(bytes).unwrap())
            });
        }
        decode.finish();
        let mut encode = c.benchmark_group(format!("encode/{}", encoding.name()));
        for (name, message) in &messages {
            let size = encoding.encode(message).unwrap().len();
            encode.throughput(Throughput::Bytes(size as u64));
            encode.bench_with_input(BenchmarkId::from_parameter(name), message, |b, message| {
                b.iter(|| encoding.encode(message).unwrap())
            });
        }
        encode.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
