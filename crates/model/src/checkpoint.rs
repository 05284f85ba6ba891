//! The official LongCat-Video weights directory: layout check, configs, weight loading.
//!
//! Layout (see `docs/checkpoint.md`):
//! ```text
//! dit/           config.json + *.safetensors (sharded with *.safetensors.index.json)
//! vae/           config.json + diffusion_pytorch_model.safetensors
//! text_encoder/  config.json + *.safetensors (sharded or not)
//! tokenizer/     tokenizer.json (+ tokenizer_config.json)
//! scheduler/     scheduler_config.json
//! lora/          cfg_step_lora.safetensors, refinement_lora.safetensors (optional)
//! ```
//! Weights are memory-mapped and each tensor is converted to the target dtype only when a
//! model asks for it. [`TrackedWeights`] records which tensors were requested so a caller
//! can list the unused ones after building a model, and turns a missing or mis-shaped
//! tensor into a [`ModelError`] naming the tensor and its file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

pub use crate::lora::LoraKind;
use crate::scheduler::SchedulerConfig;
use crate::umt5::Umt5Config;
use crate::{ModelError, Result};

/// One component folder of the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// `dit/`: the diffusion transformer.
    Dit,
    /// `vae/`: the Wan VAE.
    Vae,
    /// `text_encoder/`: the umT5 encoder.
    TextEncoder,
    /// `tokenizer/`: the umT5 tokenizer.
    Tokenizer,
    /// `scheduler/`: the flow-matching scheduler config.
    Scheduler,
}

impl Component {
    /// Every required component.
    pub const ALL: [Component; 5] = [
        Component::Dit,
        Component::Vae,
        Component::TextEncoder,
        Component::Tokenizer,
        Component::Scheduler,
    ];

    /// Folder name inside the checkpoint.
    pub fn dir_name(self) -> &'static str {
        match self {
            Component::Dit => "dit",
            Component::Vae => "vae",
            Component::TextEncoder => "text_encoder",
            Component::Tokenizer => "tokenizer",
            Component::Scheduler => "scheduler",
        }
    }

    /// The config file the component must have.
    pub fn config_name(self) -> &'static str {
        match self {
            Component::Tokenizer => "tokenizer.json",
            Component::Scheduler => "scheduler_config.json",
            _ => "config.json",
        }
    }

    /// Whether the component ships safetensors weights.
    pub fn has_weights(self) -> bool {
        matches!(
            self,
            Component::Dit | Component::Vae | Component::TextEncoder
        )
    }
}

const EXPECTED_LAYOUT: &str = "expected the LongCat-Video layout: dit/, vae/, text_encoder/ \
     (config.json + *.safetensors), tokenizer/tokenizer.json, scheduler/scheduler_config.json \
     and optionally lora/ (see docs/checkpoint.md)";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and parses a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// A validated checkpoint directory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    root: PathBuf,
}

impl Checkpoint {
    /// Opens and validates `root`: every component folder with its config file, and
    /// safetensors weights for dit/vae/text_encoder. Anything else is refused with a
    /// [`ModelError::NotACheckpoint`] saying what is missing and what was expected.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let refuse = |reason: String| ModelError::NotACheckpoint {
            path: root.clone(),
            reason,
        };
        if !root.is_dir() {
            return Err(refuse(format!("it is not a directory; {EXPECTED_LAYOUT}")));
        }
        let present: Vec<Component> = Component::ALL
            .into_iter()
            .filter(|c| root.join(c.dir_name()).is_dir())
            .collect();
        if present.is_empty() {
            return Err(refuse(format!(
                "none of its component folders exist; {EXPECTED_LAYOUT}"
            )));
        }
        let mut problems = Vec::new();
        for c in Component::ALL {
            let dir = root.join(c.dir_name());
            if !dir.is_dir() {
                problems.push(format!("missing folder {}/", c.dir_name()));
                continue;
            }
            if !dir.join(c.config_name()).is_file() {
                problems.push(format!("missing {}/{}", c.dir_name(), c.config_name()));
            }
            if c.has_weights() && safetensors_in(&dir)?.is_empty() {
                problems.push(format!("no *.safetensors in {}/", c.dir_name()));
            }
        }
        if !problems.is_empty() {
            return Err(refuse(format!(
                "{}; {EXPECTED_LAYOUT}",
                problems.join(", ")
            )));
        }
        Ok(Self { root })
    }

    /// The checkpoint root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A component's folder.
    pub fn dir(&self, component: Component) -> PathBuf {
        self.root.join(component.dir_name())
    }

    /// A component's config file path.
    pub fn config_path(&self, component: Component) -> PathBuf {
        self.dir(component).join(component.config_name())
    }

    /// Parses a component's config into `T` (e.g. the DiT or VAE config struct).
    pub fn config<T: DeserializeOwned>(&self, component: Component) -> Result<T> {
        read_json(&self.config_path(component))
    }

    /// `text_encoder/config.json`.
    pub fn text_encoder_config(&self) -> Result<Umt5Config> {
        let cfg: Umt5Config = self.config(Component::TextEncoder)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `scheduler/scheduler_config.json`.
    pub fn scheduler_config(&self) -> Result<SchedulerConfig> {
        SchedulerConfig::from_file(&self.config_path(Component::Scheduler))
    }

    /// `tokenizer/tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.config_path(Component::Tokenizer)
    }

    /// A LoRA file, or an error naming the expected path when it is absent.
    pub fn lora_path(&self, kind: LoraKind) -> Result<PathBuf> {
        let path = self.root.join("lora").join(kind.file_name());
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "LoRA file not found (needed for distilled sampling / refinement)",
                ),
            })
        }
    }

    /// The weight files of a component: the shards named by a `*.safetensors.index.json`
    /// when there is one, else every `*.safetensors` in the folder.
    pub fn weight_files(&self, component: Component) -> Result<WeightFiles> {
        WeightFiles::discover(&self.dir(component))
    }

    /// Memory-maps a component's weights for lazy loading in `dtype` on `device`.
    pub fn weights(&self, component: Component) -> Result<Arc<TrackedWeights>> {
        Ok(Arc::new(TrackedWeights::open(
            &self.weight_files(component)?,
        )?))
    }
}

