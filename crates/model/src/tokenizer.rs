//! Prompt tokenization for the umT5 encoder, as the official pipeline does it.
//!
//! Clean-up: HTML entities are unescaped twice, whitespace runs collapse to one space, and the
//! text is trimmed. The official code also runs `ftfy.fix_text` (mojibake repair), which has no
//! Rust port; prompts that are valid UTF-8 are unaffected by it in practice.
//! Tokenization: `tokenizer/tokenizer.json` with the end-of-sequence token appended, truncated
//! and right-padded to `max_length` (512 officially), with a 0/1 attention mask.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{ModelError, Result};

/// Maximum prompt length of the official pipeline, in tokens.
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// The official `prompt_clean`, minus ftfy (see the module docs).
pub fn clean_prompt(text: &str) -> String {
    let once = html_escape::decode_html_entities(text);
    let twice = html_escape::decode_html_entities(&once);
    twice.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Token ids and attention mask of a batch of prompts, both `[B, max_length]` i64.
#[derive(Debug, Clone)]
pub struct TokenizedPrompts {
    /// Token ids, right-padded with the pad id.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

/// A umT5 tokenizer configured like the official pipeline.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(tokenizer, max_length)
    }

    /// Wraps a tokenizer, setting truncation and fixed-length padding.
    pub fn new(mut tokenizer: Tokenizer, max_length: usize) -> Result<Self> {
        if max_length == 0 {
            return Err(ModelError::InvalidArgument("max_length must be > 0".into()));
        }
        let pad_token = ["<pad>", "[PAD]"]
            .into_iter()
            .find(|t| tokenizer.token_to_id(t).is_some())
            .unwrap_or("<pad>")
            .to_string();
        let pad_id = tokenizer.token_to_id(&pad_token).unwrap_or(0);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        Ok(Self {
            tokenizer,
            max_length,
        })
    }

    /// Padded length of every encoded prompt.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Cleans and tokenizes a batch of prompts.
    pub fn encode(&self, prompts: &[&str], device: &Device) -> Result<TokenizedPrompts> {
        let cleaned: Vec<String> = prompts.iter().map(|p| clean_prompt(p)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(cleaned, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(prompts.len() * self.max_length);
        let mut mask = Vec::with_capacity(prompts.len() * self.max_length);
        for enc in &encodings {
            ids.extend(enc.get_ids().iter().map(|&i| i as i64));
            mask.extend(enc.get_attention_mask().iter().map(|&m| m as i64));
        }
        let shape = (prompts.len(), self.max_length);
        Ok(TokenizedPrompts {
            input_ids: Tensor::from_vec(ids, shape, device)?,
            attention_mask: Tensor::from_vec(mask, shape, device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// A word-level tokenizer with a T5-style `</s>` post-processor.
    fn tiny_tokenizer() -> Tokenizer {
        let json = r#"{
          "version": "1.0",
          "truncation": null, "padding": null, "added_tokens": [],
          "normalizer": null,
          "pre_tokenizer": {"type": "Whitespace"},
          "post_processor": {"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
          "decoder": null,
          "model": {"type": "WordLevel", "unk_token": "<unk>",
            "vocab": {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "cat": 4, "runs": 5, "&": 6}}
        }"#;
        Tokenizer::from_str(json).unwrap()
    }

    #[test]
    fn cleans_entities_and_whitespace() {
        assert_eq!(clean_prompt("  a \n\t cat &amp;amp; dog "), "a cat & dog");
    }

    #[test]
    fn pads_to_max_length_with_eos_and_mask() {
        let tok = PromptTokenizer::new(tiny_tokenizer(), 6).unwrap();
        let out = tok.encode(&["a  cat runs", "cat"], &Device::Cpu).unwrap();
        let ids = out.input_ids.to_vec2::<i64>().unwrap();
        let mask = out.attention_mask.to_vec2::<i64>().unwrap();
        assert_eq!(ids[0], vec![3, 4, 5, 1, 0, 0]);
        assert_eq!(mask[0], vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(ids[1], vec![4, 1, 0, 0, 0, 0]);
        assert_eq!(mask[1], vec![1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn truncates_long_prompts() {
        let tok = PromptTokenizer::new(tiny_tokenizer(), 3).unwrap();
        let out = tok.encode(&["a cat runs a cat"], &Device::Cpu).unwrap();
        assert_eq!(out.input_ids.dims(), &[1, 3]);
        assert_eq!(
            out.attention_mask.to_vec2::<i64>().unwrap()[0],
            vec![1, 1, 1]
        );
    }
}
