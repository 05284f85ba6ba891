//! Output and upload files of the LongCat server.
//!
//! [`Storage`] puts files into a local directory (default `./data/files`) or an
//! S3-compatible bucket (`s3://bucket/prefix`, configured by the usual `AWS_*` variables),
//! streams them back with byte ranges for the server's `GET /files/*key`, and builds their
//! public URLs (`{public_base_url}/files/{key}`). [`keys`] fixes the key layout:
//! `outputs/<request_id>/<file_name>`, `uploads/<uuid>/<file_name>`, and the parts of a
//! multipart upload in `upload-parts/<uuid>/<n>`.
//!
//! See `docs/worker.md` for configuration.

mod error;
pub mod keys;
mod local_files;
mod storage;

pub use error::StorageError;
pub use keys::{
    output_folder, output_key, sanitize_file_name, upload_key, upload_part_key,
    upload_parts_folder, validate_key, UPLOADS_FOLDER, UPLOAD_PARTS_FOLDER,
};
pub use local_files::StoredImageFiles;
pub use storage::{Backend, FileContent, FileMeta, Storage, StoredFile, DEFAULT_LOCAL_DIR};
