use super::fixture::{write_sparse, Fixture, FixtureTensor, DIT_CONFIG};
use super::*;

fn tensor(name: &str, dtype: Dtype, shape: &[usize]) -> FixtureTensor {
    FixtureTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        value: None,
    }
}

#[test]
fn dit_requests_at_the_official_config_match_the_published_model() {
    let cfg: DitConfig = serde_json::from_str(DIT_CONFIG).unwrap();
    let (_, requests) = dit_requests(&cfg).unwrap();
    let params: u64 = requests
        .iter()
        .map(|r| r.shape.iter().product::<usize>() as u64)
        .sum();
    // Spec §8: 1,022 tensors, 13.58 B parameters.
    assert_eq!(requests.len(), 1022);
    assert_eq!((params as f64 / 1e7).round() as u64, 1358, "{params}");
    let qkv = requests
        .iter()
        .find(|r| r.name == "blocks.47.attn.qkv.weight")
        .unwrap();
    assert_eq!(qkv.shape, [12288, 4096]);
}

#[test]
fn header_is_read_without_the_data_and_layout_errors_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let mut alpha = tensor("alpha", Dtype::BF16, &[]);
    alpha.value = Some(0.5);
    write_sparse(
        &path,
        &[tensor("w", Dtype::F32, &[1000, 1000]), alpha.clone()],
    )
    .unwrap();
    let h = read_header(&path).unwrap();
    assert_eq!(h.tensors["w"].shape, [1000, 1000]);
    assert_eq!(h.tensors["w"].bytes(), 4_000_000);
    assert!(h.layout_errors().is_empty(), "{:?}", h.layout_errors());
    assert_eq!(h.read_scalar("alpha").unwrap(), 0.5);
    assert!(h.read_scalar("w").is_err());

    // A truncated download.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(h.file_len - 2).unwrap();
    let errors = read_header(&path).unwrap().layout_errors();
    assert!(errors.iter().any(|e| e.contains("truncated")), "{errors:?}");

    // A header that is not safetensors at all.
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(read_header(&path).is_err());
}

#[test]
fn unexpected_tensor_wrong_dtype_and_missing_lora_are_problems() {
    let mut fx = Fixture::official().unwrap();
    let vae = fx
        .files
        .iter_mut()
        .find(|f| f.path.starts_with("vae"))
        .unwrap();
    vae.tensors
        .push(tensor("decoder.extra.weight", Dtype::F32, &[3]));
    vae.tensors[0].dtype = Dtype::I64;
    let first = vae.tensors[0].name.clone();
    fx.files
        .retain(|f| !f.path.ends_with("refinement_lora.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    fx.write(dir.path()).unwrap();
    let report = check_checkpoint(dir.path());
    let kinds: Vec<(ProblemKind, Option<String>)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.tensor.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::Dtype, Some(first)),
            (ProblemKind::Unexpected, Some("decoder.extra.weight".into())),
            (ProblemKind::File, None),
        ],
        "{:#?}",
        report.problems
    );
    assert!(report.problems[2]
        .to_string()
        .contains("refinement_lora.safetensors"));
}
