//! Fuzz target: the TOML config loader and its validation (`Config::from_toml`, what `run` and
//! `check-config` do before anything else). Any text must give a config or an error naming a key,
//! never a panic; an accepted config must print (what `check-config` shows) and, when it holds no
//! secret (those print as `***`), load back to the same config; the derived values the daemon
//! reads (window length, lateness, shutdown bound, threads) must not panic either.
#![no_main]

use flowwarden::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::from_toml(text) else {
        return;
    };
    let printed = toml::to_string_pretty(&cfg).expect("an accepted config prints");
    let has_secret = cfg.secrets().iter().any(|s| s.inline.is_some())
        || cfg
            .kafka
            .librdkafka
            .iter()
            .any(|(k, _)| flowwarden::kafka::source::is_secret_property(k));
    if !has_secret {
        let again = Config::from_toml(&printed).expect("the printed config loads");
        assert_eq!(again, cfg, "printed:\n{printed}");
    }
    let _ = cfg.window.fixed_length();
    let _ = cfg.window.lateness_s();
    let _ = cfg.daemon.shutdown_bound();
    let _ = cfg.effective_threads(None);
    if cfg
        .secrets()
        .iter()
        .all(|s| s.file.is_none() && s.env.is_none())
    {
        // Reads no file and no environment: safe to call on fuzzed input.
        let _ = cfg.kafka.client_properties();
    }
});
