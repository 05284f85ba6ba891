//! Progress reports → throttled job log lines (`stage, segment, step/total, eta`).

use std::time::{Duration, Instant};

use longcat_core::{Progress, Stage};

/// Formats one progress report, e.g. `refine: segment 1/2, step 3/5, eta 1m05s`.
pub fn format_progress(p: &Progress) -> String {
    let mut line = format!("{}:", stage_name(p.stage));
    if p.segments > 1 {
        line.push_str(&format!(" segment {}/{},", p.segment + 1, p.segments));
    }
    line.push_str(&format!(" step {}/{}", p.step, p.total));
    if let Some(eta) = p.eta {
        line.push_str(&format!(", eta {}", format_duration(eta)));
    }
    line
}

/// The stage as it appears in logs and metrics.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::EncodeText => "encode_text",
        Stage::EncodeImage => "encode_image",
        Stage::Base => "base",
        Stage::Refine => "refine",
        Stage::Decode => "decode",
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Decides which progress reports become log lines: the first of each stage/segment, the
/// last step of each, and otherwise at most one per `interval`.
#[derive(Debug)]
pub struct ProgressThrottle {
    interval: Duration,
    last: Option<Instant>,
    last_key: Option<(Stage, u32)>,
}

impl ProgressThrottle {
    /// A throttle letting one ordinary line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            last_key: None,
        }
    }

    /// Whether `p`, arriving at `now`, should be logged.
    pub fn admit(&mut self, p: &Progress, now: Instant) -> bool {
        let key = (p.stage, p.segment);
        let new_phase = self.last_key != Some(key);
        let last_step = p.total > 0 && p.step >= p.total;
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.interval);
        if new_phase || last_step || due {
            self.last = Some(now);
            self.last_key = Some(key);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(stage: Stage, segment: u32, step: u32, total: u32) -> Progress {
        Progress {
            stage,
            segment,
            segments: 2,
            step,
            total,
            eta: Some(Duration::from_secs(65)),
        }
    }

    #[test]
    fn formats_lines() {
        assert_eq!(
            format_progress(&p(Stage::Refine, 0, 3, 5)),
            "refine: segment 1/2, step 3/5, eta 1m05s"
        );
        let single = Progress {
            segments: 1,
            eta: None,
            ..p(Stage::Base, 0, 1, 40)
        };
        assert_eq!(format_progress(&single), "base: step 1/40");
        assert_eq!(format_duration(Duration::from_secs(7322)), "2h02m");
        assert_eq!(format_duration(Duration::from_secs(9)), "9s");
    }

    #[test]
    fn throttles_within_a_stage() {
        let mut t = ProgressThrottle::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(t.admit(&p(Stage::Base, 0, 1, 10), ms(0)));
        assert!(!t.admit(&p(Stage::Base, 0, 2, 10), ms(500)));
        assert!(!t.admit(&p(Stage::Base, 0, 3, 10), ms(1900)));
        assert!(t.admit(&p(Stage::Base, 0, 4, 10), ms(2100)));
        assert!(t.admit(&p(Stage::Base, 0, 10, 10), ms(2200)));
        assert!(t.admit(&p(Stage::Refine, 0, 1, 5), ms(2300)));
        assert!(t.admit(&p(Stage::Refine, 1, 1, 5), ms(2400)));
        assert!(!t.admit(&p(Stage::Refine, 1, 2, 5), ms(2500)));
    }
}
