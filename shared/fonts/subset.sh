#!/bin/sh
# Rebuilds the subset fonts in this folder from Debian 12's Noto packages (OFL-1.1, see OFL.txt).
# Needs dpkg-deb, apt-get and fonttools (`pip install fonttools`). Hinting is dropped (the cards
# are drawn at 300 DPI with anti-aliasing, and PDF viewers ignore it); layout features are kept,
# because Arabic joining and Devanagari conjuncts need them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
cd "$work"
apt-get download fonts-noto-core fonts-noto-cjk fonts-noto-mono
for deb in *.deb; do dpkg-deb -x "$deb" x; done
noto=x/usr/share/fonts/truetype/noto
cjk=x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
subset() { pyftsubset --no-hinting --layout-features='*' --name-IDs='*' --notdef-outline "$@"; }
latin="U+0020-024F,U+0250-02FF,U+0300-036F,U+0370-03FF,U+0400-052F,U+1AB0-1AFF,U+1DC0-1DFF,U+1E00-1FFF,U+2000-206F,U+20A0-20CF,U+2100-218F,U+2190-21FF,U+2C60-2C7F,U+A720-A7FF,U+FB00-FB06,U+FFFD"
subset --desubroutinize "$noto/NotoSans-Regular.ttf" --unicodes="$latin" --output-file="$here/NotoSans-Regular.ttf"
subset --desubroutinize "$noto/NotoSans-Bold.ttf" --unicodes="$latin" --output-file="$here/NotoSans-Bold.ttf"
for f in NotoSansArabic-Regular NotoSansHebrew-Regular NotoSansDevanagari-Regular; do
  subset "$noto/$f.ttf" --unicodes='*' --output-file="$here/$f.ttf"
done
subset "$noto/NotoSansMono-Regular.ttf" --unicodes="U+0020-007E,U+2026" --output-file="$here/NotoSansMono-Regular.ttf"
# Simplified Chinese glyphs (font 2 of the collection) for CJK punctuation, kana, the CJK
# Unified Ideographs block, Hangul syllables and fullwidth forms: 10 MB of the 19 MB collection.
subset "$cjk" --font-number=2 --unicodes="U+3000-303F,U+3040-30FF,U+3100-312F,U+3130-318F,U+31F0-31FF,U+4E00-9FFF,U+AC00-D7A3,U+FF00-FFEF" --output-file="$here/NotoSansCJKsc-Regular.otf"
python3 "$here/cmap12.py" "$here/NotoSansCJKsc-Regular.otf"
rm -rf "$work"
