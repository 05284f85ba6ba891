//! Deterministic random LoRA factors for a DiT (the weights themselves come from
//! [`crate::random`]).

use candle_core::{DType, Device, Shape, Tensor};

use super::DitConfig;
use crate::error::Result;
use crate::lora::{LoraKind, LoraWeights};
use crate::random::{fnv1a, RandomBackend};

/// Random LoRA factors in the official file layout for every layer a LoRA of `kind` targets
/// in a DiT of `cfg` (cfg_step: attention, cross-attention and FFN linears of every block;
/// refinement: those plus the adaLN modulations and the final linear). Fused layers get one
/// up block per output chunk, as the official files do. Deterministic in `seed`.
pub fn random_lora(
    cfg: &DitConfig,
    kind: LoraKind,
    rank: usize,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<LoraWeights> {
    let c = cfg.hidden_size;
    let f = cfg.ffn_hidden();
    let td = cfg.adaln_tembed_dim;
    let patch: usize = cfg.patch_size.iter().product();
    // (module path, in, out, up blocks)
    let mut targets: Vec<(String, usize, usize, usize)> = Vec::new();
    for i in 0..cfg.depth {
        let p = |s: &str| format!("blocks.{i}.{s}");
        targets.extend([
            (p("attn.qkv"), c, 3 * c, 3),
            (p("attn.proj"), c, c, 1),
            (p("cross_attn.q_linear"), c, c, 1),
            (p("cross_attn.kv_linear"), c, 2 * c, 2),
            (p("ffn.w1"), c, f, 1),
            (p("ffn.w2"), f, c, 1),
            (p("ffn.w3"), c, f, 1),
        ]);
        if kind == LoraKind::Refinement {
            targets.push((p("adaLN_modulation.1"), td, 6 * c, 6));
        }
    }
    if kind == LoraKind::Refinement {
        targets.push(("final_layer.adaLN_modulation.1".into(), td, 2 * c, 2));
        targets.push(("final_layer.linear".into(), c, patch * cfg.out_channels, 1));
    }
    let backend = RandomBackend {
        seed: seed ^ fnv1a(kind.file_name()),
    };
    let cpu = Device::Cpu;
    let mut tensors = std::collections::HashMap::new();
    for (path, in_dim, out_dim, blocks) in targets {
        let key = format!(
            "lora___lorahyphen___{}",
            path.replace('.', "___lorahyphen___")
        );
        let down_name = format!("{key}.lora_down.weight");
        let down = backend.draw(
            &Shape::from((blocks * rank, in_dim)),
            &down_name,
            DType::F32,
            &cpu,
        )?;
        tensors.insert(down_name, down);
        let ups: Vec<String> = if blocks == 1 {
            vec![format!("{key}.lora_up.weight")]
        } else {
            (0..blocks)
                .map(|j| format!("{key}.lora_up.blocks.{j}.weight"))
                .collect()
        };
        for name in ups {
            // Small up factors, so the LoRA perturbs the base model instead of replacing it.
            let up = (backend.draw(
                &Shape::from((out_dim / blocks, rank)),
                &name,
                DType::F32,
                &cpu,
            )? * 0.1)?;
            tensors.insert(name, up);
        }
        tensors.insert(format!("{key}.alpha_scale"), Tensor::new(0.5f32, &cpu)?);
    }
    let mut weights = LoraWeights::from_tensors(&tensors, "<random LoRA>", dtype)?;
    for layer in weights.layers.values_mut() {
        layer.down = layer.down.to_device(device)?;
        for up in &mut layer.ups {
            *up = up.to_device(device)?;
        }
    }
    Ok(weights)
}
