//! Print sheets: invite cards laid out nine to a page (three by three, each card 2 × 3.5 in,
//! edge to edge so one cut separates two cards), with cut marks in the margins, as a PDF.
//!
//! The cards are the PNG cards' layout drawn as vectors: the same lines of text (set once by
//! `layout`) as real text in subset fonts (`krilla` embeds only the glyphs used, with their
//! Unicode mapping, so the text can be searched and copied), and the QR code as filled
//! rectangles, which print sharp at any resolution.

use krilla::Document;
use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Rect, Transform};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};

use super::card::{self, Band, CardLayout};
use super::fonts::FACES;
use super::layout::{Block, Line};
use super::{CardText, Paper, RenderError};

/// Points per inch, PDF's unit.
const PT_PER_INCH: f32 = 72.0;
/// Card pixels to points.
const SCALE: f32 = PT_PER_INCH / card::DPI as f32;
const CARD_W: f32 = card::CARD_WIDTH as f32 * SCALE;
const CARD_H: f32 = card::CARD_HEIGHT as f32 * SCALE;
pub(super) const COLUMNS: usize = 3;
pub(super) const ROWS: usize = 3;
/// Cards per page.
pub(super) const PER_PAGE: usize = COLUMNS * ROWS;
/// Cut marks start this far from the cards' edge, so that a slightly off cut shows no line.
const MARK_GAP: f32 = 3.0;
/// The longest cut mark; on narrow margins marks are shorter.
const MARK_LENGTH: f32 = 12.0;
const MARK_WIDTH: f32 = 0.3;

impl Paper {
    /// Width and height in points.
    fn size(self) -> (f32, f32) {
        match self {
            Self::A4 => (595.28, 841.89),
            Self::Letter => (612.0, 792.0),
        }
    }
}

pub(super) fn pdf(
    cards: &[CardText<'_>],
    paper: Paper,
    layout: &CardLayout,
    drawn: &dyn Fn(usize),
) -> Result<Vec<u8>, RenderError> {
    // Every card's code is encoded before any page is written: a URL too long for a code
    // fails the whole sheet before work is wasted.
    let guests = cards
        .iter()
        .map(|c| layout.guest(c))
        .collect::<Result<Vec<_>, _>>()?;
    let fonts: Vec<Option<Font>> = FACES
        .iter()
        .map(|f| Font::new(krilla::Data::from(f.data), 0))
        .collect();
    let (width, height) = paper.size();
    let left = (width - COLUMNS as f32 * CARD_W) / 2.0;
    let top = (height - ROWS as f32 * CARD_H) / 2.0;

    let mut document = Document::new();
    let pages: Vec<_> = if guests.is_empty() {
        vec![&[][..]]
    } else {
        guests.chunks(PER_PAGE).collect()
    };
    let mut cards_drawn = 0;
    for page_guests in pages {
        let settings = PageSettings::from_wh(width, height)
            .ok_or_else(|| RenderError::Pdf("bad page size".to_owned()))?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        cut_marks(&mut surface, left, top);
        for (i, guest) in page_guests.iter().enumerate() {
            let x = left + (i % COLUMNS) as f32 * CARD_W;
            let y = top + (i / COLUMNS) as f32 * CARD_H;
            surface.push_transform(&Transform::from_row(SCALE, 0.0, 0.0, SCALE, x, y));
            draw_card(&mut surface, &fonts, layout, guest);
            surface.pop();
        }
        surface.finish();
        page.finish();
        cards_drawn += page_guests.len();
        drawn(cards_drawn);
    }
    document
        .finish()
        .map_err(|e| RenderError::Pdf(format!("{e:?}")))
}

/// Short hairlines in the margins on the line of every card edge, stopping short of the
/// cards.
fn cut_marks(surface: &mut Surface<'_>, left: f32, top: f32) {
    let right = left + COLUMNS as f32 * CARD_W;
    let bottom = top + ROWS as f32 * CARD_H;
    let mut path = PathBuilder::new();
    let mut mark = |x0: f32, y0: f32, x1: f32, y1: f32| {
        if let Some(rect) = Rect::from_ltrb(x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)) {
            path.push_rect(rect);
        }
    };
    let vertical = MARK_LENGTH.min(top - MARK_GAP - 4.0).max(0.0);
    let horizontal = MARK_LENGTH.min(left - MARK_GAP - 4.0).max(0.0);
    let half = MARK_WIDTH / 2.0;
    for c in 0..=COLUMNS {
        let x = left + c as f32 * CARD_W;
        mark(
            x - half,
            top - MARK_GAP,
            x + half,
            top - MARK_GAP - vertical,
        );
        mark(
            x - half,
            bottom + MARK_GAP,
            x + half,
            bottom + MARK_GAP + vertical,
        );
    }
    for r in 0..=ROWS {
        let y = top + r as f32 * CARD_H;
        mark(
            left - MARK_GAP,
            y - half,
            left - MARK_GAP - horizontal,
            y + half,
        );
        mark(
            right + MARK_GAP,
            y - half,
            right + MARK_GAP + horizontal,
            y + half,
        );
    }
    if let Some(path) = path.finish() {
        surface.set_fill(Some(fill(0)));
        surface.draw_path(&path);
    }
}

