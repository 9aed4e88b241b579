//! The invite card: a portrait US business card (2 × 3.5 in, 600 × 1050 px at 300 DPI).
//!
//! ```text
//! +--------------------------------------+  y = 0
//! |        Event name (if set)           |  EVENT band, 1 line
//! |   The poll question, wrapped over    |  TITLE band, up to 3 lines
//! |   up to three lines, then cut…       |
//! |   ------------------------------     |  RULE
//! |        Guest Name, on up to          |  NAME band, up to 2 lines, bold
//! |        two lines, then cut…          |
//! |          +--------------+            |  QR band: the code centred with its
//! |          |   QR code    |            |  four-module quiet zone
//! |          +--------------+            |
//! |            Scan to vote              |  SCAN band
//! |    No camera? Open this address:     |  HINT band
//! |     tally.example.com/i/            |  URL band, monospaced, up to 2 lines
//! |     q3Vx_7kPz-2mLw9RtYb4NcHs0a…      |
//! +--------------------------------------+  CARD_HEIGHT
//! ```
//!
//! Every band has a fixed place whatever the text, so the code never moves and sheets can
//! reserve the space. What is the same on every card of a job (event, question, the two
//! fixed lines) is set and drawn once, in [`CardLayout::new`], and the rows above the guest's
//! name are encoded once; a card costs its name, its address, its QR code and the encoding of
//! the rest (`deflate`).

use std::sync::Mutex;

use super::canvas::{BLACK, Canvas, WHITE};
use super::deflate::{Encoder, Segment};
use super::fonts::Style;
use super::layout::{self, Block};
use super::qr::{Matrix, QUIET_ZONE};
use super::{CardText, RenderError, raster};

pub(super) const CARD_WIDTH: u32 = 600;
pub(super) const CARD_HEIGHT: u32 = 1050;
/// Pixels per inch the card is drawn for (the PNG's `pHYs`, the PDF's scale).
pub(super) const DPI: u32 = 300;

const MARGIN: f32 = 40.0;
const CONTENT_WIDTH: f32 = CARD_WIDTH as f32 - 2.0 * MARGIN;

/// A horizontal band of text: where it sits, its style and size, its line pitch and count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Band {
    pub(super) top: f32,
    pub(super) size: f32,
    pub(super) pitch: f32,
    pub(super) lines: usize,
    pub(super) style: Style,
    pub(super) shade: u8,
}

impl Band {
    /// The band's height: its lines' pitch.
    fn height(&self) -> f32 {
        self.pitch * self.lines as f32
    }

    /// Sets `text` for this band.
    pub(super) fn set(&self, text: &str) -> Block {
        layout::set(text, self.style, self.size, CONTENT_WIDTH, self.lines)
    }

    /// The first baseline of `block`, which is centred vertically in the band (a line's ink
    /// is taken as 0.8 em above the baseline and 0.2 em below).
    pub(super) fn baseline(&self, block: &Block) -> f32 {
        let lines = block.lines.len().max(1) as f32;
        let ink = (lines - 1.0) * self.pitch + self.size;
        self.top + (self.height() - ink) / 2.0 + 0.8 * self.size
    }
}

