"""A query's answer as the text ``attnstore query`` and ``attnstore sql`` print: a table or CSV,
written straight from the Arrow table the answer is fetched as, without loading pandas (about a
fifth of a second of a command that takes half a second), and byte for byte what pandas writes
of the DataFrame the library returns (``to_string(index=False, float_format=...)``,
``to_csv(index=False)``).

That holds for the columns DuckDB turns into numbers or text: integers and booleans (a null is
``<NA>``: pandas' nullable types), floats (a null is NaN), and text (a null is NaN, or None in a
column of nulls alone). :func:`plain` says whether every column of an answer is one of those;
any other (a list, a timestamp, a decimal, a name given twice) sends the whole answer through
pandas, as do JSON and Parquet.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

FLOAT_FORMAT = "{:.4g}"  # a float in the table: four significant digits


def plain(answer: pa.Table) -> bool:
    """Whether this module writes every column of ``answer`` as pandas would."""
    import pyarrow.types as t

    if len(set(answer.column_names)) < answer.num_columns:
        return False  # DuckDB's DataFrame renames a name given twice
    for column in answer.columns:
        kind = column.type
        if t.is_floating(kind) and not t.is_float16(kind):
            continue
        if t.is_string(kind) or t.is_large_string(kind):
            continue
        if t.is_signed_integer(kind) or t.is_boolean(kind):
            continue
        return False
    return True


def _missing(column: pa.ChunkedArray) -> str:
    """What pandas shows for a null of this column in a table: DuckDB turns a float null into
    NaN, an integer or boolean one into ``<NA>`` (a nullable column), a text one into NaN, or
    into None where the column holds nothing else."""
    import pyarrow.types as t

    if t.is_string(column.type) or t.is_large_string(column.type):
        return "None" if column.null_count == len(column) else "NaN"
    return "NaN" if t.is_floating(column.type) else "<NA>"


def _floats(column: pa.ChunkedArray):
    """A float column as a numpy array of its own width, a null as NaN. Not ``to_numpy()``:
    like every conversion between Arrow and Python objects but ``to_pylist``, it imports
    pandas (pyarrow asks whether the object is a pandas one)."""
    import numpy as np

    width = np.float32 if column.type.bit_width == 32 else np.float64
    return np.array(column.to_pylist(), dtype=width)


def _cells(column: pa.ChunkedArray) -> list[str | None]:
    """Each value as its text (CSV's: a float as numpy's shortest repr), None for a null."""
    import pyarrow.types as t

    if t.is_floating(column.type):
        values = _floats(column)
        return [None if v != v else s for v, s in zip(values, values.astype(str), strict=True)]
    return [None if v is None else str(v) for v in column.to_pylist()]


def csv_text(answer: pa.Table) -> str:
    """``answer`` as pandas' ``to_csv(index=False)`` writes it: a header, then a line a row, a
    null as an empty field, quotes where a field needs them (:func:`plain` answers only)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(answer.column_names)
    columns = [[("" if v is None else v) for v in _cells(c)] for c in answer.columns]
    writer.writerows(zip(*columns, strict=True))
    return out.getvalue()


def _escaped(text: str) -> str:
    """Tabs and line breaks as pandas shows them in a table (``\\t``, ``\\n``, ``\\r``)."""
    return text.replace("\t", r"\t").replace("\r", r"\r").replace("\n", r"\n")


def table_text(answer: pa.Table) -> str:
    """``answer`` as pandas' ``to_string(index=False, float_format=FLOAT_FORMAT.format)`` writes
    it, with a final newline: each column right-aligned to its widest cell or name (a number's
    name one space wider), the columns one space apart; a float in four significant digits, a
    null as :func:`_missing` says (:func:`plain` answers with rows only)."""
    import pyarrow.types as t

    columns = []
    for name, column in zip(answer.column_names, answer.columns, strict=True):
        if t.is_floating(column.type):
            cells = ["NaN" if v != v else FLOAT_FORMAT.format(v) for v in _floats(column).tolist()]
        else:
            missing = _missing(column)
            cells = [(missing if v is None else _escaped(v)) for v in _cells(column)]
        header = _escaped(name)
        if not (t.is_string(column.type) or t.is_large_string(column.type)):
            header = " " + header  # pandas gives a numeric column's name a space
        width = max(len(header), *map(len, cells))
        columns.append([s.rjust(width) for s in [header, *cells]])
    lines = (" ".join(row) for row in zip(*columns, strict=True))
    return "\n".join(lines) + "\n"
