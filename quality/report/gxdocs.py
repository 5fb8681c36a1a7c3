"""Great Expectations' Data Docs, written so that they are safe to open and complete offline.

GX's own site builder writes pages that (a) put station values into the HTML unescaped - a local
id `X<img src=x onerror=alert(1)>` on a failing row runs script in the auditor's browser - and
(b) load Bootstrap, jQuery, Font Awesome, bootstrap-table and Vega from public CDNs, with inline
scripts (the index's table data is a Python repr inside a <script>). So enteronce renders the
pages itself, with GX's own renderers and templates, and writes each of them through three layers:

1. **Escaping** (quality.report.gxview.EscapingPageView): the plain strings GX prints raw - table
   cells with unexpected values and record keys, list items, the page title - are HTML-escaped,
   so the auditor reads what the station sent.
2. **An allow-list sanitiser** (`nh3`, the Rust `ammonia` crate): the body GX rendered is cleaned
   to the tags and attributes the pages need; every <script>, <style>, event handler, inline
   style, external URL and unknown tag goes, whatever GX (or a later GX version) rendered and
   wherever station text sat in it. This is the layer the pages' safety rests on; an allow-list
   does not depend on knowing every place GX puts data.
3. **A fixed head written by enteronce**: a Content-Security-Policy that allows scripts, styles,
   images and fonts only from the site's own files (no inline script or handler runs even if
   something got past 1 and 2), and local copies of what the pages use - Bootstrap 4.6.2's CSS
   (vendored, MIT), `docs.css`, `docs.js` (collapsible sections and filters, in place of GX's
   inline scripts) and GX's logo (from the installed GX package) - under `static/enteronce/`.

The index is enteronce's own page (Jinja, autoescaped): suites, and every validation result with
its outcome. Rendering is incremental: `enteronce-docs.json` in the site remembers which results
have a page (and each suite's digest), so a pass renders only what is new; a change of
`VERSION` (sanitiser, head, assets) rewrites every page once, which is also how a site GX built
before is replaced. The validation results themselves - GX's store and the warehouse - keep the
original values: only the rendering is escaped.

GX is imported only when something is rendered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote

import nh3
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

log = logging.getLogger(__name__)

VERSION = 1  # bump when the sanitiser, the page head or the assets change: every page is rewritten once
MANIFEST = "enteronce-docs.json"
ASSETS = "static/enteronce"
LOGO = "gx-logo.png"
GENERATOR = f"enteronce data docs {VERSION}"
# Only the site's own files: no inline script, no event handler, no inline style, nothing remote.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
            "base-uri 'none'; form-action 'none'")
# (package file, name in the site's static/enteronce/)
STATIC_FILES = (("bootstrap-4.6.2.min.css", "bootstrap.min.css"),
                ("bootstrap-4.6.2.LICENSE.txt", "bootstrap.LICENSE.txt"),
                ("docs.css", "docs.css"), ("docs.js", "docs.js"))

# What a sanitised page may contain: GX's markup (Bootstrap 4 layout, tables, lists, collapses).
TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "div", "dl",
        "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "input", "ins", "kbd", "label", "li",
        "mark", "nav", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"}
# Dropped with everything inside them (the rest of an unknown tag's text is kept, as text).
DROPPED = {"script", "style", "title", "footer", "template", "noscript", "iframe", "object", "embed", "svg",
           "math", "textarea", "select", "button", "form", "head"}
ATTRIBUTES = {"*": {"class", "id", "role", "title", "hidden", "lang", "dir"},
              "a": {"href"}, "img": {"src", "alt"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"},
              "ol": {"start"}, "col": {"span"}, "colgroup": {"span"}, "input": {"name", "checked"}}
ATTRIBUTE_VALUES = {"a": {"data-toggle": {"collapse"}}, "input": {"type": {"radio"}}}
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*:")
_BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
# GX's navbar logo, which it links from its web-assets bucket: the local copy is used instead.
_GX_LOGO = re.compile(r'src="https://great-expectations-web-assets\.[^"]*/logo-long\.png[^"]*"')


@lru_cache(maxsize=16)
def _cleaner(assets: str) -> nh3.Cleaner:
    """The sanitiser for pages whose assets folder is at `assets` (relative to the page)."""
    logo = f"{assets}/{LOGO}"

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            return value if value == logo else None  # the local logo only (sanitise() points GX's at it)
        # Links: relative ones and fragments only - no scheme (nh3 drops those too), no //host, no /path.
        if attribute == "href" and (_SCHEME.match(value) or value.lstrip().startswith(("/", "\\"))):
            return None
        return value

    return nh3.Cleaner(tags=TAGS, clean_content_tags=DROPPED, attributes=ATTRIBUTES,
                       generic_attribute_prefixes={"aria-"}, tag_attribute_values=ATTRIBUTE_VALUES,
                       url_schemes=set(), link_rel=None, strip_comments=True, attribute_filter=keep)


def sanitise(document: str, assets: str) -> str:
    """The body of a GX-rendered page, cleaned to the allow-list above."""
    start = _BODY_START.search(document)
    end = document.lower().rfind("</body>")
    body = document[start.end():end] if start and end > start.end() else document
    body = _GX_LOGO.sub(lambda _: f'src="{assets}/{LOGO}"', body)
    return _cleaner(assets).clean(body)


@lru_cache(maxsize=1)
def _templates() -> Environment:
    return Environment(loader=PackageLoader("quality.report", "templates"),
                       autoescape=select_autoescape(["html"], default=True), trim_blocks=True, lstrip_blocks=True)


def wrap(body: str, *, title: str, assets: str) -> str:
    """A sanitised body in enteronce's head: CSP, local CSS and script."""
    return _templates().get_template("gxdocs_page.html").render(
        body=Markup(body), title=title, assets=assets, csp=Markup(DOCS_CSP), generator=GENERATOR)


