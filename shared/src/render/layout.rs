//! Setting a paragraph of text: clean it, split it into runs of one face and one direction,
//! shape each run (`rustybuzz`: Arabic joining, Devanagari conjuncts, marks, kerning), break it
//! into lines, cut the last line with an ellipsis when the text does not fit, and put each
//! line's pieces in visual order (the Unicode bidirectional algorithm's levels from
//! `unicode-bidi`, reordered per line).
//!
//! The result is a [`Block`] of positioned glyphs in pixels at the given size, which the PNG
//! rasteriser (`raster`) and the PDF writer (`sheet`) both draw, so a card and its sheet show
//! the same lines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use rustybuzz::{Direction, Script, ShapePlan, UnicodeBuffer};
use unicode_bidi::{BidiInfo, Level};

use super::fonts::{self, Style};

thread_local! {
    /// Shape plans by face, direction and script. Making a plan (collecting and compiling
    /// the font's features for a script) costs more than shaping a name with it, and a job
    /// needs only a handful, so each thread keeps the ones it made.
    static PLANS: RefCell<HashMap<(u8, bool, Script), Rc<ShapePlan>>> =
        RefCell::new(HashMap::new());
}

/// The character that ends a line that was cut short.
const ELLIPSIS: &str = "\u{2026}";

/// Text set in lines, ready to draw.
#[derive(Debug, Clone, Default)]
pub(super) struct Block {
    /// The cleaned text the glyphs' ranges point into (what a PDF reader copies).
    pub(super) text: String,
    pub(super) lines: Vec<Line>,
    /// Font size in pixels.
    pub(super) size: f32,
    /// Whether the text did not fit and its last line ends with an ellipsis (which is then
    /// also the end of `text`).
    pub(super) cut: bool,
}

/// One line, glyphs in visual order (left to right) from x = 0.
#[derive(Debug, Clone, Default)]
pub(super) struct Line {
    pub(super) glyphs: Vec<Glyph>,
    pub(super) width: f32,
}

/// A shaped glyph: which glyph of which face, where its pen stands on the line, and its
/// shaping offsets (y up, as fonts measure), all in pixels.
#[derive(Debug, Clone)]
pub(super) struct Glyph {
    pub(super) face: u8,
    pub(super) id: u16,
    pub(super) pen_x: f32,
    pub(super) advance: f32,
    pub(super) x_offset: f32,
    pub(super) y_offset: f32,
    /// The bytes of [`Block::text`] this glyph's cluster draws.
    pub(super) range: std::ops::Range<usize>,
}

/// A cluster: the smallest piece a line may be broken around or cut at.
#[derive(Debug, Clone)]
struct Piece {
    start: usize,
    end: usize,
    level: Level,
    advance: f32,
    /// Glyphs in visual order, pens relative to the piece's left edge.
    glyphs: Vec<Glyph>,
}

/// Sets `text` in `style` at `size` pixels into at most `max_lines` lines no wider than
/// `max_width`. Words wrap whole when they fit on a line, longer ones break between clusters;
/// when the text does not fit, the last line ends with an ellipsis.
pub(super) fn set(text: &str, style: Style, size: f32, max_width: f32, max_lines: usize) -> Block {
    let text = clean(text);
    let mut block = Block {
        text: String::new(),
        lines: Vec::new(),
        size,
        cut: false,
    };
    if text.is_empty() || max_lines == 0 {
        block.text = text;
        return block;
    }
    let bidi = BidiInfo::new(&text, None);
    let base = bidi.paragraphs.first().map_or_else(Level::ltr, |p| p.level);
    let pieces = shape(&text, &bidi.levels, style, size);
    let mut ranges = break_lines(&text, &pieces, max_width);
    let cut = ranges.len() > max_lines;
    ranges.truncate(max_lines);
    let last = ranges.len().saturating_sub(1);
    for (i, range) in ranges.into_iter().enumerate() {
        let mut line: Vec<Piece> = pieces.get(range).map(<[Piece]>::to_vec).unwrap_or_default();
        if cut && i == last {
            // The last line is refilled from its start cluster by cluster, so that it uses
            // the room the ellipsis leaves rather than ending at the last whole word.
            let start = line.first().map_or(0, |p| p.start);
            line = fill_with_ellipsis(&text, &pieces, start, style, size, base, max_width);
        }
        block.lines.push(visual_line(line));
    }
    block.text = text;
    if cut {
        block.text.push_str(ELLIPSIS);
        block.cut = true;
    }
    block
}

