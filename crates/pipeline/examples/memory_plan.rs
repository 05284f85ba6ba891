//! Prints the device-memory table of docs/memory.md: bytes on the device per component at
//! each stage of the fal default job (93 frames, stage 1 at 480×832 with CFG, refinement
//! at 704×1280), computed from the official configs.
//!
//! Weights are counted by building our modules at the real configs over the shape-only
//! recording backend of `checkpoint::verify` (zero-stride tensors, nothing allocated for the
//! DiT and umT5) and adding up the size of every tensor a module asks for, in its dtype. LoRA sizes come
//! from the official target lists at rank 128; activations from the shapes of each stage.
//!
//! `cargo run -p longcat-pipeline --example memory_plan`

use std::collections::BTreeSet;

use candle_core::DType;
use candle_nn::VarBuilder;
use longcat_model::checkpoint::verify::record_requests;
use longcat_model::dit::{DitConfig, LongCatDit};
use longcat_model::umt5::{Umt5Config, Umt5Encoder};
use longcat_model::vae::{VaeConfig, WanVae};

/// Bytes of every tensor `build` requests, in the dtype it requests (the shape-only recording
/// that `longcat weights check` uses; nothing is allocated).
fn count<T>(
    dtype: DType,
    build: impl FnOnce(VarBuilder<'static>) -> longcat_model::Result<T>,
) -> usize {
    match record_requests(BTreeSet::new(), dtype, build) {
        Ok((_, requests)) => requests
            .iter()
            .map(|r| r.shape.iter().product::<usize>() * r.dtype.size_in_bytes())
            .sum(),
        Err(e) => panic!("building at the real config failed: {e}"),
    }
}

/// The official DiT config (docs: spec §2.1), one device (`cp_split_hw` [1, 1]).
fn dit_config() -> DitConfig {
    DitConfig::from_value(&serde_json::json!({
        "in_channels": 16, "out_channels": 16, "hidden_size": 4096, "depth": 48,
        "num_heads": 32, "caption_channels": 4096, "mlp_ratio": 4, "adaln_tembed_dim": 512,
        "frequency_embedding_size": 256, "patch_size": [1, 2, 2], "enable_bsa": false,
        "bsa_params": {"sparsity": 0.9375, "chunk_3d_shape_q": [4, 4, 4],
                       "chunk_3d_shape_k": [4, 4, 4]},
        "cp_split_hw": [1, 1], "text_tokens_zero_pad": true
    }))
    .expect("DiT config")
}

/// umT5-xxl (`text_encoder/config.json`).
fn umt5_config() -> Umt5Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
        "num_heads": 64, "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": "gated-gelu"
    }))
    .expect("umT5 config")
}

/// LoRA parameters at `rank` for (in, out, up blocks) targets.
fn lora_params(targets: &[(usize, usize, usize)], rank: usize) -> usize {
    targets
        .iter()
        .map(|&(i, o, n)| n * rank * i + o * rank)
        .sum()
}

const GB: f64 = 1e9;
const BF16: usize = 2;
const F32: usize = 4;