/// `*.safetensors` files directly inside `dir`, sorted.
fn safetensors_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

/// The weight files of one component, with the shard index when there is one.
#[derive(Debug, Clone)]
pub struct WeightFiles {
    /// The files to map.
    pub files: Vec<PathBuf>,
    /// `*.safetensors.index.json` and its `weight_map` (tensor name -> shard file name).
    pub index: Option<(PathBuf, BTreeMap<String, String>)>,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl WeightFiles {
    /// Looks for a shard index in `dir`, else takes every `*.safetensors` there.
    pub fn discover(dir: &Path) -> Result<Self> {
        let mut indexes: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".safetensors.index.json"))
            })
            .collect();
        indexes.sort();
        if let Some(index_path) = indexes.into_iter().next() {
            let index: ShardIndex = read_json(&index_path)?;
            let shards: BTreeSet<&String> = index.weight_map.values().collect();
            let files: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                return Err(ModelError::Io {
                    path: missing.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("shard named by {} is missing", index_path.display()),
                    ),
                });
            }
            return Ok(Self {
                files,
                index: Some((index_path, index.weight_map)),
            });
        }
        let files = safetensors_in(dir)?;
        if files.is_empty() {
            return Err(ModelError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no *.safetensors file in this folder",
                ),
            });
        }
        Ok(Self { files, index: None })
    }

    /// A single-file set (e.g. one LoRA or a loose weights file).
    pub fn single(path: &Path) -> Self {
        Self {
            files: vec![path.to_path_buf()],
            index: None,
        }
    }
}

/// Memory-mapped safetensors files that remember which tensors were requested.
///
/// Use [`TrackedWeights::var_builder`] to build a model, then
/// [`TrackedWeights::unused`] to list tensors no module asked for. A missing or mis-shaped
/// tensor makes the builder fail; [`TrackedWeights::take_error`] then returns the
/// [`ModelError`] naming the tensor and its file ([`TrackedWeights::build`] does this).
pub struct TrackedWeights {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// tensor name -> index into `files`.
    location: BTreeMap<String, usize>,
    description: String,
    requested: Mutex<BTreeSet<String>>,
    first_error: Mutex<Option<ModelError>>,
}

