"""Checking an uploaded clinical file before anything is stored.

An image is believed only once Pillow has decoded it: `verify()` (structure) and then a full `load()` of a
fresh handle (pixels), with a pixel limit checked before the pixels are decoded (a decompression bomb is a
small file that unpacks to gigabytes). What it claims to be — its content type and file-name extension —
must agree with the decoded format, else 422 naming `file`. The image is then re-encoded, JPEG as JPEG and
PNG as PNG (WebP as PNG when it has transparency, else JPEG), with its orientation applied and all metadata
left behind: EXIF (GPS position, camera serial, time), XMP and comments never reach storage. A thumbnail
(longest side THUMBNAIL_PX, JPEG) is made from the same pixels.

A PDF attachment is checked by its `%PDF-` header and stored as sent (no rendering here). HEIC is accepted
only when this Pillow can open it (a plug-in such as pillow-heif registered); the stock build cannot, so an
HEIC upload is 422 and the client sends JPEG.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from app.domain.clinical.forms import FormValueError

THUMBNAIL_PX = 320
# 40 megapixels: every phone camera's photo fits; a bomb does not. Checked before the pixels are decoded.
MAX_PIXELS = 40_000_000
JPEG_QUALITY = 90

# Pillow format → (the content types and extensions that claim it)
IMAGE_FORMATS: dict[str, tuple[set[str], set[str]]] = {
    "JPEG": ({"image/jpeg", "image/jpg", "image/pjpeg"}, {".jpg", ".jpeg", ".jpe"}),
    "PNG": ({"image/png"}, {".png"}),
    "WEBP": ({"image/webp"}, {".webp"}),
    "HEIF": ({"image/heic", "image/heif"}, {".heic", ".heif"}),
}
PDF_TYPES = {"application/pdf"}
PDF_EXTENSIONS = {".pdf"}
# What a browser or WeChat sends when it does not know: the extension and the content decide then.
UNKNOWN_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True)
class CheckedFile:
    data: bytes
    content_type: str
    extension: str
    sha256: str  # of the stored bytes (after re-encoding)
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None


class FileRefused(FormValueError):
    """422 naming `file` (a FormValueError, so it is answered as the form fields' errors are)."""

    def __init__(self, message: str) -> None:
        super().__init__([{"field": "file", "message": message, "type": "invalid_file"}])


def _claims(content_type: str | None, filename: str | None) -> tuple[str, str]:
    declared = (content_type or "").split(";")[0].strip().lower()
    extension = os.path.splitext(filename or "")[1].lower()
    return declared, extension


def _claimed_format(declared: str, extension: str) -> set[str]:
    """The formats the upload's content type and extension agree on (both must, when both are given)."""
    formats = set()
    for name, (types, extensions) in IMAGE_FORMATS.items():
        type_ok = declared in UNKNOWN_TYPES or declared in types
        ext_ok = extension == "" or extension in extensions
        if type_ok and ext_ok and (declared in types or extension in extensions):
            formats.add(name)
    if (declared in UNKNOWN_TYPES or declared in PDF_TYPES) and (extension == "" or extension in PDF_EXTENSIONS) \
            and (declared in PDF_TYPES or extension in PDF_EXTENSIONS):
        formats.add("PDF")
    return formats


def check_upload(data: bytes, *, content_type: str | None, filename: str | None, kind: str) -> CheckedFile:
    """The file as it will be stored, or FileRefused. Blocking (decoding): run it in a thread."""
    if not data:
        raise FileRefused("the file is empty")
    declared, extension = _claims(content_type, filename)
    claimed = _claimed_format(declared, extension)
    if not claimed:
        raise FileRefused(f"{declared or extension or 'this file'} is not accepted: photos are JPEG, PNG or WebP; "
                          "attachments also PDF (content type and file name must agree)")
    if data.startswith(b"%PDF-"):
        if "PDF" not in claimed:
            raise FileRefused("the file is a PDF, not what its content type or name says")
        if kind != "attachment":
            raise FileRefused("a photo must be an image; upload a PDF as kind=attachment")
        return CheckedFile(data=data, content_type="application/pdf", extension=".pdf",
                           sha256=hashlib.sha256(data).hexdigest())
    if claimed == {"PDF"}:
        raise FileRefused("the file says it is a PDF but does not start like one")
    return _reencode(data, claimed)


def _open(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # structure and checksums, without decoding every pixel
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning too: where warnings are errors (tests, -W error) it arrives as an exception.
        raise FileRefused("the image is too large when decoded") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise FileRefused("the file is not a readable image") from None
    if image.width * image.height > MAX_PIXELS:
        raise FileRefused(f"the image has more than {MAX_PIXELS // 1_000_000} megapixels")
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileRefused("the image is too large when decoded") from None
    except (OSError, SyntaxError, ValueError):
        raise FileRefused("the image is damaged (it cannot be decoded completely)") from None
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency on white, other modes (CMYK, palette, 16-bit) converted."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _reencode(data: bytes, claimed: set[str]) -> CheckedFile:
    image = _open(data)
    decoded = "HEIF" if image.format in ("HEIF", "HEIC", "AVIF") else image.format
    if decoded not in claimed:
        raise FileRefused(f"the file is {decoded or 'an unknown format'}, not what its content type or name says")
    # Orientation first (a portrait photo stays upright without its EXIF), then nothing of the metadata is kept.
    upright = ImageOps.exif_transpose(image) or image
    icc = image.info.get("icc_profile")  # colour, not personal: kept so the skin tones stay right
    out = io.BytesIO()
    if decoded == "PNG" or (decoded == "WEBP" and _has_alpha(upright)):
        keep = upright if upright.mode in ("RGB", "RGBA", "L", "LA", "P") else upright.convert("RGBA")
        keep.save(out, format="PNG", optimize=True, **({"icc_profile": icc} if icc else {}))
        content_type, extension = "image/png", ".png"
    else:
        _flatten(upright).save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True,
                               **({"icc_profile": icc} if icc else {}))
        content_type, extension = "image/jpeg", ".jpg"
    stored = out.getvalue()
    thumb = _flatten(upright).copy()
    thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    thumb_out = io.BytesIO()
    thumb.save(thumb_out, format="JPEG", quality=80, optimize=True)
    return CheckedFile(data=stored, content_type=content_type, extension=extension,
                       sha256=hashlib.sha256(stored).hexdigest(), width=upright.width, height=upright.height,
                       thumbnail=thumb_out.getvalue(), thumbnail_width=thumb.width, thumbnail_height=thumb.height)
