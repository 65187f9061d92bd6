"""The named Gradio API, driven with gradio_client against `adapterlab serve` (embedded worker, tiny model).

/submit_job, /job_status, /list_adapters, /predict, /explain, /evaluate, /label_issues and /set_threshold, their
happy paths and their readable errors.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from engine.data import DEMO_PAIR_DATA
from tests.test_app_server import restart_shared_server, shared_server, stop_shared_server, wait_for_job


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    yield shared_server(tmp_path_factory)
    stop_shared_server()


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False, download_files=False)


def status(client: Client):
    return lambda job_id: client.predict(job_id=job_id, api_name="/job_status")


@pytest.fixture(scope="module")
def trained(client, app_server) -> dict:
    """A Pfeiffer job on the reviews CSV, trained to the end."""
    job_id = client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                            label_column="sentiment", method="pfeiffer", reduction_factor=8, epochs=1,
                            base_model=str(app_server.tiny_model), learning_rate=0.002, batch_size=8,
                            api_name="/submit_job")
    return wait_for_job(status(client), job_id)


def test_only_the_named_endpoints_are_public(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/submit_job", "/submit_search", "/job_status", "/search_status",
                                           "/list_adapters", "/predict", "/explain", "/evaluate", "/label_issues",
                                           "/set_threshold"}
    assert not api["unnamed_endpoints"]
    submit = [p["parameter_name"] for p in api["named_endpoints"]["/submit_job"]["parameters"]]
    assert submit[:6] == ["data_file", "text_column", "label_column", "method", "reduction_factor", "epochs"]
    assert {"text_pair_column", "base_model", "learning_rate", "batch_size"} <= set(submit)
    for name in ("/predict", "/explain"):
        assert [p["parameter_name"] for p in api["named_endpoints"][name]["parameters"]] == ["adapter", "text",
                                                                                             "text_pair"]


def test_submit_train_and_status(trained):
    assert trained["state"] == "succeeded", trained.get("error")
    assert trained["progress"] == pytest.approx(1.0)
    assert trained["error"] is None
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels"} <= set(trained["metrics"])
    assert trained["history"] and trained["steps"]
    assert trained["spec"]["method_options"] == {"reduction_factor": 8} and trained["spec"]["learning_rate"] == 0.002
    assert "traceback" not in trained


def test_list_adapters_and_predict(client, trained):
    adapters = client.predict(api_name="/list_adapters")
    mine = next(a for a in adapters if a["id"] == trained["id"])
    assert mine["method"] == "pfeiffer" and mine["labels"] == ["neg", "pos"] and mine["name"]
    result = client.predict(adapter=trained["id"], text="i love it, fantastic quality", api_name="/predict")
    assert result["label"] in ("neg", "pos")
    assert set(result["probabilities"]) == {"neg", "pos"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_explain(client, trained):
    result = client.predict(adapter=trained["id"], text="i love it, fantastic quality", api_name="/explain")
    assert result["label"] in ("neg", "pos") and set(result["probabilities"]) == {"neg", "pos"}
    assert [w for w, _ in result["attributions"]] == ["i", "love", "it", ",", "fantastic", "quality"]
    assert all(isinstance(weight, float) for _, weight in result["attributions"])
    assert set(result["attributions_by_label"]) == {"neg", "pos"}
    assert result["attributions"] == result["attributions_by_label"][result["label"]]
    with pytest.raises(AppError, match="Type a text to classify"):
        client.predict(adapter=trained["id"], text=" ", api_name="/explain")


def test_pairs_with_ia3(client, app_server, trained):
    """A text-pair job (the demo duplicates), trained with IA3 and asked with text_pair; REST items mixing it
    with a single-text Pfeiffer adapter answer as each alone."""
    job_id = client.predict(data_file=handle_file(str(DEMO_PAIR_DATA)), text_column="question1",
                            text_pair_column="question2", label_column="label", method="ia3", epochs=1,
                            base_model=str(app_server.tiny_model), max_train_samples=40, api_name="/submit_job")
    job = wait_for_job(status(client), job_id)
    assert job["state"] == "succeeded", job.get("error")
    assert job["spec"]["text_pair_column"] == "question2"
    result = client.predict(adapter=job_id, text="How do I reset my password?",
                            text_pair="I forgot my password, what now?", api_name="/predict")
    assert set(result["probabilities"]) == {"different", "duplicate"}
    with pytest.raises(AppError, match="second text"):
        client.predict(adapter=job_id, text="How do I reset my password?", api_name="/predict")
    rest = httpx.post(f"{app_server.url}v1/classify", json={"adapter": job_id, "texts": ["How do I reset it?"],
                                                             "text_pairs": ["I forgot my password"]}).json()
    assert set(rest["results"][0]["probabilities"]) == {"different", "duplicate"}
    missing = httpx.post(f"{app_server.url}v1/classify", json={"adapter": job_id, "texts": ["How do I reset it?"]})
    assert missing.status_code == 422 and "text pairs" in missing.json()["detail"]
    items = [{"adapter": job_id, "text": "How do I reset it?", "text_pair": "I forgot my password"},
             {"adapter": trained["id"], "text": "i love it, fantastic quality"},
             {"adapter": job_id, "text": "Where is the station?", "text_pair": "How do I bake bread?"},
             {"adapter": trained["id"], "text": "broke after a day, awful", "text_pair": "ignored: single-text"}]
    mixed = httpx.post(f"{app_server.url}v1/classify", json={"items": items}).json()["results"]
    assert [r["adapter"] for r in mixed] == [i["adapter"] for i in items]
    for item, result in zip(items, mixed, strict=True):
        alone = client.predict(adapter=item["adapter"], text=item["text"], text_pair=item.get("text_pair"),
                               api_name="/predict")
        assert result["label"] == alone["label"]
        assert result["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)


# --- the REST endpoint (/v1), with a plain HTTP client --------------------------------------------------------------

def test_rest_lists_adapters_and_classifies_as_the_page_predicts(client, app_server, trained):
    v1 = f"{app_server.url}v1"
    listed = httpx.get(f"{v1}/adapters").json()
    mine = next(a for a in listed if a["id"] == trained["id"])
    assert {key: mine[key] for key in ("id", "name", "method", "labels")} == {
        "id": trained["id"], "name": trained["name"], "method": "pfeiffer", "labels": ["neg", "pos"]}
    assert mine["runtime"] in ("pytorch", "onnxruntime")
    texts = ["i love it, fantastic quality", "broke after a day, awful"]
    one = httpx.post(f"{v1}/classify", json={"adapter": trained["id"], "texts": texts})
    assert one.status_code == 200
    results = one.json()["results"]
    for text, result in zip(texts, results, strict=True):
        page = client.predict(adapter=trained["id"], text=text, api_name="/predict")
        assert result["adapter"] == trained["id"] and result["label"] == page["label"]
        assert result["probabilities"] == pytest.approx(page["probabilities"], abs=1e-6)
    items = httpx.post(f"{v1}/classify", json={"items": [{"adapter": trained["id"], "text": t} for t in texts[::-1]]})
    assert items.json()["results"] == results[::-1]  # input order kept


def test_rest_serves_an_adapter_from_onnxruntime_once_its_first_request_has_exported_it(client, app_server):
    """A fresh adapter answers from PyTorch, and its first request starts its ONNX export; once made, onnxruntime
    answers as the page (PyTorch) predicts."""
    job_id = client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                            label_column="sentiment", method="lora", epochs=1, base_model=str(app_server.tiny_model),
                            api_name="/submit_job")
    assert wait_for_job(status(client), job_id)["state"] == "succeeded"
    v1 = f"{app_server.url}v1"

    def runtime() -> str:
        return next(a for a in httpx.get(f"{v1}/adapters").json() if a["id"] == job_id)["runtime"]

    assert runtime() == "pytorch"
    texts = ["i love it, fantastic quality", "broke after a day, awful", "fine"]
    first = httpx.post(f"{v1}/classify", json={"adapter": job_id, "texts": texts}, timeout=60).json()["results"]
    deadline = time.monotonic() + 180
    while runtime() != "onnxruntime":
        assert time.monotonic() < deadline, "the adapter's ONNX export did not finish in 3 minutes"
        time.sleep(0.5)
    served = httpx.post(f"{v1}/classify", json={"adapter": job_id, "texts": texts}, timeout=60).json()["results"]
    for text, before, result in zip(texts, first, served, strict=True):
        page = client.predict(adapter=job_id, text=text, api_name="/predict")
        assert result["label"] == before["label"] == page["label"]
        assert result["probabilities"] == pytest.approx(page["probabilities"], abs=1e-5)
        assert before["probabilities"] == pytest.approx(page["probabilities"], abs=1e-6)


@pytest.mark.parametrize(("body", "status_code", "says"), [
    ({"adapter": "no-such-job", "texts": ["hello"]}, 404, "There is no finished adapter 'no-such-job'"),
    ({"adapter": "{id}", "texts": ["fine", "  "]}, 422, "Text 2 is empty"),
    ({"texts": ["hello"]}, 422, "`texts` need an `adapter`"),
    ({"adapter": "{id}", "texts": ["a"], "items": []}, 422, "send either `adapter` and `texts`, or `items`"),
    ({"adapter": "{id}", "texts": ["a", "b"], "text_pairs": ["c"]}, 422, "one second text per text"),
    ({"adapter": "{id}", "texts": ["a"] * 257}, 422, "at most 256"),
])
def test_rest_errors_say_what_is_wrong(app_server, trained, body, status_code, says):
    body = {k: v.replace("{id}", trained["id"]) if isinstance(v, str) else v for k, v in body.items()}
    answer = httpx.post(f"{app_server.url}v1/classify", json=body)
    assert answer.status_code == status_code and says in answer.text


def test_rest_has_an_openapi_schema(app_server):
    schema = httpx.get(f"{app_server.url}v1/openapi.json").json()
    assert {"/v1/classify", "/v1/adapters"} <= set(schema["paths"]) and schema["info"]["title"] == "AdapterLab"
    request = schema["components"]["schemas"]["ClassifyRequest"]["properties"]
    assert {"adapter", "texts", "text_pairs", "items"} <= set(request)


def test_submit_errors_are_readable(client, app_server):
    with pytest.raises(AppError, match="no column 'nope'"):
        client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                       label_column="nope", method="pfeiffer", base_model=str(app_server.tiny_model),
                       api_name="/submit_job")
    with pytest.raises(AppError, match="Unknown method"):
        client.predict(data_file=handle_file(str(app_server.sentiment_csv)), text_column="review",
                       label_column="sentiment", method="adamix", api_name="/submit_job")


def test_status_and_predict_errors_are_readable(client):
    with pytest.raises(AppError, match="not a valid job id"):
        client.predict(job_id="../../etc/passwd", api_name="/job_status")
    with pytest.raises(AppError, match="No job 'abcdef123456'"):
        client.predict(job_id="abcdef123456", api_name="/job_status")
    with pytest.raises(AppError, match="no finished adapter"):
        client.predict(adapter="nope", text="hello", api_name="/predict")


def test_submit_refuses_a_server_path_that_was_not_uploaded(app_server):
    """A raw request naming a file on the server (not an upload) never reaches a job."""
    url = f"{app_server.url}gradio_api/call/submit_job"
    payload = {"data": [{"path": str(app_server.sentiment_csv), "meta": {"_type": "gradio.FileData"}}, "review",
                        "sentiment", "pfeiffer", 16, 1, None, str(app_server.tiny_model), None, 16, None, None]}
    event = httpx.post(url, json=payload).json()["event_id"]
    assert "event: error" in httpx.get(f"{url}/{event}", timeout=60).text


def test_evaluate_a_test_file_and_predict_with_a_threshold(client, trained, app_server, tmp_path):
    """/evaluate keeps the evaluation with the job; a threshold saved with the adapter changes /predict at once."""
    from tests.conftest import NEGATIVE, POSITIVE, write_csv

    rows = [{"review": t, "sentiment": "pos"} for t in POSITIVE] + [{"review": t, "sentiment": "neg"} for t in NEGATIVE]
    test = write_csv(tmp_path / "held-out.csv", rows)
    done = client.predict(adapter=trained["id"], data_file=handle_file(str(test)), api_name="/evaluate")
    assert done["rows"] == 16 and done["file_name"] == "held-out.csv"
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(done["metrics"])
    assert {"ece", "ece_before", "temperature"} <= set(done["calibration"])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADAPTERLAB_HOME", str(app_server.home))
        env.delenv("ADAPTERLAB_DATABASE_URL", raising=False)
        from engine.adapter_io import update_metadata
        from worker import evaluations

        assert [e["id"] for e in evaluations.list_for(trained["id"])][-1] == done["id"]
        folder = evaluations.finished_adapter(trained["id"])
        text = "i love it, fantastic quality"
        p_pos = client.predict(adapter=trained["id"], text=text, api_name="/predict")["probabilities"]["pos"]
        update_metadata(folder, threshold={"label": "pos", "value": min(1.0, p_pos + 1e-3), "rule": "hand",
                                           "precision": 1, "recall": 1, "f1": 1})
        try:
            assert client.predict(adapter=trained["id"], text=text, api_name="/predict")["label"] == "neg"
        finally:
            update_metadata(folder, threshold=None)
    saved = client.predict(adapter=trained["id"], rule="max_f1", api_name="/set_threshold")
    assert saved["threshold"]["label"] == "pos" and saved["threshold"]["rule"] == "max_f1"
    assert client.predict(adapter=trained["id"], rule="", api_name="/set_threshold")["threshold"] is None
    with pytest.raises(AppError, match="must be between 0 and 1"):
        client.predict(adapter=trained["id"], rule="precision", target=5, api_name="/set_threshold")
    issues = client.predict(adapter=trained["id"], api_name="/label_issues")
    assert all(set(i) >= {"split", "row", "given_label", "suggested_label", "score"} for i in issues)
    in_file = client.predict(adapter=trained["id"], data_file=handle_file(str(test)), api_name="/label_issues")
    assert [i["score"] for i in in_file] == sorted((i["score"] for i in in_file), reverse=True)
    with pytest.raises(AppError, match="not among the adapter's labels"):
        bad = write_csv(tmp_path / "bad.csv", [{"review": "x", "sentiment": "maybe"}])
        client.predict(adapter=trained["id"], data_file=handle_file(str(bad)), api_name="/evaluate")


def test_jobs_and_adapters_survive_a_server_restart(client, trained):
    """Everything lives in the job store and the data directory, not in the web process."""
    client = Client(restart_shared_server().url, verbose=False, download_files=False)
    assert client.predict(job_id=trained["id"], api_name="/job_status")["state"] == "succeeded"
    assert trained["id"] in {a["id"] for a in client.predict(api_name="/list_adapters")}
    result = client.predict(adapter=trained["id"], text="i hate it", api_name="/predict")
    assert result["label"] in ("neg", "pos")



def test_rest_answers_generated_requests_as_its_schema_says(app_server, trained):
    """schemathesis: requests generated from `/v1/openapi.json` (an adapter id that exists among them), each
    answered with a status code and body the schema documents, never a server error. Its check that every
    schema-valid body is accepted is left out: one second text per text, non-blank texts and a pair adapter's
    second text are rules JSON Schema cannot say, refused with 422 and a reason."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_dict(httpx.get(f"{app_server.url}v1/openapi.json").json())
    base_url = app_server.url.rstrip("/")
    checked: list[tuple[str, int]] = []

    def fuzz(operation) -> None:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        @given(case=operation.as_strategy(), known=st.booleans(),
               texts=st.lists(st.text(min_size=1), min_size=1, max_size=3))
        def check(case, known, texts):
            if known and isinstance(case.body, dict) and operation.label == "POST /v1/classify":
                # reach the classifier: the known adapter with generated texts (the schema's own bodies mostly
                # miss the one adapter that exists, or carry no texts)
                case.body = {"adapter": trained["id"], "texts": texts}
            response = case.call_and_validate(base_url=base_url, excluded_checks=[positive_data_acceptance])
            checked.append((operation.label, response.status_code))

        check()

    for result in schema.get_all_operations():
        fuzz(result.ok())
    # answers and refusals both met (unknown adapters' 404: test_rest_errors_say_what_is_wrong)
    seen = Counter(checked)
    assert {("GET /v1/adapters", 200), ("POST /v1/classify", 200), ("POST /v1/classify", 422)} <= set(seen), seen


def test_concurrent_rest_requests_each_get_their_own_answers(app_server, trained):
    """Requests arriving together share forward passes (app/coalescing.py); each still gets its own texts' answers,
    the same as when sent one by one."""
    import threading

    url = f"{app_server.url}v1/classify"
    requests = [[f"review {i}: " + ("i love it" if i % 2 else "broke after a day")] * (1 + i % 3) for i in range(12)]
    alone = [httpx.post(url, json={"adapter": trained["id"], "texts": texts}).json() for texts in requests]
    together: list = [None] * len(requests)

    def send(i: int) -> None:
        together[i] = httpx.post(url, json={"adapter": trained["id"], "texts": requests[i]}, timeout=120).json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for one, both in zip(alone, together, strict=True):
        assert [r["label"] for r in both["results"]] == [r["label"] for r in one["results"]]
        for a, b in zip(one["results"], both["results"], strict=True):
            assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)
