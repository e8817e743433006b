"""POST /explain, GET /explain/models and /explain/landmarks over real HTTP: TimeX and Captum
for the registered time-series classifier, Captum for BehaveGPT, 400s that list the choices."""

import base64

import httpx
import pytest

from tests.serving.conftest import SERIES_CHANNELS, SERIES_CLASSES, SERIES_LEN

pytestmark = pytest.mark.slow

CAPTUM = [
    "integrated_gradients",
    "deeplift",
    "saliency",
    "input_x_gradient",
    "occlusion",
    "feature_ablation",
]


def _series(n=2, length=SERIES_LEN, channels=SERIES_CHANNELS):
    return [[[0.1 * (t % 5) + d for d in range(channels)] for t in range(length)] for _ in range(n)]


def _post(server, body):
    return httpx.post(f"{server.url}/explain", json=body, timeout=60)


def test_schema_methods_match_the_library():
    from behave.explain.attributions import CAPTUM_METHODS
    from serving.explain_schemas import CAPTUM_METHODS as SERVED

    assert tuple(SERVED) == tuple(CAPTUM_METHODS) == tuple(CAPTUM)


def test_models_route_lists_the_classifier_with_timex_and_behavegpt(server):
    models = httpx.get(f"{server.url}/explain/models", timeout=10).json()["models"]
    assert set(models) == {"toy", "behavegpt"}
    assert models["toy"]["methods"] == CAPTUM + ["timex"]
    assert models["toy"]["seq_len"] == SERIES_LEN and models["toy"]["classes"] == SERIES_CLASSES
    assert models["toy"]["explainer_version"] == "1"
    assert models["behavegpt"]["methods"] == CAPTUM


def test_timex_explains_with_a_binary_mask_and_a_landmark(server):
    r = _post(
        server, {"family": "tsclassifier", "model": "toy", "method": "timex", "inputs": _series()}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["explainer_version"] == "1" and body["model_version"] == "1"
    assert body["features"] == ["channel_0", "channel_1"]
    assert len(body["explanations"]) == 2
    for e in body["explanations"]:
        assert len(e["attributions"]) == SERIES_LEN and len(e["attributions"][0]) == SERIES_CHANNELS
        assert all(0 <= v <= 1 for row in e["attributions"] for v in row)
        assert {v for row in e["mask"] for v in row} <= {0, 1}
        assert e["prediction"] in SERIES_CLASSES and 0 <= e["landmark"] < 3


@pytest.mark.parametrize("method", CAPTUM)
def test_every_captum_method_answers_with_the_input_shape(server, method):
    body = {"family": "tsclassifier", "method": method, "inputs": _series(1), "n_steps": 8}
    r = _post(server, body)  # the only classifier loaded: `model` may be left out
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    assert len(e["attributions"]) == SERIES_LEN and len(e["attributions"][0]) == SERIES_CHANNELS
    assert e["mask"] is None and e["target"] == e["prediction"]


def test_a_target_class_by_name_and_a_png_heatmap(server):
    body = {"family": "tsclassifier", "model": "toy", "method": "saliency", "inputs": _series(1),
            "target": "dip", "plot": True}  # fmt: skip
    (e,) = _post(server, body).json()["explanations"]
    assert e["target"] == "dip"
    assert base64.b64decode(e["png_base64"]).startswith(b"\x89PNG")


def test_behavegpt_history_is_explained_per_event_and_field(server, tiny_model):
    history = [{"behavior": b, "location": "home"} for b in tiny_model.behaviors[:4]]
    r = _post(server, {"family": "behavegpt", "method": "integrated_gradients", "history": history})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["features"] == ["behavior", "weekday", "time_slot", "location", "domain"]
    (e,) = body["explanations"]
    assert len(e["attributions"]) == 4 and len(e["attributions"][0]) == 5
    assert e["prediction"] in tiny_model.behaviors


def test_landmarks_route_groups_explanations(server):
    body = httpx.get(f"{server.url}/explain/landmarks", params={"model": "toy"}, timeout=10).json()
    assert body["explains_version"] == "1" and len(body["landmarks"]) == 3
    assert body["landmarks"][1]["classes"] == {"calm": 1, "spike": 2}
    r = httpx.get(f"{server.url}/explain/landmarks", params={"model": "nope"}, timeout=10)
    assert r.status_code == 404 and "toy" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"family": "vision", "method": "saliency"}, "valid choices: tsclassifier, behavegpt"),
        ({"family": "tsclassifier", "model": "toy", "method": "shap", "inputs": [[[0, 0]] * 12]},
         "valid choices: integrated_gradients"),
        ({"family": "behavegpt", "method": "timex", "history": [{"behavior": "b1"}]},
         "'timex' is not available for behavegpt"),
        ({"family": "tsclassifier", "model": "gunpoint", "method": "saliency", "inputs": [[[0, 0]]]},
         "valid choices: toy"),
        ({"family": "tsclassifier", "model": "toy", "method": "saliency", "inputs": [[[0, 0]] * 5]},
         "5 time steps; this model reads 12"),
        ({"family": "tsclassifier", "model": "toy", "method": "saliency", "inputs": [[[0]] * 12]},
         "1 channels; this model reads 2"),
        ({"family": "tsclassifier", "model": "toy", "method": "saliency",
          "inputs": [[[0, 0]] * 12], "target": "huge"}, "unknown class 'huge'"),
        ({"family": "tsclassifier", "model": "toy", "method": "saliency",
          "history": [{"behavior": "b1"}]}, "leave out `history`"),
    ],
)  # fmt: skip
def test_bad_requests_get_400_with_the_reason(server, body, expected):
    r = _post(server, body)
    assert r.status_code == 400, r.text
    assert expected in r.text


def test_non_finite_values_are_refused(server):
    raw = ('{"family": "tsclassifier", "model": "toy", "method": "saliency", "inputs": [['
           + ", ".join(["[0, NaN]"] + ["[0, 0]"] * 11) + "]]}")  # fmt: skip
    r = httpx.post(f"{server.url}/explain", content=raw, timeout=10,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400


def test_empty_store_answers_503_saying_how_to_train(empty_server):
    body = {"family": "tsclassifier", "model": "toy", "method": "saliency", "inputs": _series(1)}
    r = _post(empty_server, body)
    assert r.status_code == 503
    assert "pipelines/tsclassifier-freqshapes.yaml" in r.json()["error"]
