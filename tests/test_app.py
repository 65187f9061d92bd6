"""The web app's pieces without a server: safety checks, what the tabs compute and show, and the page's wiring."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd
import pytest

from app import job_views as views
from app import security, services
from app.tabs import data as data_tab
from app.tabs import jobs as jobs_tab
from app.tabs import train as train_tab
from engine import methods
from engine.data import DEMO_DATA
from engine.errors import ConfigError, DataError
from tests.conftest import write_csv
from worker.access import MACHINE
from worker.spec import normalise


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An empty job store in a temp data directory."""
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADAPTERLAB_DATABASE_URL", raising=False)
    monkeypatch.delenv("ADAPTERLAB_REDIS_URL", raising=False)
    monkeypatch.setenv("ADAPTERLAB_DATASETS", str(tmp_path / "datasets"))
    return tmp_path / "home"


def job(state: str = "succeeded", **extra) -> dict:
    metrics = {"accuracy": 0.9, "macro_f1": 0.85, "labels": ["a", "<b>"], "confusion_matrix": [[4, 1], [0, 5]],
               "per_class": {"a": {"precision": 1.0, "recall": 0.8, "f1": 0.889, "support": 5},
                             "<b>": {"precision": 0.833, "recall": 1.0, "f1": 0.909, "support": 5}}}
    return {"id": "abc123", "name": "tickets · pfeiffer", "state": state, "progress": 0.5, "eta_seconds": 130,
            "attempts": 1, "method": "pfeiffer", "base_model": "sentence-transformers/all-MiniLM-L6-v2",
            "metrics": metrics if state == "succeeded" else None, "error": None, "error_kind": None,
            "created_at": "2025-01-02T03:04:05+00:00", "data": {"kind": "file", "filename": "tickets.csv"},
            "validation_data": None, "history": [{"epoch": 1, "loss": 0.5, "accuracy": 0.8, "macro_f1": 0.7}],
            "steps": [{"step": 10, "epoch": 0.5, "loss": 0.9}],
            "spec": {"data": "uploads/x.csv", "method": "pfeiffer", "reduction_factor": 16.0, "epochs": 3,
                     "learning_rate": 0.001, "text_pair_column": None, "max_train_samples": None}, **extra}


# --- security -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"), ("..\\..\\boot.ini", "boot.ini"), (".hidden.csv", "hidden.csv"),
    ("Rapport été 2024.csv", "Rapport_ete_2024.csv"), ("=cmd|' /C calc'!A0.csv", "C_calc_A0.csv"),
    ("=HYPERLINK(1).csv", "HYPERLINK_1_.csv"), ("", "file"), ("...", "file")])
def test_safe_filename(name, expected):
    assert security.safe_filename(name) == expected


