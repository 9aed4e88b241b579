//! The invite card's layout: the guest's name, the poll question, then the QR code of the
//! invite URL, on a fixed-size white card.
//!
//! ```text
//! +--------------------------------------+  y = 0
//! |            Guest Name                |  NAME_TOP, one line at 3x
//! |   The poll question, wrapped over    |  QUESTION_TOP, up to 4 lines at 2x
//! |   up to four lines, then cut with... |
//! |          +--------------+            |  QR_TOP: a QR_AREA square, the code centred
//! |          |   QR code    |            |  in it with its quiet zone
//! |          +--------------+            |
//! +--------------------------------------+  CARD_HEIGHT
//! ```
//!
//! The size is fixed whatever the text, so pages and print layouts can reserve the space.

use super::canvas::{BLACK, Canvas, WHITE};
use super::qr::Matrix;
use super::{InviteCard, RenderError, text};

pub(super) const CARD_WIDTH: u32 = 600;
pub(super) const CARD_HEIGHT: u32 = QR_TOP + QR_AREA + MARGIN / 2;

const MARGIN: u32 = 32;
const CONTENT_WIDTH: u32 = CARD_WIDTH - 2 * MARGIN;

const NAME_SCALE: u32 = 3;
const NAME_TOP: u32 = MARGIN;
const NAME_COLS: usize = (CONTENT_WIDTH / (text::CELL * NAME_SCALE)) as usize;

const QUESTION_SCALE: u32 = 2;
const QUESTION_TOP: u32 = NAME_TOP + text::CELL * NAME_SCALE + 16;
const QUESTION_COLS: usize = (CONTENT_WIDTH / (text::CELL * QUESTION_SCALE)) as usize;
const QUESTION_LINES: usize = 4;
const QUESTION_LINE_PITCH: u32 = text::CELL * QUESTION_SCALE + 6;
/// Slightly lighter than the name, so the name reads first.
const QUESTION_SHADE: u8 = 64;

/// The square the QR code (with its quiet zone) is centred in. 464 px gives a typical invite
/// URL (version 5, 45 modules with the quiet zone) 10 px modules, which phones read easily
/// from a screen or a small print.
const QR_AREA: u32 = 464;
const QR_TOP: u32 = QUESTION_TOP + QUESTION_LINES as u32 * QUESTION_LINE_PITCH;

pub(super) fn render(card: &InviteCard<'_>) -> Result<Vec<u8>, RenderError> {
    // The QR code is encoded first: if the URL cannot be encoded, no drawing is wasted.
    let matrix = Matrix::encode(card.url)?;
    let mut canvas = Canvas::new(CARD_WIDTH, CARD_HEIGHT, WHITE);

    for line in text::wrap(card.guest_name, NAME_COLS, 1) {
        text::draw_centred(
            &mut canvas,
            MARGIN,
            CONTENT_WIDTH,
            NAME_TOP,
            &line,
            NAME_SCALE,
            BLACK,
        );
    }
    let mut y = QUESTION_TOP;
    for line in text::wrap(card.question, QUESTION_COLS, QUESTION_LINES) {
        text::draw_centred(
            &mut canvas,
            MARGIN,
            CONTENT_WIDTH,
            y,
            &line,
            QUESTION_SCALE,
            QUESTION_SHADE,
        );
        y += QUESTION_LINE_PITCH;
    }

    // Whole pixels per module keep every module edge sharp, which scanners rely on. The
    // largest QR code (version 40, 185 modules with the quiet zone) still gets 2 px.
    let modules = matrix.size_with_quiet_zone();
    let module_px = (QR_AREA / modules.max(1)).max(1);
    let side = modules.saturating_mul(module_px);
    let inset = QR_AREA.saturating_sub(side) / 2;
    matrix.draw(
        &mut canvas,
        (CARD_WIDTH - QR_AREA) / 2 + inset,
        QR_TOP + inset,
        module_px,
    );

    canvas.encode_png()
}