/// Whitespace of every kind becomes one space between words; control characters, bidi
/// overrides and isolates (which could reorder a name on the card) and zero-width format
/// characters other than the joiners are dropped, as are characters no embedded face has
/// (emoji, rare scripts): left out cleanly rather than drawn as boxes or `?`.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    let mut pending_space = false;
    // Set when a character was left out right after a space ("sushi 🍣?"): punctuation that
    // follows then closes up to the word instead of standing after a gap.
    let mut gap_from_drop = false;
    // Input is bounded before any work: a card shows a few hundred characters at most.
    for c in text.chars().take(2000) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            gap_from_drop = false;
            continue;
        }
        let keep = match c {
            // Joiners shape Arabic and Indic text; they are kept for the shaper.
            '\u{200C}' | '\u{200D}' => true,
            _ if c.is_control() => false,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' => false,
            '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}' => false,
            _ => fonts::face_for(c, Style::Regular, None).is_some(),
        };
        if !keep {
            gap_from_drop |= pending_space;
            continue;
        }
        if gap_from_drop && c.is_ascii_punctuation() {
            pending_space = false;
        }
        gap_from_drop = false;
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    // A joiner left next to a dropped emoji (as in a ZWJ sequence) joins nothing: drop it.
    let trimmed = out.trim_matches(['\u{200C}', '\u{200D}', ' ']);
    trimmed.replace(" \u{200D}", " ").replace("\u{200D} ", " ")
}

/// Splits `text` into runs of one face and one bidi level, shapes each, and returns its
/// clusters in logical order.
fn shape(text: &str, levels: &[Level], style: Style, size: f32) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut run_start = 0;
    let mut run: Option<(u8, Level)> = None;
    let mut previous_face = None;
    for (i, c) in text.char_indices() {
        let face = fonts::face_for(c, style, previous_face).unwrap_or(fonts::SANS);
        previous_face = Some(face);
        let level = levels.get(i).copied().unwrap_or_else(Level::ltr);
        if run != Some((face, level)) {
            if let Some((f, l)) = run {
                shape_run(text, run_start..i, f, l, size, &mut pieces);
            }
            run = Some((face, level));
            run_start = i;
        }
    }
    if let Some((f, l)) = run {
        shape_run(text, run_start..text.len(), f, l, size, &mut pieces);
    }
    pieces
}

fn shape_run(
    text: &str,
    range: std::ops::Range<usize>,
    face_index: u8,
    level: Level,
    size: f32,
    pieces: &mut Vec<Piece>,
) {
    let (Some(face), Some(run)) = (fonts::face(face_index), text.get(range.clone())) else {
        return;
    };
    let mut buffer = UnicodeBuffer::new();
    buffer.push_str(run);
    let direction = if level.is_rtl() {
        Direction::RightToLeft
    } else {
        Direction::LeftToRight
    };
    buffer.set_direction(direction);
    buffer.guess_segment_properties();
    let script = buffer.script();
    let plan = PLANS.with(|plans| {
        Rc::clone(
            plans
                .borrow_mut()
                .entry((face_index, level.is_rtl(), script))
                .or_insert_with(|| {
                    Rc::new(ShapePlan::new(face, direction, Some(script), None, &[]))
                }),
        )
    });
    let shaped = rustybuzz::shape_with_plan(face, &plan, buffer);
    let scale = size / face.units_per_em().max(1) as f32;
    let first = pieces.len();
    let mut current: Option<Piece> = None;
    for (info, pos) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
        let cluster = range.start + usize::try_from(info.cluster).unwrap_or(0);
        let glyph = Glyph {
            face: face_index,
            id: u16::try_from(info.glyph_id).unwrap_or(0),
            pen_x: 0.0,
            advance: pos.x_advance as f32 * scale,
            x_offset: pos.x_offset as f32 * scale,
            y_offset: pos.y_offset as f32 * scale,
            range: cluster..cluster,
        };
        match &mut current {
            Some(piece) if piece.start == cluster => {
                let mut glyph = glyph;
                glyph.pen_x = piece.advance;
                piece.advance += glyph.advance;
                piece.glyphs.push(glyph);
            }
            _ => {
                pieces.extend(current.take());
                current = Some(Piece {
                    start: cluster,
                    end: cluster,
                    level,
                    advance: glyph.advance,
                    glyphs: vec![glyph],
                });
            }
        }
    }
    pieces.extend(current);
    // Right-to-left runs come out in visual order; the pieces are wanted in logical order.
    if level.is_rtl() {
        pieces[first..].reverse();
    }
    // Each cluster ends where the next one (in logical order) starts.
    let mut next_start = range.end;
    for piece in pieces[first..].iter_mut().rev() {
        piece.end = next_start;
        next_start = piece.start;
        for glyph in &mut piece.glyphs {
            glyph.range = piece.start..piece.end;
        }
    }
}

