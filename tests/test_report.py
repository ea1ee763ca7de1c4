"""The gallery: which examples it picks, and the page as headless Chromium shows it.

The browser tests need Debian's `chromium` (`.ci/install-chromium` installs it); without
it they are skipped, and `pytest -ra` says so.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_stage
from synthetic import FILLERS, write_dataset

from fillblank.errors import UserError
from fillblank.evaluate import read_results
from fillblank.report import pick_examples, thumbnails

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: run .ci/install-chromium")

# Appended to a copy of the page: once it has loaded, write what the browser sees into the
# DOM, which `--dump-dom` prints.
PROBE = """
<script>
addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: [...document.images].map(img => ({complete: img.complete, width: img.naturalWidth})),
    fills: [...document.querySelectorAll("tr[data-method]")].map(row => ({
      example: row.closest("section").id,
      method: row.dataset.method,
      fill: row.querySelector("mark").textContent,
      shown: row.querySelector("mark").getClientRects().length > 0,
    })),
  });
  document.body.append(probe);
});
</script>
"""


def browse(page: Path, tmp_path: Path) -> dict:
    """What headless Chromium finds in `page`: its images and each method's marked fill."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no probe in chromium's DOM:\n{result.stderr[-2000:]}"
    return json.loads(
        found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


@pytest.fixture
def dataset(tmp_path, params_file) -> Path:
    params_file({"examples: 40": "examples: 5"})
    return write_dataset(tmp_path)


def test_examples_where_the_methods_differ_most_come_first(dataset):
    fills, blanks, captions = read_results(dataset, "shapes", list(FILLERS))
    # Blank 0: every method fills it as `exact` does, so they agree and it must sort last.
    zero = fills["blank_id"] == 0
    fills.loc[zero, "sentence"] = fills[zero & (fills["method"] == "exact")]["sentence"].iloc[0]
    examples = pick_examples(fills, blanks, captions, count=len(blanks) * 2)
    spreads = [max(b for *_, b in ex["fills"]) - min(b for *_, b in ex["fills"]) for ex in examples]
    assert spreads == sorted(spreads, reverse=True)
    assert [(ex["blank_id"], ex["setting"]) for ex in examples[-2:]] == [(0, "known"), (0, "unknown")]
    assert spreads[-1] == 0

    first = examples[0]
    assert [method for method, *_ in first["fills"]] == [
        m for m in FILLERS if first["setting"] == "unknown" or m != "bibs_unknown"
    ]
    assert first["references"] == captions[captions["image_id"] == first["image_id"]]["raw"].tolist()


def test_a_missing_image_is_one_line(dataset):
    with pytest.raises(UserError, match=r"images: no image 99999.png in its zip archives \(1 missing\)"):
        thumbnails(dataset / "data/raw/shapes/images", ["shapes/00010.png", "shapes/99999.png"])


@needs_chromium
def test_the_gallery_shows_every_image_and_every_methods_fill(dataset, tmp_path):
    result = run_stage("report", "shapes", cwd=dataset)
    assert result.returncode == 0, result.stderr
    page = dataset / "reports/shapes/examples.html"
    assert "reports/shapes/examples.html" in result.stdout

    seen = browse(page, tmp_path)
    assert len(seen["images"]) == 5
    assert all(image["complete"] and image["width"] == 64 for image in seen["images"])

    fills, *_ = read_results(dataset, "shapes", list(FILLERS))
    for example in {row["example"] for row in seen["fills"]}:
        blank_id, setting = re.fullmatch(r"blank-(\d+)-(\w+)", example).groups()
        expected = fills[(fills["blank_id"] == int(blank_id)) & (fills["setting"] == setting)]
        shown = [(row["method"], row["fill"]) for row in seen["fills"] if row["example"] == example and row["shown"]]
        assert shown == [
            (method, " ".join(fill)) for method, fill in zip(expected["method"], expected["fill"], strict=True)
        ]


@needs_chromium
def test_the_probe_notices_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><img src="data:image/jpeg;base64,bm90IGFuIGltYWdl">', encoding="utf-8")
    assert browse(page, tmp_path)["images"] == [{"complete": True, "width": 0}]