def _assets_prefix(rel: Path) -> str:
    return "../" * (len(rel.parts) - 1) + ASSETS


def _href(rel: Path) -> str:
    return "/".join(quote(part) for part in rel.parts)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def install_assets(site: Path) -> Path:
    """Copy the pages' CSS, script and logo into `site/static/enteronce/` (only what changed)."""
    target = site / ASSETS
    target.mkdir(parents=True, exist_ok=True)
    sources = [(resources.files("quality.report") / "static" / name, out) for name, out in STATIC_FILES]
    spec = find_spec("great_expectations")  # the package's folder, without importing GX
    if spec is not None and spec.origin:
        sources.append((Path(spec.origin).parent / "render" / "view" / "static" / "images" / "logo-long.png", LOGO))
    for source, name in sources:
        with resources.as_file(source) as path:
            out = target / name
            if not path.exists():
                continue
            if not out.exists() or out.read_bytes() != path.read_bytes():
                shutil.copyfile(path, out)
    return target


@dataclass
class Manifest:
    """What the site holds: a row per validation page, a digest per suite page."""

    version: int = VERSION
    pages: dict[str, dict] = field(default_factory=dict)
    suites: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return cls()  # another layout or an older sanitiser: every page is rewritten
        return cls(pages=dict(data.get("pages") or {}), suites=dict(data.get("suites") or {}))

    def save(self, path: Path) -> None:
        _write(path, json.dumps({"version": self.version, "pages": self.pages, "suites": self.suites},
                                ensure_ascii=False, sort_keys=True))


