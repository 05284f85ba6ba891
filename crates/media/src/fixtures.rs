//! Test fixtures (the `test-fixtures` feature): image files built in memory, for the tests
//! of this crate and of the crates that take images through it.

use std::io::Write as _;

/// Appends one PNG chunk (length, type, data, CRC-32 of type and data) to `out`.
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A tiny PNG file whose header claims `w`×`h` RGB pixels (a decompression-bomb shape).
pub fn png_header_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A real, complete grayscale PNG of `w`×`h` pixels (one flat colour), compressed as it is
/// generated so that the raw pixels are never held: 1 × 50,000,000 is a few hundred KB.
pub fn png_flat_gray(w: u32, h: u32) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Scanlines: filter byte 0, then `w` pixels; whole rows per block when they are short.
    let row_len = w as usize + 1;
    const BLOCK: usize = 1 << 20;
    if row_len <= BLOCK {
        let per = BLOCK / row_len;
        let block: Vec<u8> = (0..per * row_len)
            .map(|i| if i % row_len == 0 { 0 } else { 128 })
            .collect();
        let mut left = h as usize;
        while left > 0 {
            let n = left.min(per);
            z.write_all(&block[..n * row_len]).expect("deflate");
            left -= n;
        }
    } else {
        let pixels = vec![128u8; BLOCK];
        for _ in 0..h {
            z.write_all(&[0]).expect("deflate");
            let mut left = w as usize;
            while left > 0 {
                let n = left.min(BLOCK);
                z.write_all(&pixels[..n]).expect("deflate");
                left -= n;
            }
        }
    }
    let idat = z.finish().expect("deflate");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}
