//! `flowwarden report` writes one self-contained HTML page that a browser renders: alerts from a real
//! `replay`, quarantines from an actions file, series from the flow logs. The page is rendered in
//! headless Chromium (skipped with a message when it is not installed) and the screenshot must not
//! be blank.

mod ops_common;
use ops_common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn flowwarden(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_flowwarden"))
        .args(args)
        .output()
        .expect("run flowwarden");
    assert!(
        out.status.success(),
        "{:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Flow logs with two scans, alerts from replaying them, and an actions file.
fn make_run(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let flows = dir.join("flows.jsonl");
    let text: String = (0..40)
        .map(|w| match w {
            20 => normal_window(w) + &scan_window(w, "scanner-a", 60),
            31 => normal_window(w) + &scan_window(w, "scanner-b", 25),
            _ => normal_window(w),
        })
        .collect();
    append(&flows, &text);
    let config = dir.join("flowwarden.toml");
    std::fs::write(
        &config,
        "[window]\nlength = \"15s\"\nallowed_lateness = \"0s\"\n[alerts]\nstdout = false\n",
    )
    .expect("config");
    let alerts = dir.join("alerts.jsonl");
    flowwarden(&[
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
        flows.as_os_str(),
    ]);
    let actions = dir.join("actions.jsonl");
    let q = T0 + 21 * WINDOW;
    std::fs::write(
        &actions,
        format!(
            concat!(
                "{{\"action\":\"quarantine\",\"decision\":\"quarantined\",\"workload\":\"shop/scanner-a-*\",\"time\":{q},\"expires_at\":{e},\"dry_run\":true,\"reason\":\"port_scan <b>high</b>\"}}\n",
                "{{\"action\":\"release\",\"workload\":\"shop/scanner-a-*\",\"time\":{r}}}\n",
                "garbage line\n",
                "{{\"action\":\"quarantine\",\"workload\":\"shop/scanner-b-*\"}}\n"
            ),
            q = q,
            e = q + 3600,
            r = q + 600
        ),
    )
    .expect("actions");
    (flows, alerts, actions)
}

#[test]
fn report_is_self_contained_and_names_what_happened() {
    let dir = tempfile::tempdir().expect("tmp");
    let (flows, alerts, actions) = make_run(dir.path());
    assert!(
        !read_alerts(&alerts).is_empty(),
        "the replay must raise alerts"
    );
    let out = dir.path().join("report.html");
    flowwarden(&[
        "report".as_ref(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
        "--actions".as_ref(),
        actions.as_os_str(),
        "--input".as_ref(),
        flows.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let html = std::fs::read_to_string(&out).expect("report");
    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("<script"), "no JavaScript");
    let without_svg_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !without_svg_ns.contains("http://") && !without_svg_ns.contains("https://"),
        "no external assets"
    );
    assert!(html.contains("shop/scanner-a-*") && html.contains("shop/scanner-b-*"));
    assert!(html.contains("port_scan"));
    assert!(
        html.contains("10m"),
        "the released quarantine lasted 10 minutes"
    );
    assert!(
        html.contains("port_scan &lt;b&gt;high&lt;/b&gt;"),
        "input text is escaped"
    );
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(
        html.contains("Series recomputed from"),
        "series come from --input"
    );

    // Without --input the charts fall back to the alerts' own points.
    let out2 = dir.path().join("report-no-input.html");
    flowwarden(&[
        "report".as_ref(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
        "--out".as_ref(),
        out2.as_os_str(),
    ]);
    let html2 = std::fs::read_to_string(&out2).expect("report");
    assert!(html2.contains("No flow logs given"));
    assert!(html2.contains("No actions file given"));
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Renders `page` to `png` with headless Chromium, within a bounded time.
fn screenshot(chromium: &Path, page: &Path, png: &Path, profile: &Path) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        eprintln!("skipped: chromium is not installed (apt-get install -y chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let (flows, alerts, actions) = make_run(dir.path());
    let page = dir.path().join("report.html");
    flowwarden(&[
        "report".as_ref(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
        "--actions".as_ref(),
        actions.as_os_str(),
        "--input".as_ref(),
        flows.as_os_str(),
        "--out".as_ref(),
        page.as_os_str(),
    ]);
    let png_path = dir.path().join("report.png");
    let profile = dir.path().join("chromium-profile");
    screenshot(&chromium, &page, &png_path, &profile);
    assert!(png_path.exists(), "chromium wrote no screenshot");

    let mut decoder = png::Decoder::new(std::fs::File::open(&png_path).expect("png"));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "colour screenshot expected");
    assert!(
        info.width >= 1000 && info.height >= 1000,
        "{}x{}",
        info.width,
        info.height
    );
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let distinct: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 50,
        "only {} distinct colours: blank page?",
        distinct.len()
    );
    let mean: f64 = pixels
        .iter()
        .map(|p| p.iter().map(|&c| c as f64).sum::<f64>() / 3.0)
        .sum::<f64>()
        / pixels.len() as f64;
    let var: f64 = pixels
        .iter()
        .map(|p| {
            let l = p.iter().map(|&c| c as f64).sum::<f64>() / 3.0;
            (l - mean).powi(2)
        })
        .sum::<f64>()
        / pixels.len() as f64;
    assert!(var > 100.0, "luminance variance {var:.1}: blank page?");
    // The severity colours of badges and bars are drawn (high #ea580c, critical #b91c1c, medium #ca8a04).
    let severity = [[0xea, 0x58, 0x0c], [0xb9, 0x1c, 0x1c], [0xca, 0x8a, 0x04]];
    let drawn = pixels.iter().filter(|p| severity.contains(p)).count();
    assert!(drawn > 100, "severity colours cover only {drawn} pixels");
}
