"""Data loading and validation: formats, column mapping, splits, and one clear error for each bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from engine import data as data_module
from engine.data import DEMO_DATA, DEMO_PAIR_DATA, guess_columns, prepare, read_head, read_table
from engine.errors import DataError
from tests.conftest import ROOT, write_csv


def _rows(n_per_class: int = 10, labels=("a", "b")) -> list[dict]:
    return [{"text": f"text {label} {i}", "label": label} for label in labels for i in range(n_per_class)]


def test_csv_sniffing_bom_encoding_and_header_whitespace(tmp_path) -> None:
    path = tmp_path / "semi.csv"
    path.write_bytes("\ufeff text ;label \ncafé crème;x\nthé;y\n".encode("utf-8"))
    frame = read_table(path)
    assert list(frame.columns) == ["text", "label"] and frame["text"][0] == "café crème"
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("text\tlabel\nna\u00efve caf\u00e9 au lait et cr\u00e8me br\u00fbl\u00e9e\tx\n".encode("latin-1"))
    assert read_table(latin)["text"][0] == "naïve café au lait et crème brûlée"


def test_jsonl_parquet_and_save_to_disk(tmp_path) -> None:
    import datasets

    rows = _rows()
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "disk"))
    for source in ("d.jsonl", "d.parquet", "disk"):
        assert len(prepare(tmp_path / source).train) == 18


def test_integer_labels_keep_numeric_order_and_pairs(tmp_path) -> None:
    rows = [{"s1": f"q{i}", "s2": f"p{i}", "y": i % 3 * 5} for i in range(30)]
    data = prepare(write_csv(tmp_path / "p.csv", rows), text_column="s1", text_pair_column="s2", label_column="y")
    assert data.labels == ["0", "5", "10"]
    assert data.train.pairs is not None and len(data.train.pairs) == len(data.train)


def test_seeded_stratified_split_and_report(tmp_path) -> None:
    rows = _rows(18, ("a",)) + _rows(10, ("b",)) + [{"text": " ", "label": "a"}, {"text": "x", "label": ""}]
    path = write_csv(tmp_path / "d.csv", rows)
    first, second = prepare(path, seed=1), prepare(path, seed=1)
    assert first.validation.texts == second.validation.texts
    assert sorted(first.validation.labels) == [0, 0, 1]  # both classes are represented
    assert first.report.dropped == {"empty 'text'": 1, "missing 'label'": 1}
    assert first.report.rows == 30 and first.report.train_rows + first.report.validation_rows == 28
    assert "dropped 1 rows: empty 'text'" in first.report.lines()
    assert first.fingerprint == second.fingerprint != prepare(path, seed=2).fingerprint


def test_demo_data_is_built_in() -> None:
    data = prepare(DEMO_DATA)
    assert data.labels == ["account", "billing", "delivery", "technical"] and data.report.rows == 400
    pairs = prepare(DEMO_PAIR_DATA, text_column="question1", text_pair_column="question2")
    assert pairs.labels == ["different", "duplicate"]


def test_guess_columns() -> None:
    assert guess_columns(["sentence1", "sentence2", "label"]) == {"text": "sentence1", "text_pair": "sentence2",
                                                                   "label": "label"}
    assert guess_columns(["id", "Review", "Sentiment"]) == {"text": "Review", "text_pair": None, "label": "Sentiment"}


@pytest.mark.parametrize(("content", "kwargs", "message"), [
    (b"", {}, "the file is empty"),
    (b"text,label\n", {}, "has a header but no rows"),
    (b"body,label\nx,a\ny,b\n", {}, "no column 'text'; the columns are 'body', 'label'"),
    (b"text,label\nx,a\ny,a\n", {}, "single class ('a')"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "not a text file"),
    (b"text,label\n ,a\n,b\n", {}, "no usable rows"),
])
def test_bad_files_get_one_clear_error(tmp_path, content, kwargs, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        prepare(path, **kwargs)
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)


def test_unknown_missing_and_unreachable_sources(tmp_path) -> None:
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unknown file type '.xlsx'"):
        prepare(tmp_path / "data.xlsx")
    with pytest.raises(DataError, match="no such file"):
        prepare(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="could not be loaded.*Hub cannot be reached"):
        prepare("some-user/some-dataset-that-is-not-cached")
    with pytest.raises(DataError, match=r"'some-user/ds:cfg:test' \(split 'test'\) could not be loaded"):
        prepare("some-user/ds:cfg:test")
    with pytest.raises(DataError, match="not valid JSON Lines"):
        (tmp_path / "broken.jsonl").write_text("{not json\n")
        prepare(tmp_path / "broken.jsonl")


def test_validation_labels_must_be_known(tmp_path) -> None:
    train = write_csv(tmp_path / "t.csv", _rows())
    valid = write_csv(tmp_path / "v.csv", _rows(2, ("a", "c")))
    with pytest.raises(DataError, match="v.csv: labels 'c' are not in the training data"):
        prepare(train, validation=valid)
    data = prepare(train, validation=write_csv(tmp_path / "v2.csv", _rows(2)))
    assert len(data.train) == 20 and data.report.validation_source == "v2.csv"


def test_csv_quotes_blank_lines_short_rows_and_repeated_names(tmp_path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text('text,label,label\n"hello, world",a,z\n\n"two\nlines",b,z\nshort\nlast,a,z\n', encoding="utf-8")
    assert list(read_table(path).columns) == ["text", "label", "label.1"]
    data = prepare(path, validation_fraction=0.5)
    assert sorted(data.train.texts + data.validation.texts) == ["hello, world", "last", "two\nlines"]
    assert data.report.dropped == {"missing 'label'": 1}


def test_a_row_with_too_many_cells_names_its_line(tmp_path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("text,label\nok,a\nnot, quoted,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"wide.csv: not a valid CSV file \(line 3 has 3 fields, the header 2\)"):
        prepare(path)


def test_training_reads_csv_without_pandas(tmp_path) -> None:
    """pandas costs ~65 MB and 0.4 s per training process; CSV training must not import it."""
    code = ("import sys; from engine.data import prepare, DEMO_DATA; prepare(DEMO_DATA); "
            "import engine.training; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_validation_is_capped_at_a_seeded_stratified_sample_and_the_report_says_so(tmp_path) -> None:
    rows = [{"text": f"row {i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(1000)]
    data = write_csv(tmp_path / "big.csv", rows)
    full = prepare(data, validation_fraction=0.2)
    capped = prepare(data, validation_fraction=0.2, max_eval_samples=50)
    assert len(full.validation) == 200 and len(capped.validation) == 50
    assert capped.validation.labels.count(capped.labels.index("rare")) == 5  # each label in proportion
    assert set(capped.validation.texts) <= set(full.validation.texts) and capped.train.texts == full.train.texts
    assert capped.validation.texts == prepare(data, validation_fraction=0.2, max_eval_samples=50).validation.texts
    assert "50 for validation (split, a seeded sample of 200)" in capped.report.lines()[0]
    assert "200 for validation (split)" in full.report.lines()[0]


TRICKY_CSV = ('\ufefftext;label;label\r\n"hello; world";a;z\r\n\r\n"two\nlines, ""quoted""";b;z\r\n'
              'café crème 😀;a;\r\n;b;z\r\n"";a;z\r\n')


