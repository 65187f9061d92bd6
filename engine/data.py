"""Load labelled text from files or the Hugging Face Hub, check it, and report what was used and dropped.

Every problem a user can fix becomes a `DataError` naming the file, column or row.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import DataError
from engine.hub import hub_available

if TYPE_CHECKING:
    import pandas as pd

DEMO_DATA = Path(__file__).parent / "demo_data" / "support_tickets.csv"
DEMO_PAIR_DATA = Path(__file__).parent / "demo_data" / "support_duplicates.csv"
DELIMITED_SUFFIXES = {".csv", ".tsv", ".txt"}
TABLE_SUFFIXES = DELIMITED_SUFFIXES | {".jsonl", ".json", ".parquet"}
Columns = dict[str, list]  # column name -> cells, the table form training reads (pandas only for other formats)
HEAD_BYTES = 1 << 20  # what a preview reads of a delimited file
ARROW_FROM_BYTES = 16 << 20  # from this size a CSV is worth pyarrow's import (+45 MB, 0.15 s)
# Limits against hostile or mistaken files (docs/security.md): a table to classify has a few columns, and only
# Parquet is compressed, so only it can unpack to far more memory than its upload's size.
MAX_COLUMNS = 1_000
MAX_ROWS = 20_000_000
MAX_UNPACKED_BYTES = 4 << 30
csv.field_size_limit(2**31 - 1)  # a long document in a cell is a text like any other (the default is 128 KB)


@dataclass
class Split:
    """Texts (and optional second texts) with integer label ids; `rows`: each one's row in its file (1 = the
    first row under the header), so what is said about a row can be found in the user's file."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[int]
    rows: list[int] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> Split:
        pairs = [self.pairs[i] for i in indices] if self.pairs is not None else None
        rows = [self.rows[i] for i in indices] if self.rows is not None else None
        return Split([self.texts[i] for i in indices], pairs, [self.labels[i] for i in indices], rows)


@dataclass
class DataReport:
    """What a user sees before training: what was read, kept, dropped and why."""

    source: str
    rows: int
    train_rows: int = 0
    validation_rows: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    validation_source: str = "split"
    validation_sampled_from: int = 0  # the validation rows there were, when a sample of them is evaluated

    def lines(self) -> list[str]:
        if not self.train_rows and self.validation_source == "all rows":  # a file evaluated, not trained on
            out = [f"{self.source}: {self.rows} rows, {self.validation_rows} evaluated"]
        else:
            sampled = f", a seeded sample of {self.validation_sampled_from}" if self.validation_sampled_from else ""
            out = [f"{self.source}: {self.rows} rows, {self.train_rows} for training, "
                   f"{self.validation_rows} for validation ({self.validation_source}{sampled})"]
        out.append("labels: " + ", ".join(f"{k} {v}" for k, v in self.label_counts.items()))
        out += [f"dropped {n} rows: {why}" for why, n in self.dropped.items()]
        return out


@dataclass
class PreparedData:
    train: Split
    validation: Split
    labels: list[str]
    report: DataReport

    @functools.cached_property
    def fingerprint(self) -> str:
        """Computed when asked: the Data tab's summary of a big file has no use for it."""
        return fingerprint(self.train, self.labels)

    def renamed(self, label_names: dict[str, str] | None) -> PreparedData:
        """The same rows with labels under new names (0/1 -> negative/positive), without reading the data again."""
        if not label_names:
            return self
        labels = renamed(self.labels, label_names)
        report = replace(self.report, label_counts=dict(zip(labels, self.report.label_counts.values(), strict=True)))
        return PreparedData(self.train, self.validation, labels, report)


