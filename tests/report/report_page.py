"""Reading the dashboard back: tagged numbers, table cells, resources; and the marts' numbers.

`expected_from_marts` recomputes, with its own SQL, every number the page tags with
`data-metric` that maps to a plain count, sum or ratio of the marts; the tests compare the two.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

METRIC = re.compile(r'<span[^>]*\bdata-metric="([^"]+)" data-value="([^"]*)"[^>]*>([^<]*)</span>')
CELL = re.compile(r'<td class="([^"]*)" data-cell="([^"]+)"([^>]*)>(.*?)</td>', re.S)
CSS_URL = re.compile(r"url\(\s*['\"]?\s*(?:https?:)?//", re.I)


def metrics(page: str) -> dict[str, list[tuple[str, str]]]:
    """data-metric -> [(data-value, text)] for every tagged number of the page."""
    out: dict[str, list[tuple[str, str]]] = {}
    for key, value, text in METRIC.findall(page):
        out.setdefault(html.unescape(key), []).append((html.unescape(value), html.unescape(text)))
    return out


def metric_value(page: str, key: str) -> float:
    values = {v for v, _ in metrics(page)[key]}
    assert len(values) == 1, f"{key}: several values on the page: {values}"
    return float(values.pop())


def cells(page: str) -> dict[str, tuple[str, str, str]]:
    """data-cell ('dept|YYYY-MM') -> (class, attributes, inner html) of the trend table."""
    return {key: (css, attrs, inner) for css, key, attrs, inner in CELL.findall(page)}


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.styles: list[str] = []
        self._in_style = False
        self.sections: list[str] = []
        self.scripts_with_src: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "data", "poster", "action", "srcset") and value is not None:
                self.urls.append((tag, name, value))
        if tag == "script" and any(n == "src" for n, _ in attrs):
            self.scripts_with_src.append(dict(attrs).get("src") or "")
        if tag == "style":
            self._in_style = True
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def resources(page: str) -> _Resources:
    parser = _Resources()
    parser.feed(page)
    parser.close()
    return parser


def external_loads(page: str) -> list[str]:
    """Every attribute or CSS url() of the page that points outside the file."""
    res = resources(page)
    bad = [f"<{tag} {attr}={value}>" for tag, attr, value in res.urls
           if not (value.startswith("#") or value.startswith("data:"))]
    bad += [f"<script src={s}>" for s in res.scripts_with_src]
    for css in res.styles:
        bad += [f"css url: {m.group(0)}" for m in CSS_URL.finditer(css)]
        if "@import" in css:
            bad.append("css @import")
    return bad


def expected_from_marts(warehouse: Path, min_cell: int = 10) -> dict[str, float]:
    """The page's tagged numbers, recomputed independently from the marts (published cells only:
    at least `min_cell` patients; readmission figures only with 0 or >= `min_cell` readmitted patients)."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    out: dict[str, float] = {}

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in con.execute(sql).fetchall()]

    try:
        stays, patients, cost = rows(
            "select count(*), count(distinct patient_id), sum(stay_cost) from marts.fct_stays")[0]
        n, x = rows("select count(*), sum(readmitted_30d) from marts.fct_readmissions where is_index")[0]
        out |= {"stays": stays, "patients": patients, "total_cost": cost, "index_stays": n, "readmissions": x,
                "readmission_rate": x / n}
        readmitted = "count(distinct case when readmitted_30d = 1 then patient_id end)"
        for d, dn, dp, dx, dxp in rows(f"""select department, count(*), count(distinct patient_id),
                                              sum(readmitted_30d), {readmitted}
                                       from marts.fct_readmissions where is_index group by 1"""):
            if dp >= min_cell:
                out |= {f"department_index_stays_{d}": dn, f"department_patients_{d}": dp}
                if dxp == 0 or dxp >= min_cell:
                    out |= {f"department_rate_{d}": dx / dn, f"department_readmissions_{d}": dx}
        total_index_cost = rows("select sum(episode_cost) from marts.fct_readmissions where is_index")[0][0]
        for cat, cn, cp, cx, cxp, cc in rows(
            """select left(s.icd10_code, 3), count(*), count(distinct r.patient_id), sum(r.readmitted_30d),
                      count(distinct case when r.readmitted_30d = 1 then r.patient_id end), sum(r.episode_cost)
               from marts.fct_readmissions r join marts.fct_stays s on s.stay_id = r.stay_id
               where r.is_index group by 1"""
        ):
            if cp >= min_cell:
                out |= {f"diagnosis_index_stays_{cat}": cn, f"diagnosis_patients_{cat}": cp,
                        f"diagnosis_cost_{cat}": cc, f"diagnosis_cost_share_{cat}": cc / total_index_cost}
                if cxp == 0 or cxp >= min_cell:
                    out |= {f"diagnosis_readmissions_{cat}": cx, f"diagnosis_rate_{cat}": cx / cn}
        for d, month, rate, suppressed in rows(
            "select department, strftime(discharge_month, '%Y-%m'), readmission_rate, suppressed "
            "from marts.agg_department_kpis"
        ):
            if not suppressed and rate is not None:
                out[f"month_rate_{d}_{month}"] = rate
        for group, share, gp in rows(
            """with t as (select patient_id, diagnosis_group, episode_cost,
                                 ntile(10) over (order by episode_cost desc, stay_id) as tile
                          from marts.fct_readmissions where is_index)
               select diagnosis_group, sum(episode_cost) / (select sum(episode_cost) from t where tile = 1),
                      count(distinct patient_id)
               from t where tile = 1 group by 1"""
        ):
            if gp >= min_cell:
                out[f"cost_share_top_{group}"] = share
    finally:
        con.close()
    return {k: float(v) for k, v in out.items()}
