//! `longcat weights check` on a full-size checkpoint written as sparse files (official
//! configs, names, shapes, dtypes and sharding; the tensor bytes are holes, so about 56 GB of
//! checkpoint take no disk), then on copies with one thing broken.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use longcat_model::checkpoint::verify::fixture::Fixture;

fn check(dir: &Path) -> (bool, String) {
    let out: Output = std::process::Command::new(env!("CARGO_BIN_EXE_longcat"))
        .args(["weights", "check"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn write(fx: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fx.write(dir.path()).unwrap();
    dir
}

/// Apparent size and disk use of every file under `dir`.
fn sizes(dir: &Path) -> (u64, u64) {
    let (mut apparent, mut used) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            let (a, u) = sizes(&p);
            apparent += a;
            used += u;
        } else {
            let m = std::fs::metadata(&p).unwrap();
            apparent += m.len();
            used += m.blocks() * 512;
        }
    }
    (apparent, used)
}

fn line<'a>(text: &'a str, component: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(component))
        .unwrap_or_else(|| panic!("no `{component}` line in:\n{text}"))
}

#[test]
fn full_size_checkpoint_passes() {
    let dir = write(&Fixture::official().unwrap());
    let (apparent, used) = sizes(dir.path());
    assert!(apparent > 55_000_000_000, "apparent size {apparent}");
    assert!(
        used < 50_000_000,
        "the fixture must be sparse; it uses {used} bytes"
    );

    let (ok, text) = check(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("OK:"), "{text}");
    // Figures of the published model (spec §§ 2.1, 6, 8): 1,022 DiT tensors, 13.58 B
    // parameters in bf16 (27.2 GB) in 6 shards; umT5-xxl 5.7 B fp32 (22.7 GB).
    let dit = line(&text, "dit");
    assert!(dit.contains(" 1022 tensors"), "{dit}");
    assert!(dit.contains("13,58"), "{dit}");
    assert!(
        dit.contains("BF16 x1022") && dit.contains("(6 files)"),
        "{dit}"
    );
    assert!(
        dit.contains("1022 entries in 6 shards, consistent"),
        "{dit}"
    );
    let te = line(&text, "text_encoder");
    assert!(
        te.contains(" 242 tensors") && te.contains("F32 x242"),
        "{te}"
    );
    assert!(te.contains("22.7"), "{te}");
    let vae = line(&text, "vae");
    assert!(vae.contains("(1 file)"), "{vae}");
    let refine = line(&text, "lora/refinement_lora.safetensors");
    assert!(
        refine.contains("rank 128, alpha_scale 0.5, 386 layers"),
        "{refine}"
    );
    assert!(refine.contains("final_layer.linear x1"), "{refine}");
    let distill = line(&text, "lora/cfg_step_lora.safetensors");
    assert!(
        distill.contains("rank 128, alpha_scale 0.5, 336 layers"),
        "{distill}"
    );
    assert!(distill.contains("blocks.*.attn.qkv x48"), "{distill}");
}

#[test]
fn removed_tensor_is_named_with_its_file() {
    let mut fx = Fixture::official().unwrap();
    let name = "blocks.17.ffn.w2.weight";
    let (f, t) = fx.find(name).unwrap();
    fx.files[f].tensors.remove(t);
    for map in fx.indexes.values_mut() {
        map.remove(name);
    }
    let dir = write(&fx);
    let (ok, text) = check(dir.path());
    assert!(!ok, "{text}");
    let index = dir
        .path()
        .join("dit/diffusion_pytorch_model.safetensors.index.json");
    let expected = format!("dit: missing `{name}` in {}", index.display());
    assert!(text.contains(&expected), "{expected}\n{text}");
    assert!(text.contains("FAILED: 1 problem(s)"), "{text}");
}

#[test]
fn changed_shape_is_named_with_its_file() {
    let mut fx = Fixture::official().unwrap();
    let name = "encoder.block.3.layer.1.DenseReluDense.wi_0.weight";
    let (f, t) = fx.find(name).unwrap();
    fx.files[f].tensors[t].shape = vec![10240, 4095];
    let dir = write(&fx);
    let (ok, text) = check(dir.path());
    assert!(!ok, "{text}");
    let shard = dir.path().join(&fx.files[f].path);
    let expected = format!(
        "text_encoder: wrong shape `{name}` in {}: stored [10240, 4095], our module needs [10240, 4096]",
        shard.display()
    );
    assert!(text.contains(&expected), "{expected}\n{text}");
    assert!(text.contains("FAILED: 1 problem(s)"), "{text}");
}

#[test]
fn index_pointing_at_the_wrong_shard_fails() {
    let mut fx = Fixture::official().unwrap();
    let name = "blocks.0.attn.qkv.weight";
    let map = fx.indexes.values_mut().next().unwrap();
    assert_eq!(
        map[name],
        "diffusion_pytorch_model-00001-of-00006.safetensors"
    );
    map.insert(
        name.into(),
        "diffusion_pytorch_model-00004-of-00006.safetensors".into(),
    );
    let dir = write(&fx);
    let (ok, text) = check(dir.path());
    assert!(!ok, "{text}");
    let dit = dir.path().join("dit");
    let expected = format!(
        "dit: index `{name}` in {}: index places it in {}, but it is stored in {}",
        dit.join("diffusion_pytorch_model.safetensors.index.json")
            .display(),
        dit.join("diffusion_pytorch_model-00004-of-00006.safetensors")
            .display(),
        dit.join("diffusion_pytorch_model-00001-of-00006.safetensors")
            .display(),
    );
    assert!(text.contains(&expected), "{expected}\n{text}");
    assert!(line(&text, "dit").contains("INCONSISTENT"), "{text}");
}

#[test]
fn lora_that_does_not_fit_its_layer_and_a_truncated_shard_fail() {
    let mut fx = Fixture::official().unwrap();
    let key = "lora___lorahyphen___blocks___lorahyphen___5___lorahyphen___cross_attn\
               ___lorahyphen___kv_linear.lora_down.weight";
    let (f, t) = fx.find(key).unwrap();
    // A down projection for a 4095-wide input: rank and up blocks agree, the layer does not.
    fx.files[f].tensors[t].shape = vec![256, 4095];
    let dir = write(&fx);
    let shard = dir.path().join("vae/diffusion_pytorch_model.safetensors");
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let (ok, text) = check(dir.path());
    assert!(!ok, "{text}");
    let lora = dir.path().join("lora/cfg_step_lora.safetensors");
    assert!(
        text.contains(&format!(
            "lora/cfg_step_lora.safetensors: lora `{key}` in {}",
            lora.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("vae: file in {}", shard.display())) && text.contains("truncated"),
        "{text}"
    );
}
