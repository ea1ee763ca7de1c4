"""Every decoding method and every scoring scale, each declared once, beside its function:

    @register("bibs", role="bidirectional", scale="captioners", ranks=mbest,
              description="Bidirectional Beam Search: sweeps left and right over the blank [BiRNN-BSCD]")
    def bibs(models, blanks, length, p): ...

    @scale("captioners", description="S(Y) = log P_fwd(Y | I) + log P_bwd(Y | I), BiBS eq. 6")
    def every_length(models, blanks, p): ...

The declaration is all there is to know of a method: the fill stage, `fillblank methods`
and `fillblank fill --method`, the tables, the BiBS ordering rule, the plots and the check
of `fill.methods` (stage source) read it from `methods()`. (The pattern is AllenNLP's
`@Sampler.register("name")`.)

A scale is what a method ranks fills of different lengths by, when the length is unknown:
its score plus a length bonus per word (fillblank/decode/length.py). Each scale has its
own bonus, tuned by stage length on the fills its `candidates` function gives: every fill
its methods choose among, at every length, with the scale's score.

A method or a scale may live outside the package: every `*.py` file in the project's
`methods/` folder is imported before the registry is read, and its `@register` and
`@scale` lines add methods and scales that run like the built-ins
(`examples/sample_rerank.py` is one; README, "Add your own method"). `sources` names the
files a method's code comes from, which stage `code` records so that a fill stage re-runs
when its own method's code changes, not when another's does.
"""

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from fillblank.decode.models import Models
from fillblank.decode.step import Blanks
from fillblank.errors import UserError
from fillblank.params import Fill

BUILT_IN = Path(__file__).parent  # the package's methods: fillblank/decode/*.py
USER = Path("methods")  # the project's own, beside params.yaml
INFILLER_CODE = BUILT_IN.parent / "infiller.py"  # the model the infiller's methods read

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
        chooses from 1 to `p.max_length`, by its scale's score plus `p.length_bonus` per
        word, the bonus of its scale); `p` is the `fill` section of params. Returns N
        fills, each a list of word ids left to right, of `length` words when it is given."""


class Ranker(Protocol):
    def __call__(
        self, models: Models, blanks: Blanks, length: int | None, p: Fill
    ) -> list[list[tuple[list[int], float]]]:
        """Like `Method`, but up to `p.m_best` fills per blank, each with its S(Y), best first
        by S(Y) plus `p.length_bonus` per word (with the length unknown)."""


Candidates = list[list[tuple[list[int], float]]]  # per blank: (fill left to right, its score on the scale)


class CandidateFills(Protocol):
    def __call__(self, models: Models, blanks: Blanks, p: Fill) -> list[Candidates]:
        """Every fill of every length 1 .. `p.max_length` that the scale's methods choose
        among, per blank, with its score on the scale (no bonus): one list per reading of
        the blanks (two for one captioner: forward and backward, each tuned with the other)."""


@dataclass(frozen=True)
class Scale:
    name: str
    candidates: CandidateFills
    description: str  # one line, for `fillblank methods`
    reads_infiller: bool


@dataclass(frozen=True)
class Entry:
    name: str
    fill: Method
    settings: tuple[Setting, ...]  # the settings the fill stage runs it in
    description: str  # one line, for `fillblank methods`
    role: Role
    scale: str  # the scale it ranks lengths by
    ranks: Ranker | None  # how `fillblank fill --top K` gets K fills; None: the one fill

    @property
    def reads_infiller(self) -> bool:
        return self.role == "infiller"

    def given(self, models: Models) -> Models:
        """The models this method reads: the captioners, and the infiller for an `infiller`."""
        return models if self.reads_infiller else replace(models, infiller=None)


REGISTRY: dict[str, Entry] = {}
SCALES: dict[str, Scale] = {}


def register(
    name: str,
    *,
    description: str,
    role: Role,
    scale: str,
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
            where = f"in {REGISTRY[name].fill.__module__} and in {function.__module__}"
            raise UserError(f"method {name!r} is declared twice: {where}")
        REGISTRY[name] = Entry(name, function, tuple(settings), description, role, scale, ranks)
        return function

    return add


def scale(name: str, *, description: str, reads_infiller: bool = False) -> Callable[[CandidateFills], CandidateFills]:
    """Declare the decorated function as the candidates of scale `name`."""

    def add(function: CandidateFills) -> CandidateFills:
        if name in SCALES and SCALES[name].candidates is not function:
            where = f"in {SCALES[name].candidates.__module__} and in {function.__module__}"
            raise UserError(f"scale {name!r} is declared twice: {where}")
        SCALES[name] = Scale(name, function, description, reads_infiller)
        return function

    return add


def methods() -> dict[str, Entry]:
    """Every method: the built-ins, then those of the project's `methods/*.py`, by name."""
    load_all()
    entries = dict(sorted(REGISTRY.items(), key=lambda item: declared(item[1].fill)))
    if odd := next((one for one in entries.values() if one.scale not in SCALES), None):
        declared_scales = ", ".join(SCALES)
        raise UserError(
            f"method {odd.name!r} ranks by scale {odd.scale!r}, which is not declared; the scales are {declared_scales}"
        )
    return entries


def scales() -> dict[str, Scale]:
    """Every scale: the built-ins, then those of the project's `methods/*.py`, by name."""
    load_all()
    return dict(sorted(SCALES.items(), key=lambda item: declared(item[1].candidates)))


def entry(name: str) -> Entry:
    """The method `name`; an unknown name is one line listing the known ones."""
    known = methods()
    if name not in known:
        raise UserError(f"no method {name!r}; the methods are {', '.join(known)} (user methods go in methods/*.py)")
    return known[name]


def check(names: list[str]) -> None:
    """Stop with one line unless every name of `names` (`fill.methods`) is a declared method."""
    for name in names:
        entry(name)


def load_all() -> None:
    """Import every module of the package that may declare, then the user's files."""
    for path in sorted(BUILT_IN.glob("[!_]*.py")):
        importlib.import_module(f"fillblank.decode.{path.stem}")
    for path in sorted(USER.glob("*.py")) if USER.is_dir() else []:
        import_user_file(path)


def declared(function: Callable) -> tuple[bool, str, int]:
    """Where a method or scale is declared, the order of `methods()` and `scales()`: the
    built-ins first, module by module, line by line; then the user's files. (Not the order
    in which modules happened to be imported: a test or a user's file may import one before
    the others.)"""
    module = function.__module__
    return not module.startswith("fillblank."), module, inspect.unwrap(function).__code__.co_firstlineno


def sources(name: str) -> list[Path]:
    """The files method `name`'s code may come from: every module of this package (the
    built-ins share beam search, scoring and steps), the infiller's model for an `infiller`,
    and for a user's method every file of `methods/` too (one may import another). Stage
    `code` hashes them."""
    declaration = entry(name)
    return code_of(declaration.fill, declaration.reads_infiller)


def scale_sources(name: str) -> list[Path]:
    """The files scale `name`'s candidates may come from, as `sources` (stage scales hashes them)."""
    declaration = scales()[name]
    return code_of(declaration.candidates, declaration.reads_infiller)


def code_of(function: Callable, reads_infiller: bool) -> list[Path]:
    package = sorted(BUILT_IN.glob("*.py"))
    model = [INFILLER_CODE] if reads_infiller else []
    users = sorted(USER.glob("*.py")) if declared(function)[0] else []
    return package + model + users


def import_user_file(path: Path) -> None:
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
