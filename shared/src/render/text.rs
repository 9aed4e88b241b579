//! Text in an 8x8 bitmap font: which glyph a character gets, word wrapping with truncation,
//! and drawing lines onto a [`Canvas`].
//!
//! The font is `font8x8`, so no font file ships and no shaping engine runs. The price is a
//! small repertoire (ASCII, Latin-1, Greek, box and block elements, Hiragana): any other
//! visible character is drawn as `?`, and text is always laid out left to right, one cell
//! per character. Every line has a known width in cells, which makes wrapping exact.

use font8x8::{
    BASIC_FONTS, BLOCK_FONTS, BOX_FONTS, GREEK_FONTS, HIRAGANA_FONTS, LATIN_FONTS, MISC_FONTS,
    UnicodeFonts,
};

use super::canvas::Canvas;

/// Width and height of one glyph cell, in font pixels, before scaling.
pub(super) const CELL: u32 = 8;

/// The character drawn where text was cut short.
pub(super) const ELLIPSIS: char = '\u{2026}';

/// `font8x8` has no horizontal ellipsis, so this is one drawn in the same style: three dots on
/// the baseline row. Each byte is a row, and bit `n` is column `n` from the left.
const ELLIPSIS_GLYPH: [u8; 8] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x49, 0x00];

/// The glyph drawn for characters the font lacks. It is looked up once rather than per use.
const REPLACEMENT: char = '?';

/// One line of text ready to draw: every character has a glyph.
pub(super) type Line = Vec<char>;

/// Maps an input character to the character drawn for it, or `None` to draw nothing.
///
/// Whitespace of any kind (including newlines and tabs) becomes a plain space, so that it only
/// separates words. Zero-width characters that modify their neighbour (combining accents,
/// variation selectors, joiners) are dropped rather than drawn as a stray `?` next to the
/// base character. Control characters and characters without a glyph become `?`, which keeps
/// them visible: a bidirectional override, for example, cannot silently reorder a name.
pub(super) fn display_char(c: char) -> Option<char> {
    if c.is_whitespace() {
        Some(' ')
    } else if is_zero_width_modifier(c) {
        None
    } else if c.is_control() || lookup(c).is_none() {
        Some(REPLACEMENT)
    } else {
        Some(c)
    }
}

/// Characters that attach to the previous one and have no width of their own.
fn is_zero_width_modifier(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}' // Combining diacritical marks.
            | '\u{200B}'..='\u{200D}' // Zero-width space, non-joiner and joiner.
            | '\u{20D0}'..='\u{20FF}' // Combining marks for symbols (the keycap, for one).
            | '\u{FE00}'..='\u{FE0F}' // Variation selectors (emoji versus text style).
            | '\u{FEFF}' // Byte order mark, also a zero-width no-break space.
    )
}

/// The glyph of a character, from the first `font8x8` table that has it.
fn lookup(c: char) -> Option<[u8; 8]> {
    // The basic table maps control characters to blank glyphs; they must never be drawn blank,
    // so they are refused here and `display_char` turns them into `?`.
    if c.is_control() {
        return None;
    }
    if c == ELLIPSIS {
        return Some(ELLIPSIS_GLYPH);
    }
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| GREEK_FONTS.get(c))
        .or_else(|| MISC_FONTS.get(c))
        .or_else(|| BOX_FONTS.get(c))
        .or_else(|| BLOCK_FONTS.get(c))
        .or_else(|| HIRAGANA_FONTS.get(c))
}

/// The glyph drawn for a character of a [`Line`]. Lines only hold characters that passed
/// [`display_char`], so the fallback exists only to keep this total.
fn glyph(c: char) -> [u8; 8] {
    lookup(c).or_else(|| lookup(REPLACEMENT)).unwrap_or([0; 8])
}

