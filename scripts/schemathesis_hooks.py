"""Schemathesis hooks for chamade's API: bodies of media types schemathesis does not know."""

import schemathesis


@schemathesis.serializer("application/sdp")
def sdp_serializer(ctx, value):
    """WHIP and WHEP take an SDP offer as text: send whatever was generated as UTF-8."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode("utf-8")}
