"""The chart's CRDs are the generated ones: the committed templates are current, and what they
render is byte-for-byte the CRD of crds/ plus the chart's labels and keep annotation."""

from __future__ import annotations

from pathlib import Path

from conveyor import crdgen
from support.helm import CHART, template

TEMPLATES = CHART / "templates"


def test_committed_chart_crds_match_the_models() -> None:
    for filename, crd in crdgen.crds().items():
        path = TEMPLATES / crdgen.chart_filename(filename)
        assert path.read_text() == crdgen.render_chart(crd), (
            f"{path.relative_to(CHART.parents[1])} is stale: run `make crds`")


def test_check_mode_covers_the_chart_copy(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    assert crdgen.main(["--chart", str(chart), str(tmp_path / "crds")]) == 0
    assert crdgen.main(["--check", "--chart", str(chart), str(tmp_path / "crds")]) == 0
    victim = next(chart.iterdir())
    victim.write_text(victim.read_text() + "# edited\n")
    assert crdgen.main(["--check", "--chart", str(chart), str(tmp_path / "crds")]) == 1


def test_rendered_crds_equal_the_generated_ones() -> None:
    rendered = {o["metadata"]["name"]: o for o in template({"amqp.url": "amqp://x"})
                if o["kind"] == "CustomResourceDefinition"}
    generated = {crd["metadata"]["name"]: crd for crd in crdgen.crds().values()}
    assert rendered.keys() == generated.keys()
    for name, crd in rendered.items():
        meta = crd.pop("metadata")
        assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert crd == {k: v for k, v in generated[name].items() if k != "metadata"}
        # `${{ CEL }}` in descriptions survives Go templating.
        assert "${{" in str(crd) or name.startswith("workflowruns")


def test_crds_can_be_left_out_or_not_kept() -> None:
    kinds = [o["kind"] for o in template({"amqp.url": "amqp://x", "crds.enabled": False})]
    assert "CustomResourceDefinition" not in kinds
    crds = [o for o in template({"amqp.url": "amqp://x", "crds.keep": False})
            if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 2
    assert all("annotations" not in o["metadata"] for o in crds)
