//! Prompt tokenization as the official `_get_t5_prompt_embeds` does it.
//!
//! Each prompt is cleaned with [`crate::text_clean::prompt_clean`], then tokenized with the
//! checkpoint's `tokenizer/tokenizer.json` (the umT5 sentencepiece model) with special tokens
//! (the trailing `</s>`), truncated to `max_length` tokens (512 officially; the `</s>` is kept)
//! and right-padded with the pad token up to exactly `max_length`. The attention mask is 1 for
//! real tokens and 0 for padding.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::text_clean::prompt_clean;
use crate::{ModelError, Result};

/// The official `prompt_clean` (see [`crate::text_clean`] for what differs from ftfy).
pub fn clean_prompt(text: &str) -> String {
    prompt_clean(text)
}

/// Vocabulary size of [`PromptTokenizer::builtin_tiny`] (3 special tokens + 190 pieces).
pub const TINY_VOCAB_SIZE: usize = 3 + 2 * 95;

/// `▁c` and `c` for every printable ASCII character `c`.
fn tiny_pieces() -> Vec<String> {
    let chars = (0x20u8..0x7f).map(char::from);
    chars
        .clone()
        .map(|c| format!("\u{2581}{c}"))
        .chain(chars.map(String::from))
        .collect()
}

/// The official `max_sequence_length`.
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// Token ids and attention mask of a batch of prompts, both `[B, L]` i64.
#[derive(Debug, Clone)]
pub struct TokenizedPrompts {
    /// Token ids, right-padded with the pad id.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

/// The umT5 tokenizer set up for fixed-length prompt encoding.
#[derive(Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

/// The pad token named by `tokenizer_config.json` next to `tokenizer.json`, if any.
fn configured_pad_token(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pad = value.get("pad_token")?;
    pad.as_str()
        .or_else(|| pad.get("content").and_then(|c| c.as_str()))
        .map(str::to_string)
}

impl PromptTokenizer {
    /// Loads `tokenizer.json` (the pad token comes from a sibling `tokenizer_config.json`
    /// when there is one, else `<pad>`).
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        let pad = path
            .parent()
            .and_then(configured_pad_token)
            .unwrap_or_else(|| "<pad>".to_string());
        Self::with_pad_token(tokenizer, &pad, max_length)
    }

    /// Wraps a tokenizer whose pad token is `<pad>` (umT5).
    pub fn new(tokenizer: Tokenizer, max_length: usize) -> Result<Self> {
        Self::with_pad_token(tokenizer, "<pad>", max_length)
    }

    /// Wraps a tokenizer; `pad_token` must be in its vocabulary.
    pub fn with_pad_token(
        mut tokenizer: Tokenizer,
        pad_token: &str,
        max_length: usize,
    ) -> Result<Self> {
        if max_length == 0 {
            return Err(ModelError::InvalidArgument(
                "tokenizer max_length must be at least 1".into(),
            ));
        }
        let pad_id = tokenizer.token_to_id(pad_token).ok_or_else(|| {
            ModelError::Tokenizer(format!("pad token `{pad_token}` is not in the vocabulary"))
        })?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(max_length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token: pad_token.to_string(),
        }));
        Ok(Self {
            tokenizer,
            max_length,
        })
    }

    /// The built-in tokenizer of the tiny random model (no file, no download): umT5's
    /// layout (`<pad>` 0, `</s>` 1, `<unk>` 2) over [`TINY_VOCAB_SIZE`] pieces: printable
    /// ASCII characters, alone and after the word-start marker.
    pub fn builtin_tiny(max_length: usize) -> Result<Self> {
        let pieces = tiny_pieces();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let tokenizer = Tokenizer::from_bytes(tiny_tokenizer_json(&refs).as_bytes())
            .map_err(|e| ModelError::Tokenizer(format!("built-in tokenizer: {e}")))?;
        Self::new(tokenizer, max_length)
    }

    /// The fixed sequence length L.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Cleans and tokenizes prompts; returns per prompt `(ids, mask)`, each of length L.
    pub fn encode_ids(&self, prompts: &[&str]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let cleaned: Vec<String> = prompts.iter().map(|p| prompt_clean(p)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(cleaned, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| (e.get_ids().to_vec(), e.get_attention_mask().to_vec()))
            .collect())
    }

    /// Cleans and tokenizes a batch of prompts into `[B, L]` i64 ids and mask on `device`.
    pub fn encode(&self, prompts: &[&str], device: &Device) -> Result<TokenizedPrompts> {
        if prompts.is_empty() {
            return Err(ModelError::InvalidArgument("no prompt to tokenize".into()));
        }
        let rows = self.encode_ids(prompts)?;
        let len = self.max_length;
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for (row_ids, row_mask) in &rows {
            if row_ids.len() != len || row_mask.len() != len {
                return Err(ModelError::Tokenizer(format!(
                    "expected {len} tokens after padding, got {}",
                    row_ids.len()
                )));
            }
            ids.extend(row_ids.iter().map(|&i| i64::from(i)));
            mask.extend(row_mask.iter().map(|&m| i64::from(m)));
        }
        let shape = (rows.len(), len);
        Ok(TokenizedPrompts {
            input_ids: Tensor::from_vec(ids, shape, device)?,
            attention_mask: Tensor::from_vec(mask, shape, device)?,
        })
    }
}

