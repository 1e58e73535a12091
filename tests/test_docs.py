"""The documentation: the site builds with no warning, the generated command pages match the code, every
relative link and anchor of README.md and docs/ resolves (the README is outside the site, so MkDocs does not
check it), and the charts draw from the benchmarks' results files."""

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata

from conftest import PROJECT_ROOT

# Files that other tests write, which the pages show: missing in a checkout where those tests never ran.
WRITTEN_BY_TESTS = {"docs/browser.png"}  # the browser site's screenshot (its end-to-end test)

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def load_docs_script():
  spec = importlib.util.spec_from_file_location("docs_script", PROJECT_ROOT / "scripts" / "docs.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_site_builds_with_no_warning(tmp_path):
  env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
  done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                        cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=300)
  warnings = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
  assert done.returncode == 0 and not warnings, "\n".join(warnings) or done.stderr[-2000:]
  for page in ("index.html", "separation/index.html", "reference/commands/wave-unet-separate/index.html"):
    assert (tmp_path / "site" / page).is_file(), page
  api = (tmp_path / "site" / "reference" / "python" / "index.html").read_text()
  assert "separate_file" in api and "StreamingSeparator" in api  # rendered from the docstrings


def test_generated_command_pages_match_the_code():
  docs = load_docs_script()
  generated = docs.pages()
  assert set(docs.console_scripts()) <= {os.path.basename(p)[:-3] for p in generated}
  assert docs.stale(generated) == [], "stale generated pages: run python scripts/docs.py"
  separate = generated[os.path.join(docs.COMMANDS_DIR, "wave-unet-separate.md")]
  assert "\n## Model\n" in separate
  assert "- **`--codec`** (default: <code>wav</code>): &lt;wav|flac|ogg|mp3|m4a&gt;: Output format.\n" in separate


def test_each_flag_is_listed_and_a_differing_page_is_stale():
  docs = load_docs_script()
  page = docs.command_page("wave-unet-x", "wave-unet-x: does x.\n\nFlags:\n  --a_b: One, 2**3\n      more.\n"
                                          "      (default: 1)\n  --[no]c: <x|y>: Two.\n      (required)\n")
  assert page.splitlines()[0] == "# wave-unet-x"
  assert ("## Flags\n\n- **`--a_b`** (default: <code>1</code>): One, 2\\*\\*3 more.\n"
          "- **`--[no]c`** (required): &lt;x|y&gt;: Two.\n") in page
  path = os.path.join(docs.COMMANDS_DIR, "wave-unet-separate.md")
  assert docs.stale({path: "something else\n"}) == [path] + [
      os.path.join(docs.COMMANDS_DIR, f) for f in sorted(os.listdir(PROJECT_ROOT / docs.COMMANDS_DIR))
      if os.path.join(docs.COMMANDS_DIR, f) != path]


def _without_code(text):
  """The text with fenced blocks and code spans blanked (links there are examples)."""
  text = re.sub(r"^( {0,3})(```|~~~).*?^\1\2[^\n]*$", "", text, flags=re.M | re.S)
  return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text, flags=re.S)


def _mkdocs_slug(title):
  title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
  return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


def _github_slug(title):
  return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(path):
  """The anchors of a page's headings that both MkDocs and GitHub give it."""
  text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(), flags=re.M | re.S)
  found = set()
  for line in text.splitlines():
    match = HEADING.match(line)
    if match:
      title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2)).replace("`", "").replace("*", "")
      if _mkdocs_slug(title) == _github_slug(title):
        found.add(_mkdocs_slug(title))
  return found


def test_every_relative_link_and_anchor_resolves():
  pages = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]
  broken, checked = [], 0
  for page in pages:
    for target in LINK.findall(_without_code(page.read_text())):
      if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        continue
      checked += 1
      file_part, _, anchor = target.partition("#")
      resolved = (page.parent / file_part).resolve() if file_part else page
      where = f"{page.relative_to(PROJECT_ROOT)}: {target}"
      relative = os.path.relpath(resolved, PROJECT_ROOT)
      if not resolved.exists():
        if relative not in WRITTEN_BY_TESTS:
          broken.append(f"{where}: no such file")
        continue
      if anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
        broken.append(f"{where}: no heading with the anchor #{anchor}")
  assert checked > 100, checked
  assert not broken, "\n".join(broken)


def test_readme_is_short_and_starts_with_the_set_up_commands():
  readme = (PROJECT_ROOT / "README.md").read_text()
  assert len(readme.encode()) < 15_000
  assert readme.split("```bash\n", 1)[1].startswith("bash scripts/demo.sh ")
  assert "\nbash scripts/test.sh " in readme.split("```", 2)[1]


def test_every_chart_draws_from_the_benchmarks_results(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
  import charts
  monkeypatch.setattr(charts, "IMG", str(tmp_path))
  charts.main()
  drawn = sorted(p.name for p in tmp_path.iterdir())
  assert drawn == sorted(p.name for p in (PROJECT_ROOT / "docs" / "img").glob("*.png")), drawn
  for name in ("cpu", "gpu", "precision", "quickstart_curve"):
    assert f"{name}.png" in drawn
