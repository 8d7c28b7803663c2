"""A small extract in the official SNDS layout, written the way real exports come.

Unlike the simulator's output, this one uses the real conventions the project must read
without help: four yearly PMSI table sets (T_MCO21B ... T_MCO24VALO) with RSA_NUM restarting
every year, extra schema columns in another order, sessions with an empty SEJ_NBJ, codes
-1 / 0 / 9, ICD-10 '+' extensions, SAS datetimes and ddmmyyyy dates, ','-separated quoted
files, a Latin-1 referential, lower-case and .txt file names, and the three PMSI filter cases
(error GHM, non-zero control code, AP-HP geographic FINESS). Column names come from the
public schema (../shared/reference/snds/schemas).

`build_extract(folder)` writes it and returns what was written (stays per year ...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

DCIR_KEYS = ("DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP",
             "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF")
HOSPITALS = {  # FINESS: (name, postal code, FINESS category)
    "750000011": ("HÔPITAL SAINT-ÉLOI", "75010", "101"),
    "930000022": ("CENTRE HOSPITALIER DE SAINT-DENIS", "93200", "355"),
    "940000033": ("CLINIQUE DU VAL-DE-MARNE", "94000", "128"),
    "920000044": ("CENTRE DE DIALYSE DES HAUTS-DE-SEINE", "92100", "696"),  # another FINESS category
    "750100042": ("AP-HP SITE GEOGRAPHIQUE", "75013", "101"),  # a geographic FINESS: dropped in staging
}
GEOGRAPHIC = "750100042"
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def sas(d: date) -> str:
    return f"{d.day:02d}{MONTHS[d.month - 1]}{d.year}:00:00:00"


@dataclass
class Written:
    """What the extract holds, for the test's assertions."""

    stays_per_year: dict[int, int] = field(default_factory=dict)
    filtered: dict[str, str] = field(default_factory=dict)  # filter -> a stay key "ETA_NUM-year-RSA"
    patients: int = 0
    dispensings: int = 0


def _write(path: Path, header: list[str], rows: list[list[str]], sep: str = ";", quoted: bool = False,
           encoding: str = "utf-8") -> None:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if quoted else v

    lines = [sep.join(cell(h) for h in header)] + [sep.join(cell(v) for v in r) for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))