/// Wraps `text` into at most `max_lines` lines of at most `max_cols` cells each.
///
/// Words move to the next line whole when they fit on one; a word longer than a line is
/// broken across lines. If the text does not fit, the last line ends with an ellipsis. Work
/// stops as soon as the lines are full, so the cost is bounded by the output, not the input
/// (apart from skipping whitespace and dropped characters).
pub(super) fn wrap(text: &str, max_cols: usize, max_lines: usize) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    if max_cols == 0 || max_lines == 0 {
        return lines;
    }
    let mut chars = text.chars().filter_map(display_char).peekable();
    let mut current: Line = Vec::with_capacity(max_cols);
    let mut word: Vec<char> = Vec::with_capacity(max_cols);
    loop {
        while chars.next_if_eq(&' ').is_some() {}
        // A word is read in pieces of at most one line, so that a huge word costs no more
        // than the lines it fills. A piece of a longer word fills a line by itself, so the
        // next piece always starts a new line and no space is put between them.
        word.clear();
        while word.len() < max_cols {
            match chars.next_if(|&c| c != ' ') {
                Some(c) => word.push(c),
                None => break,
            }
        }
        if word.is_empty() {
            break;
        }
        let needed = if current.is_empty() {
            word.len()
        } else {
            current.len() + 1 + word.len()
        };
        if needed <= max_cols {
            if !current.is_empty() {
                current.push(' ');
            }
            current.extend_from_slice(&word);
            continue;
        }
        if lines.len() + 1 == max_lines {
            // The word does not fit on the last allowed line: the text is cut here.
            end_with_ellipsis(&mut current, max_cols);
            lines.push(current);
            return lines;
        }
        lines.push(std::mem::replace(&mut current, word.clone()));
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// Ends a line with an ellipsis, dropping characters to make room for it.
fn end_with_ellipsis(line: &mut Line, max_cols: usize) {
    line.truncate(max_cols.saturating_sub(1));
    while line.last() == Some(&' ') {
        line.pop();
    }
    line.push(ELLIPSIS);
}

/// Width in pixels of a line drawn at `scale`.
pub(super) fn width_px(line: &[char], scale: u32) -> u32 {
    u32::try_from(line.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(CELL * scale)
}

/// Draws a line with its top-left corner at (`x`, `y`), each font pixel a `scale`-sized
/// square of `shade`. Pixels past the canvas edge are clipped.
pub(super) fn draw(canvas: &mut Canvas, x: u32, y: u32, line: &[char], scale: u32, shade: u8) {
    let mut left = x;
    for &c in line {
        for (row, bits) in (0u32..).zip(glyph(c)) {
            let top = y.saturating_add(row * scale);
            // Runs of set bits become one rectangle each, which keeps the number of fills
            // per glyph row to one or two.
            let mut col = 0u32;
            while col < CELL {
                if bits & (1 << col) == 0 {
                    col += 1;
                    continue;
                }
                let start = col;
                while col < CELL && bits & (1 << col) != 0 {
                    col += 1;
                }
                canvas.fill_rect(
                    left.saturating_add(start * scale),
                    top,
                    (col - start) * scale,
                    scale,
                    shade,
                );
            }
        }
        left = left.saturating_add(CELL * scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.iter().collect()).collect()
    }

    #[test]
    fn words_wrap_at_the_width() {
        let lines = wrap("Where shall we go for lunch on Friday?", 12, 5);
        assert_eq!(
            strings(&lines),
            ["Where shall", "we go for", "lunch on", "Friday?"]
        );
        assert!(lines.iter().all(|l| l.len() <= 12));
    }

    #[test]
    fn text_that_does_not_fit_ends_with_an_ellipsis() {
        let lines = wrap("one two three four five six seven", 9, 2);
        assert_eq!(strings(&lines), ["one two", "three\u{2026}"]);
        // A cut inside the last line's room still leaves space for the ellipsis.
        let lines = wrap("abcdefghijklmnopqrstuvwxyz", 5, 2);
        assert_eq!(strings(&lines), ["abcde", "fghi\u{2026}"]);
    }

    #[test]
    fn long_words_are_broken_across_lines() {
        let lines = wrap("a bcdefghij k", 4, 10);
        assert_eq!(strings(&lines), ["a", "bcde", "fghi", "j k"]);
    }

    #[test]
    fn whitespace_collapses_and_controls_become_question_marks() {
        let lines = wrap("  a\n\tb \u{0007}c\u{202E}  ", 20, 2);
        assert_eq!(strings(&lines), ["a b ?c?"]);
    }

    #[test]
    fn unknown_characters_become_question_marks_and_modifiers_vanish() {
        // An emoji with a variation selector, a decomposed "é", Hebrew, Greek and Latin-1.
        let lines = wrap(
            "\u{2764}\u{FE0F} e\u{0301} \u{05E9}\u{05DC} \u{03A9} \u{00E9}",
            40,
            1,
        );
        assert_eq!(strings(&lines), ["? e ?? \u{03A9} \u{00E9}"]);
    }

    #[test]
    fn degenerate_bounds_give_no_lines() {
        assert!(wrap("", 10, 3).is_empty());
        assert!(wrap("   \n ", 10, 3).is_empty());
        assert!(wrap("text", 0, 3).is_empty());
        assert!(wrap("text", 3, 0).is_empty());
        assert_eq!(strings(&wrap("text", 1, 1)), ["\u{2026}"]);
    }

    #[test]
    fn every_drawn_character_has_a_glyph() {
        for c in ['A', '?', '\u{00E9}', '\u{03A9}', ELLIPSIS, '\u{2588}'] {
            assert!(lookup(c).is_some_and(|g| g != [0; 8]), "{c:?}");
        }
        assert!(lookup('\u{0001}').is_none());
    }
}
