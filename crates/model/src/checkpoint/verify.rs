//! `longcat weights check`: validates a checkpoint directory from the safetensors headers
//! alone (the 8-byte length and the JSON header of every file; no tensor data is mapped or
//! read, except the scalar `alpha_scale` of each LoRA layer).
//!
//! The expected tensors are not a second hand-written list: every network is built with our
//! own constructors over a recording [`VarBuilder`] backend that notes each requested
//! `(name, shape, dtype)` and hands back a broadcast zero scalar (no allocation), at the
//! configs found in the directory. The stored headers are then compared against those
//! requests; LoRA files are parsed by [`LoraWeights::from_tensors`] over shape-only stand-ins
//! and enabled on the recorded DiT, so the same code that loads them decides what fits.

pub mod fixture;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use safetensors::Dtype;

use super::{index_files, lock, read_json, safetensors_files, Checkpoint, Component, LoraKind};
use crate::dit::{DitConfig, LongCatDit};
use crate::lora::{LoraMode, LoraWeights};
use crate::umt5::Umt5Encoder;
use crate::vae::{VaeConfig, WanVae};
use crate::{ModelError, Result};

/// Largest JSON header accepted (the format's own limit is 100 MB).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTensor {
    /// Stored element type.
    pub dtype: Dtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Byte range inside the data section.
    pub data_offsets: (u64, u64),
}

impl HeaderTensor {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Bytes the shape and dtype imply.
    pub fn bytes(&self) -> u64 {
        (self.elements() * self.dtype.bitsize() as u64).div_ceil(8)
    }
}

/// The parsed header of one safetensors file.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    /// The file.
    pub path: PathBuf,
    /// Length of the JSON header in bytes.
    pub header_len: u64,
    /// Length of the file on disk.
    pub file_len: u64,
    /// Tensors by name.
    pub tensors: BTreeMap<String, HeaderTensor>,
}

#[derive(serde::Deserialize)]
struct RawInfo {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

fn invalid(path: &Path, message: String) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    }
}

/// Reads the header of a safetensors file: its first 8 bytes (header length, little endian)
/// and the JSON that follows. Nothing else of the file is read.
pub fn read_header(path: &Path) -> Result<SafetensorsHeader> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| {
        invalid(
            path,
            format!("only {file_len} bytes: no safetensors header"),
        )
    })?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_LEN || header_len + 8 > file_len {
        return Err(invalid(
            path,
            format!("header length {header_len} does not fit a file of {file_len} bytes"),
        ));
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json).map_err(io)?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&json)
        .map_err(|e| invalid(path, format!("header is not a JSON object: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let info: RawInfo = serde_json::from_value(value)
            .map_err(|e| invalid(path, format!("header entry `{name}`: {e}")))?;
        tensors.insert(
            name,
            HeaderTensor {
                dtype: info.dtype,
                shape: info.shape,
                data_offsets: info.data_offsets,
            },
        );
    }
    Ok(SafetensorsHeader {
        path: path.to_path_buf(),
        header_len,
        file_len,
        tensors,
    })
}

impl SafetensorsHeader {
    /// Start of the data section in the file.
    pub fn data_start(&self) -> u64 {
        8 + self.header_len
    }

    /// Layout errors: a tensor whose byte range disagrees with its shape and dtype, ranges
    /// that overlap or leave gaps, or a file shorter or longer than the header says
    /// (a truncated download).
    pub fn layout_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut ranges: Vec<(u64, u64, &str)> = Vec::new();
        for (name, t) in &self.tensors {
            let (a, b) = t.data_offsets;
            if b < a || b - a != t.bytes() {
                errors.push(format!(
                    "tensor `{name}`: byte range {a}..{b} does not hold {:?} {:?} ({} bytes)",
                    t.dtype,
                    t.shape,
                    t.bytes()
                ));
            }
            ranges.push((a, b, name));
        }
        ranges.sort();
        let mut end = 0;
        for (a, b, name) in &ranges {
            if *a != end {
                errors.push(format!(
                    "tensor `{name}` starts at data byte {a}, expected {end} (gap or overlap)"
                ));
            }
            end = end.max(*b);
        }
        let expected_len = self.data_start() + end;
        if expected_len != self.file_len {
            errors.push(format!(
                "file is {} bytes, its header describes {expected_len} (truncated or damaged)",
                self.file_len
            ));
        }
        errors
    }

    /// Reads one scalar (a 1-element float tensor) from the data section.
    pub fn read_scalar(&self, name: &str) -> Result<f64> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                tensor: name.to_string(),
                file: self.path.display().to_string(),
            })?;
        let width = t.dtype.bitsize() / 8;
        if t.elements() != 1 || t.bytes() != width as u64 {
            return Err(invalid(
                &self.path,
                format!("`{name}` is not a scalar ({:?} {:?})", t.dtype, t.shape),
            ));
        }
        let io = |source| ModelError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(self.data_start() + t.data_offsets.0))
            .map_err(io)?;
        let mut buf = vec![0u8; width];
        file.read_exact(&mut buf).map_err(io)?;
        let value = match (t.dtype, buf.as_slice()) {
            (Dtype::F32, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]) as f64,
            (Dtype::F64, b) => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            (Dtype::BF16, &[a, b]) => half::bf16::from_le_bytes([a, b]).to_f64(),
            (Dtype::F16, &[a, b]) => half::f16::from_le_bytes([a, b]).to_f64(),
            (other, _) => {
                return Err(invalid(
                    &self.path,
                    format!("`{name}` has dtype {other:?}, expected a float"),
                ))
            }
        };
        Ok(value)
    }
}

