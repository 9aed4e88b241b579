//! Images and documents Tally hands out: invite cards with a QR code (PNG, and PDF print
//! sheets), the poll's share QR code, and a bar chart of results.
//!
//! Everything here is a pure function from text to bytes: no I/O, no async, no clock, and the
//! same input always gives the same bytes, so callers may cache by input. No input makes these
//! functions panic: text of any length or script is cleaned, shaped and bounded to its place
//! (see `layout`), characters no embedded font has (emoji among them) are left out, and the
//! only failures are a URL too long for a QR code and encoder errors, reported as
//! [`RenderError`].
//!
//! Card text is set in embedded Noto fonts (`fonts`) with real shaping, so Latin with
//! diacritics, Greek, Cyrillic, CJK, Arabic and Hebrew (right to left, joined) and Devanagari
//! read as written. A job sets what its cards share once ([`CardLayout::new`]) and then
//! renders each guest ([`CardLayout::png`], or [`pdf_sheets`] for print).
//!
//! PNGs are 8-bit grayscale: colour would add nothing to a black-and-white code, and one byte
//! per pixel keeps encoding fast and the files small.
//!
//! # Layout
//! - `mod.rs`: the public API and [`RenderError`].
//! - `card`: the invite card's layout ([`CardLayout`]: bands for event, question, name, QR
//!   code, "Scan to vote" and the address to type).
//! - `sheet`: print sheets, nine cards a page with cut marks, as a PDF (`krilla`).
//! - `layout`: cleaning, font fallback, shaping (`rustybuzz`), bidi order, wrapping, ellipsis.
//! - `raster`: glyph outlines to anti-aliased masks (`ab_glyph_rasterizer`), cached per thread.
//! - `fonts`: the embedded fonts and which one draws a character.
//! - `chart`: the results chart's layout (title, one labelled bar per option), its text set
//!   in the cards' fonts.
//! - `qr`: encoding a URL into a QR matrix, drawing it with its quiet zone, and SVG output.
//! - `deflate`: the cards' PNG encoder (fixed-Huffman zlib of runs and repeated rows,
//!   resumable from the rows a job's cards share).
//! - `canvas`: a grayscale pixel buffer (rectangles, coverage masks) and PNG encoding.
//! - `tests`: round trips through the PNG decoder and a QR reader (`rqrr`); the OCR and PDF
//!   checks with external tools are in `tests/tests/api/cards.rs`.

mod canvas;
mod card;
mod chart;
mod deflate;
mod fonts;
mod layout;
mod qr;
mod raster;
mod sheet;

#[cfg(test)]
mod tests;

pub use card::CardLayout;
use qr::Matrix;

/// What one guest's card shows besides what the job's [`CardLayout`] holds.
#[derive(Debug, Clone, Copy)]
pub struct CardText<'a> {
    /// Set on up to two lines, then cut with an ellipsis.
    pub guest_name: &'a str,
    /// Encoded in the QR code byte for byte, and shown (without its scheme) for typing unless
    /// `short_url` is given.
    pub url: &'a str,
    /// A shorter address to show for typing instead of `url`, when there is one.
    pub short_url: Option<&'a str>,
}

/// Paper for print sheets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paper {
    /// 210 × 297 mm.
    A4,
    /// US Letter, 8.5 × 11 in.
    Letter,
}

/// Cards per page of [`pdf_sheets`].
pub const CARDS_PER_SHEET: usize = sheet::PER_PAGE;