impl std::fmt::Debug for TrackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedWeights")
            .field("files", &self.description)
            .field("tensors", &self.location.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl TrackedWeights {
    /// Maps every file (no tensor data is read yet). A tensor stored in two files, or one
    /// the shard index places in a file that does not hold it, is an error.
    pub fn open(weights: &WeightFiles) -> Result<Self> {
        let mut files = Vec::with_capacity(weights.files.len());
        let mut location = BTreeMap::new();
        for (i, path) in weights.files.iter().enumerate() {
            // SAFETY: the files are mapped read-only; the checkpoint must not be modified
            // while the server runs (documented in docs/checkpoint.md).
            let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| ModelError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?;
            for (name, _) in st.tensors() {
                if let Some(&other) = location.get(&name) {
                    let first: &(PathBuf, MmapedSafetensors) = &files[other];
                    return Err(ModelError::InvalidArgument(format!(
                        "tensor `{name}` is stored in both {} and {}",
                        first.0.display(),
                        path.display()
                    )));
                }
                location.insert(name, i);
            }
            files.push((path.clone(), st));
        }
        if let Some((index_path, map)) = &weights.index {
            for (name, shard) in map {
                let held_by = location
                    .get(name)
                    .and_then(|&i| files[i].0.file_name())
                    .and_then(|n| n.to_str());
                if held_by != Some(shard.as_str()) {
                    return Err(ModelError::MissingTensor {
                        tensor: name.clone(),
                        file: format!(
                            "{} (listed in {})",
                            index_path
                                .parent()
                                .map(|d| d.join(shard))
                                .unwrap_or_default()
                                .display(),
                            index_path.display()
                        ),
                    });
                }
            }
        }
        let description = match (&weights.index, weights.files.as_slice()) {
            (Some((index, _)), _) => index.display().to_string(),
            (None, [one]) => one.display().to_string(),
            (None, many) => many
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        Ok(Self {
            files,
            location,
            description,
            requested: Mutex::new(BTreeSet::new()),
            first_error: Mutex::new(None),
        })
    }

    /// Opens one safetensors file.
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open(&WeightFiles::single(path))
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    /// Where the tensors live (index file, single file or file list), for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The file holding `name`.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.location.get(name).map(|&i| self.files[i].0.as_path())
    }

    /// Stored shape of a tensor (from the header; no data is read).
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        let &i = self.location.get(name)?;
        self.files[i].1.get(name).ok().map(|v| v.shape().to_vec())
    }

    /// A `VarBuilder` over these weights: tensors load lazily, converted to `dtype`.
    pub fn var_builder(self: &Arc<Self>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(TrackingBackend(Arc::clone(self)));
        VarBuilder::from_backend(backend, dtype, device.clone())
    }

    /// Builds a model with `f`, mapping a backend failure to the recorded [`ModelError`]
    /// (missing tensor / wrong shape, naming tensor and file).
    pub fn build<T>(
        self: &Arc<Self>,
        dtype: DType,
        device: &Device,
        f: impl FnOnce(VarBuilder<'static>) -> Result<T>,
    ) -> Result<T> {
        let result = f(self.var_builder(dtype, device));
        match result {
            Ok(v) => Ok(v),
            Err(e) => Err(self.take_error().unwrap_or(e)),
        }
    }

    /// [`TrackedWeights::build`], then requires that the network used every stored tensor
    /// ([`ModelError::UnusedTensors`] otherwise): for files that hold exactly one network.
    pub fn build_exact<T>(
        self: &Arc<Self>,
        dtype: DType,
        device: &Device,
        f: impl FnOnce(VarBuilder<'static>) -> Result<T>,
    ) -> Result<T> {
        let net = self.build(dtype, device, f)?;
        let unused = self.unused();
        if unused.is_empty() {
            Ok(net)
        } else {
            Err(ModelError::UnusedTensors {
                file: self.description.clone(),
                tensors: unused,
            })
        }
    }

    /// The first missing/mis-shaped tensor error recorded since the last call.
    pub fn take_error(&self) -> Option<ModelError> {
        lock(&self.first_error).take()
    }

    /// Names requested so far.
    pub fn requested(&self) -> BTreeSet<String> {
        lock(&self.requested).clone()
    }

    /// Stored tensors nobody requested, sorted (extra tensors after building a model).
    pub fn unused(&self) -> Vec<String> {
        let requested = lock(&self.requested);
        self.location
            .keys()
            .filter(|n| !requested.contains(*n))
            .cloned()
            .collect()
    }

    /// Loads one tensor by name in `dtype` (marks it requested).
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        lock(&self.requested).insert(name.to_string());
        let &i = self
            .location
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                tensor: name.to_string(),
                file: self.description.clone(),
            })?;
        Ok(self.files[i].1.load(name, device)?.to_dtype(dtype)?)
    }

    fn record(&self, err: ModelError) -> candle_core::Error {
        let message = err.to_string();
        let mut slot = lock(&self.first_error);
        if slot.is_none() {
            *slot = Some(err);
        }
        candle_core::Error::Msg(message)
    }
}

/// The `VarBuilder` backend over shared [`TrackedWeights`].
struct TrackingBackend(Arc<TrackedWeights>);

impl SimpleBackend for TrackingBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let w = &self.0;
        lock(&w.requested).insert(name.to_string());
        let Some(&i) = w.location.get(name) else {
            return Err(w.record(ModelError::MissingTensor {
                tensor: name.to_string(),
                file: w.description.clone(),
            }));
        };
        let (path, st) = &w.files[i];
        let stored = st.get(name)?.shape().to_vec();
        if stored != s.dims() {
            return Err(w.record(ModelError::ShapeMismatch {
                tensor: name.to_string(),
                file: path.display().to_string(),
                expected: s.dims().to_vec(),
                actual: stored,
            }));
        }
        st.load(name, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0
            .load(name, dtype, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.location.contains_key(name)
    }
}

pub mod verify;

#[cfg(test)]
mod tests;
