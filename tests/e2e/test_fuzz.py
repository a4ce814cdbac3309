"""Fuzzing the live app from its own OpenAPI schema: no generated request may get a 5xx.

Schemathesis reads ``/openapi.json`` from the running app (the session's real Ray Serve) and
Hypothesis generates requests for every operation in it: ``POST /predict``, ``POST /feedback``
and the GET endpoints, schema-valid and schema-invalid (negative) alike. Whatever arrives, the
app must answer with a 2xx or a 4xx, never a server error.

The run is bounded and reproducible: at most ``MAX_EXAMPLES`` cases per operation, derandomized
(a fixed seed), no example database, no per-example deadline.

Schemathesis's lazy ``schemathesis.pytest.from_fixture(...).parametrize()`` cannot be used here:
it sets ``request.node._nodeid``, which pytest 9.2 no longer has (AttributeError). So each
operation gets its Hypothesis strategy from ``APIOperation.as_strategy`` and a plain ``@given``.
The operations are grouped: ``POST /predict``, ``POST /feedback``, every GET, and the
state-changing admin operations (against an experiment that does not exist).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 150
ADMIN_MAX_EXAMPLES = 60  # per admin operation; they only reach validation, auth and 404

# The operations the README documents; the fuzz groups below cover whatever else the schema has.
DOCUMENTED = [
    ("POST", "/predict"),
    ("POST", "/feedback"),
    ("GET", "/experiments"),
    ("GET", "/experiments/{name}"),
    ("GET", "/healthz"),
]
# State-changing operations (pause, weights, promote, ...) would change the experiments the
# other e2e tests share, so they are fuzzed with ``{name}`` pinned to an experiment that does
# not exist: their validation and 404 paths, never a real change.
MISSING_EXPERIMENT = "fuzz-no-such-experiment"
GROUPS = ["POST /predict", "POST /feedback", "GET", "admin"]

# Hand-picked cases run first (Hypothesis's explicit phase), then the generated ones: decision
# ids shaped like real ones but with non-ASCII, control or padding characters where the
# signature check reads them, and feature values at the edges of a float.
ROW = [0.0] * 64
EXPLICIT_BODIES: dict[str, list[dict[str, Any]]] = {
    "POST /feedback": [
        {"decision_id": decision_id, "reward": reward}
        for decision_id, reward in [
            ("v1.\u00e9.x", 1),
            ("v1.eyJlIjoidHMifQ.\u00e9\u00e9", 1),
            ("v1.\ud7ff.\U0010ffff", 1),
            ("v1.eyJlIjoidHMifQ.\x00", 0),
            ("v1.eyJlIjoidHMifQ.AAAA====", 0.5),
            ("v1..", 1),
            ("v1." + "A" * 2000 + ".x", 1),
        ]
    ],
    "POST /predict": [
        {"features": [ROW], "experiment": "ts", "unit_id": "\u00e9\U0001f600"},
        {"features": [[1e308] * 64], "experiment": "revenue"},
        {"features": [[-1e308] * 64, [5e-324] * 64], "experiment": "ts"},
        {"features": [ROW] * 64, "experiment": "split", "unit_id": "x" * 10_000},
        {"features": [ROW], "experiment": "\x00"},
    ],
}
# The session app's experiments, so GET /experiments/{name} also takes its 200 path.
EXPLICIT_NAMES = ["ts", "split", "short", "revenue", "TS", "ts ", "\u00e9"]

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module")
def api_schema(app_url: str) -> Any:
    """The app's own OpenAPI schema, as served."""
    return schemathesis.openapi.from_url(f"{app_url}/openapi.json", timeout=30)


def operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def group_of(operation: Any) -> str:
    label = f"{operation.method.upper()} {operation.path}"
    if label in GROUPS:
        return label
    return "GET" if operation.method.upper() == "GET" else "admin"


def test_schema_documents_the_public_api(api_schema: Any) -> None:
    listed = {(op.method.upper(), op.path) for op in operations(api_schema)}
    assert set(DOCUMENTED) <= listed
    for op in operations(api_schema):
        if group_of(op) == "admin" and op.path != "/experiments":
            # POST /experiments needs no pin: without a bearer token it can only answer 401
            assert "{name}" in op.path, f"cannot fuzz {op.label} without changing state"


def fuzz(
    operation: Any, app_url: str, max_examples: int = MAX_EXAMPLES, **fixed: Any
) -> Counter[int]:
    """Up to MAX_EXAMPLES generated requests (valid and invalid) to one operation: no 5xx.

    Returns:
        How many responses had each status code.
    """
    statuses: Counter[int] = Counter()
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, **fixed),
        operation.as_strategy(GenerationMode.NEGATIVE, **fixed),
    )

    @settings(FUZZ_SETTINGS, max_examples=max_examples)
    @given(case=cases)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=app_url, timeout=30)
        statuses[response.status_code] += 1
        assert response.status_code < 500, (
            f"{operation.label}: {response.status_code} for {case.as_curl_command()}\n"
            f"response: {response.text[:1000]}"
        )
        case.validate_response(response, checks=[not_a_server_error])

    label = f"{operation.method.upper()} {operation.path}"
    explicit = [
        operation.Case(body=body, media_type="application/json")
        for body in EXPLICIT_BODIES.get(label, [])
    ]
    if label == "GET /experiments/{name}":
        explicit += [operation.Case(path_parameters={"name": name}) for name in EXPLICIT_NAMES]
    for case in explicit:
        run = example(case=case)(run)
    run()
    print(f"{operation.label}: {sorted(statuses.items())}")
    return statuses


@pytest.mark.parametrize("group", GROUPS)
def test_no_generated_request_gets_a_server_error(
    api_schema: Any, app_url: str, group: str
) -> None:
    selected = [op for op in operations(api_schema) if group_of(op) == group]
    if group != "admin":
        assert selected, f"the schema has no {group} operation"
    for operation in selected:
        if group == "admin" and "{name}" in operation.path:
            pinned = {"path_parameters": {"name": MISSING_EXPERIMENT}}
            statuses = fuzz(operation, app_url, ADMIN_MAX_EXAMPLES, **pinned)
        elif group == "admin":
            statuses = fuzz(operation, app_url, ADMIN_MAX_EXAMPLES)
        else:
            statuses = fuzz(operation, app_url)
        if group == "POST /predict":
            # The fuzz reaches the models, not only the validation in front of them.
            assert any(200 <= status < 300 for status in statuses), statuses
