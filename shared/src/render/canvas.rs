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
    /// The rows drawn on since the canvas was made or [`Canvas::untouch`]ed, one bit a row:
    /// what a card's encoder checks before it reuses the rows a job encoded once.
    touched: Vec<u64>,
}

impl Canvas {
    /// A canvas filled with `shade`.
    pub(super) fn new(width: u32, height: u32, shade: u8) -> Self {
        Self {
            width,
            height,
            pixels: vec![shade; width as usize * height as usize],
            touched: vec![0; (height as usize).div_ceil(64)],
        }
    }

    /// Forgets which rows were drawn on, so that [`Canvas::touched`] reports only what is
    /// drawn from now on.
    pub(super) fn untouch(&mut self) {
        self.touched.fill(0);
    }

    /// Copies back from `base` (a canvas of the same size) every row drawn on since
    /// [`Canvas::untouch`], and forgets them: the canvas is `base` again at the cost of the
    /// rows drawn, not of the whole image.
    pub(super) fn restore(&mut self, base: &Self) {
        let stride = self.width as usize;
        for (word_index, word) in self.touched.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let row = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let span = row * stride..(row + 1) * stride;
                if let (Some(to), Some(from)) =
                    (self.pixels.get_mut(span.clone()), base.pixels.get(span))
                {
                    to.copy_from_slice(from);
                }
            }
        }
    }

    fn touch(&mut self, row: usize) {
        if let Some(word) = self.touched.get_mut(row / 64) {
            *word |= 1 << (row % 64);
        }
    }

    /// Whether any row of `rows` was drawn on since [`Canvas::untouch`].
    pub(super) fn touched(&self, rows: std::ops::Range<u32>) -> bool {
        rows.into_iter().any(|row| {
            let row = row as usize;
            self.touched
                .get(row / 64)
                .is_some_and(|word| word & (1 << (row % 64)) != 0)
        })
    }

    pub(super) fn width(&self) -> u32 {
        self.width
    }

    /// The rows from `row` down, one byte a pixel.
    pub(super) fn rows_from(&self, row: u32) -> &[u8] {
        let start = (row.min(self.height) as usize) * self.width as usize;
        self.pixels.get(start..).unwrap_or_default()
    }

    /// Row `row`, if the canvas has it.
    pub(super) fn row(&self, row: u32) -> Option<&[u8]> {
        let start = row as usize * self.width as usize;
        self.pixels.get(start..start + self.width as usize)
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
            self.touch(row);
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
            // In range: 0 <= cy < height.
            self.touch(cy as usize);
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

    /// Encodes the canvas as an 8-bit grayscale PNG (share QR codes and charts; invite cards
    /// have an encoder of their own, `deflate`).
    ///
    /// The fast deflate mode with the "up" filter suits these images: most rows repeat the row
    /// above (a QR module or a font pixel is several rows tall), which the filter turns into
    /// zeros that compress to almost nothing.
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