fn main() {
    let dit_cfg = dit_config();
    let (c, f, td, depth) = (
        dit_cfg.hidden_size,
        dit_cfg.ffn_hidden(),
        dit_cfg.adaln_tembed_dim,
        dit_cfg.depth,
    );
    let dit = count(DType::BF16, |vb| LongCatDit::new(dit_cfg.clone(), vb));
    let umt5 = count(DType::BF16, |vb| Umt5Encoder::new(&umt5_config(), vb));
    let vae = count(DType::BF16, |vb| WanVae::new(&VaeConfig::default(), vb));

    // LoRA targets (spec §2.9), rank 128, bf16 on the device.
    let block = [
        (c, 3 * c, 3),
        (c, c, 1),
        (c, c, 1),
        (c, 2 * c, 2),
        (c, f, 1),
        (f, c, 1),
        (c, f, 1),
    ];
    let cfg_step: Vec<_> = (0..depth).flat_map(|_| block).collect();
    let mut refine = cfg_step.clone();
    refine.extend((0..depth).map(|_| (td, 6 * c, 6)));
    refine.extend([(td, 2 * c, 2), (c, 64, 1)]);
    let lora_cfg = lora_params(&cfg_step, 128) * BF16;
    let lora_refine = lora_params(&refine, 128) * BF16;

    // Shapes of the job.
    let head = dit_cfg.head_dim();
    let (n1, b1) = (24 * 30 * 52, 2); // stage 1: 24 latents of 30×52 tokens, CFG batch 2
    let n2 = 52 * 44 * 80; // refinement: 4 + 48 latents of 44×80 tokens, batch 1
    let rope = |n: usize| n * head / 2 * F32 * 2; // cos + sin, f32
    let text_states = 2 * 512 * 4096 * F32; // positive + negative, f32 in the pipeline
                                            // The DiT's largest ops as block.rs runs them. The FFN works over token chunks of at most
                                            // 2^26 hidden elements: xm, the chunk outputs and their concatenation ([B, N, C] bf16
                                            // each) plus one chunk's w1(x), silu(.), w3(x) and product. The per-frame adaLN modulation
                                            // (layer norm in f32) goes over frame ranges of at most 2^26 elements: its bf16 input,
                                            // chunk outputs and their concatenation, plus one range's three f32 temporaries.
    let ffn = |b: usize, n: usize| 3 * b * n * c * BF16 + 4 * (b * n * f).min(1 << 26) * BF16;
    let modulate = |b: usize, n: usize| 3 * b * n * c * BF16 + 3 * (b * n * c).min(1 << 26) * F32;
    let dit_op = |b: usize, n: usize| ffn(b, n).max(modulate(b, n));
    // umT5 self-attention of one prompt: scores (bf16), f32 copy, softmax (f32), bf16 probs.
    let t5_attn = 64 * 512 * 512 * (BF16 + F32 + F32 + BF16);
    // VAE at 704×1280, chunk of 4 frames: the 2D upsampler's 192-channel nearest-upsampled
    // input and its 96-channel output, the largest feature maps of decode; encode's largest
    // is a 96-channel full-resolution resblock conv (input + output).
    let px = |h: usize, w: usize| h * w;
    let vae_dec = |h: usize, w: usize| 4 * px(h, w) * (192 + 96) * BF16;
    let vae_enc = |h: usize, w: usize| 4 * px(h, w) * (96 + 96) * BF16;
    // The stage-1 frames upsampled for refinement: [1, 3, 205, 704, 1280] f32 + bf16 copy.
    let refine_video = 3 * 205 * px(704, 1280) * (F32 + BF16);
    let lat1 = 16 * 24 * 60 * 104 * F32 * 2; // latents + velocity, f32
    let lat2 = 16 * 52 * 88 * 160 * F32 * 2;

    let stages = [
        "text encode",
        "stage 1 denoise (480×832, 37,440 tok, B=2)",
        "stage 1 decode (24 lat → 93 f, 480×832)",
        "refine encode (205 f, 704×1280)",
        "refine denoise (183,040 tok, B=1, BSA)",
        "final decode (52 lat → 205 f, 704×1280)",
    ];
    let te_offload = [umt5, 0, 0, 0, 0, 0];
    let te_resident = [umt5; 6];
    let rows: Vec<(&str, [usize; 6])> = vec![
        ("DiT weights (bf16)", [dit; 6]),
        (
            "LoRAs: cfg_step + refinement (bf16, r 128)",
            [lora_cfg + lora_refine; 6],
        ),
        ("umT5-xxl, `offload`/`reload` (bf16, `wo` f32)", te_offload),
        ("VAE weights (bf16)", [vae; 6]),
        (
            "RoPE tables (cached per grid)",
            [
                0,
                rope(n1),
                rope(n1),
                rope(n1),
                rope(n1) + rope(n2),
                rope(n1) + rope(n2),
            ],
        ),
        (
            "text states, latents, video tensors",
            [
                text_states,
                text_states + lat1,
                text_states + lat1,
                text_states + refine_video,
                text_states + lat2,
                lat2,
            ],
        ),
        (
            "activations of the largest op",
            [
                t5_attn,
                dit_op(b1, n1),
                vae_dec(480, 832),
                vae_enc(704, 1280),
                dit_op(1, n2),
                vae_dec(704, 1280),
            ],
        ),
    ];
    let gb = |b: usize| format!("{:.2}", b as f64 / GB);
    println!("| component | {} |", stages.join(" | "));
    println!("| --- |{}", " ---: |".repeat(stages.len()));
    let mut total = [0usize; 6];
    for (name, bytes) in &rows {
        for (t, b) in total.iter_mut().zip(bytes) {
            *t += b;
        }
        println!("| {name} | {} |", bytes.map(gb).join(" | "));
    }
    println!(
        "| **total, `offload`/`reload`** | {} |",
        total.map(|b| format!("**{}**", gb(b))).join(" | ")
    );
    let resident: Vec<String> = total
        .iter()
        .zip(te_resident.iter().zip(te_offload))
        .map(|(t, (r, o))| gb(t + r - o))
        .collect();
    println!("| total, `resident` | {} |", resident.join(" | "));
    println!();
    println!(
        "DiT {} params-bytes, umT5 {}, VAE {}, LoRA cfg_step {} ({} M params), refinement {} ({} M params); RoPE {} + {}",
        dit,
        umt5,
        vae,
        lora_cfg,
        lora_cfg / BF16 / 1_000_000,
        lora_refine,
        lora_refine / BF16 / 1_000_000,
        rope(n1),
        rope(n2)
    );
}