class DocsBuilder:
    """Renders a GX context's suites and validation results into `site` (see the module doc)."""

    def __init__(self, context, site: Path):
        self.context = context
        self.site = Path(site)
        self._view = None
        self._renderers: dict[str, object] = {}

    @property
    def view(self):
        if self._view is None:
            from quality.report.gxview import EscapingPageView

            self._view = EscapingPageView()
        return self._view

    def _renderer(self, kind: str):
        if kind not in self._renderers:
            from great_expectations.render.renderer import (
                ExpectationSuitePageRenderer,
                ValidationResultsPageRenderer,
            )

            self._renderers[kind] = (ValidationResultsPageRenderer(data_context=self.context) if kind == "validation"
                                     else ExpectationSuitePageRenderer())
        return self._renderers[kind]

    def _page(self, rel: Path, rendered) -> None:
        """Write one GX-rendered document: escaped by the view, sanitised, in enteronce's head."""
        assets = _assets_prefix(rel)
        document = self.view.render(rendered, data_context_id=None, show_how_to_buttons=False)
        title = f"{rendered.page_title or 'Data Docs'} · Great Expectations Data Docs"
        _write(self.site / rel, wrap(sanitise(document, assets), title=title, assets=assets))

    def _error_page(self, rel: Path, what: str, error: Exception) -> None:
        assets = _assets_prefix(rel)
        body = _templates().from_string(
            '<main class="container pt-4"><h4>{{ what }}</h4><p>Great Expectations could not render this page: '
            '<code>{{ error }}</code></p><p><a href="{{ home }}">All Data Docs</a></p></main>').render(
            what=what, error=f"{type(error).__name__}: {error}", home="../" * (len(rel.parts) - 1) + "index.html")
        _write(self.site / rel, wrap(body, title=f"{what} · Great Expectations Data Docs", assets=assets))

    def _inside(self, rel: Path) -> bool:
        return (self.site / rel).resolve().is_relative_to(self.site.resolve())

    def build(self) -> Path:
        """Render what is new (every page after a VERSION change), remove pages of results that are
        gone, and write the index. Returns the index's path."""
        from great_expectations.core.expectation_suite import ExpectationSuite

        self.site.mkdir(parents=True, exist_ok=True)
        install_assets(self.site)
        manifest_path = self.site / MANIFEST
        manifest = Manifest.load(manifest_path)
        ctx = self.context
        changed = False

        suites = []
        store = ctx.expectations_store
        for key in store.list_keys():
            rel = Path("expectations", *key.to_tuple()[:-1], f"{key.to_tuple()[-1]}.html")
            if not self._inside(rel):
                continue
            suites.append({"name": key.name, "href": _href(rel), "rel": rel.as_posix()})
            raw = store.get(key)
            digest = _digest(raw)
            if manifest.suites.get(rel.as_posix()) == digest and (self.site / rel).exists():
                continue
            changed = True
            try:
                suite = raw if isinstance(raw, ExpectationSuite) else ExpectationSuite(**raw)
                self._page(rel, self._renderer("suite").render(suite))
            except Exception as exc:  # noqa: BLE001 - one page failing must not stop the others
                log.warning("Data Docs: expectation suite %s not rendered: %s", key.name, exc)
                self._error_page(rel, f"Expectation suite {key.name}", exc)
            manifest.suites[rel.as_posix()] = digest

        for rel in set(manifest.suites) - {suite["rel"] for suite in suites}:  # suites no longer in GX's store
            changed = True
            del manifest.suites[rel]

        results = ctx.validation_results_store
        present = set()
        for key in results.list_keys():
            *folders, name = key.to_tuple()
            rel = Path("validations", *folders, f"{name}.html")
            if not self._inside(rel):
                continue
            present.add(rel.as_posix())
            if rel.as_posix() in manifest.pages and (self.site / rel).exists():
                continue
            changed = True
            row = {"suite": key.expectation_suite_identifier.name, "run_name": str(key.run_id.run_name),
                   "run_time": key.run_id.run_time.isoformat() if key.run_id.run_time else "",
                   "batch": str(key.batch_identifier), "href": _href(rel)}
            try:
                result = results.get(key)
                stats = result.statistics or {}
                row.update(success=bool(result.success), evaluated=stats.get("evaluated_expectations"),
                           successful=stats.get("successful_expectations"),
                           asset=getattr(result, "asset_name", None))
                self._page(rel, self._renderer("validation").render(result))
            except Exception as exc:  # noqa: BLE001
                log.warning("Data Docs: validation result %s not rendered: %s", rel.as_posix(), exc)
                row.update(success=False, error=f"{type(exc).__name__}: {exc}")
                self._error_page(rel, f"Validation {row['suite']} / {row['run_name']}", exc)
            manifest.pages[rel.as_posix()] = row

        for rel in [r for r in manifest.pages if r not in present]:  # results no longer in GX's store
            changed = True
            del manifest.pages[rel]
            page = self.site / rel
            if page.is_file() and self._inside(Path(rel)):
                page.unlink()

        index = self.site / "index.html"
        if changed or not index.exists() or not manifest_path.exists():
            _write(index, self.index_html(manifest, suites))
            manifest.save(manifest_path)
        return index

    def index_html(self, manifest: Manifest, suites: list[dict]) -> str:
        runs = sorted(({**r, "run_time_text": _when(r.get("run_time"))} for r in manifest.pages.values()),
                      key=lambda r: (r.get("run_time") or "", r.get("href")), reverse=True)
        return _templates().get_template("gxdocs_index.html").render(
            runs=runs, failed=sum(1 for r in runs if not r.get("success")),
            suites=sorted(suites, key=lambda s: s["name"]), assets=ASSETS, logo=LOGO, csp=Markup(DOCS_CSP),
            generator=GENERATOR)


def _when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        at = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if at.tzinfo is not None:
        at = at.astimezone(dt.timezone.utc)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def build_site(context, site: Path) -> Path:
    """Render the Data Docs of a GX file context into `site`; returns the index's path."""
    return DocsBuilder(context, site).build()
