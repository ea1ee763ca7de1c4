"""The embedded dataset `shapes`: generated scenes of one to three coloured shapes, each
with five captions from a small grammar, deterministic from a seed.

The captions are written so that the right filler of a blank depends on the image *and*
on the words on both sides of it: "a red circle is left of a blue square" against "a blue
square is right of a red circle"; "there is one red circle" against "there are two red
circles"; "an orange star" against "a small orange star".

Layout written by `fetch(dest, settings)` (the raw layout of every dataset):

    dest/dataset_shapes.json   Karpathy split format; each image also carries its `scene`:
                               [{"shape", "colour", "size", "row", "col"}, ...]
    dest/images/shapes.zip     PNG images `shapes/<imgid:05d>.png`, image_size square

Images 0 .. train-1 are `train`, then `val`, then `test`. Each image draws from its own
random stream (seeded by the seed and its id), and the zip has fixed timestamps, so the
same settings give byte-identical files.

`parse(words)` reads a caption back into claims and `holds(claims, scene)` checks them:
the grammar's own test that every caption says something true of its image.
"""

import io
import json
import math
import random
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
NUMBERS = {1: "one", 2: "two", 3: "three"}
VIEWS = ("picture", "image")
RELATIONS = ("left", "right", "above", "below")


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str
    row: int  # 0 top .. 2 bottom
    col: int  # 0 left .. 2 right


# ---------------------------------------------------------------------------- scenes


def scene(rng: random.Random) -> list[Thing]:
    """One to three things in distinct cells of a 3x3 grid; a later thing sometimes repeats
    an earlier one's colour and shape, so that captions need plurals."""
    cells = rng.sample(range(9), rng.choice((1, 2, 3)))
    things: list[Thing] = []
    for cell in cells:
        if things and rng.random() < 0.3:
            twin = rng.choice(things)
            shape, colour = twin.shape, twin.colour
        else:
            shape, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
        things.append(Thing(shape, colour, rng.choice(SIZES), cell // 3, cell % 3))
    return things


def draw(things: list[Thing], size: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 235, 235))
    pen = ImageDraw.Draw(image)
    cell = size / 3
    for thing in things:
        radius = cell * (0.22 if thing.size == "small" else 0.42)
        jitter = cell / 2 - radius
        x = cell * (thing.col + 0.5) + rng.uniform(-jitter, jitter)
        y = cell * (thing.row + 0.5) + rng.uniform(-jitter, jitter)
        fill = COLOURS[thing.colour]
        box = (x - radius, y - radius, x + radius, y + radius)
        if thing.shape == "circle":
            pen.ellipse(box, fill=fill)
        elif thing.shape == "square":
            pen.rectangle(box, fill=fill)
        elif thing.shape == "triangle":
            pen.polygon([(x, y - radius), (x + radius, y + radius), (x - radius, y + radius)], fill=fill)
        elif thing.shape == "diamond":
            pen.polygon([(x, y - radius), (x + radius, y), (x, y + radius), (x - radius, y)], fill=fill)
        else:  # a five-pointed star: outer and inner corners in turn
            pen.polygon([_star_point(x, y, radius, k) for k in range(10)], fill=fill)
    return image


def _star_point(x: float, y: float, radius: float, k: int) -> tuple[float, float]:
    r = radius if k % 2 == 0 else radius * 0.45
    angle = math.pi * k / 5 - math.pi / 2
    return x + r * math.cos(angle), y + r * math.sin(angle)


# ---------------------------------------------------------------------------- captions


def noun_phrase(thing: Thing, with_size: bool) -> list[str]:
    words = ([thing.size] if with_size else []) + [thing.colour, thing.shape]
    return ["an" if words[0][0] in "aeiou" else "a"] + words


def place(thing: Thing) -> list[str]:
    """'top left', 'top', 'left', 'center': the grid cell in words."""
    row = [] if thing.row == 1 else [ROWS[thing.row]]
    col = [] if thing.col == 1 else [COLS[thing.col]]
    return row + col or ["center"]


def groups(things: list[Thing]) -> list[list[Thing]]:
    """Things of the same colour and shape, in order of first appearance."""
    by_kind: dict[tuple[str, str], list[Thing]] = {}
    for thing in things:
        by_kind.setdefault((thing.colour, thing.shape), []).append(thing)
    return list(by_kind.values())


def group_phrase(group: list[Thing], rng: random.Random) -> list[str]:
    if len(group) == 1:
        return noun_phrase(group[0], rng.random() < 0.5)
    return [NUMBERS[len(group)], group[0].colour, group[0].shape + "s"]


def caption(things: list[Thing], rng: random.Random) -> list[str]:
    """One caption of the scene, from a template drawn at random among those that apply."""
    pairs = [(a, b) for a in things for b in things if a is not b]
    across = [(a, b) for a, b in pairs if a.col < b.col]
    down = [(a, b) for a, b in pairs if a.row < b.row]
    templates = ["count", "list", "at", "kind"] + ["across"] * bool(across) + ["down"] * bool(down)
    template = rng.choice(templates)
    view = rng.choice(VIEWS)
    if template == "count":
        n = len(things)
        return ["there", "is" if n == 1 else "are", NUMBERS[n], "shape" if n == 1 else "shapes", "in", "the", view]
    if template == "list":
        phrases = [group_phrase(g, rng) for g in rng.sample(groups(things), len(groups(things)))]
        listed = [w for p in phrases[:-1] for w in p] + (["and"] if len(phrases) > 1 else []) + phrases[-1]
        return ["the", view, "shows"] + listed
    if template == "at":
        thing = rng.choice(things)
        np = noun_phrase(thing, rng.random() < 0.5)
        if rng.random() < 0.5:
            return np + ["is", "at", "the"] + place(thing)
        return ["at", "the"] + place(thing) + ["there", "is"] + np
    if template == "kind":
        group = rng.choice(groups(things))
        n = len(group)
        noun = group[0].shape + ("" if n == 1 else "s")
        return ["there", "is" if n == 1 else "are", NUMBERS[n], group[0].colour, noun]
    a, b = rng.choice(across if template == "across" else down)
    forward = rng.random() < 0.5  # "a is left of b" or the mirror "b is right of a"
    first, second = (a, b) if forward else (b, a)
    if template == "across":
        relation = ["left" if forward else "right", "of"]
    else:
        relation = ["above" if forward else "below"]
    with_size = rng.random() < 0.5
    return noun_phrase(first, with_size) + ["is"] + relation + noun_phrase(second, with_size)


def captions(things: list[Thing], rng: random.Random, count: int = 5) -> list[list[str]]:
    """`count` distinct captions of the scene."""
    found: list[list[str]] = []
    for _ in range(1000):
        words = caption(things, rng)
        if words not in found:
            found.append(words)
        if len(found) == count:
            return found
    raise RuntimeError(f"could not find {count} distinct captions for {things}")


# ---------------------------------------------------------------------------- parsing


class _Words:
    def __init__(self, words: list[str]):
        self.words, self.at = words, 0

    def peek(self) -> str | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def take(self, *allowed: str) -> str:
        word = self.peek()
        if word is None or (allowed and word not in allowed):
            raise ValueError(f"expected {' or '.join(allowed) or 'a word'} at word {self.at}, got {word!r}")
        self.at += 1
        return word

    def done(self) -> None:
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r} at word {self.at}")


