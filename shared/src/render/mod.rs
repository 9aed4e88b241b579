//! Images Tally hands out: invite cards with a QR code, the poll's share QR code, and a bar
//! chart of results.
//!
//! Everything here is a pure function from text to bytes: no I/O, no async, no clock, and the
//! same input always gives the same bytes, so callers may cache by input. No input makes these
//! functions panic: text of any length or script is bounded and drawn with what the bitmap
//! font has (see `text`), and the only failures are a URL too long for a QR code and encoder
//! errors, both reported as [`RenderError`].
//!
//! PNGs are 8-bit grayscale: colour would add nothing to a black-and-white code, and one byte
//! per pixel keeps encoding fast and the files small (an invite card is a few kilobytes).
//!
//! # Layout
//! - `mod.rs`: the public API and [`RenderError`].
//! - `card`: the invite card's layout (name, question, QR code).
//! - `chart`: the results chart's layout (title, one labelled bar per option).
//! - `qr`: encoding a URL into a QR matrix, drawing it with its quiet zone, and SVG output.
//! - `text`: the `font8x8` bitmap font, character fallbacks, word wrap and truncation.
//! - `canvas`: a grayscale pixel buffer with clipped rectangle fills, and PNG encoding.
//! - `tests`: round trips through the PNG decoder and a QR reader (`rqrr`).

mod canvas;
mod card;
mod chart;
mod qr;
mod text;

#[cfg(test)]
mod tests;

use qr::Matrix;

/// What an invite card shows. The strings are drawn as given, bounded: the name on one line,
/// the question on up to four, each cut with an ellipsis when longer.
#[derive(Debug, Clone, Copy)]
pub struct InviteCard<'a> {
    pub question: &'a str,
    pub guest_name: &'a str,
    /// Encoded in the QR code byte for byte; it is never drawn as text.
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
}

/// Side of a standalone QR PNG, in pixels, that the module size aims for.
const QR_PNG_TARGET_PX: u32 = 480;
/// Smallest module of a standalone QR PNG, for the densest codes; below this, prints blur.
const QR_PNG_MIN_MODULE_PX: u32 = 4;
/// Smallest side of the SVG's viewport, in user units.
const QR_SVG_MIN_PX: u32 = 256;

/// A PNG invite card, 600 px wide: the guest's name, the poll question, and the QR code of
/// `url` (level M, with a four-module quiet zone), large enough to scan from a phone screen.
pub fn invite_card_png(card: &InviteCard<'_>) -> Result<Vec<u8>, RenderError> {
    card::render(card)
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