pub(super) const EVENT: Band = Band {
    top: 40.0,
    size: 22.0,
    pitch: 30.0,
    lines: 1,
    style: Style::Regular,
    shade: 96,
};
pub(super) const TITLE: Band = Band {
    top: 76.0,
    size: 25.0,
    pitch: 32.0,
    lines: 3,
    style: Style::Regular,
    shade: 48,
};
/// The thin rule between the poll and the guest.
const RULE_TOP: u32 = 186;
const RULE_HEIGHT: u32 = 2;
const RULE_SHADE: u8 = 200;
/// The rows every card of a job shares, down to and with the rule, which a job encodes once.
/// The guest's name starts 16 rows lower, so even a tall accent on a two-line name (it would
/// have to rise 1.3 em above its baseline) leaves them untouched; a card that does touch them
/// is encoded whole.
const SHARED_ROWS: u32 = RULE_TOP + RULE_HEIGHT;
/// The rows between the QR area and the address ("Scan to vote" and the hint), also the
/// same on every card, encoded once and appended to each card's stream.
const SCAN_ROWS: std::ops::Range<u32> = QR_TOP + QR_AREA..URL.top as u32;
/// The QR area's rows, which the encoder writes from the code's modules.
const QR_ROWS: std::ops::Range<u32> = QR_TOP..QR_TOP + QR_AREA;
pub(super) const NAME: Band = Band {
    top: 204.0,
    size: 44.0,
    pitch: 54.0,
    lines: 2,
    style: Style::Bold,
    shade: BLACK,
};
/// The square the QR code and its quiet zone are centred in. A typical invite URL (version
/// 5, 45 modules with the quiet zone) gets 11 px modules: 0.93 mm in print.
pub(super) const QR_TOP: u32 = 328;
pub(super) const QR_AREA: u32 = 520;
pub(super) const SCAN: Band = Band {
    top: 858.0,
    size: 32.0,
    pitch: 42.0,
    lines: 1,
    style: Style::Bold,
    shade: BLACK,
};
pub(super) const HINT: Band = Band {
    top: 902.0,
    size: 18.0,
    pitch: 26.0,
    lines: 1,
    style: Style::Regular,
    shade: 96,
};
pub(super) const URL: Band = Band {
    top: 930.0,
    size: 19.0,
    pitch: 28.0,
    lines: 2,
    style: Style::Mono,
    shade: 32,
};

pub(super) const SCAN_TEXT: &str = "Scan to vote";
pub(super) const HINT_TEXT: &str = "No camera? Open this address:";

/// What is the same on every card of a job, set and drawn once.
#[derive(Clone)]
pub struct CardLayout {
    /// The card with its fixed parts drawn and the guest's parts blank.
    base: Canvas,
    /// The PNG stream of the base's first [`SHARED_ROWS`] rows, which every card starts from.
    shared: Encoder,
    /// The base's [`SCAN_ROWS`], encoded after the row above them.
    scan_rows: Segment,
    pub(super) event: Block,
    pub(super) title: Block,
    pub(super) scan: Block,
    pub(super) hint: Block,
    scratch: Scratch,
}

/// The canvas a layout draws its cards on, kept between cards. A copy of a layout starts
/// without one.
#[derive(Default)]
struct Scratch(Mutex<Option<Canvas>>);

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for CardLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardLayout")
            .field("event", &self.event.text)
            .field("title", &self.title.text)
            .finish_non_exhaustive()
    }
}

/// What differs per guest, set.
pub(super) struct GuestText {
    pub(super) name: Block,
    pub(super) address: Vec<Block>,
    pub(super) matrix: Matrix,
}

impl CardLayout {
    /// Sets the poll's title (its question) and the organiser's event name, if any, with the
    /// card's fixed lines. Any text is accepted: it is cleaned, wrapped and cut to its band.
    pub fn new(poll_title: &str, event_name: Option<&str>) -> Self {
        let event = EVENT.set(event_name.unwrap_or(""));
        let title = TITLE.set(poll_title);
        let scan = SCAN.set(SCAN_TEXT);
        let hint = HINT.set(HINT_TEXT);
        let mut base = Canvas::new(CARD_WIDTH, CARD_HEIGHT, WHITE);
        for (band, block) in [
            (EVENT, &event),
            (TITLE, &title),
            (SCAN, &scan),
            (HINT, &hint),
        ] {
            draw(&mut base, band, block);
        }
        base.fill_rect(
            MARGIN as u32 + 60,
            RULE_TOP,
            CONTENT_WIDTH as u32 - 120,
            RULE_HEIGHT,
            RULE_SHADE,
        );
        base.untouch();
        let mut shared = Encoder::new(CARD_WIDTH as usize);
        shared.rows(
            &base.rows_from(0)[..(SHARED_ROWS * CARD_WIDTH) as usize],
            None,
        );
        let scan_rows = Encoder::segment(
            CARD_WIDTH as usize,
            &base.rows_from(SCAN_ROWS.start)[..(SCAN_ROWS.len() * CARD_WIDTH as usize)],
            base.row(SCAN_ROWS.start - 1),
        );
        Self {
            base,
            shared,
            scan_rows,
            event,
            title,
            scan,
            hint,
            scratch: Scratch::default(),
        }
    }

