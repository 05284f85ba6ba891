//! What flags content: a set of labels and a score threshold.

use std::collections::BTreeSet;

use crate::detector::Detection;
use crate::labels::{Label, UnknownLabel};

/// The default score threshold: a detection of a policy label scoring at least this flags.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Errors of a policy's configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A label name is not one of the detector's.
    #[error(transparent)]
    UnknownLabel(#[from] UnknownLabel),
    /// No label given.
    #[error("the safety policy needs at least one label")]
    NoLabels,
    /// The threshold is not in `(0, 1]`.
    #[error("safety threshold {0} is not in (0, 1]")]
    BadThreshold(f32),
}

/// The labels that flag and the score at which they do.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    labels: BTreeSet<Label>,
    threshold: f32,
}

impl Default for Policy {
    /// [`Label::SEXUAL`] at [`DEFAULT_THRESHOLD`].
    fn default() -> Self {
        Self {
            labels: Label::SEXUAL.into_iter().collect(),
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

impl Policy {
    /// A policy flagging `labels` at `threshold` (in `(0, 1]`).
    pub fn new(
        labels: impl IntoIterator<Item = Label>,
        threshold: f32,
    ) -> Result<Self, PolicyError> {
        let labels: BTreeSet<Label> = labels.into_iter().collect();
        if labels.is_empty() {
            return Err(PolicyError::NoLabels);
        }
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(PolicyError::BadThreshold(threshold));
        }
        Ok(Self { labels, threshold })
    }

    /// Parses a comma-separated label list (`"FEMALE_BREAST_EXPOSED,ANUS_EXPOSED"`).
    pub fn parse_labels(list: &str) -> Result<Vec<Label>, PolicyError> {
        let labels = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Label>, _>>()?;
        if labels.is_empty() {
            return Err(PolicyError::NoLabels);
        }
        Ok(labels)
    }

    /// The flagging labels, in the model's class order.
    pub fn labels(&self) -> impl Iterator<Item = Label> + '_ {
        self.labels.iter().copied()
    }

    /// The score threshold.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Which of `detections` flag, and their categories.
    pub fn evaluate(&self, detections: &[Detection]) -> Verdict {
        let hits: Vec<Detection> = detections
            .iter()
            .filter(|d| self.labels.contains(&d.label) && d.score >= self.threshold)
            .cloned()
            .collect();
        let categories: BTreeSet<String> = hits.iter().map(|d| d.label.category()).collect();
        Verdict {
            categories: categories.into_iter().collect(),
            hits,
        }
    }
}

/// The outcome of checking one image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The categories of the flagging detections, sorted, without repeats; empty when
    /// nothing flags.
    pub categories: Vec<String>,
    /// The detections that flag.
    pub hits: Vec<Detection>,
}

impl Verdict {
    /// Whether anything flags.
    pub fn flagged(&self) -> bool {
        !self.hits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: Label, score: f32) -> Detection {
        Detection {
            label,
            score,
            bbox: [0.0, 0.0, 10.0, 10.0],
        }
    }

    #[test]
    fn default_policy_flags_exposed_sexual_labels_at_threshold() {
        let p = Policy::default();
        let v = p.evaluate(&[
            det(Label::FaceFemale, 0.9),
            det(Label::FemaleBreastExposed, 0.5),
            det(Label::ButtocksExposed, 0.49),
        ]);
        assert!(v.flagged());
        assert_eq!(v.categories, vec!["sexual".to_string()]);
        assert_eq!(v.hits, vec![det(Label::FemaleBreastExposed, 0.5)]);
    }

    #[test]
    fn benign_or_low_scores_pass() {
        let p = Policy::default();
        let v = p.evaluate(&[
            det(Label::FaceFemale, 0.99),
            det(Label::BellyCovered, 0.99),
            det(Label::AnusExposed, 0.3),
        ]);
        assert!(!v.flagged());
        assert!(v.categories.is_empty());
        assert!(!p.evaluate(&[]).flagged());
    }

    #[test]
    fn configured_labels_and_threshold() {
        let labels = Policy::parse_labels("face_female, ANUS_EXPOSED,").unwrap();
        let p = Policy::new(labels, 0.7).unwrap();
        let v = p.evaluate(&[
            det(Label::FaceFemale, 0.72),
            det(Label::AnusExposed, 0.8),
            det(Label::FemaleBreastExposed, 0.99),
        ]);
        assert_eq!(v.categories, vec!["face_female", "sexual"]);
        assert_eq!(v.hits.len(), 2);
        assert!(!p.evaluate(&[det(Label::FaceFemale, 0.69)]).flagged());
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(matches!(
            Policy::parse_labels("FACE_FEMALE,NOSE"),
            Err(PolicyError::UnknownLabel(_))
        ));
        assert_eq!(Policy::parse_labels(" , "), Err(PolicyError::NoLabels));
        assert_eq!(
            Policy::new([Label::FaceMale], 0.0),
            Err(PolicyError::BadThreshold(0.0))
        );
        assert!(Policy::new([Label::FaceMale], 1.5).is_err());
        assert!(Policy::new([Label::FaceMale], f32::NAN).is_err());
        assert_eq!(Policy::new([], 0.5), Err(PolicyError::NoLabels));
    }
}