fn fill(shade: u8) -> Fill {
    Fill {
        paint: luma::Color::new(shade).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::default(),
    }
}

/// One card in card pixels (the caller's transform scales them to points).
fn draw_card(
    surface: &mut Surface<'_>,
    fonts: &[Option<Font>],
    layout: &CardLayout,
    guest: &card::GuestText,
) {
    for (band, block) in [
        (card::EVENT, &layout.event),
        (card::TITLE, &layout.title),
        (card::SCAN, &layout.scan),
        (card::HINT, &layout.hint),
        (card::NAME, &guest.name),
    ] {
        draw_band(surface, fonts, band, block);
    }
    let baselines = card::address_baselines(&guest.address);
    let lines = guest
        .address
        .iter()
        .flat_map(|b| b.lines.iter().map(move |l| (b, l)));
    for ((block, line), y) in lines.zip(baselines) {
        let x = 40.0 + (card::CARD_WIDTH as f32 - 80.0 - line.width).max(0.0) / 2.0;
        draw_line(surface, fonts, block, line, x, y, card::URL.shade);
    }

    // The rule under the question, as in the PNG.
    if let Some(rule) = Rect::from_xywh(100.0, 186.0, card::CARD_WIDTH as f32 - 200.0, 2.0) {
        let mut path = PathBuilder::new();
        path.push_rect(rule);
        if let Some(path) = path.finish() {
            surface.set_fill(Some(fill(200)));
            surface.draw_path(&path);
        }
    }

    let (qx, qy, module) = card::qr_place(&guest.matrix);
    let origin_x = qx + super::qr::QUIET_ZONE * module;
    let origin_y = qy + super::qr::QUIET_ZONE * module;
    let mut path = PathBuilder::new();
    for (row, col, run) in guest.matrix.dark_runs() {
        if let Some(rect) = Rect::from_xywh(
            (origin_x + col * module) as f32,
            (origin_y + row * module) as f32,
            (run * module) as f32,
            module as f32,
        ) {
            path.push_rect(rect);
        }
    }
    if let Some(path) = path.finish() {
        surface.set_fill(Some(fill(0)));
        surface.draw_path(&path);
    }
}

fn draw_band(surface: &mut Surface<'_>, fonts: &[Option<Font>], band: Band, block: &Block) {
    let mut y = band.baseline(block);
    for line in &block.lines {
        let x = 40.0 + (card::CARD_WIDTH as f32 - 80.0 - line.width).max(0.0) / 2.0;
        draw_line(surface, fonts, block, line, x, y, band.shade);
        y += band.pitch;
    }
}

/// Draws a line as text: one text object per run of glyphs from one face.
fn draw_line(
    surface: &mut Surface<'_>,
    fonts: &[Option<Font>],
    block: &Block,
    line: &Line,
    x: f32,
    y: f32,
    shade: u8,
) {
    let size = block.size;
    surface.set_fill(Some(fill(shade)));
    let mut rest = line.glyphs.as_slice();
    while let Some(first) = rest.first() {
        let run = rest.iter().take_while(|g| g.face == first.face).count();
        let (glyphs, tail) = rest.split_at(run);
        rest = tail;
        let Some(font) = fonts.get(usize::from(first.face)).and_then(Option::as_ref) else {
            continue;
        };
        let krilla_glyphs: Vec<KrillaGlyph> = glyphs
            .iter()
            .map(|g| {
                KrillaGlyph::new(
                    GlyphId::new(u32::from(g.id)),
                    g.advance / size,
                    g.x_offset / size,
                    g.y_offset / size,
                    0.0,
                    g.range.clone(),
                    None,
                )
            })
            .collect();
        surface.draw_glyphs(
            Point::from_xy(x + first.pen_x, y),
            &krilla_glyphs,
            font.clone(),
            &block.text,
            size,
            false,
        );
    }
}
