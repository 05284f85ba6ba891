//! Runs every golden in `../shared/goldens` (or `$LONGCAT_GOLDENS`) and fails on any failure.

use std::path::PathBuf;

fn goldens_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LONGCAT_GOLDENS") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/goldens")
}

#[test]
fn every_golden_passes() {
    let dir = goldens_dir();
    assert!(dir.is_dir(), "golden directory {} not found", dir.display());
    let report = longcat_parity::check_dir(&dir, |r| {
        println!("{}", longcat_parity::runner::format_result(r))
    })
    .expect("golden directory readable");
    for s in &report.skipped {
        println!("SKIP {} ({})", s.file, s.reason);
    }
    println!("{}", report.summary_line());
    assert!(report.passed() > 0, "no golden tensor was checked");
    assert_eq!(report.failed(), 0, "{}", report.summary_line());
    assert!(
        report.skipped.is_empty(),
        "every golden kind has a checker: {}",
        report.summary_line()
    );
}
