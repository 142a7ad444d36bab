"""``python -m scalems report [WORK_DIR] -o report.html``: one page that says what a run did.

The page is a single file with no outside references (inline CSS and SVG, no
script), so it opens offline and can be mailed or archived: a summary, the
timeline of attempts, cores in use against the budget, the task table and the
failures with the tail of their stderr (:mod:`.plots` draws the figures with
matplotlib, the optional extra ``scalems[report]``).

A run of 100,000 tasks still gives a page of modest size: the timeline becomes
one image above :data:`.plots.BAR_LIMIT` attempts, the table lists failures
first and at most :data:`TABLE_LIMIT` rows, and at most :data:`FAILURE_LIMIT`
stderr tails are shown; the page says when it left anything out.
"""

from __future__ import annotations

__all__ = ("add_parser", "run", "render")

import argparse
import contextlib
import html
import os
import pathlib
import time

from scalems._version import __version__

from . import plots, text
from .runview import BAD_STATES, RunView, UsageError, load_run

#: Rows of the task table at most (failures first).
TABLE_LIMIT = 2000
#: Failed tasks whose stderr tail is shown at most.
FAILURE_LIMIT = 100

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 1.5em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
nav a { margin-right: 1em; } .note { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
td.num { text-align: right; } table.tasks tr:nth-child(even) { background: #f4f4f4; }
table.facts th { font-weight: normal; color: #555; }
.state-failed, .state-not-run, .state-cancelled, .state-unfinished { color: #b00; font-weight: bold; }
pre { background: #f6f6f6; border-left: 3px solid #bbb; padding: 0.5em; overflow-x: auto; font-size: 0.8em; }
figure { margin: 0.5em 0; } svg { max-width: 100%; height: auto; }
"""


def add_parser(subparsers, formatter) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        formatter_class=formatter,
        help="Write one self-contained HTML page about the latest run (timeline, cores in use, tasks, failures).",
        description="Write an HTML page about the latest run of a work directory: a summary, a timeline of the "
        "task attempts, the cores in use against the budget, the task table and the failures with their stderr. "
        "The page needs nothing else to open. Needs matplotlib: pip install 'scalems[report]'.",
    )
    parser.add_argument("work_dir", metavar="WORK_DIR", nargs="?", help="The run's work directory (default: current directory).")
    parser.add_argument("-o", "--output", metavar="FILE", default="report.html", help="Where to write the page (default: report.html).")
    parser.add_argument("--run", type=int, metavar="N", help="Report on run N instead of the latest.")
    parser.set_defaults(command=run, command_name="report")
    return parser


def run(args) -> int:
    plots.require()
    output = pathlib.Path(args.output).absolute()
    if not output.parent.is_dir():
        raise UsageError(f"cannot write {output}: {output.parent} is not a directory")
    view = load_run(args.work_dir, args.run)
    page = render(view)
    partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:  # a page half written must never replace a good one
        with open(partial, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(partial, output)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise UsageError(f"cannot write {output}: {error.strerror or error}") from None
    print(f"Wrote {output} ({len(page.encode()) / 1e6:.1f} MB): {text.summary_line(view)}")
    return 0


def render(view: RunView) -> str:
    """The page, as text."""
    info = view.info
    e = html.escape
    title = f"scalems run {info.id} in {view.directory}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        '<nav><a href="#timeline">Timeline</a><a href="#cores">Cores in use</a>'
        '<a href="#tasks">Tasks</a><a href="#failures">Failures</a></nav>',
        '<h2 id="summary">Summary</h2>',
        f'<p class="summary"><strong>{e(text.summary_line(view))}</strong></p>',
        _facts(view),
    ]
    if not view.complete:
        parts.append(
            f'<p class="note">The run has not ended ({e(view.state)}): this shows the attempts that finished '
            "and the tasks known so far.</p>"
        )
    attempts = view.attempts
    origin = min([info.started, *(a.started for a in attempts)])
    parts.append('<h2 id="timeline">Timeline of task attempts</h2>')
    if attempts:
        svg, note = plots.timeline_svg(attempts, origin)
        parts += [f'<p class="note">{e(note)} Lanes are where attempts ran: core sets, worker processes or hosts. '
                  "A worker process runs the calls it is handed one at a time: a call's bar starts when the one before it ended.</p>",
                  f'<figure class="timeline">{svg}</figure>']
        budget = (info.budget or {}).get("cores")
        svg, note = plots.concurrency_svg(attempts, origin, budget)
        busy = plots.core_seconds(attempts)
        span = max(a.ended for a in attempts) - origin
        use = f" The attempts used {busy / (budget * span):.0%} of the budget's core-time." if budget and span > 0 else ""
        parts += [
            '<h2 id="cores">Cores in use</h2>',
            f'<p class="note">Each attempt holds the cores it ran on (1 where the record does not say); a worker '
            f"process counts once while it has calls in hand.{e(use)} "
            f"{'' if budget else 'This backend queues work itself: there is no core budget to show. '}{e(note)}</p>",
            f'<figure class="concurrency">{svg}</figure>',
        ]
    else:
        parts += ['<p class="note">No attempt ran in this run (every result came from earlier runs, or none finished yet).</p>',
                  '<h2 id="cores">Cores in use</h2><p class="note">Nothing ran.</p>']
    parts += _task_table(view)
    parts += _failures(view)
    parts.append(
        f'<p class="note">Written by scalems {e(__version__)} (python -m scalems report) at {e(text.when(time.time()))}.</p>'
        "</body></html>\n"
    )
    return "\n".join(parts)


def _facts(view: RunView) -> str:
    info = view.info
    budget = info.budget
    rows = [
        ("work directory", str(view.directory)),
        ("run", f"{info.id} ({view.state})"),
        ("started", text.when(info.started)),
        ("ended", f"{text.when(info.ended)} (after {text.duration(info.ended - info.started)})" if info.ended else "—"),
        ("backend", info.backend),
        ("budget", f"{budget.get('cores')} cores, {budget.get('gpus')} GPUs" if budget else "none (the backend queues work)"),
        ("host, pid", f"{info.host}, {info.pid}"),
        ("attempts", f"{len(view.attempts):,}"),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def _task_table(view: RunView) -> list:
    e = html.escape
    rows = sorted(view.tasks, key=lambda row: row.state not in BAD_STATES)  # stable: by label within
    shown = rows[:TABLE_LIMIT]
    out = ['<h2 id="tasks">Tasks</h2>']
    if len(rows) > len(shown):
        out.append(
            f'<p class="note">Showing {len(shown):,} of {len(rows):,} tasks (those that failed first). '
            f"python -m scalems status {e(str(view.directory))} lists them all.</p>"
        )
    out.append(
        '<table class="tasks"><thead><tr><th>label</th><th>kind</th><th>state</th><th>exit status or exception</th>'
        "<th>attempts</th><th>duration</th><th>cached</th><th>where</th></tr></thead><tbody>"
    )
    for row in shown:
        out.append(
            f"<tr><td>{e(row.label)}</td><td>{e(row.kind)}</td>"
            f'<td class="state-{row.state.replace(" ", "-")}">{e(row.state)}</td>'
            f"<td>{e(text.outcome_text(row, width=100))}</td><td class=num>{row.attempts or ''}</td>"
            f"<td class=num>{e(text.duration(row.duration))}</td><td>{'yes' if row.cached else ''}</td>"
            f"<td>{e(row.place or '')}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def _failures(view: RunView) -> list:
    e = html.escape
    failed = view.rows("failed")
    not_run = view.rows("not run")
    out = ['<h2 id="failures">Failures</h2>']
    if not failed and not not_run:
        out.append('<p class="note">No task failed.</p>')
        return out
    if not_run:
        out.append(f'<p class="note">{len(not_run):,} task(s) were not run because a task they need failed.</p>')
    for row in failed[:FAILURE_LIMIT]:
        out.append(f'<section class="failure"><h3>{e(row.label)}</h3><p>{e(row.error or text.outcome_text(row))}</p>')
        lines = text.tail(row.stderr)
        if lines:
            out.append(f'<p class="note">Last {len(lines)} line(s) of {e(row.stderr)}:</p><pre>{e(chr(10).join(lines))}</pre>')
        elif lines is not None:
            out.append(f'<p class="note">{e(row.stderr)} is empty.</p>')
        out.append("</section>")
    if len(failed) > FAILURE_LIMIT:
        out.append(f'<p class="note">… and {len(failed) - FAILURE_LIMIT:,} more failed tasks (python -m scalems status --failed).</p>')
    return out
