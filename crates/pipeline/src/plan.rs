//! How a request's `num_frames` becomes stage-1 segments (see `docs/pipeline.md`).
//!
//! `num_frames` counts 15 fps stage-1 frames. Stage 1 makes `4⌊n/4⌋+1` frames: one segment
//! of up to 93 frames, then continuation segments that each re-use the last 13 frames as
//! clean condition and add up to 80 new frames (the last one only as many as needed).
//! Refinement doubles every segment to 30 fps, so the output has `2·(4⌊n/4⌋+1)` frames.

use crate::stage1::snap_frames;

/// Frames of the first (image-to-video) segment.
pub const SEGMENT_FRAMES: usize = 93;
/// Condition frames of a continuation segment.
pub const COND_FRAMES: usize = 13;

/// One stage-1 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Frames the segment's DiT pass covers (condition frames included).
    pub frames: usize,
    /// Leading clean condition frames (0 for the first segment).
    pub cond_frames: usize,
}

impl Segment {
    /// New stage-1 frames this segment adds.
    pub fn new_frames(&self) -> usize {
        self.frames - self.cond_frames
    }
}

/// All segments of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    /// Stage-1 frames in total (`4⌊n/4⌋+1`).
    pub stage1_frames: usize,
    /// Segments in order.
    pub segments: Vec<Segment>,
}

impl SegmentPlan {
    /// Plans `num_frames` stage-1 frames with segments of `segment_frames` frames and
    /// `cond_frames` condition frames (both `4k+1`).
    pub fn new(num_frames: usize, segment_frames: usize, cond_frames: usize) -> Self {
        let total = snap_frames(num_frames);
        let first = total.min(segment_frames);
        let mut segments = vec![Segment {
            frames: first,
            cond_frames: 0,
        }];
        let mut done = first;
        let step = segment_frames - cond_frames;
        while done < total {
            let new = (total - done).min(step);
            segments.push(Segment {
                frames: cond_frames + new,
                cond_frames,
            });
            done += new;
        }
        Self {
            stage1_frames: total,
            segments,
        }
    }

    /// Output frames after refinement (`2×`, or `1×` spatial-only).
    pub fn output_frames(&self, spatial_only: bool) -> usize {
        if spatial_only {
            self.stage1_frames
        } else {
            2 * self.stage1_frames
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_is_one_segment() {
        let p = SegmentPlan::new(17, 93, 13);
        assert_eq!(
            p.segments,
            vec![Segment {
                frames: 17,
                cond_frames: 0
            }]
        );
        assert_eq!(SegmentPlan::new(162, 93, 13).stage1_frames, 161);
    }

    #[test]
    fn long_video_segments() {
        let p = SegmentPlan::new(961, 93, 13);
        assert_eq!(p.stage1_frames, 961);
        assert_eq!(p.segments.len(), 12);
        assert!(p.segments[1..11].iter().all(|s| s.frames == 93));
        let new: usize = p.segments.iter().map(|s| s.new_frames()).sum();
        assert_eq!(new, 961);
        assert!(p.segments.iter().all(|s| s.frames % 4 == 1));
        assert_eq!(p.output_frames(false), 1922);
    }
}
