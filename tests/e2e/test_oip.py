"""The Open Inference Protocol (v2) over a real Ray Serve, with unmodified clients.

``tritonclient.http`` (binary and JSON tensors), ``tritonclient.grpc`` and the protocol's own
REST client (``open-inference-openapi``: the KServe SDK cannot be installed next to our pins,
see pyproject.toml) talk to an app of our own, ``bandit-serve-oip`` at ``/oip``: metadata,
readiness, inference, the arm and decision id from the response parameters, their feedback on
``/feedback``, and the learning it causes in ``GET /experiments/{name}``; malformed requests
get a 400 with a message.

``tritonclient.grpc`` runs in a subprocess: its protobuf package ``inference`` is also ours
(the router's stubs), and one Python process cannot hold both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import CONTROL_TOKEN, QA_TOKEN, arm, deploy
from .waiting import wait_for

pytestmark = pytest.mark.e2e

APP = "bandit-serve-oip"
PREFIX = "/oip"
EXPERIMENT = "digits-oip"
QA = {"authorization": f"Bearer {QA_TOKEN}"}


def oip_args(demo_store: dict[str, Any], data_dir: str) -> dict[str, Any]:
    uris = demo_store["uris"]
    small = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1}}
    return {
        "data_dir": data_dir,
        "mlflow_tracking_uri": demo_store["tracking_uri"],
        "auth": {"control_token": CONTROL_TOKEN, "qa_token": QA_TOKEN},
        "router": {
            "sync_interval_s": 0.05,
            "max_batch_rows": 64,
            "deployment": {**small, "max_ongoing_requests": 128},
        },
        "pool": {"deployment": {**small, "max_ongoing_requests": 64}},
        "experiments": [
            {
                "name": EXPERIMENT,
                "policy": {"name": "thompson", "params": {"floor": 0.0}},
                "seed": 0,
                "arms": [arm("logreg", uris["logreg"]), arm("forest", uris["forest"])],
            }
        ],
        "lifecycle": {"evaluate_interval_s": 0.5, "timeline_interval_s": 1.0},
    }


@pytest.fixture(scope="module")
def oip_url(
    serve_url: str, demo_store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from ray import serve

    args = oip_args(demo_store, str(tmp_path_factory.mktemp("oip")))
    deploy(args, serve_url, APP, PREFIX)
    yield serve_url + PREFIX
    serve.delete(APP)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    from serve_app.models.demo import digits_split

    _, x_test, _, _ = digits_split()
    return np.ascontiguousarray(x_test[:32], dtype=np.float64)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    from serve_app.models.demo import digits_split

    _, _, _, y_test = digits_split()
    return np.asarray(y_test[:32])


@pytest.fixture
def http(oip_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oip_url, timeout=30) as client:
        yield client


def triton_client(oip_url: str) -> Any:
    import tritonclient.http as triton

    return triton.InferenceServerClient(oip_url.removeprefix("http://"), network_timeout=30)


def triton_infer(
    client: Any, data: np.ndarray, datatype: str, *, binary: bool = True, **kwargs: Any
) -> Any:
    import tritonclient.http as triton

    tensor = triton.InferInput("input-0", list(data.shape), datatype)
    tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = [triton.InferRequestedOutput("output-0", binary_data=binary)]
    return client.infer(EXPERIMENT, [tensor], outputs=outputs, **kwargs)


def summary(http: httpx.Client) -> dict[str, Any]:
    response = http.get(f"/experiments/{EXPERIMENT}")
    assert response.status_code == 200, response.text
    return {arm["name"]: arm for arm in response.json()["arms"]}


# --------------------------------------------------------------------------- tritonclient.http


def test_tritonclient_sees_a_live_ready_server_and_the_experiment_as_a_model(oip_url):
    client = triton_client(oip_url)
    assert client.is_server_live()
    # ready once the state has seen an arm's replica running (the server: any arm of every
    # experiment) and the router has its next snapshot; each arm follows as its replica runs
    arms = ("logreg", "forest")

    def ready() -> bool:
        every_arm = all(client.is_model_ready(EXPERIMENT, model_version=arm) for arm in arms)
        return every_arm and client.is_server_ready()

    wait_for(ready, 30, "the server and both arms ready")
    assert client.is_model_ready(EXPERIMENT)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(EXPERIMENT)
    assert metadata["name"] == EXPERIMENT
    assert metadata["versions"] == ["logreg", "forest"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert metadata["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]
    assert not client.is_model_ready("no-such-experiment")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_a_batch_of_32_fp64_rows(oip_url, rows, labels, binary):
    result = triton_infer(triton_client(oip_url), rows, "FP64", binary=binary, request_id="r-32")
    predictions = result.as_numpy("output-0")
    assert predictions.shape == (32,)
    assert predictions.dtype == np.int64
    assert np.mean(predictions == labels) >= 0.85
    response = result.get_response()
    assert response["id"] == "r-32"
    parameters = response["parameters"]
    assert parameters["arm"] in {"logreg", "forest"}
    assert response["model_version"] == parameters["arm"]
    assert isinstance(parameters["decision_id"], str)
    assert 0.0 < parameters["propensity"] <= 1.0
    assert parameters["forced"] is False


@pytest.mark.parametrize("datatype", ["FP32", "INT64"])
def test_tritonclient_sends_fp32_and_int64_inputs(oip_url, rows, datatype):
    data = rows.astype(np.float32) if datatype == "FP32" else np.rint(rows).astype(np.int64)
    result = triton_infer(triton_client(oip_url), data, datatype)
    assert result.as_numpy("output-0").shape == (32,)


def test_v2_answers_what_predict_answers_for_the_same_arm(oip_url, http, rows):
    result = triton_infer(
        triton_client(oip_url), rows, "FP64", headers=dict(QA), model_version="forest"
    )
    assert result.get_response()["parameters"]["forced"] is True
    assert result.get_response()["parameters"]["propensity"] == 1.0
    body = {"features": rows.tolist(), "experiment": EXPERIMENT, "arm": "forest"}
    predict = http.post("/predict", json=body, headers=dict(QA)).json()
    assert predict["arm"] == "forest"
    assert result.as_numpy("output-0").tolist() == predict["predictions"]


def test_forcing_an_arm_needs_the_qa_or_control_token(oip_url, rows):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as refused:
        triton_infer(triton_client(oip_url), rows[:1], "FP64", model_version="forest")
    assert refused.value.status() == "401"
    assert "Authorization: Bearer" in refused.value.message()


def test_feedback_on_v2_decisions_teaches_the_policy(oip_url, http, rows):
    """Reward forest only: the decision ids from the v2 parameters go to /feedback, and the
    experiment's summary shows every reward learned and forest's weight rising."""
    client = triton_client(oip_url)
    before = summary(http)
    rounds, by_arm = 40, {"logreg": 0, "forest": 0}
    for index in range(rounds):
        result = triton_infer(client, rows[index % 32 : index % 32 + 1], "FP64")
        parameters = result.get_response()["parameters"]
        by_arm[parameters["arm"]] += 1
        reward = 1.0 if parameters["arm"] == "forest" else 0.0
        answer = http.post(
            "/feedback", json={"decision_id": parameters["decision_id"], "reward": reward}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["learned"] is True

    # feedback reaches the state directly; request counts come with the router's next sync
    def learned() -> dict[str, Any] | None:
        after = summary(http)
        fed = {name: after[name]["feedback"] - before[name]["feedback"] for name in after}
        requests = sum(after[n]["requests"] - before[n]["requests"] for n in after)
        rising = after["forest"]["weight"] > after["logreg"]["weight"]
        return after if fed == by_arm and rising and requests >= rounds else None

    after = wait_for(learned, 15, f"{by_arm} rewards learned and {rounds} requests counted")
    assert after["forest"]["reward_sum"] - before["forest"]["reward_sum"] == by_arm["forest"]
    assert after["logreg"]["reward_sum"] == before["logreg"]["reward_sum"]


# --------------------------------------------------------------------------- the protocol's client


def test_the_protocols_own_rest_client_reads_metadata_and_infers(oip_url, rows):
    from open_inference.openapi import InferenceRequest, RequestInput
    from open_inference.openapi.client import OpenInferenceClient

    client = OpenInferenceClient(base_url=oip_url, timeout=30)
    client.check_server_liveness()
    client.check_server_readiness()
    client.check_model_readiness(EXPERIMENT)
    metadata = client.read_model_metadata(EXPERIMENT)
    assert [tensor.datatype for tensor in metadata.inputs] == ["FP64"]
    request = InferenceRequest(
        id="kserve-1",
        inputs=[
            RequestInput(
                name="input-0", shape=[2, 64], datatype="FP64", data=rows[:2].ravel().tolist()
            )
        ],
        parameters={"unit_id": "user-9"},
    )
    response = client.model_infer(EXPERIMENT, request=request)
    assert response.id == "kserve-1"
    assert response.parameters["arm"] in {"logreg", "forest"}
    assert len(response.outputs[0].data.__root__) == 2


# --------------------------------------------------------------------------- malformed requests


def binary_body(document: dict[str, Any], blob: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(document).encode()
    return header + blob, {"inference-header-content-length": str(len(header))}


def tensor(name: str = "input-0", datatype: str = "FP64", shape=(1, 64), **extra) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape), **extra}


ZEROS = [0.0] * 64
MALFORMED = {
    "shape and data disagree": (
        {"inputs": [tensor(shape=(2, 64), data=ZEROS)]},
        "data has 64 elements but shape [2, 64] needs 128",
    ),
    "unknown datatype": (
        {"inputs": [tensor(datatype="FLOAT", data=ZEROS)]},
        "unknown datatype 'FLOAT'",
    ),
    "wrong input name": (
        {"inputs": [tensor(name="pixels", data=ZEROS)]},
        "takes one input, input-0 FP64 [-1, 64]; got 'pixels'",
    ),
    "wrong width": ({"inputs": [tensor(shape=(1, 3), data=[0, 0, 0])]}, "expects rows of 64"),
    "one-dimensional": ({"inputs": [tensor(shape=(64,), data=ZEROS)]}, "takes a batch"),
    "strings": (
        {"inputs": [tensor(datatype="BYTES", data=["a"] * 64)]},
        "is BYTES; experiment 'digits-oip' takes numbers",
    ),
    "unknown output": (
        {"inputs": [tensor(data=ZEROS)], "outputs": [{"name": "probabilities"}]},
        "unknown output 'probabilities'",
    ),
    "too many rows": (
        {"inputs": [tensor(shape=(65, 64), data=ZEROS * 65)]},
        "at most 64 per request",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_json_requests_get_400_with_a_message(http, case):
    document, message = MALFORMED[case]
    response = http.post(f"/v2/models/{EXPERIMENT}/infer", json=document)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("blob", "size", "message"),
    [
        (b"\0" * 100, 512, "truncated"),
        (b"\0" * 600, 512, "the body has 600 bytes after the JSON header"),
        (np.full(64, np.nan).tobytes(), 512, "features must be finite numbers"),
    ],
    ids=["truncated", "extra bytes", "nan"],
)
def test_malformed_binary_requests_get_400_with_a_message(http, blob, size, message):
    parameters = {"binary_data_size": size}
    content, headers = binary_body({"inputs": [tensor(parameters=parameters)]}, blob)
    headers["content-type"] = "application/octet-stream"
    response = http.post(f"/v2/models/{EXPERIMENT}/infer", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_unknown_models_and_arms_are_404_and_other_bodies_415(http):
    body = {"inputs": [tensor(data=ZEROS)]}
    response = http.post("/v2/models/nope/infer", json=body)
    assert response.status_code == 404
    assert response.json() == {"error": f"unknown experiment 'nope'; known: {EXPERIMENT}"}
    response = http.post(f"/v2/models/{EXPERIMENT}/versions/mlp/infer", json=body, headers=dict(QA))
    assert response.status_code == 404
    assert "arm 'mlp' is not an arm of experiment" in response.json()["error"]
    assert http.get("/v2/models/nope").status_code == 404
    response = http.post(
        f"/v2/models/{EXPERIMENT}/infer", content=b"x", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    # a body without Content-Type (what tritonclient sends) from a web page: refused
    response = http.post(
        f"/v2/models/{EXPERIMENT}/infer",
        content=json.dumps(body).encode(),
        headers={"origin": "https://evil.example", "content-type": ""},
    )
    assert response.status_code == 415, response.text


# --------------------------------------------------------------------------- tritonclient.grpc

GRPC_CLIENT = r"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

target, app, experiment, rows_path, token = sys.argv[1:6]
headers = {"application": app}
client = grpcclient.InferenceServerClient(target)
rows = np.load(rows_path)


def infer(data, name="input-0", datatype="FP64", model=experiment, **kwargs):
    tensor = grpcclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return client.infer(model, [tensor], **kwargs)


def refused(call):
    try:
        call()
    except InferenceServerException as error:
        return [error.status(), error.message()]
    return None


out = {
    "live": client.is_server_live(headers=headers),
    "ready": client.is_server_ready(headers=headers),
    "model_ready": client.is_model_ready(experiment, headers=headers),
    "metadata": client.get_model_metadata(experiment, headers=headers, as_json=True),
}
result = infer(rows, request_id="g-1", headers=headers)
out["response"] = result.get_response(as_json=True)
out["predictions"] = result.as_numpy("output-0").tolist()
forced = infer(
    rows[:1], model_version="forest", headers={**headers, "authorization": "Bearer " + token}
)
out["forced"] = forced.get_response(as_json=True)["parameters"]
out["int64"] = infer(np.rint(rows).astype(np.int64), datatype="INT64", headers=headers).as_numpy(
    "output-0"
).tolist()
out["wrong_name"] = refused(lambda: infer(rows[:1], name="pixels", headers=headers))
out["unknown"] = refused(lambda: infer(rows[:1], model="nope", headers=headers))
out["no_token"] = refused(lambda: infer(rows[:1], model_version="forest", headers=headers))
out["nan"] = refused(lambda: infer(np.full((1, 64), np.nan), headers=headers))
print(json.dumps(out))
"""