def _sniff_encoding(raw: bytes, name: str, whole: bool = True) -> str:
    """The encoding of `raw`, a whole file or (`whole` False) its head, which may end inside a character."""
    try:
        raw.decode("utf-8")
        return "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError as exc:
        if raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark says UTF-8: only a head cut short may end mid-character
            if exc.reason == "unexpected end of data" and not whole:
                return "utf-8-sig"
            raise DataError(f"{name}: starts as UTF-8 but byte {exc.start:,} is not UTF-8; save the file as "
                            "UTF-8 and upload it again.") from None
        import charset_normalizer  # 65 ms to import: only for files that are not UTF-8

        best = charset_normalizer.from_bytes(raw).best()
        if best is None:
            raise DataError(f"{name}: cannot tell the file's text encoding; save it as UTF-8 and upload it again.") \
                from None
        return best.encoding


def _unique(header: list[str]) -> list[str]:
    """Repeated column names get `.1`, `.2`... as pandas names them."""
    seen: Counter = Counter()
    out = []
    for name in header:
        out.append(f"{name}.{seen[name]}" if seen[name] else name)
        seen[name] += 1
    return out


def _check_width(columns: int, name: str) -> None:
    if columns > MAX_COLUMNS:
        raise DataError(f"{name}: {columns:,} columns; AdapterLab reads tables of at most {MAX_COLUMNS:,}. Keep "
                        "the text and label columns (and any you want to see), and upload it again.")


def _check_text(raw: bytes, name: str) -> None:
    if not raw.strip():
        raise DataError(f"{name}: the file is empty.")
    if b"\x00" in raw[:8192] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name}: this is not a text file. Upload a CSV, TSV, JSONL or Parquet file.")


def _delimiter(text: str, suffix: str) -> str:
    """The separator, sniffed from the header line (later lines hold free text that fools the sniffer)."""
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if suffix == ".tsv" else ","


def _parse(text: str, name: str, sep: str, limit: int | None = None) -> Columns:
    """Rows of delimited text into columns (at most `limit` rows): short rows padded with None."""
    kind = "TSV" if sep == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise DataError(f"{name}: the file is empty.")
        _check_width(len(header), name)
        header = _unique([column.strip() for column in header])
        columns: Columns = {column: [] for column in header}
        rows = 0
        for row in reader:
            if limit is not None and rows >= limit:
                break
            if not row:
                continue  # a blank line
            if len(row) > len(header):
                raise DataError(f"{name}: not a valid {kind} file (line {reader.line_num} has {len(row)} "
                                f"fields, the header {len(header)}); quote cells that contain '{sep}'.")
            row += [None] * (len(header) - len(row))
            for column, cell in zip(header, row, strict=True):
                columns[column].append(cell)
            rows += 1
    except csv.Error as exc:
        raise DataError(f"{name}: not a valid {kind} file ({exc}).") from exc
    return columns


def _read_delimited(path: Path) -> Columns:
    """A CSV/TSV: text cells as written, short rows padded with None. A large UTF-8 file is read by Arrow's
    multi-threaded parser (docs/benchmarks.md, Big files); anything it refuses is read again here, so every
    file gets the standard library's answer or its error."""
    if path.stat().st_size >= ARROW_FROM_BYTES:
        columns = _read_with_arrow(path)
        if columns is not None:
            return columns
    raw = path.read_bytes()
    _check_text(raw, path.name)
    text = raw.decode(_sniff_encoding(raw, path.name)).lstrip("\ufeff")
    return _parse(text, path.name, _delimiter(text, path.suffix))


def _head_text(path: Path) -> tuple[str, str, bool]:
    """(text, encoding, whole): the file's first `HEAD_BYTES` decoded, cut after its last whole line (inside
    the first row when even that is longer); `whole` when that is all of the file."""
    with path.open("rb") as f:
        raw = f.read(HEAD_BYTES + 1)
    _check_text(raw, path.name)
    whole = len(raw) <= HEAD_BYTES
    if not whole:  # cut after the last whole line; a first row longer than the head is cut inside it
        cut = raw.rfind(b"\n", 0, HEAD_BYTES) + 1
        raw = raw[:cut] if cut > raw.find(b"\n") + 1 else raw[:HEAD_BYTES]
    encoding = _sniff_encoding(raw, path.name, whole)
    return raw.decode(encoding, errors="strict" if whole else "ignore").lstrip("\ufeff"), encoding, whole


