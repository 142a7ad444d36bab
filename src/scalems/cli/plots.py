"""The report's figures, drawn by matplotlib as SVG text to put inline in the page.

* The timeline: one bar per task attempt, in one lane per place it ran (a
  core set, a worker process; where places are unique per attempt, as RP task
  ids are, the host), coloured by outcome. A worker runs the calls it holds one
  after the other, so its calls are drawn end to end; other attempts that
  overlap in a place (a budget larger than the machine shares cores) get lanes
  of their own.
  Up to :data:`BAR_LIMIT` attempts each bar is an SVG element with the
  attempt's label and outcome (``data-attempt``) and a tooltip; above it, the
  bars are drawn as one embedded image so that a run of 100,000 tasks still
  gives a page of a few hundred kB.
* Cores in use over time against the core budget: each attempt holds the cores
  its place names (``cores 0-3``: 4), else 1; a worker process or core set
  counts once however many attempts it has in hand (a worker queues calls).
  Above :data:`STEP_LIMIT` changes the curve is averaged over :data:`BINS` intervals.

matplotlib is the optional extra ``scalems[report]``; :func:`require` says how to get it.
"""

from __future__ import annotations

__all__ = ("require", "lanes", "cores_of", "core_seconds", "timeline_svg", "concurrency_svg", "OUTCOME_COLORS", "BAR_LIMIT")

import heapq
import html
import io
import re
import typing

from .runview import UsageError, natural_key

#: Bar colours by attempt outcome (used nowhere else in the page, so that bars can be found by colour).
OUTCOME_COLORS = {"done": "#2b7bba", "failed": "#d7301f", "timeout": "#f08c00", "cancelled": "#8c8c8c"}
_USAGE_COLOR, _BUDGET_COLOR = "#2ca25f", "#444444"
#: Above this many attempts the timeline is one image instead of one element per bar.
BAR_LIMIT = 2000
#: Above this many changes of the cores in use, the curve is averaged over BINS intervals.
STEP_LIMIT, BINS = 4000, 1500
#: Lanes above which their names are thinned out on the axis.
_LABELLED_LANES = 40

_CORES = re.compile(r"cores ([\d,\- ]+)$")


