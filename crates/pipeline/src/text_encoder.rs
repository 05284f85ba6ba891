//! Where the umT5 text encoder lives between jobs ([`TextEncoderPolicy`]).
//!
//! umT5-xxl is about 11.4 GB in bf16 and runs for well under a second per job, while the
//! DiT needs the device memory for minutes. [`ManagedTextEncoder`] holds the encoder
//! according to the policy: `resident` keeps it on the device, `offload` keeps its weights
//! in host RAM and uploads them for each job's prompts, `reload` drops them after encoding
//! and re-reads them (memory-mapped) for the next job.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use longcat_model::umt5::{Umt5Config, Umt5Encoder};

use crate::api::PipelineError;
use crate::components::Result;

/// Where the text encoder stays between jobs (defined in `longcat-core`, where the worker
/// settings parse it).
pub use longcat_core::TextEncoderPolicy;

/// [`TextEncoderPolicy::effective_on`] for a candle device.
pub trait EffectivePolicy {
    /// The policy that actually runs on `device`: offloading to host RAM from the CPU
    /// device would move nothing, so it is `resident` there.
    fn effective(self, device: &Device) -> Self;
}

impl EffectivePolicy for TextEncoderPolicy {
    fn effective(self, device: &Device) -> Self {
        self.effective_on(device.is_cpu())
    }
}

/// Opens the encoder's weights as a builder on a device (the memory-mapped checkpoint, or
/// the random weights of the tiny model): called again for every reload.
pub type WeightsOpener = Arc<dyn Fn(&Device) -> VarBuilder<'static> + Send + Sync>;

/// How to build the encoder: its config, dtype and weights.
#[derive(Clone)]
pub struct TextEncoderWeights {
    /// The encoder config.
    pub config: Umt5Config,
    /// Weight dtype (the encoder keeps its `wo` layers in f32 regardless).
    pub dtype: DType,
    /// The weights.
    pub open: WeightsOpener,
}

impl fmt::Debug for TextEncoderWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextEncoderWeights")
            .field("config", &self.config)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

impl TextEncoderWeights {
    /// Builds the encoder on `device`; also returns the bytes of its weights.
    pub fn build(&self, device: &Device) -> Result<(Umt5Encoder, usize)> {
        let (encoder, bytes, _) =
            build_recorded(&self.config, (self.open)(device), self.dtype, false)?;
        Ok((encoder, bytes))
    }

    /// Builds the encoder on the CPU and returns every tensor it requested, by name, as
    /// the encoder holds them (the host copy of `offload`).
    fn host_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let (encoder, _, seen) =
            build_recorded(&self.config, (self.open)(&Device::Cpu), self.dtype, true)?;
        drop(encoder);
        Ok(seen)
    }
}

/// Builds an encoder from `inner` in `dtype`, counting the bytes of every tensor it asked
/// for and, with `keep`, returning those tensors by name.
fn build_recorded(
    config: &Umt5Config,
    inner: VarBuilder<'static>,
    dtype: DType,
    keep: bool,
) -> Result<(Umt5Encoder, usize, HashMap<String, Tensor>)> {
    let device = inner.device().clone();
    let recorder = Arc::new(Recorder {
        inner,
        keep,
        bytes: AtomicUsize::new(0),
        seen: Mutex::new(HashMap::new()),
    });
    let vb = VarBuilder::from_backend(
        Box::new(SharedRecorder(Arc::clone(&recorder))),
        dtype,
        device,
    );
    let encoder = Umt5Encoder::new(config, vb)?;
    let seen = match recorder.seen.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    Ok((encoder, recorder.bytes.load(Ordering::Relaxed), seen))
}

/// Where the encoder's weights are now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// On the compute device, ready to encode.
    OnDevice,
    /// In host RAM only (`offload` between jobs).
    OnHost,
    /// Nowhere (`reload` between jobs).
    Released,
}