    /// Sets one guest's parts: the name, the address to type, and the QR code of the URL.
    pub(super) fn guest(&self, card: &CardText<'_>) -> Result<GuestText, RenderError> {
        let matrix = Matrix::encode(card.url)?;
        let name = NAME.set(card.guest_name);
        let shown = card.short_url.unwrap_or(card.url);
        Ok(GuestText {
            name,
            address: address_lines(shown),
            matrix,
        })
    }

    /// One guest's card as a PNG (8-bit grayscale, 300 DPI).
    ///
    /// Cards are drawn on the layout's scratch canvas, restored to the base where the last
    /// card drew (copying the whole 630 kB base for every card was an eighth of its time);
    /// a thread that finds it in use by another draws on a copy.
    pub fn png(&self, card: &CardText<'_>) -> Result<Vec<u8>, RenderError> {
        // The QR code is encoded first: if the URL cannot be encoded, no drawing is wasted.
        let guest = self.guest(card)?;
        let mut own = None;
        let mut scratch = self.scratch.0.try_lock();
        let canvas = match scratch.as_deref_mut() {
            Ok(Some(canvas)) => {
                canvas.restore(&self.base);
                canvas
            }
            Ok(empty) => empty.insert(self.base.clone()),
            Err(_) => own.insert(self.base.clone()),
        };
        self.draw_text(canvas, &guest);
        Ok(self.encode(canvas, &guest.matrix))
    }

    /// Draws a guest's text (the name and the address) on a canvas that holds the base. The
    /// QR code is not drawn: the encoder makes its rows from its modules
    /// ([`CardLayout::encode`]).
    fn draw_text(&self, canvas: &mut Canvas, guest: &GuestText) {
        draw(canvas, NAME, &guest.name);
        draw_address(canvas, &guest.address);
    }

    /// The card's PNG. It reuses the rows the job encoded once unless this card drew into
    /// them (or, for the scan rows, into the row above them, which their encoding assumes),
    /// and writes the QR area from the code's modules: a module row is one row of pixels
    /// encoded and then repeated, never filled in on the canvas or compared with the row
    /// above it. Text that reaches into the QR area (only ever a tall mark on a name) is
    /// drawn under the code and every row encoded from the canvas.
    fn encode(&self, canvas: &Canvas, matrix: &Matrix) -> Vec<u8> {
        if canvas.touched(QR_ROWS) {
            return self.encode_drawn(&with_code(canvas, matrix), None);
        }
        self.encode_drawn(canvas, Some(matrix))
    }

    /// [`CardLayout::encode`] of `canvas`, whose QR area is blank when `matrix` is the code
    /// to write there, or already drawn when there is none.
    fn encode_drawn(&self, canvas: &Canvas, matrix: Option<&Matrix>) -> Vec<u8> {
        let width = canvas.width();
        let (start, mut encoder) = if canvas.touched(0..SHARED_ROWS) {
            (0, Encoder::new(width as usize))
        } else {
            (SHARED_ROWS, self.shared.resume())
        };
        let above = |row: u32| row.checked_sub(1).and_then(|r| canvas.row(r));
        let rows = |from: u32, to: u32| {
            let all = canvas.rows_from(from);
            let len = (to.saturating_sub(from) * width) as usize;
            all.get(..len).unwrap_or(all)
        };
        let scan_from = if let Some(matrix) = matrix {
            encoder.rows(rows(start, QR_ROWS.start), above(start));
            code_rows(&mut encoder, matrix, above(QR_ROWS.start));
            // The area's last row is white (the quiet zone), as the canvas's is.
            QR_ROWS.end
        } else {
            start
        };
        if canvas.touched(SCAN_ROWS.start - 1..SCAN_ROWS.end) {
            encoder.rows(canvas.rows_from(scan_from), above(scan_from));
        } else {
            encoder.rows(rows(scan_from, SCAN_ROWS.start), above(scan_from));
            encoder.append(&self.scan_rows);
            encoder.rows(canvas.rows_from(SCAN_ROWS.end), above(SCAN_ROWS.end));
        }
        encoder.finish(DPI)
    }
}