/// Whether a line may break before the piece starting at `start`: after a space, or between
/// two ideographs (CJK text has no spaces), but not before closing punctuation.
fn breakable_before(text: &str, start: usize) -> bool {
    let before = text.get(..start).and_then(|s| s.chars().next_back());
    let after = text.get(start..).and_then(|s| s.chars().next());
    match (before, after) {
        (Some(' '), Some(_)) => true,
        (Some(b), Some(a)) => {
            (is_ideographic(b) || is_ideographic(a)) && !"、。，．）」』】〕！？：；".contains(a)
        }
        _ => false,
    }
}

fn is_ideographic(c: char) -> bool {
    matches!(c, '\u{2E80}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}' | '\u{FF00}'..='\u{FFEF}')
}

fn is_space(text: &str, piece: &Piece) -> bool {
    text.get(piece.start..piece.end) == Some(" ")
}

/// Greedy line breaking: the index ranges of `pieces` on each line, without the spaces that
/// end or start a line.
fn break_lines(text: &str, pieces: &[Piece], max_width: f32) -> Vec<std::ops::Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < pieces.len() {
        while pieces.get(start).is_some_and(|p| is_space(text, p)) {
            start += 1;
        }
        if start >= pieces.len() {
            break;
        }
        let mut width = 0.0;
        let mut end = start;
        let mut last_break = None;
        while let Some(piece) = pieces.get(end) {
            if end > start && breakable_before(text, piece.start) {
                last_break = Some(end);
            }
            if width + piece.advance > max_width && !is_space(text, piece) && end > start {
                end = last_break.unwrap_or(end);
                break;
            }
            width += piece.advance;
            end += 1;
        }
        let mut stop = end;
        while stop > start && pieces.get(stop - 1).is_some_and(|p| is_space(text, p)) {
            stop -= 1;
        }
        lines.push(start..stop);
        start = end;
    }
    lines
}

/// The pieces from `start` on that fit in `max_width` together with an ellipsis, then the
/// ellipsis (at the paragraph's base level, so that it ends a right-to-left line on its left).
fn fill_with_ellipsis(
    text: &str,
    pieces: &[Piece],
    start: usize,
    style: Style,
    size: f32,
    base: Level,
    max_width: f32,
) -> Vec<Piece> {
    let mut ellipsis = Vec::new();
    let face = fonts::face_for('\u{2026}', style, None).unwrap_or(fonts::SANS);
    shape_run(ELLIPSIS, 0..ELLIPSIS.len(), face, base, size, &mut ellipsis);
    // The ellipsis's glyphs point past the text, where `set` appends it.
    let at = text.len()..text.len() + ELLIPSIS.len();
    for piece in &mut ellipsis {
        piece.start = at.start;
        piece.end = at.end;
        for glyph in &mut piece.glyphs {
            glyph.range = at.clone();
        }
    }
    let room = max_width - ellipsis.iter().map(|p| p.advance).sum::<f32>();
    let mut line = Vec::new();
    let mut width = 0.0;
    for piece in pieces.iter().filter(|p| p.start >= start) {
        if width + piece.advance > room {
            break;
        }
        width += piece.advance;
        line.push(piece.clone());
    }
    while line.last().is_some_and(|p| is_space(text, p)) {
        line.pop();
    }
    line.extend(ellipsis);
    line
}