/// A tensor one of our modules asked its `VarBuilder` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Full state-dict name.
    pub name: String,
    /// Shape the module needs.
    pub shape: Vec<usize>,
    /// Dtype the module asked for (the loader converts stored floats to it).
    pub dtype: DType,
}

/// The recording backend: notes every request, answers with a broadcast zero scalar.
struct RecordingBackend {
    log: Arc<Mutex<Vec<Requested>>>,
    stored: BTreeSet<String>,
}

impl SimpleBackend for RecordingBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        lock(&self.log).push(Requested {
            name: name.to_string(),
            shape: s.dims().to_vec(),
            dtype,
        });
        // One element, broadcast: strides of zero, nothing allocated for the full shape.
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("`{name}` requested without a shape: it cannot be checked from a header")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.stored.contains(name)
    }
}

/// Builds a model with `build` over a recording `VarBuilder` on the CPU and returns it with
/// every tensor it requested, in request order. `stored` answers `contains_tensor` (so
/// optional tensors are requested exactly when a checkpoint has them). Every tensor handed to
/// the model is a broadcast zero scalar of the requested shape: the model is a shape-only
/// stand-in, never run it.
pub fn record_requests<T>(
    stored: BTreeSet<String>,
    dtype: DType,
    build: impl FnOnce(VarBuilder<'static>) -> Result<T>,
) -> Result<(T, Vec<Requested>)> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let backend: Box<dyn SimpleBackend> = Box::new(RecordingBackend {
        log: Arc::clone(&log),
        stored,
    });
    let model = build(VarBuilder::from_backend(backend, dtype, Device::Cpu))?;
    let requests = lock(&log).clone();
    Ok((model, requests))
}

/// Dtype used for the shape-only builds (the GPU dtype; 2 bytes for the few weights a
/// constructor copies, e.g. the VAE's permuted conv kernels).
const RECORD_DTYPE: DType = DType::BF16;

/// The tensors the DiT requests at `cfg` (also returns the shape-only model).
pub fn dit_requests(cfg: &DitConfig) -> Result<(LongCatDit, Vec<Requested>)> {
    record_requests(BTreeSet::new(), RECORD_DTYPE, |vb| {
        LongCatDit::new(cfg.clone(), vb)
    })
}

/// The tensors the umT5 encoder requests at `cfg`.
pub fn text_encoder_requests(cfg: &crate::umt5::Umt5Config) -> Result<Vec<Requested>> {
    record_requests(BTreeSet::new(), RECORD_DTYPE, |vb| {
        Umt5Encoder::new(cfg, vb)
    })
    .map(|(_, r)| r)
}

