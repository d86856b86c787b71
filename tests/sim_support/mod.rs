//! Feeding a simulator through an in-process pipeline, for the tests that judge detectors on
//! simulated traffic.

use flowwarden::alert::Alert;
use flowwarden::pipeline::Pipeline;
use flowwarden::simulate::Simulator;
use flowwarden::source::LineBatch;
use std::sync::Arc;

/// Pushes every flush window of `sim` through `pipeline` as one batch (lines numbered from 1, named
/// `source`), then finishes it. Returns the alerts and the number of lines.
pub fn run(pipeline: &mut Pipeline, sim: &mut Simulator, source: &str) -> (Vec<Alert>, u64) {
    let source: Arc<str> = Arc::from(source);
    let (mut out, mut batch) = (Vec::new(), LineBatch::new());
    let (mut alerts, mut lines) = (Vec::new(), 0u64);
    loop {
        out.clear();
        if !sim.next_window(&mut out, None) {
            break;
        }
        batch.clear();
        for line in out.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            batch.push_line(&source, line, lines, 0);
        }
        alerts.extend(pipeline.push(&batch).expect("push"));
    }
    alerts.extend(pipeline.finish().expect("finish"));
    (alerts, lines)
}