def require():
    """The matplotlib module, or UsageError saying how to install it."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise UsageError(
            "the report draws its plots with matplotlib, which is not installed. Install the optional "
            "extra: pip install 'scalems[report]' (or pip install matplotlib)."
        ) from None
    return matplotlib


def cores_of(place: typing.Optional[str]) -> int:
    """Cores an attempt held, from where it ran (``cores 0-3`` -> 4, ``cores 0,2`` -> 2); 1 if it does not say."""
    found = _CORES.match(place or "")
    if not found:
        return 1
    count = 0
    for part in found.group(1).split(","):
        low, _, high = part.strip().partition("-")
        try:
            count += int(high) - int(low) + 1 if high else 1
        except ValueError:
            return 1
    return max(count, 1)


def lanes(attempts: typing.Sequence) -> typing.Tuple[typing.List[str], typing.List[int], typing.List[float]]:
    """``(lane names, lane of each attempt, when each attempt's bar starts)``.

    One lane per place. A worker process runs the calls it was handed one at a time, in order:
    a call's bar starts when the previous one ended (if that is later than the hand-over).
    Other attempts that overlap in a place (cores shared beyond the machine's) get lanes of their own.
    """
    places = [a.place or a.host for a in attempts]
    if len(set(places)) > max(64, len(attempts) // 2):  # unique per attempt (RP task ids): by host instead
        places = [a.host for a in attempts]
    groups: dict = {}
    for index, place in enumerate(places):
        groups.setdefault(place, []).append(index)
    names: list = []
    assigned = [0] * len(attempts)
    starts = [a.started for a in attempts]
    for place in sorted(groups, key=natural_key):
        base = len(names)
        if place.startswith("worker "):
            previous = None
            for i in sorted(groups[place], key=lambda i: (attempts[i].ended, attempts[i].started)):
                if previous is not None:
                    starts[i] = min(max(starts[i], previous), attempts[i].ended)
                previous = attempts[i].ended
                assigned[i] = base
            names.append(place)
            continue
        free: list = []  # (end, sub-lane) of the sub-lanes in use
        sub_count = 0
        for i in sorted(groups[place], key=lambda i: attempts[i].started):
            a = attempts[i]
            if free and free[0][0] <= a.started:
                _, sub = heapq.heappop(free)
            else:
                sub, sub_count = sub_count, sub_count + 1
            heapq.heappush(free, (a.ended, sub))
            assigned[i] = base + sub
        names += [place] if sub_count == 1 else [f"{place} ({n + 1})" for n in range(sub_count)]
    return names, assigned, starts


def _time_unit(span: float) -> typing.Tuple[float, str]:
    if span > 3 * 3600:
        return 3600.0, "h"
    if span > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _svg(figure, salt: str) -> str:
    """The figure as an ``<svg>`` element that scales with the page (ids made unique by *salt*)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", dpi=100)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # Scale with the page: keep the viewBox, drop the fixed size.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', text, count=1)


def timeline_svg(attempts: typing.Sequence, origin: float) -> typing.Tuple[str, str]:
    """``(svg, note)``: the attempts of a run on their lanes; *note* says how they were drawn."""
    require()
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch, Rectangle

    names, assigned, starts = lanes(attempts)
    end = max(a.ended for a in attempts)
    span = max(end - origin, 1e-3)
    unit, unit_name = _time_unit(span)
    height = max(2.0, min(14.0, 1.1 + 0.28 * len(names)))
    figure = _figure(13.0, height)
    ax = figure.add_subplot()
    least = span / 1000  # every attempt at least one pixel wide in a ~1000 px plot
    individual = len(attempts) <= BAR_LIMIT
    by_outcome: dict = {}
    for index, (a, lane, start) in enumerate(zip(attempts, assigned, starts)):
        x = (start - origin) / unit
        w = max(a.ended - start, least) / unit
        color = OUTCOME_COLORS.get(a.outcome, OUTCOME_COLORS["cancelled"])
        if individual:
            bar = Rectangle((x, lane - 0.4), w, 0.8, facecolor=color, edgecolor="white", linewidth=1.0)
            bar.set_gid(f"attempt-{index}")
            ax.add_patch(bar)
        else:
            by_outcome.setdefault(a.outcome, []).append([(x, lane - 0.4), (x + w, lane - 0.4), (x + w, lane + 0.4), (x, lane + 0.4)])
    for outcome, polygons in by_outcome.items():
        import numpy  # an (n, 4, 2) array takes matplotlib's fast path: 100,000 lists of points take seconds

        bars = PolyCollection(numpy.asarray(polygons, dtype=float), facecolors=OUTCOME_COLORS.get(outcome, OUTCOME_COLORS["cancelled"]), linewidths=0)
        bars.set_rasterized(True)
        ax.add_collection(bars)
    ax.set_xlim(0, span / unit * 1.01)
    ax.set_ylim(len(names) - 0.5, -0.5)
    step = max(1, -(-len(names) // _LABELLED_LANES))
    ax.set_yticks(range(0, len(names), step), [names[i] for i in range(0, len(names), step)], fontsize=8)
    ax.set_xlabel(f"time since the run started ({unit_name})")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    present = [o for o in OUTCOME_COLORS if any(a.outcome == o for a in attempts)]
    ax.legend(
        handles=[Patch(facecolor=OUTCOME_COLORS[o], label=o) for o in present],
        loc="lower left", bbox_to_anchor=(0, 1.0), ncols=len(present) or 1, frameon=False, fontsize=9,
    )
    svg = _svg(figure, "timeline")
    if individual:
        svg = _annotate(svg, attempts)
        note = f"One bar per attempt ({len(attempts):,}), in {len(names):,} lane(s); hover over a bar for its task."
    else:
        note = (
            f"This run has {len(attempts):,} attempts, more than the {BAR_LIMIT:,} drawn one by one: the bars "
            f"are drawn as one image (every attempt at least {least:.3g} s wide), in {len(names):,} lane(s)."
        )
    return svg, note


def _annotate(svg: str, attempts: typing.Sequence) -> str:
    """Give each bar's element its attempt (``data-attempt``, ``data-outcome``) and a tooltip."""

    def label(found):
        a = attempts[int(found.group(1))]
        tip = f"{a.label} attempt {a.attempt}: {a.outcome}, {a.ended - a.started:.3g} s on {a.place or a.host}"
        if a.exitcode not in (None, 0):
            tip += f", exit {a.exitcode}"
        return (
            f'<g id="attempt-{found.group(1)}" class="attempt" data-attempt="{html.escape(f"{a.label}#{a.attempt}")}" '
            f'data-outcome="{html.escape(a.outcome)}"><title>{html.escape(tip)}</title>'
        )

    return re.sub(r'<g id="attempt-(\d+)">', label, svg)


def _changes(attempts: typing.Sequence, origin: float) -> list:
    """``(time, +cores or -cores)`` as attempts start and end.

    A worker process or a core set is busy while any attempt is on it: a worker's queued calls
    (handed over while it runs another) do not count twice.
    """
    changes = []
    shared: dict = {}
    for a in attempts:
        place = a.place or ""
        if place.startswith(("worker ", "cores ")):
            shared.setdefault(place, []).append((a.started, a.ended))
        else:
            cores = cores_of(place)
            changes += [(a.started - origin, cores), (a.ended - origin, -cores)]
    for place, spans in shared.items():
        cores = cores_of(place)
        spans.sort()
        start, end = spans[0]
        for s, e in spans[1:]:
            if s > end:
                changes += [(start - origin, cores), (end - origin, -cores)]
                start, end = s, e
            else:
                end = max(end, e)
        changes += [(start - origin, cores), (end - origin, -cores)]
    return changes


def core_seconds(attempts: typing.Sequence) -> float:
    """Core-time the attempts held (as the concurrency plot counts it)."""
    return sum(-cores * t for t, cores in _changes(attempts, 0.0))


def concurrency_svg(attempts: typing.Sequence, origin: float, budget: typing.Optional[int]) -> typing.Tuple[str, str]:
    """``(svg, note)``: cores in use over time, and the budget as a line."""
    require()
    import numpy

    changes = sorted(_changes(attempts, origin))
    times = numpy.array([0.0] + [t for t, _ in changes])
    usage = numpy.concatenate(([0.0], numpy.cumsum([c for _, c in changes])))
    span = max(float(times[-1]), 1e-3)
    unit, unit_name = _time_unit(span)
    figure = _figure(13.0, 3.0)
    ax = figure.add_subplot()
    if len(changes) > STEP_LIMIT:
        # Exact averages over equal intervals: integrate the step function, then difference it.
        area = numpy.concatenate(([0.0], numpy.cumsum(usage[:-1] * numpy.diff(times))))
        edges = numpy.linspace(0.0, span, BINS + 1)
        mean = numpy.diff(numpy.interp(edges, times, area)) / (span / BINS)
        ax.stairs(mean, edges / unit, fill=True, color=_USAGE_COLOR, alpha=0.8, label="cores in use (average)")
        note = f"Averaged over intervals of {span / BINS:.3g} s ({len(changes):,} changes)."
    else:
        ax.fill_between(times / unit, usage, step="post", color=_USAGE_COLOR, alpha=0.8, linewidth=0, label="cores in use")
        note = ""
    if budget:
        ax.axhline(budget, color=_BUDGET_COLOR, linestyle="--", linewidth=1.2, label=f"core budget ({budget})")
    top = max(float(usage.max()), budget or 0, 1)
    ax.set_ylim(0, top * 1.15)
    ax.set_xlim(0, span / unit * 1.01)
    ax.set_xlabel(f"time since the run started ({unit_name})")
    ax.set_ylabel("cores")
    ax.grid(color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1.0), ncols=2, frameon=False, fontsize=9)
    return _svg(figure, "concurrency"), note
