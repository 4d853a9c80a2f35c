"""What a request asks for: the output size (a trained scale, another factor, a width,
height or longest side) and the rest of its options."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from fastapi import Query

from sisr.serve.catalog import Catalog


class Size(NamedTuple):
    scale: float | None
    width: int | None
    height: int | None
    max_side: int | None


def size_params(
    scale: Annotated[
        float | None,
        Query(
            ge=1,
            le=16,
            description="2, 3, 4 pick the family's -xN; any other factor (1.5, 8) runs the "
            "smallest trained scale that reaches it (or passes) and resizes exactly",
        ),
    ] = None,
    width: Annotated[int | None, Query(ge=1, le=1 << 17, description="output width")] = None,
    height: Annotated[int | None, Query(ge=1, le=1 << 17, description="output height")] = None,
    max_side: Annotated[
        int | None, Query(ge=1, le=1 << 17, description="longest output side")
    ] = None,
) -> Size:
    """The output size a request asks for (aspect kept for width / height / max_side)."""
    return Size(scale, width, height, max_side)


def pick(cat: Catalog, model: str | None, size: Size) -> tuple[Any, Any]:
    """(the variant, None) for a trained scale, else (the model's default variant, the
    :class:`~sisr.infer.any_size.Target` to reach from it); LookupError for an unknown
    model or a pinned variant asked for another integer scale."""
    from sisr.infer.any_size import Target

    scale, *sides = size
    if any(v is not None for v in sides):
        return cat.lookup(model, None), Target(scale, *sides).check()
    if scale is None:
        return cat.lookup(model, None), None
    if float(scale).is_integer():
        try:
            return cat.lookup(model, int(scale)), None
        except LookupError:
            pinned = model is not None and model in cat.specs and model not in cat.families
            if pinned:
                raise
    return cat.lookup(model, None), Target(scale).check()


class Asked(NamedTuple):
    """What a request asked for besides the model: output format, x8 TTA, quality, the
    name of a raw-body upload, and how long the result is kept (None: the job default)."""

    fmt: str | None
    tta: bool
    quality: int | None
    filename: str | None
    ttl: float | None
    target: Any = None  # sisr.infer.any_size.Target, for a size no trained scale gives


__all__ = ["Asked", "Size", "pick", "size_params"]
