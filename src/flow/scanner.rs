//! [`LineScanner`]: the Calico hot path's JSON reader. One pass over a line's bytes fills
//! [`CalicoFields`] directly: no copy of the line, no structural index, no tape of the whole record.
//!
//! Values of keys the record is built from are tokenised into a few [`Node`]s and handed to
//! [`CalicoFields::put`], the same typed setters the tape walk uses, so both give the same fields.
//! Values of every other key are only validated and skipped.
//!
//! The scanner is strict and small on purpose: it reads only the JSON that Felix writes (no string
//! escapes, no floats, integers within 64 bits, nesting within [`MAX_DEPTH`]). On anything else it
//! gives up with `None` and the decoder takes the simd-json path, which then accepts or rejects the
//! line with its own error message. So a line the scanner accepts is one simd-json accepts with the
//! same meaning; `tests` below and the `decode` fuzz target check exactly that.

use crate::flow::fields::{CalicoFields, Seen, Slot};
use simd_json::tape::Tape;
use simd_json::{Node, StaticNode};

/// Deepest nesting the scanner follows (Felix records nest three levels); deeper lines take the
/// simd-json path, which enforces the decoder's real limit.
pub const MAX_DEPTH: usize = 16;

/// Per-thread scanner: owns the node buffer the values of known keys are tokenised into.
pub struct LineScanner {
    /// Kept empty between lines to reuse its allocation.
    nodes: Option<Tape<'static>>,
    /// The top-level keys of the lines read so far, by position ([`KeyOrder`]).
    keys: KeyOrder,
}

/// Felix writes every line's keys in the same order, so the key at a position is most likely the
/// one last seen there: comparing the line's bytes with it costs one short compare, where reading
/// a string costs a search for its end (and a mispredicted branch when it ends).
#[derive(Default)]
struct KeyOrder(Vec<ExpectedKey>);

/// A key as it appears in the line, quotes included, and its slot.
struct ExpectedKey {
    /// The quoted key's bytes in little-endian words, zero-padded.
    words: [u64; KEY_WORDS],
    len: usize,
    slot: Option<Slot>,
}

/// Positions [`KeyOrder`] remembers (a Felix line has about 50 keys).
const KEY_ORDER_CAP: usize = 80;
/// Words of a remembered key: 32 bytes hold every key the record reads, quotes included.
const KEY_WORDS: usize = 4;

impl ExpectedKey {
    /// `None` for a key longer than [`KEY_WORDS`] words.
    fn new(quoted: &[u8], slot: Option<Slot>) -> Option<Self> {
        if quoted.len() > KEY_WORDS * 8 {
            return None;
        }
        let mut words = [0u64; KEY_WORDS];
        for (word, chunk) in words.iter_mut().zip(quoted.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes.get_mut(..chunk.len())?.copy_from_slice(chunk);
            *word = u64::from_le_bytes(bytes);
        }
        Some(ExpectedKey {
            words,
            len: quoted.len(),
            slot,
        })
    }

    /// Whether `rest` starts with this key: a few word compares, where a slice compare calls
    /// `memcmp` (6 % of a run on 480 B lines).
    #[inline]
    fn starts(&self, rest: &[u8]) -> bool {
        if rest.len() < self.len.div_ceil(8) * 8 {
            return false; // too near the end of the line to load whole words: read the string
        }
        let mut left = self.len;
        for (k, expected) in self.words.iter().enumerate() {
            if left == 0 {
                break;
            }
            let Some(Ok(bytes)) = rest.get(k * 8..k * 8 + 8).map(<[u8; 8]>::try_from) else {
                return false;
            };
            let mask = if left >= 8 {
                !0
            } else {
                (1u64 << (left * 8)) - 1
            };
            if (u64::from_le_bytes(bytes) ^ expected) & mask != 0 {
                return false;
            }
            left = left.saturating_sub(8);
        }
        true
    }
}

