"""Which drawn examples gave the reference something to compare, per set they were drawn from.

An equivalence example whose reference found no detection checks nothing, so the shipped suite
requires a share of hits — but only of the set drawn to fit the model under test: the user's own
val images when ``--detbench-data`` is given (a model of other classes may find nothing in the
synthetic garment scenes), else the synthetic scenes the baseline was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from detbench.testing.strategies import VAL_CONTENT

USER_SET = "your val images (--detbench-data)"
SYNTHETIC_SET = "the synthetic scenes"
MIN_HIT_SHARE = 0.5


@dataclass
class DrawnCount:
    """Examples drawn from one set, and how many of them gave the reference a detection."""

    examples: int = 0
    hits: int = 0


def drawn_set(image: Image.Image) -> str:
    """The set ``image`` was drawn from: the user's val images or the synthetic scenes."""
    return USER_SET if image.info.get("detbench.content") == VAL_CONTENT else SYNTHETIC_SET


def floor_shortfall(
    counts: dict[str, DrawnCount], *, user_data: bool, min_share: float = MIN_HIT_SHARE
) -> str | None:
    """Why the set that fits the model had too few hits, or None when it had enough.

    The set is the user's val images when ``user_data``, else the synthetic scenes; the other
    set's hits do not count towards the floor (and a set that was never drawn falls short).
    """
    name = USER_SET if user_data else SYNTHETIC_SET
    got = counts.get(name, DrawnCount())
    if got.examples == 0:
        return f"no examples were drawn from {name}"
    if got.hits < min_share * got.examples:
        return (
            f"only {got.hits} of {got.examples} images drawn from {name} had a detection "
            f"(need {min_share:.0%})"
        )
    return None