def test_job_ids_and_uploads_are_checked(tmp_path):
    assert security.check_job_id(" 44c36c691f4e ") == "44c36c691f4e"
    for bad in ("../x", "a/b", "", "x" * 65, "a b"):
        with pytest.raises(DataError):
            security.check_job_id(bad)
    uploads = tmp_path / "uploads"
    (uploads / "h").mkdir(parents=True)
    inside = uploads / "h" / "data.csv"
    inside.write_text("text,label\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("x")
    assert security.uploaded_path(str(inside), str(uploads)) == inside.resolve()
    for bad in (str(outside), str(uploads / "h" / ".." / ".." / "secret.csv"), None, str(uploads / "missing")):
        with pytest.raises(DataError):
            security.uploaded_path(bad, str(uploads))


def test_login_and_exposure_warning(monkeypatch):
    monkeypatch.delenv(security.USERNAME_ENV, raising=False)
    monkeypatch.setenv(security.PASSWORD_ENV, "secret")
    assert security.auth_from_env() is None  # both or nothing
    monkeypatch.setenv(security.USERNAME_ENV, "ana")
    assert security.auth_from_env() == ("ana", "secret")
    assert security.exposure_warning("127.0.0.1", None) is None
    assert security.exposure_warning("localhost", None) is None
    assert security.exposure_warning("0.0.0.0", ("ana", "secret")) is None
    assert "ADAPTERLAB_PASSWORD" in security.exposure_warning("0.0.0.0", None)


# --- job views ------------------------------------------------------------------------------------------------

def test_jobs_table_rows():
    table = views.table([job("running"), job("succeeded", id="def456", progress=1.0)])
    assert list(table.columns) == views.TABLE_COLUMNS
    running, done = table.to_dict("records")
    assert running["State"].endswith("Running") and running["Time left"] == "about 2 min"
    assert 'style="width:50%"' in running["Progress"] and running["Macro-F1"] == "—"
    assert done["Time left"] == "—" and done["Macro-F1"] == "0.850" and "100%" in done["Progress"]


def test_job_header_and_settings_in_words():
    assert "Waiting for a worker" in views.header(job("queued"))
    assert "about 2 min left" in views.header(job("running"))
    assert "After epoch 1: macro-F1 0.700" in views.header(job("running"))
    assert "Macro-F1 0.850" in views.header(job("succeeded"))
    settings = dict(views.settings_rows(job()))
    assert settings["Data"] == "tickets.csv" and settings["Method"] == "Pfeiffer"
    assert settings["Reduction factor"] == "16" and settings["Max training rows"] == "all rows"
    assert settings["Second text column"].startswith("none") and settings["Validation data"].startswith("10%")
    hub = views.settings_rows(job(data={"kind": "hub", "name": "glue", "config": "sst2"}))
    assert dict(hub)["Data"] == "glue:sst2"


def test_curves_confusion_and_per_class():
    two_epochs = [{"epoch": e, "loss": 0.5, "accuracy": 0.8, "macro_f1": 0.7} for e in (1, 2)]
    loss = views.loss_frame(job(history=two_epochs))
    assert set(loss["curve"]) == {"training", "validation"}
    assert set(views.metrics_frame(job())["metric"]) == {"accuracy", "macro-F1"}
    confusion = views.confusion_html(job()["metrics"])
    assert "&lt;b&gt;" in confusion and "<b>" not in confusion  # label names are escaped
    assert views.per_class_frame(job()["metrics"])["rows"].tolist() == [5, 5]
    assert views.confusion_html(None) == "" and views.per_class_frame(None).empty


def test_durations():
    assert [views.duration(s) for s in (None, 5, 90, 3 * 3600 + 600)] == ["—", "5 s", "about 2 min",
                                                                          "about 3 h 10 min"]


# --- data tab -------------------------------------------------------------------------------------------------

def loaded(out: tuple) -> dict:
    """A load's outputs by name."""
    return dict(zip(data_tab.SHOWN, out, strict=True))


def loaded_and_checked(source: str, name: str) -> dict:
    """A load, then the check the page chains after it, as the page shows them at the end."""
    out = loaded(data_tab._loaded(source, name))
    assert out["chosen"] is None and "Reading every row" in out["report"]["value"]
    check = data_tab.check(out["loaded"], out["text"].value, out["pair"].value, out["label"].value, None, None)
    return {**out, **dict(zip(data_tab.CHECKED, check, strict=True))}


def checked(source: str, text: str, pair: str, label: str, validation: str | None = None,
            names: dict | None = None) -> dict:
    """The Data tab's check of these columns, by name."""
    table = pd.DataFrame(list((names or {}).items()), columns=data_tab.RENAME_HEADERS)
    val = data_tab.set_validation(validation)
    out = data_tab.check({"source": source, "name": source.rsplit("/", 1)[-1]}, text, pair, label, val, table)
    return dict(zip(data_tab.CHECKED, out, strict=True))


def test_demo_data_loads_with_guessed_columns_and_report():
    out = loaded_and_checked(str(DEMO_DATA), DEMO_DATA.name)
    assert out["loaded"]["source"] == str(DEMO_DATA) and "400 rows" in out["status"]
    assert out["text"].value == "text" and out["label"].value == "label" and out["pair"].value == data_tab.NO_PAIR
    assert len(out["preview"]["value"]) == data_tab.PREVIEW_ROWS
    assert out["chosen"]["labels"] == ["account", "billing", "delivery", "technical"]
    assert out["next_button"]["interactive"] and out["next_hint"] == ""
    report, chart = out["report"]["value"], out["chart"]["value"]
    assert "360" in report and "No rows were dropped" in report
    assert chart.count("al-bar-row") == 4 and ">90<" in chart and "al-rare" not in chart


def test_a_label_column_is_guessed_from_its_content_and_next_says_what_is_missing(tmp_path):
    rows = [{"texte": f"une phrase numéro {i} assez longue", "étiquette": "positif" if i % 2 else "négatif"}
            for i in range(40)]
    out = loaded_and_checked(str(write_csv(tmp_path / "fr.csv", rows)), "fr.csv")
    assert out["text"].value == "texte" and out["label"].value == "étiquette" and out["chosen"]
    out = checked(str(tmp_path / "fr.csv"), "texte", "", None)
    assert out["chosen"] is None and not out["next_button"]["interactive"]
    assert "Choose the label column" in out["next_hint"]


def test_imbalance_and_dropped_rows_are_reported(tmp_path):
    rows = [{"text": f"common {i}", "label": "common"} for i in range(60)]
    rows += [{"text": f"rare {i}", "label": "rare"} for i in range(6)] + [{"text": "", "label": "rare"}]
    path = write_csv(tmp_path / "skewed.csv", rows)
    out = checked(str(path), "text", "", "label")
    assert "imbalanced" in out["report"]["value"] and "macro-F1" in out["report"]["value"]
    assert out["chart"]["value"].count("al-rare") == 1
    assert "Dropped 1 rows" in out["report"]["value"] and "empty 'text'" in out["report"]["value"]


def test_a_separate_validation_file_is_worded_as_what_happens(tmp_path):
    rows = [{"text": f"{label} {i}", "label": label} for label in ("a", "b") for i in range(10)]
    train, validation = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "val.csv", rows[:4] + rows[-4:])
    report = checked(str(train), "text", "", "label", str(validation))["report"]["value"]
    assert "**20** for training" in report and "the **8 rows** of val.csv" in report and "held out" not in report
    assert "held out to measure" in checked(str(train), "text", "", "label")["report"]["value"]


