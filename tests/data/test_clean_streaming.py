"""The streaming read path of pipelines/snds: chunked sniffing, UTF-8 checks and transcoding, hashed
duplicates and join keys. Chunks are made tiny so that every boundary case is crossed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipelines.clean import TABLE_ORDER, run_clean
from pipelines.snds import read
from pipelines.snds.discover import classify
from pipelines.snds.errors import ExtractError
from pipelines.snds.ingest import HASHED_KEY, with_key_hashes
from pipelines.snds.read import LINE, MALFORMED, RAW, read_source, sniff
from tests.support.raw_fixtures import NO_CEILING, write_raw

HEADER = "BEN_NIR_PSA;BEN_SEX_COD;BEN_NAI_ANN;BEN_RES_DPT;BEN_DCD_DTE"


def _write(tmp_path: Path, data: bytes, name: str = "IR_BEN_R.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read(path: Path, encoding: str = "auto") -> read.SourceRows:
    file = classify(path)
    assert file is not None
    return read_source(file, encoding)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_invalid_utf8_is_located_exactly_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        chunk: int) -> None:
    monkeypatch.setattr(read, "CHUNK_BYTES", chunk)
    good = (HEADER + "\nPé1;1;1950;75;\nP€2;2;1960;93;\n").encode()
    path = _write(tmp_path, good + b"P3;\xff;1970;94;\n")
    with pytest.raises(ExtractError, match=rf"not valid utf-8: byte 0xff at offset {len(good) + 3} \(line 4\)"):
        _read(path, "utf-8")


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_multibyte_characters_cut_by_a_chunk_are_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       chunk: int) -> None:
    monkeypatch.setattr(read, "CHUNK_BYTES", chunk)
    path = _write(tmp_path, (HEADER + "\nPé€😀;1;1950;75;\n").encode())
    assert read._invalid(path, "utf-8") is None
    rows = _read(path, "utf-8").rows
    assert rows["BEN_NIR_PSA"].to_list() == ["Pé€😀"]


def test_cp1252_file_is_transcoded_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "CHUNK_BYTES", 4)
    names = ["PÉ€1", "Pœ2", "Pà3"]
    text = HEADER + "\n" + "".join(f"{n};1;1950;75;\n" for n in names)
    source = _read(_write(tmp_path, text.encode("cp1252")))
    assert source.format.encoding == "cp1252"
    assert source.rows["BEN_NIR_PSA"].to_list() == names
    assert source.rows[LINE].to_list() == [2, 3, 4]
    assert not list(tmp_path.glob("snds-utf8-*"))  # the temporary copy lives elsewhere and is gone


def test_a_crlf_cut_between_two_chunks_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"A;B\r\n1;2\r\n"
    monkeypatch.setattr(read, "CHUNK_BYTES", 4)  # chunks 'A;B\r' and '\n1;2'
    found = sniff(_write(tmp_path, data, "x.csv"))
    assert (found.line_endings, found.quoted, found.blank) == ("CRLF", False, False)
    assert sniff(_write(tmp_path, b" \n\r\n  ", "y.csv")).blank


def test_lines_holding_the_first_cutting_bytes_keep_their_text_and_numbers(tmp_path: Path) -> None:
    lines = [HEADER, "P\x1f1;1;1950;75;", "P\x1e2;2;1960;93;", "P3;1;1970;94;;extra"]
    source = _read(_write(tmp_path, ("\n".join(lines) + "\n").encode()))
    rows = source.rows
    assert rows["BEN_NIR_PSA"].to_list()[:2] == ["P\x1f1", "P\x1e2"]
    assert rows[MALFORMED].to_list() == [False, False, True]
    assert rows[RAW].to_list()[2] == "P3;1;1970;94;;extra"
    assert rows[LINE].to_list() == [2, 3, 4]


def test_exact_duplicates_are_confirmed_on_the_text_not_the_hash() -> None:
    # four lines forced onto one hash: only the true repeat of line 3 may go
    frame = pl.DataFrame({LINE: [2, 3, 4, 5, 6], "_text": ["a", "b", "c", "b", "d"],
                          read._HASH: [7, 7, 7, 7, 8]}, schema_overrides={read._HASH: pl.UInt64})
    kept = read._drop_exact_duplicates(frame, pl.col("_text"))
    assert kept[LINE].to_list() == [2, 3, 4, 6]


def test_exact_duplicate_lines_in_a_big_unquoted_file(tmp_path: Path) -> None:
    body = [f"P{i};{1 + i % 2};19{50 + i % 40};75;" for i in range(5000)]
    lines = [HEADER, *body, body[10], body[4999], "P1;1;1951;75", body[10]]
    source = _read(_write(tmp_path, ("\n".join(lines) + "\n\n\n").encode()))
    assert source.raw_rows == 5004  # the blank trailing lines are not rows
    assert source.duplicates_dropped == 3
    assert source.rows[LINE].to_list()[-1] == 5004  # the short line, malformed, is kept
    assert source.rows[MALFORMED].sum() == 1


def test_date_format_sample_that_misleads_falls_back_to_the_whole_column(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "_DATE_SAMPLE", 2)
    values = ["2023-01-03", "2023-01-04", "05/01/2023", "06/01/2023", "07/01/2023"]
    lines = [HEADER, *(f"P{i};1;1950;75;{v}" for i, v in enumerate(values))]
    source = _read(_write(tmp_path, ("\n".join(lines) + "\n").encode()))
    assert source.format.date_formats == {"BEN_DCD_DTE": "dd/mm/yyyy"}  # the majority, as on the whole column
    assert source.rows["BEN_DCD_DTE__date"].to_list() == [None, None, date(2023, 1, 5), date(2023, 1, 6),
                                                          date(2023, 1, 7)]


def test_hashed_keys_join_as_the_values_would() -> None:
    frame = pl.DataFrame({"A": [" 042", "42", "000", None, None, "x"], "B": ["1", "1", "0", "1", "1", "2"],
                          MALFORMED: [False, False, False, False, False, True]})
    join_side = with_key_hashes(frame, ["A", "B"], joinable=~pl.col(MALFORMED))
    h = list(zip(*(join_side[c].to_list() for c in HASHED_KEY), strict=True))
    assert h[0] == h[1]  # ' 042' and '42' are one key (trimmed, leading zeros dropped)
    assert h[2] != h[0]
    assert h[2][0] is not None
    assert h[3] == (None, None)
    assert h[5] == (None, None)
    dedupe_side = with_key_hashes(frame, ["A", "B"])
    d = list(zip(*(dedupe_side[c].to_list() for c in HASHED_KEY), strict=True))
    assert d[3] == d[4]
    assert d[3][0] is not None


def test_date_keys_compare_as_dates_then_as_text() -> None:
    # as before hashing: a parsed date equals the same day written ISO in a file where it did not parse
    frame = pl.DataFrame({"D": ["01/02/2023", "2023-02-01", "bad", " bad", "02/02/2023", None],
                          "D__date": [date(2023, 2, 1), None, None, None, date(2023, 2, 2), None]})
    hashed = with_key_hashes(frame, ["D"], ["D"], joinable=pl.lit(True))
    h = list(zip(*(hashed[c].to_list() for c in HASHED_KEY), strict=True))
    assert h[0] == h[1]
    assert h[2] == h[3]
    assert len({h[0], h[2], h[4]}) == 3
    assert h[5] == (None, None)  # no date and no text: joins nothing


def test_a_quote_first_met_after_the_first_chunk_still_gets_rfc4180(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "CHUNK_BYTES", 8)
    lines = [HEADER, "P1;1;1950;75;", '"P;2";2;1960;93;', 'P3;1;1970;"9\n4";']
    source = _read(_write(tmp_path, ("\n".join(lines) + "\n").encode()))
    assert source.format.quoted
    assert source.rows["BEN_NIR_PSA"].to_list() == ["P1", "P;2", "P3"]
    assert source.rows["BEN_RES_DPT"].to_list() == ["75", "93", "9\n4"]
    assert source.rows[LINE].to_list() == [2, 3, 4]


def test_a_cr_only_file_cut_after_a_cr_is_not_crlf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "CHUNK_BYTES", 4)  # first chunk 'A;B\r', next byte '1'
    assert sniff(_write(tmp_path, b"A;B\r1;2\r", "x.csv")).line_endings == "CR"


def test_progress_is_one_line_per_table_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_raw(tmp_path, stays=[{}, {"RSA_NUM": "2"}])
    metrics = run_clean(paths, NO_CEILING, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split()[1] for line in err] == list(TABLE_ORDER)
    stays = next(line for line in err if line.split()[1] == "stays")
    assert f"{metrics['tables']['stays']['raw_rows']:,} raw" in stays
    run_clean(paths, NO_CEILING)
    assert capsys.readouterr().err == ""