/// The tensors the VAE requests at `cfg`.
pub fn vae_requests(cfg: &VaeConfig) -> Result<Vec<Requested>> {
    record_requests(BTreeSet::new(), RECORD_DTYPE, |vb| WanVae::new(cfg, vb)).map(|(_, r)| r)
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A requested tensor is not stored.
    Missing,
    /// A stored tensor has another shape than requested.
    Shape,
    /// A stored tensor's dtype cannot be converted by the loader.
    Dtype,
    /// A stored tensor no module requests.
    Unexpected,
    /// The shard index disagrees with the shards.
    Index,
    /// A file is missing, unreadable or its header is damaged.
    File,
    /// A config is missing, unparsable or unsupported.
    Config,
    /// A LoRA file does not fit the DiT or our LoRA key layout.
    Lora,
}

impl ProblemKind {
    fn label(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Shape => "wrong shape",
            ProblemKind::Dtype => "wrong dtype",
            ProblemKind::Unexpected => "unexpected",
            ProblemKind::Index => "index",
            ProblemKind::File => "file",
            ProblemKind::Config => "config",
            ProblemKind::Lora => "lora",
        }
    }
}

/// One problem found, naming the tensor (when there is one) and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Kind.
    pub kind: ProblemKind,
    /// Component (`dit`, `vae`, `text_encoder`, `lora/<file>`, ...).
    pub component: String,
    /// Tensor name.
    pub tensor: Option<String>,
    /// The file concerned.
    pub file: PathBuf,
    /// What was found and what was expected.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.component, self.kind.label())?;
        if let Some(t) = &self.tensor {
            write!(f, " `{t}`")?;
        }
        write!(f, " in {}: {}", self.file.display(), self.detail)
    }
}

/// Totals of one component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentSummary {
    /// `dit`, `vae`, `text_encoder` or `lora/<file>`.
    pub name: String,
    /// Safetensors files read.
    pub files: usize,
    /// Tensors stored.
    pub tensors: usize,
    /// Tensors our modules request.
    pub requested: usize,
    /// Stored elements.
    pub parameters: u64,
    /// Stored tensor bytes.
    pub bytes: u64,
    /// Stored dtypes with their tensor counts.
    pub dtypes: BTreeMap<String, usize>,
    /// Component specific facts (LoRA rank, targets, alpha; shard index).
    pub notes: Vec<String>,
}

/// The result of [`check_checkpoint`].
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// One entry per component and LoRA file, in check order.
    pub components: Vec<ComponentSummary>,
    /// Everything wrong (empty when the checkpoint is usable).
    pub problems: Vec<Problem>,
    /// Facts that are not errors (an optional LoRA absent, a stray file).
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// No problem found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Float dtypes the loader converts to the model dtype.
fn loadable(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

struct Ctx<'a> {
    report: &'a mut CheckReport,
    component: String,
}

impl Ctx<'_> {
    fn problem(
        &mut self,
        kind: ProblemKind,
        tensor: Option<&str>,
        file: &Path,
        detail: impl Into<String>,
    ) {
        self.report.problems.push(Problem {
            kind,
            component: self.component.clone(),
            tensor: tensor.map(str::to_string),
            file: file.to_path_buf(),
            detail: detail.into(),
        });
    }
}

