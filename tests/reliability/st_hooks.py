"""Schemathesis checks for behave's service (loaded with SCHEMATHESIS_HOOKS by test_fuzz.py)."""

import schemathesis


@schemathesis.check
def client_errors_are_json_naming_the_problem(ctx, response, case):
    """Every 4xx is a JSON object with an ``error`` message; a 400/422 for a bad body or query
    also says where and what (``detail[].loc`` + ``msg``, or ``"field: problem"`` in ``error``)."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except Exception as err:  # noqa: BLE001 - any decoding failure is the finding
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        ) from err
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        raise AssertionError(f"{response.status_code} body has no 'error' message: {body!r}"[:400])
    if response.status_code in (400, 422):
        # pydantic-style details: where (loc; [] = the body as a whole, e.g. invalid JSON) and what
        details = [d for d in body.get("detail", []) if isinstance(d, dict)]
        if not any("loc" in d and d.get("msg") for d in details) and ":" not in body["error"]:
            raise AssertionError(f"400 that names neither field nor problem: {body!r}"[:400])
    return None
