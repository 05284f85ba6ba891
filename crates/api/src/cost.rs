//! Pricing per app: USD per generated second, seconds counted at the app's billing frame
//! rate. The defaults and their sources are in docs/server.md#pricing; a server can replace
//! any app's price ([`PriceTable::set`], the `prices` table of `longcat serve --config`).

use std::collections::BTreeMap;

use longcat_core::App;
use serde::{Deserialize, Serialize};

/// The price of one app.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per generated second.
    pub usd_per_second: f64,
    /// Frames per generated second: 30 for the 720p apps (their frames are 30 fps), 15 for
    /// 480p.
    pub billing_fps: f64,
}

impl Price {
    /// Checks that both numbers are finite, the price not negative and the rate positive.
    pub fn check(&self) -> Result<(), String> {
        if !self.usd_per_second.is_finite() || self.usd_per_second < 0.0 {
            return Err(format!(
                "usd_per_second must be a number >= 0, got {}",
                self.usd_per_second
            ));
        }
        if !self.billing_fps.is_finite() || self.billing_fps <= 0.0 {
            return Err(format!(
                "billing_fps must be a number > 0, got {}",
                self.billing_fps
            ));
        }
        Ok(())
    }
}

/// fal's price of `fal-ai/longcat-video/image-to-video/480p`: $0.025 per generated second
/// at 15 fps (fal's model page).
pub const I2V_480P: Price = Price {
    usd_per_second: 0.025,
    billing_fps: 15.0,
};
/// fal's price of `fal-ai/longcat-video/text-to-video/720p`: $0.04 per generated second at
/// 30 fps (fal's model page).
pub const T2V_720P: Price = Price {
    usd_per_second: 0.04,
    billing_fps: 30.0,
};
/// The price this server has charged for `fal-ai/longcat-video/image-to-video/720p` since
/// its first version: $0.025 per second, which at 30 fps counts the same seconds as
/// `num_frames / 15`.
pub const I2V_720P: Price = Price {
    usd_per_second: 0.025,
    billing_fps: 30.0,
};
/// The distilled 720p apps' price: $0.014 per second at 30 fps. No fal page for the
/// distilled apps was found; Venice prices LongCat distilled at $0.0177/s against $0.0507/s
/// for the full model (a factor of 0.35), applied to $0.04 and rounded to a tenth of a cent.
pub const DISTILLED_720P: Price = Price {
    usd_per_second: 0.014,
    billing_fps: 30.0,
};
/// The distilled 480p apps' price: $0.009 per second at 15 fps (0.35 × $0.025, rounded up to
/// a tenth of a cent; see [`DISTILLED_720P`]).
pub const DISTILLED_480P: Price = Price {
    usd_per_second: 0.009,
    billing_fps: 15.0,
};

/// Price of each app; [`Default`] is the table documented in docs/server.md#pricing.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<&'static str, Price>,
}

impl Default for PriceTable {
    fn default() -> Self {
        let prices = App::ALL
            .into_iter()
            .map(|app| (app.id(), default_price(app)))
            .collect();
        Self { prices }
    }
}

/// The default price of `app` (see [`PriceTable`]).
pub fn default_price(app: App) -> Price {
    use longcat_core::{Resolution, Task};
    match (app.distilled, app.task, app.resolution) {
        (true, _, Resolution::P720) => DISTILLED_720P,
        (true, _, Resolution::P480) => DISTILLED_480P,
        (false, Task::ImageToVideo, Resolution::P720) => I2V_720P,
        (false, Task::TextToVideo, Resolution::P720) => T2V_720P,
        // No text-to-video/480p page found: priced as image-to-video/480p.
        (false, _, Resolution::P480) => I2V_480P,
    }
}

impl PriceTable {
    /// The price of `app`.
    pub fn price(&self, app: App) -> Price {
        self.prices
            .get(app.id())
            .copied()
            .unwrap_or_else(|| default_price(app))
    }

    /// Replaces the price of the app with id `app_id`; an unknown id or a bad price is an
    /// error naming it.
    pub fn set(&mut self, app_id: &str, price: Price) -> Result<(), String> {
        let app = App::from_id(app_id).ok_or_else(|| {
            format!(
                "prices: unknown app '{app_id}' (one of: {})",
                App::ALL.map(App::id).join(", ")
            )
        })?;
        price
            .check()
            .map_err(|e| format!("prices.'{app_id}': {e}"))?;
        self.prices.insert(app.id(), price);
        Ok(())
    }

