"""The PDF of a signed consent: the Chinese text as signed, who signed for whom and when, the template version,
the hash of the text, and the signature image (and the withdrawal, when there is one).

The Chinese text uses reportlab's built-in CID font STSong-Light (a PDF reader supplies the glyphs), so no
font file ships with the app. The hashes are also written into the document's metadata (subject, keywords),
where a program can read them without rendering the page.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

CJK_FONT = "STSong-Light"
# Times are shown in the clinic's default zone, with the offset, so the printout is unambiguous.
SHOWN_ZONE = ZoneInfo("Asia/Shanghai")
SIGNATURE_BOX = (70 * mm, 30 * mm)


@dataclass(frozen=True)
class ConsentDocument:
    consent_id: str
    title: str
    body: str
    template_code: str
    template_version: int
    member_name: str
    signer_name: str
    signer_kind: str  # patient | staff
    signed_at: datetime
    text_hash: str
    content_hash: str
    signature_png: bytes
    device_summary: str
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    withdrawal_reason: str | None = None


@lru_cache
def _styles() -> dict[str, ParagraphStyle]:
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    base = ParagraphStyle("body", fontName=CJK_FONT, fontSize=10.5, leading=17, wordWrap="CJK", spaceAfter=4)
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=16, leading=24, alignment=1, spaceAfter=10),
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8.5, leading=12, textColor=colors.grey),
        "cell": ParagraphStyle("cell", parent=base, spaceAfter=0),
        "mono": ParagraphStyle("mono", parent=base, fontName="Courier", fontSize=8, leading=11, spaceAfter=0,
                               wordWrap=None),
        "alert": ParagraphStyle("alert", parent=base, textColor=colors.red),
    }


def _when(at: datetime) -> str:
    return at.astimezone(SHOWN_ZONE).strftime("%Y-%m-%d %H:%M:%S %z")


def _signature(png: bytes) -> Image:
    width, height = ImageReader(io.BytesIO(png)).getSize()
    scale = min(SIGNATURE_BOX[0] / width, SIGNATURE_BOX[1] / height, 1.0)
    return Image(io.BytesIO(png), width=width * scale, height=height * scale, hAlign="LEFT")


def render_consent_pdf(doc: ConsentDocument) -> bytes:
    styles = _styles()
    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm, bottomMargin=18 * mm,
        title=f"{doc.title} v{doc.template_version}", author="CareLoop", creator="CareLoop",
        subject=f"consent {doc.consent_id} text_sha256={doc.text_hash}",
        keywords=[f"text_sha256={doc.text_hash}", f"content_sha256={doc.content_hash}",
                  f"template={doc.template_code}", f"version={doc.template_version}"])
    story: list = [Paragraph(escape(doc.title), styles["title"]),
                   Paragraph(escape(f"模板 {doc.template_code} · 第 {doc.template_version} 版"), styles["small"]),
                   Spacer(1, 4 * mm)]
    story += [Paragraph(escape(line), styles["body"]) for line in doc.body.splitlines() if line.strip()]
    story.append(Spacer(1, 6 * mm))
    how = "（本人或监护人，小程序签署）" if doc.signer_kind == "patient" else "（前台/诊室平板，由员工记录）"
    signer = doc.signer_name + how
    rows = [
        ("受治疗人", Paragraph(escape(doc.member_name), styles["cell"])),
        ("签署人", Paragraph(escape(signer), styles["cell"])),
        ("签署时间", Paragraph(escape(_when(doc.signed_at)), styles["cell"])),
        ("签署设备", Paragraph(escape(doc.device_summary or "—"), styles["cell"])),
        ("文本SHA-256", Paragraph(doc.text_hash, styles["mono"])),
        ("记录SHA-256", Paragraph(doc.content_hash, styles["mono"])),
        ("签名", _signature(doc.signature_png)),
    ]
    table = Table([[Paragraph(label, styles["cell"]), value] for label, value in rows], colWidths=[30 * mm, 140 * mm])
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                               ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke)]))
    story.append(table)
    if doc.withdrawn_at is not None:
        notice = (f"本同意已于 {_when(doc.withdrawn_at)} 由 {doc.withdrawn_by or '—'} 撤回。"
                  f"撤回原因：{doc.withdrawal_reason or '—'}")
        story += [Spacer(1, 6 * mm), Paragraph(escape(notice), styles["alert"])]
    footer = (f"同意书编号 {doc.consent_id}。文本SHA-256为所签署文本（标题、空行、正文，UTF-8）的摘要，"
              "可用于核对文本未被改动。")
    story += [Spacer(1, 6 * mm), Paragraph(escape(footer), styles["small"])]
    pdf.build(story)
    return out.getvalue()
