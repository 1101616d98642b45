"""reports/summary.py, the verdicts' basis and the table registry: the report's first section says what the grid
shows in sentences read off its tables, a verdict rests on the numbers shown beside it, and a table registered once
is written and shown."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.base.registry import DuplicateNameError
from reports import build_report
from reports.document import outline, report_tables
from reports.load import Results, load, several_methods
from reports.summary import grid_summary
from reports.tables import TABLES, Table, all_tables, register_table
from reports.verdicts import distillation_table, verdict_sentences
from tests.test_reports import results_dir  # noqa: F401  the synthetic grid of one method
from tests.test_reports_methods import methods_dir  # noqa: F401  the synthetic grid of every method


def _summary(results: Results) -> list[str]:
    tables = {table.name: table for table in report_tables(results)}
    return grid_summary(results, tables, several_methods(results.runs))


def _paragraphs(results: Results) -> list[str]:
    blocks = outline(results, {table.name: table for table in report_tables(results)}, {})
    return [block.text for block in blocks if hasattr(block, "text")]


def test_the_summary_of_every_method_names_the_winners_and_what_distillation_does(methods_dir):  # noqa: F811
    results = load(methods_dir)
    sentences = _summary(results)
    assert 2 <= len(sentences) <= 5
    # budgets below the teacher's: width 64's is won by the distilled pruned model (FID 6.5), width 32's by the int8
    # form of the distilled width-64 model (7.3, and smaller than the width-32 generator)
    assert sentences[0] == (
        "Most quality per byte: prune (bn) models have the lowest FID within the stored size of the width-64 "
        "generator; width + int8 models within that of the width-32 generator."
    )
    # every distilled model of a method with a scratch counterpart gains 1.5 to 2.5 on both seeds
    assert sentences[1] == (
        "Distillation (pixel-l1) lowers the LeNet FID at widths 64 and 32 for every method compared; the seeds resolve "
        "every one of these differences."
    )
    # the teacher's FID is 5.0: no student reaches 5.5; the best is the distilled pruned model at 6.5
    assert sentences[2] == (
        "No model comes within 10% of the teacher's FID (5); the closest is prune (bn) · pixel-l1, width 64 (FID 6.5)."
    )
    markdown = outline(results, {table.name: table for table in report_tables(results)}, {})
    headings = [block.text for block in markdown if type(block).__name__ == "Heading"]
    assert headings[0] == "What this grid shows"  # before the verdicts, after the grid's description


def test_the_summary_of_one_method_says_where_the_seeds_resolve_distillation(results_dir):  # noqa: F811
    results = load(results_dir)
    distillation = distillation_table(results).data.set_index("width")
    # width 64's distilled model has one seed (its scratch twin diverged on the other): one pair, unresolved;
    # widths 512 and 32 have two pairs of the same sign
    assert distillation.loc[64, "pairs"] == 1
    assert distillation.loc[[512, 32], "verdict"].str.startswith("both seed pairs: distillation helps").all()
    sentences = _summary(results)
    assert sentences[0].startswith("Most quality per byte: width · pixel-l1 models have the lowest FID within")
    assert sentences[1] == (
        "Distillation (pixel-l1) lowers the LeNet FID at widths 512, 64 and 32; the seeds resolve it at widths 512 "
        "and 32 only."
    )
    teacher = results.runs.loc[(results.runs["role"] == "teacher"), "fid_lenet"].mean()
    assert sentences[2].startswith(f"The smallest model within 10% of the teacher's FID ({teacher:.3g}) is ")


def test_the_summary_names_mismatched_models(methods_dir, tmp_path):  # noqa: F811
    runs = pd.read_csv(methods_dir / "results.csv")
    victim = runs["run_id"].str.contains("prunebnint8")
    runs.loc[victim, ["status", "fid_lenet"]] = ["mismatch", float("nan")]
    runs.to_csv(tmp_path / "results.csv", index=False)
    sentences = _summary(load(tmp_path))
    assert sentences[-1] == (
        "Left out as mismatches (their images are not their float source's): prune (bn) · pixel-l1 + int8, width 32."
    )


def _two_seed_results(directory, gains: dict[int, tuple[float, float]]) -> Results:
    """A teacher and, per width, a scratch and a distilled student on two seeds: distilled = scratch + gain."""
    rows = []
    for seed in (1, 2):
        rows.append({"run_id": f"t{seed}", "role": "teacher", "width": 128, "kd": "none", "fid_lenet": 20.0})
        for width, gain in gains.items():
            rows.append({"run_id": f"s{width}-{seed}", "role": "student", "width": width, "kd": "none",
                         "fid_lenet": 50.0})  # fmt: skip
            rows.append({"run_id": f"d{width}-{seed}", "role": "student", "width": width, "kd": "pixel-l1",
                         "fid_lenet": 50.0 + gain[seed - 1]})  # fmt: skip
    for row in rows:
        row.update(dataset="digits", seed=int(row["run_id"][-1]), status="done", g_params=row["width"] * 100,
                   g_bytes_fp32=row["width"] * 400)  # fmt: skip
    pd.DataFrame(rows).to_csv(directory / "results.csv", index=False)
    return load(directory)


def test_two_seeds_whose_range_excludes_zero_are_a_resolved_difference(tmp_path):
    results = _two_seed_results(tmp_path, {64: (-3.0, -1.0)})
    table = distillation_table(results)
    assert table.data.loc[0, "verdict"] == "both seed pairs: distillation helps (two pairs: no interval)"
    assert list(table.display["FID (LeNet): distilled − scratch"]) == ["-2.00 (-3.00..-1.00)"]  # excludes 0
    sentence = "At width 64, pixel-l1 distillation lowers the LeNet FID by 1 to 3 on both seed pairs (two pairs: "
    assert verdict_sentences(table) == [sentence + "their range, no interval)."]
    paragraphs = _paragraphs(results)
    assert sentence + "their range, no interval)." in paragraphs  # the verdicts' paragraph says it
    assert not any(text.startswith("No difference the seeds resolve") for text in paragraphs)
    assert "the seeds resolve every one of these differences" in " ".join(_summary(results))


def test_two_seeds_whose_range_includes_zero_are_no_verdict(tmp_path):
    results = _two_seed_results(tmp_path, {64: (-3.0, 1.0)})
    table = distillation_table(results)
    assert table.data.loc[0, "verdict"] == "the two seed pairs differ in sign: no verdict"
    assert list(table.display["FID (LeNet): distilled − scratch"]) == ["-1.00 (-3.00..1.00)"]  # includes 0
    assert not verdict_sentences(table)
    paragraphs = _paragraphs(results)
    assert "No difference the seeds resolve: where two seed pairs were run, they differ in sign." in paragraphs
    assert "the seeds resolve none of these differences" in " ".join(_summary(results))


def _toy_table(results: Results) -> Table:
    data = pd.DataFrame({"runs": [len(results.runs)]})
    return Table("toy", "A toy table", "Registered by a test.", data, data.astype(str))


def test_a_registered_table_is_written_and_shown_then_removed(results_dir, tmp_path):  # noqa: F811
    register_table("toy")(_toy_table)
    try:
        with pytest.raises(DuplicateNameError):
            register_table("toy")(_toy_table)  # a name is registered once
        report = build_report(results_dir, tmp_path / "report")
        assert (report / "tables" / "toy.csv").read_text().splitlines() == ["runs", str(len(load(results_dir).runs))]
        markdown = (report / "report.md").read_text(encoding="utf-8")
        assert "## More tables\n\n**A toy table** ([csv](tables/toy.csv)" in markdown  # placed by nobody: shown here
        assert markdown.index("## More tables") < markdown.index("## Every run")
        assert "A toy table" in (report / "report.html").read_text(encoding="utf-8")
    finally:
        TABLES.remove("toy")
    assert "toy" not in TABLES
    assert "toy" not in [table.name for table in all_tables(load(results_dir))]


def test_a_table_named_other_than_registered_is_refused(results_dir):  # noqa: F811
    TABLES.add("not-toy", _toy_table)
    try:
        with pytest.raises(ValueError, match="'not-toy' built a table named 'toy'"):
            all_tables(load(results_dir))
    finally:
        TABLES.remove("not-toy")


def test_every_registered_table_is_in_the_report(results_dir):  # noqa: F811
    results = load(results_dir)
    tables = {table.name: table for table in report_tables(results)}
    assert set(tables) <= set(TABLES)
    expected = {"distillation", "iso-quality", "best-by-size", "cost", "quality", "gain", "sizes", "runs", "deployment"}
    assert expected <= set(tables)
    shown = {block.table.name for block in outline(results, tables, {}) if hasattr(block, "table")}
    assert shown == set(tables)


def test_the_summary_says_where_methods_disagree_on_distillation(methods_dir, tmp_path):  # noqa: F811
    runs = pd.read_csv(methods_dir / "results.csv")
    worse = runs["run_id"].str.startswith("digits-prunebn-w32-pixel-l1")  # 8.0 -> 11.0, its scratch twin has 10.0
    runs.loc[worse, "fid_lenet"] += 3.0
    runs.to_csv(tmp_path / "results.csv", index=False)
    sentences = _summary(load(tmp_path))
    assert sentences[1] == (
        "Distillation (pixel-l1) lowers the LeNet FID at width 64 for every method compared and moves it either way "
        "at width 32 (lower for 1 of 2 methods); the seeds resolve every one of these differences."
    )
