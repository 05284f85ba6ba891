//! LoRA registry of the DiT: named LoRA files, enabled by name with multipliers, applied
//! unmerged (output deltas) or merged into the weights. Merged weights are restored by
//! re-reading the originals from the [`WeightSource`] the model was built from (the
//! memory-mapped checkpoint), so no second copy of the weights is ever held.

use std::collections::BTreeMap;
use std::path::Path;

use candle_nn::VarBuilder;

use super::layers::DitLinear;
use super::LongCatDit;
use crate::error::{ModelError, Result};
use crate::lora::{LoraAdapter, LoraMode, LoraWeights};

/// Registered LoRAs and which are active.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoraSlots {
    registered: BTreeMap<String, LoraWeights>,
    active: Vec<(String, f64)>,
    mode: LoraMode,
}

/// The builder the DiT's weights were loaded from, kept to re-read original weights when
/// merged LoRAs are cleared. For memory-mapped checkpoints and the random model this holds
/// no tensor data (an in-memory builder such as a `VarMap` keeps its own tensors anyway).
#[derive(Clone)]
pub(crate) struct WeightSource(pub(crate) VarBuilder<'static>);

impl std::fmt::Debug for WeightSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightSource")
            .field("dtype", &self.0.dtype())
            .finish_non_exhaustive()
    }
}

impl LongCatDit {
    pub(crate) fn linears_mut(&mut self) -> Vec<&mut DitLinear> {
        let mut out: Vec<&mut DitLinear> = Vec::new();
        out.extend(self.t_embedder.linears_mut());
        out.extend(self.y_embedder.linears_mut());
        for b in &mut self.blocks {
            out.extend(b.linears_mut());
        }
        out.extend(self.final_layer.linears_mut());
        out
    }

    /// Registers a LoRA under `name` (replacing one of the same name; active LoRAs are
    /// re-applied).
    pub fn register_lora(&mut self, name: &str, weights: LoraWeights) -> Result<()> {
        self.loras.registered.insert(name.to_string(), weights);
        if self.loras.active.iter().any(|(n, _)| n == name) {
            let active = self.loras.active.clone();
            let mode = self.loras.mode;
            self.enable_loras(&active, mode)?;
        }
        Ok(())
    }

    /// Loads an official LoRA safetensors file and registers it under `name`.
    pub fn load_lora(&mut self, name: &str, path: &Path) -> Result<()> {
        let weights = LoraWeights::load(path, &self.device, self.dtype)?;
        self.register_lora(name, weights)
    }

    /// Names of the registered LoRAs.
    pub fn lora_names(&self) -> Vec<String> {
        self.loras.registered.keys().cloned().collect()
    }

    /// The active LoRAs with their multipliers.
    pub fn active_loras(&self) -> &[(String, f64)] {
        &self.loras.active
    }

    /// Enables exactly these registered LoRAs (name, multiplier), disabling all others; their
    /// deltas add up. On error no LoRA stays active.
    pub fn enable_loras(&mut self, loras: &[(String, f64)], mode: LoraMode) -> Result<()> {
        self.disable_loras()?;
        let result = self.apply_loras(loras, mode);
        if result.is_err() {
            self.disable_loras()?;
        }
        result
    }

    fn apply_loras(&mut self, loras: &[(String, f64)], mode: LoraMode) -> Result<()> {
        let mut per_layer: BTreeMap<String, Vec<LoraAdapter>> = BTreeMap::new();
        for (name, multiplier) in loras {
            let weights = self.loras.registered.get(name).ok_or_else(|| {
                ModelError::InvalidArgument(format!("no LoRA registered as `{name}`"))
            })?;
            for (path, layer) in &weights.layers {
                per_layer
                    .entry(path.clone())
                    .or_default()
                    .push(LoraAdapter::new(layer.clone(), *multiplier));
            }
        }
        let mut linears = self.linears_mut();
        for (path, adapters) in per_layer {
            let lin = linears.iter_mut().find(|l| l.path == path).ok_or_else(|| {
                ModelError::InvalidArgument(format!("LoRA targets unknown layer `{path}`"))
            })?;
            for a in adapters {
                a.check_fits(&path, lin.in_dim(), lin.out_dim())?;
                match mode {
                    LoraMode::Unmerged => lin.push_adapter(a),
                    LoraMode::Merged => lin.merge_adapter(&a)?,
                    LoraMode::Fused => lin.push_fused_adapter(a),
                }
            }
        }
        self.loras.active = loras.to_vec();
        self.loras.mode = mode;
        Ok(())
    }

    /// Disables every LoRA. Merged layers get their original weights back, re-read from
    /// the weights the model was built from (bit for bit the loaded values). On error the
    /// layers not yet restored stay merged and the LoRAs stay listed as active.
    pub fn disable_loras(&mut self) -> Result<()> {
        let source = self.weight_source.0.clone();
        for l in self.linears_mut() {
            l.clear_adapters(&source)?;
        }
        self.loras.active.clear();
        Ok(())
    }

    /// Bytes of every tensor the DiT's linear layers hold (weights, biases, unmerged LoRA
    /// factors): the same with LoRAs merged as without, since no original is kept. (Takes
    /// `&mut self` only to walk the layers.)
    pub fn linear_weight_bytes(&mut self) -> usize {
        self.linears_mut().iter().map(|l| l.held_bytes()).sum()
    }

    /// Bytes of the registered LoRA factors.
    pub fn lora_bytes(&self) -> usize {
        self.loras
            .registered
            .values()
            .map(LoraWeights::held_bytes)
            .sum()
    }
}