/// A small umT5-like `tokenizer.json` (Unigram model, Metaspace pre-tokenizer, `</s>`
/// appended): `<pad>`=0, `</s>`=1, `<unk>`=2, then the given pieces from id 3.
pub fn tiny_tokenizer_json(pieces: &[&str]) -> String {
    let mut vocab = vec![
        serde_json::json!(["<pad>", 0.0]),
        serde_json::json!(["</s>", 0.0]),
        serde_json::json!(["<unk>", 0.0]),
    ];
    for (i, p) in pieces.iter().enumerate() {
        vocab.push(serde_json::json!([p, -1.0 - i as f64 * 0.01]));
    }
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}",
            "prepend_scheme": "always", "split": true},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}
        },
        "decoder": null,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": false}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECES: [&str; 6] = [
        "\u{2581}a",
        "\u{2581}cat",
        "\u{2581}red",
        "\u{2581}ball",
        "&",
        "s",
    ];

    fn tokenizer(max_length: usize) -> (tempfile::TempDir, PromptTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tiny_tokenizer_json(&PIECES)).unwrap();
        let tok = PromptTokenizer::from_file(&path, max_length).unwrap();
        (dir, tok)
    }

    #[test]
    fn pads_to_max_length_with_eos_and_mask() {
        let (_dir, tok) = tokenizer(6);
        let out = tok
            .encode(&["a cat", "  a   red\n ball "], &Device::Cpu)
            .unwrap();
        assert_eq!(out.input_ids.dims(), &[2, 6]);
        let ids = out.input_ids.to_vec2::<i64>().unwrap();
        let mask = out.attention_mask.to_vec2::<i64>().unwrap();
        assert_eq!(ids[0], vec![3, 4, 1, 0, 0, 0]);
        assert_eq!(mask[0], vec![1, 1, 1, 0, 0, 0]);
        assert_eq!(ids[1], vec![3, 5, 6, 1, 0, 0]);
        assert_eq!(mask[1], vec![1, 1, 1, 1, 0, 0]);
    }

    #[test]
    fn builtin_tiny_covers_ascii() {
        let tok = PromptTokenizer::builtin_tiny(16).unwrap();
        let rows = tok.encode_ids(&["A cat, 2 dogs!"]).unwrap();
        let (ids, mask) = &rows[0];
        assert_eq!(ids.len(), 16);
        let real: Vec<u32> = ids
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m == 1)
            .map(|(i, _)| *i)
            .collect();
        assert!(
            real.iter()
                .all(|&i| i != 2 && (i as usize) < TINY_VOCAB_SIZE),
            "{real:?}"
        );
        assert_eq!(real.last(), Some(&1));
        let other = tok.encode_ids(&["A dog, 2 cats!"]).unwrap();
        assert_ne!(rows[0].0, other[0].0);
    }

    #[test]
    fn truncates_but_keeps_eos() {
        let (_dir, tok) = tokenizer(3);
        let rows = tok.encode_ids(&["a red cat ball"]).unwrap();
        assert_eq!(rows[0].0, vec![3, 5, 1]);
        assert_eq!(rows[0].1, vec![1, 1, 1]);
    }

    #[test]
    fn cleans_html_before_tokenizing() {
        let (_dir, tok) = tokenizer(8);
        assert_eq!(clean_prompt("  a \n\t cat &amp;amp; dog "), "a cat & dog");
        let clean = tok.encode_ids(&["cat&amp;amp;s"]).unwrap();
        let plain = tok.encode_ids(&["cat&s"]).unwrap();
        assert_eq!(clean[0].0, plain[0].0);
        let empty = tok.encode_ids(&[""]).unwrap();
        assert_eq!(empty[0].0[0], 1, "an empty prompt is just </s>");
    }

    #[test]
    fn pad_token_from_config_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tiny_tokenizer_json(&PIECES)).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"pad_token": {"content": "<nope>"}}"#,
        )
        .unwrap();
        let err = PromptTokenizer::from_file(&path, 4).unwrap_err();
        assert!(err.to_string().contains("<nope>"), "{err}");
        let missing = PromptTokenizer::from_file(&dir.path().join("x.json"), 4).unwrap_err();
        assert!(missing.to_string().contains("x.json"), "{missing}");
    }
}
