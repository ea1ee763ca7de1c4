"""Every decoding method, declared once, beside its function:

    @register("bibs", role="bidirectional", ranks=mbest,
              description="Bidirectional Beam Search: sweeps left and right over the blank [BiRNN-BSCD]")
    def bibs(models, blanks, length, p): ...

The declaration is all there is to know of a method: the fill stage, `fillblank methods`
and `fillblank fill --method`, the tables, the BiBS ordering rule and the plots read it
from `methods()`; params validation (`fill.methods`) reads the names from the `@register`
lines' source first, without importing torch, and asks `methods()` for any it cannot read
(`fillblank.params.declared_once`). (The pattern is AllenNLP's `@Sampler.register("name")`.)

A method may live outside the package: every `*.py` file in the project's `methods/`
folder is imported before the registry is read, and its `@register` lines add methods that
run like the built-ins (`examples/sample_rerank.py` is one, README "Add your own method").
`sources` names the files a method's code comes from, which stage `code` records so that
a fill stage re-runs when its own method's code changes, not when another's does.
"""

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from fillblank.decode.step import Blanks, Models
from fillblank.errors import UserError
from fillblank.params import BUILT_IN_METHODS, USER_METHODS, Fill

Setting = Literal["known", "unknown"]
# A method's place in the tables: `baseline` and `bidirectional` are what BiBS's ordering
# rule compares (each bidirectional method at least as good as every baseline); an
# `oracle` is left out of "best" and of search error (it defines it); an `infiller` is a
# model trained to fill, compared with all of them. Only an `infiller` is given the trained
# infiller (`models.infiller`; `Entry.given`), so the other methods' fills do not depend on
# it and stay cached when it is retrained (stage code).
Role = Literal["baseline", "bidirectional", "oracle", "infiller"]
ROLES: tuple[Role, ...] = ("baseline", "bidirectional", "oracle", "infiller")


class Method(Protocol):
    def __call__(self, models: Models, blanks: Blanks, length: int | None, p: Fill) -> list[list[int]]:
        """Fill N blanks: `blanks` holds their image features (N, D) and left and right word
        ids; `length` is every blank's length (known setting) or None (unknown: the method
        chooses from 1 to `p.max_length`, by the length rule of `fillblank.decode.length`
        with `p.length_bonus`); `p` is the `fill` section of params. Returns N
        fills, each a list of word ids left to right, of `length` words when it is given."""


class Ranker(Protocol):
    def __call__(
        self, models: Models, blanks: Blanks, length: int | None, p: Fill
    ) -> list[list[tuple[list[int], float]]]:
        """Like `Method`, but up to `p.m_best` fills per blank, best first, each with its S(Y)."""


@dataclass(frozen=True)
class Entry:
    name: str
    fill: Method
    settings: tuple[Setting, ...]  # the settings the fill stage runs it in
    description: str  # one line, for `fillblank methods`
    role: Role
    ranks: Ranker | None  # how `fillblank fill --top K` gets K fills; None: the one fill

    @property
    def reads_infiller(self) -> bool:
        return self.role == "infiller"

    def given(self, models: Models) -> Models:
        """The models this method reads: the captioners, and the infiller for an `infiller`."""
        return models if self.reads_infiller else replace(models, infiller=None)


REGISTRY: dict[str, Entry] = {}
INFILLER_CODE = BUILT_IN_METHODS.parent / "infill.py"  # the model the infillers' fills come from


def register(
    name: str,
    *,
    description: str,
    role: Role,
    settings: tuple[Setting, ...] = ("known", "unknown"),
    ranks: Ranker | None = None,
) -> Callable[[Method], Method]:
    """Declare the decorated function as the method `name`."""
    if role not in ROLES:
        raise ValueError(f"method {name!r}: role {role!r} is none of {', '.join(ROLES)}")
    if not settings or set(settings) - {"known", "unknown"}:
        raise ValueError(f"method {name!r}: settings {settings!r} must be known, unknown or both")

    def add(function: Method) -> Method:
        if name in REGISTRY and REGISTRY[name].fill is not function:
            raise UserError(
                f"method {name!r} is declared twice: in {REGISTRY[name].fill.__module__} and in {function.__module__}"
            )
        REGISTRY[name] = Entry(name, function, tuple(settings), description, role, ranks)
        return function

    return add


def methods() -> dict[str, Entry]:
    """Every method: the built-ins, then those of the project's `methods/*.py`, by name."""
    for path in sorted(BUILT_IN_METHODS.glob("[!_]*.py")):  # each module declares its built-ins
        importlib.import_module(f"fillblank.decode.{path.stem}")
    for path in sorted(USER_METHODS.glob("*.py")) if USER_METHODS.is_dir() else []:
        load(path)
    return dict(sorted(REGISTRY.items(), key=lambda item: declared(item[1].fill)))


def declared(function: Method) -> tuple[bool, str, int]:
    """Where a method is declared, the order of `methods()`: the built-ins first, module by
    module, line by line; then the user's files. (Not the order in which modules happened
    to be imported: a test or a user's file may import one before the others.)"""
    return (
        not function.__module__.startswith("fillblank."),
        function.__module__,
        inspect.unwrap(function).__code__.co_firstlineno,
    )


def sources(name: str) -> list[Path]:
    """The files method `name`'s code may come from: every module of this package (the
    built-ins share beam search, scoring and steps), the infiller's model for an `infiller`,
    and for a user's method every file of `methods/` too (one may import another). Stage
    `code` hashes them."""
    entry = methods()[name]
    package = sorted(BUILT_IN_METHODS.glob("*.py"))
    model = [INFILLER_CODE] if entry.reads_infiller else []
    users = sorted(USER_METHODS.glob("*.py")) if declared(entry.fill)[0] else []
    return package + model + users


def load(path: Path) -> None:
    """Import a user's method file once, as module `methods.<stem>`."""
    name = f"methods.{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def with_role(role: Role) -> tuple[str, ...]:
    return tuple(name for name, entry in methods().items() if entry.role == role)