    /// Billed seconds of `num_frames` requested (15 fps stage-1) frames of `app`: the
    /// frames the app generates at its native rate (`num_frames` at 15 fps for 480p, twice
    /// as many at 30 fps for 720p, before the 4k+1 rounding), divided by the billing rate.
    pub fn billable_seconds(&self, app: App, num_frames: u32) -> f64 {
        let generated = f64::from(num_frames) * f64::from(app.native_fps()) / 15.0;
        generated / self.price(app).billing_fps
    }

    /// Cost in USD of `num_frames` requested frames of `app`.
    pub fn cost_usd(&self, app: App, num_frames: u32) -> f64 {
        self.billable_seconds(app, num_frames) * self.price(app).usd_per_second
    }

    /// The table as JSON, `{app id: {usd_per_second, billing_fps}}`, in [`App::ALL`] order.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for app in App::ALL {
            let price = self.price(app);
            map.insert(
                app.id().to_owned(),
                serde_json::json!({
                    "usd_per_second": price.usd_per_second,
                    "billing_fps": price.billing_fps,
                }),
            );
        }
        serde_json::Value::Object(map)
    }
}

/// Frames per billed second of `fal-ai/longcat-video/image-to-video/720p`'s requested
/// frames (15 fps stage-1 frames).
pub const BILLING_FPS: f64 = 15.0;
/// USD per billed second of `fal-ai/longcat-video/image-to-video/720p`.
pub const USD_PER_SECOND: f64 = I2V_720P.usd_per_second;

/// Billed seconds of image-to-video/720p for `num_frames` stage-1 frames: `num_frames / 15`.
pub fn billable_seconds(num_frames: u32) -> f64 {
    PriceTable::default().billable_seconds(App::DEFAULT, num_frames)
}

/// Cost in USD of `seconds` billed seconds of image-to-video/720p: `0.025 * seconds`.
pub fn cost_usd(seconds: f64) -> f64 {
    USD_PER_SECOND * seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> App {
        App::from_id(id).unwrap()
    }

    #[test]
    fn default_request_costs_27_cents() {
        // 162 frames = 10.8 s = $0.27.
        assert!((billable_seconds(162) - 10.8).abs() < 1e-12);
        assert!((cost_usd(billable_seconds(162)) - 0.27).abs() < 1e-12);
        assert!((cost_usd(billable_seconds(15)) - 0.025).abs() < 1e-12);
        assert!((billable_seconds(961) - 64.066_666_666_666_67).abs() < 1e-9);
    }

    #[test]
    fn per_app_table_from_fal_pages() {
        let t = PriceTable::default();
        // 720p: 162 requested frames are 324 frames at 30 fps = 10.8 s.
        let t2v = app("fal-ai/longcat-video/text-to-video/720p");
        assert!((t.billable_seconds(t2v, 162) - 10.8).abs() < 1e-12);
        assert!((t.cost_usd(t2v, 162) - 0.432).abs() < 1e-12);
        // 480p: 162 frames at 15 fps = 10.8 s at $0.025.
        let i2v480 = app("fal-ai/longcat-video/image-to-video/480p");
        assert!((t.billable_seconds(i2v480, 162) - 10.8).abs() < 1e-12);
        assert!((t.cost_usd(i2v480, 162) - 0.27).abs() < 1e-12);
        for a in App::ALL {
            let p = t.price(a);
            assert_eq!(p.billing_fps, f64::from(a.native_fps()), "{a}");
            p.check().unwrap();
            if a.distilled {
                let base = App {
                    distilled: false,
                    ..a
                };
                assert!(t.cost_usd(a, 100) < t.cost_usd(base, 100), "{a} is cheaper");
            }
        }
        assert_eq!(t.to_json().as_object().unwrap().len(), 8);
    }

    #[test]
    fn prices_are_configurable_and_checked() {
        let mut t = PriceTable::default();
        let id = "fal-ai/longcat-video/distilled/text-to-video/480p";
        t.set(
            id,
            Price {
                usd_per_second: 0.5,
                billing_fps: 15.0,
            },
        )
        .unwrap();
        assert!((t.cost_usd(app(id), 30) - 1.0).abs() < 1e-12);
        assert!(t
            .set("fal-ai/nope", I2V_480P)
            .unwrap_err()
            .contains("unknown app"));
        let bad = Price {
            usd_per_second: -1.0,
            billing_fps: 15.0,
        };
        assert!(t.set(id, bad).unwrap_err().contains("usd_per_second"));
        let bad = Price {
            usd_per_second: 1.0,
            billing_fps: 0.0,
        };
        assert!(t.set(id, bad).unwrap_err().contains("billing_fps"));
    }
}
