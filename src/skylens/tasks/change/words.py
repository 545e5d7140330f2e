"""Words for a change result: the caption, the evidence text, and a language model's rephrasing.

The caption is composed only from the result's regions and warnings; a language model (a
``TextGenerator``) may rephrase it from the same evidence, the structured caption kept beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skylens.errors import InputError, SkylensError
from skylens.models.base import TextGenerator

if TYPE_CHECKING:
    from skylens.tasks.change.result import ChangeRegion, ChangeResult

LLM_MAX_TOKENS = 200  # rephrased caption / open answer length cap (tokens)
UNIFORM_WARNING = (
    "the whole scene changed alike (e.g. season, illumination, or a different scene): "
    "most of it differs"
)
BACKGROUND_WARNING = (
    "the whole scene differs between the dates (season, illumination, sensor or registration); "
    "the regions are what changed beyond that background"
)


def as_text_generator(llm: TextGenerator | str) -> TextGenerator:
    """A ``TextGenerator`` from a model or a model name (``skylens.load``).

    Raises:
        CapabilityError: the model cannot generate text.
        ModelError: no such model.
    """
    if isinstance(llm, str):
        from skylens.models.base import load

        llm = load(llm)
    if hasattr(llm, "require"):
        llm.require(TextGenerator)
    elif not callable(getattr(llm, "generate", None)):
        raise InputError(f"llm {llm!r} has no generate(messages) method")
    return llm


_REPHRASE_SYSTEM = (
    "You write for people who look at satellite or aerial images. Rewrite the structured "
    "change-detection evidence below as one or two plain sentences. Use only facts in the "
    "evidence; keep its numbers, places and classes; add nothing; cite regions as [region N]."
)
_ANSWER_SYSTEM = (
    "You answer questions about what changed between two images of one place, using only the "
    "structured change-detection evidence given. Cite the regions your answer rests on as "
    "[region N]. If the evidence does not answer the question, say so plainly."
)


def change_evidence(result: ChangeResult) -> str:
    """The structured evidence of a result as plain text lines (the language model's input)."""
    lines = [
        f"before image: {Path(result.before).name}; after image: {Path(result.after).name}",
        f"chips compared: {result.chips_compared} of {result.tile} px "
        f"(skipped for nodata: {result.chips_skipped_nodata})",
        f"change threshold: {result.threshold:.4g} ({result.threshold_method.get('method')})",
        f"changed regions: {len(result.regions)}, {_pct(result.changed_share)} of the scene"
        + (f", {_area_total(result)}" if result.regions else ""),
    ]
    if result.scene_area_m2:
        lines.append(f"scene area: {_fmt_area(result.scene_area_m2)}")
    for g in result.regions:
        where = f"in the {g.location}"
        if g.geometry:
            where += f" ({_short_bbox(g.geometry)})"
        lines.append(
            f"[region {g.id}] {g.class_before} -> {g.class_after}, {where}, area {_area(g)}, "
            f"{_pct(g.share)} of the scene, {len(g.chips)} chips, mean change score {g.score:.3f}"
        )
    for w in result.warnings:
        lines.append(f"warning: {w}")
    lines.append(f"structured caption: {result.caption_structured or result.caption}")
    return "\n".join(lines)


def rephrase_caption(result: ChangeResult, llm: TextGenerator) -> ChangeResult:
    """Let ``llm`` rephrase ``result.caption`` from the evidence (in place; returns ``result``).

    The structured caption stays in ``caption_structured``. A failing or empty reply keeps the
    structured caption and adds a warning.
    """
    result.caption_structured = result.caption_structured or result.caption
    messages = [
        {"role": "system", "content": _REPHRASE_SYSTEM},
        {"role": "user", "content": "Evidence:\n" + change_evidence(result)},
    ]
    name = getattr(llm, "name", type(llm).__name__)
    try:
        text = str(llm.generate(messages, max_tokens=LLM_MAX_TOKENS, temperature=0.0)).strip()
    except (SkylensError, OSError) as exc:  # typed backend errors, unreachable servers
        result.warnings.append(f"language model '{name}' failed ({exc}); structured caption kept")
        return result
    if not text:
        result.warnings.append(f"language model '{name}' returned nothing; structured caption kept")
        return result
    result.caption, result.caption_model = text, name
    return result


def _count(n: int) -> str:
    return f"{n} region" + ("" if n == 1 else "s")


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _area(g: ChangeRegion) -> str:
    if g.area_m2 is None:
        return f"{g.pixels:,} px"
    return _fmt_area(g.area_m2)


def _area_total(r: ChangeResult) -> str:
    if any(g.area_m2 is None for g in r.regions):
        return f"{sum(g.pixels for g in r.regions):,} px"
    return _fmt_area(sum(g.area_m2 for g in r.regions))


def area_text(g: ChangeRegion) -> str:
    """A region's area for tables: m² when georeferenced, else pixels."""
    if g.area_m2 is None:
        return f"{g.pixels:,} px"
    return f"{g.area_m2:,.0f} m²"


def _fmt_area(m2: float) -> str:
    if m2 >= 1e6:
        return f"{m2 / 1e6:.2f} km²"
    if m2 >= 1e4:
        return f"{m2 / 1e4:.1f} ha"
    return f"{m2:,.0f} m²"


def _short_bbox(geom: dict) -> str:
    pts = np.array([p for poly in geom["coordinates"] for ring in poly for p in ring])
    lo, hi = pts.min(0), pts.max(0)
    return f"lon {lo[0]:.5f}..{hi[0]:.5f}, lat {lo[1]:.5f}..{hi[1]:.5f}"


def change_caption(result: ChangeResult) -> str:
    """A one-sentence headline composed only from the result's regions and scene-wide flags.

    It agrees with the warnings: a scene that changed alike says so (and no "0 %" figure), a
    changed background says the regions stand out against it.
    """
    if result.uniform_change:
        return (
            f"The whole scene changed alike: {_pct(result.changed_share)} of it is above the "
            f"pair's threshold in {_count(len(result.regions))} (season, illumination, or a "
            f"different scene), so these may be the scene itself rather than changes within it "
            f"({result.chips_compared} chips compared)."
        )
    if not result.regions:
        return (
            f"No change detected: no pixel scored above the pair's threshold "
            f"{result.threshold:.3g} ({result.chips_compared} chips compared)."
        )
    parts = []
    for g in result.regions[:5]:
        what = (
            f"{g.class_before} -> {g.class_after}"
            if g.class_before != g.class_after
            else f"{g.class_before} (changed in appearance)"
        )
        parts.append(f"{what} in the {g.location} ({_area(g)})")
    more = f"; and {len(result.regions) - 5} more" if len(result.regions) > 5 else ""
    against = (
        " against a background that changed as a whole (season, light or registration)"
        if result.background_changed
        else ""
    )
    return (
        f"{_count(len(result.regions))} changed{against}, {_pct(result.changed_share)} of the "
        f"scene ({_area_total(result)}): " + "; ".join(parts) + more + "."
    )
