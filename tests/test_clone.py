"""Train again with a job's settings (issue 12, part 2): `adapterlab submit --like ID [flags]` and the values the
job page's button puts in the Train tab."""

from __future__ import annotations

import dataclasses
import json

import pytest

from app.cli import main
from app.tabs import train as train_tab
from engine import methods
from tests.test_jobs import home, spec  # noqa: F401  (fixtures, used by name)
from worker import api, runner
from worker.access import MACHINE


def _last_job_id(capsys) -> str:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["job_id"]


def test_submit_like_copies_every_setting_and_the_flags_change_them(home, spec, capsys):  # noqa: F811
    first = api.submit({**spec, "name": "original", "label_names": {"pos": "positive"}, "seed": 7,
                        "method_options": {"reduction_factor": 8}, "balance_classes": True})
    assert main(["submit", "--like", first, "--epochs", "5", "--json"]) == 0
    copy = api.get_job(_last_job_id(capsys))
    original = api.get_job(first)
    assert copy["spec"] == {**original["spec"], "epochs": 5}
    assert copy["data"] == original["data"]  # named as the user named the file, not by its hash
    assert copy["spec"]["method_options"]["reduction_factor"] == 8 and copy["spec"]["label_names"] == {
        "pos": "positive"}

    assert main(["submit", "--like", first, "--reduction-factor", "4", "--json"]) == 0
    assert api.get_job(_last_job_id(capsys))["spec"]["method_options"]["reduction_factor"] == 4

    assert main(["submit", "--like", first, "--method", "ia3", "--json"]) == 0
    other = api.get_job(_last_job_id(capsys))["spec"]
    ia3 = methods.get("ia3")
    assert other["method"] == "ia3" and other["learning_rate"] == ia3.defaults["learning_rate"]
    assert other["method_options"] == dataclasses.asdict(ia3.options())
    assert other["seed"] == 7 and other["balance_classes"] is True  # the rest is the job's


@pytest.mark.parametrize(("args", "message"), [
    (["submit"], "submit needs --data and --method, or --like JOB_ID"),
    (["submit", "--like", "000000000000"], "No job '000000000000'"),
])
def test_submit_without_data_or_a_job_says_what_to_give(home, capsys, args, message):  # noqa: F811
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_the_train_tab_is_filled_with_the_job_s_values(home, spec):  # noqa: F811
    job_id = api.submit({**spec, "method": "lora", "method_options": {"lora_r": 4, "lora_alpha": 8},
                         "max_train_samples": 30, "early_stopping_patience": 2, "label_names": {"neg": "bad"}})
    chosen, form = train_tab.clone_values(api.get_job(job_id), MACHINE)
    assert chosen["like"] == job_id and chosen["name"] == "sentiment.csv" and chosen["label_names"] == {"neg": "bad"}
    assert (chosen["text"], chosen["label"], chosen["pair"]) == ("text", "label", None)
    assert form["method"] == "lora" and form["lora.lora_r"] == 4 and form["lora.lora_alpha"] == 8
    assert (form["epochs"], form["batch_size"], form["max_length"]) == (2, 8, 32)
    assert form["max_train_samples"] == 30 and form["early_stopping_patience"] == 2
    # what the page sends back submits the same training
    form["method_options"] = train_tab.chosen_options("lora", form)
    again = api.submit(train_tab.build_spec(chosen, form), like=chosen["like"])
    assert api.get_job(again)["spec"] == api.get_job(job_id)["spec"]
    assert api.get_job(again)["data"]["filename"] == "sentiment.csv"


def test_compare_two_trained_jobs(home, spec, capsys):  # noqa: F811
    """`adapterlab compare A B --json`: each job's results and only the settings that differ, in words."""
    first = api.submit({**spec, "epochs": 1, "name": "one"})
    second = api.submit({**spec, "epochs": 1, "method": "ia3", "name": "two"})
    for job_id in (first, second):
        assert runner.run_job(job_id) == "succeeded"
    assert main(["compare", first, second, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [j["id"] for j in out["jobs"]] == [first, second]
    for job in out["jobs"]:
        assert 0 <= job["macro_f1"] <= 1 and job["trainable_params"] > 0 and job["size_mb"] > 0
        assert job["train_seconds"] > 0 and len(job["history"]) == 1
    assert out["differences"]["Method"] == ["Pfeiffer", "IA3"]
    assert "Reduction factor" in out["differences"]  # Pfeiffer reads it, IA3 does not: "—"
    assert out["differences"]["Reduction factor"][1] == "—"
    assert "Epochs" not in out["differences"] and "Data" not in out["differences"]
    assert main(["compare", first, second]) == 0
    text = capsys.readouterr().out
    assert "settings that differ:" in text and "macro-F1" in text
    assert main(["compare", first]) == 2
    assert "compare needs two job ids or more" in capsys.readouterr().err
