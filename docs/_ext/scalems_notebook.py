"""``.. notebook-cells:: PATH``: a Jupyter notebook's cells on a documentation page.

Code cells become Python code blocks. Markdown cells are turned into
reStructuredText for the few constructs the example notebooks use (headings,
``code``, links, emphasis, paragraphs and lists). Outputs are not shown: the
notebooks are stored without them, and CI runs them (tests/test_notebook.py).
Reading the notebook at build time keeps the page and the notebook from drifting
apart, without a notebook renderer (nbsphinx needs pandoc) in the docs build.
"""

from __future__ import annotations

import json
import pathlib
import re

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")


def markdown_to_rst(text: str) -> list:
    """reST lines for a markdown cell: headings become rubrics, inline code and links are translated."""
    lines = []
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            lines += ["", f".. rubric:: {heading.group(2).strip()}", ""]
            continue
        # Inline code first, so that link texts and URLs inside it are left alone.
        parts = _CODE.split(line)
        for i, part in enumerate(parts):
            if i % 2:
                parts[i] = f"``{part}``"
            else:
                parts[i] = _LINK.sub(lambda m: f"`{m.group(1)} <{m.group(2)}>`__", part)
        lines.append("".join(parts))
    return lines


class NotebookCells(Directive):
    required_arguments = 1
    has_content = False

    def run(self):
        env = self.state.document.settings.env
        relative, path = env.relfn2path(self.arguments[0])
        env.note_dependency(relative)
        notebook = json.loads(pathlib.Path(path).read_text())
        result = []
        for cell in notebook["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code":
                block = nodes.literal_block(source, source, language="python")
                block["classes"].append("notebook-cell")
                result.append(block)
            elif cell["cell_type"] == "markdown":
                container = nodes.container(classes=["notebook-markdown"])
                self.state.nested_parse(StringList(markdown_to_rst(source), path), self.content_offset, container)
                result.extend(container.children)
        return result


def setup(app):
    app.add_directive("notebook-cells", NotebookCells)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
