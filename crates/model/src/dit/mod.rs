//! The LongCat-Video DiT (`LongCatVideoTransformer3DModel`).
//!
//! Tokens are the 1x2x2 patches of the latent in (T, H, W) raster order. Each block applies
//! per-frame adaLN, 3D-RoPE self-attention, cross-attention to the projected text and a
//! SwiGLU FFN. Condition frames (image-to-video, continuation) attend only among themselves
//! and skip cross-attention; their keys/values can be cached once ([`DitKvCache`]).

pub mod attend;
pub mod block;
pub mod config;
pub mod embed;
pub mod layers;
mod lora_slots;
pub mod random;
pub mod rope;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use attend::{AttnOutput, SelfAttnBackend};
pub use block::{BlockKv, TextContext};
pub use config::DitConfig;

use crate::bsa::BsaParams;
use crate::error::{ModelError, Result};
use block::{mask_bias, Block, BlockArgs};
use embed::{unpatchify, CaptionEmbedder, FinalLayer, PatchEmbed, TimestepEmbedder};
use rope::RopeCache;

/// Intermediate tensors of one forward, for parity checks.
#[derive(Debug, Clone, Default)]
pub struct DitTrace {
    /// Patch embedding `[B, N, hidden]`.
    pub x_embedder: Option<Tensor>,
    /// Timestep embedding `[B*T, Ct]` (f32).
    pub t_embedder: Option<Tensor>,
    /// Caption projection `[B, 1, L, hidden]` before zero padding.
    pub y_embedder: Option<Tensor>,
    /// Hidden states after each block `[B, N, hidden]`.
    pub blocks: Vec<Tensor>,
    /// Final layer output before unpatchify `[B, N, patch*out]` (f32).
    pub final_layer: Option<Tensor>,
    /// Per block: block sparse attention masks `[B, heads, n_q_blocks, n_k_blocks]` (u8)
    /// labelled `""` (single call) or `"cond"` / `"noise"` (condition mode); empty when
    /// dense attention ran.
    pub bsa_masks: Vec<Vec<(String, Tensor)>>,
}

/// Keys/values of clean condition latents for every block (see [`LongCatDit::cache_condition`]).
#[derive(Debug, Clone)]
pub struct DitKvCache {
    /// Number of condition latent frames the cache covers.
    pub num_cond_latents: usize,
    /// Token grid height/width the cache was computed for.
    pub grid_hw: [usize; 2],
    /// One entry per block.
    pub blocks: Vec<BlockKv>,
}

/// Text conditioning as the DiT receives it.
#[derive(Debug, Clone, Copy)]
pub struct TextInput<'a> {
    /// `[B, 1, L, caption_channels]` encoder states.
    pub states: &'a Tensor,
    /// Optional `[B, L]` mask (1 = real token).
    pub mask: Option<&'a Tensor>,
}

/// The DiT.
#[derive(Debug, Clone)]
pub struct LongCatDit {
    cfg: DitConfig,
    x_embedder: PatchEmbed,
    t_embedder: TimestepEmbedder,
    y_embedder: CaptionEmbedder,
    blocks: Vec<Block>,
    final_layer: FinalLayer,
    backend: SelfAttnBackend,
    loras: lora_slots::LoraSlots,
    /// RoPE tables of the last grids, built on `device`.
    rope_cache: RopeCache,
    /// Where merged LoRA layers re-read their original weights.
    weight_source: lora_slots::WeightSource,
    device: Device,
    dtype: DType,
}

struct RunArgs<'a> {
    text: Option<TextInput<'a>>,
    num_cond: usize,
    cache: Option<&'a DitKvCache>,
    want_kv: bool,
}