/// `canvas` with `matrix` drawn in the QR area, over whatever is there.
fn with_code(canvas: &Canvas, matrix: &Matrix) -> Canvas {
    let mut drawn = canvas.clone();
    let (x, y, module_px) = qr_place(matrix);
    matrix.draw(&mut drawn, x, y, module_px);
    drawn
}

/// Writes the QR area's rows (white, the code with its quiet zone, white), `above` being the
/// row before the area.
fn code_rows(encoder: &mut Encoder, matrix: &Matrix, above: Option<&[u8]>) {
    let (x, y, module_px) = qr_place(matrix);
    let white = vec![WHITE; CARD_WIDTH as usize];
    let (mut line, mut previous) = (white.clone(), white.clone());
    // The inset and the top quiet zone, at least four modules of white.
    let top = y + QUIET_ZONE * module_px - QR_TOP;
    encoder.rows(&white, above);
    encoder.repeat(top - 1);
    for row in 0..matrix.size() {
        line.fill(WHITE);
        matrix.draw_row(row, &mut line, x, module_px);
        encoder.rows(&line, Some(&previous));
        encoder.repeat(module_px - 1);
        std::mem::swap(&mut line, &mut previous);
    }
    // The bottom quiet zone and the inset.
    let bottom = QR_AREA - top - matrix.size() * module_px;
    encoder.rows(&white, Some(&previous));
    encoder.repeat(bottom - 1);
}

/// Where the code goes and its module size: whole pixels per module keep every module edge
/// sharp, which scanners rely on. The largest QR code (version 40, 185 modules with the quiet
/// zone) still gets 2 px.
pub(super) fn qr_place(matrix: &Matrix) -> (u32, u32, u32) {
    let modules = matrix.size_with_quiet_zone();
    let module_px = (QR_AREA / modules.max(1)).max(1);
    let side = modules.saturating_mul(module_px);
    let inset = QR_AREA.saturating_sub(side) / 2;
    (
        (CARD_WIDTH - QR_AREA) / 2 + inset,
        QR_TOP + inset,
        module_px,
    )
}

fn draw(canvas: &mut Canvas, band: Band, block: &Block) {
    raster::draw_centred(
        canvas,
        block,
        MARGIN,
        CONTENT_WIDTH,
        band.baseline(block),
        band.pitch,
        band.shade,
    );
}

/// The address a guest can type, without its scheme, on up to two lines: broken after its
/// last `/` when both halves fit on a line each (host and path above, the code below, which
/// is easier to copy), else wherever the line is full.
pub(super) fn address_lines(url: &str) -> Vec<Block> {
    let shown = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    if let Some(cut) = shown.rfind('/').map(|i| i + 1)
        && cut < shown.len()
    {
        let (head, tail) = shown.split_at(cut);
        let head = layout::set(head, URL.style, URL.size, CONTENT_WIDTH, 1);
        let tail = layout::set(tail, URL.style, URL.size, CONTENT_WIDTH, 1);
        let fits = |b: &Block| b.lines.len() == 1 && !b.cut;
        if fits(&head) && fits(&tail) {
            return vec![head, tail];
        }
    }
    vec![URL.set(shown)]
}

/// The baselines of the address's lines, centred in the URL band as one block.
pub(super) fn address_baselines(address: &[Block]) -> Vec<f32> {
    let lines: usize = address.iter().map(|b| b.lines.len()).sum();
    let probe = Block {
        lines: vec![layout::Line::default(); lines],
        ..Block::default()
    };
    let first = URL.baseline(&probe);
    (0..lines).map(|i| first + i as f32 * URL.pitch).collect()
}

