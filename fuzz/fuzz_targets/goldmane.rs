//! Fuzz target: Goldmane-format flows (Calico open source, `{"Key":{...},"start_time":...}`).
//! The first byte picks how the rest is used: odd = as the `Key` object of an otherwise valid
//! flow, so the fuzzer spends its time inside the key (policies, labels, numeric enums) instead of
//! on the envelope; even = as a whole line. The decoder must return a record or an error, never
//! panic; a line it takes as Goldmane must look the same through the every-field view; and the
//! HTTP receiver's validation and de-duplication key must cope with the same line.
#![no_main]

use flowwarden::flow::{Decoder, Format};
use flowwarden::source::goldmane_http::inspect_body;
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let line: Vec<u8> = match data.split_first() {
        Some((mode, key)) if mode & 1 == 1 => {
            let mut l = b"{\"Key\":".to_vec();
            l.extend_from_slice(key);
            l.extend_from_slice(
                b",\"start_time\":1750000000,\"end_time\":1750000300,\"packets_out\":1,\"bytes_out\":60}",
            );
            l
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };
    let mut dec = Decoder::new(MAX_LINE);
    if let Ok(rec) = dec.decode(&line) {
        assert!(rec.end_time >= rec.start_time);
        if rec.format == Format::Goldmane {
            let has_key = dec.with_raw(&line, |raw| raw.key.is_some());
            assert_eq!(
                has_key.ok(),
                Some(true),
                "decoded as Goldmane, but the every-field view sees no Key"
            );
        }
    }
    let _ = dec.with_raw(&line, |raw| {
        raw.policies.as_ref().map(|p| p.enforced().len())
    });
    let report = inspect_body(&line, MAX_LINE);
    assert!(report.lines.len() <= 1 || line.contains(&b'\n'));
});
