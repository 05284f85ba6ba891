//! The causal caches: the last input frames of each causal convolution, carried from one
//! chunk to the next.

use candle_core::Tensor;

use crate::conv3d::{CausalConv3d, ConvRun};
use crate::Result;

/// Frames each causal convolution keeps from the previous chunk.
pub(super) const CACHE_T: usize = 2;

/// One cache slot: nothing yet, the upsampler's "first chunk seen" marker, or frames.
#[derive(Debug, Clone, Default)]
pub(super) enum Slot {
    #[default]
    Empty,
    Rep,
    Frames(Tensor),
}

/// Per-layer state carried between chunks (slots are handed out in call order), and the
/// band budget of the convolutions.
#[derive(Debug, Default)]
pub struct FeatCache {
    pub(super) slots: Vec<Slot>,
    idx: usize,
    pub(super) run: ConvRun,
}

impl FeatCache {
    pub(super) fn with_run(run: ConvRun) -> Self {
        Self {
            slots: Vec::new(),
            idx: 0,
            run,
        }
    }

    /// Starts the next chunk (slot order restarts, contents are kept).
    pub(super) fn rewind(&mut self) {
        self.idx = 0;
    }

    /// Index of the next slot.
    pub(super) fn next(&mut self) -> usize {
        if self.idx == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.idx += 1;
        self.idx - 1
    }

    pub(super) fn take(&mut self, i: usize) -> Slot {
        std::mem::take(&mut self.slots[i])
    }

    pub(super) fn conv(
        &mut self,
        conv: &CausalConv3d,
        x: &Tensor,
        past: Option<&Tensor>,
    ) -> Result<Tensor> {
        conv.forward_run(x, past, &mut self.run)
    }
}

pub(super) fn last_frames(x: &Tensor, n: usize) -> Result<Tensor> {
    let t = x.dim(1)?;
    let n = n.min(t);
    Ok(x.narrow(1, t - n, n)?.copy()?)
}

/// Runs a causal conv on `x`, using and refreshing one cache slot.
pub(super) fn cached_conv(
    conv: &CausalConv3d,
    x: &Tensor,
    cache: &mut FeatCache,
) -> Result<Tensor> {
    let slot = cache.next();
    let past = match cache.take(slot) {
        Slot::Frames(p) => Some(p),
        _ => None,
    };
    let mut keep = last_frames(x, CACHE_T)?;
    if keep.dim(1)? < CACHE_T {
        if let Some(p) = &past {
            keep = Tensor::cat(&[&last_frames(p, 1)?, &keep], 1)?;
        }
    }
    let y = cache.conv(conv, x, past.as_ref())?;
    cache.slots[slot] = Slot::Frames(keep);
    Ok(y)
}
