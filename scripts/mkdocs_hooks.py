"""MkDocs hooks: the reference pages are generated from the code at build time, never copied.

- `docs/reference/cli.md` holds the marker `<!-- lmlab:cli -->`, replaced by every command and
  option of the typer app (typer's own Markdown generator, `typer.cli.get_docs_for_click`).
- `docs/reference/api.md` holds `<!-- lmlab:api -->`, replaced by one mkdocstrings block per
  public name in `lmlab.__init__._EXPORTS` (read from the source, not imported), so a name added
  to the API gets its entry, and a name whose object cannot be found fails `--strict`.

The source tree beside mkdocs.yml is put first on sys.path, so the pages describe this checkout
even where another lmlab is installed.
"""

from __future__ import annotations

import ast
import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
CLI_MARKER = "<!-- lmlab:cli -->"
API_MARKER = "<!-- lmlab:api -->"

# Sections of the API page, in reading order: a module prefix -> its heading. A module matching
# no prefix lands under "Other" (so a new module never drops a name from the page).
API_SECTIONS = {
    "lmlab.models": "Models",
    "lmlab.lm.base": "Models",
    "lmlab.text": "Models",
    "lmlab.sampling": "Generation and chat",
    "lmlab.decode": "Generation and chat",
    "lmlab.evaluate": "Scoring and evaluation",
    "lmlab.lm.ngram": "N-gram models",
    "lmlab.embed": "Embeddings",
    "lmlab.train": "Training",
    "lmlab.lm.lora_lm": "Training",
    "lmlab.lm.neural": "Training",
    "lmlab.classify": "Classification",
    "lmlab.pipelines": "Classification",
    "lmlab.errors": "Errors",
}


def public_exports(init_file: Path = SRC / "lmlab" / "__init__.py") -> dict[str, str]:
    """`_EXPORTS` of lmlab/__init__.py (public name -> module), read without importing lmlab."""
    for node in ast.parse(init_file.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"no _EXPORTS in {init_file}")


def api_markdown(exports: dict[str, str]) -> str:
    """One `::: module.name` block per export, grouped into the sections above."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for name, module in exports.items():
        title = next((t for p, t in API_SECTIONS.items() if module.startswith(p)), "Other")
        sections.setdefault(title, []).append((name, module))
    order = list(dict.fromkeys([*API_SECTIONS.values(), "Other"]))
    out = []
    for title in (t for t in order if t in sections):
        out.append(f"## {title}\n")
        for name, module in sections[title]:
            out.append(f"::: {module}.{name}\n")
    return "\n".join(out)


def cli_markdown() -> str:
    """Every command, argument and option of `lmlab`, from the typer app itself."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    import typer
    from typer.cli import get_docs_for_click

    from lmlab.cli import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    text = get_docs_for_click(obj=command, ctx=ctx, name="lmlab", indent=1, title="lmlab")
    # Help texts are plain text: `<unk>` must show as written, not vanish as an HTML tag.
    return re.sub(
        r"^(\* `[^`]*`: )(.*)$",
        lambda m: m.group(1) + html.escape(m.group(2), quote=False),
        text,
        flags=re.M,
    )


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill the two reference pages; a page that lost its marker fails the build."""
    path = page.file.src_uri
    if path == "reference/cli.md":
        if CLI_MARKER not in markdown:
            raise RuntimeError(f"{path} lost its marker {CLI_MARKER}")
        return markdown.replace(CLI_MARKER, cli_markdown())
    if path == "reference/api.md":
        if API_MARKER not in markdown:
            raise RuntimeError(f"{path} lost its marker {API_MARKER}")
        return markdown.replace(API_MARKER, api_markdown(public_exports()))
    return markdown
