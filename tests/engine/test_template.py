"""Evidence templates: plain named fields only, bounded widths, bounded output."""

from __future__ import annotations

import pytest

from paramdoctor.engine.template import (
    MAX_RENDERED_CHARS,
    MAX_SPEC_NUMBER,
    MAX_TEMPLATE_CHARS,
    TRUNCATED,
    check_template,
    render,
    spec_problem,
    template_names,
)


@pytest.mark.parametrize("spec", ["", ".0%", ".1%", ".1e", ".2f", ".3g", "g", ">6", "<10", "*^30", ",.2f", "+.3e", "08.3f", "_d"])
def test_ordinary_specs_pass(spec):
    assert spec_problem(spec) is None
    assert template_names(f"x {{rise:{spec}}} y" if spec else "x {rise} y") == ["rise"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (">100000000", "width 100000000 is above the limit of 30"),
        ("0100000000", "width 100000000 is above the limit of 30"),
        (f">{MAX_SPEC_NUMBER + 1}", f"width {MAX_SPEC_NUMBER + 1} is above the limit"),
        (".500f", "precision 500 is above the limit of 30"),
        ("lots of text", "not a format spec"),
    ],
)
def test_huge_widths_and_precisions_are_refused_at_load(spec, expected):
    with pytest.raises(ValueError, match=expected):
        template_names(f"{{value:{spec}}}")


def test_a_template_longer_than_the_limit_is_refused():
    with pytest.raises(ValueError, match=f"above the limit of {MAX_TEMPLATE_CHARS}"):
        check_template("x" * (MAX_TEMPLATE_CHARS + 1), ["rise"])
    check_template("x" * MAX_TEMPLATE_CHARS, ["rise"])


def test_rendered_text_is_cut_with_a_marker():
    text = render("{name} rose", {"name": "n" * 100_000})
    assert len(text) == MAX_RENDERED_CHARS and text.endswith(TRUNCATED)
    many = "{rise:>30}" * 100  # 1000 characters of template, 3000 of output
    check_template(many, ["rise"])
    text = render(many, {"rise": 0.5})
    assert len(text) == MAX_RENDERED_CHARS and text.endswith(TRUNCATED)


def test_render_never_builds_a_huge_piece_even_from_an_unchecked_template():
    assert render("{v:>100000000}", {"v": 1}) == "1"
    assert render("rise {rise:.0%} at {x:g}", {"rise": 0.25, "x": 3.0}) == "rise 25% at 3"
