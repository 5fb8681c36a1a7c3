"""The front-desk page (/desk): one self-contained HTML page for a station officer.

The officer picks the kind of record (the project's entity types: residents, organisations,
dwellings, or a project's own), types what the resident says; the page shows hints as they type
(ID number shape and check digit, birth date and sex against the ID, phone shape: computed in the
page, no request), asks POST /v1/match on 核录 (the server's checks, the candidates with decision,
probability and explanation, the masked golden record), fills the form from a candidate (取用),
and submits the record with POST /v1/records (录入). Chinese first, English after. The form is
built from the entity types' declarations (core/entity_types.yaml: each source field with its
`label`), so a type added by configuration gets its form with no change here.

Safe by construction: no external assets (inline CSS and JS, the CSP below lets the page talk to
its own origin only); the types travel as JSON data in the page (`<` escaped), and every element is
made with createElement and textContent, never as HTML; the bearer token is typed once and kept
in sessionStorage (gone with the tab), sent only in the Authorization header, never in a URL.
Masked values (with *) are not copied into the form (the officer asks the resident): they are
shown as the field's placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from core.entity_types import EntityType

DESK_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

# Whole-record standardisers whose fields are read by name (persons: id_number, sex, phone...).
_BY_NAME = {"persons": {"id_number": "id_number", "phone": "phone", "sex": "sex"},
            "organisations": {"phone": "phone"}}
_BY_STANDARDISER = {"id_number": "id_number", "phone": "phone"}


def _hint(etype: EntityType, field: str) -> str | None:
    """Which typing hint a field gets: an ID number's shape and check digit, a phone's shape, a
    date's shape; a resident's stated sex and birth date are checked against the ID beside them."""
    spec = etype.fields[field]
    whole = etype.spec.standardiser
    if whole is not None:
        got = _BY_NAME.get(whole, {}).get(field)
        if got is not None:
            return got
    elif spec.standardiser_name in _BY_STANDARDISER:
        return _BY_STANDARDISER[spec.standardiser_name]
    return "date" if spec.type == "date" else None


def form_types(types: Iterable[EntityType]) -> list[dict]:
    """The page's data: per type its name, description and form fields (source fields an officer
    types, local id last; not timestamps, which the hub stamps)."""
    out = []
    for t in types:
        names = [f for f in t.spec.source_fields if f != "local_id" and t.fields[f].type != "timestamp"]
        fields = [{"name": f, "label": t.fields[f].label or f, "hint": _hint(t, f)} for f in [*names, "local_id"]]
        out.append({"name": t.name, "description": t.spec.description or t.name, "fields": fields})
    return out


def desk_page(types: Iterable[EntityType]) -> str:
    data = json.dumps(form_types(types), ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    return _PAGE.replace("%TYPES%", data)


_PAGE = r"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>信息核录 Front desk - enteronce</title>
<style>
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1f3a5f;color:#fff;padding:10px 18px}header h1{font-size:18px;margin:0}
.en{color:#6b7280;font-size:.85em}header .en{color:#c7d2e4}
main{display:grid;grid-template-columns:minmax(280px,420px) 1fr;gap:18px;padding:18px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:14px}
label{display:block;margin-top:8px;font-weight:600}input,select{width:100%;box-sizing:border-box;padding:6px;font-size:15px}
.hint{color:#b45309;font-size:13px;min-height:1em}.ok{color:#15803d}
button{margin:10px 8px 0 0;padding:7px 14px;font-size:15px;cursor:pointer}
.cand{border:1px solid #dde1e7;border-radius:6px;padding:10px;margin:10px 0}
.decision-match{border-left:5px solid #15803d}.decision-review{border-left:5px solid #b45309}
.decision-non_match{border-left:5px solid #9ca3af}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #e5e7eb;padding:2px 6px;text-align:left}
#status{white-space:pre-wrap}.err{color:#b91c1c}
</style></head>
<body>
<header><h1>信息核录 <span class="en">Front desk: verify, find, enter</span></h1></header>
<main>
<section>
<label for="token">访问令牌 <span class="en">Bearer token (kept in this tab only)</span></label>
<input id="token" type="password" autocomplete="off">
<button id="save-token" type="button">保存 <span class="en">Save</span></button>
<div class="hint" id="token-state"></div>
<label for="entity">类型 <span class="en">Kind of record</span></label>
<select id="entity"></select>
<form id="record" autocomplete="off" onsubmit="return false"></form>
<button id="match" type="button">核录 <span class="en">Match</span></button>
<button id="submit" type="button">录入 <span class="en">Enter record</span></button>
<button id="clear" type="button">清空 <span class="en">Clear</span></button>
</section>
<section>
<h2>校验提示 <span class="en">Checks</span></h2>
<ul id="checks"></ul>
<h2>候选人员 <span class="en">Candidates</span></h2>
<div id="candidates"></div>
<h2>录入结果 <span class="en">Entry</span></h2>
<div id="status"></div>
</section>
</main>
<script type="application/json" id="types">%TYPES%</script>
<script>
"use strict";
const TYPES = JSON.parse(document.getElementById("types").textContent);
let FIELDS = [];
const KEY = "enteronce.token";
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; };
function token() { return sessionStorage.getItem(KEY) || ""; }
function showToken() { $("token-state").textContent = token() ? "已保存 Saved for this tab" : "未设置 No token yet"; }
$("save-token").addEventListener("click", () => { sessionStorage.setItem(KEY, $("token").value.trim()); $("token").value = ""; showToken(); });
function byHint(kind) { return FIELDS.filter((f) => f.hint === kind).map((f) => f.name); }
function form(typeName) {
  const t = TYPES.find((x) => x.name === typeName) || TYPES[0];
  FIELDS = t ? t.fields : [];
  const box = $("record"); box.replaceChildren();
  for (const f of FIELDS) {
    const label = el("label", f.label); label.htmlFor = "f-" + f.name;
    const input = el("input"); input.id = "f-" + f.name; input.name = f.name; input.autocomplete = "off"; input.maxLength = 200;
    input.addEventListener("input", hints);
    box.append(label, input, Object.assign(el("div", "", "hint"), {id: "h-" + f.name}));
  }
  $("candidates").replaceChildren(); $("checks").replaceChildren(); $("status").textContent = "";
}
function value(name) { const e = $("f-" + name); return e ? e.value.trim() : ""; }
function record() { const r = {}; for (const f of FIELDS) { const v = value(f.name); if (v) r[f.name] = v; } return r; }
function matchRecord() { const r = record(); delete r.local_id; return r; }

// Hints while typing: the shape of what is typed (the server's checks come with 核录).
const W = [7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2];
function idCheck(body) { let s = 0; for (let i = 0; i < 17; i++) s += Number(body[i]) * W[i]; return "10X98765432"[s % 11]; }
function hints() {
  const h = {};
  for (const f of FIELDS) h[f.name] = "";
  const dates = byHint("date"), sexes = byHint("sex");
  for (const name of byHint("id_number")) {
    const id = value(name).toUpperCase();
    if (!id) continue;
    if (!/^\d{17}[\dX]$/.test(id)) { h[name] = "应为18位 must be 18 characters (17 digits + digit or X)"; continue; }
    if (idCheck(id) !== id[17]) { h[name] = "校验位不符 check digit should be " + idCheck(id); continue; }
    const d = id.slice(6, 10) + "-" + id.slice(10, 12) + "-" + id.slice(12, 14), s = Number(id[16]) % 2 ? "男" : "女";
    for (const bdName of dates) {  // the person's own birth date and sex, beside their ID
      const bd = value(bdName);
      if (bd && bd.replace(/[./年月]/g, "-").replace(/日/g, "") !== d) h[bdName] = "与身份证不符 ID says " + d;
    }
    for (const sexName of sexes) {
      const sex = value(sexName);
      if (sex && !sex.startsWith(s) && !(s === "男" && /^m/i.test(sex)) && !(s === "女" && /^f/i.test(sex))) h[sexName] = "与身份证不符 ID says " + s;
    }
  }
  for (const name of dates) {
    const bd = value(name);
    if (bd && !/^\d{4}[-./年]\d{1,2}[-./月]\d{1,2}日?$/.test(bd) && !/^\d{8}$/.test(bd)) h[name] = h[name] || "日期格式 use YYYY-MM-DD";
  }
  for (const name of byHint("phone")) {
    const ph = value(name).replace(/[\s-]/g, "");
    if (ph && !/^(\+?86)?1\d{10}$/.test(ph) && !/^0\d{9,11}$/.test(ph)) h[name] = "号码格式 11-digit mobile or 0-prefixed landline";
  }
  for (const name of Object.keys(h)) { const e = $("h-" + name); if (e) { e.textContent = h[name]; e.className = "hint"; } }
}

async function call(method, path, body) {
  const t = token();
  if (!t) { $("status").textContent = "请先输入令牌 Enter the token first"; return null; }
  const r = await fetch(path, {method, headers: {"Authorization": "Bearer " + t, "Content-Type": "application/json"},
                               body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit", cache: "no-store"});
  let data = null; try { data = await r.json(); } catch (e) { data = {detail: r.statusText}; }
  return {status: r.status, data};
}
function showChecks(checks) {
  const ul = $("checks"); ul.replaceChildren();
  if (!checks || !checks.length) { ul.append(el("li", "无问题 Nothing wrong found", "ok")); return; }
  for (const c of checks) ul.append(el("li", (c.field ? c.field + ": " : "") + c.message, "err"));
}
function prefill(rec) {
  for (const f of FIELDS) {  // a golden record names a standardised value <field>_norm (name_norm)
    if (f.name === "local_id") continue;
    const v = rec[f.name] ?? rec[f.name + "_norm"];
    const input = $("f-" + f.name);
    if (v === undefined || v === null || v === "") continue;
    const text = String(v);
    if (text.includes("*")) { input.value = ""; input.placeholder = text + "  已遮蔽 masked: ask the resident"; }
    else { input.value = text; input.placeholder = ""; }
  }
  hints();
}
function showCandidates(cands) {
  const box = $("candidates"); box.replaceChildren();
  if (!cands.length) { box.append(el("p", "无候选 No candidate in your scope")); return; }
  for (const c of cands) {
    const d = el("div", undefined, "cand decision-" + String(c.decision).replace(/[^a-z_]/g, ""));
    d.dataset.entity = String(c.entity_id);
    d.append(el("strong", c.entity_id), el("span", "  " + ({match: "匹配 match", review: "待核 review", non_match: "不匹配 non-match"}[c.decision] || c.decision)
             + "  p=" + Number(c.match_probability).toFixed(4)));
    if (c.reason) d.append(el("div", c.reason, "en"));
    const t = el("table"); const head = el("tr"); head.append(el("th", "字段 Field"), el("th", "值 Value")); t.append(head);
    for (const [k, v] of Object.entries(c.record || {})) { const tr = el("tr"); tr.append(el("td", k), el("td", v === null ? "" : (typeof v === "object" ? JSON.stringify(v) : v))); t.append(tr); }
    d.append(t);
    const ex = el("table"); const eh = el("tr"); eh.append(el("th", "比较 Comparison"), el("th", "级别 Level"), el("th", "权重 Weight")); ex.append(eh);
    for (const p of c.explanation || []) { const tr = el("tr"); tr.append(el("td", p.comparison), el("td", p.level), el("td", p.weight)); ex.append(tr); }
    d.append(el("div", "解释 Explanation", "en"), ex);
    const b = el("button", "取用 Use this record"); b.type = "button"; b.className = "prefill";
    b.addEventListener("click", () => prefill(c.record || {}));
    d.append(b);
    box.append(d);
  }
}
$("match").addEventListener("click", async () => {
  const r = await call("POST", "/v1/match", {entity_type: $("entity").value, record: matchRecord()});
  if (!r) return;
  if (r.status !== 200) { $("status").textContent = "核录失败 Match refused (" + r.status + "): " + (r.data.detail ?? ""); return; }
  showChecks(r.data.checks); showCandidates(r.data.candidates || []);
});
$("submit").addEventListener("click", async () => {
  const r = await call("POST", "/v1/records", {entity_type: $("entity").value, record: record()});
  if (!r) return;
  const s = $("status"); s.replaceChildren();
  const d = r.data || {};
  if (r.status === 201 || r.status === 200) {
    s.append(el("div", (r.status === 201 ? "已录入 Entered" : "已录入过 Entered before") + ": " + d.batch_id, "ok"));
  } else if (d.status === "quarantined" || d.status === "refused") {
    s.append(el("div", "未录入 Not entered" + (d.quarantine_id ? " (隔离编号 quarantine " + d.quarantine_id + ")" : ""), "err"));
    for (const e of d.errors || []) s.append(el("div", (e.field ? e.field + ": " : "") + e.message, "err"));
  } else { s.append(el("div", "录入失败 Refused (" + r.status + "): " + (d.detail ?? ""), "err")); }
});
$("clear").addEventListener("click", () => { for (const f of FIELDS) { $("f-" + f.name).value = ""; $("f-" + f.name).placeholder = ""; } hints(); $("candidates").replaceChildren(); $("checks").replaceChildren(); $("status").textContent = ""; });
for (const t of TYPES) { const o = el("option", t.description); o.value = t.name; $("entity").append(o); }
$("entity").addEventListener("change", () => form($("entity").value));
form(TYPES.length ? TYPES[0].name : "");
showToken();
</script>
</body></html>
"""