def test_big_files_are_read_by_arrow_with_the_same_cells_as_the_standard_library(tmp_path, monkeypatch) -> None:
    path = tmp_path / "tricky.csv"
    path.write_bytes(TRICKY_CSV.encode("utf-8"))
    small = data_module.read_columns(path)
    monkeypatch.setattr(data_module, "ARROW_FROM_BYTES", 0)  # every file counts as big
    arrow = data_module._read_with_arrow(path)
    assert arrow is not None and {name.strip(): cells for name, cells in arrow.items()} == small
    assert small["text"] == ["hello; world", 'two\nlines, "quoted"', "café crème 😀", "", ""]
    assert list(small) == ["text", "label", "label.1"]
    # what Arrow refuses, the standard library reads (a short row padded) or words (a row too wide)
    short = write_csv(tmp_path / "short.csv", [{"text": "x", "label": "a"}])
    short.write_text(short.read_text() + "only text\n")
    assert data_module.read_columns(short) == {"text": ["x", "only text"], "label": ["a", None]}
    wide = tmp_path / "wide.csv"
    wide.write_text("text,label\nok,a\nnot, quoted,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 has 3 fields"):
        prepare(wide)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncafé,a\nthé,b\n".encode("latin-1"))
    assert data_module.read_columns(latin)["text"] == ["café", "thé"]


def test_a_preview_reads_the_head_of_a_file_not_all_of_it(tmp_path, monkeypatch) -> None:
    rows = [{"text": f"row {i} " + "x" * 80, "label": str(i % 3)} for i in range(500)]
    rows[20]["text"] = "a cell\nover two lines " + "y" * 60
    path = write_csv(tmp_path / "long.csv", rows)
    monkeypatch.setattr(data_module, "HEAD_BYTES", 4096)  # ~45 rows
    head, whole = read_head(path, 1000)
    assert not whole and 30 < len(head["text"]) < 50
    assert head["text"] == [r["text"] for r in rows[: len(head["text"])]]  # the last row is whole
    head, whole = read_head(path, 8)
    assert not whole and head == {"text": [r["text"] for r in rows[:8]], "label": [r["label"] for r in rows[:8]]}
    monkeypatch.setattr(data_module, "HEAD_BYTES", 1 << 20)
    head, whole = read_head(path, 1000)
    assert whole and len(head["text"]) == 500
    pd.DataFrame(rows).to_parquet(tmp_path / "long.parquet")
    head, whole = read_head(tmp_path / "long.parquet", 8)
    assert not whole and head["text"] == [r["text"] for r in rows[:8]]


def test_the_fingerprint_hashes_each_row_as_json(tmp_path) -> None:
    """Written out for speed, it must stay the hash every earlier adapter recorded."""
    import hashlib

    split = data_module.Split(['café "q" \\ \n\t\u2028 \x01 😀', "b"], ["x", None], [0, 1])
    digest = hashlib.sha256(json.dumps(["a", "b"]).encode())
    for row in zip(split.texts, split.pairs, split.labels, strict=True):
        digest.update(json.dumps(list(row), ensure_ascii=False).encode())
    assert data_module.fingerprint(split, ["a", "b"]) == "sha256:" + digest.hexdigest()


def test_the_web_process_parses_a_file_once_while_it_is_unchanged(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(data_module._LastFile, "on", True)
    monkeypatch.setattr(data_module._LastFile, "entry", None)
    path = write_csv(tmp_path / "d.csv", _rows())
    first = data_module.read_columns(path)
    assert data_module.read_columns(path) is first
    write_csv(path, _rows(12))
    assert len(data_module.read_columns(path)["text"]) == 24