def _noun_phrase(w: _Words) -> tuple:
    """('thing', size or None, colour, shape) or ('group', n, colour, shape)."""
    first = w.take("a", "an", "two", "three")
    if first in ("two", "three"):
        colour = w.take(*COLOURS)
        shape = w.take(*(s + "s" for s in SHAPES))[:-1]
        return ("group", 2 if first == "two" else 3, colour, shape)
    size = w.take(*SIZES) if w.peek() in SIZES else None
    colour = w.take(*COLOURS)
    if (first == "an") != ((size or colour)[0] in "aeiou"):
        raise ValueError(f"wrong article {first!r} before {size or colour!r}")
    return ("thing", size, colour, w.take(*SHAPES))


def _place(w: _Words) -> tuple[int | None, int | None]:
    """(row, col), None where the place leaves it open to the middle."""
    first = w.take("top", "bottom", "left", "right", "center")
    if first == "center":
        return (1, 1)
    if first in ("left", "right"):
        return (1, COLS.index(first))
    col = COLS.index(w.take("left", "right")) if w.peek() in ("left", "right") else 1
    return (ROWS.index(first), col)


def parse(words: list[str]) -> list[tuple]:
    """The claims a caption makes, or ValueError if it is not in the grammar."""
    w = _Words(words)
    first = w.peek()
    if first == "there":
        w.take()
        verb = w.take("is", "are")
        number = w.take(*NUMBERS.values())
        n = list(NUMBERS.values()).index(number) + 1
        if (verb == "is") != (n == 1):
            raise ValueError(f"'{verb}' does not agree with '{number}'")
        if w.peek() in ("shape", "shapes"):
            w.take("shape" if n == 1 else "shapes")
            w.take("in"), w.take("the"), w.take(*VIEWS)
            claims = [("count", n)]
        else:
            colour = w.take(*COLOURS)
            shape = w.take(*SHAPES) if n == 1 else w.take(*(s + "s" for s in SHAPES))[:-1]
            claims = [("kind", n, colour, shape)]
    elif first == "the":
        w.take(), w.take(*VIEWS), w.take("shows")
        listed = [_noun_phrase(w)]
        while w.peek() != "and" and w.peek() is not None:
            listed.append(_noun_phrase(w))
        if len(listed) > 1 or w.peek() == "and":
            w.take("and")
            listed.append(_noun_phrase(w))
        claims = [("shows", tuple(listed))]
    elif first == "at":
        w.take(), w.take("the")
        where = _place(w)
        w.take("there"), w.take("is")
        claims = [("at", _noun_phrase(w), where)]
    else:
        subject = _noun_phrase(w)
        w.take("is")
        if w.peek() == "at":
            w.take(), w.take("the")
            claims = [("at", subject, _place(w))]
        else:
            relation = w.take(*RELATIONS)
            if relation in ("left", "right"):
                w.take("of")
            claims = [("relation", subject, relation, _noun_phrase(w))]
    w.done()
    return claims


