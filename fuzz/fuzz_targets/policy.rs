//! Fuzz target: Felix policy strings (`index|tier|name|action[|rule]`, in the three name shapes
//! of Calico < 3.32, 3.32+ and staged/profile/knp). The parser must return a hit or an error,
//! never panic, and every part it returns must be a slice of the input. The same string is also
//! decoded inside a Calico record's `policies`, which interns it.
#![no_main]

use flowwarden::flow::policy::parse_policy_str;
use flowwarden::flow::Decoder;
use libfuzzer_sys::fuzz_target;

/// Whether `part` lies inside `whole` (the parser borrows, it never builds strings).
fn within(whole: &str, part: &str) -> bool {
    let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(hit) = parse_policy_str(s) {
        for part in [hit.tier, hit.namespace, hit.name] {
            assert!(within(s, part), "{part:?} is not a slice of {s:?}");
        }
    }
    let quoted = serde_json::to_string(s).expect("a str always serializes");
    let line = format!(
        concat!(
            r#"{{"start_time":1750000000,"end_time":1750000015,"source_name_aggr":"a-*","#,
            r#""source_namespace":"ns","source_type":"wep","dest_name_aggr":"b-*","#,
            r#""dest_namespace":"ns","dest_type":"wep","dest_port":80,"proto":"tcp","#,
            r#""action":"allow","reporter":"src","policies":{{"all_policies":[{q}],"#,
            r#""enforced_policies":[{q}],"pending_policies":[{q}]}},"num_flows":1}}"#
        ),
        q = quoted
    );
    let mut dec = Decoder::new(64 * 1024);
    if let Ok(rec) = dec.decode(line.as_bytes()) {
        assert!(rec.end_time >= rec.start_time);
    }
    let _ = dec.with_raw(line.as_bytes(), |raw| {
        raw.policies
            .as_ref()
            .map(|p| p.enforced().iter().map(|e| e.parse().is_ok()).count())
    });
});
