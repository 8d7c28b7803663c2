"""Rebuild the nomenclature seeds from the SNDS reference tables (run once, output committed).

    python dbt/scripts/build_seeds.py /path/to/reference/snds/nomenclatures

Reads IR_CIM_V, IR_DPT_V, MS_SOR_V, MS_PRV_V (Licence Ouverte / etalab-2.0) and writes the
subsets the warehouse needs into dbt/seeds/. See dbt/seeds/README.md for sources and licences.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "seeds"

# Insee, Filosofi 2020: poverty rate (% of people under the 60% median threshold).
POVERTY_RATES = {"75": 15.4, "77": 11.7, "78": 9.7, "91": 13.2, "92": 11.9, "93": 27.6, "94": 16.6, "95": 17.0}
POVERTY_SOURCE = "Insee, Filosofi 2020 (taux de pauvreté au seuil de 60 %)"

# Main-diagnosis groups: (group, 3-character ICD-10 category ranges, inclusive).
DIAGNOSIS_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("COPD", (("J44", "J44"),)),
    ("HEART_FAILURE", (("I50", "I50"),)),
    ("DIABETES", (("E10", "E14"),)),
    ("CKD", (("N18", "N18"),)),
    ("CANCER", (("C00", "C97"),)),
    ("STROKE", (("I60", "I64"),)),
    ("PNEUMONIA", (("J12", "J18"),)),
    ("HIP_FRACTURE", (("S72", "S72"),)),
    ("OBSTETRICS", (("O00", "O99"),)),
    ("PLANNED_SESSION", (("Z49", "Z49"), ("Z51", "Z51"))),
)

# Quan H, Sundararajan V, Halfon P, et al. Coding algorithms for defining comorbidities in
# ICD-9-CM and ICD-10 administrative data. Med Care 2005;43(11):1130-9 (ICD-10 column of
# table 1), with the original Charlson weights (Charlson 1987).
CHARLSON_CATEGORIES: tuple[tuple[str, str, int, str], ...] = (
    # category, label, weight, superseded_by (the worse level that replaces it)
    ("myocardial_infarction", "Myocardial infarction", 1, ""),
    ("congestive_heart_failure", "Congestive heart failure", 1, ""),
    ("peripheral_vascular", "Peripheral vascular disease", 1, ""),
    ("cerebrovascular", "Cerebrovascular disease", 1, ""),
    ("dementia", "Dementia", 1, ""),
    ("chronic_pulmonary", "Chronic pulmonary disease", 1, ""),
    ("rheumatic", "Rheumatic disease", 1, ""),
    ("peptic_ulcer", "Peptic ulcer disease", 1, ""),
    ("mild_liver", "Mild liver disease", 1, "severe_liver"),
    ("diabetes_uncomplicated", "Diabetes without chronic complication", 1, "diabetes_complicated"),
    ("diabetes_complicated", "Diabetes with chronic complication", 2, ""),
    ("hemiplegia_paraplegia", "Hemiplegia or paraplegia", 2, ""),
    ("renal", "Renal disease", 2, ""),
    ("malignancy", "Any malignancy, incl. lymphoma and leukaemia, except skin", 2, "metastatic"),
    ("severe_liver", "Moderate or severe liver disease", 3, ""),
    ("metastatic", "Metastatic solid tumour", 6, ""),
    ("hiv_aids", "AIDS/HIV", 6, ""),
)


def _span(prefix: str, lo: int, hi: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(lo, hi + 1)]


def _cats(letter: str, lo: int, hi: int) -> list[str]:
    return [f"{letter}{i:02d}" for i in range(lo, hi + 1)]


CHARLSON_CODES: dict[str, list[str]] = {
    "myocardial_infarction": ["I21", "I22", "I252"],
    "congestive_heart_failure": ["I099", "I110", "I130", "I132", "I255", "I420", *_span("I42", 5, 9), "I43",
                                 "I50", "P290"],
    "peripheral_vascular": ["I70", "I71", "I731", "I738", "I739", "I771", "I790", "I792", "K551", "K558", "K559",
                            "Z958", "Z959"],
    "cerebrovascular": ["G45", "G46", "H340", *_cats("I", 60, 69)],
    "dementia": ["F00", "F01", "F02", "F03", "F051", "G30", "G311"],
    "chronic_pulmonary": ["I278", "I279", *_cats("J", 40, 47), *_cats("J", 60, 67), "J684", "J701", "J703"],
    "rheumatic": ["M05", "M06", "M315", "M32", "M33", "M34", "M351", "M353", "M360"],
    "peptic_ulcer": ["K25", "K26", "K27", "K28"],
    "mild_liver": ["B18", *_span("K70", 0, 3), "K709", *_span("K71", 3, 5), "K717", "K73", "K74", "K760",
                   *_span("K76", 2, 4), "K768", "K769", "Z944"],
    "diabetes_uncomplicated": [f"E1{d}{s}" for d in range(0, 5) for s in (0, 1, 6, 8, 9)],
    "diabetes_complicated": [f"E1{d}{s}" for d in range(0, 5) for s in (2, 3, 4, 5, 7)],
    "hemiplegia_paraplegia": ["G041", "G114", "G801", "G802", "G81", "G82", *_span("G83", 0, 4), "G839"],
    "renal": ["I120", "I131", *_span("N03", 2, 7), *_span("N05", 2, 7), "N18", "N19", "N250",
              *_span("Z49", 0, 2), "Z940", "Z992"],
    "malignancy": [*_cats("C", 0, 26), *_cats("C", 30, 34), *_cats("C", 37, 41), "C43", *_cats("C", 45, 58),
                   *_cats("C", 60, 76), *_cats("C", 81, 85), "C88", *_cats("C", 90, 97)],
    "severe_liver": ["I850", "I859", "I864", "I982", "K704", "K711", "K721", "K729", "K765", "K766", "K767"],
    "metastatic": ["C77", "C78", "C79", "C80"],
    "hiv_aids": ["B20", "B21", "B22", "B24"],
}

# Every code of MS_SOR_V / MS_PRV_V, unknown (-1, 9) and not-applicable (-2, 0) included:
# clean accepts exactly these (pipelines/contracts.py EXIT_MODE_CODES, PROVENANCE_CODES).
EXIT_MODES = ("-1", "-2", "0", "6", "7", "8", "9")
PROVENANCES = ("0", "1", "2", "3", "4", "5", "6", "7", "9")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def _write(name: str, header: list[str], rows: list[list[object]]) -> None:
    with (SEEDS / f"{name}.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("nomenclatures", type=Path)
    ref = parser.parse_args().nomenclatures

    cim = {r["CIM_COD"]: r["CIM_LIB"] for r in _read(ref / "IR_CIM_V.csv")}
    dpt = {r["GEO_DPT_COD"]: r for r in _read(ref / "IR_DPT_V.csv")}
    sor = {r["SOR_MOD_COD"]: r["SOR_MOD_LIB"] for r in _read(ref / "MS_SOR_V.csv")}
    prv = {r["PRV_COD"]: r["PRV_LIB"] for r in _read(ref / "MS_PRV_V.csv")}

    _write(
        "ref_departments",
        ["department", "department_label", "region_code", "poverty_rate", "poverty_source"],
        [[d, dpt["0" + d]["GEO_DPT_LIB"], dpt["0" + d]["GEO_REG_COD"], rate, POVERTY_SOURCE]
         for d, rate in sorted(POVERTY_RATES.items())],
    )

    groups: list[list[object]] = []
    for group, ranges in DIAGNOSIS_GROUPS:
        for lo, hi in ranges:
            for code in sorted(c for c in cim if len(c) == 3 and c[0] == lo[0] and lo <= c <= hi):
                groups.append([code, group, cim[code]])
    _write("ref_diagnosis_groups", ["icd10_category", "diagnosis_group", "icd10_label_fr"], groups)

    categories = sorted((c, lib) for c, lib in cim.items() if len(c) == 3 and c[0].isalpha() and c[1:].isdigit())
    _write("ref_icd10_categories", ["icd10_category", "icd10_label_fr"], [list(r) for r in categories])

    _write(
        "ref_charlson_categories",
        ["charlson_category", "charlson_label", "charlson_weight", "superseded_by"],
        [list(c) for c in CHARLSON_CATEGORIES],
    )
    charlson: list[list[object]] = []
    for category, prefixes in CHARLSON_CODES.items():
        for prefix in prefixes:
            charlson.append([prefix, category, cim.get(prefix, "")])
    _write("ref_charlson_icd10", ["icd10_prefix", "charlson_category", "icd10_label_fr"], charlson)

    _write("ref_exit_modes", ["exit_mode", "exit_mode_label"], [[c, sor[c]] for c in EXIT_MODES])
    _write("ref_provenances", ["provenance", "provenance_label"], [[c, prv[c]] for c in PROVENANCES])


if __name__ == "__main__":
    main()
