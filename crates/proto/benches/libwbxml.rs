//! gwmo's WBXML codec beside libwbxml 0.11 (the reference, Debian's `libwbxml2`), in
//! the same process, on the same messages:
//! - encode: gwmo, message model -> WBXML with a string table; libwbxml in its fast
//!   mode, XML text (gwmo's XML encoding of the message) -> WBXML with the string
//!   table off, and, for the messages under 100 KB, also with its string table on;
//! - decode: the same bytes (gwmo's WBXML, string table and all) by both: gwmo into
//!   the message model; libwbxml into compact XML text, checked to read back as the
//!   same message.
//!
//! Every libwbxml call's status is checked (a failure panics); its outputs are freed.
//! Throughput is the size of gwmo's WBXML for the message, for all entries of a group.
//!
//! ```sh
//! apt-get update && apt-get install -y libwbxml2-dev libwbxml2-utils
//! cargo bench -p gwmo-proto --features libwbxml-bench --bench libwbxml -- \
//!     --warm-up-time 1 --measurement-time 3
//! ```
//!
//! libwbxml's pkg-config file is broken; the FFI block below links plain `-lwbxml2`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests, a failed unwrap is a failed test
#![expect(
    unsafe_code,
    reason = "the benchmark calls libwbxml through its C interface"
)]

mod support;

use std::ffi::{c_int, c_uint, c_void};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gwmo_proto::Encoding;

// libwbxml's converter API (`wbxml/wbxml_conv.h`); `WB_UTINY` is `unsigned char`,
// `WB_ULONG` `unsigned int`, `WBXMLError` an enum where 0 is `WBXML_OK`.
#[link(name = "wbxml2")]
unsafe extern "C" {
    fn wbxml_conv_xml2wbxml_create(conv: *mut *mut c_void) -> c_int;
    fn wbxml_conv_xml2wbxml_disable_string_table(conv: *mut c_void);
    fn wbxml_conv_xml2wbxml_run(
        conv: *mut c_void,
        xml: *const u8,
        xml_len: c_uint,
        wbxml: *mut *mut u8,
        wbxml_len: *mut c_uint,
    ) -> c_int;
    fn wbxml_conv_xml2wbxml_destroy(conv: *mut c_void);
    fn wbxml_conv_wbxml2xml_create(conv: *mut *mut c_void) -> c_int;
    fn wbxml_conv_wbxml2xml_set_gen_type(conv: *mut c_void, gen_type: c_int);
    fn wbxml_conv_wbxml2xml_run(
        conv: *mut c_void,
        wbxml: *const u8,
        wbxml_len: c_uint,
        xml: *mut *mut u8,
        xml_len: *mut c_uint,
    ) -> c_int;
    fn wbxml_conv_wbxml2xml_destroy(conv: *mut c_void);
    // Exported by libwbxml2.so; declared in `wbxml_mem.h`, which Debian does not ship.
    fn wbxml_free(pointer: *mut c_void);
}

const WBXML_GEN_XML_COMPACT: c_int = 0;

/// libwbxml with its string table on is measured only for XML inputs under this size.
const STRING_TABLE_LIMIT: usize = 100_000;

/// Copies out and frees a buffer libwbxml allocated.
fn take(pointer: *mut u8, length: c_uint) -> Vec<u8> {
    assert!(!pointer.is_null(), "libwbxml returned no output");
    // SAFETY: libwbxml returned `pointer` with `length` valid bytes, allocated by its
    // own allocator; it is freed once, here, with libwbxml's own `wbxml_free`.
    unsafe {
        let bytes = std::slice::from_raw_parts(pointer, length as usize).to_vec();
        wbxml_free(pointer.cast());
        bytes
    }
}

/// XML text -> WBXML with libwbxml; `string_table: false` is its fast mode.
fn libwbxml_encode(xml: &[u8], string_table: bool) -> Vec<u8> {
    // SAFETY: each converter is created, used once and destroyed; pointers passed are
    // valid for the lengths given.
    unsafe {
        let mut conv = std::ptr::null_mut();
        assert_eq!(
            wbxml_conv_xml2wbxml_create(&mut conv),
            0,
            "libwbxml: create"
        );
        if !string_table {
            wbxml_conv_xml2wbxml_disable_string_table(conv);
        }
        let (mut out, mut length) = (std::ptr::null_mut(), 0);
        let status = wbxml_conv_xml2wbxml_run(
            conv,
            xml.as_ptr(),
            xml.len() as c_uint,
            &mut out,
            &mut length,
        );
        wbxml_conv_xml2wbxml_destroy(conv);
        assert_eq!(status, 0, "libwbxml could not encode the message");
        take(out, length)
    }
}

/// WBXML -> compact XML text with libwbxml.
fn libwbxml_decode(wbxml: &[u8]) -> Vec<u8> {
    // SAFETY: as in `libwbxml_encode`.
    unsafe {
        let mut conv = std::ptr::null_mut();
        assert_eq!(
            wbxml_conv_wbxml2xml_create(&mut conv),
            0,
            "libwbxml: create"
        );
        wbxml_conv_wbxml2xml_set_gen_type(conv, WBXML_GEN_XML_COMPACT);
        let (mut out, mut length) = (std::ptr::null_mut(), 0);
        let status = wbxml_conv_wbxml2xml_run(
            conv,
            wbxml.as_ptr(),
            wbxml.len() as c_uint,
            &mut out,
            &mut length,
        );
        wbxml_conv_wbxml2xml_destroy(conv);
        assert_eq!(status, 0, "libwbxml could not decode the WBXML");
        take(out, length)
    }
}

fn side_by_side(c: &mut Criterion) {
    for (name, message) in support::samples() {
        let xml = Encoding::Xml.encode(&message).unwrap();
        let wbxml = Encoding::Wbxml.encode(&message).unwrap();
        assert_eq!(
            Encoding::Xml.decode(&libwbxml_decode(&wbxml)).unwrap(),
            message,
            "libwbxml reads gwmo's WBXML of {name} as another message"
        );

        let mut encode = c.benchmark_group(format!("wbxml-encode/{name}"));
        encode.throughput(Throughput::Bytes(wbxml.len() as u64));
        encode.bench_with_input(BenchmarkId::new("gwmo", name), &message, |b, message| {
            b.iter(|| Encoding::Wbxml.encode(message).unwrap())
        });
        encode.bench_with_input(BenchmarkId::new("libwbxml", name), &xml, |b, xml| {
            b.iter(|| libwbxml_encode(xml, false))
        });
        if xml.len() < STRING_TABLE_LIMIT {
            encode.bench_with_input(
                BenchmarkId::new("libwbxml-string-table", name),
                &xml,
                |b, xml| b.iter(|| libwbxml_encode(xml, true)),
            );
        }
        encode.finish();

        let mut decode = c.benchmark_group(format!("wbxml-decode/{name}"));
        decode.throughput(Throughput::Bytes(wbxml.len() as u64));
        decode.bench_with_input(BenchmarkId::new("gwmo", name), &wbxml, |b, wbxml| {
            b.iter(|| Encoding::Wbxml.decode(wbxml).unwrap())
        });
        decode.bench_with_input(BenchmarkId::new("libwbxml", name), &wbxml, |b, wbxml| {
            b.iter(|| libwbxml_decode(wbxml))
        });
        decode.finish();
    }
}

criterion_group!(benches, side_by_side);
criterion_main!(benches);
