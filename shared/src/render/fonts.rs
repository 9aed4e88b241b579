//! The fonts cards and sheets are set in, embedded in the binary, and which of them draws a
//! character.
//!
//! They are Noto subsets (SIL Open Font License, `shared/fonts/OFL.txt`; `shared/fonts/README.md`
//! says where each comes from and `shared/fonts/subset.sh` rebuilds them). Embedding keeps
//! `render` free of I/O and the render function one file: about 11 MB of fonts, of which the
//! CJK subset is 10 MB. Only binaries that draw text (render, and the tests) link them.

use std::sync::LazyLock;

use rustybuzz::Face;

/// Every face, in fallback order: a character is drawn by the first face that has it (see
/// [`face_for`]). Latin, Greek and Cyrillic come first, so that Latin letters inside CJK text
/// get Noto Sans's Latin rather than the CJK font's.
pub(super) const FACES: [FontFile; 7] = [
    // Noto Sans.
    FontFile {
        data: include_bytes!("../../fonts/NotoSans-Regular.ttf"),
    },
    // Noto Sans Arabic.
    FontFile {
        data: include_bytes!("../../fonts/NotoSansArabic-Regular.ttf"),
    },
    // Noto Sans Hebrew.
    FontFile {
        data: include_bytes!("../../fonts/NotoSansHebrew-Regular.ttf"),
    },
    // Noto Sans Devanagari.
    FontFile {
        data: include_bytes!("../../fonts/NotoSansDevanagari-Regular.ttf"),
    },
    // Noto Sans CJK SC.
    FontFile {
        data: include_bytes!("../../fonts/NotoSansCJKsc-Regular.otf"),
    },
    // Noto Sans Bold.
    FontFile {
        data: include_bytes!("../../fonts/NotoSans-Bold.ttf"),
    },
    // Noto Sans Mono.
    FontFile {
        data: include_bytes!("../../fonts/NotoSansMono-Regular.ttf"),
    },
];

/// Index of the regular Latin face in [`FACES`].
pub(super) const SANS: u8 = 0;
/// The faces searched for a character of regular text, in order.
const FALLBACK: [u8; 5] = [0, 1, 2, 3, 4];
/// Bold Latin, Greek and Cyrillic; other scripts stay regular (no bold subsets ship).
pub(super) const SANS_BOLD: u8 = 5;
/// Monospaced ASCII, for the address a guest types: every character is as wide as the next,
/// and `0`/`O` and `l`/`1` differ clearly.
pub(super) const MONO: u8 = 6;

/// An embedded font file.
pub(super) struct FontFile {
    pub(super) data: &'static [u8],
}

/// The text styles cards use; each picks the face its Latin text is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Style {
    Regular,
    Bold,
    Mono,
}

/// The parsed faces, in the order of [`FACES`]. Parsing reads only the tables' directory, so
/// this costs microseconds once per process.
static PARSED: LazyLock<Vec<Option<Face<'static>>>> = LazyLock::new(|| {
    FACES
        .iter()
        .map(|file| Face::from_slice(file.data, 0))
        .collect()
});

/// The face at `index` of [`FACES`], if it parsed (the embedded files always do; a test checks).
pub(super) fn face(index: u8) -> Option<&'static Face<'static>> {
    PARSED.get(usize::from(index)).and_then(Option::as_ref)
}

/// Whether face `index` has a glyph for `c`.
pub(super) fn has(index: u8, c: char) -> bool {
    face(index).is_some_and(|f| f.glyph_index(c).is_some())
}

/// The face that draws `c` in `style`, or `None` when no face has it (the character is then
/// left out, never drawn as a box or a question mark).
///
/// A character that is not a letter (a space, a digit, punctuation, a combining mark) stays in
/// the face of the character before it when that face has it, so that runs are not cut at
/// every space and marks shape with their base.
pub(super) fn face_for(c: char, style: Style, previous: Option<u8>) -> Option<u8> {
    if let Some(previous) = previous
        && !c.is_alphabetic()
        && has(previous, c)
    {
        return Some(previous);
    }
    let first = match style {
        Style::Regular => SANS,
        Style::Bold => SANS_BOLD,
        Style::Mono => MONO,
    };
    if has(first, c) {
        return Some(first);
    }
    FALLBACK.into_iter().find(|&i| has(i, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_font_parses() {
        for i in 0..FACES.len() {
            let index = u8::try_from(i).unwrap_or(u8::MAX);
            assert!(face(index).is_some(), "face {i}");
        }
    }

    #[test]
    fn every_ideograph_hangul_syllable_and_kana_has_a_glyph() {
        // The subset's cmap once lost half its characters (a format 4 table over 32,779
        // characters); every character of the ranges it was cut to must map.
        let ranges = [
            '\u{4E00}'..='\u{9FA5}',
            '\u{AC00}'..='\u{D7A3}',
            '\u{3041}'..='\u{3096}',
        ];
        for c in ranges.into_iter().flatten() {
            assert!(has(4, c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn each_script_has_a_face() {
        let cases = [
            ('é', SANS),
            ('Ω', SANS),
            ('Д', SANS),
            ('م', 1),
            ('ש', 2),
            ('क', 3),
            ('李', 4),
            ('か', 4),
            ('한', 4),
        ];
        for (c, expected) in cases {
            assert_eq!(face_for(c, Style::Regular, None), Some(expected), "{c}");
        }
        assert_eq!(face_for('A', Style::Bold, None), Some(SANS_BOLD));
        assert_eq!(face_for('7', Style::Mono, None), Some(MONO));
        // A mark stays in the face of its base (here bold, though the style asks regular);
        // an emoji has no face and is left out.
        assert_eq!(
            face_for('\u{0301}', Style::Regular, Some(SANS_BOLD)),
            Some(SANS_BOLD)
        );
        assert_eq!(face_for('\u{1F469}', Style::Regular, None), None);
    }
}