fn draw_address(canvas: &mut Canvas, address: &[Block]) {
    let baselines = address_baselines(address);
    let lines = address
        .iter()
        .flat_map(|b| b.lines.iter().map(move |l| (b.size, l)));
    for ((size, line), y) in lines.zip(baselines) {
        let x = MARGIN + (CONTENT_WIDTH - line.width).max(0.0) / 2.0;
        raster::draw_line(canvas, line, size, x, y, URL.shade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reusing the rows a job encoded once and writing the QR area from the code give
    /// exactly the pixels of the card drawn whole, whether the card leaves those rows alone
    /// (a short name) or not (ink over the shared rows, the scan rows or the QR area, which
    /// must then be encoded from the canvas).
    #[test]
    fn cards_decode_to_the_pixels_drawn_with_or_without_the_shared_rows() {
        let layout = CardLayout::new("Where shall we go for lunch?", Some("Acme offsite"));
        let url = "https://tally.example.com/i/q3Vx_7kPz-2mLw9RtYb4NcHs0aJdEfGu1iOoZyXeWvB";
        let card = CardText {
            guest_name: "Ann",
            url,
            short_url: None,
        };
        let guest = layout.guest(&card).unwrap_or_else(|e| panic!("{e}"));
        let mut plain = layout.base.clone();
        layout.draw_text(&mut plain, &guest);
        let matrix = guest.matrix;
        assert!(!plain.touched(0..SHARED_ROWS));
        assert!(!plain.touched(QR_ROWS));
        assert!(!plain.touched(SCAN_ROWS.start - 1..SCAN_ROWS.end));
        let mut canvases = vec![plain.clone()];
        // Cards whose ink reaches into the shared rows and the scan rows, and into the QR
        // area (beside the code and under its quiet zone).
        let mut intruder = plain.clone();
        intruder.fill_rect(10, SHARED_ROWS - 1, 5, 1, BLACK);
        intruder.fill_rect(10, SCAN_ROWS.start + 3, 5, 1, BLACK);
        canvases.push(intruder);
        let mut into_code = plain.clone();
        into_code.fill_rect(5, QR_TOP + 2, 30, 3, BLACK);
        into_code.fill_rect(200, QR_TOP + 30, 10, 10, BLACK);
        canvases.push(into_code);
        for canvas in &canvases {
            let png = layout.encode(canvas, &matrix);
            let decoded = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
                .map(|i| i.to_luma8())
                .unwrap_or_else(|e| panic!("{e}"));
            let drawn = with_code(canvas, &matrix);
            assert_eq!(decoded.as_raw().as_slice(), drawn.rows_from(0));
        }
        // The code's own quiet zone stays white whatever was drawn there.
        let (x, y, module_px) = qr_place(&matrix);
        let drawn = with_code(&canvases[2], &matrix);
        let row = drawn.row(y + module_px).unwrap_or_default();
        assert!(
            row[x as usize..(x + QUIET_ZONE * module_px) as usize]
                .iter()
                .all(|&p| p == WHITE)
        );
    }

    /// A card drawn on the scratch canvas after others is the card a fresh layout draws:
    /// nothing of an earlier guest's name or address is left on it.
    #[test]
    fn a_card_after_others_is_the_card_drawn_first() {
        let question = "Where shall we go for lunch?";
        let card = |name, n: usize| {
            let url = format!("https://tally.example.com/i/q3Vx_7kPz-2mLw9RtYb4NcHs0aJdEf{n:05}");
            (name, url)
        };
        let guests = [
            card("Wolfgang Amadeus Mozart von Salzburg und Wien", 1),
            card("李雷", 2),
            card("Ann", 3),
        ];
        let png = |layout: &CardLayout, (name, url): &(&str, String)| {
            layout
                .png(&CardText {
                    guest_name: name,
                    url,
                    short_url: None,
                })
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let reused = CardLayout::new(question, None);
        for guest in &guests {
            let fresh = CardLayout::new(question, None);
            assert!(png(&reused, guest) == png(&fresh, guest), "{}", guest.0);
        }
    }
}
