"""Typed view of `params.yaml`: every knob of the pipeline, validated before any work.

Each section is a model that refuses unknown keys and values of the wrong type, so a typo
such as `dvc exp run -S train.hiden=256` stops the stage at once with one line naming the
key. Values have no defaults here: `params.yaml` is the one place they live, and DVC
tracks them key by key from there.
"""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fillblank.errors import UserError

Dataset = Literal["shapes", "flickr8k", "flickr30k", "coco"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ShapesSource(Section):
    """Settings of the embedded, generated dataset (see `fillblank.data.sources.shapes`)."""

    seed: int
    train: int = Field(ge=1)
    val: int = Field(ge=1)
    test: int = Field(ge=1)
    image_size: int = Field(ge=32)


class Sources(Section):
    """Where each dataset comes from: `shapes` is generated from its settings; the others
    are downloaded from their official locations when `null`, or copied from a local folder
    holding the same files the official download gives."""

    shapes: ShapesSource
    flickr8k: str | None
    flickr30k: str | None
    coco: str | None


class Prepare(Section):
    min_count: int = Field(ge=1)


class Params(Section):
    datasets: list[Dataset] = Field(min_length=1)
    sources: Sources
    prepare: Prepare


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; any problem is one `UserError` line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (run from the project root)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"{path}: {describe(error)}") from None


def describe(error: ValidationError) -> str:
    """One validation problem as one line, naming the dotted key. An unknown key comes
    first: a misspelt key also leaves the right one missing, and the typo is the news."""
    problems = sorted(error.errors(), key=lambda problem: problem["type"] != "extra_forbidden")
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        missing = [str(p["loc"][-1]) for p in problems if p["type"] == "missing" and p["loc"][:-1] == first["loc"][:-1]]
        hint = f" (did you mean '{missing[0]}'?)" if missing else ""
        return f"unknown key '{key}'{hint}"
    if first["type"] == "missing":
        return f"missing key '{key}'"
    return f"'{key}': {first['msg']} (got {first.get('input')!r})"