impl KeyOrder {
    /// The key at position `n` and its slot: the expected one when the line has it, else read.
    #[inline]
    fn next<'a>(&mut self, c: &mut Cursor<'a>, n: usize) -> Option<Option<Slot>> {
        if let Some(expected) = self.0.get(n) {
            if expected.starts(c.b.get(c.i..)?) {
                c.i += expected.len;
                return Some(expected.slot);
            }
        }
        let start = c.i;
        let key = c.string()?;
        let slot = Slot::of(key);
        if n <= self.0.len() && n < KEY_ORDER_CAP {
            self.0.truncate(n);
            // A key too long to remember ends the order here; the rest of the line reads strings.
            if let Some(learned) = ExpectedKey::new(c.b.get(start..c.i)?, slot) {
                self.0.push(learned);
            }
        }
        Some(slot)
    }
}

impl Default for LineScanner {
    fn default() -> Self {
        LineScanner {
            nodes: Some(Tape(Vec::with_capacity(64))),
            keys: KeyOrder::default(),
        }
    }
}

impl LineScanner {
    /// Reads one line (trimmed, without its newline); `None` when the line needs the simd-json path.
    pub fn scan<'a>(&mut self, line: &'a [u8]) -> Option<CalicoFields<'a>> {
        let mut fields = CalicoFields::default();
        self.scan_into(line, &mut fields).then_some(fields)
    }

    /// [`LineScanner::scan`] into the caller's `fields`, which it resets first: `false` when the
    /// line needs the simd-json path (`fields` then holds nothing of use). The fields are about a
    /// kilobyte; a decoder that keeps them in place does not move them from return value to
    /// variable to slot on every line.
    pub fn scan_into<'a>(&mut self, line: &'a [u8], fields: &mut CalicoFields<'a>) -> bool {
        let mut nodes: Tape<'a> = self.nodes.take().unwrap_or_else(Tape::null).reset();
        // One SIMD pass validates the line's UTF-8; strings are then cut from it at quotes, which
        // are always character boundaries, with no check of their own.
        let scanned = simdutf8::basic::from_utf8(line).is_ok_and(|s| {
            let mut cursor = Cursor { s, b: line, i: 0 };
            scan_object(&mut cursor, &mut nodes.0, &mut self.keys, fields).is_some()
        });
        self.nodes = Some(nodes.reset());
        scanned
    }
}

/// The top-level object, then nothing but the end of the line.
fn scan_object<'a>(
    c: &mut Cursor<'a>,
    nodes: &mut Vec<Node<'a>>,
    keys: &mut KeyOrder,
    fields: &mut CalicoFields<'a>,
) -> Option<()> {
    *fields = CalicoFields::default();
    let mut seen = Seen::default();
    c.ws();
    c.expect(b'{')?;
    c.ws();
    if c.peek() == Some(b'}') {
        c.i += 1;
    } else {
        for n in 0.. {
            let slot = keys.next(c, n)?;
            c.ws();
            c.expect(b':')?;
            c.ws();
            match slot {
                Some(slot) => {
                    nodes.clear();
                    c.value(nodes, 1)?;
                    fields.put(slot, nodes, &mut seen)?;
                }
                None => c.skip(1)?,
            }
            c.ws();
            match c.next()? {
                b',' => c.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == c.b.len()).then_some(())
}

/// A position in the line.
struct Cursor<'a> {
    /// The line, validated UTF-8.
    s: &'a str,
    /// The same bytes.
    b: &'a [u8],
    i: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is zero (exact: no borrow runs from byte to byte).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x) & HIGHS
}

