//! Fuzz target: one input is one flow-log line. The decoder must return a record or an error for any
//! bytes, never panic, overflow its stack or hang; `with_raw` (the every-field view) likewise.
//! The byte scanner must only read lines simd-json reads, and read them the same way.
#![no_main]

use flowwarden::flow::fields::CalicoFields;
use flowwarden::flow::scanner::LineScanner;
use flowwarden::flow::Decoder;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    // Kept across inputs, so the key order learned from one line meets the next.
    static SCANNER: RefCell<LineScanner> = RefCell::new(LineScanner::default());
}

fuzz_target!(|line: &[u8]| {
    // A small limit so the fuzzer also reaches the too-long path.
    let mut dec = Decoder::new(64 * 1024);
    if let Ok(rec) = dec.decode(line) {
        // What every later stage relies on.
        assert!(rec.end_time >= rec.start_time);
    }
    let _ = dec.with_raw(line, |raw| {
        raw.policies.as_ref().map(|p| p.enforced().len())
    });
    SCANNER.with_borrow_mut(|scanner| {
        if let Some(fields) = scanner.scan(line) {
            let mut copy = line.to_vec();
            let tape =
                simd_json::to_tape(&mut copy).expect("the scanner read a line simd-json rejects");
            assert_eq!(Some(fields), CalicoFields::scan(&tape.0));
        }
    });
});