def test_labels_can_be_renamed(tmp_path):
    rows = [{"text": f"{'good' if y else 'bad'} {i}", "label": y} for y in (0, 1) for i in range(10)]
    path = str(write_csv(tmp_path / "binary.csv", rows))
    out = checked(path, "text", "", "label", names={"0": "negative", "1": "positive"})
    assert out["chosen"]["labels"] == ["negative", "positive"]
    assert out["chosen"]["label_names"] == {"0": "negative", "1": "positive"}
    assert "negative" in out["chart"]["value"] and out["renames"]["value"].values.tolist() == [
        ["0", "negative"], ["1", "positive"]]
    out = checked(path, "text", "", "label", names={"0": "same", "1": "same"})
    assert out["chosen"] is None and "Two labels are named &#x27;same&#x27;" in out["report"]["value"]


def test_data_problems_become_messages_not_exceptions(tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01binary" * 50)
    out = loaded(data_tab.load_upload(str(junk)))
    assert "al-error" in out["status"] and "not a text file" in out["status"]
    assert out["loaded"] is None and out["chosen"] is None and out["text"].value is None
    one = write_csv(tmp_path / "one.csv", [{"text": f"t{i}", "label": "x"} for i in range(5)])
    out = checked(str(one), "text", "", "label")
    assert "at least 2" in out["report"]["value"] and out["chosen"] is None
    assert not out["next_button"]["interactive"]
    assert "different columns" in checked(str(one), "text", "", "text")["report"]["value"]


def test_unreachable_hub_dataset_is_explained():
    out = loaded(data_tab.load_hub("no-such-org/no-such-dataset"))
    assert "al-error" in out["status"] and "could not be loaded" in out["status"] and out["chosen"] is None
    assert "Type a dataset name" in loaded(data_tab.load_hub("  "))["status"]


def test_datasets_folder_lists_tables_and_refuses_other_names(home, tmp_path):
    folder = tmp_path / "datasets"
    folder.mkdir()
    write_csv(folder / "tickets.csv", [{"text": "a", "label": "b"}])
    (folder / ".secret.csv").write_text("x")
    (folder / "notes.exe").write_text("x")
    assert services.dataset_files() == ["tickets.csv"]
    assert services.dataset_path("tickets.csv") == folder / "tickets.csv"
    for bad in ("../home/jobs.db", ".secret.csv", "notes.exe"):
        with pytest.raises(DataError):
            services.dataset_path(bad)


# --- train tab ------------------------------------------------------------------------------------------------

DATA = {"source": "/data/x.csv", "name": "x.csv", "validation": None, "text": "text", "pair": None,
        "label": "label", "labels": ["a", "b"], "label_names": None}


def form(**overrides) -> dict:
    values = {"method": "ia3", "method_options": {}, "base_model": "", "epochs": 2.0, "learning_rate": None,
              "batch_size": 16.0, "max_length": 128.0, "max_train_samples": "", "seed": 42.0,
              "early_stopping_patience": "", "base_dropout": False, "name": "  my job "}
    return {**values, **overrides}


def test_build_spec():
    spec = train_tab.build_spec(DATA, form())
    assert spec == {"data": "/data/x.csv", "text_column": "text", "label_column": "label", "method": "ia3",
                    "epochs": 2, "batch_size": 16, "max_length": 128, "max_eval_samples": 2000, "seed": 42,
                    "name": "my job"}
    pfeiffer = train_tab.build_spec(DATA, form(method="pfeiffer", method_options={"reduction_factor": "8"}))
    assert pfeiffer["method_options"] == {"reduction_factor": 8.0}
    lora = train_tab.build_spec(DATA, form(method="lora", method_options={"lora_r": 16, "lora_targets": "query, key"}))
    assert lora["method_options"] == {"lora_r": 16, "lora_alpha": 8, "lora_dropout": 0.0,
                                      "lora_targets": ["query", "key"]}
    with pytest.raises(ConfigError, match="^Rank \\(r\\) must be a whole number, not '2.5'.$"):
        train_tab.build_spec(DATA, form(method="lora", method_options={"lora_r": "2.5"}))
    with pytest.raises(ConfigError, match="^Reduction factor must be greater than 0.$"):
        train_tab.build_spec(DATA, form(method="parallel", method_options={"reduction_factor": "0"}))
    renamed = {**DATA, "label_names": {"a": "alpha"}}
    assert train_tab.build_spec(renamed, form())["label_names"] == {"a": "alpha"}
    with pytest.raises(ConfigError, match="Data tab"):
        train_tab.build_spec(None, form())
    with pytest.raises(ConfigError, match="Epochs must be a whole number"):
        train_tab.build_spec(DATA, form(epochs=1.5))
    with pytest.raises(ConfigError, match="^Epochs must be at least 1.$"):
        train_tab.build_spec(DATA, form(epochs=0))
    with pytest.raises(ConfigError, match="^Learning rate must be greater than 0.$"):
        train_tab.build_spec(DATA, form(learning_rate=0))
    with pytest.raises(ConfigError, match="^Max training rows must be at least 2, or empty.$"):
        train_tab.build_spec(DATA, form(max_train_samples="1"))
    with pytest.raises(ConfigError, match="^Early stopping patience must be a number, or empty.$"):
        train_tab.build_spec(DATA, form(early_stopping_patience="soon"))
    assert train_tab.build_spec(DATA, form(max_train_samples=" 1,000 "))["max_train_samples"] == 1000
    assert train_tab.build_spec(DATA, form(base_dropout=True))["base_dropout"] is True
    assert normalise({"data": "x.csv", "method": "ia3", "base_dropout": "yes"})["base_dropout"] is True
    with pytest.raises(ConfigError, match="Base model dropout while training must be true or false"):
        normalise({"data": "x.csv", "method": "ia3", "base_dropout": "maybe"})


def test_method_switch_shows_its_options_and_defaults():
    cards, *groups, epochs, lr = train_tab.on_method("ia3")
    assert [g["visible"] for g in groups] == [name == "ia3" for name in methods.names()]
    assert lr["value"] == methods.get("ia3").defaults["learning_rate"]
    assert 'al-method al-chosen"><b>IA3' in cards
    for group in methods.GROUPS:  # every group has its heading, every method its card and explanation
        assert group in cards
    assert all(html.escape(m.description) in cards for m in methods.REGISTRY.values())
    form = {"lora.lora_r": 16, "pfeiffer.reduction_factor": 8}
    assert train_tab.chosen_options("lora", form) == {"lora_r": 16}


def test_live_parameter_count(tiny_bert):
    counts = {m: services.parameter_count(str(tiny_bert), m, {"reduction_factor": 8} if m != "ia3" else {}, 3, MACHINE)
              for m in ("pfeiffer", "houlsby", "ia3")}
    assert counts["pfeiffer"][0] == 2 * (2 * 32 * 4 + 4 + 32)  # 2 layers, bottleneck 32 / 8
    assert counts["houlsby"][0] == 2 * counts["pfeiffer"][0]
    assert counts["ia3"][0] < counts["pfeiffer"][0]
    assert all(trainable > adapter for adapter, trainable, _ in counts.values())
    assert len({base for *_, base in counts.values()}) == 1
    text = train_tab.parameter_count(str(tiny_bert), "pfeiffer", {"reduction_factor": 8}, ["a", "b", "c"])
    assert "trainable parameters" in text and "3 labels" in text
    assert "al-error" in train_tab.parameter_count("/no/such/model", "pfeiffer", {}, [])
    assert "must be at least 1" in train_tab.parameter_count(str(tiny_bert), "lora", {"lora_r": 0}, [])
    full = train_tab.parameter_count(str(tiny_bert), "full", {}, ["a", "b"])
    assert "every weight of the model" in full and "memory to train" in full


# --- services, API and page wiring ------------------------------------------------------------------------------

def test_adapters_are_found_by_id_or_unique_name(monkeypatch):
    found = [{"id": "a1", "name": "same"}, {"id": "a2", "name": "same"}, {"id": "a3", "name": "solo"}]
    monkeypatch.setattr(services.jobs, "finished_adapters", lambda actor: found)
    monkeypatch.setattr(services.jobs, "finished_adapter", lambda key, actor: next((a for a in found
                                                                                   if a["id"] == key), None))
    assert services.find_adapter("a2", MACHINE)["id"] == "a2"
    assert services.find_adapter("solo", MACHINE)["id"] == "a3"
    with pytest.raises(ConfigError, match="Several"):
        services.find_adapter("same", MACHINE)
    with pytest.raises(ConfigError, match="no finished adapter"):
        services.find_adapter("../adapters/a1", MACHINE)


def test_retried_adapter_is_reloaded_not_served_stale(monkeypatch, tmp_path):
    """A retried job writes new weights into the same folder: the shared Predictor must load them again."""

    class Recorder:
        def __init__(self):
            self.loaded, self.unloaded = {}, []

        def predict(self, folder, text, pair):
            self.loaded[folder] = True
            return {"label": "a", "probabilities": {"a": 1.0}}

        def unload(self, folder):
            self.unloaded.append(folder)
            del self.loaded[folder]

    recorder, folder = Recorder(), tmp_path / "adapter"
    folder.mkdir()
    adapter = {"id": "j1", "name": "n", "adapter_dir": str(folder), "finished_at": "10:00"}
    monkeypatch.setattr(services, "_predictor", recorder)
    monkeypatch.setattr(services, "_loaded_versions", {})
    monkeypatch.setattr(services.jobs, "finished_adapters", lambda actor: [adapter])
    monkeypatch.setattr(services.jobs, "finished_adapter", lambda key, actor: adapter if key == adapter["id"] else None)
    services.predict("j1", "hello", None, MACHINE)
    services.predict("j1", "hello", None, MACHINE)
    assert recorder.unloaded == []
    adapter["finished_at"] = "11:00"
    services.predict("j1", "hello", None, MACHINE)
    assert recorder.unloaded == [str(folder.resolve())]


def test_job_actions_go_through_the_job_api(monkeypatch):
    calls = []
    monkeypatch.setattr(jobs_tab.jobs, "list_jobs", lambda actor: [job()])
    monkeypatch.setattr(jobs_tab.jobs, "cancel", lambda i, actor: calls.append(("cancel", i)))
    monkeypatch.setattr(jobs_tab.jobs, "retry", lambda i, actor: calls.append(("retry", i)) or i)
    monkeypatch.setattr(jobs_tab.jobs, "delete", lambda i, actor: calls.append(("delete", i)))
    jobs_tab.cancel("abc123")
    assert jobs_tab.retry("abc123")["value"] == "abc123"
    picker, confirm = jobs_tab.delete("abc123")
    assert picker["value"] is None and confirm["visible"] is False
    with pytest.raises(gr.Error, match="not a valid job id"):
        jobs_tab.delete("../../home")
    assert calls == [("cancel", "abc123"), ("retry", "abc123"), ("delete", "abc123")]


def test_live_refresh_redraws_only_what_changed(monkeypatch):
    state = {"job": job("running")}
    monkeypatch.setattr(jobs_tab.jobs, "list_jobs", lambda actor: [state["job"]])
    monkeypatch.setattr(jobs_tab.jobs, "get_job", lambda i, actor: state["job"])
    first = jobs_tab.refresh("abc123", "", "")  # outputs: the table and its 4 menus, its signature, the job page
    table_seen, detail_seen = first[5], first[-1]
    assert isinstance(first[0], pd.DataFrame) and "Running" in first[6]
    again = jobs_tab.refresh("abc123", table_seen, detail_seen)
    assert all(out == gr.skip() for out in again[:5] + again[6:-1])
    state["job"] = job("succeeded", progress=1.0)
    later = jobs_tab.refresh("abc123", table_seen, detail_seen)
    assert "Succeeded" in later[6] and later[0]["State"].tolist() == ["✔ Succeeded"]
    filtered = jobs_tab.refresh("abc123", table_seen, detail_seen, "", ["failed"], [], [], "Newest first")
    assert filtered[0].empty  # a filter that matches no job: an empty table


def test_submit_job_api_refuses_files_that_were_not_uploaded(home, tmp_path):
    from app import api

    path = write_csv(tmp_path / "x.csv", [{"text": "a", "label": "b"}])
    with pytest.raises(gr.Error, match="not uploaded through this app"):
        api.submit_job({"path": str(path)}, "text", "label", "pfeiffer")


def test_page_has_four_tabs_and_only_the_named_api(home):
    from app.main import build_app

    demo = build_app()
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"submit_job", "submit_search", "job_status", "search_status", "list_adapters", "predict",
                      "explain", "evaluate", "label_issues", "set_threshold"}
    steps = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.label[0].isdigit()]
    assert steps == ["1 · Data", "2 · Train", "3 · Jobs", "4 · Playground"]
    assert isinstance(views.table([]), pd.DataFrame)


