"""What every vendor sandbox shares: data generation, fault injection, rate-limit emulation and
a runner (in-process for tests, on a port for ``make run``).

A sandbox is a Starlette app speaking one vendor's protocol::

    faults = FaultInjector(vendor_error)              # vendor_error(status, message) -> Response
    app = Starlette(routes=[...], middleware=[
        faults.middleware(),                           # outermost: /_sandbox/* control, faults
        Middleware(RateLimitMiddleware, limit=TokenBucketLimit(1.0), reject=vendor_429,
                   key=header_key("x-api-key")),
    ])
"""

from shared.sandbox.data import (
    City,
    city,
    company_name,
    date_between,
    email,
    first_name,
    industry,
    last_name,
    mutation_round,
    phone,
    price,
    product_name,
    rng_for,
    sku,
    stable_hash,
)
from shared.sandbox.faults import (
    ErrorResponder,
    FaultInjector,
    FaultKind,
    FaultMiddleware,
    FaultPlan,
    ForcedFault,
    default_error_response,
    format_seconds,
)
from shared.sandbox.ratelimit import (
    ConcurrencyLimit,
    FixedWindowLimit,
    KeyFunc,
    RateLimitMiddleware,
    Rejection,
    Rejector,
    SandboxLimit,
    TokenBucketLimit,
    Verdict,
    default_reject,
    global_key,
    header_key,
)
from shared.sandbox.runner import (
    ManualClock,
    SandboxServer,
    asgi_client,
    bind_socket,
    run_cli,
    serve,
)

__all__ = [
    "City",
    "ConcurrencyLimit",
    "ErrorResponder",
    "FaultInjector",
    "FaultKind",
    "FaultMiddleware",
    "FaultPlan",
    "FixedWindowLimit",
    "ForcedFault",
    "KeyFunc",
    "ManualClock",
    "RateLimitMiddleware",
    "Rejection",
    "Rejector",
    "SandboxLimit",
    "SandboxServer",
    "TokenBucketLimit",
    "Verdict",
    "asgi_client",
    "bind_socket",
    "city",
    "company_name",
    "date_between",
    "default_error_response",
    "default_reject",
    "email",
    "first_name",
    "format_seconds",
    "global_key",
    "header_key",
    "industry",
    "last_name",
    "mutation_round",
    "phone",
    "price",
    "product_name",
    "rng_for",
    "run_cli",
    "serve",
    "sku",
    "stable_hash",
]
