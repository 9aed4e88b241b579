//! Drawing set text onto a [`Canvas`]: glyph outlines (TrueType and CFF, read by `ttf-parser`
//! through `rustybuzz`) are turned into anti-aliased coverage masks by `ab_glyph_rasterizer`
//! and blended in.
//!
//! Masks are cached per thread by face, glyph, size and quarter-pixel position: a job draws the
//! same few hundred glyphs thousands of times, and rasterising one costs tens of microseconds
//! while blending a cached one costs well under one. The cache holds at most
//! [`CACHE_LIMIT`] masks (a few megabytes) and is emptied when full.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use ab_glyph_rasterizer::{Rasterizer, point};
use rustybuzz::ttf_parser::{GlyphId, OutlineBuilder};

use super::canvas::Canvas;
use super::fonts;
use super::layout::{Block, Line};

/// Masks kept per thread before the cache starts over.
const CACHE_LIMIT: usize = 8192;
/// Horizontal positions a glyph is rasterised at within a pixel.
const SUBPIXEL_STEPS: f32 = 4.0;

/// A glyph's coverage, and where its top-left pixel sits relative to the pen on the baseline.
struct Mask {
    left: i64,
    top: i64,
    width: usize,
    coverage: Vec<u8>,
}

/// (face, glyph, size in 1/64 px, quarter-pixel x offset).
type Key = (u8, u16, u32, u8);

thread_local! {
    static CACHE: RefCell<HashMap<Key, Rc<Mask>>> = RefCell::new(HashMap::new());
}

/// Draws every line of `block`, centred between `x` and `x + width`, the first baseline at
/// `baseline` and the next ones `pitch` pixels apart.
pub(super) fn draw_centred(
    canvas: &mut Canvas,
    block: &Block,
    x: f32,
    width: f32,
    baseline: f32,
    pitch: f32,
    shade: u8,
) {
    let mut y = baseline;
    for line in &block.lines {
        let left = x + (width - line.width).max(0.0) / 2.0;
        draw_line(canvas, line, block.size, left, y, shade);
        y += pitch;
    }
}

/// Draws one line with its left end at `x` and its baseline at `y`.
pub(super) fn draw_line(canvas: &mut Canvas, line: &Line, size: f32, x: f32, y: f32, shade: u8) {
    let y_px = y.round();
    for glyph in &line.glyphs {
        let gx = x + glyph.pen_x + glyph.x_offset;
        let whole = gx.floor();
        // The fraction is in [0, 1), so the step is 0 to 3.
        let step = ((gx - whole) * SUBPIXEL_STEPS) as u8;
        let gy = y_px - glyph.y_offset.round();
        let Some(mask) = mask(glyph.face, glyph.id, size, step) else {
            continue;
        };
        canvas.blend(
            whole as i64 + mask.left,
            gy as i64 + mask.top,
            mask.width,
            &mask.coverage,
            shade,
        );
    }
}

fn mask(face: u8, id: u16, size: f32, step: u8) -> Option<Rc<Mask>> {
    let key = (face, id, (size * 64.0) as u32, step);
    CACHE.with(|cache| {
        if let Some(found) = cache.borrow().get(&key) {
            return Some(Rc::clone(found));
        }
        let made = Rc::new(rasterise(face, id, size, f32::from(step) / SUBPIXEL_STEPS)?);
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, Rc::clone(&made));
        Some(made)
    })
}

/// Rasterises one glyph at `size` pixels per em, shifted right by `shift` (< 1) pixels.
fn rasterise(face_index: u8, id: u16, size: f32, shift: f32) -> Option<Mask> {
    let face = fonts::face(face_index)?;
    let glyph = GlyphId(id);
    let bbox = face.glyph_bounding_box(glyph)?;
    let scale = size / face.units_per_em().max(1) as f32;
    let left = (f32::from(bbox.x_min) * scale + shift).floor();
    let right = (f32::from(bbox.x_max) * scale + shift).ceil();
    let top = (-f32::from(bbox.y_max) * scale).floor();
    let bottom = (-f32::from(bbox.y_min) * scale).ceil();
    let width = (right - left).max(0.0) as usize + 1;
    let height = (bottom - top).max(0.0) as usize + 1;
    // A glyph larger than the whole card is not drawn (a broken font, never ours).
    if width > 2048 || height > 2048 {
        return None;
    }
    let mut builder = Builder {
        rasterizer: Rasterizer::new(width, height),
        scale,
        dx: shift - left,
        dy: -top,
        start: point(0.0, 0.0),
        last: point(0.0, 0.0),
    };
    face.outline_glyph(glyph, &mut builder)?;
    let mut coverage = vec![0u8; width * height];
    builder.rasterizer.for_each_pixel(|i, alpha| {
        if let Some(c) = coverage.get_mut(i) {
            *c = (alpha.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    Some(Mask {
        left: left as i64,
        top: top as i64,
        width,
        coverage,
    })
}

/// Feeds a glyph's outline, in font units with y up, to the rasteriser in mask pixels, y down.
struct Builder {
    rasterizer: Rasterizer,
    scale: f32,
    dx: f32,
    dy: f32,
    start: ab_glyph_rasterizer::Point,
    last: ab_glyph_rasterizer::Point,
}

impl Builder {
    fn at(&self, x: f32, y: f32) -> ab_glyph_rasterizer::Point {
        point(x * self.scale + self.dx, -y * self.scale + self.dy)
    }
}

impl OutlineBuilder for Builder {
    fn move_to(&mut self, x: f32, y: f32) {
        self.start = self.at(x, y);
        self.last = self.start;
    }

    fn line_to(&mut self, x: f32, y: f32) {
        let p = self.at(x, y);
        self.rasterizer.draw_line(self.last, p);
        self.last = p;
    }

    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        let (c, p) = (self.at(x1, y1), self.at(x, y));
        self.rasterizer.draw_quad(self.last, c, p);
        self.last = p;
    }

    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        let (c1, c2, p) = (self.at(x1, y1), self.at(x2, y2), self.at(x, y));
        self.rasterizer.draw_cubic(self.last, c1, c2, p);
        self.last = p;
    }

    fn close(&mut self) {
        if self.last != self.start {
            self.rasterizer.draw_line(self.last, self.start);
        }
        self.last = self.start;
    }
}
