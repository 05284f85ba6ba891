//! What a stage reports while it runs: per-step callbacks, cancellation, and an optional
//! trace of intermediate tensors (named as in the goldens) for parity tests.

use candle_core::Tensor;

use crate::api::CancelToken;
use crate::components::Result;

/// Receives named intermediate tensors (`step0.dit_output`, `output.final_latents`, …).
pub trait Trace {
    /// Whether recording is wanted (lets stages skip extra work).
    fn enabled(&self) -> bool {
        true
    }
    /// Records one tensor.
    fn record(&mut self, name: &str, value: &Tensor);
}

/// A trace that keeps nothing.
pub struct NoTrace;

impl Trace for NoTrace {
    fn enabled(&self) -> bool {
        false
    }
    fn record(&mut self, _name: &str, _value: &Tensor) {}
}

/// A trace that keeps every tensor by name.
#[derive(Default)]
pub struct MapTrace(pub std::collections::BTreeMap<String, Tensor>);

impl Trace for MapTrace {
    fn record(&mut self, name: &str, value: &Tensor) {
        self.0.insert(name.to_string(), value.clone());
    }
}

/// Callbacks a denoising loop calls.
pub struct Hooks<'a> {
    /// Checked before every step.
    pub cancel: &'a CancelToken,
    /// Called after every step with `(steps done, total steps)`.
    pub on_step: &'a mut dyn FnMut(u32, u32),
    /// Intermediate tensors.
    pub trace: &'a mut dyn Trace,
}

impl Hooks<'_> {
    /// Records `value` under `name` when tracing.
    pub fn record(&mut self, name: &str, value: &Tensor) {
        if self.trace.enabled() {
            self.trace.record(name, value);
        }
    }

    /// `Err(Cancelled)` once the job is cancelled.
    pub fn check_cancel(&self) -> Result<()> {
        Ok(self.cancel.check()?)
    }
}
