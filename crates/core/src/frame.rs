//! The one RGB image type: condition images, decoded uploads and output frames.

/// An RGB8 image (row-major, upright, 3 bytes per pixel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

/// One output frame, RGB8, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// 0-based frame index in the output video.
    pub index: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl VideoFrame {
    /// Frame `index` holding `image`.
    pub fn new(index: u32, image: RgbImage) -> Self {
        Self {
            index,
            width: image.width,
            height: image.height,
            data: image.data,
        }
    }

    /// The frame's pixels as an image (drops the index).
    pub fn into_image(self) -> RgbImage {
        RgbImage {
            width: self.width,
            height: self.height,
            data: self.data,
        }
    }
}