/// The umT5 encoder held according to a [`TextEncoderPolicy`].
pub struct ManagedTextEncoder {
    policy: TextEncoderPolicy,
    device: Device,
    weights: Option<TextEncoderWeights>,
    /// The encoder on the device and the bytes of its weights.
    on_device: Option<(Umt5Encoder, usize)>,
    /// `offload`: the weights in host RAM, by name, in the dtypes the encoder uses.
    host: Option<HashMap<String, Tensor>>,
}

impl fmt::Debug for ManagedTextEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedTextEncoder")
            .field("policy", &self.policy)
            .field("residency", &self.residency())
            .finish_non_exhaustive()
    }
}

fn tensor_bytes<'a>(ts: impl IntoIterator<Item = &'a Tensor>) -> usize {
    ts.into_iter()
        .map(|t| t.elem_count() * t.dtype().size_in_bytes())
        .sum()
}

impl ManagedTextEncoder {
    /// An already built encoder that stays where it is (`resident`; its bytes are not
    /// known, [`Self::device_bytes`] reports 0).
    pub fn resident(encoder: Umt5Encoder, device: Device) -> Self {
        Self {
            policy: TextEncoderPolicy::Resident,
            device,
            weights: None,
            on_device: Some((encoder, 0)),
            host: None,
        }
    }

    /// Builds the encoder under `policy` on `device` (see
    /// [`TextEncoderPolicy::effective`]). Every policy builds it once here, so missing or
    /// mis-shaped weights fail at startup: `resident` keeps it on the device, `offload`
    /// builds the host copy, `reload` drops it again.
    pub fn new(
        weights: TextEncoderWeights,
        policy: TextEncoderPolicy,
        device: Device,
    ) -> Result<Self> {
        Self::with_effective_policy(weights, policy.effective(&device), device)
    }

    fn with_effective_policy(
        weights: TextEncoderWeights,
        policy: TextEncoderPolicy,
        device: Device,
    ) -> Result<Self> {
        let (on_device, host) = match policy {
            TextEncoderPolicy::Resident => (Some(weights.build(&device)?), None),
            TextEncoderPolicy::Offload => (None, Some(weights.host_tensors()?)),
            TextEncoderPolicy::Reload => {
                drop(weights.build(&device)?);
                (None, None)
            }
        };
        Ok(Self {
            policy,
            device,
            weights: Some(weights),
            on_device,
            host,
        })
    }

    /// The policy in force (after [`TextEncoderPolicy::effective`]).
    pub fn policy(&self) -> TextEncoderPolicy {
        self.policy
    }

    /// Where the weights are now.
    pub fn residency(&self) -> Residency {
        match (&self.on_device, &self.host) {
            (Some(_), _) => Residency::OnDevice,
            (None, Some(_)) => Residency::OnHost,
            (None, None) => Residency::Released,
        }
    }

    /// Bytes of encoder weights on the compute device now.
    pub fn device_bytes(&self) -> usize {
        self.on_device.as_ref().map_or(0, |(_, bytes)| *bytes)
    }

    /// Bytes of the host copy (`offload` on a GPU; 0 otherwise).
    pub fn host_bytes(&self) -> usize {
        self.host.as_ref().map_or(0, |h| tensor_bytes(h.values()))
    }

    /// Puts the encoder on the device (upload of the host copy, or a re-read of the
    /// weights) and returns it.
    pub fn acquire(&mut self) -> Result<&Umt5Encoder> {
        if self.on_device.is_none() {
            let encoder = match (&self.host, &self.weights) {
                (Some(host), Some(w)) => {
                    let vb = VarBuilder::from_tensors(host.clone(), w.dtype, &self.device);
                    let (encoder, bytes, _) = build_recorded(&w.config, vb, w.dtype, false)?;
                    (encoder, bytes)
                }
                (None, Some(w)) => w.build(&self.device)?,
                (_, None) => {
                    return Err(PipelineError::Model(
                        longcat_model::ModelError::InvalidArgument(
                            "the text encoder was released and has no weights to reload".into(),
                        ),
                    ))
                }
            };
            self.on_device = Some(encoder);
        }
        self.loaded()
    }

