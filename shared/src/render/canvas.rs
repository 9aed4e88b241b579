//! A grayscale pixel buffer that only knows how to fill rectangles and become a PNG.
//!
//! Everything Tally draws is made of axis-aligned rectangles (QR modules, font pixels, bars),
//! so filling row slices is all the drawing needed, and it is much faster than per-pixel calls
//! through `image`'s generic API.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use super::RenderError;

/// The page colour of every image.
pub(super) const WHITE: u8 = 255;
/// Text and QR modules: full black gives scanners the most contrast.
pub(super) const BLACK: u8 = 0;

/// An 8-bit grayscale image, row-major, one byte per pixel.
#[derive(Clone)]
pub(super) struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `shade`.
    pub(super) fn new(width: u32, height: u32, shade: u8) -> Self {
        Self {
            width,
            height,
            pixels: vec![shade; width as usize * height as usize],
        }
    }

    /// Fills a rectangle, clipping whatever falls outside the canvas.
    pub(super) fn fill_rect(&mut self, x: u32, y: u32, width: u32, height: u32, shade: u8) {
        let x0 = x.min(self.width) as usize;
        let x1 = x.saturating_add(width).min(self.width) as usize;
        let y0 = y.min(self.height) as usize;
        let y1 = y.saturating_add(height).min(self.height) as usize;
        if x0 >= x1 {
            return;
        }
        let stride = self.width as usize;
        for row in y0..y1 {
            let start = row * stride;
            // The bounds are clipped above, so this always finds the slice; `get_mut` keeps
            // an arithmetic slip from ever becoming a panic in a request handler.
            if let Some(span) = self.pixels.get_mut(start + x0..start + x1) {
                span.fill(shade);
            }
        }
    }

    /// Darkens the canvas towards `shade` through a coverage mask (`width` bytes per row, 0
    /// for untouched to 255 for fully `shade`) whose top-left pixel lands on (`x`, `y`).
    /// Whatever falls outside the canvas is clipped.
    ///
    /// The clipping is worked out once per mask, and each row is a loop over two slices of one
    /// length, which the compiler vectorises: text is most of what a card draws per guest.
    pub(super) fn blend(&mut self, x: i64, y: i64, width: usize, coverage: &[u8], shade: u8) {
        if width == 0 {
            return;
        }
        let (canvas_w, canvas_h) = (i64::from(self.width), i64::from(self.height));
        let mask_w = i64::try_from(width).unwrap_or(i64::MAX);
        // The mask's columns that land on the canvas.
        let skip = (-x).clamp(0, mask_w);
        let take = (canvas_w - x).clamp(0, mask_w) - skip;
        if take <= 0 {
            return;
        }
        let (skip, take) = (skip as usize, take as usize);
        let left = (x.max(0)) as usize;
        let stride = self.width as usize;
        let s = u32::from(shade);
        for (row, mask) in (0i64..).zip(coverage.chunks_exact(width)) {
            let cy = y + row;
            if cy < 0 {
                continue;
            }
            if cy >= canvas_h {
                break;
            }
            let start = cy as usize * stride + left;
            let (Some(pixels), Some(alphas)) = (
                self.pixels.get_mut(start..start + take),
                mask.get(skip..skip + take),
            ) else {
                continue;
            };
            for (pixel, &alpha) in pixels.iter_mut().zip(alphas) {
                let (p, a) = (u32::from(*pixel), u32::from(alpha));
                // (p * (255 - a) + s * a) / 255, rounded, with the division done as a
                // multiply and shift (exact for every value this can take).
                let mix = p * (255 - a) + s * a + 128;
                *pixel = ((mix + (mix >> 8)) >> 8) as u8;
            }
        }
    }

    /// Encodes the canvas as an 8-bit grayscale PNG.
    ///
    /// The fast deflate mode with the "up" filter suits these images: most rows repeat the row
    /// above (a QR module or a font pixel is several rows tall), which the filter turns into
    /// zeros that compress to almost nothing. Measured on an invite card: about 70 µs and
    /// 13 KB, against 300 µs and 8 KB for zlib level 1 and 1.3 ms and 4 KB for the default
    /// level. Encoding is a third of a card's time, so speed wins over the last kilobytes.
    pub(super) fn encode_png(&self) -> Result<Vec<u8>, RenderError> {
        let mut png = Vec::with_capacity(16 * 1024);
        PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Up).write_image(
            &self.pixels,
            self.width,
            self.height,
            ExtendedColorType::L8,
        )?;
        Ok(png)
    }

    /// Like [`Canvas::encode_png`], with a `pHYs` chunk saying the image is `dpi` pixels per
    /// inch, so that print dialogs size it right instead of assuming 72 or 96.
    pub(super) fn encode_png_dpi(&self, dpi: u32) -> Result<Vec<u8>, RenderError> {
        let png = self.encode_png()?;
        Ok(with_phys(png, dpi))
    }
}

