//! Runs every golden in `$LONGCAT_GOLDENS` (scripts/test.sh: `../shared/goldens`) and fails on
//! any failure.

use std::path::PathBuf;

/// The goldens, only ever from `LONGCAT_GOLDENS` (tests reach nothing else outside the
/// repository).
fn goldens_dir() -> PathBuf {
    std::env::var_os("LONGCAT_GOLDENS")
        .map(PathBuf::from)
        .expect("LONGCAT_GOLDENS must name the golden directory (scripts/test.sh sets it; default there: ../shared/goldens)")
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
