//! LongCat-Video networks on candle.
//!
//! One module per network. Layers are built from `VarBuilder` paths that mirror the
//! official checkpoint tensor names, so official safetensors files load unchanged.
//! Everything is generic over device and dtype (CPU f32 for tests; CUDA bf16 behind the
//! `cuda` feature).

pub mod attention;
pub mod bsa;
pub mod checkpoint;
pub mod conv3d;
pub mod dit;
pub mod error;
pub mod limits;
pub mod lora;
pub mod ops;
pub mod random;
pub mod scheduler;
pub mod text_clean;
pub mod tokenizer;
pub mod umt5;
pub mod vae;

pub use error::{ModelError, Result};

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