def build_extract(folder: Path, seed: int = 11, n_patients: int = 90) -> Written:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = Written(patients=n_patients)
    patients, stays, dispensings = [], [], []
    for i in range(n_patients):
        pid = f"{rng.getrandbits(68):017X}"[:17]
        dept = rng.choice(["75", "77", "78", "91", "92", "93", "94", "95"])
        sex = rng.choice(["1", "2", "1", "2", "0", "9"]) if i % 15 == 0 else rng.choice(["1", "2"])
        birth = rng.randint(1930, 1985)
        patients.append([pid, "1", sex, str(birth), f"0{dept}", f"{rng.randint(1, 199):03d}", "", "2020-01-01"])
        day = date(2021, 1, 1) + timedelta(days=rng.randint(0, 200))
        while day < date(2024, 12, 1):
            los = rng.randint(1, 12)
            stays.append({"pid": pid, "adm": day, "dis": day + timedelta(days=los), "dept": dept, "sex": sex,
                          "age": day.year - birth, "session": False})
            if rng.random() < 0.3:  # a dialysis session (empty SEJ_NBJ)
                sday = day + timedelta(days=los + 3)
                stays.append({"pid": pid, "adm": sday, "dis": sday, "dept": dept, "sex": sex,
                              "age": sday.year - birth, "session": True})
            day = day + timedelta(days=los + rng.choice([12, 20, 45, 90, 200]))
        for k in range(3):
            dispensings.append((pid, date(2022, 1 + k * 3, 10 + k)))
    # IR_BEN_R: ';', UTF-8, ISO death dates, extra columns, 3-character departments
    _write(folder / "IR_BEN_R.csv",
           ["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_RES_DPT", "BEN_RES_COM",
            "BEN_DCD_DTE", "BEN_DTE_INS"], patients)
    # BE_IDE_R: Latin-1 (a SAS export), lower-case .txt name
    _write(folder / "be_ide_r.txt", ["IDE_ETA_NUM", "IDE_ETA_NU8", "IDE_ETA_NOM", "IDE_RSD_LIB", "IDE_BDI_COD"],
           [[f, f[:8], name, "PARIS", postal] for f, (name, postal, _) in HOSPITALS.items()], encoding="latin-1")
    # the external FINESS/SAE facts (not SNDS): ',' and quoted
    _write(folder / "EXT_FINESS_SAE.csv", ["nofinesset", "categetab", "lit_mco"],
           [[f, cat, str(100 + 10 * k)] for k, (f, (_, _, cat)) in enumerate(HOSPITALS.items())], sep=",", quoted=True)
    by_year: dict[int, list[dict[str, object]]] = {}
    for st in sorted(stays, key=lambda s: (s["dis"], s["pid"])):  # type: ignore[arg-type, return-value]
        by_year.setdefault(st["dis"].year, []).append(st)  # type: ignore[union-attr]
    regular = [h for h in HOSPITALS if h != GEOGRAPHIC]
    for year, rows in sorted(by_year.items()):
        yy = f"{year % 100:02d}"
        rsa: dict[str, int] = {}
        b_rows, c_rows, v_rows, d_rows = [], [], [], []
        for j, st in enumerate(rows):
            session = bool(st["session"])
            eta = "920000044" if session else regular[j % 3]
            if year == 2023 and j == 5:
                eta = GEOGRAPHIC
            rsa[eta] = rsa.get(eta, 0) + 1
            num = f"{rsa[eta]:010d}"
            adm, dis = st["adm"], st["dis"]
            assert isinstance(adm, date)
            assert isinstance(dis, date)
            ghm = "28Z04Z" if session else rng.choice(["04M052", "05M092", "01M303"])
            dp = "Z491" if session else rng.choice(["J441", "I509", "I639", "R53+0", "E119"])
            sor_mod = "8" if session else rng.choice(["8", "8", "8", "-1", "7"])
            ent_prv = "" if session else rng.choice(["5", "5", "9", "0", ""])
            nir_ret = "0"
            if year == 2022 and j == 3:
                ghm = "90Z00Z"  # error GHM
                out.filtered["error_ghm"] = f"{eta}-{year}-{rsa[eta]}"
            if year == 2024 and j == 7:
                nir_ret = "1"  # chaining control failed
                out.filtered["control_codes"] = f"{eta}-{year}-{rsa[eta]}"
            if eta == GEOGRAPHIC:
                out.filtered["geographic_finess"] = f"{eta}-{year}-{rsa[eta]}"
            b_rows.append([num, eta, "9999", "" if session else str((dis - adm).days), dp, "", "8", ent_prv,
                           sor_mod, "", ghm, str(st["age"]), str(st["sex"]), str(st["dept"]), str(year)])
            c_fmt = (lambda d: d.strftime("%d%m%Y")) if year == 2024 else sas
            c_rows.append([eta, num, str(st["pid"]), c_fmt(adm), c_fmt(dis), adm.strftime("%d%m%Y"), nir_ret,
                           "0", "0", "0", "0", "0", "0"])
            v_rows.append([eta, num, f"{rng.uniform(400, 9000):.2f}", "1", "0"])
            d_rows.append([eta, num, "1", rng.choice(["I10", "E785", "Z921+0", "N184"]), "224"])
        b_header = ["RSA_NUM", "ETA_NUM", "GHS_NUM", "SEJ_NBJ", "DGN_PAL", "DGN_REL", "ENT_MOD", "ENT_PRV",
                    "SOR_MOD", "SOR_DES", "GRG_GHM", "AGE_ANN", "COD_SEX", "BDI_DEP", "SOR_ANN"]
        b_rows = [[r[0], r[1], *r[2:]] for r in b_rows]
        if year == 2022:  # ','-separated, every field quoted
            _write(folder / f"T_MCO{yy}B.csv", b_header, b_rows, sep=",", quoted=True)
        elif year == 2023:
            _write(folder / f"t_mco{yy}b.txt", b_header, b_rows)
        else:
            _write(folder / f"T_MCO{yy}B.csv", b_header, b_rows)
        _write(folder / f"T_MCO{yy}C.csv", ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF",
                                             "ENT_DAT", "NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET",
                                             "PMS_RET", "DAT_RET"], c_rows)
        _write(folder / f"T_MCO{yy}VALO.csv", ["ETA_NUM", "RSA_NUM", "MNT_TOT_AM", "VALO", "MNT_GHS_AM"], v_rows)
        _write(folder / f"T_MCO{yy}D.csv", ["ETA_NUM", "RSA_NUM", "DGN_ASS_NUM", "ASS_DGN", "RSS_NUM"], d_rows)
        out.stays_per_year[year] = len(rows)
    # DCIR pharmacy: ER_PRS_F (patient, date, amount with a decimal comma) + ER_PHA_F + IR_PHA_R
    prs, pha = [], []
    for k, (pid, day) in enumerate(dispensings, start=1):
        keys = [str(k), "01/05/2022", "17", "1", "1", "01/05/2022", "01751000", "1", "1"]
        prs.append([*keys, pid, "1", day.strftime("%d/%m/%Y"), "12,5", "4212"])
        pha.append([*keys, "3400930012345", "1", "1"])
    _write(folder / "ER_PRS_F.csv", [*DCIR_KEYS, "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "BSE_REM_MNT",
                                     "PRS_NAT_REF"], prs)
    _write(folder / "ER_PHA_F.csv", [*DCIR_KEYS, "PHA_PRS_C13", "PHA_ACT_QSN", "PHA_ORD_NUM"], pha)
    _write(folder / "IR_PHA_R.csv", ["PHA_CIP_C13", "PHA_ATC_C07", "PHA_NOM_COURT"],
           [["3400930012345", "R03AL03", "ULTIBRO"]], sep=",", quoted=True)
    out.dispensings = len(dispensings)
    return out
