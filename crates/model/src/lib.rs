//! LongCat-Video networks on candle.
//!
//! One module per network. Layers are built from `VarBuilder` paths that mirror the
//! official checkpoint tensor names, so official safetensors files load unchanged.