def _read_with_arrow(path: Path) -> Columns | None:
    """The whole file through pyarrow.csv, every cell a string as written; None where it is not UTF-8 with
    rows of the header's width (the standard library then reads it, and words any error)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text, encoding, _ = _head_text(path)
    if encoding not in ("utf-8", "utf-8-sig"):
        return None
    sep = _delimiter(text, path.suffix)
    header = next((row for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep) if row), None)
    if not header:
        return None
    _check_width(len(header), path.name)
    try:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                               convert_options=pacsv.ConvertOptions(
                                   column_types={name: pa.string() for name in header}))
    except (pa.ArrowInvalid, OSError):
        return None
    if table.column_names != header:
        return None
    names = _unique([column.strip() for column in header])
    return {name: column.to_pylist() for name, column in zip(names, table.columns, strict=True)}


def read_head(source: str | Path, rows: int) -> tuple[Columns, bool]:
    """(columns, whole): the first `rows` rows of a table for a preview, without reading a large file whole;
    `whole` when they are all of it. CSV/TSV read only their first `HEAD_BYTES`, Parquet its first batch; other
    sources are read whole."""
    path = Path(str(source)).expanduser()
    suffix = path.suffix.lower()
    if path.is_file() and suffix in DELIMITED_SUFFIXES:
        text, _, whole = _head_text(path)
        # one row more than asked: when the head holds fewer, its last may be cut at HEAD_BYTES and is dropped
        columns = {name.strip(): cells for name, cells in _parse(text, path.name, _delimiter(text, suffix),
                                                                 rows + 1).items()}
        count = len(next(iter(columns.values())))
        if not count:
            raise DataError(f"{path.name}: the file has a header but no rows." if whole else
                            f"{path.name}: its first line is longer than {HEAD_BYTES >> 20} MB; is it a table?")
        keep = rows if whole or count > rows else max(1, count - 1)
        return {name: cells[:keep] for name, cells in columns.items()}, whole and count <= rows
    if path.is_file() and suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            _check_width(parquet.metadata.num_columns, path.name)
            batch = next(parquet.iter_batches(batch_size=rows), None)
            if batch is None or not batch.num_rows:
                raise DataError(f"{path.name}: the file has a header but no rows.")
            names = _unique([str(name).strip() for name in batch.schema.names])
            return ({name: batch.column(i).to_pylist() for i, name in enumerate(names)},
                    parquet.metadata.num_rows <= rows)
        except DataError:
            raise
        except Exception as exc:  # pyarrow raises its own types for corrupt files (and for text not UTF-8)
            raise _unreadable(path, exc) from exc
    frame = read_table(source)
    return {str(name): frame[name].head(rows).tolist() for name in frame.columns}, len(frame) <= rows


def _unreadable(path: Path, exc: Exception) -> DataError:
    if isinstance(exc, UnicodeDecodeError) or "Invalid UTF8" in str(exc):
        return DataError(f"{path.name}: holds text that is not UTF-8; write the file again with UTF-8 text.")
    return DataError(f"{path.name}: cannot be read as {path.suffix[1:].upper()} ({exc}).")


def _read_file(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return _read_parquet(path)
        if suffix in (".jsonl", ".json"):
            try:
                return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
            except ValueError as exc:
                raise DataError(f"{path.name}: not valid {'JSON Lines' if suffix == '.jsonl' else 'JSON'} "
                                f"({str(exc).splitlines()[0]}).") from exc
        if suffix in DELIMITED_SUFFIXES:
            return pd.DataFrame(_read_delimited(path))
    except (OSError, ImportError) as exc:
        raise DataError(f"{path.name}: cannot be read ({exc}).") from exc
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        if isinstance(exc, DataError):
            raise
        raise _unreadable(path, exc) from exc
    raise DataError(f"{path.name}: unknown file type '{suffix}'. Use .csv, .tsv, .jsonl or .parquet.")


def _read_parquet(path: Path) -> pd.DataFrame:
    """Batch by batch, refused as soon as it unpacks past the limits, or its first batch says it will: a few
    megabytes of Parquet can hold billions of repeated cells."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    _check_width(parquet.metadata.num_columns, path.name)
    rows = parquet.metadata.num_rows
    if rows > MAX_ROWS:
        raise DataError(f"{path.name}: {rows:,} rows; AdapterLab reads at most {MAX_ROWS:,}. Upload a sample.")
    batches, unpacked, expected = [], 0, 0.0
    for batch in parquet.iter_batches(batch_size=8_192):
        unpacked += batch.nbytes
        if not batches:  # the first batch tells what the whole file will unpack to
            expected = batch.nbytes / max(1, batch.num_rows) * rows
        if max(unpacked, expected) > MAX_UNPACKED_BYTES:
            raise DataError(f"{path.name}: unpacks to more than {MAX_UNPACKED_BYTES >> 30} GB of cells; "
                            "AdapterLab reads at most that. Upload a sample.")
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    table.validate(full=True)  # text that is not UTF-8 is refused here, not when a cell is first read
    return table.to_pandas()


