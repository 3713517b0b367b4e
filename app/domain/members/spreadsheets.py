"""Reading and writing the spreadsheets people bring and take away (.xlsx and .csv), defensively.

Uploaded files are hostile until proven otherwise: the type is decided from the content (never the
name or the client's Content-Type), a zip's declared sizes are checked before anything is inflated,
worksheets are streamed (openpyxl read-only) with a row cap, and cells written for download go through
`cell_value`: without the characters the format cannot hold (old rows may have them; one such cell must
not fail a whole export) and neutralised so a spreadsheet program does not run them as formulas. Every
workbook this app writes is built by `build_workbook`.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from app.core.errors import AppError, Unprocessable

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls (and .doc) compound files
ACCEPTED_EXTENSIONS = (".xlsx", ".csv")

MAX_COLUMNS = 100
MAX_SHEETS = 20
EXCEL_MAX_ROWS = 1_048_576
# A genuine sheet of 20,000 members inflates to a few tens of MB; a zip bomb declares far more.
# zipfile stops reading a part at its declared size (and fails the CRC), so the declared sizes
# are a real bound on what openpyxl can inflate, not a hint.
MAX_XLSX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
# sharedStrings.xml is the one part openpyxl reads into memory at once, even in read-only mode.
MAX_SHARED_STRINGS_BYTES = 32 * 1024 * 1024
MAX_XLSX_PARTS = 1000
CSV_FIELD_LIMIT = 64 * 1024

# What openpyxl and zipfile raise on a damaged or forged workbook.
_UNREADABLE_XLSX = (zipfile.BadZipFile, zlib.error, ParseError, KeyError, ValueError, TypeError, IndexError,
                    AttributeError, EOFError, OSError, NotImplementedError)

# A cell starting with one of these is a formula (or DDE payload) to Excel, WPS and LibreOffice.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# What XML 1.0, and so .xlsx, cannot hold: the C0 controls but tab, newline and carriage return (what
# openpyxl refuses, ILLEGAL_CHARACTERS_RE), lone surrogates and the non-characters U+FFFE and U+FFFF.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def unsupported_file_type(detail: str, **extra: Any) -> AppError:
    return AppError(detail, code="unsupported_file_type", status=415, title="Unsupported media type",
                    accepted=list(ACCEPTED_EXTENSIONS), **extra)


def unreadable_file(detail: str) -> Unprocessable:
    return Unprocessable(detail, code="unreadable_file")


def too_many_rows(max_rows: int) -> Unprocessable:
    return Unprocessable(f"the file has more than {max_rows} data rows; split it into smaller files",
                         code="too_many_rows", max_rows=max_rows)


@dataclass
class Table:
    """The rows of the first sheet: every row with its 1-based row number in the file, blank rows left out."""

    file_type: str  # xlsx | csv
    encoding: str | None
    rows: list[tuple[int, list[Any]]]


# ---------------------------------------------------------------- detecting the type


def _extension(filename: str) -> str:
    return os.path.splitext(filename or "")[1].lower()


def _looks_like_text(data: bytes) -> bool:
    return b"\x00" not in data


def detect_file_type(data: bytes, filename: str) -> str:
    """'xlsx' or 'csv' from the content; a name claiming another type than the content is refused."""
    claimed = _extension(filename)
    if claimed and claimed not in ACCEPTED_EXTENSIONS:
        raise unsupported_file_type(f"{claimed} files are not accepted; upload .xlsx or .csv")
    if data.startswith(ZIP_MAGIC):
        detected = ".xlsx"
    elif data.startswith(OLE2_MAGIC):
        raise unsupported_file_type("this is an old-style .xls workbook; save it as .xlsx (Excel 2007 or later)")
    elif _looks_like_text(data):
        detected = ".csv"
    else:
        raise unsupported_file_type("the file is neither an .xlsx workbook nor CSV text")
    if claimed and claimed != detected:
        raise unsupported_file_type(f"the file is named {claimed} but its content is not {claimed}",
                                    detected=detected.lstrip("."))
    return detected.lstrip(".")


def read_table(data: bytes, filename: str, *, max_rows: int) -> Table:
    """Read the first sheet of an .xlsx or a .csv; more than `max_rows` non-blank rows is refused."""
    if not data:
        raise unreadable_file("the file is empty")
    file_type = detect_file_type(data, filename)
    if file_type == "xlsx":
        return Table("xlsx", None, list(_capped(_xlsx_rows(data), max_rows)))
    text, encoding = decode_text(data)
    return Table("csv", encoding, list(_capped(_csv_rows(text), max_rows)))


def read_workbook(data: bytes, filename: str, *, max_rows: int) -> list[tuple[str, Table]]:
    """Every sheet of an .xlsx, by title, in the workbook's order (a .csv is one sheet named after the file),
    each read as `read_table` reads the first; more than `max_rows` non-blank rows in all is refused."""
    if not data:
        raise unreadable_file("the file is empty")
    file_type = detect_file_type(data, filename)
    if file_type == "csv":
        text, encoding = decode_text(data)
        title = os.path.splitext(os.path.basename(filename or ""))[0] or "csv"
        return [(title, Table("csv", encoding, list(_capped(_csv_rows(text), max_rows))))]
    _check_archive(data)
    workbook = _open_workbook(data)
    sheets: list[tuple[str, Table]] = []
    budget = max_rows
    try:
        if not workbook.worksheets:
            raise unreadable_file("the workbook has no worksheet")
        for sheet in workbook.worksheets[:MAX_SHEETS]:
            sheet.reset_dimensions()  # as in _xlsx_rows: the declared <dimension> may be wrong
            rows = sheet.iter_rows(min_row=1, max_row=EXCEL_MAX_ROWS, max_col=MAX_COLUMNS, values_only=True)
            read = list(_capped(((n, _without_trailing_blanks(v)) for n, v in enumerate(rows, start=1)), budget))
            budget -= max(len(read) - 1, 0)
            if budget < 0:
                raise too_many_rows(max_rows)
            sheets.append((writable_text(str(sheet.title)), Table("xlsx", None, read)))
    except _UNREADABLE_XLSX as exc:
        raise unreadable_file("the worksheet cannot be read; open it in Excel and save it again") from exc
    finally:
        workbook.close()
    return sheets


def _capped(rows: Iterable[tuple[int, list[Any]]], max_rows: int) -> Iterator[tuple[int, list[Any]]]:
    """Non-blank rows, stopping (and refusing) as soon as there are more than the header plus `max_rows`."""
    kept = 0
    for number, values in rows:
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        kept += 1
        if kept > max_rows + 1:
            raise too_many_rows(max_rows)
        yield number, values


# ---------------------------------------------------------------- CSV


def decode_text(data: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM) first; Chinese Excel saves "CSV" as GB18030 (GBK), so that next."""
    if data.startswith(codecs.BOM_UTF8):
        candidates = [("utf-8-sig", data[len(codecs.BOM_UTF8):])]
    else:
        candidates = [("utf-8", data), ("gb18030", data)]
    for encoding, payload in candidates:
        try:
            text = payload.decode("utf-8" if encoding == "utf-8-sig" else encoding)
        except UnicodeDecodeError:
            continue
        if _mostly_printable(text):
            return text, encoding
    raise unsupported_file_type("the file is not CSV text in UTF-8 or GB18030")