/// The high bit of each byte of `w` that ends or spoils a plain string: a quote, a backslash or a
/// control byte.
#[inline]
fn string_stops(w: u64) -> u64 {
    zero_bytes(w ^ (ONES * u64::from(b'"')))
        | zero_bytes(w ^ (ONES * u64::from(b'\\')))
        | zero_bytes(w & (ONES * 0xe0))
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Skips JSON whitespace.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string without escapes or control bytes, borrowed from the line.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        let b = self.b;
        let mut j = start;
        // Eight bytes at a time; the first stop byte's position comes from its bit, not a loop.
        let end = loop {
            let Some(chunk) = b.get(j..j + 8) else {
                break j + b
                    .get(j..)?
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            };
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let stops = string_stops(u64::from_le_bytes(word));
            if stops != 0 {
                break j + (stops.trailing_zeros() / 8) as usize;
            }
            j += 8;
        };
        if *b.get(end)? != b'"' {
            return None; // an escape or a control byte: simd-json's job
        }
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// An integer (JSON grammar: no leading zeros, no `+`) as simd-json's tape holds it; `None`
    /// for a float, `-0` or overflow.
    #[inline]
    fn number(&mut self) -> Option<StaticNode> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let mut value: u64 = 0;
        match self.next()? {
            b'0' => {}
            d @ b'1'..=b'9' => {
                value = u64::from(d - b'0');
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                    self.i += 1;
                }
            }
            _ => return None,
        }
        if let Some(b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            return None; // a float, or a leading zero
        }
        if !negative {
            return Some(StaticNode::U64(value));
        }
        if value == 0 {
            return None;
        }
        // -value fits in i64 when value <= 2^63.
        let magnitude = i64::try_from(value - 1).ok()?;
        Some(StaticNode::I64(-magnitude - 1))
    }

    /// `true`, `false` or `null`, given its first byte.
    #[inline]
    fn literal(&mut self) -> Option<StaticNode> {
        let rest = self.b.get(self.i..)?;
        let (node, len) = if rest.starts_with(b"null") {
            (StaticNode::Null, 4)
        } else if rest.starts_with(b"true") {
            (StaticNode::Bool(true), 4)
        } else if rest.starts_with(b"false") {
            (StaticNode::Bool(false), 5)
        } else {
            return None;
        };
        self.i += len;
        Some(node)
    }

    /// Tokenises one value into `nodes` the way simd-json's tape lays it out.
    fn value(&mut self, nodes: &mut Vec<Node<'a>>, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                let s = self.string()?;
                nodes.push(Node::String(s));
            }
            b'-' | b'0'..=b'9' => nodes.push(Node::Static(self.number()?)),
            b'[' | b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let object = self.peek() == Some(b'{');
                let at = nodes.len();
                nodes.push(Node::Static(StaticNode::Null)); // patched below
                let len = self.members(object, |c| {
                    if object {
                        let key = c.string()?;
                        nodes.push(Node::String(key));
                        c.ws();
                        c.expect(b':')?;
                        c.ws();
                    }
                    c.value(nodes, depth + 1)
                })?;
                let count = nodes.len() - at - 1;
                *nodes.get_mut(at)? = if object {
                    Node::Object { len, count }
                } else {
                    Node::Array { len, count }
                };
            }
            _ => nodes.push(Node::Static(self.literal()?)),
        }
        Some(())
    }

    /// Validates and steps over one value.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b'[' | b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let object = self.peek() == Some(b'{');
                self.members(object, |c| {
                    if object {
                        c.string()?;
                        c.ws();
                        c.expect(b':')?;
                        c.ws();
                    }
                    c.skip(depth + 1)
                })
                .map(|_| ())
            }
            _ => self.literal().map(|_| ()),
        }
    }

    /// Steps over `[` or `{`, the comma-separated members `member` reads, and the closing bracket;
    /// returns how many members there were.
    #[inline]
    fn members(
        &mut self,
        object: bool,
        mut member: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<usize> {
        let close = if object { b'}' } else { b']' };
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Some(0);
        }
        let mut len = 0;
        loop {
            member(self)?;
            len += 1;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                c if c == close => return Some(len),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whenever the scanner reads a line, simd-json reads it too and the tape walk agrees field
    /// for field; `must_read` lines are ones the scanner is expected to take itself.
    fn check(scanner: &mut LineScanner, line: &str, must_read: bool) {
        let got = scanner.scan(line.as_bytes());
        if must_read {
            assert!(got.is_some(), "scanner gave up on {line}");
        }
        if let Some(got) = got {
            // The reference: the tape walk over simd-json's parse of the same line.
            let mut copy = line.as_bytes().to_vec();
            let tape = simd_json::to_tape(&mut copy).expect("simd-json reads it too");
            assert_eq!(Some(got), CalicoFields::scan(&tape.0), "{line}");
        }
    }

    const BASE: &str = r#""start_time":100,"end_time":115,"source_name_aggr":"a-abc12-*","source_namespace":"ns","source_type":"wep","dest_type":"net","dest_name_aggr":"pub""#;

    #[test]
    fn reads_what_felix_writes_like_the_tape_walk() {
        let mut lines = Vec::new();
        for extra in [
            "",
            r#","dest_ip":"8.8.8.8","source_ip":"10.1.1.1","source_port":-1"#,
            r#","dest_domains":["evil.example","b"],"dest_port":0"#,
            r#","source_labels":{"labels":["a=b"],"x":3},"dest_labels":null"#,
            r#","source_labels":["a=b"],"dest_labels":{"labels":null}"#,
            r#","policies":{"all_policies":["0|t|t.p|allow|0"],"pending_policies":[]}"#,
            r#","policies":{"enforced_policies":["junk"],"all_policies":["0|t|t.p|allow|0"]}"#,
            r#","policies":null,"host":"n1","@timestamp":1"#,
            r#","tcp_mean_mss":1400,"tcp_lost_packets":2,"tcp_unknown":"x""#,
            r#","nat_outgoing_ports":[1,2,3],"original_source_ips":["1.2.3.4"]"#,
            r#","process_name":"curl","process_args":["-v"],"num_process_names":1"#,
            r#","unknown":{"a":[1,{"b":[true,false,null]}],"c":-9223372036854775808}"#,
            r#","bytes_in":18446744073709551615,"process_name":"caf\u00e9""#,
            r#","process_name":"café","unknown":"ünïcode""#,
            r#","an_unknown_key_longer_than_thirty_two_bytes":1,"host":"h""#,
        ] {
            let must_read = !extra.contains("\\u");
            lines.push((format!("{{{BASE}{extra}}}"), must_read));
            let spaced = format!(" {{ {} {extra} }} ", BASE.replace(',', " ,\t"));
            lines.push((spaced, must_read));
            // The same keys in another order, and a key that extends an expected one.
            let reversed: Vec<&str> = BASE.split(',').rev().collect();
            lines.push((format!("{{{}{extra}}}", reversed.join(",")), must_read));
            let longer = BASE.replace("\"end_time\"", "\"end_time_x\"");
            lines.push((format!("{{{longer}{extra}}}"), must_read));
        }
        lines.push(("{}".into(), true));
        // Keys too near the end of the line to compare whole words.
        lines.push((r#"{"host":"h"}"#.into(), true));
        lines.push((r#"{"a":1}"#.into(), true));
        lines.push((r#"{"a":1,"b":2}"#.into(), true));
        // Each line on a fresh scanner, then all of them in turn and backwards on one scanner, so
        // the key order it learned from one line meets the next.
        for (line, must_read) in &lines {
            check(&mut LineScanner::default(), line, *must_read);
        }
        let mut scanner = LineScanner::default();
        for (line, must_read) in lines.iter().chain(lines.iter().rev()) {
            check(&mut scanner, line, *must_read);
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_read() {
        for extra in [
            r#","bytes_in":1.5"#,
            r#","unknown":1e3"#,
            r#","unknown":-0"#,
            r#","unknown":01"#,
            r#","bytes_in":18446744073709551616"#,
            r#","unknown":-9223372036854775809"#,
            r#","process_name":"a\"b""#,
            ",\"process_name\":\"tab\there\"",
            r#","unknown":nul"#,
            r#","unknown":[1,]"#,
            r#","unknown":{"a":1,}"#,
            r#","unknown":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]"#,
            r#","bytes_in":1,"bytes_in":2"#,
            r#","Key":{"proto":"tcp"}"#,
            r#","unknown":"x"x"#,
        ] {
            let line = format!("{{{BASE}{extra}}}");
            assert!(
                LineScanner::default().scan(line.as_bytes()).is_none(),
                "{line}"
            );
        }
        for line in [
            "",
            "[]",
            "{",
            "{\"a\":1} x",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{,}",
        ] {
            assert!(
                LineScanner::default().scan(line.as_bytes()).is_none(),
                "{line}"
            );
        }
        let invalid_utf8 = [b"{\"process_name\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat();
        assert!(LineScanner::default().scan(&invalid_utf8).is_none());
    }

    #[test]
    fn eight_byte_steps_stop_at_every_special_byte() {
        // A special byte at each offset of a long string, so the word test meets it at each lane.
        for at in 0..24 {
            for special in [b'"', b'\\', 0x01, 0xc3] {
                let mut value = vec![b'a'; 24];
                value[at] = special;
                if special == 0xc3 {
                    value.insert(at + 1, 0xa9); // é
                }
                let line = [b"{\"host\":\"".as_slice(), &value, b"\"}"].concat();
                let got = LineScanner::default().scan(&line);
                assert_eq!(got.is_some(), special == 0xc3, "{at} {special}");
            }
        }
    }
}
