//! The condition image: local files become data URIs, then everything goes through
//! `longcat_media`'s `ImageLoader` (the server's fetcher: SSRF guard, limits, decoding).

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::Engine as _;
use longcat_media::{ImageInputConfig, ImageLoader};
use longcat_pipeline::RgbImage;

/// `Some(data URI)` for a local path or `file://` URL, `None` for what the endpoint takes
/// as is (http(s) URLs and data URIs).
pub fn local_to_data_uri(image_url: &str) -> anyhow::Result<Option<String>> {
    let trimmed = image_url.trim();
    let lower = trimmed.to_ascii_lowercase();
    if ["http://", "https://", "data:"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Ok(None);
    }
    let path = if lower.starts_with("file:") {
        url::Url::parse(trimmed)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .with_context(|| format!("`{trimmed}` is not a valid file:// URL"))?
    } else {
        PathBuf::from(trimmed)
    };
    if trimmed.is_empty() {
        return Ok(None);
    }
    let max = ImageInputConfig::default().max_bytes;
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("cannot read image {}", path.display()))?;
    if meta.len() > max {
        bail!(
            "image {} is {} bytes; at most {max} are accepted",
            path.display(),
            meta.len()
        );
    }
    let bytes =
        std::fs::read(&path).with_context(|| format!("cannot read image {}", path.display()))?;
    let mime = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "application/octet-stream",
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(Some(format!("data:{mime};base64,{b64}")))
}

/// Fetches (if remote) and decodes the image with the server's loader and default limits.
pub fn load(image_url: &str) -> anyhow::Result<RgbImage> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let loader = ImageLoader::new(ImageInputConfig::default())?;
    let decoded = runtime
        .block_on(loader.load(image_url))
        .map_err(|e| anyhow::anyhow!("image_url: {}", e.message()))?;
    Ok(RgbImage {
        width: decoded.width,
        height: decoded.height,
        data: decoded.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pass_and_paths_become_data_uris() {
        assert!(local_to_data_uri("https://x.test/a.png").unwrap().is_none());
        assert!(local_to_data_uri("data:image/png;base64,AAAA")
            .unwrap()
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        std::fs::write(&path, b"\x89PNG").unwrap();
        let uri = local_to_data_uri(path.to_str().unwrap()).unwrap().unwrap();
        assert_eq!(uri, "data:image/png;base64,iVBORw==");
        let file_url = format!("file://{}", path.display());
        assert_eq!(local_to_data_uri(&file_url).unwrap().unwrap(), uri);
        assert!(local_to_data_uri("/nonexistent/x.png").is_err());
    }
}