/// The signature (8 bytes) and the IHDR chunk (4 length, 4 type, 13 data, 4 CRC) that begin
/// every PNG; `pHYs` must come after IHDR and before the image data.
const AFTER_IHDR: usize = 8 + 4 + 4 + 13 + 4;

/// Inserts a `pHYs` chunk (pixels per metre on both axes, unit: metre) after IHDR.
fn with_phys(mut png: Vec<u8>, dpi: u32) -> Vec<u8> {
    if png.get(12..16) != Some(b"IHDR".as_slice()) || png.len() < AFTER_IHDR {
        return png;
    }
    // 1 inch = 0.0254 m, rounded to the nearest whole pixel per metre (300 DPI: 11,811).
    let per_metre = (u64::from(dpi) * 10_000 + 127) / 254;
    let per_metre = u32::try_from(per_metre).unwrap_or(u32::MAX).to_be_bytes();
    let mut body = Vec::with_capacity(13);
    body.extend_from_slice(b"pHYs");
    body.extend_from_slice(&per_metre);
    body.extend_from_slice(&per_metre);
    body.push(1);
    let crc = crc32fast::hash(&body).to_be_bytes();
    let mut chunk = Vec::with_capacity(21);
    chunk.extend_from_slice(&9u32.to_be_bytes());
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc);
    png.splice(AFTER_IHDR..AFTER_IHDR, chunk);
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_clipped_to_the_canvas() {
        let mut canvas = Canvas::new(4, 3, WHITE);
        canvas.fill_rect(2, 1, 10, 10, BLACK);
        canvas.fill_rect(u32::MAX, u32::MAX, u32::MAX, u32::MAX, BLACK);
        canvas.fill_rect(0, 0, 0, 5, BLACK);
        let expected = [
            [WHITE, WHITE, WHITE, WHITE],
            [WHITE, WHITE, BLACK, BLACK],
            [WHITE, WHITE, BLACK, BLACK],
        ];
        assert_eq!(canvas.pixels, expected.concat());
    }

    #[test]
    fn blending_mixes_exactly_and_clips_at_every_edge() {
        // The fast mix agrees with the exact rounded one for every pixel, alpha and shade.
        for p in 0..=255u32 {
            for a in 0..=255u32 {
                for s in [0u32, 32, 96, 255] {
                    let exact = ((p * (255 - a) + s * a) as f64 / 255.0).round() as u32;
                    let mix = p * (255 - a) + s * a + 128;
                    assert_eq!((mix + (mix >> 8)) >> 8, exact, "{p} {a} {s}");
                }
            }
        }
        let mut canvas = Canvas::new(3, 2, WHITE);
        canvas.blend(-1, -1, 3, &[255; 9], BLACK);
        canvas.blend(2, 1, 2, &[255, 255], BLACK);
        let expected = [[BLACK, BLACK, WHITE], [BLACK, BLACK, BLACK]];
        assert_eq!(canvas.pixels, expected.concat());
        canvas.blend(5, 0, 1, &[255], BLACK);
        canvas.blend(0, 7, 1, &[255], BLACK);
        assert_eq!(canvas.pixels, expected.concat());
    }
}