/// The headers of one component's files, with the shard index when there is one.
struct StoredSet {
    headers: Vec<SafetensorsHeader>,
    /// name -> index into `headers`.
    location: BTreeMap<String, usize>,
    /// The index file, or the single weights file: where a missing tensor was expected.
    expected_in: PathBuf,
    /// One line about the shard index, when there is one.
    index_note: Option<String>,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// Reads the headers of a component folder the way the loader picks its files (the shards
/// of the index when there is one, else every `*.safetensors`) and checks the index.
fn read_stored(dir: &Path, ctx: &mut Ctx) -> Option<StoredSet> {
    let listing = safetensors_files(dir).and_then(|f| Ok((f, index_files(dir)?)));
    let (all_files, indexes) = match listing {
        Ok(v) => v,
        Err(e) => {
            ctx.problem(ProblemKind::File, None, dir, format!("cannot list: {e}"));
            return None;
        }
    };
    let mut index = None;
    if let Some(index_path) = indexes.first() {
        if indexes.len() > 1 {
            ctx.report.warnings.push(format!(
                "{}: several shard indexes; the loader uses {}",
                ctx.component,
                index_path.display()
            ));
        }
        match read_json::<ShardIndex>(index_path) {
            Ok(i) => index = Some((index_path.clone(), i.weight_map)),
            Err(e) => {
                ctx.problem(ProblemKind::Index, None, index_path, e.to_string());
                return None;
            }
        }
    }
    let files: Vec<PathBuf> = match &index {
        Some((index_path, map)) => {
            let shards: BTreeSet<&String> = map.values().collect();
            let mut files = Vec::new();
            for shard in shards {
                let path = dir.join(shard);
                if path.is_file() {
                    files.push(path);
                } else {
                    let count = map.values().filter(|s| *s == shard).count();
                    ctx.problem(
                        ProblemKind::Index,
                        None,
                        &path,
                        format!(
                            "shard named by {} for {count} tensors does not exist",
                            index_path.display()
                        ),
                    );
                }
            }
            for f in &all_files {
                if !files.contains(f) {
                    ctx.report.warnings.push(format!(
                        "{}: {} is not in the shard index and is ignored by the loader",
                        ctx.component,
                        f.display()
                    ));
                }
            }
            files
        }
        None => all_files,
    };
    if files.is_empty() && index.is_none() {
        ctx.problem(ProblemKind::File, None, dir, "no *.safetensors file");
        return None;
    }
    let mut headers = Vec::new();
    let mut location = BTreeMap::new();
    for path in files {
        let header = match read_header(&path) {
            Ok(h) => h,
            Err(e) => {
                ctx.problem(ProblemKind::File, None, &path, e.to_string());
                continue;
            }
        };
        for e in header.layout_errors() {
            ctx.problem(ProblemKind::File, None, &path, e);
        }
        let i = headers.len();
        for name in header.tensors.keys() {
            if let Some(&other) = location.get(name) {
                let first: &SafetensorsHeader = &headers[other];
                ctx.problem(
                    ProblemKind::File,
                    Some(name),
                    &path,
                    format!("also stored in {}", first.path.display()),
                );
            } else {
                location.insert(name.clone(), i);
            }
        }
        headers.push(header);
    }
    let expected_in = match &index {
        Some((p, _)) => p.clone(),
        None => match headers.as_slice() {
            [one] => one.path.clone(),
            _ => dir.to_path_buf(),
        },
    };
    let mut index_note = None;
    if let Some((index_path, map)) = &index {
        let mut index_ok = true;
        for (name, shard) in map {
            let shard_path = dir.join(shard);
            if !shard_path.is_file() {
                continue; // reported once per shard above
            }
            let held_by = location.get(name).map(|&i| headers[i].path.as_path());
            if held_by != Some(shard_path.as_path()) {
                index_ok = false;
                let actual = match held_by {
                    Some(p) => format!("it is stored in {}", p.display()),
                    None => "no shard holds it".to_string(),
                };
                ctx.problem(
                    ProblemKind::Index,
                    Some(name),
                    index_path,
                    format!("index places it in {}, but {actual}", shard_path.display()),
                );
            }
        }
        for (name, &i) in &location {
            if !map.contains_key(name) {
                index_ok = false;
                ctx.problem(
                    ProblemKind::Index,
                    Some(name),
                    &headers[i].path,
                    format!("stored here but not listed in {}", index_path.display()),
                );
            }
        }
        let shards = map.values().collect::<BTreeSet<_>>().len();
        let name = index_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let state = if index_ok {
            "consistent"
        } else {
            "INCONSISTENT"
        };
        index_note = Some(format!(
            "index {name}: {} entries in {shards} shards, {state}",
            map.len()
        ));
    }
    Some(StoredSet {
        headers,
        location,
        expected_in,
        index_note,
    })
}

fn summarize(name: &str, stored: &StoredSet, requested: usize) -> ComponentSummary {
    let mut s = ComponentSummary {
        name: name.to_string(),
        files: stored.headers.len(),
        requested,
        ..Default::default()
    };
    for h in &stored.headers {
        for t in h.tensors.values() {
            s.tensors += 1;
            s.parameters += t.elements();
            s.bytes += t.bytes();
            *s.dtypes.entry(format!("{:?}", t.dtype)).or_default() += 1;
        }
    }
    s.notes.extend(stored.index_note.clone());
    s
}

/// Compares what the modules requested with what is stored.
fn compare(ctx: &mut Ctx, stored: &StoredSet, requests: &[Requested]) {
    let mut seen = BTreeSet::new();
    for r in requests {
        if !seen.insert(r.name.as_str()) {
            continue;
        }
        let Some(&i) = stored.location.get(&r.name) else {
            ctx.problem(
                ProblemKind::Missing,
                Some(&r.name),
                &stored.expected_in,
                format!("not stored; our module needs shape {:?}", r.shape),
            );
            continue;
        };
        let h = &stored.headers[i];
        let Some(t) = h.tensors.get(&r.name) else {
            continue;
        };
        if t.shape != r.shape {
            ctx.problem(
                ProblemKind::Shape,
                Some(&r.name),
                &h.path,
                format!("stored {:?}, our module needs {:?}", t.shape, r.shape),
            );
        }
        if !loadable(t.dtype) {
            ctx.problem(
                ProblemKind::Dtype,
                Some(&r.name),
                &h.path,
                format!(
                    "stored as {:?}; the loader converts F32, F16 or BF16 to the model dtype",
                    t.dtype
                ),
            );
        }
    }
    for (name, &i) in &stored.location {
        if !seen.contains(name.as_str()) {
            ctx.problem(
                ProblemKind::Unexpected,
                Some(name),
                &stored.headers[i].path,
                "stored, but no module of ours requests it",
            );
        }
    }
}

/// Checks one component folder against `requests` and sums up what is stored.
fn check_component(
    report: &mut CheckReport,
    dir: &Path,
    name: &str,
    requests: &[Requested],
) -> Option<ComponentSummary> {
    let mut ctx = Ctx {
        report,
        component: name.to_string(),
    };
    let stored = read_stored(dir, &mut ctx)?;
    compare(&mut ctx, &stored, requests);
    let unique: BTreeSet<&str> = requests.iter().map(|r| r.name.as_str()).collect();
    Some(summarize(name, &stored, unique.len()))
}

/// The official LoRA key of a DiT module path (see [`crate::lora`]).
fn lora_key(module: &str) -> String {
    format!(
        "lora___lorahyphen___{}",
        module.replace('.', "___lorahyphen___")
    )
}

/// `blocks.12.attn.qkv` -> `blocks.*.attn.qkv`.
fn target_group(module: &str) -> String {
    let parts: Vec<&str> = module.split('.').collect();
    match parts.as_slice() {
        ["blocks", i, rest @ ..] if i.parse::<usize>().is_ok() => {
            format!("blocks.*.{}", rest.join("."))
        }
        _ => module.to_string(),
    }
}

/// Checks one LoRA file: header, dtypes, our key layout (parsed by [`LoraWeights`]),
/// each layer against the DiT layer it targets, and that the DiT accepts it.
fn check_lora(
    report: &mut CheckReport,
    path: &Path,
    dit: Option<(&mut LongCatDit, &BTreeMap<String, Vec<usize>>)>,
) -> Option<ComponentSummary> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ctx = Ctx {
        report,
        component: format!("lora/{file_name}"),
    };
    let header = match read_header(path) {
        Ok(h) => h,
        Err(e) => {
            ctx.problem(ProblemKind::File, None, path, e.to_string());
            return None;
        }
    };
    for e in header.layout_errors() {
        ctx.problem(ProblemKind::File, None, path, e);
    }
    let mut summary = ComponentSummary {
        name: ctx.component.clone(),
        files: 1,
        ..Default::default()
    };
    let mut stand_ins = HashMap::new();
    for (name, t) in &header.tensors {
        summary.tensors += 1;
        summary.parameters += t.elements();
        summary.bytes += t.bytes();
        *summary.dtypes.entry(format!("{:?}", t.dtype)).or_default() += 1;
        if !loadable(t.dtype) {
            ctx.problem(
                ProblemKind::Dtype,
                Some(name),
                path,
                format!(
                    "stored as {:?}; LoRA factors must be F32, F16 or BF16",
                    t.dtype
                ),
            );
        }
        let stand_in = Tensor::zeros((), DType::F32, &Device::Cpu)
            .and_then(|z| z.broadcast_as(t.shape.as_slice()));
        match stand_in {
            Ok(s) => {
                stand_ins.insert(name.clone(), s);
            }
            Err(e) => ctx.problem(ProblemKind::File, Some(name), path, e.to_string()),
        }
    }
    // Our loader's parser decides the key layout (F32 stand-ins: `to_dtype` is a no-op).
    let weights =
        match LoraWeights::from_tensors(&stand_ins, &path.display().to_string(), DType::F32) {
            Ok(w) => w,
            Err(e) => {
                ctx.problem(ProblemKind::Lora, None, path, e.to_string());
                return Some(summary);
            }
        };
    if weights.layers.is_empty() {
        ctx.problem(
            ProblemKind::Lora,
            None,
            path,
            "no `*.lora_down.weight` tensor: not a LoRA in the official layout",
        );
    }
    // Keys our layout accounts for; anything else is unexpected.
    let mut consumed = BTreeSet::new();
    let mut ranks = BTreeSet::new();
    let mut alphas = BTreeSet::new();
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    let mut fit_problems = 0;
    for (module, layer) in &weights.layers {
        let key = lora_key(module);
        let n = layer.ups.len();
        let down = layer.down.dims().to_vec();
        let rank = down.first().copied().unwrap_or(0) / n.max(1);
        ranks.insert(rank);
        *groups.entry(target_group(module)).or_default() += 1;
        consumed.insert(format!("{key}.lora_down.weight"));
        consumed.insert(format!("{key}.alpha_scale"));
        if n == 1 {
            consumed.insert(format!("{key}.lora_up.weight"));
        }
        for j in 0..n {
            consumed.insert(format!("{key}.lora_up.blocks.{j}.weight"));
        }
        let alpha_key = format!("{key}.alpha_scale");
        if header.tensors.contains_key(&alpha_key) {
            match header.read_scalar(&alpha_key) {
                Ok(a) => {
                    alphas.insert(format!("{a}"));
                }
                Err(e) => ctx.problem(ProblemKind::Lora, Some(&alpha_key), path, e.to_string()),
            }
        }
        let Some((_, shapes)) = &dit else { continue };
        let target = shapes.get(&format!("{module}.weight"));
        let Some(&[out, inp]) = target.map(Vec::as_slice) else {
            fit_problems += 1;
            ctx.problem(
                ProblemKind::Lora,
                Some(&format!("{key}.lora_down.weight")),
                path,
                format!("targets `{module}`, which is not a linear layer of our DiT"),
            );
            continue;
        };
        let ups_fit = layer
            .ups
            .iter()
            .all(|u| u.dims() == [out / n.max(1), rank].as_slice());
        if down != [rank * n, inp] || !out.is_multiple_of(n.max(1)) || !ups_fit {
            fit_problems += 1;
            ctx.problem(
                ProblemKind::Lora,
                Some(&format!("{key}.lora_down.weight")),
                path,
                format!(
                    "down {down:?} with {n} up block(s) of {:?} does not fit `{module}` \
                     [{out}, {inp}] (expected down [{}, {inp}], up [{}, {rank}])",
                    layer.ups.first().map(|u| u.dims().to_vec()),
                    rank * n,
                    out / n.max(1)
                ),
            );
        }
    }
    for name in header.tensors.keys() {
        if !consumed.contains(name) {
            ctx.problem(
                ProblemKind::Unexpected,
                Some(name),
                path,
                "not part of any LoRA layer in our key layout",
            );
        }
    }
    // The DiT's own LoRA code has the last word (it is what runs at load time).
    if let Some((model, _)) = dit {
        if fit_problems == 0 && !weights.layers.is_empty() {
            let name = file_name.clone();
            let result = model
                .register_lora(&name, weights.clone())
                .and_then(|()| model.enable_loras(&[(name, 1.0)], LoraMode::Unmerged));
            if let Err(e) = result.and_then(|()| model.disable_loras()) {
                ctx.problem(ProblemKind::Lora, None, path, e.to_string());
            }
        }
    }
    let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
    let ranks: BTreeSet<String> = ranks.iter().map(|r| r.to_string()).collect();
    summary.notes.push(format!(
        "rank {}, alpha_scale {}, {} layers",
        join(&ranks),
        if alphas.is_empty() {
            "-".into()
        } else {
            join(&alphas)
        },
        weights.layers.len()
    ));
    summary.notes.push(format!(
        "targets {}",
        groups
            .iter()
            .map(|(g, c)| format!("{g} x{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Some(summary)
}

fn config_problem(report: &mut CheckReport, component: &str, path: PathBuf, e: ModelError) {
    report.problems.push(Problem {
        kind: ProblemKind::Config,
        component: component.to_string(),
        tensor: None,
        file: path,
        detail: e.to_string(),
    });
}

/// Validates the checkpoint directory `root` from headers and configs only (see the module
/// docs). Never fails: everything found wrong is a [`Problem`] in the report.
pub fn check_checkpoint(root: &Path) -> CheckReport {
    let mut report = CheckReport::default();
    if let Err(e) = Checkpoint::open(root) {
        let kind = if root.is_dir() {
            ProblemKind::File
        } else {
            ProblemKind::Config
        };
        report.problems.push(Problem {
            kind,
            component: "checkpoint".into(),
            tensor: None,
            file: root.to_path_buf(),
            detail: e.to_string(),
        });
        if !root.is_dir() {
            return report;
        }
    }
    let ckpt = Checkpoint {
        root: root.to_path_buf(),
    };
    if let Err(e) = ckpt.scheduler_config() {
        let path = ckpt.config_path(Component::Scheduler);
        config_problem(&mut report, "scheduler", path, e);
    }

    // Text encoder.
    let te_dir = ckpt.dir(Component::TextEncoder);
    let te = ckpt
        .text_encoder_config()
        .and_then(|cfg| text_encoder_requests(&cfg));
    match te {
        Ok(requests) => {
            let s = check_component(&mut report, &te_dir, "text_encoder", &requests);
            report.components.extend(s);
        }
        Err(e) => config_problem(
            &mut report,
            "text_encoder",
            ckpt.config_path(Component::TextEncoder),
            e,
        ),
    }

    // VAE.
    let vae = ckpt.config::<VaeConfig>(Component::Vae).and_then(|cfg| {
        cfg.validate()?;
        vae_requests(&cfg)
    });
    match vae {
        Ok(requests) => {
            let s = check_component(&mut report, &ckpt.dir(Component::Vae), "vae", &requests);
            report.components.extend(s);
        }
        Err(e) => config_problem(&mut report, "vae", ckpt.config_path(Component::Vae), e),
    }

    // DiT, configured as the generator loads it (one device: no context parallelism).
    let dit_cfg_path = ckpt.config_path(Component::Dit);
    let dit = ckpt
        .config::<DitConfig>(Component::Dit)
        .and_then(|mut cfg| {
            cfg.cp_split_hw = None;
            if cfg.bsa_params.is_none() {
                return Err(ModelError::NotACheckpoint {
                    path: dit_cfg_path.clone(),
                    reason: "dit/config.json has no bsa_params (needed by the refinement stage)"
                        .into(),
                });
            }
            dit_requests(&cfg)
        });
    let mut dit_model = None;
    match dit {
        Ok((model, requests)) => {
            let s = check_component(&mut report, &ckpt.dir(Component::Dit), "dit", &requests);
            report.components.extend(s);
            let shapes: BTreeMap<String, Vec<usize>> =
                requests.into_iter().map(|r| (r.name, r.shape)).collect();
            dit_model = Some((model, shapes));
        }
        Err(e) => config_problem(&mut report, "dit", dit_cfg_path, e),
    }

    // LoRAs: every file in lora/; the refinement LoRA is required by the generator.
    let lora_dir = root.join("lora");
    let lora_files = if lora_dir.is_dir() {
        safetensors_files(&lora_dir).unwrap_or_default()
    } else {
        Vec::new()
    };
    for (kind, required) in [(LoraKind::Refinement, true), (LoraKind::CfgStep, false)] {
        let path = lora_dir.join(kind.file_name());
        if lora_files.contains(&path) {
            continue;
        }
        if required {
            report.problems.push(Problem {
                kind: ProblemKind::File,
                component: format!("lora/{}", kind.file_name()),
                tensor: None,
                file: path,
                detail: "missing (the 720p refinement stage needs it)".into(),
            });
        } else {
            report.warnings.push(format!(
                "{} is absent: distilled stage 1 unavailable",
                path.display()
            ));
        }
    }
    for path in &lora_files {
        let dit = dit_model.as_mut().map(|(m, s)| (m, &*s));
        let s = check_lora(&mut report, path, dit);
        report.components.extend(s);
    }
    report
}

#[cfg(test)]
mod tests;