def _read_hub(source: str, split: str) -> pd.DataFrame:
    import datasets

    name, _, rest = source.partition(":")
    config, _, named_split = rest.partition(":")
    split = named_split or split
    if not hub_available():  # answer from the local cache at once instead of retrying the network
        datasets.config.HF_HUB_OFFLINE = True
    try:
        loaded = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # the hub client raises many types; all mean "cannot get it"
        raise DataError(
            f"Dataset '{source}' (split '{split}') could not be loaded: it is not a local file or folder, and "
            f"the Hugging Face Hub cannot be reached or has no such dataset ({type(exc).__name__})."
        ) from exc
    return loaded.to_pandas()


def _read_disk(path: Path, split: str) -> pd.DataFrame:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path.name}: no split '{split}'; it has {', '.join(loaded)}.")
        loaded = loaded[split]
    return loaded.to_pandas()


class _LastFile:
    """The last CSV/TSV read, kept while the file is unchanged, where `remember_last_file` turned it on (the web
    process): the Data tab's summary, each change of column and the submit check then parse a big file once."""

    on = False
    entry: tuple[tuple, Columns] | None = None  # ((path, size, mtime), columns): replaced in one step


def remember_last_file() -> None:
    _LastFile.on = True


def read_columns(source: str | Path, split: str = "train") -> Columns:
    """The table's columns as lists: CSV/TSV read without pandas (training starts 0.4 s sooner in 85 MB less)."""
    path = Path(str(source)).expanduser()
    if path.is_file() and path.suffix.lower() in DELIMITED_SUFFIXES:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        entry = _LastFile.entry
        if entry and entry[0] == key:
            return entry[1]
        columns = {name.strip(): cells for name, cells in _read_delimited(path).items()}
        if not next(iter(columns.values())):
            raise DataError(f"{path.name}: the file has a header but no rows.")
        if _LastFile.on:
            _LastFile.entry = key, columns
        return columns
    frame = read_table(source, split)
    return {name: frame[name].tolist() for name in frame.columns}


def read_table(source: str | Path, split: str = "train") -> pd.DataFrame:
    """A file (CSV/TSV/JSONL/Parquet), a `save_to_disk` folder, or a hub dataset `name[:config[:split]]`."""
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        if any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
            frame = _read_disk(path, split)
        else:
            raise DataError(f"{source}: a folder, but not one saved with datasets' save_to_disk.")
    elif path.is_file():
        frame = _read_file(path)
    elif path.suffix.lower() in TABLE_SUFFIXES or "/" in source and Path(source).parent.exists():
        raise DataError(f"{source}: no such file.")
    else:
        frame = _read_hub(source, split)
    _check_width(len(frame.columns), path.name or source)
    frame.columns = _unique([str(c).strip() for c in frame.columns])
    if frame.empty:
        raise DataError(f"{path.name or source}: the file has a header but no rows.")
    return frame


