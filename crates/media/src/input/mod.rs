//! Image input: `image_url` (https, data URI, or one of our stored files) to an RGB image.

mod address;
mod data_uri;
mod decode;
mod error;
mod http;
mod loader;
mod preview;
mod resolve;

pub use address::{classify, AddressPolicy, BlockReason, IpRange, IpRangeParseError};
pub use data_uri::{is_data_uri, parse_data_uri, DataUri};
pub use decode::{decode_image, DecodeLimits, DecodedImage, MAX_ASPECT_RATIO, MAX_SIDE};
pub use error::{ImageInputError, ValidationDetail, IMAGE_URL_FIELD};
pub use loader::{ClientBuildError, FetchedImage, ImageInputConfig, ImageLoader, LocalFiles};
pub use preview::{jpeg_preview, PreviewError};
pub use resolve::{BoxFuture, HostResolver, StaticResolver, SystemResolver};
