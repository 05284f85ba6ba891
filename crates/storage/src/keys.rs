//! The key layout of stored files and the rules every key obeys.
//!
//! Keys are relative, `/`-separated paths made of `[A-Za-z0-9._-]` segments (no empty, `.` or
//! `..` segment), so they are safe as file paths, object names and URL paths unchanged.

use crate::StorageError;

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// Longest file name kept by [`sanitize_file_name`], in bytes.
pub const MAX_FILE_NAME_LEN: usize = 128;

/// Key of a job's output file: `outputs/<request_id>/<file_name>`.
pub fn output_key(request_id: &str, file_name: &str) -> Result<String, StorageError> {
    let key = format!(
        "outputs/{}/{}",
        sanitize_segment(request_id),
        sanitize_file_name(file_name)
    );
    validate_key(&key)?;
    Ok(key)
}

/// The folder holding a job's output files: `outputs/<request_id>`.
pub fn output_folder(request_id: &str) -> String {
    format!("outputs/{}", sanitize_segment(request_id))
}

/// The folder holding every upload.
pub const UPLOADS_FOLDER: &str = "uploads";

/// A fresh key for an uploaded file: `uploads/<uuid>/<file_name>`.
pub fn upload_key(file_name: &str) -> String {
    format!(
        "{UPLOADS_FOLDER}/{}/{}",
        uuid::Uuid::new_v4(),
        sanitize_file_name(file_name)
    )
}

/// The folder where the parts of multipart uploads wait for `complete`.
pub const UPLOAD_PARTS_FOLDER: &str = "upload-parts";

/// The folder holding the parts of the multipart upload to `upload_key`
/// (`uploads/<uuid>/<name>` → `upload-parts/<uuid>`), or `None` for another kind of key.
/// Parts live in storage so that any server sharing it can take the next part or `complete`.
pub fn upload_parts_folder(upload_key: &str) -> Option<String> {
    let rest = upload_key.strip_prefix(UPLOADS_FOLDER)?.strip_prefix('/')?;
    let (id, name) = rest.split_once('/')?;
    if id.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some(format!("{UPLOAD_PARTS_FOLDER}/{id}"))
}

/// Key of part `n` in a parts folder from [`upload_parts_folder`].
pub fn upload_part_key(parts_folder: &str, n: u32) -> String {
    format!("{parts_folder}/{n}")
}

/// A file name reduced to `[A-Za-z0-9._-]` (others become `_`), without leading dots,
/// at most [`MAX_FILE_NAME_LEN`] bytes (the extension is kept); `upload.bin` when nothing is left.
pub fn sanitize_file_name(name: &str) -> String {
    // Only the last path component counts (clients may send "C:\\dir\\a.png" or "dir/a.png").
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned = sanitize_segment(base);
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '_') {
        return "upload.bin".into();
    }
    if cleaned.len() <= MAX_FILE_NAME_LEN {
        return cleaned.to_string();
    }
    match cleaned.rsplit_once('.') {
        Some((stem, ext)) if ext.len() < 16 && !stem.is_empty() => {
            let keep = MAX_FILE_NAME_LEN - ext.len() - 1;
            format!("{}.{ext}", &stem[..keep.min(stem.len())])
        }
        _ => cleaned[..MAX_FILE_NAME_LEN].to_string(),
    }
}

fn sanitize_segment(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out == "." || out == ".." {
        "_".into()
    } else {
        out
    }
}

/// Checks that `key` follows the key rules (see the module docs).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: key.chars().take(MAX_KEY_LEN).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("it is too long");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("it has an empty path segment");
        }
        if segment == "." || segment == ".." {
            return bad("it has a '.' or '..' segment");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad("only A-Z, a-z, 0-9, '.', '_', '-' and '/' are allowed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_upload_layout() {
        assert_eq!(
            output_key("8e1c-42", "output.mp4").unwrap(),
            "outputs/8e1c-42/output.mp4"
        );
        let k = upload_key("my photo.PNG");
        let parts: Vec<&str> = k.split('/').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "uploads");
        assert!(uuid::Uuid::parse_str(parts[1]).is_ok());
        assert_eq!(parts[2], "my_photo.PNG");
        assert_ne!(upload_key("a.png"), upload_key("a.png"));
    }

    #[test]
    fn upload_parts_live_beside_their_upload() {
        let key = upload_key("clip.mp4");
        let folder = upload_parts_folder(&key).unwrap();
        let id = key.split('/').nth(1).unwrap();
        assert_eq!(folder, format!("upload-parts/{id}"));
        assert_eq!(upload_part_key(&folder, 7), format!("upload-parts/{id}/7"));
        assert!(validate_key(&upload_part_key(&folder, 10_000)).is_ok());
        assert_eq!(upload_parts_folder("outputs/x/output.mp4"), None);
        assert_eq!(upload_parts_folder("uploads/x"), None);
        assert_eq!(upload_parts_folder("uploads/a/b/c"), None);
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\x\\évé.jpg"), "_v_.jpg");
        assert_eq!(sanitize_file_name(".hidden"), "hidden");
        assert_eq!(sanitize_file_name(""), "upload.bin");
        assert_eq!(sanitize_file_name(".."), "upload.bin");
        assert_eq!(sanitize_file_name("%%%"), "upload.bin");
        let long = format!("{}.jpeg", "a".repeat(300));
        let s = sanitize_file_name(&long);
        assert_eq!(s.len(), MAX_FILE_NAME_LEN);
        assert!(s.ends_with(".jpeg"));
        assert!(validate_key(&output_key("../x", "../y").unwrap()).is_ok());
        assert_eq!(output_key("..", "a").unwrap(), "outputs/_/a");
    }

    #[test]
    fn keys_are_validated() {
        for good in ["a", "outputs/x/output.mp4", "uploads/1-2/a_b.c"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", "a//b", "a/", "../a", "a/./b", "a b", "a\\b", "a?x", "a%2e",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