def test_serve_warns_when_reachable_without_a_login(monkeypatch, capsys):
    from app.cli_serve import warn_if_exposed

    monkeypatch.delenv(security.USERNAME_ENV, raising=False)
    warn_if_exposed("127.0.0.1")
    assert capsys.readouterr().err == ""
    warn_if_exposed("0.0.0.0")
    assert "without a password" in capsys.readouterr().err


def test_serve_is_a_command():
    from app.cli import build_parser

    args = build_parser().parse_args(["serve", "--no-worker", "--port", "9999"])
    assert args.host == "127.0.0.1" and args.port == 9999 and args.no_worker and args.max_upload_mb == 1024


def test_the_count_of_labels_as_text_has_no_classifier_and_refuses_what_cannot_write_them(tmp_path) -> None:
    from tests.conftest import make_tiny_model

    t5 = make_tiny_model(tmp_path / "t5", "t5")
    assert "and no classifier: the decoder writes each label as text" in train_tab.parameter_count(
        str(t5), "ia3", {}, ["a", "b"], True)
    assert "in the classifier (2 labels)" in train_tab.parameter_count(str(t5), "ia3", {}, ["a", "b"])
    assert "Full fine-tuning trains a classification head" in train_tab.parameter_count(str(t5), "full", {}, [], True)
    assert "need an encoder-decoder base model" in train_tab.parameter_count("", "ia3", {}, [], True)