def test_tritonclient_grpc_reads_metadata_infers_and_gets_codes(
    oip_url, grpc_target, http, rows, labels, tmp_path: Path
):
    np.save(tmp_path / "rows.npy", rows)
    command = [sys.executable, "-c", GRPC_CLIENT, grpc_target, APP, EXPERIMENT]
    command += [str(tmp_path / "rows.npy"), QA_TOKEN]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert (out["live"], out["ready"], out["model_ready"]) == (True, True, True)
    metadata = out["metadata"]
    assert metadata["versions"] == ["logreg", "forest"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "64"]}]
    response = out["response"]
    assert response["id"] == "g-1"
    parameters = {key: next(iter(value.values())) for key, value in response["parameters"].items()}
    assert parameters["arm"] == response["model_version"]
    assert 0.0 < parameters["propensity"] <= 1.0
    assert np.mean(np.asarray(out["predictions"]) == labels) >= 0.85
    assert len(out["int64"]) == 32
    forced = {key: next(iter(value.values())) for key, value in out["forced"].items()}
    assert (forced["arm"], forced["forced"]) == ("forest", True)
    assert out["wrong_name"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "takes one input, input-0 FP64 [-1, 64]" in out["wrong_name"][1]
    assert out["unknown"][0] == "StatusCode.NOT_FOUND"
    assert out["no_token"][0] == "StatusCode.UNAUTHENTICATED"
    assert out["nan"][0] == "StatusCode.INVALID_ARGUMENT"
    feedback = {"decision_id": parameters["decision_id"], "reward": 1}
    answer = http.post("/feedback", json=feedback)
    assert answer.status_code == 200, answer.text
    assert answer.json()["arm"] == parameters["arm"]