def _matches(phrase: tuple, thing: Thing) -> bool:
    _, size, colour, shape = phrase
    return (size in (None, thing.size)) and colour == thing.colour and shape == thing.shape


def _count(things: list[Thing], colour: str, shape: str) -> int:
    return sum(t.colour == colour and t.shape == shape for t in things)


def holds(claims: list[tuple], things: list[Thing]) -> bool:
    """Whether every claim is true of the scene."""
    for claim in claims:
        kind = claim[0]
        if kind == "count" and claim[1] != len(things):
            return False
        if kind == "kind" and _count(things, claim[2], claim[3]) != claim[1]:
            return False
        if kind == "shows":
            listed = claim[1]
            if sum(p[1] if p[0] == "group" else 1 for p in listed) != len(things):
                return False
            for phrase in listed:
                if phrase[0] == "group" and _count(things, phrase[2], phrase[3]) != phrase[1]:
                    return False
                if phrase[0] == "thing" and not any(_matches(phrase, t) for t in things):
                    return False
        if kind == "at":
            (row, col), phrase = claim[2], claim[1]
            if not any(_matches(phrase, t) and (t.row, t.col) == (row, col) for t in things):
                return False
        if kind == "relation":
            _, a, relation, b = claim
            test = {
                "left": lambda s, o: s.col < o.col,
                "right": lambda s, o: s.col > o.col,
                "above": lambda s, o: s.row < o.row,
                "below": lambda s, o: s.row > o.row,
            }[relation]
            if not any(_matches(a, s) and _matches(b, o) and test(s, o) for s in things for o in things):
                return False
    return True


# ---------------------------------------------------------------------------- the dataset


def fetch(dest: Path, settings) -> None:
    """Generate the dataset into `dest` (see the module docstring for the layout)."""
    splits = ["train"] * settings.train + ["val"] * settings.val + ["test"] * settings.test
    (dest / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    with zipfile.ZipFile(dest / "images" / "shapes.zip", "w", zipfile.ZIP_STORED) as archive:
        for imgid, split in enumerate(tqdm(splits, desc="shapes", unit="image")):
            rng = random.Random(f"shapes-{settings.seed}-{imgid}")
            things = scene(rng)
            png = io.BytesIO()
            draw(things, settings.image_size, rng).save(png, format="PNG")
            filename = f"{imgid:05d}.png"
            archive.writestr(zipfile.ZipInfo(f"shapes/{filename}", date_time=(1980, 1, 1, 0, 0, 0)), png.getvalue())
            sentids = list(range(5 * imgid, 5 * imgid + 5))
            sentences = [
                {"tokens": words, "raw": " ".join(words).capitalize() + ".", "imgid": imgid, "sentid": sentid}
                for sentid, words in zip(sentids, captions(things, rng), strict=True)
            ]
            entries.append(
                {
                    "filepath": "shapes",
                    "filename": filename,
                    "imgid": imgid,
                    "split": split,
                    "sentids": sentids,
                    "sentences": sentences,
                    "scene": [asdict(t) for t in things],
                }
            )
    text = json.dumps({"images": entries, "dataset": "shapes"})
    (dest / "dataset_shapes.json").write_text(text, encoding="utf-8")
