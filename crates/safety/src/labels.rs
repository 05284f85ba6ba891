//! The detector's 18 labels, in the model's class order (the `nudenet` package's `__labels`).

use std::fmt;
use std::str::FromStr;

macro_rules! labels {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// A NudeNet label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Label {
            $(
                #[doc = $name]
                $variant,
            )*
        }

        impl Label {
            /// Every label, in the model's class order.
            pub const ALL: [Label; 18] = [$(Label::$variant),*];

            /// The package's name (`"FACE_FEMALE"`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Label::$variant => $name,)*
                }
            }
        }
    };
}

labels! {
    FemaleGenitaliaCovered = "FEMALE_GENITALIA_COVERED",
    FaceFemale = "FACE_FEMALE",
    ButtocksExposed = "BUTTOCKS_EXPOSED",
    FemaleBreastExposed = "FEMALE_BREAST_EXPOSED",
    FemaleGenitaliaExposed = "FEMALE_GENITALIA_EXPOSED",
    MaleBreastExposed = "MALE_BREAST_EXPOSED",
    AnusExposed = "ANUS_EXPOSED",
    FeetExposed = "FEET_EXPOSED",
    BellyCovered = "BELLY_COVERED",
    FeetCovered = "FEET_COVERED",
    ArmpitsCovered = "ARMPITS_COVERED",
    ArmpitsExposed = "ARMPITS_EXPOSED",
    FaceMale = "FACE_MALE",
    BellyExposed = "BELLY_EXPOSED",
    MaleGenitaliaExposed = "MALE_GENITALIA_EXPOSED",
    AnusCovered = "ANUS_COVERED",
    FemaleBreastCovered = "FEMALE_BREAST_COVERED",
    ButtocksCovered = "BUTTOCKS_COVERED",
}

/// The category reported for the labels of the default policy.
pub const SEXUAL: &str = "sexual";

impl Label {
    /// The labels that show sexual content (exposed genitalia, female breasts, buttocks,
    /// anus): the default policy.
    pub const SEXUAL: [Label; 5] = [
        Label::FemaleGenitaliaExposed,
        Label::MaleGenitaliaExposed,
        Label::FemaleBreastExposed,
        Label::ButtocksExposed,
        Label::AnusExposed,
    ];

    /// The category a flagged detection of this label reports in the error body: `sexual`
    /// for [`Label::SEXUAL`], otherwise the label's name in lower case (`face_female`).
    pub fn category(self) -> String {
        if Label::SEXUAL.contains(&self) {
            SEXUAL.to_string()
        } else {
            self.as_str().to_ascii_lowercase()
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown label name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown safety label '{0}' (known: {known})", known = Label::ALL.map(Label::as_str).join(", "))]
pub struct UnknownLabel(pub String);

impl FromStr for Label {
    type Err = UnknownLabel;

    /// Case-insensitive; `-` may stand for `_`.
    fn from_str(s: &str) -> Result<Self, UnknownLabel> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        Label::ALL
            .into_iter()
            .find(|l| l.as_str() == norm)
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_is_the_packages() {
        for l in Label::ALL {
            assert_eq!(l.as_str().parse::<Label>(), Ok(l));
        }
        assert_eq!(Label::ALL[1], Label::FaceFemale);
        assert_eq!(Label::ALL[17], Label::ButtocksCovered);
        assert_eq!("face-female".parse::<Label>(), Ok(Label::FaceFemale));
        let e = "NOSE".parse::<Label>().unwrap_err();
        assert!(e.to_string().contains("FACE_FEMALE"), "{e}");
    }

    #[test]
    fn categories() {
        assert_eq!(Label::AnusExposed.category(), "sexual");
        assert_eq!(Label::FaceFemale.category(), "face_female");
    }
}
