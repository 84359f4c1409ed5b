//! gwmo's WBXML codec beside libwbxml 0.11 (the reference, Debian's `libwbxml2`), in
//! the same process, on the same messages:
//! - encode: gwmo, message model -> WBXML with a string table; libwbxml in its fast
//!   mode, XML text -> WBXML with the string table off;
//! - decode: gwmo, WBXML -> message model; libwbxml, WBXML -> compact XML text (its
//!   input is the WBXML libwbxml itself wrote, so it certainly reads it).
//!
//! ```sh
//! apt-get install -y libwbxml2-dev
//! cargo bench -p gwmo-proto --features libwbxml-bench --bench libwbxml
//! ```

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
    fn free(pointer: *mut c_void);
}

const WBXML_GEN_XML_COMPACT: c_int = 0;

/// Copies out and frees a buffer libwbxml allocated.
fn take(pointer: *mut u8, length: c_uint) -> Vec<u8> {
    // SAFETY: libwbxml returned `pointer` with `length` valid bytes, allocated with
    // malloc; it is freed once, here.
    unsafe {
        let bytes = std::slice::from_raw_parts(pointer, length as usize).to_vec();
        free(pointer.cast());
        bytes
    }
}

/// XML text -> WBXML with libwbxml, string table off (its fast mode).
fn libwbxml_encode(xml: &[u8]) -> Vec<u8> {
    // SAFETY: each converter is created, used once and destroyed; pointers passed are
    // valid for the lengths given.
    unsafe {
        let mut conv = std::ptr::null_mut();
        assert_eq!(
            wbxml_conv_xml2wbxml_create(&mut conv),
            0,
            "libwbxml: create"
        );
        wbxml_conv_xml2wbxml_disable_string_table(conv);
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
        assert_eq!(status, 0, "libwbxml could not decode its own WBXML");
        take(out, length)
    }
}

fn side_by_side(c: &mut Criterion) {
    for (name, message) in support::samples() {
        let xml = Encoding::Xml.encode(&message).unwrap();
        let wbxml = Encoding::Wbxml.encode(&message).unwrap();
        let reference_wbxml = libwbxml_encode(&xml);

        let mut encode = c.benchmark_group(format!("wbxml-encode/{name}"));
        encode.throughput(Throughput::Bytes(wbxml.len() as u64));
        encode.bench_with_input(BenchmarkId::new("gwmo", name), &message, |b, message| {
            b.iter(|| Encoding::Wbxml.encode(message).unwrap())
        });
        encode.bench_with_input(BenchmarkId::new("libwbxml", name), &xml, |b, xml| {
            b.iter(|| libwbxml_encode(xml))
        });
        encode.finish();

        let mut decode = c.benchmark_group(format!("wbxml-decode/{name}"));
        decode.throughput(Throughput::Bytes(wbxml.len() as u64));
        decode.bench_with_input(BenchmarkId::new("gwmo", name), &wbxml, |b, wbxml| {
            b.iter(|| Encoding::Wbxml.decode(wbxml).unwrap())
        });
        decode.bench_with_input(
            BenchmarkId::new("libwbxml", name),
            &reference_wbxml,
            |b, wbxml| b.iter(|| libwbxml_decode(wbxml)),
        );
        decode.finish();
    }
}

criterion_group!(benches, side_by_side);
criterion_main!(benches);
