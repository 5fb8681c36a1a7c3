"""Great Expectations' own page view (its Jinja templates), with the data it shows escaped.

GX renders a validation result in two steps: a renderer turns it into a tree of content blocks
(tables, string templates, lists), then a Jinja view writes HTML from them with autoescaping off.
GX escapes the parameters of string templates, but not the plain strings of a table cell or a
list - which is where the failing rows' values and record keys are (`unexpected_index_list`,
`partial_unexpected_counts`) - nor the page title (the run name). This view escapes those, so
an auditor reads a value such as `X<img src=x onerror=alert(1)>` as the text the station sent.

It is the first of two layers: every page is then passed through an allow-list sanitiser
(quality.report.gxdocs), which is what makes the page safe whatever GX renders; this layer is
what keeps the text intact rather than stripped.

Importing this module imports GX (seconds): only quality.report.gxdocs does, when it renders.
"""

from __future__ import annotations

import html
from typing import Any

from great_expectations.render import RenderedComponentContent, RenderedDocumentContent
from great_expectations.render.view import DefaultJinjaPageView
from jinja2 import pass_context

SCALARS = (int, float, bool)


def _is_block(value: Any) -> bool:
    return isinstance(value, RenderedComponentContent) or (isinstance(value, dict) and "content_block_type" in value)


def _escape(value: Any) -> Any:
    """A leaf of rendered content as HTML text: strings and unknown objects escaped, numbers as they are."""
    if value is None or isinstance(value, SCALARS):
        return value
    return html.escape(str(value))


class EscapingPageView(DefaultJinjaPageView):
    """DefaultJinjaPageView whose data leaves are HTML-escaped before they reach the templates."""

    @pass_context
    def render_content_block(self, jinja_context: Any, content_block: Any, index: Any = None,
                             content_block_id: Any = None, render_to_markdown: bool = False):
        if isinstance(content_block, list):
            content_block = [c if _is_block(c) else _escape(c) for c in content_block]
        elif not isinstance(content_block, (dict, RenderedComponentContent)):
            return "" if content_block is None else _escape(content_block)
        return super().render_content_block(jinja_context, content_block, index, content_block_id,
                                            render_to_markdown)

    def render_string_template(self, template):
        # GX escapes string parameters itself; a list or dict parameter would be printed raw.
        if isinstance(template, dict) and isinstance(template.get("params"), dict):
            params = template["params"]
            for name, value in params.items():
                if name not in self._TRUSTED_HTML_PARAMS and not isinstance(value, (str, *SCALARS)) \
                        and value is not None:
                    params[name] = str(value)
        return super().render_string_template(template)

    def render(self, document, template=None, **kwargs):
        """The page, with its title (which carries the run name) escaped as text."""
        self._validate_document(document)
        content = document.to_json_dict() if isinstance(document, RenderedDocumentContent) else dict(document)
        if content.get("page_title") is not None:
            content["page_title"] = html.escape(str(content["page_title"]))
        return self._get_template(template or self._template).render(content, **kwargs)