/// Print-ready sheets of `cards` in `layout`: nine 2 × 3.5 in cards a page (three by three,
/// edge to edge), cut marks in the margins, text as real text in subset fonts, QR codes as
/// vectors. A chunk of the job or all of it; no cards give one blank page.
pub fn pdf_sheets(
    cards: &[CardText<'_>],
    paper: Paper,
    layout: &CardLayout,
) -> Result<Vec<u8>, RenderError> {
    sheet::pdf(cards, paper, layout, &|_| {})
}

/// [`pdf_sheets`], calling `drawn` with the number of cards drawn so far after each page, so
/// that a job can report its progress while a large document is made.
pub fn pdf_sheets_with_progress(
    cards: &[CardText<'_>],
    paper: Paper,
    layout: &CardLayout,
    drawn: &dyn Fn(usize),
) -> Result<Vec<u8>, RenderError> {
    sheet::pdf(cards, paper, layout, drawn)
}

/// What an invite card shows, for a single card. A job's cards share their question: they
/// are made faster with one [`CardLayout`] and [`CardLayout::png`] per guest.
#[derive(Debug, Clone, Copy)]
pub struct InviteCard<'a> {
    pub question: &'a str,
    pub guest_name: &'a str,
    /// Encoded in the QR code byte for byte, and shown for typing.
    pub url: &'a str,
}

/// One option of a results chart.
#[derive(Debug, Clone, Copy)]
pub struct Bar<'a> {
    pub label: &'a str,
    pub votes: u64,
}

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The URL does not fit in the largest QR code at level M (2331 bytes).
    #[error("the URL is too long for a QR code ({len} bytes)")]
    DataTooLong { len: usize },
    /// The QR encoder refused the data for another reason.
    #[error("QR encoding failed: {0}")]
    Qr(qrcode::types::QrError),
    /// The PNG encoder failed. Encoding into memory should not, but the error is kept rather
    /// than hidden.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] image::ImageError),
    /// The PDF writer failed (a font it could not embed, say).
    #[error("PDF writing failed: {0}")]
    Pdf(String),
}

/// Side of a standalone QR PNG, in pixels, that the module size aims for.
const QR_PNG_TARGET_PX: u32 = 480;
/// Smallest module of a standalone QR PNG, for the densest codes; below this, prints blur.
const QR_PNG_MIN_MODULE_PX: u32 = 4;
/// Smallest side of the SVG's viewport, in user units.
const QR_SVG_MIN_PX: u32 = 256;

/// A PNG invite card (600 × 1050 px, 2 × 3.5 in at 300 DPI): the poll question, the guest's
/// name, the QR code of `url` (level M, with a four-module quiet zone), "Scan to vote" and the
/// address to type. It sets the question anew each call; a job uses one [`CardLayout`].
pub fn invite_card_png(card: &InviteCard<'_>) -> Result<Vec<u8>, RenderError> {
    CardLayout::new(card.question, None).png(&CardText {
        guest_name: card.guest_name,
        url: card.url,
        short_url: None,
    })
}

/// Whether `url` fits in a card's QR code, without drawing anything: what a job of print
/// sheets checks per card before its PDF is drawn.
pub fn check_card_url(url: &str) -> Result<(), RenderError> {
    Matrix::encode(url).map(|_| ())
}

/// The poll's share QR code as a PNG: level M, a four-module quiet zone, and whole-pixel
/// modules sized so the image is about 480 px square (larger for very long URLs).
pub fn qr_png(url: &str) -> Result<Vec<u8>, RenderError> {
    let matrix = Matrix::encode(url)?;
    let modules = matrix.size_with_quiet_zone();
    let module_px = (QR_PNG_TARGET_PX / modules.max(1)).max(QR_PNG_MIN_MODULE_PX);
    let side = modules.saturating_mul(module_px);
    let mut canvas = canvas::Canvas::new(side, side, canvas::WHITE);
    matrix.draw(&mut canvas, 0, 0, module_px);
    canvas.encode_png()
}

/// The poll's share QR code as an SVG document (level M, with its quiet zone), for pages
/// that scale it themselves.
pub fn qr_svg(url: &str) -> Result<String, RenderError> {
    Ok(Matrix::encode(url)?.svg(QR_SVG_MIN_PX))
}

/// A PNG horizontal bar chart of results, 600 px wide: the question as a title, then per
/// option its label, its votes and share of the total, and a bar scaled to the largest count.
/// At most 20 options are drawn; the rest are counted in a final "+N more" line.
pub fn results_chart_png(question: &str, bars: &[Bar<'_>]) -> Result<Vec<u8>, RenderError> {
    chart::render(question, bars)
}