impl LongCatDit {
    /// Builds the model from official state-dict names under `vb`. The builder is kept to
    /// restore weights after merged LoRAs (re-read, not copied; see [`Self::disable_loras`]).
    pub fn new(cfg: DitConfig, vb: VarBuilder<'static>) -> Result<Self> {
        cfg.validate()?;
        let c = cfg.hidden_size;
        let patch: usize = cfg.patch_size.iter().product();
        let x_embedder = PatchEmbed::load(&vb, cfg.patch_size, cfg.in_channels, c)?;
        let t_embedder =
            TimestepEmbedder::load(&vb, cfg.frequency_embedding_size, cfg.adaln_tembed_dim)?;
        let y_embedder = CaptionEmbedder::load(&vb, cfg.caption_channels, c)?;
        let blocks = (0..cfg.depth)
            .map(|i| Block::load(&vb, &cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let final_layer = FinalLayer::load(&vb, c, patch * cfg.out_channels, cfg.adaln_tembed_dim)?;
        let backend = match (&cfg.bsa_params, cfg.enable_bsa) {
            (Some(p), true) => SelfAttnBackend::BlockSparse(p.clone()),
            _ => SelfAttnBackend::Dense,
        };
        Ok(Self {
            x_embedder,
            t_embedder,
            y_embedder,
            blocks,
            final_layer,
            backend,
            loras: Default::default(),
            rope_cache: RopeCache::default(),
            device: vb.device().clone(),
            dtype: vb.dtype(),
            weight_source: lora_slots::WeightSource(vb),
            cfg,
        })
    }

    /// Loads the weights from safetensors files (e.g. the shards of `dit/`), memory-mapped
    /// and converted tensor by tensor to `dtype` on `device`.
    pub fn load(
        cfg: DitConfig,
        files: &[impl AsRef<Path>],
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let paths: Vec<&Path> = files.iter().map(AsRef::as_ref).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(ModelError::NotACheckpoint {
                path: missing.to_path_buf(),
                reason: "weights file not found".into(),
            });
        }
        // SAFETY: the files are mapped read-only; like every safetensors loader we rely on
        // them not being modified while the model is being built (tensors are copied out).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&paths, dtype, device)? };
        Self::new(cfg, vb)
    }

    /// Loads an official `dit/` directory: `config.json` plus every `*.safetensors` shard.
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let cfg = DitConfig::from_file(&dir.join("config.json"))?;
        let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ModelError::NotACheckpoint {
                path: dir.to_path_buf(),
                reason: "no *.safetensors files".into(),
            });
        }
        Self::load(cfg, &files, device, dtype)
    }

    /// A model with deterministic random weights (benchmarks, the built-in tiny model).
    pub fn random(cfg: DitConfig, seed: u64, device: &Device, dtype: DType) -> Result<Self> {
        Self::new(cfg, crate::random::random_var_builder(seed, dtype, device))
    }

    /// A DiT with random weights drawn on `device` by its own generator (fast at full size on
    /// a GPU; not reproducible across devices): for benchmarks.
    pub fn random_on_device(cfg: DitConfig, device: &Device, dtype: DType) -> Result<Self> {
        Self::new(cfg, crate::random::device_random_var_builder(dtype, device))
    }

    /// The configuration.
    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Switches between zeroing padded text tokens (official) and dropping them.
    pub fn set_text_tokens_zero_pad(&mut self, on: bool) {
        self.cfg.text_tokens_zero_pad = on;
    }

    /// Routes self-attention through block sparse attention with `params`.
    pub fn enable_bsa(&mut self, params: BsaParams) {
        self.backend = SelfAttnBackend::BlockSparse(params);
    }

    /// Grids `[T, H, W]` whose RoPE tables are cached on the device, most recent first.
    pub fn cached_rope_grids(&self) -> Vec<[usize; 3]> {
        self.rope_cache.grids()
    }

    /// Back to dense self-attention.
    pub fn disable_bsa(&mut self) {
        self.backend = SelfAttnBackend::Dense;
    }

    /// The current self-attention backend.
    pub fn attention_backend(&self) -> &SelfAttnBackend {
        &self.backend
    }

    /// Full forward. `x` `[B, C, T, H, W]`; `timestep` `[B]` or `[B, T]` (0..1000 scale);
    /// the first `num_cond_latents` frames are clean condition frames. Returns f32
    /// `[B, out_channels, T, H, W]`.
    pub fn forward(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        text: TextInput,
        num_cond_latents: usize,
    ) -> Result<Tensor> {
        self.forward_traced(x, timestep, text, num_cond_latents, None)
    }

    /// [`Self::forward`] recording intermediates into `trace`.
    pub fn forward_traced(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        text: TextInput,
        num_cond_latents: usize,
        trace: Option<&mut DitTrace>,
    ) -> Result<Tensor> {
        let args = RunArgs {
            text: Some(text),
            num_cond: num_cond_latents,
            cache: None,
            want_kv: false,
        };
        Ok(self.run(x, timestep, &args, trace)?.0)
    }

    /// Caches keys/values of clean condition latents `[B, C, Tc, H, W]` (timestep 0, no
    /// cross-attention), as the official `_cache_clean_latents`.
    pub fn cache_condition(&self, cond_latents: &Tensor) -> Result<DitKvCache> {
        let (b, _, t, h, w) = cond_latents.dims5()?;
        let timestep = Tensor::zeros((b, t), DType::F32, &self.device)?;
        let args = RunArgs {
            text: None,
            num_cond: 0,
            cache: None,
            want_kv: true,
        };
        let (_, blocks) = self.run(cond_latents, &timestep, &args, None)?;
        Ok(DitKvCache {
            num_cond_latents: t,
            grid_hw: [h / self.cfg.patch_size[1], w / self.cfg.patch_size[2]],
            blocks,
        })
    }

    /// Forward over noise latents `[B, C, T, H, W]` only, attending to the cached condition
    /// (RoPE positions continue after the condition frames). `timestep` `[B]` or `[B, T]`.
    pub fn forward_cached(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        text: TextInput,
        cache: &DitKvCache,
    ) -> Result<Tensor> {
        let args = RunArgs {
            text: Some(text),
            num_cond: cache.num_cond_latents,
            cache: Some(cache),
            want_kv: false,
        };
        Ok(self.run(x, timestep, &args, None)?.0)
    }

    fn text_context(&self, text: TextInput, trace: Option<&mut DitTrace>) -> Result<TextContext> {
        let (b, one, l, _) = text.states.dims4()?;
        let y = self.y_embedder.forward(text.states)?;
        if let Some(tr) = trace {
            tr.y_embedder = Some(y.clone());
        }
        let mut y = y.reshape((b * one, l, self.cfg.hidden_size))?;
        let bias = match text.mask {
            None => None,
            Some(mask) => {
                let mask = mask.reshape((b, l))?;
                if self.cfg.text_tokens_zero_pad {
                    let m = mask.to_dtype(y.dtype())?.reshape((b, l, 1))?;
                    y = y.broadcast_mul(&m)?;
                    None
                } else {
                    Some(mask_bias(&mask)?)
                }
            }
        };
        Ok(TextContext { y, bias })
    }

    fn run(
        &self,
        x: &Tensor,
        timestep: &Tensor,
        args: &RunArgs,
        mut trace: Option<&mut DitTrace>,
    ) -> Result<(Tensor, Vec<BlockKv>)> {
        let (b, _, t, h, w) = x.dims5()?;
        let [_, ph, pw] = self.cfg.patch_size;
        let grid = [t, h / ph, w / pw];
        // The reference casts timesteps to the weight dtype before the f32 embedding.
        let timestep = timestep.to_dtype(self.dtype)?.to_dtype(DType::F32)?;
        let timestep = match timestep.rank() {
            1 => timestep
                .reshape((b, 1))?
                .broadcast_as((b, t))?
                .contiguous()?,
            _ => timestep.reshape((b, t))?,
        };
        let mut hs = self.x_embedder.forward(x)?;
        let t_flat = self.t_embedder.forward(&timestep.flatten_all()?)?;
        if let Some(tr) = trace.as_deref_mut() {
            tr.x_embedder = Some(hs.clone());
            tr.t_embedder = Some(t_flat.clone());
        }
        let t_emb = t_flat.reshape((b, t, self.cfg.adaln_tembed_dim))?;
        let text = match args.text {
            Some(text) => Some(self.text_context(text, trace.as_deref_mut())?),
            None => None,
        };
        let rope_frames = match args.cache {
            Some(c) => {
                if c.grid_hw != [grid[1], grid[2]] || c.blocks.len() != self.blocks.len() {
                    return Err(ModelError::InvalidArgument(format!(
                        "KV cache for grid {:?} with {} blocks does not fit grid {:?} with {} blocks",
                        c.grid_hw,
                        c.blocks.len(),
                        grid,
                        self.blocks.len()
                    )));
                }
                t + c.num_cond_latents
            }
            None => {
                if args.num_cond > t {
                    return Err(ModelError::InvalidArgument(format!(
                        "num_cond_latents {} exceeds the {t} latent frames",
                        args.num_cond
                    )));
                }
                t
            }
        };
        let rope = self.rope_cache.get(
            self.cfg.head_dim(),
            [rope_frames, grid[1], grid[2]],
            &self.device,
        )?;
        let mut kvs = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let bargs = BlockArgs {
                t_emb: &t_emb,
                text: text.as_ref(),
                grid,
                num_cond: args.num_cond,
                rope: &rope,
                cache: args.cache.map(|c| &c.blocks[i]),
                want_kv: args.want_kv,
                backend: &self.backend,
                record_bsa: trace.is_some(),
            };
            let out = block.forward(&hs, &bargs)?;
            hs = out.hidden;
            if let Some(kv) = out.kv {
                kvs.push(kv);
            }
            if let Some(tr) = trace.as_deref_mut() {
                tr.blocks.push(hs.clone());
                tr.bsa_masks.push(out.bsa_masks);
            }
        }
        if args.want_kv {
            return Ok((hs, kvs));
        }
        let out = self.final_layer.forward(&hs, &t_emb)?;
        if let Some(tr) = trace {
            tr.final_layer = Some(out.clone());
        }
        let out = unpatchify(&out, grid, self.cfg.patch_size, self.cfg.out_channels)?;
        Ok((out.to_dtype(DType::F32)?, kvs))
    }
}

#[cfg(test)]
mod tests;