LABEL_VALUES = range(2, 21)  # a label column has 2-20 distinct values...
LABEL_CHARS = 30  # ...each short


def _looks_like_labels(cells: list) -> bool:
    values = {_label_name(v) for v in cells if not _missing(v) and str(v).strip()}
    return len(values) in LABEL_VALUES and all(len(v) <= LABEL_CHARS for v in values) and len(values) < len(cells)


def _mean_length(cells: list) -> float:
    texts = [str(v) for v in cells if not _missing(v)]
    return sum(map(len, texts)) / len(texts) if texts else 0.0


def guess_columns(columns: list[str], sample: Columns | None = None) -> dict[str, str | None]:
    """Good first guesses for the column menus: by name, else by content (`sample`: the first rows).

    A label column by content has 2-20 distinct short values (strings or integers) that repeat (the shortest
    such column wins); the text column by content is the one with the longest cells."""
    lower = {c.lower(): c for c in columns}

    def pick(*names: str) -> str | None:
        return next((lower[n] for n in names if n in lower), None)

    text = pick("text", "sentence", "sentence1", "text_a", "question1", "review", "message", "content", "question")
    pair = pick("text_pair", "sentence2", "text_b", "question2")
    label = pick("label", "labels", "class", "category", "target", "intent", "sentiment", "topic")
    if sample:
        if label is None:
            candidates = [c for c in columns if c not in (text, pair) and _looks_like_labels(sample.get(c, []))]
            label = min(candidates, key=lambda c: _mean_length(sample[c]), default=None)
        if text is None:
            rest = [c for c in columns if c not in (pair, label)]
            text = max(rest, key=lambda c: _mean_length(sample.get(c, [])), default=None)
    text = text or next((c for c in columns if c not in (pair, label)), None)
    return {"text": text, "text_pair": pair, "label": label}


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _label_name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _label_order(names: set[str]) -> list[str]:
    """Numeric labels in numeric order, others alphabetically."""
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


@dataclass
class _Rows:
    """The usable rows of a table: texts, second texts and label names, as strings."""

    texts: list[str]
    pairs: list[str] | None
    labels: list[str]
    rows: list[int] = field(default_factory=list)


def _check_columns(columns: Columns, name: str, wanted: dict[str, str | None]) -> None:
    missing = [c for c in wanted.values() if c and c not in columns]
    if missing:
        raise DataError(f"{name}: no column {', '.join(repr(c) for c in missing)}; the columns are "
                        f"{', '.join(repr(c) for c in columns)}. Choose the text and label columns.")


def _text(value: object) -> str:
    return "" if _missing(value) else str(value)


def _nested(value: object) -> bool:
    return isinstance(value, dict | list | tuple) or type(value).__name__ == "ndarray"


def _check_flat(cells: list, column: str, name: str) -> None:
    row = next((i for i, c in enumerate(cells) if type(c) is not str and _nested(c)), None)
    if row is not None:
        raise DataError(f"{name}: column '{column}' holds lists or objects (row {row + 1}), not text. Choose a "
                        "column of text, or flatten the file so that each cell is one value.")


def _strings(cells: list) -> list[str]:
    return [c if type(c) is str else _text(c) for c in cells]


def _usable(text: str) -> bool:
    return bool(text) and not text.isspace()


