"""Stage evaluate@<dataset> on a tiny dataset of blanks and fills that follow the contracts."""

import json

import pytest
from conftest import run_stage
from synthetic import tuned_length, write_dataset


def test_the_stage_writes_metrics_tables_and_plot_data(tmp_path, params_file):
    params_file()
    write_dataset(tmp_path)
    result = run_stage("evaluate", "shapes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "reports/shapes/table.md" in result.stdout

    metrics = json.loads((tmp_path / "metrics/shapes.json").read_text())
    assert list(metrics) == ["known", "unknown", "seconds_per_blank", "provenance"]
    assert list(metrics["known"]) == ["forward", "backward", "fb_max", "fb_rerank", "bibs", "exact"]
    assert list(metrics["unknown"]) == ["forward", "backward", "fb_max", "fb_rerank", "bibs", "bibs_unknown", "exact"]
    for setting in ("known", "unknown"):
        assert list(metrics[setting]["bibs"]) == ["0.25", "0.5"]
        for ratio in ("0.25", "0.5"):
            bibs, forward = metrics[setting]["bibs"][ratio], metrics[setting]["forward"][ratio]
            assert bibs["exact_match"] == 1.0 and forward["exact_match"] == 0.0
            assert bibs["search_error"] == 0.0 and metrics[setting]["fb_rerank"][ratio]["search_error"] == 1.0
            # With the length unknown a one-way captioner ranks lengths by its own scale, not
            # by the oracle's: falling short of the oracle's score is no search error there.
            assert forward.get("search_error") == (1.0 if setting == "known" else None)
            assert bibs["mean_score"] == -1.0 and forward["mean_score"] == -5.0
            assert bibs["BLEU-4"] == pytest.approx(1.0, abs=1e-6)  # the original sentence is a reference
            assert bibs["CIDEr"] > metrics[setting]["fb_rerank"][ratio]["CIDEr"] > forward["CIDEr"]
            assert "search_error" not in metrics[setting]["exact"][ratio]
    assert metrics["unknown"]["fb_rerank"]["0.5"]["length_error"] == 1.0  # one word too many, always
    assert metrics["unknown"]["bibs"]["0.5"]["length_error"] == 0.0
    assert "length_error" not in metrics["known"]["bibs"]["0.5"]

    table = (tmp_path / "reports/shapes/table.md").read_text()
    assert "## Known blank length\n\n### CIDEr\n\n| method | 0.25 | 0.5 |" in table
    known, unknown = (section.split("\n\n### ")[0] for section in table.split("### CIDEr\n\n")[1:])
    assert known.splitlines()[-1].startswith("| bibs vs best baseline | +")
    assert unknown.splitlines()[-2:][0].startswith("| bibs vs best baseline | +")
    assert unknown.splitlines()[-1].startswith("| bibs_unknown vs best baseline | +")
    rows = [line.split(",") for line in (tmp_path / "reports/shapes/plots/known.csv").read_text().splitlines()]
    assert rows[0][:3] == ["ratio", "method", "CIDEr"]
    assert [row[:2] for row in rows[1:3]] == [["0.25", "forward"], ["0.5", "forward"]]
    bibs_at_quarter = next(row for row in rows if row[:2] == ["0.25", "bibs"])
    assert float(bibs_at_quarter[2]) == metrics["known"]["bibs"]["0.25"]["CIDEr"]
    svg = (tmp_path / "reports/shapes/plots/CIDEr.svg").read_text()
    assert (
        svg.startswith("<svg")
        and "bibs_unknown, unknown" in svg
        and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    )


def test_the_stage_stops_before_writing_anything(tmp_path, params_file):
    params_file()
    write_dataset(tmp_path)
    (tmp_path / "data/fills/shapes/fb_max.parquet").write_bytes(b"not parquet")
    result = run_stage("evaluate", "shapes", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: data/fills/shapes/fb_max.parquet: not a readable parquet file")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "reports").exists()


def test_with_the_length_unknown_the_search_error_counts_the_length_bonus(tmp_path, params_file):
    params_file()
    write_dataset(tmp_path)
    # fb_rerank's unknown-length fills have one word more than exact's and 2 nats less S(Y):
    # with a bonus of 5 nats per word they rank above the oracle's, so no search error.
    (tmp_path / "data/length/shapes.json").write_text(json.dumps(tuned_length(5.0)))
    assert run_stage("evaluate", "shapes", cwd=tmp_path).returncode == 0
    metrics = json.loads((tmp_path / "metrics/shapes.json").read_text())
    assert [metrics[setting]["fb_rerank"]["0.5"]["search_error"] for setting in ("known", "unknown")] == [1.0, 0.0]
