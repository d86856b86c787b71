//! Configuration errors through the real binary: a bad config makes `check-config FILE` and
//! `replay --config FILE` exit 2 with a message naming the key; the shipped config passes and
//! `check-config` prints the effective config (which itself passes again, unchanged).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flowwarden");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flowwarden.toml");

/// (config text, the key the error must name).
const BAD_CONFIGS: &[(&str, &str)] = &[
    // Unknown keys, top level and nested.
    ("bogus = 1\n", "bogus"),
    ("[window]\nlenght = \"15s\"\n", "window.lenght"),
    (
        "[detect.port_scan]\nenabeld = true\n",
        "detect.port_scan.enabeld",
    ),
    ("[nonsense]\nx = 1\n", "nonsense"),
    // Wrong types.
    ("[input]\nbatch_lines = \"many\"\n", "input.batch_lines"),
    ("[input]\nbatch_bytes = 100\n", "input.batch_bytes"),
    ("[pipeline]\nthreads = -1\n", "pipeline.threads"),
    (
        "[detect.port_scan]\ndistinct_ports = \"many\"\n",
        "detect.port_scan.distinct_ports",
    ),
    ("[alerts]\nstdout = \"yes\"\n", "alerts.stdout"),
    ("[window]\nlength = 15\n", "window.length"),
    // Bad durations.
    ("[window]\nlength = \"soon\"\n", "window.length"),
    (
        "[window]\nallowed_lateness = \"a while\"\n",
        "window.allowed_lateness",
    ),
    (
        "[alerts]\nsuppression = \"forever\"\n",
        "alerts.suppression",
    ),
    (
        "[daemon]\nshutdown_timeout = \"later\"\n",
        "daemon.shutdown_timeout",
    ),
    // Bad enum values.
    ("[source]\nkind = \"carrier-pigeon\"\n", "source.kind"),
    ("[respond]\nmode = \"yolo\"\n", "respond.mode"),
    // Zero and negative thresholds.
    (
        "[detect.beaconing]\nthreshold = 0\n",
        "detect.beaconing.threshold",
    ),
    (
        "[detect.beaconing]\nthreshold = -1.5\n",
        "detect.beaconing.threshold",
    ),
    ("[window]\nauto_sample = 0\n", "window.auto_sample"),
    ("[input]\nmax_line_bytes = 10\n", "input.max_line_bytes"),
    // [respond] values.
    ("[respond]\nmin_severity = 500\n", "respond.min_severity"),
    (
        "[respond]\nown_namespace = \"Not A Namespace\"\n",
        "respond.own_namespace",
    ),
    ("[respond]\ndry_run = \"maybe\"\n", "respond.dry_run"),
    ("[respond]\nbogus = true\n", "respond.bogus"),
];

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run flowwarden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_configs_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A valid input, so replay can only fail because of its config.
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"start_time\":1750000000,\"end_time\":1750000015}\n",
    )
    .expect("write input");
    for (i, (config, key)) in BAD_CONFIGS.iter().enumerate() {
        let file = format!("bad-{i}.toml");
        std::fs::write(dir.path().join(&file), config).expect("write config");
        for args in [
            vec!["check-config", file.as_str()],
            vec![
                "replay",
                "--config",
                file.as_str(),
                "in.jsonl",
                "--alerts",
                "alerts.jsonl",
            ],
        ] {
            let out = run(dir.path(), &args);
            let stderr = text(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?} with {config:?}: expected exit 2, stderr: {stderr}"
            );
            assert!(
                stderr.contains(&format!("`{key}`")),
                "{args:?} with {config:?}: the message must name `{key}`: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn unreadable_and_malformed_toml_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("broken.toml"), "[window\nlength = ").expect("write");
    for (file, words) in [
        ("broken.toml", "not valid TOML"),
        ("missing.toml", "cannot read config file"),
    ] {
        for args in [
            vec!["check-config", file],
            vec!["replay", "--config", file, "in.jsonl"],
        ] {
            let out = run(dir.path(), &args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(words), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn the_curve_benchmarks_config_passes_and_warms_baselines_within_its_six_windows() {
    let curve = concat!(env!("CARGO_MANIFEST_DIR"), "/config/curve.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["check-config", curve]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let effective: toml::Value = toml::from_str(&text(&out.stdout)).expect("TOML");
    let warmup = effective
        .get("baseline")
        .and_then(|b| b.get("warmup_windows"))
        .and_then(|w| w.as_integer());
    assert_eq!(warmup, Some(2));
}

#[test]
fn shipped_config_passes_and_prints_the_effective_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["check-config", SHIPPED]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let effective: toml::Value = toml::from_str(&printed).expect("the effective config is TOML");
    let get = |path: &str| {
        path.split('.')
            .try_fold(&effective, |v, k| v.get(k))
            .unwrap_or_else(|| panic!("effective config lacks {path}:\n{printed}"))
            .clone()
    };
    assert_eq!(get("window.length").as_str(), Some("auto"));
    assert_eq!(get("window.allowed_lateness").as_str(), Some("30s"));
    assert_eq!(get("input.max_line_bytes").as_integer(), Some(1_048_576));
    assert_eq!(get("source.kind").as_str(), Some("simulate"));
    assert_eq!(
        get("detect.port_scan.distinct_ports").as_integer(),
        Some(500)
    );
    assert_eq!(get("detect.ip_sweep.distinct_hosts").as_integer(), Some(32));
    assert!(get("detect.beaconing.threshold")
        .as_float()
        .is_some_and(|t| t > 0.0));
    assert!(get("respond").is_table());
    // Every section of the config is printed, not only the ones the file sets.
    for section in [
        "input",
        "source",
        "pipeline",
        "window",
        "baseline",
        "detect",
        "alerts",
        "dead_letter",
        "metrics",
        "log",
        "daemon",
        "kafka",
        "respond",
    ] {
        assert!(get(section).is_table(), "section [{section}] missing");
    }
    // The printed config is itself valid and prints the same again.
    std::fs::write(dir.path().join("effective.toml"), &printed).expect("write");
    let again = run(dir.path(), &["check-config", "effective.toml"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), printed);
}

#[test]
fn a_changed_value_shows_in_the_effective_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.toml"),
        "[window]\nlength = \"5m\"\n[detect.beaconing]\nthreshold = 0.75\n",
    )
    .expect("write");
    let out = run(dir.path(), &["check-config", "c.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let effective: toml::Value = toml::from_str(&text(&out.stdout)).expect("TOML");
    assert_eq!(effective["window"]["length"].as_str(), Some("5m"));
    assert_eq!(
        effective["detect"]["beaconing"]["threshold"].as_float(),
        Some(0.75)
    );
}
