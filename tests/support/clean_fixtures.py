"""Small clean Parquet tables (contracts.CLEAN_SCHEMAS) with one patient per readmission rule.

`build_clean()` returns the five clean tables plus `expected`: for the stays tagged in the
scenarios, the hand-checked outcome of the readmission definition (exclusion reason, label,
tag of the readmission stay, days to readmission). Every other stay is only checked against
the independent Polars recomputation of the tests.

Run as a script to write the fixture into a project root:
    python -m tests.support.clean_fixtures /tmp/demo
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pipelines import contracts

DATA_END = date(2024, 12, 31)
WINDOW = 30

HOSPITALS: dict[str, tuple[str, str, str, str, int]] = {
    # hospital_id: (name, postal code, department, category code, beds)
    "750000011": ("CHU PARIS NORD", "75018", "75", "101", 900),
    "930000022": ("CH SAINT-DENIS", "93200", "93", "355", 400),
    "940000033": ("ESPIC CRETEIL", "94000", "94", "365", 200),
    "920000044": ("CLINIQUE NANTERRE", "92000", "92", "128", 120),
}


@dataclass(frozen=True)
class Stay:
    """One MCO stay of a scenario (defaults: an unplanned heart-failure stay, discharged home)."""

    patient: str
    admission: date
    discharge: date
    icd10: str = "I509"
    ghm: str = "05M092"
    entry_mode: str = "8"
    entry_source: str | None = None
    discharge_mode: str = "8"
    destination: str | None = None
    age: int = 70
    sex: int = 1
    department: str = "75"
    cost: float = 3000.0
    hospital: str = "750000011"
    diagnoses: tuple[str, ...] = ()
    tag: str | None = None


@dataclass(frozen=True)
class Expected:
    """Hand-checked outcome of a tagged stay."""

    exclusion_reason: str | None
    readmitted: int | None = None
    readmission_tag: str | None = None
    days: int | None = None


@dataclass
class Scenario:
    stays: list[Stay] = field(default_factory=list)
    dispensings: list[tuple[str, date, str]] = field(default_factory=list)  # patient, date, ATC
    expected: dict[str, Expected] = field(default_factory=dict)

    def add(self, stay: Stay, expected: Expected | None = None) -> Stay:
        self.stays.append(stay)
        if expected is not None:
            assert stay.tag is not None
            self.expected[stay.tag] = expected
        return stay


def d(text: str) -> date:
    return date.fromisoformat(text)


def plus(day: date, days: int) -> date:
    return day + timedelta(days=days)


def scenarios() -> Scenario:
    """Every readmission rule, one or two patients each."""
    s = Scenario()
    index = Expected(None, 0)

    # Plain readmission on day 10, the readmission is itself an index stay.
    s.add(Stay("P_READMIT", d("2023-03-01"), d("2023-03-10"), tag="readmit_a"),
          Expected(None, 1, "readmit_b", 10))
    s.add(Stay("P_READMIT", d("2023-03-20"), d("2023-03-25"), entry_source="5", tag="readmit_b"), index)

    # Death at the index stay: excluded, never an index.
    s.add(Stay("P_DEATH", d("2023-04-01"), d("2023-04-05"), discharge_mode="9", tag="death"),
          Expected("death"))
    # Death wins over planned care in the precedence.
    s.add(Stay("P_DEATH_SESSION", d("2023-04-01"), d("2023-04-01"), icd10="Z511", ghm="28Z07Z",
               discharge_mode="9", tag="death_session"), Expected("death"))

    # Transfer chain of three stays (transfer same day, then mutation next day): one episode,
    # readmitted 5 days after the LAST discharge; the cost and length are the chain's.
    s.add(Stay("P_CHAIN", d("2023-05-01"), d("2023-05-04"), discharge_mode="7", destination="1",
               entry_source="5", diagnoses=("E119", "C349"), tag="chain_1"),
          Expected(None, 1, "chain_readmit", 5))
    s.add(Stay("P_CHAIN", d("2023-05-04"), d("2023-05-08"), entry_mode="7", entry_source="1",
               discharge_mode="6", destination="1", hospital="930000022",
               diagnoses=("E112", "C787", "K703"), tag="chain_2"), Expected("transfer"))
    s.add(Stay("P_CHAIN", d("2023-05-09"), d("2023-05-12"), entry_mode="6", entry_source="1",
               hospital="940000033", diagnoses=("K766", "I252", "I10"), tag="chain_3"),
          Expected("transfer"))
    s.add(Stay("P_CHAIN", d("2023-05-17"), d("2023-05-19"), tag="chain_readmit"), index)

    # Transfer for an act ('0') chained; a transfer followed 2 days later is NOT chained and
    # is a readmission on day 2; a home discharge followed the next day is a readmission (day 1).
    s.add(Stay("P_ACT", d("2023-06-01"), d("2023-06-03"), discharge_mode="0", destination="1",
               tag="act_1"), Expected(None, 0))
    s.add(Stay("P_ACT", d("2023-06-04"), d("2023-06-06"), entry_mode="0", entry_source="1",
               hospital="930000022", tag="act_2"), Expected("transfer"))
    s.add(Stay("P_GAP2", d("2023-06-01"), d("2023-06-03"), discharge_mode="7", destination="1",
               tag="gap2_a"), Expected(None, 1, "gap2_b", 2))
    s.add(Stay("P_GAP2", d("2023-06-05"), d("2023-06-07"), entry_mode="7", entry_source="1",
               tag="gap2_b"), index)
    s.add(Stay("P_HOME_NEXT", d("2023-06-01"), d("2023-06-03"), tag="home_next_a"),
          Expected(None, 1, "home_next_b", 1))
    s.add(Stay("P_HOME_NEXT", d("2023-06-04"), d("2023-06-06"), tag="home_next_b"), index)
    # Discharge to rehabilitation (SSR), no MCO stay after: index, not chained.
    s.add(Stay("P_SSR", d("2023-06-10"), d("2023-06-20"), discharge_mode="7", destination="2",
               age=84, tag="ssr"), Expected(None, 0))

    # Planned session inside the window only: no readmission; the session is excluded.
    s.add(Stay("P_PLANNED", d("2023-07-01"), d("2023-07-05"), tag="planned_index"), Expected(None, 0))
    s.add(Stay("P_PLANNED", d("2023-07-10"), d("2023-07-10"), icd10="Z511", ghm="28Z07Z",
               tag="planned_session"), Expected("planned_care"))
    # A planned session then an unplanned stay in the window: the unplanned one is the readmission.
    s.add(Stay("P_AFTER_PLANNED", d("2023-07-01"), d("2023-07-05"), tag="after_planned_index"),
          Expected(None, 1, "after_planned_unplanned", 12))
    s.add(Stay("P_AFTER_PLANNED", d("2023-07-08"), d("2023-07-08"), icd10="Z491", ghm="28Z04Z",
               tag="after_planned_dialysis"), Expected("planned_care"))
    s.add(Stay("P_AFTER_PLANNED", d("2023-07-17"), d("2023-07-20"), tag="after_planned_unplanned"), index)
    # Radiotherapy detected by the GHM alone (session root 28) and by the Z510 code.
    s.add(Stay("P_SESSION_GHM", d("2023-07-01"), d("2023-07-01"), icd10="C509", ghm="28Z18Z",
               tag="session_ghm"), Expected("planned_care"))
    s.add(Stay("P_RADIO", d("2023-07-02"), d("2023-07-02"), icd10="Z510", ghm="28Z18Z",
               tag="radio"), Expected("planned_care"))

    # Obstetrics: by diagnosis (O*) and by GHM (CMD 14); a later stay still counts as readmission.
    s.add(Stay("P_OBST", d("2023-08-01"), d("2023-08-04"), icd10="O800", ghm="14Z14A", age=31, sex=2,
               tag="obst_dx"), Expected("obstetrics"))
    s.add(Stay("P_OBST_GHM", d("2023-08-01"), d("2023-08-04"), icd10="Z370", ghm="14Z14A", age=29, sex=2,
               tag="obst_ghm"), Expected("obstetrics"))
    s.add(Stay("P_OBST_READM", d("2023-08-01"), d("2023-08-04"), icd10="K359", ghm="06M102", age=30,
               sex=2, tag="before_obst"), Expected(None, 1, "obst_readm", 6))
    s.add(Stay("P_OBST_READM", d("2023-08-10"), d("2023-08-12"), icd10="O820", ghm="14Z14A", age=30,
               sex=2, tag="obst_readm"), Expected("obstetrics"))

    # Minors: 17 excluded, 18 included.
    s.add(Stay("P_MINOR", d("2023-09-01"), d("2023-09-02"), icd10="J219", age=17, tag="minor"),
          Expected("minor"))
    s.add(Stay("P_ADULT18", d("2023-09-01"), d("2023-09-02"), icd10="J189", age=18, tag="adult18"),
          Expected(None, 0))

    # Censoring at the data end (2024-12-31, window 30): discharged 2024-12-01 is followed up to
    # 2024-12-31 (and readmitted exactly on day 30); discharged 2024-12-02 is censored.
    s.add(Stay("P_CENSOR_EDGE", d("2024-11-25"), d("2024-12-01"), tag="censor_edge"),
          Expected(None, 1, "censor_edge_readm", 30))
    s.add(Stay("P_CENSOR_EDGE", d("2024-12-31"), d("2024-12-31"), tag="censor_edge_readm"),
          Expected("censored"))
    s.add(Stay("P_CENSORED", d("2024-11-28"), d("2024-12-02"), tag="censored"), Expected("censored"))

    # Day 30 counts, day 31 does not.
    s.add(Stay("P_DAY30", d("2023-10-01"), d("2023-10-05"), tag="day30_a"), Expected(None, 1, "day30_b", 30))
    s.add(Stay("P_DAY30", d("2023-11-04"), d("2023-11-06"), tag="day30_b"), index)
    s.add(Stay("P_DAY31", d("2023-10-01"), d("2023-10-05"), tag="day31_a"), Expected(None, 0))
    s.add(Stay("P_DAY31", d("2023-11-05"), d("2023-11-07"), tag="day31_b"), index)

    # Same-day (day 0) return after a home discharge, same hospital and same 3-character diagnosis:
    # one stay continued (CMS-style), chained as 'same_day_return'; the window starts at its end.
    s.add(Stay("P_SAMEDAY", d("2023-10-01"), d("2023-10-05"), tag="sameday_a"),
          Expected(None, 1, "sameday_c", 7))
    s.add(Stay("P_SAMEDAY", d("2023-10-05"), d("2023-10-07"), icd10="I500", entry_source="5", tag="sameday_b"),
          Expected("same_day_return"))
    s.add(Stay("P_SAMEDAY", d("2023-10-14"), d("2023-10-15"), tag="sameday_c"), index)
    # Same day but another hospital: a readmission on day 0.
    s.add(Stay("P_SAMEDAY_ELSEWHERE", d("2023-10-01"), d("2023-10-05"), tag="elsewhere_a"),
          Expected(None, 1, "elsewhere_b", 0))
    s.add(Stay("P_SAMEDAY_ELSEWHERE", d("2023-10-05"), d("2023-10-07"), hospital="930000022", entry_source="5",
               tag="elsewhere_b"), index)

    # Planned procedure (coronary stent, interventional GHM, non-acute diagnosis) on day 10: neither
    # an index nor a readmission; the unplanned episode of day 20 is the readmission.
    s.add(Stay("P_PLANNED_PROC", d("2023-07-01"), d("2023-07-05"), tag="proc_index"),
          Expected(None, 1, "proc_after", 20))
    s.add(Stay("P_PLANNED_PROC", d("2023-07-15"), d("2023-07-16"), icd10="I251", ghm="05K061", tag="proc"),
          Expected("planned_procedure"))
    s.add(Stay("P_PLANNED_PROC", d("2023-07-25"), d("2023-07-28"), tag="proc_after"), index)
    # Surgery for an acute diagnosis (hip fracture, surgical GHM): unplanned, a readmission.
    s.add(Stay("P_ACUTE_SURGERY", d("2023-08-01"), d("2023-08-05"), tag="surgery_index"),
          Expected(None, 1, "surgery", 15))
    s.add(Stay("P_ACUTE_SURGERY", d("2023-08-20"), d("2023-08-30"), icd10="S720", ghm="08C472", age=82,
               entry_source="5", tag="surgery"), index)
    # Transplant (GHM CMD 27): always planned.
    s.add(Stay("P_GRAFT", d("2023-05-01"), d("2023-05-20"), icd10="N185", ghm="27Z031", tag="graft"),
          Expected("planned_care"))
    # Discharge against medical advice (home, Z532 on the stay): not an index stay, but the
    # readmission of the index before it.
    s.add(Stay("P_AMA", d("2023-08-20"), d("2023-08-25"), tag="ama_index"), Expected(None, 1, "ama", 7))
    s.add(Stay("P_AMA", d("2023-09-01"), d("2023-09-03"), diagnoses=("Z532", "I10"), entry_source="5",
               tag="ama"), Expected("against_medical_advice"))

    # Only the FIRST readmission is reported.
    s.add(Stay("P_FIRST", d("2023-02-01"), d("2023-02-03"), tag="first_a"), Expected(None, 1, "first_b", 5))
    s.add(Stay("P_FIRST", d("2023-02-08"), d("2023-02-09"), tag="first_b"), Expected(None, 1, "first_c", 6))
    s.add(Stay("P_FIRST", d("2023-02-15"), d("2023-02-16"), tag="first_c"), index)

    # History features: prior unplanned episodes at -100 (ED), -200 and -400 days, a planned
    # session 50 days before; dispensings in and out of the 90-day window.
    adm = d("2024-03-01")
    s.add(Stay("P_HISTORY", plus(adm, -400), plus(adm, -398), entry_source="5"))
    s.add(Stay("P_HISTORY", plus(adm, -200), plus(adm, -195)))
    s.add(Stay("P_HISTORY", plus(adm, -100), plus(adm, -97), entry_source="5"))
    s.add(Stay("P_HISTORY", plus(adm, -50), plus(adm, -50), icd10="Z511", ghm="28Z07Z"))
    s.add(Stay("P_HISTORY", adm, plus(adm, 8), entry_source="5", diagnoses=("J449", "N184", "F03"),
               hospital="920000044", tag="history"), Expected(None, 0))
    s.dispensings += [
        ("P_HISTORY", plus(adm, -10), "R03AL03"),
        ("P_HISTORY", plus(adm, -20), "R03BB04"),
        ("P_HISTORY", plus(adm, -30), "R03AL03"),
        ("P_HISTORY", plus(adm, -95), "C03CA01"),  # outside the 90 days
        ("P_HISTORY", adm, "A10BA02"),  # the admission day itself: not before
        ("P_HISTORY", plus(adm, 3), "N02BE01"),  # during the stay: not known before admission
    ]

    # A quarantined beneficiary (no patients row) keeps their stays.
    s.add(Stay("P_QUARANTINED", d("2023-03-01"), d("2023-03-03"), department="94", sex=2,
               tag="quarantined"), Expected(None, 0))

    # One department-month cell with 12 patients (published) in 93, discharged in June 2023.
    for i in range(12):
        p = f"P_CELL93_{i:02d}"
        s.add(Stay(p, d("2023-06-02"), plus(d("2023-06-05"), i), department="93", hospital="930000022",
                   cost=1000.0 + 100 * i, entry_source="5" if i % 2 else None))
        if i < 3:
            s.add(Stay(p, plus(d("2023-06-10"), i), plus(d("2023-06-12"), i), department="93",
                       hospital="930000022"))
    return s


def _patients(stays: list[Stay]) -> pl.DataFrame:
    first: dict[str, Stay] = {}
    for st in sorted(stays, key=lambda x: x.admission):
        first.setdefault(st.patient, st)
    rows = [
        {
            "patient_id": p,
            "birth_rank": 1,
            "sex": st.sex,
            "birth_year": st.admission.year - st.age,
            "department": st.department,
            "commune": f"{st.department}056",
            "death_date": st.discharge if any(x.patient == p and x.discharge_mode == "9" for x in stays) else None,
        }
        for p, st in sorted(first.items())
        if p != "P_QUARANTINED"
    ]
    return pl.DataFrame(rows, schema=contracts.CLEAN_SCHEMAS["patients"])


def _hospitals() -> pl.DataFrame:
    rows = [
        {
            "hospital_id": h,
            "hospital_name": name,
            "postal_code": postal,
            "department": dept,
            "category_code": cat,
            "category": contracts.HOSPITAL_CATEGORIES[cat],
            "beds": beds,
        }
        for h, (name, postal, dept, cat, beds) in HOSPITALS.items()
    ]
    return pl.DataFrame(rows, schema=contracts.CLEAN_SCHEMAS["hospitals"])


def build_clean(
    scenario: Scenario | None = None,
) -> tuple[dict[str, pl.DataFrame], dict[str, str], dict[str, Expected]]:
    """(tables, stay_id by tag, expected outcome by tag)."""
    s = scenario or scenarios()
    rsa: dict[tuple[str, int], int] = {}  # RSA_NUM restarts every PMSI (discharge) year
    stay_rows, diag_rows = [], []
    tag_ids: dict[str, str] = {}
    for st in s.stays:
        year = st.discharge.year
        rsa[st.hospital, year] = n = rsa.get((st.hospital, year), 0) + 1
        stay_id = f"{st.hospital}-{year}-{n}"
        if st.tag:
            tag_ids[st.tag] = stay_id
        stay_rows.append(
            {
                "stay_id": stay_id, "hospital_id": st.hospital, "pmsi_year": year, "rsa_num": n,
                "patient_id": st.patient, "admission_date": st.admission, "discharge_date": st.discharge,
                "length_of_stay": (st.discharge - st.admission).days, "icd10_code": st.icd10,
                "related_icd10_code": None, "entry_mode": st.entry_mode, "entry_source": st.entry_source,
                "discharge_mode": st.discharge_mode, "discharge_destination": st.destination,
                "ghm_code": st.ghm, "age": st.age, "sex": st.sex, "department": st.department,
                "stay_cost": st.cost, "pmsi_return_codes_ok": True,
            }
        )
        for rank, code in enumerate(st.diagnoses, start=1):
            diag_rows.append(
                {"stay_id": stay_id, "hospital_id": st.hospital, "pmsi_year": year, "rsa_num": n,
                 "diagnosis_rank": rank, "icd10_code": code}
            )
    disp_rows = [
        {"dispensing_id": f"D{i:05d}", "patient_id": p, "dispensing_date": day, "cip13": "3400930000000",
         "atc_code": atc, "boxes": 1, "amount": 5.0}
        for i, (p, day, atc) in enumerate(s.dispensings)
    ]
    tables = {
        "patients": _patients(s.stays),
        "hospitals": _hospitals(),
        "stays": pl.DataFrame(stay_rows, schema=contracts.CLEAN_SCHEMAS["stays"]),
        "diagnoses": pl.DataFrame(diag_rows, schema=contracts.CLEAN_SCHEMAS["diagnoses"]),
        "dispensings": pl.DataFrame(disp_rows, schema=contracts.CLEAN_SCHEMAS["dispensings"]),
    }
    return tables, tag_ids, s.expected


def write_clean(clean_dir: Path, tables: dict[str, pl.DataFrame]) -> None:
    clean_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(clean_dir / f"{name}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, help="project root: writes <root>/data/clean/*.parquet")
    args = parser.parse_args()
    tables, _, _ = build_clean()
    write_clean(args.root / "data" / "clean", tables)


if __name__ == "__main__":
    main()
