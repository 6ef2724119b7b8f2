"""JSON-lines input: one object per non-blank line, errors naming the file and line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from rag.errors import BadInputError


def json_objects(path: Path) -> Iterator[tuple[int, int, dict]]:
    """(record number, line number, object) for each non-blank line; blank lines are not records."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInputError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise BadInputError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield n, line_no, obj
            n += 1