def _clean(columns: Columns, name: str, text: str, pair: str | None, label: str) -> tuple[_Rows, Counter]:
    """Normalise cells to strings and drop unusable rows, counting why (a list pass per column: 1M rows in
    about a second)."""
    _check_columns(columns, name, {"text": text, "pair": pair, "label": label})
    for column in (text, pair, label):
        if column:
            _check_flat(columns[column], column, name)
    texts = _strings(columns[text])
    pairs = _strings(columns[pair]) if pair else None
    labels = [y.strip() if type(y) is str else "" if _missing(y) else _label_name(y) for y in columns[label]]
    keep = [i for i, (t, y) in enumerate(zip(texts, labels, strict=True)) if y and _usable(t)]
    if pairs is not None:
        keep = [i for i in keep if _usable(pairs[i])]
    dropped: Counter = Counter()
    if len(keep) < len(texts):
        kept = set(keep)
        for i in (i for i in range(len(texts)) if i not in kept):
            dropped[f"empty '{text}'" if not _usable(texts[i]) else f"empty '{pair}'" if pairs is not None
                    and not _usable(pairs[i]) else f"missing '{label}'"] += 1
    rows = _Rows([texts[i] for i in keep], [pairs[i] for i in keep] if pairs is not None else None,
                 [labels[i] for i in keep], [i + 1 for i in keep])
    return rows, dropped


def _to_split(rows: _Rows, label_ids: dict[str, int]) -> Split:
    return Split(rows.texts, rows.pairs, [label_ids[v] for v in rows.labels], rows.rows)


def fingerprint(split: Split, labels: list[str]) -> str:
    """A content hash of the training rows and label names: same data, same fingerprint. Each row is hashed
    as `json.dumps([text, pair, label], ensure_ascii=False)`, written out here for speed (1M rows in ~1 s)."""
    digest = hashlib.sha256(json.dumps(labels).encode())
    quote = json.encoder.encode_basestring
    pairs = split.pairs or [None] * len(split)
    for start in range(0, len(split), 10_000):
        end = start + 10_000
        digest.update("".join(
            f"[{quote(t)}, {'null' if p is None else quote(p)}, {y}]"
            for t, p, y in zip(split.texts[start:end], pairs[start:end], split.labels[start:end], strict=True)
        ).encode())
    return "sha256:" + digest.hexdigest()


def prepare(
    data: str | Path,
    validation: str | Path | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    validation_fraction: float = 0.1,
    seed: int = 42,
    max_train_samples: int | None = None,
    split: str = "train",
    max_eval_samples: int | None = None,
    validation_split: str = "validation",
    label_names: dict[str, str] | None = None,
    name: str | None = None,
    validation_name: str | None = None,
) -> PreparedData:
    """Read, clean and split the data, or raise a `DataError` that says what to fix.

    `label_names` renames labels (0/1 -> negative/positive); `name` and `validation_name` are how the report
    names the files (default: their file names). `max_eval_samples` caps the validation rows at a seeded
    stratified sample, so a big file's evaluation stays a small part of each epoch."""
    source = str(data)
    name = name or Path(source).name or source
    rows, dropped = _clean(read_columns(data, split), name, text_column, text_pair_column, label_column)
    report = DataReport(source=name, rows=len(rows.texts) + sum(dropped.values()), dropped=dict(dropped))
    if not rows.texts:
        raise DataError(f"{name}: no usable rows: every row has an empty text or label.")
    val_rows = None
    if validation is not None:
        val_name = validation_name or Path(str(validation)).name or str(validation)
        val_rows, val_dropped = _clean(read_columns(validation, validation_split), val_name, text_column,
                                        text_pair_column, label_column)
        for why, n in val_dropped.items():
            report.dropped[f"{why} (validation)"] = n
        report.validation_source = val_name
    names = set(rows.labels)
    if len(names) < 2:
        raise DataError(f"{name}: column '{label_column}' has a single class ({next(iter(names))!r}); "
                        "a classifier needs at least 2.")
    if val_rows is not None:
        unseen = sorted(set(val_rows.labels) - names)
        if unseen:
            raise DataError(f"{report.validation_source}: labels {', '.join(map(repr, unseen))} are not in the "
                            "training data; add training examples for them or remove them from validation.")
    labels = _label_order(names)
    label_ids = {n: i for i, n in enumerate(labels)}
    train = _to_split(rows, label_ids)
    if val_rows is not None:
        valid = _to_split(val_rows, label_ids)
    else:
        train, valid = _split(train, validation_fraction, seed)
    if max_train_samples and len(train) > max_train_samples:
        train = _subsample(train, max_train_samples, seed)
    if max_eval_samples and len(valid) > max_eval_samples:
        report.validation_sampled_from = len(valid)
        valid = _subsample(valid, max_eval_samples, seed)
    report.train_rows, report.validation_rows = len(train), len(valid)
    counts = Counter(train.labels)
    report.label_counts = {labels[i]: counts[i] for i in range(len(labels))}
    return PreparedData(train, valid, labels, report).renamed(label_names)


