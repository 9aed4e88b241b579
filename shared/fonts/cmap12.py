"""Gives a font a single cmap subtable of format 12 (Windows, Unicode full repertoire).

The CJK subset maps 32,779 characters to glyphs in no particular order; a format 4 subtable
cannot address that many glyphs through its 16-bit offsets, and the one pyftsubset writes
loses about half of them. Format 12 has 32-bit groups and no such limit.
"""
import sys

from fontTools.ttLib import TTFont
from fontTools.ttLib.tables._c_m_a_p import CmapSubtable

path = sys.argv[1]
font = TTFont(path)
mapping = font.getBestCmap()
table = CmapSubtable.newSubtable(12)
table.platformID, table.platEncID, table.language = 3, 10, 0
table.cmap = dict(mapping)
font["cmap"].tables = [table]
font.save(path)