    /// The encoder, when it is on the device.
    pub fn loaded(&self) -> Result<&Umt5Encoder> {
        self.on_device.as_ref().map(|(e, _)| e).ok_or_else(|| {
            PipelineError::Model(longcat_model::ModelError::InvalidArgument(
                "the text encoder is not on the device (acquire it before encoding)".into(),
            ))
        })
    }

    /// Frees the device copy unless the policy is `resident`.
    pub fn release(&mut self) {
        if self.policy != TextEncoderPolicy::Resident {
            self.on_device = None;
        }
    }
}

/// A builder backend that forwards to another builder, counts the bytes it returned and,
/// with `keep`, keeps the tensors.
struct Recorder {
    inner: VarBuilder<'static>,
    keep: bool,
    bytes: AtomicUsize,
    seen: Mutex<HashMap<String, Tensor>>,
}

impl Recorder {
    fn note(&self, name: &str, t: &Tensor) {
        let bytes = t.elem_count() * t.dtype().size_in_bytes();
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.keep {
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(name.to_string(), t.clone());
            }
        }
    }
}

struct SharedRecorder(Arc<Recorder>);

impl SimpleBackend for SharedRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self
            .0
            .inner
            .get_with_hints_dtype(s, name, h, dtype)?
            .to_device(dev)?;
        self.0.note(name, &t);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .0
            .inner
            .get_unchecked_dtype(name, dtype)?
            .to_device(dev)?;
        self.0.note(name, &t);
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.inner.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny;

    fn encode(te: &ManagedTextEncoder) -> Vec<u32> {
        let ids = Tensor::new(&[[5u32, 9, 3, 1, 0, 0]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1i64, 1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
        let out = te.loaded().unwrap().forward(&ids, &mask).unwrap();
        let v = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn parses_and_prints_every_policy() {
        for p in TextEncoderPolicy::ALL {
            assert_eq!(p.name().parse::<TextEncoderPolicy>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert!("gpu".parse::<TextEncoderPolicy>().is_err());
        assert_eq!(
            TextEncoderPolicy::Offload.effective(&Device::Cpu),
            TextEncoderPolicy::Resident
        );
        assert_eq!(
            TextEncoderPolicy::Reload.effective(&Device::Cpu),
            TextEncoderPolicy::Reload
        );
    }

    /// The offload mechanics (host copy, upload, release), forced on the CPU device where
    /// the policy itself is a no-op: same bits as resident, nothing held on the "device"
    /// after release, and the host copy is exactly the encoder's weights.
    #[test]
    fn offload_and_reload_release_and_restore_the_same_encoder() {
        let w = || tiny::text_encoder_weights(DType::F32);
        let resident =
            ManagedTextEncoder::new(w(), TextEncoderPolicy::Resident, Device::Cpu).unwrap();
        let want = encode(&resident);
        let full = resident.device_bytes();
        assert!(full > 0);

        let mut off =
            ManagedTextEncoder::with_effective_policy(w(), TextEncoderPolicy::Offload, Device::Cpu)
                .unwrap();
        assert_eq!(off.residency(), Residency::OnHost);
        assert_eq!(off.device_bytes(), 0);
        assert_eq!(
            off.host_bytes(),
            full,
            "the host copy is the whole encoder, once"
        );
        assert!(off.loaded().is_err(), "released encoders refuse to encode");
        for _ in 0..2 {
            off.acquire().unwrap();
            assert_eq!(off.residency(), Residency::OnDevice);
            assert_eq!(off.device_bytes(), full);
            assert_eq!(encode(&off), want);
            off.release();
            assert_eq!(off.residency(), Residency::OnHost);
            assert_eq!(off.device_bytes(), 0);
        }

        let mut reload =
            ManagedTextEncoder::new(w(), TextEncoderPolicy::Reload, Device::Cpu).unwrap();
        assert_eq!(reload.residency(), Residency::Released);
        reload.acquire().unwrap();
        assert_eq!(encode(&reload), want);
        reload.release();
        assert_eq!((reload.device_bytes(), reload.host_bytes()), (0, 0));

        let mut kept = resident;
        kept.release();
        assert_eq!(kept.residency(), Residency::OnDevice, "resident stays");
    }
}