/// Reorders a line's pieces visually (rule L2: from the highest level down to the lowest odd
/// one, reverse every run at that level or above) and places their glyphs from x = 0.
fn visual_line(mut pieces: Vec<Piece>) -> Line {
    let highest = pieces.iter().map(|p| p.level.number()).max().unwrap_or(0);
    let lowest_odd = pieces
        .iter()
        .map(|p| p.level.number())
        .filter(|l| l % 2 == 1)
        .min();
    if let Some(lowest_odd) = lowest_odd {
        for level in (lowest_odd..=highest).rev() {
            let mut i = 0;
            while i < pieces.len() {
                if pieces.get(i).is_some_and(|p| p.level.number() >= level) {
                    let run_start = i;
                    while pieces.get(i).is_some_and(|p| p.level.number() >= level) {
                        i += 1;
                    }
                    if let Some(run) = pieces.get_mut(run_start..i) {
                        run.reverse();
                    }
                } else {
                    i += 1;
                }
            }
        }
    }
    let mut line = Line::default();
    for piece in pieces {
        for mut glyph in piece.glyphs {
            glyph.pen_x += line.width;
            line.glyphs.push(glyph);
        }
        line.width += piece.advance;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(block: &Block) -> Vec<String> {
        // The characters each line draws, in logical order of first appearance.
        block
            .lines
            .iter()
            .map(|line| {
                let mut ranges: Vec<_> = line.glyphs.iter().map(|g| g.range.clone()).collect();
                ranges.sort_by_key(|r| r.start);
                ranges.dedup();
                ranges
                    .iter()
                    .filter_map(|r| block.text.get(r.clone()))
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn words_wrap_and_the_rest_is_cut_with_an_ellipsis() {
        let block = set(
            "Wolfgang Amadeus Mozart Johann Chrysostom Theophilus",
            Style::Regular,
            40.0,
            400.0,
            2,
        );
        let l = lines(&block);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0], "Wolfgang Amadeus");
        assert!(
            l[1].starts_with("Mozart Johann") && l[1].ends_with('…'),
            "{l:?}"
        );
        assert!(block.lines.iter().all(|line| line.width <= 400.0));
    }

    #[test]
    fn text_that_fits_is_not_cut() {
        let block = set("Ada Lovelace", Style::Bold, 40.0, 500.0, 2);
        assert_eq!(lines(&block), ["Ada Lovelace"]);
    }

    #[test]
    fn ideographs_break_anywhere_and_long_words_between_clusters() {
        let block = set(&"李雷".repeat(20), Style::Regular, 40.0, 300.0, 3);
        assert_eq!(block.lines.len(), 3);
        assert!(
            block
                .lines
                .iter()
                .all(|l| l.width <= 300.0 && l.width > 200.0)
        );
        let block = set(&"x".repeat(200), Style::Regular, 20.0, 100.0, 2);
        assert_eq!(block.lines.len(), 2);
    }

    #[test]
    fn right_to_left_text_is_reversed_and_arabic_joins() {
        // Hebrew: the first letter in logical order is drawn rightmost.
        let block = set("שלום", Style::Regular, 40.0, 500.0, 1);
        let line = &block.lines[0];
        let first = line.glyphs.first().map(|g| g.range.start);
        assert_eq!(first, Some("שלו".len()));
        // Arabic letters take joined forms: the glyph of a medial letter differs from its
        // isolated form.
        let joined = set("ببب", Style::Regular, 40.0, 500.0, 1);
        let alone = set("ب", Style::Regular, 40.0, 500.0, 1);
        let ids: Vec<u16> = joined.lines[0].glyphs.iter().map(|g| g.id).collect();
        assert!(
            ids.iter().all(|&id| id != alone.lines[0].glyphs[0].id),
            "{ids:?}"
        );
    }

    #[test]
    fn emoji_controls_and_overrides_are_left_out() {
        let block = set(
            "\u{1F469}\u{200D}\u{1F373} Chef\u{202E} Ana\u{0007}\u{FE0F}",
            Style::Regular,
            30.0,
            500.0,
            1,
        );
        assert_eq!(block.text, "Chef Ana");
        let block = set(
            "Pizza \u{1F355} or sushi \u{1F363}?",
            Style::Regular,
            30.0,
            500.0,
            1,
        );
        assert_eq!(block.text, "Pizza or sushi?");
        assert_eq!(
            set("\u{1F389}\u{1F389}", Style::Regular, 30.0, 500.0, 1)
                .lines
                .len(),
            0
        );
    }
}
