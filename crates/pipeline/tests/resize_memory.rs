//! The condition resize's memory is bounded by its output, not by the input's long side:
//! measured with a counting global allocator (this binary holds only this test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use longcat_pipeline::buckets::{pick, ASPECT_RATIO_627};
use longcat_pipeline::image::resize_lanczos;
use longcat_pipeline::RgbImage;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated on top of what was live when `f` started.
fn extra_peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - base)
}

#[test]
fn extreme_aspect_resize_memory_is_bounded_by_the_output() {
    // 1:8, the most extreme aspect the decoder accepts, into its 480p bucket (1280 x 320):
    // the old whole-image passes held a 320 x 8192 intermediate (7.9 MB) for a 1.2 MB output.
    for (w, h) in [(1024u32, 8192u32), (8192, 1024)] {
        let img = RgbImage {
            width: w,
            height: h,
            data: (0..w as usize * h as usize * 3)
                .map(|i| (i % 251) as u8)
                .collect(),
        };
        let (bh, bw) = pick(ASPECT_RATIO_627, h, w);
        let (out, peak) = extra_peak(|| resize_lanczos(&img, bw, bh).unwrap());
        let out_bytes = out.data.len();
        assert_eq!(out_bytes, bw as usize * bh as usize * 3);
        // Output + the row window (vertical kernel rows x output width) + weight tables.
        let bound = out_bytes + out_bytes / 2 + (1 << 20);
        eprintln!("{w}x{h} -> {bw}x{bh}: peak {peak} bytes, output {out_bytes} bytes");
        assert!(
            peak <= bound,
            "{w}x{h} -> {bw}x{bh}: {peak} bytes at peak for a {out_bytes}-byte output (bound {bound})"
        );
    }
}
