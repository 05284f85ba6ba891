//! Runs the detector on image files and prints each detection and the time per image:
//! `cargo run -p longcat-safety --example detect -- MODEL IMAGE...`.

use std::time::Instant;

use longcat_core::RgbImage;
use longcat_safety::{NudeDetector, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: detect MODEL IMAGE...")?;
    let t = Instant::now();
    let detector = NudeDetector::load(model.as_ref())?;
    println!("loaded in {:.3} s", t.elapsed().as_secs_f64());
    let policy = Policy::default();
    for path in args {
        let img = image::open(&path)?.to_rgb8();
        let img = RgbImage {
            width: img.width(),
            height: img.height(),
            data: img.into_raw(),
        };
        let t = Instant::now();
        let detections = detector.detect(&img)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let verdict = policy.evaluate(&detections);
        println!(
            "{path}: {}x{} in {ms:.1} ms, flagged by the default policy: {:?}",
            img.width, img.height, verdict.categories
        );
        for d in detections {
            println!("  {} {:.4} {:?}", d.label, d.score, d.pixel_box());
        }
    }
    Ok(())
}
