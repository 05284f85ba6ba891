//! Block sparse attention (BSA) as used by the LongCat DiT in the refinement stage.

use serde::{Deserialize, Serialize};

/// `bsa_params` of the DiT config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BsaParams {
    /// Fraction of key blocks dropped per query block (top-k keeps `int((1-s)*n)`).
    #[serde(default)]
    pub sparsity: Option<f64>,
    /// CDF threshold for CDF-based selection.
    #[serde(default)]
    pub cdf_threshold: Option<f64>,
    /// Query chunk shape (t, h, w) in tokens.
    pub chunk_3d_shape_q: [usize; 3],
    /// Key chunk shape (t, h, w) in tokens.
    pub chunk_3d_shape_k: [usize; 3],
}