def _mostly_printable(text: str) -> bool:
    sample = text[:8192]
    control = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\r\n")
    return control <= len(sample) // 100


def _sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(text: str) -> Iterator[tuple[int, list[Any]]]:
    previous_limit = csv.field_size_limit()
    csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
        for number, record in enumerate(reader, start=1):
            if len(record) > MAX_COLUMNS:
                record = record[:MAX_COLUMNS]
            yield number, list(record)
    except csv.Error as exc:
        raise unreadable_file(f"the CSV cannot be read: {exc}") from exc
    finally:
        csv.field_size_limit(previous_limit)


# ---------------------------------------------------------------- xlsx


def _check_archive(data: bytes) -> None:
    """Refuse before inflating anything: not a workbook, too many parts, or parts that expand too far."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError) as exc:
        raise unsupported_file_type("the file looks like a zip archive but cannot be opened as .xlsx") from exc
    with archive:
        parts = archive.infolist()
        names = {p.filename for p in parts}
        if "xl/workbook.xml" not in names or "[Content_Types].xml" not in names:
            raise unsupported_file_type("the zip archive is not an .xlsx workbook")
        if len(parts) > MAX_XLSX_PARTS:
            raise unsupported_file_type(f"the workbook has more than {MAX_XLSX_PARTS} parts")
        total = sum(p.file_size for p in parts)
        shared = sum(p.file_size for p in parts if p.filename.lower() == "xl/sharedstrings.xml")
    if total > MAX_XLSX_UNCOMPRESSED_BYTES or shared > MAX_SHARED_STRINGS_BYTES:
        raise AppError(f"the workbook expands to {total // (1024 * 1024)} MB; at most "
                       f"{MAX_XLSX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB is read", code="spreadsheet_too_large",
                       status=413, title="Payload too large")


def _open_workbook(data: bytes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no default style" and similar chatter about foreign files
            return load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, *_UNREADABLE_XLSX) as exc:
        raise unsupported_file_type("the file cannot be opened as an .xlsx workbook") from exc


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    _check_archive(data)
    workbook = _open_workbook(data)
    try:
        if not workbook.worksheets:
            raise unreadable_file("the workbook has no worksheet")
        sheet = workbook.worksheets[0]
        # The <dimension> a file declares can be wrong (or forged): ignore it and read what is there.
        sheet.reset_dimensions()
        rows = sheet.iter_rows(min_row=1, max_row=EXCEL_MAX_ROWS, max_col=MAX_COLUMNS, values_only=True)
        for number, values in enumerate(rows, start=1):
            yield number, _without_trailing_blanks(values)
    except _UNREADABLE_XLSX as exc:
        raise unreadable_file("the worksheet cannot be read; open it in Excel and save it again") from exc
    finally:
        workbook.close()


def _without_trailing_blanks(values: Sequence[Any]) -> list[Any]:
    """openpyxl pads every row to max_col; most sheets use a handful of columns."""
    end = len(values)
    while end and values[end - 1] is None:
        end -= 1
    return list(values[:end])


# ---------------------------------------------------------------- writing


def writable_text(text: str) -> str:
    """The text without the characters an .xlsx cannot hold (they show as nothing anyway)."""
    return _UNWRITABLE.sub("", text)


def cell_value(value: Any) -> Any:
    """What a workbook cell holds for `value`: text made writable, then neutralised; other values as they are."""
    return neutralize(writable_text(value)) if isinstance(value, str) else value


def neutralize(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is written with a leading quote, as plain text."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def undo_neutralize(text: str) -> str:
    """The inverse on import, so an exported sheet re-imports with the original values."""
    if text.startswith("'") and text[1:].startswith(FORMULA_TRIGGERS):
        return text[1:]
    return text


@dataclass
class Sheet:
    title: str
    header: Sequence[str]
    rows: Iterable[Sequence[Any]]
    column_width: int = 16


def build_workbook(sheets: Sequence[Sheet]) -> bytes:
    """An .xlsx (openpyxl write-only, so rows stream to disk rather than piling up as cell objects)."""
    workbook = Workbook(write_only=True)
    for spec in sheets:
        sheet = workbook.create_sheet(title=writable_text(spec.title))
        for index in range(1, len(spec.header) + 1):
            sheet.column_dimensions[get_column_letter(index)].width = spec.column_width
        sheet.freeze_panes = "A2"
        sheet.append([cell_value(h) for h in spec.header])
        for row in spec.rows:
            sheet.append([cell_value(v) for v in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
