//! Fuzz target: what the Goldmane HTTP receiver does with a request before it queues it: the
//! head checks (path, method, bearer token, declared length; `check_head`) and the body's split
//! into ndjson lines with validation and de-duplication keys (`inspect_body`). Input: header lines
//! (`Name: value`), a blank line, then the body. Neither may panic; lines must lie inside the body,
//! hold no newline, and be numbered in order; the 401 decision must follow the token exactly.
#![no_main]

use flowwarden::secret::Secret;
use flowwarden::source::goldmane_http::{check_head, inspect_body, BULK_PATH};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token";
const MAX_BODY: usize = 64 * 1024;
const MAX_LINE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[][..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let token = Secret::new(TOKEN);
    let with_token = check_head(&Method::POST, BULK_PATH, &headers, Some(&token), MAX_BODY);
    let authorised = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        == Some(format!("Bearer {TOKEN}").as_bytes());
    match &with_token {
        Err(r) if r.status == StatusCode::UNAUTHORIZED => assert!(!authorised),
        _ => assert!(authorised),
    }
    let _ = check_head(&Method::POST, BULK_PATH, &headers, None, MAX_BODY);
    let report = inspect_body(body, MAX_LINE);
    let mut last_line = 0;
    for (line, _) in &report.lines {
        assert!(line.start <= line.end && line.end <= body.len());
        assert!(!body[line.start..line.end].contains(&b'\n'));
        assert!(line.line > last_line);
        last_line = line.line;
    }
    assert!(report.bad_lines <= report.lines.len() as u64);
    assert_eq!(report.bad_lines > 0, report.first_bad.is_some());
});