def renamed(labels: list[str], label_names: dict[str, str] | None) -> list[str]:
    """The labels under their new names, checked: every new name given once, only for labels in the data."""
    names = {str(k): str(v).strip() for k, v in (label_names or {}).items()}
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise DataError(f"Cannot rename {', '.join(map(repr, unknown))}: the data has no such label.")
    out = [names.get(label) or label for label in labels]
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise DataError(f"Two labels are named {twice[0]!r}: give every label its own name.")
    return out


def _by_class(labels: list[int], seed: int) -> dict[int, list[int]]:
    """Row indices per class, each list shuffled with the seed."""
    rng = random.Random(seed)
    groups: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        groups.setdefault(y, []).append(i)
    for rows in groups.values():
        rng.shuffle(rows)
    return groups


def _split(data: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A seeded stratified split holding out every class at least once; classes of one row stay in training."""
    val_idx: list[int] = []
    for rows in _by_class(data.labels, seed).values():
        if len(rows) >= 2:
            val_idx += rows[: min(len(rows) - 1, max(1, round(len(rows) * fraction)))]
    held = set(val_idx)
    if len(held) == len(data):
        raise DataError(f"Only {len(data)} usable rows: too few to hold some out for validation. "
                        "Add rows or give a validation file.")
    return data.subset([i for i in range(len(data)) if i not in held]), data.subset(sorted(val_idx))


def _subsample(data: Split, n: int, seed: int) -> Split:
    """A seeded stratified sample of n training rows (each class in proportion, largest remainders first)."""
    groups = _by_class(data.labels, seed)
    shares = {y: len(rows) * n / len(data) for y, rows in groups.items()}
    take = {y: int(share) for y, share in shares.items()}
    for y in sorted(shares, key=lambda y: shares[y] - take[y], reverse=True)[: n - sum(take.values())]:
        take[y] += 1
    return data.subset(sorted(i for y, rows in groups.items() for i in rows[: take[y]]))


def load_labelled(source: str | Path, labels: list[str], text_column: str, text_pair_column: str | None,
                  label_column: str, split: str = "test",
                  label_names: dict[str, str] | None = None) -> tuple[Split, DataReport]:
    """All usable rows of `source` as an evaluation set for a classifier with these label names; labels the
    adapter was trained to rename (`label_names`) are renamed the same way."""
    name = Path(str(source)).name or str(source)
    rows, dropped = _clean(read_columns(source, split), name, text_column, text_pair_column, label_column)
    if label_names:
        rows.labels = [label_names.get(y, y) for y in rows.labels]
    unknown = sorted(set(rows.labels) - set(labels))
    if unknown:
        raise DataError(f"{name}: labels {', '.join(map(repr, unknown))} are not among the adapter's labels "
                        f"({', '.join(map(repr, labels))}).")
    if not rows.texts:
        raise DataError(f"{name}: no usable rows: every row has an empty text or label.")
    data = _to_split(rows, {n: i for i, n in enumerate(labels)})
    counts = Counter(data.labels)
    report = DataReport(source=name, rows=len(rows.texts) + sum(dropped.values()), validation_rows=len(data),
                        dropped=dict(dropped), validation_source="all rows",
                        label_counts={label: counts[i] for i, label in enumerate(labels)})
    return data, report
