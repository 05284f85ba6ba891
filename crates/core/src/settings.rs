//! Model settings the worker settings carry and the model side honours, parsed here so the
//! web side can validate them without the model code.

use std::fmt;
use std::str::FromStr;

/// What happens to the text encoder's weights once a job's prompts are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoderPolicy {
    /// Stay on the device for the process's life (fastest; costs the encoder's size in
    /// device memory during every denoising step).
    Resident,
    /// Move to host RAM (a copy in the model dtype) and back to the device for the next
    /// job: one host-to-device copy per job, no disk reads. A no-op on the CPU device.
    #[default]
    Offload,
    /// Drop; re-read from the memory-mapped checkpoint for the next job (no host copy, a
    /// read of the stored file, fp32 for the official one, per job).
    Reload,
}

impl TextEncoderPolicy {
    /// Every policy, in the order the help text lists them.
    pub const ALL: [TextEncoderPolicy; 3] = [Self::Resident, Self::Offload, Self::Reload];

    /// The setting's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resident => "resident",
            Self::Offload => "offload",
            Self::Reload => "reload",
        }
    }

    /// The policy that actually runs on a device (`on_cpu`: the CPU device): offloading to
    /// host RAM from the CPU device would move nothing, so it is `resident` there.
    pub fn effective_on(self, on_cpu: bool) -> Self {
        match self {
            Self::Offload if on_cpu => Self::Resident,
            p => p,
        }
    }
}

impl fmt::Display for TextEncoderPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TextEncoderPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("bad text encoder policy '{s}' (expected resident, offload or reload)")
            })
    }
}

/// A VAE tiling that cannot be used (`tile` 0, `overlap ≥ tile`, or unparsable text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid argument: {0}")]
pub struct InvalidVaeTiling(pub String);

/// Spatial tiling of the VAE, in latent pixels (one latent pixel is `scale_spatial` = 8
/// video pixels): tiles of `tile × tile` latents, neighbours overlapping by `overlap`.
/// Written `TILE[,OVERLAP]` on the command line (overlap defaults to `TILE / 4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeTiling {
    /// Tile side in latent pixels (≥ 1).
    pub tile: usize,
    /// Overlap of neighbouring tiles in latent pixels (< `tile`).
    pub overlap: usize,
}

impl VaeTiling {
    /// Checks `1 ≤ tile` and `overlap < tile`.
    pub fn new(tile: usize, overlap: usize) -> Result<Self, InvalidVaeTiling> {
        if tile == 0 || overlap >= tile {
            return Err(InvalidVaeTiling(format!(
                "VAE tiling: tile {tile}, overlap {overlap} (need tile ≥ 1 and overlap < tile)"
            )));
        }
        Ok(Self { tile, overlap })
    }

    /// Tiles along an axis of `n` latent pixels: `(start, len)`, left to right. Tiles step
    /// by `tile − overlap`; the last one ends at the edge (it may overlap more). One tile
    /// of `n` when `n ≤ tile`.
    pub fn spans(&self, n: usize) -> Vec<(usize, usize)> {
        if n <= self.tile {
            return vec![(0, n)];
        }
        let stride = self.tile - self.overlap;
        let mut out = Vec::new();
        let mut start = 0;
        while start + self.tile < n {
            out.push((start, self.tile));
            start += stride;
        }
        out.push((n - self.tile, self.tile));
        out
    }

    /// Every tile of an `h × w` latent frame, rows then columns: `((y, th), (x, tw))`.
    pub fn tiles(&self, h: usize, w: usize) -> Vec<((usize, usize), (usize, usize))> {
        let xs = self.spans(w);
        self.spans(h)
            .into_iter()
            .flat_map(|y| xs.iter().map(move |&x| (y, x)))
            .collect()
    }
}

impl FromStr for VaeTiling {
    type Err = InvalidVaeTiling;

    /// `TILE` or `TILE,OVERLAP` in latent pixels; `TILE` alone overlaps by `TILE / 4`.
    fn from_str(s: &str) -> Result<Self, InvalidVaeTiling> {
        let bad = || {
            InvalidVaeTiling(format!(
                "VAE tiling {s:?}: expected TILE or TILE,OVERLAP in latent pixels (e.g. 32,8)"
            ))
        };
        let num = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
        match s.split_once(',') {
            Some((t, o)) => Self::new(num(t)?, num(o)?),
            None => {
                let tile = num(s)?;
                Self::new(tile, tile / 4)
            }
        }
    }
}

impl fmt::Display for VaeTiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.tile, self.overlap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_encoder_policy_on_cpu() {
        assert_eq!(
            TextEncoderPolicy::Offload.effective_on(true),
            TextEncoderPolicy::Resident
        );
        assert_eq!(
            TextEncoderPolicy::Offload.effective_on(false),
            TextEncoderPolicy::Offload
        );
        assert_eq!(
            TextEncoderPolicy::Reload.effective_on(true),
            TextEncoderPolicy::Reload
        );
    }
}
