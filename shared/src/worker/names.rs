//! What the people who open the ZIP see besides the cards: each card's file name (the guest's
//! name, made safe for every file system) and `manifest.csv`, which lists every guest with
//! their invite URL and file (safe to open in a spreadsheet).

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;

/// The most bytes of a guest's name kept in a file name (UTF-8, before the suffix and
/// extension). File systems allow 255 bytes a name, but macOS stores names decomposed (NFD),
/// which can triple a Hangul name's bytes; 80 bytes stays within the limit there too. The
/// whole name is in the manifest.
const STEM_MAX_BYTES: usize = 80;

/// Characters that Windows refuses in a file name (and `/`, which no system allows).
const FORBIDDEN: &[char] = &['/', '\\', ':', '*', '?', '"', '<', '>', '|'];

/// Names Windows reserves for devices, whatever the extension (`CON.png` cannot be created).
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Whether `c` would change how a name displays without being visible: bidirectional
/// overrides and isolates (which can make `gnp.exe` look like `exe.png`), marks, the byte
/// order mark and line or paragraph separators. Joiners (U+200C, U+200D) stay: Persian
/// names and emoji sequences need them.
fn is_invisible_control(c: char) -> bool {
    matches!(c,
        '\u{200E}' | '\u{200F}' | '\u{061C}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

/// The stem of a guest's card file (no extension): the name in NFC, with control and
/// invisible formatting characters dropped, characters no file system allows replaced by
/// `_`, white space collapsed to single spaces, no leading `.` (a hidden file), `-` (read as
/// an option by shell commands) or `=`, `+`, `@` (read as a formula when the manifest is
/// opened in a spreadsheet), no trailing dot or space (Windows drops them), at most
/// [`STEM_MAX_BYTES`] bytes, and never one of Windows' device names. `guest` when nothing is
/// left.
pub fn file_stem(name: &str) -> String {
    let mut stem = String::with_capacity(name.len());
    let mut space = false;
    for c in name.nfc() {
        if c.is_whitespace() {
            space = !stem.is_empty();
            continue;
        }
        if c.is_control() || is_invisible_control(c) {
            continue;
        }
        if space {
            stem.push(' ');
            space = false;
        }
        stem.push(if FORBIDDEN.contains(&c) { '_' } else { c });
    }
    let mut stem = cut(&stem, STEM_MAX_BYTES).to_owned();
    if stem.starts_with(['.', '-', '=', '+', '@']) {
        stem.replace_range(..1, "_");
    }
    // A cut may leave a joiner or variation selector with nothing to join or vary.
    let trimmed = stem.trim_end_matches(|c: char| {
        matches!(
            c,
            '.' | ' ' | '\u{200C}' | '\u{200D}' | '\u{FE0E}' | '\u{FE0F}'
        )
    });
    let mut stem = if trimmed.is_empty() {
        "guest".to_owned()
    } else {
        trimmed.to_owned()
    };
    let device = stem.split('.').next().unwrap_or_default();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(device)) {
        stem.push('_');
    }
    stem
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Gives every card file a name of its own in the ZIP: the first guest of a name gets
/// `<stem>.png`, later ones `<stem> (2).png`, `<stem> (3).png`, … Names are compared as
/// case-insensitive file systems (Windows, macOS) compare them, so `Ann.png` and `ann.png`
/// never land in the same folder.
#[derive(Debug, Default)]
pub struct FileNames {
    taken: HashSet<String>,
}

impl FileNames {
    /// The file name for the next guest called `name` (in the job's order of guests).
    pub fn next(&mut self, name: &str, extension: &str) -> String {
        let stem = file_stem(name);
        let mut candidate = format!("{stem}.{extension}");
        let mut n = 2u32;
        while !self.taken.insert(candidate.to_lowercase()) {
            candidate = format!("{stem} ({n}).{extension}");
            n += 1;
        }
        candidate
    }

    /// Reserves a name that no card may take (the manifest's).
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_lowercase());
    }
}

/// The manifest's name inside the ZIP.
pub const MANIFEST: &str = "manifest.csv";

/// One guest's line in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestRow {
    /// The guest's full name, as given.
    pub name: String,
    /// The guest's number in the job's list of guests, from 1.
    pub reference: u32,
    pub email: Option<String>,
    pub invite_url: String,
    /// The card's file name in the ZIP.
    pub file: String,
}

