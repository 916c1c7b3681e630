"""W3C trace context for outgoing calls: when the calling program has an active
OpenTelemetry span, its ``traceparent`` (and ``tracestate``) go with the request, so
the server's spans join the caller's trace.

Nothing is imported for programs that do not trace: without ``opentelemetry.trace``
already loaded there can be no active span, and the check costs one dict lookup.
"""

from __future__ import annotations

import sys


def carrier() -> dict[str, str]:
    """The propagation headers of the current span ({} when there is none)."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None or not otel.get_current_span().get_span_context().is_valid:
        return {}
    from opentelemetry.propagate import inject

    out: dict[str, str] = {}
    inject(out)
    return out
