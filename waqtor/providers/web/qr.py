"""QR codes of the pairing payload: SVG for the dashboard, text for the terminal (segno, which
comes with the ``web`` extra)."""

from __future__ import annotations

import base64
import io


def svg_data_uri(code: str) -> str:
    """``data:image/svg+xml;base64,...`` (the dashboard's CSP allows data: images only)."""
    import segno

    out = io.BytesIO()
    segno.make_qr(code, error="l").save(out, kind="svg", scale=6, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def terminal(code: str) -> str:
    import segno

    out = io.StringIO()
    segno.make_qr(code, error="l").terminal(out=out, compact=True)
    return out.getvalue()