/// `manifest.csv` (RFC 4180): a UTF-8 byte order mark, so that spreadsheets read it as
/// UTF-8 rather than the system's code page, a header line, then one line per guest, CRLF
/// line ends.
pub fn manifest_csv(rows: &[ManifestRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + rows.len() * 160);
    out.extend_from_slice("\u{FEFF}".as_bytes());
    line(
        &mut out,
        &["name", "reference", "email", "invite_url", "file"],
    );
    for row in rows {
        let reference = row.reference.to_string();
        line(
            &mut out,
            &[
                &row.name,
                &reference,
                row.email.as_deref().unwrap_or_default(),
                &row.invite_url,
                &row.file,
            ],
        );
    }
    out
}

fn line(out: &mut Vec<u8>, cells: &[&str]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        cell_into(out, cell);
    }
    out.extend_from_slice(b"\r\n");
}

/// One cell. A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return: OWASP's list) gets a leading `'`, which spreadsheets show as
/// text; a cell with a comma, quote or line break is quoted, its quotes doubled.
fn cell_into(out: &mut Vec<u8>, cell: &str) {
    let guarded = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = cell.contains([',', '"', '\r', '\n']);
    if quoted {
        out.push(b'"');
    }
    if guarded {
        out.push(b'\'');
    }
    for byte in cell.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    if quoted {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_every_script_and_lose_what_no_file_system_allows() {
        for (name, stem) in [
            ("Ann O'Neil", "Ann O'Neil"),
            ("李雷", "李雷"),
            ("Дмитрий", "Дмитрий"),
            ("👩‍🍳 Chef Ana", "👩‍🍳 Chef Ana"),
            ("محمد", "محمد"),
            ("דוד", "דוד"),
            ("देवनागरी", "देवनागरी"),
            // Decomposed input comes out composed: one `é`, not `e` and an accent.
            ("Rene\u{301}e", "Ren\u{e9}e"),
            ("AC/DC: live?", "AC_DC_ live_"),
            ("a\\b*c\"d<e>f|g", "a_b_c_d_e_f_g"),
            ("  Ann \t\n Lee  ", "Ann Lee"),
            ("Bell\u{7}e", "Belle"),
            ("evil\u{202E}gnp.exe", "evilgnp.exe"),
            ("Dots...", "Dots"),
            ("..hidden", "_.hidden"),
            ("-rf", "_rf"),
            ("=SUM(A1)", "_SUM(A1)"),
            ("CON", "CON_"),
            ("lpt1.txt", "lpt1.txt_"),
            ("Conrad", "Conrad"),
            ("???", "___"),
            ("\u{202E}\u{7}", "guest"),
        ] {
            assert_eq!(file_stem(name), stem, "{name:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_within_the_byte_budget() {
        for name in ["x".repeat(100), "李".repeat(100), "👩‍🍳".repeat(30)] {
            let stem = file_stem(&name);
            assert!(stem.len() <= STEM_MAX_BYTES, "{} bytes", stem.len());
            assert!(name.starts_with(stem.trim_end_matches('_')), "{stem}");
            assert!(!stem.ends_with('\u{200D}'), "{stem:?}");
        }
        assert_eq!(file_stem(&"李".repeat(100)).chars().count(), 26);
    }

    #[test]
    fn every_file_name_is_unique_ignoring_case() {
        let mut names = FileNames::default();
        names.reserve(MANIFEST);
        let got: Vec<String> = ["Ann", "ann", "Ann (2)", "ANN", "Bo", "manifest"]
            .iter()
            .map(|n| names.next(n, "png"))
            .collect();
        assert_eq!(
            got,
            [
                "Ann.png",
                "ann (2).png",
                "Ann (2) (2).png",
                "ANN (3).png",
                "Bo.png",
                "manifest.png"
            ]
        );
        assert_eq!(names.next("manifest", "csv"), "manifest (2).csv");
    }

    #[test]
    fn manifest_cells_are_quoted_and_never_formulas() {
        let rows = [ManifestRow {
            name: "=HYPERLINK(\"http://x\", \"a, b\")".into(),
            reference: 1,
            email: Some("+ann@example.com".into()),
            invite_url: "http://t/i/abc".into(),
            file: "_HYPERLINK(_http___x_, _a, b_).png".into(),
        }];
        let text = String::from_utf8(manifest_csv(&rows)).unwrap_or_default();
        assert!(text.starts_with("\u{FEFF}name,reference,email,invite_url,file\r\n"));
        assert_eq!(
            text.lines().nth(1),
            Some(
                "\"'=HYPERLINK(\"\"http://x\"\", \"\"a, b\"\")\",1,'+ann@example.com,\
                 http://t/i/abc,\"_HYPERLINK(_http___x_, _a, b_).png\""
            )
        );
        assert!(text.ends_with("\r\n"));
    }
}
